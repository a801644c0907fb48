// Package node runs a real Kubernetes node beside a control plane started
// by test/controlplane: containerd, runc and the CNI plugins from Debian
// packages, kubelet, kube-scheduler and kube-proxy built with the other
// tools (hack/tools.sh node), and images imported from tarballs (`make
// image`, `make pause-image`) instead of pulled. Pods then really run, the
// apiserver calls webhooks at their endpoints, and hostPorts are real.
//
// A node changes global host state, so:
//   - one node stack per machine: Start takes a lock and refuses while
//     another runs (or while any kubelet runs);
//   - Start records a snapshot of the host (Snapshot) before its first
//     change, Stop undoes everything and then compares a new snapshot with
//     it: anything left is an error. A stack whose process died is torn
//     down by the next Start (or `go run ./test/node/cmd/node-clean`);
//   - every address is a virtual one of this machine: the node address on
//     a veth pair the node creates, the pods on its own bridge, the Service
//     range, all inside one block with a blackhole route, so a packet to any
//     other address of the block is dropped here; an nftables table drops
//     whatever pods send outside the block, and the daemons' HTTP proxy is
//     a closed loopback port (no image is ever pulled).
//
// It needs root, Linux, and the control plane's flags from APIServerFlags.
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/portreeve/portreeve/test/controlplane"

	"github.com/portreeve/portreeve/test/proc"
)

// Names of the node binaries in the tools bin folder.
const (
	BinKubelet       = "kubelet"
	BinKubeScheduler = "kube-scheduler"
	BinKubeProxy     = "kube-proxy"
)

// Defaults of Options.
const (
	DefaultName    = "portreeve-node"
	DefaultNodeIP  = "10.97.255.1"
	DefaultPodCIDR = "10.97.0.0/24"
	// DefaultBlock holds the control plane's Service range (10.96.0.0/16),
	// the pod range and the node address.
	DefaultBlock = "10.96.0.0/15"

	bridgeName = "prt-br0"
	hostVeth   = "prt-node0"
	guardTable = "portreeve_node_guard"
	dirPrefix  = "portreeve-node-"
	// relayPort is where the node address forwards to the apiserver (the
	// kubernetes Service's endpoint).
	relayPort = 6443
)

// APIServerFlags are the kube-apiserver flags a control plane needs for a
// node: webhooks and services are called at their endpoints' addresses (no
// kube-proxy on the apiserver's path), and the kubelet is reached at its
// node address.
func APIServerFlags() map[string]string {
	return map[string]string{
		"enable-aggregator-routing":       "true",
		"kubelet-preferred-address-types": "InternalIP,Hostname",
	}
}

// Options configure Start.
type Options struct {
	// BinDir holds kubelet, kube-scheduler and kube-proxy; empty means the
	// control plane's.
	BinDir string
	// SandboxImage is a docker-archive tarball of the pod sandbox image
	// (`make pause-image`); its tag becomes containerd's sandbox_image.
	SandboxImage string
	// Images are more docker-archive tarballs to import (`make image`).
	Images []string
	// Name is the node name (default portreeve-node).
	Name string
	// NodeIP, PodCIDR and Block default to DefaultNodeIP, DefaultPodCIDR
	// and DefaultBlock. Block must hold the other two and the Service range.
	NodeIP, PodCIDR, Block string
	// Logs, if set, also receives the daemons' output, each line prefixed
	// with "[name] ".
	Logs io.Writer
	// LogDir, if set, keeps the daemons' logs after Stop; by default they
	// live in the node's dir and go with it.
	LogDir string
	// StartTimeout bounds Start (default 3 minutes).
	StartTimeout time.Duration
}

// Node is a running node. Fields are read-only.
type Node struct {
	Name   string
	IP     string
	Dir    string
	LogDir string
	// ContainerdSocket is containerd's gRPC socket (for ctr --address).
	ContainerdSocket string
	// SandboxImage and Images are the imported image references.
	SandboxImage string
	Images       []string

	cp     *controlplane.ControlPlane
	opts   Options
	binDir string
	rec    *record
	lock   *hostLock
	relay  net.Listener

	mu       sync.Mutex
	procs    map[string]*proc.Process
	stopOnce sync.Once
	stopErr  error
	sigStop  chan struct{}
	// StartTook is how long Start took; TeardownTook how long Stop took
	// (the teardown and the host-clean check).
	StartTook, TeardownTook time.Duration
}

// Start installs the packages if needed, takes the host lock, tears down
// what a dead earlier stack left, snapshots the host and starts containerd,
// kubelet, kube-scheduler and kube-proxy against cp; it returns once the
// node is Ready. On error everything is undone.
func Start(ctx context.Context, cp *controlplane.ControlPlane, opts Options) (n *Node, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("a node needs root")
	}
	began := time.Now()
	if err := opts.defaults(cp); err != nil {
		return nil, err
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = 3 * time.Minute
	}
	parent := ctx
	if missing := controlplane.MissingTools(opts.BinDir, BinKubelet, BinKubeScheduler, BinKubeProxy); len(missing) > 0 {
		return nil, &controlplane.MissingToolsError{BinDir: opts.BinDir, Missing: missing}
	}
	for _, img := range append([]string{opts.SandboxImage}, opts.Images...) {
		if _, err := os.Stat(img); err != nil {
			return nil, fmt.Errorf("image tarball: %w", err)
		}
	}
	lock, err := acquireLock()
	if err != nil {
		return nil, err
	}
	// Under the lock: two test binaries never run apt-get at once. A cold
	// install may take longer than the start itself.
	pkgCtx, pkgCancel := context.WithTimeout(parent, 15*time.Minute)
	err = EnsurePackages(pkgCtx)
	pkgCancel()
	if err != nil {
		lock.release()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	if procs := foreignNodeProcesses(); len(procs) > 0 {
		lock.release()
		return nil, fmt.Errorf("%w: %s", ErrNodeRunning, strings.Join(procs, ", "))
	}
	if err := Recover(ctx); err != nil {
		lock.release()
		return nil, fmt.Errorf("tear down the node stack of a process that died: %w", err)
	}
	before, err := TakeSnapshot(ctx)
	if err != nil {
		lock.release()
		return nil, err
	}
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		lock.release()
		return nil, err
	}
	n = &Node{
		Name: opts.Name, IP: opts.NodeIP, Dir: dir, cp: cp, opts: opts, binDir: opts.BinDir, lock: lock,
		ContainerdSocket: filepath.Join(dir, "containerd", "containerd.sock"),
		procs:            map[string]*proc.Process{},
		sigStop:          make(chan struct{}),
	}
	n.LogDir = opts.LogDir
	if n.LogDir == "" {
		n.LogDir = filepath.Join(dir, "logs")
	}
	n.rec = &record{PID: os.Getpid(), Dir: dir, Bridge: bridgeName, HostVeth: hostVeth, Block: opts.Block, GuardTable: guardTable, Before: before}
	if err := n.rec.save(); err != nil {
		_ = os.RemoveAll(dir)
		lock.release()
		return nil, err
	}
	n.handleSignals()
	started := n
	defer func() {
		if err != nil {
			if serr := started.Stop(); serr != nil {
				err = fmt.Errorf("%w (and the teardown: %v)", err, serr)
			}
			n = nil
		}
	}()
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"prepare folders", n.prepare},
		{"network", n.setupNetwork},
		{"containerd", n.startContainerd},
		{"cluster objects", n.clusterObjects},
		{"kubelet", n.startKubelet},
		{"kube-scheduler", n.startScheduler},
		{"kube-proxy", n.startKubeProxy},
		{"node Ready", n.waitReady},
	}
	for _, s := range steps {
		if err := s.fn(ctx); err != nil {
			return nil, fmt.Errorf("node: %s: %w", s.name, err)
		}
	}
	n.StartTook = time.Since(began)
	return n, nil
}

func (o *Options) defaults(cp *controlplane.ControlPlane) error {
	if o.BinDir == "" {
		o.BinDir = cp.BinDir
	}
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.NodeIP == "" {
		o.NodeIP = DefaultNodeIP
	}
	if o.PodCIDR == "" {
		o.PodCIDR = DefaultPodCIDR
	}
	if o.Block == "" {
		o.Block = DefaultBlock
	}
	if o.SandboxImage == "" {
		return errors.New("Options.SandboxImage is required (make pause-image)")
	}
	_, block, err := net.ParseCIDR(o.Block)
	if err != nil {
		return fmt.Errorf("Block: %w", err)
	}
	ip := net.ParseIP(o.NodeIP)
	if ip == nil || ip.To4() == nil {
		return fmt.Errorf("NodeIP %q: not an IPv4 address", o.NodeIP)
	}
	podIP, pods, err := net.ParseCIDR(o.PodCIDR)
	if err != nil {
		return fmt.Errorf("PodCIDR: %w", err)
	}
	svc := net.ParseIP("10.96.0.1") // the control plane's kubernetes Service
	for what, a := range map[string]net.IP{"NodeIP": ip, "PodCIDR": podIP, "the Service range": svc} {
		if !block.Contains(a) {
			return fmt.Errorf("%s is outside Block %s", what, o.Block)
		}
	}
	if pods.Contains(ip) {
		return fmt.Errorf("NodeIP %s lies in PodCIDR %s", o.NodeIP, o.PodCIDR)
	}
	return nil
}

func (n *Node) path(parts ...string) string {
	return filepath.Join(append([]string{n.Dir}, parts...)...)
}

// prepare writes the configuration files and the kubelet's kubeconfig, and
// makes the kubelet's root dir a shared mount of its own (else kubelet fails
// with "invalid cross-device link").
func (n *Node) prepare(ctx context.Context) error {
	for _, d := range []string{"containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "volume-plugins", "scheduler", "kube-proxy"} {
		if err := os.MkdirAll(n.path(d), 0o755); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(n.LogDir, 0o755); err != nil {
		return err
	}
	ref, err := ImageRef(n.opts.SandboxImage)
	if err != nil {
		return err
	}
	n.SandboxImage = ref
	for _, img := range n.opts.Images {
		r, err := ImageRef(img)
		if err != nil {
			return err
		}
		n.Images = append(n.Images, r)
	}
	files := map[string]string{
		n.path("containerd", "config.toml"):             containerdConfig(n.Dir, ref),
		n.path("cni", "net.d", "10-portreeve.conflist"): cniConfig(n.Dir, bridgeName, n.opts.PodCIDR),
		n.path("nft-guard.conf"):                        guardRules(guardTable, bridgeName, n.opts.Block),
	}
	for p, content := range files {
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			return err
		}
	}
	if err := kubeletKubeconfig(n.cp, n.Name, n.path("kubelet.kubeconfig")); err != nil {
		return err
	}
	root := n.path("kubelet")
	if err := syscall.Mount(root, root, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mount %s: %w", root, err)
	}
	if err := syscall.Mount("", root, "", syscall.MS_SHARED|syscall.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s rshared: %w", root, err)
	}
	return nil
}

// setupNetwork creates the veth pair holding the node address, the
// blackhole route for the block and the guard table.
func (n *Node) setupNetwork(ctx context.Context) error {
	cmds := [][]string{
		{"ip", "link", "add", hostVeth, "type", "veth", "peer", "name", peerVeth(hostVeth)},
		{"ip", "addr", "add", n.IP + "/32", "dev", hostVeth},
		{"ip", "link", "set", hostVeth, "up"},
		{"ip", "link", "set", peerVeth(hostVeth), "up"},
		{"ip", "route", "add", "blackhole", n.opts.Block},
		{"nft", "-f", n.path("nft-guard.conf")},
	}
	for _, c := range cmds {
		if _, err := run(ctx, c[0], c[1:]...); err != nil {
			return err
		}
	}
	return nil
}

func (n *Node) launch(name, binary string, args []string) (*proc.Process, error) {
	p, err := proc.Start(proc.Options{
		Name: name, Binary: binary, Args: args, Env: proxyEnv(n.IP, n.opts.Block),
		LogPath: filepath.Join(n.LogDir, name+".log"), AppendLog: true, Logs: n.opts.Logs, StopGrace: stopGrace,
	})
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.procs[name] = p
	n.mu.Unlock()
	return p, nil
}

// waitFor polls check every 200 ms until it succeeds, p exits or ctx ends.
func waitFor(ctx context.Context, p *proc.Process, what string, check func(context.Context) error) error {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	var last error
	for {
		if last = check(ctx); last == nil {
			return nil
		}
		if p != nil {
			select {
			case <-p.Done():
				return fmt.Errorf("%s exited while starting: %v%s", p.Name, p.WaitErr(), p.LogTail(30))
			default:
			}
		}
		select {
		case <-ctx.Done():
			tail := ""
			if p != nil {
				tail = p.LogTail(30)
			}
			return fmt.Errorf("%s: %w (last: %v)%s", what, ctx.Err(), last, tail)
		case <-t.C:
		}
	}
}

func (n *Node) startContainerd(ctx context.Context) error {
	p, err := n.launch("containerd", "containerd", []string{"--config", n.path("containerd", "config.toml"), "--log-level", "warn"})
	if err != nil {
		return err
	}
	if err := waitFor(ctx, p, "containerd ready", func(ctx context.Context) error {
		_, err := n.Ctr(ctx, "version")
		return err
	}); err != nil {
		return err
	}
	return n.importImages(ctx, append([]string{n.opts.SandboxImage}, n.opts.Images...))
}

// clusterObjects gives the node's kubelet its RBAC (the apiserver runs RBAC
// only, no Node authorizer), and makes the kubernetes Service reachable from
// pods: a relay on the node address forwards to the apiserver on loopback,
// and an EndpointSlice names it.
func (n *Node) clusterObjects(ctx context.Context) error {
	cs, err := n.cp.Clientset()
	if err != nil {
		return err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "portreeve-test-nodes"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: "system:nodes"}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if err := n.startRelay(); err != nil {
		return err
	}
	return ensureKubernetesEndpoints(ctx, cs, n.IP, relayPort)
}

func ensureKubernetesEndpoints(ctx context.Context, cs kubernetes.Interface, ip string, port int32) error {
	// The Service itself is created by the apiserver a moment after start.
	if err := waitFor(ctx, nil, "the kubernetes Service", func(ctx context.Context) error {
		_, err := cs.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
		return err
	}); err != nil {
		return err
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      "kubernetes-portreeve-node",
			Namespace: metav1.NamespaceDefault,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: "kubernetes",
				discoveryv1.LabelManagedBy:   "portreeve-test-node",
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	_, err := cs.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).Create(ctx, slice, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// startRelay forwards <node address>:relayPort to the apiserver.
func (n *Node) startRelay() error {
	l, err := net.Listen("tcp", net.JoinHostPort(n.IP, itoa(relayPort)))
	if err != nil {
		return err
	}
	n.relay = l
	target := strings.TrimPrefix(n.cp.APIServerURL, "https://")
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go relayConn(c, target)
		}
	}()
	return nil
}

func relayConn(c net.Conn, target string) {
	defer c.Close()
	up, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}

func (n *Node) startKubelet(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	cfg := n.path("kubelet-config.yaml")
	if err := os.WriteFile(cfg, []byte(kubeletConfig(n.Dir, n.IP, n.ContainerdSocket, port)), 0o600); err != nil {
		return err
	}
	args := []string{
		"--config=" + cfg,
		"--kubeconfig=" + n.path("kubelet.kubeconfig"),
		"--root-dir=" + n.path("kubelet"),
		"--hostname-override=" + n.Name,
		"--node-ip=" + n.IP,
		"--v=1",
	}
	p, err := n.launch("kubelet", filepath.Join(n.binDir, BinKubelet), args)
	if err != nil {
		return err
	}
	cs, err := n.cp.Clientset()
	if err != nil {
		return err
	}
	return waitFor(ctx, p, "kubelet registered", func(ctx context.Context) error {
		_, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		return err
	})
}

func (n *Node) startScheduler(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	kc := n.cp.KubeconfigPath
	args := []string{
		"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=" + itoa(port),
		"--cert-dir=" + n.path("scheduler"),
	}
	_, err = n.launch("kube-scheduler", filepath.Join(n.binDir, BinKubeScheduler), args)
	return err
}

func (n *Node) startKubeProxy(ctx context.Context) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	cfg := n.path("kube-proxy", "config.yaml")
	if err := os.WriteFile(cfg, []byte(kubeProxyConfig(n.cp.KubeconfigPath, n.Name, n.IP, n.opts.PodCIDR, ports[0], ports[1])), 0o600); err != nil {
		return err
	}
	_, err = n.launch("kube-proxy", filepath.Join(n.binDir, BinKubeProxy), []string{"--config=" + cfg, "--v=1"})
	return err
}

// waitReady waits for the node's Ready condition and for the kube-proxy
// rules of the kubernetes Service.
func (n *Node) waitReady(ctx context.Context) error {
	cs, err := n.cp.Clientset()
	if err != nil {
		return err
	}
	return waitFor(ctx, n.procs["kubelet"], "node Ready", func(ctx context.Context) error {
		if err := n.Failed(); err != nil {
			return err
		}
		node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("node %s not Ready: %s", n.Name, c.Message)
			}
		}
		return fmt.Errorf("node %s has no Ready condition yet", n.Name)
	})
}

// Failed returns an error if one of the daemons has exited.
func (n *Node) Failed() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	for _, p := range n.procs {
		errs = append(errs, unexpectedExit(p))
	}
	return errors.Join(errs...)
}

// Stop stops the daemons, removes every container, tears down what the
// node changed on the host and checks that the host is as it was before
// Start. Its error lists whatever is left. Safe to call more than once.
func (n *Node) Stop() error {
	n.stopOnce.Do(func() {
		start := time.Now()
		n.stopErr = n.stop()
		n.TeardownTook = time.Since(start)
		close(n.sigStop)
	})
	return n.stopErr
}

func (n *Node) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var errs []error
	if n.relay != nil {
		n.relay.Close()
	}
	n.mu.Lock()
	procs := n.procs
	n.mu.Unlock()
	for _, name := range []string{"kube-proxy", "kube-scheduler", "kubelet"} {
		if p := procs[name]; p != nil {
			if err := p.Stop(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if p := procs["containerd"]; p != nil {
		if !p.Exited() {
			n.removeContainers(ctx)
		}
		if err := p.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := CleanAndCheck(ctx, n.rec); err != nil {
		// The record stays: the next Start (or node-clean) tries again.
		errs = append(errs, err)
	} else {
		_ = os.Remove(recordPath())
	}
	n.lock.release()
	return errors.Join(errs...)
}

// removeContainers kills and deletes every task and container through
// containerd, so the shims unmount the root filesystems and exit.
func (n *Node) removeContainers(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out, _ := n.Ctr(ctx, "tasks", "ls", "-q")
	tasks := nonEmptyLines(out)
	for _, id := range tasks {
		_, _ = n.Ctr(ctx, "tasks", "kill", "--all", "--signal", "SIGKILL", id)
	}
	for _, id := range tasks {
		for i := 0; i < 50; i++ {
			if _, err := n.Ctr(ctx, "tasks", "rm", "--force", id); err == nil || strings.Contains(err.Error(), "not found") {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	out, _ = n.Ctr(ctx, "containers", "ls", "-q")
	for _, id := range nonEmptyLines(out) {
		_, _ = n.Ctr(ctx, "containers", "rm", id)
	}
}

// CleanAndCheck tears down what the node stack of r changed (teardown),
// then compares the host with r's snapshot, trying again for a few seconds
// while the kernel finishes (devices of dying network namespaces). It
// returns an error naming what is left.
func CleanAndCheck(ctx context.Context, r *record) error {
	var diff []string
	var terr error
	for attempt := 0; attempt < 5; attempt++ {
		terr = teardown(ctx, r)
		after, err := TakeSnapshot(ctx)
		if err != nil {
			return err
		}
		if diff = r.Before.Diff(after); len(diff) == 0 && terr == nil {
			return nil
		}
		time.Sleep(time.Second)
	}
	if len(diff) > 0 {
		return fmt.Errorf("host not clean after the node's teardown:\n  %s\n(teardown: %v)", strings.Join(diff, "\n  "), terr)
	}
	return terr
}

// Recover tears down a node stack whose process died without doing so (its
// record is still there) and checks the host. The caller must hold the
// lock, or know that no node stack runs.
func Recover(ctx context.Context) error {
	r, err := loadRecord()
	if err != nil || r == nil {
		return err
	}
	if r.Before == nil {
		_ = os.Remove(recordPath())
		return nil
	}
	// One more full teardown; its record goes either way, so a host that
	// cannot be cleaned fails one run, not every run after it.
	err = CleanAndCheck(ctx, r)
	_ = os.Remove(recordPath())
	return err
}

// handleSignals tears the node down on SIGINT or SIGTERM, then raises the
// signal again (the control plane's own handler stops it meanwhile).
func (n *Node) handleSignals() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		defer signal.Stop(ch)
		select {
		case <-n.sigStop:
		case sig := <-ch:
			if err := n.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "node: torn down after %v: %v\n", sig, err)
			} else {
				fmt.Fprintf(os.Stderr, "node: torn down after %v; host clean\n", sig)
			}
			signal.Stop(ch)
			if s, ok := sig.(syscall.Signal); ok {
				_ = syscall.Kill(os.Getpid(), s)
			}
		}
	}()
}

// Pods returns a client for the control plane (a shortcut for tests).
func (n *Node) Clientset() (*kubernetes.Clientset, error) { return n.cp.Clientset() }

func freePort() (int, error) {
	p, err := freePorts(1)
	if err != nil {
		return 0, err
	}
	return p[0], nil
}

func freePorts(k int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < k; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Clean takes the host lock and runs Recover: the teardown of a node stack
// whose process died. It fails while a node stack runs.
func Clean(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root")
	}
	lock, err := acquireLock()
	if err != nil {
		return err
	}
	defer lock.release()
	if procs := foreignNodeProcesses(); len(procs) > 0 {
		return fmt.Errorf("%w: %s", ErrNodeRunning, strings.Join(procs, ", "))
	}
	return Recover(ctx)
}
