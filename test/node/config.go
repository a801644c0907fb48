package node

import (
	"fmt"
	"strconv"
	"strings"
)

// The configuration files of the node's daemons. Every path a daemon would
// otherwise default to a host folder is set to one inside the node's dir.

// containerdConfig is containerd 1.6's config (version 2) with its own
// root, state, socket, runc root and CNI folders. restrict_oom_score_adj is
// needed because root here lacks CAP_SYS_RESOURCE (runc fails every
// sandbox otherwise); netns_mounts_under_state_dir keeps the pods' network
// namespaces out of /run/netns.
func containerdConfig(dir, sandboxImage string) string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[6]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[7]q
    conf_dir = %[8]q
`, dir+"/containerd/root", dir+"/containerd/state", dir+"/containerd/containerd.sock",
		dir+"/containerd/containerd.sock.ttrpc", sandboxImage, dir+"/containerd/runc", CNIBinDir, dir+"/cni/net.d")
}

// cniConfig is a bridge network with host-local addresses and portmap for
// hostPorts. No masquerading: pods only talk to each other, to the node's
// address and to Service addresses, all on this machine.
func cniConfig(dir, bridge, podCIDR string) string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "portreeve-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %[1]q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %[2]q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %[3]q
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, bridge, podCIDR, dir+"/cni/ipam")
}

// kubeletConfig is the KubeletConfiguration. Its API is served on the node
// address only, anonymous and unauthorized (a test node); cgroup v1 is
// accepted, images are never collected (they are imported, not pulled),
// and eviction thresholds are low so a busy shared machine does not evict.
func kubeletConfig(dir, nodeIP, socket string, healthzPort int) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[2]d
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
containerRuntimeEndpoint: unix://%[3]s
podLogsDir: %[4]s/pod-logs
volumePluginDir: %[4]s/volume-plugins
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
registerNode: true
maxPods: 50
syncFrequency: 10s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%%
  nodefs.inodesFree: 1%%
  imagefs.available: 1%%
shutdownGracePeriod: 0s
serializeImagePulls: false
`, nodeIP, healthzPort, socket, dir)
}

// kubeProxyConfig is kube-proxy in iptables mode, opening NodePorts on the
// node address only and leaving the conntrack settings alone (zero values
// mean "do not change").
func kubeProxyConfig(kubeconfig, nodeName, nodeIP, podCIDR string, healthzPort, metricsPort int) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: %[1]s
hostnameOverride: %[2]s
bindAddress: %[3]s
clusterCIDR: %[4]s
detectLocalMode: ClusterCIDR
healthzBindAddress: 127.0.0.1:%[5]d
metricsBindAddress: 127.0.0.1:%[6]d
nodePortAddresses: [%[3]s/32]
oomScoreAdj: 0
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  localhostNodePorts: false
  masqueradeAll: false
  syncPeriod: 30s
  minSyncPeriod: 0s
`, kubeconfig, nodeName, nodeIP, podCIDR, healthzPort, metricsPort)
}

// guardRules is an nftables table that drops whatever the pods send
// through the bridge to an address outside the node's block (and any IPv6):
// no test packet leaves the machine, not even one a container sends to its
// resolver.
func guardRules(table, bridge, block string) string {
	return fmt.Sprintf(`table inet %[1]s {
	chain forward {
		type filter hook forward priority -10; policy accept;
		iifname %[2]q ip daddr != %[3]s counter drop
		iifname %[2]q meta nfproto ipv6 counter drop
	}
}
`, table, bridge, block)
}

// proxyEnv sends anything the daemons would fetch from the network (an
// image pull that should never happen) to a closed loopback port, so it
// fails here instead of leaving the machine.
func proxyEnv(noProxy ...string) []string {
	np := strings.Join(append([]string{"127.0.0.1", "localhost"}, noProxy...), ",")
	return []string{
		"HTTP_PROXY=http://127.0.0.1:9", "HTTPS_PROXY=http://127.0.0.1:9",
		"http_proxy=http://127.0.0.1:9", "https_proxy=http://127.0.0.1:9",
		"NO_PROXY=" + np, "no_proxy=" + np,
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
