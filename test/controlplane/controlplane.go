// Package controlplane runs a real Kubernetes control plane (etcd,
// kube-apiserver and optionally kube-controller-manager) on loopback for
// tests and demo scripts. There is no kubelet: Pods are stored and admitted
// but stay Pending.
//
// The binaries come from hack/tools.sh (see Options.BinDir). Every control
// plane gets fresh PKI, free ports and a temp dir; Stop kills the children by
// PID and removes the temp dir. The package works on Unix only; on Linux the
// children also die with the process that started them (Pdeathsig).
package controlplane

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/retry"
)

const (
	// ModulePath is the module whose root holds hack/tools.sh.
	ModulePath = "github.com/portreeve/portreeve"
	// EnvBinDir overrides the folder with the binaries.
	EnvBinDir = "PORTREEVE_BIN_DIR"

	serviceClusterIPRange = "10.96.0.0/16"
	kubernetesServiceIP   = "10.96.0.1"
	serviceAccountIssuer  = "https://kubernetes.default.svc.cluster.local"

	defaultStartTimeout = 2 * time.Minute
)

// Names of the binaries in the bin folder.
const (
	BinEtcd              = "etcd"
	BinAPIServer         = "kube-apiserver"
	BinControllerManager = "kube-controller-manager"
	BinKubectl           = "kubectl"
	BinHelm              = "helm"
)

// Options configures Start. The zero value is a usable configuration.
type Options struct {
	// BinDir is the folder with etcd, kube-apiserver, kube-controller-manager,
	// kubectl and helm. Empty means $PORTREEVE_BIN_DIR, else the output of
	// `hack/tools.sh bindir` in the repository root (found by walking up from
	// the working directory).
	BinDir string

	// ControllerManager also starts kube-controller-manager, so Deployments
	// become ReplicaSets and Pods and new namespaces get their default
	// ServiceAccount and kube-root-ca.crt ConfigMap. Start then also waits
	// until the controllers run (they start about 5 s after the process).
	ControllerManager bool

	// APIServerFlags, EtcdFlags and ControllerManagerFlags add to or override
	// the default flags (keys without the leading "--").
	APIServerFlags         map[string]string
	EtcdFlags              map[string]string
	ControllerManagerFlags map[string]string

	// Logs, if set, also receives the output of the processes, each line
	// prefixed with "[name] ". The output always goes to log files as well.
	Logs io.Writer
	// LogDir, if set, is where the log files are written and kept after Stop.
	// By default they live in the temp dir and are removed with it.
	LogDir string

	// StartTimeout bounds Start (default 2 minutes; the usual start takes a
	// few seconds).
	StartTimeout time.Duration

	// DisableSignalHandler leaves SIGINT/SIGTERM to the caller. By default,
	// while a control plane runs, the package catches those signals, stops
	// every running control plane and then re-raises the signal.
	DisableSignalHandler bool
}

// ControlPlane is a running control plane. Fields are read-only.
type ControlPlane struct {
	// KubeconfigPath is an admin (system:masters) kubeconfig; it lives in
	// Dir and is removed by Stop.
	KubeconfigPath string
	// APIServerURL is https://127.0.0.1:<port>.
	APIServerURL string
	// CACertPEM is the CA that signed the apiserver serving certificate and
	// the admin client certificate.
	CACertPEM []byte
	// EtcdURL is the etcd client URL.
	EtcdURL string
	// BinDir is the folder the binaries were run from.
	BinDir string
	// Dir is the temp dir with PKI, etcd data, kubeconfig and (by default)
	// logs. Stop removes it.
	Dir string

	opts       Options
	logDir     string
	pki        *pki
	files      pkiFiles
	restConfig *rest.Config

	mu        sync.Mutex
	procs     []*process // in start order
	stopping  bool
	failed    chan error
	stopOnce  sync.Once
	stopErr   error
	stoppedCh chan struct{}
}

// Start starts etcd, kube-apiserver and, if asked, kube-controller-manager,
// and returns once the apiserver is ready. ctx bounds the start only; the
// processes run until Stop. On error everything started is cleaned up.
func Start(ctx context.Context, opts Options) (cp *ControlPlane, err error) {
	binDir, err := ResolveBinDir(opts.BinDir)
	if err != nil {
		return nil, err
	}
	required := []string{BinEtcd, BinAPIServer}
	if opts.ControllerManager {
		required = append(required, BinControllerManager)
	}
	if missing := MissingTools(binDir, required...); len(missing) > 0 {
		return nil, &MissingToolsError{BinDir: binDir, Missing: missing}
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = defaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	dir, err := os.MkdirTemp("", "portreeve-cp-")
	if err != nil {
		return nil, err
	}
	cp = &ControlPlane{
		BinDir:    binDir,
		Dir:       dir,
		opts:      opts,
		logDir:    opts.LogDir,
		failed:    make(chan error, 1),
		stoppedCh: make(chan struct{}),
	}
	if cp.logDir == "" {
		cp.logDir = filepath.Join(dir, "logs")
	}
	if !opts.DisableSignalHandler {
		register(cp)
	}
	started := cp // the named result is nil by the time a failure returns
	defer func() {
		if err != nil {
			_ = started.Stop()
			cp = nil
		}
	}()
	if err := os.MkdirAll(cp.logDir, 0o755); err != nil {
		return nil, err
	}

	if cp.pki, err = newPKI(); err != nil {
		return nil, err
	}
	if cp.files, err = cp.pki.write(filepath.Join(dir, "pki")); err != nil {
		return nil, err
	}
	cp.CACertPEM = cp.pki.caCertPEM

	if err := cp.startEtcd(ctx); err != nil {
		return nil, err
	}
	if err := cp.startAPIServer(ctx); err != nil {
		return nil, err
	}
	if err := cp.writeKubeconfig(); err != nil {
		return nil, err
	}
	if opts.ControllerManager {
		if err := cp.startControllerManager(ctx); err != nil {
			return nil, err
		}
	} else {
		// Without the controller manager nobody creates ServiceAccounts;
		// give the default namespace its one so Pods can be created there.
		if err := cp.EnsureNamespace(ctx, metav1.NamespaceDefault, nil); err != nil {
			return nil, err
		}
	}
	return cp, nil
}

// RESTConfig returns a new admin rest.Config for the apiserver.
func (cp *ControlPlane) RESTConfig() *rest.Config {
	return rest.CopyConfig(cp.restConfig)
}

// Clientset returns a typed admin client.
func (cp *ControlPlane) Clientset() (*kubernetes.Clientset, error) {
	return kubernetes.NewForConfig(cp.RESTConfig())
}

// LogDir is the folder with the process logs (etcd.log, kube-apiserver.log,
// kube-controller-manager.log).
func (cp *ControlPlane) LogDir() string { return cp.logDir }

// PIDs returns the process ids of the children by binary name.
func (cp *ControlPlane) PIDs() map[string]int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	m := make(map[string]int, len(cp.procs))
	for _, p := range cp.procs {
		m[p.Name] = p.PID()
	}
	return m
}

// Failed delivers an error (with the tail of the log) if a child process
// exits while the control plane is not being stopped.
func (cp *ControlPlane) Failed() <-chan error { return cp.failed }

// Stopped is closed when Stop has finished.
func (cp *ControlPlane) Stopped() <-chan struct{} { return cp.stoppedCh }

// Stop stops the children by PID (SIGTERM, SIGKILL after a grace period),
// waits for them and removes the temp dir. It is safe to call more than
// once and from several goroutines; later calls return the first result.
func (cp *ControlPlane) Stop() error {
	cp.stopOnce.Do(func() {
		cp.stopErr = cp.stop()
		unregister(cp)
		close(cp.stoppedCh)
	})
	<-cp.stoppedCh
	return cp.stopErr
}

func (cp *ControlPlane) stop() error {
	cp.mu.Lock()
	cp.stopping = true
	procs := append([]*process(nil), cp.procs...)
	cp.mu.Unlock()
	for _, p := range procs {
		p.Expect()
	}

	var errs []error
	// The controller manager and the apiserver first (together), etcd last,
	// so the apiserver does not spend its shutdown retrying etcd.
	var wg sync.WaitGroup
	var errMu sync.Mutex
	for _, p := range procs {
		if p.Name == BinEtcd {
			continue
		}
		wg.Add(1)
		go func(p *process) {
			defer wg.Done()
			if err := p.Stop(); err != nil {
				errMu.Lock()
				errs = append(errs, err)
				errMu.Unlock()
			}
		}(p)
	}
	wg.Wait()
	for _, p := range procs {
		if p.Name == BinEtcd {
			if err := p.Stop(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := removeAll(cp.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func removeAll(dir string) error {
	var err error
	for i := 0; i < 5; i++ {
		if err = os.RemoveAll(dir); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("remove %s: %w", dir, err)
}

// launch starts one child and records it, unless Stop has begun.
func (cp *ControlPlane) launch(name string, args []string) (*process, error) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.stopping {
		return nil, errStopped
	}
	logPath := filepath.Join(cp.logDir, name+".log")
	p, err := launch(name, filepath.Join(cp.BinDir, name), args, logPath, cp.opts.Logs, cp.unexpectedExit)
	if err != nil {
		return nil, err
	}
	cp.procs = append(cp.procs, p)
	return p, nil
}

// forget drops a process that was stopped after a failed start attempt.
func (cp *ControlPlane) forget(p *process) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for i, q := range cp.procs {
		if q == p {
			cp.procs = append(cp.procs[:i], cp.procs[i+1:]...)
			return
		}
	}
}

func (cp *ControlPlane) unexpectedExit(p *process) {
	select {
	case cp.failed <- p.exitError():
	default:
	}
}

// startWithRetry launches a component and waits for it to be ready; if it
// fails because a port was taken meanwhile, it tries once more with new ports.
func (cp *ControlPlane) startWithRetry(ctx context.Context, name string, nPorts int, args func(ports []int) []string, ready func(ctx context.Context, ports []int) error) ([]int, *process, error) {
	for attempt := 0; ; attempt++ {
		ports, err := freePorts(nPorts)
		if err != nil {
			return nil, nil, err
		}
		p, err := cp.launch(name, args(ports))
		if err != nil {
			return nil, nil, err
		}
		err = waitReady(ctx, p, func(ctx context.Context) error { return ready(ctx, ports) })
		if err == nil {
			return ports, p, nil
		}
		_ = p.Stop()
		if attempt == 0 && p.addrInUse() && ctx.Err() == nil {
			cp.forget(p)
			continue
		}
		return nil, nil, err
	}
}

func (cp *ControlPlane) startEtcd(ctx context.Context) error {
	dataDir := filepath.Join(cp.Dir, "etcd")
	args := func(ports []int) []string {
		_ = os.RemoveAll(dataDir) // fresh on a retry
		client := loopbackURL("http", ports[0])
		peer := loopbackURL("http", ports[1])
		defaults := map[string]string{
			"name":                        "portreeve",
			"data-dir":                    dataDir,
			"listen-client-urls":          client,
			"advertise-client-urls":       client,
			"listen-peer-urls":            peer,
			"initial-advertise-peer-urls": peer,
			"initial-cluster":             "portreeve=" + peer,
			"initial-cluster-state":       "new",
			"listen-metrics-urls":         loopbackURL("http", ports[2]),
			"unsafe-no-fsync":             "true",
			"log-level":                   "warn",
		}
		return flagArgs(defaults, cp.opts.EtcdFlags)
	}
	client := &http.Client{Timeout: 2 * time.Second}
	ready := func(ctx context.Context, ports []int) error {
		return probe(ctx, client, loopbackURL("http", ports[0])+"/health", `"health":"true"`)
	}
	ports, _, err := cp.startWithRetry(ctx, BinEtcd, 3, args, ready)
	if err != nil {
		return err
	}
	cp.EtcdURL = loopbackURL("http", ports[0])
	return nil
}

func (cp *ControlPlane) adminTLSConfig() (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cp.pki.caCertPEM) {
		return nil, errors.New("bad CA certificate")
	}
	cert, err := tls.X509KeyPair(cp.pki.adminCertPEM, cp.pki.adminKeyPEM)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

func (cp *ControlPlane) startAPIServer(ctx context.Context) error {
	tlsConfig, err := cp.adminTLSConfig()
	if err != nil {
		return err
	}
	args := func(ports []int) []string {
		defaults := map[string]string{
			"etcd-servers":                     cp.EtcdURL,
			"bind-address":                     "127.0.0.1",
			"advertise-address":                "127.0.0.1",
			"endpoint-reconciler-type":         "none",
			"secure-port":                      strconv.Itoa(ports[0]),
			"cert-dir":                         filepath.Join(cp.Dir, "apiserver-certs"),
			"tls-cert-file":                    cp.files.servingCert,
			"tls-private-key-file":             cp.files.servingKey,
			"client-ca-file":                   cp.files.caCert,
			"service-account-issuer":           serviceAccountIssuer,
			"service-account-key-file":         cp.files.saPub,
			"service-account-signing-key-file": cp.files.saKey,
			"service-cluster-ip-range":         serviceClusterIPRange,
			"authorization-mode":               "RBAC",
			"allow-privileged":                 "true",
		}
		return flagArgs(defaults, cp.opts.APIServerFlags)
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	defer client.CloseIdleConnections()
	ready := func(ctx context.Context, ports []int) error {
		return probe(ctx, client, loopbackURL("https", ports[0])+"/readyz", "ok")
	}
	ports, _, err := cp.startWithRetry(ctx, BinAPIServer, 1, args, ready)
	if err != nil {
		return err
	}
	cp.APIServerURL = loopbackURL("https", ports[0])
	cp.restConfig = &rest.Config{
		Host: cp.APIServerURL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   cp.pki.caCertPEM,
			CertData: cp.pki.adminCertPEM,
			KeyData:  cp.pki.adminKeyPEM,
		},
		QPS:   100,
		Burst: 200,
	}
	return nil
}

func (cp *ControlPlane) writeKubeconfig() error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["portreeve"] = &clientcmdapi.Cluster{
		Server:                   cp.APIServerURL,
		CertificateAuthorityData: cp.pki.caCertPEM, // the CA only, no chain
	}
	cfg.AuthInfos[adminUser] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cp.pki.adminCertPEM,
		ClientKeyData:         cp.pki.adminKeyPEM,
	}
	cfg.Contexts["portreeve"] = &clientcmdapi.Context{Cluster: "portreeve", AuthInfo: adminUser, Namespace: metav1.NamespaceDefault}
	cfg.CurrentContext = "portreeve"
	path := filepath.Join(cp.Dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	cp.KubeconfigPath = path
	return nil
}

func (cp *ControlPlane) startControllerManager(ctx context.Context) error {
	args := func(ports []int) []string {
		defaults := map[string]string{
			"kubeconfig":                       cp.KubeconfigPath,
			"leader-elect":                     "false",
			"use-service-account-credentials":  "true",
			"service-account-private-key-file": cp.files.saKey,
			"root-ca-file":                     cp.files.caCert,
			"cluster-signing-cert-file":        cp.files.caCert,
			"cluster-signing-key-file":         cp.files.caKey,
			"service-cluster-ip-range":         serviceClusterIPRange,
			"bind-address":                     "127.0.0.1",
			"secure-port":                      strconv.Itoa(ports[0]),
			"cert-dir":                         filepath.Join(cp.Dir, "kcm-certs"),
			// Else it creates /usr/libexec/kubernetes/kubelet-plugins on the host.
			"flex-volume-plugin-dir": filepath.Join(cp.Dir, "flexvolume"),
		}
		return flagArgs(defaults, cp.opts.ControllerManagerFlags)
	}
	// The controller manager serves /healthz with a self-signed certificate
	// it made itself; only liveness is checked here, so skip verification.
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback health probe
	}}
	defer client.CloseIdleConnections()
	ready := func(ctx context.Context, ports []int) error {
		return probe(ctx, client, loopbackURL("https", ports[0])+"/healthz", "ok")
	}
	_, kcm, err := cp.startWithRetry(ctx, BinControllerManager, 1, args, ready)
	if err != nil {
		return err
	}
	// /healthz answers before the controllers run (they start together a few
	// seconds later). Wait until the ServiceAccount controller has given the
	// default namespace its ServiceAccount, so callers can rely on them.
	cs, err := cp.Clientset()
	if err != nil {
		return err
	}
	return waitReady(ctx, kcm, func(ctx context.Context) error {
		_, err := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

// EnsureNamespace creates the namespace (or merges labels into an existing
// one) and its default ServiceAccount, so Pods can be created there without
// kube-controller-manager.
func (cp *ControlPlane) EnsureNamespace(ctx context.Context, name string, labels map[string]string) error {
	cs, err := cp.Clientset()
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	_, err = cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		if len(labels) > 0 {
			err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
				cur, err := cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				if cur.Labels == nil {
					cur.Labels = map[string]string{}
				}
				for k, v := range labels {
					cur.Labels[k] = v
				}
				_, err = cs.CoreV1().Namespaces().Update(ctx, cur, metav1.UpdateOptions{})
				return err
			})
			if err != nil {
				return fmt.Errorf("label namespace %s: %w", name, err)
			}
		}
	case err != nil:
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: name}}
	if _, err := cs.CoreV1().ServiceAccounts(name).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create default ServiceAccount in %s: %w", name, err)
	}
	return nil
}

// Kubectl runs the kubectl binary against the control plane.
func (cp *ControlPlane) Kubectl(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	return cp.KubectlStdin(ctx, nil, args...)
}

// KubectlStdin is Kubectl with stdin (for `apply -f -`).
func (cp *ControlPlane) KubectlStdin(ctx context.Context, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	env := []string{
		"KUBECONFIG=" + cp.KubeconfigPath,
		"KUBECACHEDIR=" + filepath.Join(cp.Dir, "kubectl-cache"),
	}
	return cp.runTool(ctx, BinKubectl, stdin, env, append([]string{"--kubeconfig=" + cp.KubeconfigPath}, args...))
}

// Helm runs the helm binary against the control plane, with its cache,
// config and data homes inside the temp dir.
func (cp *ControlPlane) Helm(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	h := filepath.Join(cp.Dir, "helm")
	env := []string{
		"KUBECONFIG=" + cp.KubeconfigPath,
		"HELM_CACHE_HOME=" + filepath.Join(h, "cache"),
		"HELM_CONFIG_HOME=" + filepath.Join(h, "config"),
		"HELM_DATA_HOME=" + filepath.Join(h, "data"),
	}
	return cp.runTool(ctx, BinHelm, nil, env, append([]string{"--kubeconfig=" + cp.KubeconfigPath}, args...))
}

func (cp *ControlPlane) runTool(ctx context.Context, name string, stdin io.Reader, env, args []string) (string, string, error) {
	bin := filepath.Join(cp.BinDir, name)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = stdin
	var out, errOut strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &errOut
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s %s: %w: %s", name, strings.Join(args[1:], " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), errOut.String(), err
}

// waitReady polls check every 100 ms until it succeeds, the process exits
// or ctx ends; errors carry the tail of the process log.
func waitReady(ctx context.Context, p *process, check func(context.Context) error) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = check(ctx); last == nil {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("%s exited while starting: %w", p.Name, p.exitError())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last probe: %v)%s", p.Name, ctx.Err(), last, p.LogTail(40))
		case <-tick.C:
		}
	}
}

// probe GETs url and wants 200 and a body containing want.
func probe(ctx context.Context, client *http.Client, url, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

func loopbackURL(scheme string, port int) string {
	return scheme + "://127.0.0.1:" + strconv.Itoa(port)
}

// freePorts returns n distinct free loopback ports. All listeners are held
// until every port is chosen, so the ports differ from each other.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// MissingToolsError is returned by Start when binaries are missing.
type MissingToolsError struct {
	BinDir  string
	Missing []string
}

func (e *MissingToolsError) Error() string {
	return fmt.Sprintf("control-plane binaries missing in %s: %s (build them with hack/tools.sh)", e.BinDir, strings.Join(e.Missing, ", "))
}

// MissingTools returns the names that are not executable files in binDir.
// With no names it checks etcd, kube-apiserver, kube-controller-manager,
// kubectl and helm.
func MissingTools(binDir string, names ...string) []string {
	if len(names) == 0 {
		names = []string{BinEtcd, BinAPIServer, BinControllerManager, BinKubectl, BinHelm}
	}
	var missing []string
	for _, n := range names {
		st, err := os.Stat(filepath.Join(binDir, n))
		if err != nil || st.IsDir() || st.Mode().Perm()&0o111 == 0 {
			missing = append(missing, n)
		}
	}
	return missing
}

// ResolveBinDir returns binDir if set, else $PORTREEVE_BIN_DIR, else the
// output of `hack/tools.sh bindir` in the repository root.
func ResolveBinDir(binDir string) (string, error) {
	if binDir != "" {
		return filepath.Abs(binDir)
	}
	if env := os.Getenv(EnvBinDir); env != "" {
		return filepath.Abs(env)
	}
	root, err := RepoRoot()
	if err != nil {
		return "", fmt.Errorf("find the bin dir (set %s or Options.BinDir): %w", EnvBinDir, err)
	}
	out, err := exec.Command("bash", filepath.Join(root, "hack", "tools.sh"), "bindir").Output()
	if err != nil {
		return "", fmt.Errorf("hack/tools.sh bindir: %w", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", errors.New("hack/tools.sh bindir printed nothing")
	}
	return dir, nil
}

// RepoRoot walks up from the working directory to the folder whose go.mod
// declares module github.com/portreeve/portreeve.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if modulePathOf(filepath.Join(dir, "go.mod")) == ModulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above the working directory", ModulePath)
		}
		dir = parent
	}
}

func modulePathOf(goMod string) string {
	f, err := os.Open(goMod)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}
