package node

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/portreeve/portreeve/test/controlplane"
)

// These tests need neither root nor a node.

func TestSnapshotDiff(t *testing.T) {
	before := &Snapshot{
		Sysctls: map[string]string{"net.ipv4.ip_forward": "0", "kernel.panic": "1", "kernel.ns_last_pid": "10"},
		Links:   []string{"eth0", "lo"},
		Routes:  []string{"default via 192.0.2.1 dev eth0"},
		Mounts:  []string{"/ ext4"},
		Paths:   map[string][]string{"/var/lib/kubelet": nil, "/var/log/containers": {"."}},
	}
	after := &Snapshot{
		Sysctls: map[string]string{"net.ipv4.ip_forward": "1", "kernel.panic": "1", "kernel.ns_last_pid": "99"},
		Links:   []string{"eth0", "lo", "prt-br0"},
		Routes:  []string{"default via 192.0.2.1 dev eth0", "blackhole 10.96.0.0/15"},
		Mounts:  []string{"/ ext4", "/tmp/portreeve-node-1/kubelet ext4"},
		Paths:   map[string][]string{"/var/lib/kubelet": {".", "device-plugins"}, "/var/log/containers": {".", "x.log"}},
	}
	got := before.Diff(after)
	want := []string{
		`sysctl net.ipv4.ip_forward = "1", was "0"`,
		"network device added: prt-br0",
		"route added: blackhole 10.96.0.0/15",
		"mount added: /tmp/portreeve-node-1/kubelet ext4",
		"path /var/lib/kubelet exists, did not before",
		"path /var/log/containers: added: x.log",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if d := before.Diff(before); len(d) != 0 {
		t.Errorf("a snapshot differs from itself: %q", d)
	}
	// The record survives JSON (it is how a dead stack's teardown learns it).
	b, err := json.Marshal(before)
	if err != nil {
		t.Fatal(err)
	}
	var back Snapshot
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if d := before.Diff(&back); len(d) != 0 {
		t.Errorf("after a JSON round trip: %q", d)
	}
}

func TestParsers(t *testing.T) {
	if got := linkName("7: veth1b1cbdc4@if2: <BROADCAST,MULTICAST,UP> mtu 1500"); got != "veth1b1cbdc4" {
		t.Errorf("linkName = %q", got)
	}
	if got := addrKey("2: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever"); got != "eth0 inet 192.0.2.2/24" {
		t.Errorf("addrKey = %q", got)
	}
	if comm, state := parseStat("123 (containerd-shim) S 1 123 123 0"); comm != "containerd-shim" || state != "S" {
		t.Errorf("parseStat = %q %q", comm, state)
	}
	if comm, state := parseStat("9 (a) b) Z 1"); comm != "a) b" || state != "Z" {
		t.Errorf("parseStat with a parenthesis in comm = %q %q", comm, state)
	}
	if got := unescapeMount(`/tmp/a\040b`); got != "/tmp/a b" {
		t.Errorf("unescapeMount = %q", got)
	}
	rule := `KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https cluster IP" -j KUBE-SVC-NPX46M4PTMTKRN6Y`
	want := []string{"KUBE-SERVICES", "-d", "10.96.0.1/32", "-p", "tcp", "-m", "comment", "--comment", "default/kubernetes:https cluster IP", "-j", "KUBE-SVC-NPX46M4PTMTKRN6Y"}
	if got := splitRule(rule); !reflect.DeepEqual(got, want) {
		t.Errorf("splitRule = %q", got)
	}
	nft := "table ip nat {\n\tchain KUBE-SERVICES {\n\t\tcounter packets 0 bytes 0 jump KUBE-X\n\t}\n}\n"
	lines := withContext(counterRE.ReplaceAllString(nft, "counter"), "table ", "chain ")
	if last := lines[len(lines)-1]; last != "table ip nat | chain KUBE-SERVICES | counter jump KUBE-X" {
		t.Errorf("withContext: %q", lines)
	}
	for ref, want := range map[string]string{
		"portreeve/portreeve:v1":         "docker.io/portreeve/portreeve:v1",
		"busybox:1":                      "docker.io/library/busybox:1",
		"localhost/portreeve/pause:test": "localhost/portreeve/pause:test",
		"registry.k8s.io/pause:3.10":     "registry.k8s.io/pause:3.10",
	} {
		if got := NormalizeRef(ref); got != want {
			t.Errorf("NormalizeRef(%s) = %s, want %s", ref, got, want)
		}
	}
	if !volatile("kernel.random.uuid") || volatile("kernel.panic") {
		t.Error("volatile misjudges")
	}
}

func TestOptions(t *testing.T) {
	cp := &controlplane.ControlPlane{BinDir: "/bin"}
	tests := []struct {
		name string
		opts Options
		err  string
	}{
		{"defaults", Options{SandboxImage: "x.tar"}, ""},
		{"no sandbox", Options{}, "SandboxImage is required"},
		{"node outside block", Options{SandboxImage: "x.tar", NodeIP: "192.168.0.1"}, "NodeIP is outside"},
		{"pods outside block", Options{SandboxImage: "x.tar", PodCIDR: "10.200.0.0/24"}, "PodCIDR is outside"},
		{"block without services", Options{SandboxImage: "x.tar", Block: "10.97.0.0/16"}, "Service range is outside"},
		{"node among pods", Options{SandboxImage: "x.tar", NodeIP: "10.97.0.9"}, "lies in PodCIDR"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			err := o.defaults(cp)
			if tc.err == "" {
				if err != nil || o.Name != DefaultName || o.BinDir != "/bin" || o.Block != DefaultBlock {
					t.Fatalf("defaults: %v %+v", err, o)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
		})
	}
}

// TestConfigs: the daemons' files are valid and keep every path inside the
// node's dir, with the settings a node on this kind of machine needs.
func TestConfigs(t *testing.T) {
	dir := "/tmp/portreeve-node-x"
	ctrd := containerdConfig(dir, "localhost/portreeve/pause:test")
	for _, want := range []string{`restrict_oom_score_adj = true`, `SystemdCgroup = false`, `netns_mounts_under_state_dir = true`,
		`sandbox_image = "localhost/portreeve/pause:test"`, `bin_dir = "/usr/lib/cni"`, `root = "` + dir} {
		if !strings.Contains(ctrd, want) {
			t.Errorf("containerd config lacks %s", want)
		}
	}
	var cni map[string]any
	if err := json.Unmarshal([]byte(cniConfig(dir, bridgeName, DefaultPodCIDR)), &cni); err != nil {
		t.Fatalf("CNI config: %v", err)
	}
	var kubelet map[string]any
	if err := yaml.Unmarshal([]byte(kubeletConfig(dir, DefaultNodeIP, dir+"/c.sock", 10248)), &kubelet); err != nil {
		t.Fatalf("kubelet config: %v", err)
	}
	for k, want := range map[string]any{"cgroupDriver": "cgroupfs", "failCgroupV1": false, "failSwapOn": false, "address": DefaultNodeIP,
		"podLogsDir": dir + "/pod-logs", "readOnlyPort": float64(0)} {
		if kubelet[k] != want {
			t.Errorf("kubelet %s = %v, want %v", k, kubelet[k], want)
		}
	}
	var proxy map[string]any
	if err := yaml.Unmarshal([]byte(kubeProxyConfig("/k", "n", DefaultNodeIP, DefaultPodCIDR, 1, 2)), &proxy); err != nil {
		t.Fatalf("kube-proxy config: %v", err)
	}
	if proxy["mode"] != "iptables" || !reflect.DeepEqual(proxy["nodePortAddresses"], []any{DefaultNodeIP + "/32"}) {
		t.Errorf("kube-proxy config %v", proxy)
	}
	if g := guardRules(guardTable, bridgeName, DefaultBlock); !strings.Contains(g, `iifname "prt-br0" ip daddr != 10.96.0.0/15 counter drop`) {
		t.Errorf("guard rules:\n%s", g)
	}
}

func TestImageRef(t *testing.T) {
	imgs, err := DefaultImages()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(imgs.Sandbox); err != nil {
		t.Skipf("no sandbox image archive (make pause-image): %v", err)
	}
	ref, err := ImageRef(imgs.Sandbox)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ref, "localhost/") {
		t.Errorf("sandbox image %s: want a localhost/ name, which is never pulled from a registry", ref)
	}
	if _, err := ImageRef(filepath.Join(t.TempDir(), "missing.tar")); err == nil {
		t.Error("ImageRef of a missing file succeeded")
	}
}
