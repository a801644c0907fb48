package controlplane

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const wantServerVersion = "v1.37.2"

// helperEnv makes the test binary act as a program that runs a control plane
// until it is signalled (see TestMain and runHelper).
const helperEnv = "PORTREEVE_CONTROLPLANE_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(runHelper())
	}
	os.Exit(m.Run())
}

type helperInfo struct {
	PIDs map[string]int `json:"pids"`
	Dir  string         `json:"dir"`
}

// runHelper starts a control plane with the package's signal handler, prints
// its PIDs and dir as JSON and sleeps until something ends the process.
func runHelper() int {
	cp, err := Start(context.Background(), Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	b, _ := json.Marshal(helperInfo{PIDs: cp.PIDs(), Dir: cp.Dir})
	fmt.Printf("READY %s\n", b)
	for {
		time.Sleep(time.Hour)
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestControlPlane(t *testing.T) {
	opts := Options{}
	opts.BinDir = RequireTools(t, opts, BinKubectl)
	ctx := testContext(t)

	start := time.Now()
	cp, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = cp.Stop() }) // in case of an early failure
	t.Logf("control plane ready in %s at %s", time.Since(start).Round(time.Millisecond), cp.APIServerURL)

	pids := cp.PIDs()
	if len(pids) != 2 || pids[BinEtcd] == 0 || pids[BinAPIServer] == 0 {
		t.Fatalf("PIDs = %v, want etcd and kube-apiserver", pids)
	}
	if !strings.HasPrefix(cp.APIServerURL, "https://127.0.0.1:") {
		t.Errorf("APIServerURL = %q", cp.APIServerURL)
	}

	// kubectl version reports the server version.
	out, _, err := cp.Kubectl(ctx, "version", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var version struct {
		ServerVersion struct {
			GitVersion string `json:"gitVersion"`
		} `json:"serverVersion"`
	}
	if err := json.Unmarshal([]byte(out), &version); err != nil {
		t.Fatalf("kubectl version output: %v\n%s", err, out)
	}
	if got := version.ServerVersion.GitVersion; got != wantServerVersion {
		t.Errorf("serverVersion.gitVersion = %q, want %q", got, wantServerVersion)
	}

	// A namespace through kubectl, its ServiceAccount through EnsureNamespace
	// (no controller manager), then a Pod through kubectl.
	if _, _, err := cp.Kubectl(ctx, "create", "namespace", "cp-test"); err != nil {
		t.Fatal(err)
	}
	if err := cp.EnsureNamespace(ctx, "cp-test", map[string]string{"portreeve.io/test": "yes"}); err != nil {
		t.Fatal(err)
	}
	pod := `apiVersion: v1
kind: Pod
metadata:
  name: hello
  namespace: cp-test
spec:
  containers:
  - name: hello
    image: registry.k8s.io/pause:3.10
`
	if _, _, err := cp.KubectlStdin(ctx, strings.NewReader(pod), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	out, _, err = cp.Kubectl(ctx, "get", "pod", "hello", "-n", "cp-test", "-o", "jsonpath={.status.phase}")
	if err != nil {
		t.Fatal(err)
	}
	if out != "Pending" {
		t.Errorf("pod phase = %q, want Pending (there is no kubelet)", out)
	}

	// EnsureNamespace on a new namespace, and the typed client.
	if err := cp.EnsureNamespace(ctx, "cp-other", nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.Kubectl(ctx, "run", "other", "-n", "cp-other", "--image=registry.k8s.io/pause:3.10"); err != nil {
		t.Fatal(err)
	}
	cs, err := cp.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := cs.CoreV1().Namespaces().Get(ctx, "cp-test", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ns.Labels["portreeve.io/test"] != "yes" {
		t.Errorf("namespace labels = %v, want portreeve.io/test=yes", ns.Labels)
	}

	// helm talks to the same apiserver (optional: the binary may be missing).
	if missing := MissingTools(cp.BinDir, BinHelm); len(missing) > 0 {
		if toolsRequired() {
			t.Errorf("helm missing in %s and %s is set", cp.BinDir, EnvRequireTools)
		} else {
			t.Logf("helm missing in %s; not checking Helm", cp.BinDir)
		}
	} else {
		out, _, err := cp.Helm(ctx, "list", "--all-namespaces", "-o", "json")
		if err != nil {
			t.Error(err)
		} else if strings.TrimSpace(out) != "[]" {
			t.Errorf("helm list = %q, want []", out)
		}
	}

	// The kubeconfig holds the CA only.
	kubeconfig, err := os.ReadFile(cp.KubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(kubeconfig), cp.APIServerURL) {
		t.Errorf("kubeconfig does not name %s", cp.APIServerURL)
	}

	dir := cp.Dir
	stopStart := time.Now()
	if err := cp.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("stopped in %s", time.Since(stopStart).Round(time.Millisecond))
	if err := cp.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	assertGone(t, pids)
	assertNoChildren(t, os.Getpid())
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp dir %s still there after Stop (stat: %v)", dir, err)
	}
}

// TestStartFailure checks that a component that cannot start makes Start
// fail with the tail of its log, leaves no process and no temp dir, and that
// Options.Logs receives the prefixed output.
func TestStartFailure(t *testing.T) {
	opts := Options{APIServerFlags: map[string]string{"no-such-flag": "1"}}
	opts.BinDir = RequireTools(t, opts)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where Start makes its temp dir
	var logs syncBuffer
	opts.Logs = &logs

	cp, err := Start(testContext(t), opts)
	if err == nil {
		_ = cp.Stop()
		t.Fatal("Start succeeded with an unknown apiserver flag")
	}
	msg := err.Error()
	for _, want := range []string{"kube-apiserver", "--- last lines of", "no-such-flag"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q:\n%s", want, msg)
		}
	}
	if !strings.Contains(logs.String(), "[kube-apiserver] ") {
		t.Errorf("Options.Logs got no [kube-apiserver] lines:\n%s", logs.String())
	}
	assertNoChildren(t, os.Getpid())
	if entries, _ := os.ReadDir(tmp); len(entries) > 0 {
		t.Errorf("left in the temp dir after a failed Start: %v", entries)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestControllerManager(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-controller-manager; skipped with -short")
	}
	start := time.Now()
	cp := StartForTest(t, Options{ControllerManager: true})
	t.Logf("control plane with controller manager ready in %s", time.Since(start).Round(time.Millisecond))
	ctx := testContext(t)
	if cp.PIDs()[BinControllerManager] == 0 {
		t.Fatalf("PIDs = %v, want kube-controller-manager", cp.PIDs())
	}

	// The controller manager gives a new namespace its ServiceAccount and
	// turns a Deployment into a ReplicaSet and Pods.
	if _, _, err := cp.Kubectl(ctx, "create", "namespace", "kcm-test"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "default ServiceAccount in kcm-test", func() error {
		_, _, err := cp.Kubectl(ctx, "get", "serviceaccount", "default", "-n", "kcm-test")
		return err
	})
	if _, _, err := cp.Kubectl(ctx, "create", "deployment", "web", "-n", "kcm-test", "--image=registry.k8s.io/pause:3.10", "--replicas=2"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "2 pods of deployment web", func() error {
		out, _, err := cp.Kubectl(ctx, "get", "pods", "-n", "kcm-test", "-l", "app=web", "-o", "name")
		if err != nil {
			return err
		}
		if n := len(strings.Fields(out)); n != 2 {
			return fmt.Errorf("%d pods", n)
		}
		return nil
	})
}

// TestInterruptStopsChildren runs a control plane in a child copy of this
// test binary and checks that SIGINT (the package's signal handler) and
// SIGKILL (Pdeathsig) both take etcd and kube-apiserver down with it.
func TestInterruptStopsChildren(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two control planes in helper processes; skipped with -short")
	}
	if runtime.GOOS != "linux" {
		t.Skip("Pdeathsig and /proc are Linux only")
	}
	binDir := RequireTools(t, Options{})

	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"=1", EnvBinDir+"="+binDir)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

			info, err := readReady(stdout, 2*time.Minute)
			if err != nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("helper: %v\n%s", err, stderr.String())
			}
			if sig == syscall.SIGKILL {
				// Pdeathsig kills the children; nobody is left to remove the dir.
				t.Cleanup(func() { _ = os.RemoveAll(info.Dir) })
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			waited := make(chan error, 1)
			go func() { waited <- cmd.Wait() }()
			select {
			case err := <-waited:
				t.Logf("helper exited: %v", err)
			case <-time.After(30 * time.Second):
				t.Fatalf("helper did not exit within 30s of %v", sig)
			}
			eventually(t, "children gone", func() error {
				for name, pid := range info.PIDs {
					if alive(pid) {
						return fmt.Errorf("%s (pid %d) still running", name, pid)
					}
				}
				return nil
			})
			if sig == syscall.SIGINT {
				if _, err := os.Stat(info.Dir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("temp dir %s still there after SIGINT (stat: %v)", info.Dir, err)
				}
			}
		})
	}
}

// TestCPStart builds cmd/cpstart and runs it the way scripts do.
func TestCPStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs cmd/cpstart; skipped with -short")
	}
	if runtime.GOOS != "linux" {
		t.Skip("uses /proc")
	}
	binDir := RequireTools(t, Options{})
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			t.Skip("no go command to build cmd/cpstart")
		}
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "cpstart")
	build := exec.Command(goBin, "build", "-o", bin, "./cmd/cpstart")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/cpstart: %v\n%s", err, out)
	}

	kubeOut := filepath.Join(tmp, "kubeconfig-path")
	cmd := exec.Command(bin, "--kubeconfig-out", kubeOut, "--bin-dir", binDir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	line, err := readLine(stdout, 2*time.Minute)
	if err != nil {
		t.Fatalf("cpstart: %v\n%s", err, stderr.String())
	}
	kubeconfig, ok := strings.CutPrefix(line, "KUBECONFIG=")
	if !ok {
		t.Fatalf("cpstart printed %q, want KUBECONFIG=<path>", line)
	}
	written, err := os.ReadFile(kubeOut)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(written)); got != kubeconfig {
		t.Errorf("--kubeconfig-out holds %q, want %q", got, kubeconfig)
	}
	out, err := exec.Command(filepath.Join(binDir, BinKubectl), "--kubeconfig", kubeconfig, "get", "namespace", "default", "-o", "name").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "namespace/default" {
		t.Fatalf("kubectl get namespace default: %v: %s", err, out)
	}

	children := childPIDs(cmd.Process.Pid)
	if len(children) != 2 {
		t.Errorf("cpstart children = %v, want etcd and kube-apiserver", children)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Errorf("cpstart exit: %v, want 0\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("cpstart did not exit within 30s of SIGTERM")
	}
	for _, pid := range children {
		if alive(pid) {
			t.Errorf("child pid %d still running after cpstart exited", pid)
		}
	}
	if _, err := os.Stat(kubeOut); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there after exit", kubeOut)
	}
	if _, err := os.Stat(filepath.Dir(kubeconfig)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp dir %s still there after exit", filepath.Dir(kubeconfig))
	}
}

func readLine(r interface{ Read([]byte) (int, error) }, timeout time.Duration) (string, error) {
	lines := make(chan string, 1)
	errs := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(r)
		if sc.Scan() {
			lines <- sc.Text()
			return
		}
		errs <- fmt.Errorf("no output (%v)", sc.Err())
	}()
	select {
	case l := <-lines:
		return l, nil
	case err := <-errs:
		return "", err
	case <-time.After(timeout):
		return "", errors.New("timed out waiting for output")
	}
}

func readReady(r interface{ Read([]byte) (int, error) }, timeout time.Duration) (helperInfo, error) {
	var info helperInfo
	line, err := readLine(r, timeout)
	if err != nil {
		return info, err
	}
	js, ok := strings.CutPrefix(line, "READY ")
	if !ok {
		return info, fmt.Errorf("unexpected output %q", line)
	}
	if err := json.Unmarshal([]byte(js), &info); err != nil {
		return info, err
	}
	if len(info.PIDs) != 2 {
		return info, fmt.Errorf("helper PIDs = %v", info.PIDs)
	}
	return info, nil
}

func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// alive reports whether pid is a running (not zombie) process. Zombies
// count as gone: a reparented child may wait for a reaper that never comes
// in a container whose init does not reap.
func alive(pid int) bool {
	if runtime.GOOS != "linux" {
		return syscall.Kill(pid, 0) == nil
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

// childPIDs lists the live processes whose parent is ppid (Linux).
func childPIDs(ppid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:]) // state, ppid, ...
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		if p, _ := strconv.Atoi(f[1]); p == ppid {
			pids = append(pids, pid)
		}
	}
	return pids
}

func assertGone(t *testing.T, pids map[string]int) {
	t.Helper()
	for name, pid := range pids {
		if alive(pid) {
			t.Errorf("%s (pid %d) still running after Stop", name, pid)
		}
	}
}

func assertNoChildren(t *testing.T, ppid int) {
	t.Helper()
	if runtime.GOOS != "linux" {
		return
	}
	if kids := childPIDs(ppid); len(kids) > 0 {
		t.Errorf("child processes left after Stop: %v", kids)
	}
}
