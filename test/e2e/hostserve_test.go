package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portreeve/portreeve/test/harness"
	"github.com/portreeve/portreeve/test/proc"
)

// hostProcess is a program started by a test (test/proc: its own process
// group, killed with the test binary), its output in a log file.
type hostProcess struct{ *proc.Process }

func startHostProcess(name, logPath, bin string, args ...string) (*hostProcess, error) {
	p, err := proc.Start(proc.Options{Name: name, Binary: bin, Args: args, LogPath: logPath, StopGrace: 15 * time.Second})
	if err != nil {
		return nil, err
	}
	return &hostProcess{p}, nil
}

// Log returns the whole log.
func (p *hostProcess) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// LogTail returns the end of the log, for failure messages.
func (p *hostProcess) LogTail() string { return p.Process.LogTail(80) }

// startHostProcessForTest starts a hostProcess that t.Cleanup stops,
// printing its log tail when the test failed.
func startHostProcessForTest(t *testing.T, name, bin string, args ...string) *hostProcess {
	t.Helper()
	p, err := startHostProcess(name, filepath.Join(t.TempDir(), name+".log"), bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Log(p.LogTail())
		}
	})
	return p
}

// hostServe is `portreeve serve` run on the host exactly as the chart's
// Deployment runs it in a pod: the container's command and args, its
// environment references expanded, its volumes materialised into folders
// (ConfigMap and Secret keys as files, as the kubelet projects them), and the
// chart's ServiceAccount identity. Only what a pod gets from its node is
// replaced: loopback ports and the kubeconfig.
type hostServe struct {
	*hostProcess
	r          *release
	addr       string // 127.0.0.1:<webhook port>
	healthURL  string
	metricsURL string
	// mounts maps each container mountPath to its folder on the host.
	mounts  map[string]string
	volumes []corev1.Volume
}

// startServe starts portreeve serve for r with the given kubeconfig and
// extra arguments (appended last, so they override the chart's).
func (r *release) startServe(ctx context.Context, dir, kubeconfig string, extra ...string) (*hostServe, error) {
	d, c, err := r.deployment(ctx)
	if err != nil {
		return nil, err
	}
	if !slices.Equal(c.Command, []string{"/portreeve"}) {
		return nil, fmt.Errorf("chart command %q, want [/portreeve] (the image's entrypoint)", c.Command)
	}
	bin, err := harness.Binary("")
	if err != nil {
		return nil, err
	}
	s := &hostServe{r: r, addr: fmt.Sprintf("127.0.0.1:%d", r.port), mounts: map[string]string{}, volumes: d.Spec.Template.Spec.Volumes}
	for _, vm := range c.VolumeMounts {
		s.mounts[vm.MountPath] = filepath.Join(dir, "volumes", vm.Name)
		if err := os.MkdirAll(s.mounts[vm.MountPath], 0o700); err != nil {
			return nil, err
		}
	}
	if err := s.syncVolumes(ctx, c.VolumeMounts); err != nil {
		return nil, err
	}
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env[e.Name] = chartNamespace
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			env[e.Name] = chartRelease + "-host"
		case e.ValueFrom.ResourceFieldRef != nil:
			// A container's resources (GOMEMLIMIT from its memory limit): none on the host.
		default:
			return nil, fmt.Errorf("env %s: unsupported valueFrom in a host run", e.Name)
		}
	}
	var args []string
	for _, a := range c.Args {
		args = append(args, s.hostPath(expandEnv(a, env)))
	}
	ports := []int{freeLoopbackPort(), freeLoopbackPort()}
	s.healthURL = fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	s.metricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[0])
	args = append(args,
		"--kubeconfig="+kubeconfig,
		"--webhook-host=127.0.0.1",
		fmt.Sprintf("--webhook-port=%d", r.port),
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[0]),
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", ports[1]))
	args = append(args, extra...)
	p, err := startHostProcess("portreeve-serve", filepath.Join(dir, "serve.log"), bin, args...)
	if err != nil {
		return nil, err
	}
	s.hostProcess = p
	return s, nil
}

// startServeForTest is startServe that t.Cleanup stops.
func (r *release) startServeForTest(t *testing.T, kubeconfig string, extra ...string) *hostServe {
	t.Helper()
	s, err := r.startServe(t.Context(), t.TempDir(), kubeconfig, extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Log(s.LogTail())
		}
	})
	return s
}

// syncVolumes writes the current data of every ConfigMap and Secret volume
// into its folder (each key a file, replaced atomically), as the kubelet
// keeps projected volumes up to date.
func (s *hostServe) syncVolumes(ctx context.Context, mounts []corev1.VolumeMount) error {
	for _, vm := range mounts {
		i := slices.IndexFunc(s.volumes, func(v corev1.Volume) bool { return v.Name == vm.Name })
		if i < 0 {
			return fmt.Errorf("volumeMount %s has no volume", vm.Name)
		}
		v := s.volumes[i]
		data := map[string][]byte{}
		switch {
		case v.ConfigMap != nil:
			cm, err := s.r.cs.CoreV1().ConfigMaps(chartNamespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for k, val := range cm.Data {
				data[k] = []byte(val)
			}
		case v.Secret != nil:
			sec, err := s.r.cs.CoreV1().Secrets(chartNamespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			data = sec.Data
		case v.EmptyDir != nil:
			continue
		default:
			return fmt.Errorf("volume %s: unsupported type in a host run", v.Name)
		}
		for k, val := range data {
			path := filepath.Join(s.mounts[vm.MountPath], k)
			if err := os.WriteFile(path+".tmp", val, 0o600); err != nil {
				return err
			}
			if err := os.Rename(path+".tmp", path); err != nil {
				return err
			}
		}
	}
	return nil
}

// refreshVolumes is syncVolumes for the running Deployment's mounts.
func (s *hostServe) refreshVolumes(ctx context.Context) error {
	_, c, err := s.r.deployment(ctx)
	if err != nil {
		return err
	}
	return s.syncVolumes(ctx, c.VolumeMounts)
}

// hostPath rewrites a flag value that lies under a mountPath to the
// mount's folder on the host.
func (s *hostServe) hostPath(arg string) string {
	flag, value, ok := strings.Cut(arg, "=")
	if !ok {
		return arg
	}
	for mp, dir := range s.mounts {
		if value == mp || strings.HasPrefix(value, mp+"/") {
			return flag + "=" + dir + strings.TrimPrefix(value, mp)
		}
	}
	return arg
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expandEnv expands $(VAR) references as the kubelet does in args.
func expandEnv(s string, env map[string]string) string {
	return envRef.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := env[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

// waitReady polls /readyz until it answers 200, the process exits, or
// timeout passes. giveUp, when not nil, ends the wait early with its error
// (a failure that cannot heal).
func (s *hostServe) waitReady(ctx context.Context, timeout time.Duration, giveUp func() error) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	last := "no answer"
	for {
		select {
		case <-s.Done():
			return fmt.Errorf("portreeve serve exited: %v", s.WaitErr())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if resp, err := client.Get(s.healthURL + "/readyz?verbose"); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = string(body)
		}
		if giveUp != nil {
			if err := giveUp(); err != nil {
				return fmt.Errorf("%w (readyz: %s)", err, last)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %s: %s", timeout, last)
		}
	}
}

// forbidden returns an error once the log shows an API request the
// ServiceAccount was not allowed to make.
func (s *hostServe) forbidden() error {
	for line := range strings.Lines(s.Log()) {
		if strings.Contains(line, "forbidden") {
			return errors.New("forbidden: " + strings.TrimSpace(line))
		}
	}
	return nil
}

func freeLoopbackPort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0 // the server then fails to bind, and says so
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
