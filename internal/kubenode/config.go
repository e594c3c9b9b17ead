package kubenode

import (
	"fmt"
	"path/filepath"
)

// The node's fixed names and addresses. Everything lives inside the network
// namespace NetNS; on the host these ranges are blackholed.
const (
	NetNS        = "mcpguard-node"
	NodeName     = "mcpguard-node"
	NodeIP       = "10.250.0.2" // on the namespace's lo: the kubelet refuses a loopback node IP
	nodeRange    = "10.250.0.0/24"
	PodCIDR      = "10.244.0.0/24"
	podRange     = "10.244.0.0/16"
	ServiceCIDR  = "10.96.0.0/24"
	apiServiceIP = "10.96.0.1"
	apiAddr      = "127.0.0.1:6443"
	cgroupName   = "mcpguard-node"
	// PauseImage is the sandbox image containerd runs for each pod.
	PauseImage = "localhost/mcpguard-node/pause:1"
)

// blackholes are the node's ranges, routed nowhere on the host, so that a
// command that forgets to enter the namespace fails at once instead of
// sending packets to the machine's default gateway.
var blackholes = []string{nodeRange, podRange, ServiceCIDR}

// sysctls are the host settings the kubelet changes at start; saved before
// and restored on teardown.
var sysctls = []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops"}

func (n *Node) containerdConfig(runc string) string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
oom_score = 0
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  # oom_score_adj cannot be lowered without CAP_SYS_RESOURCE on this kind of machine.
  restrict_oom_score_adj = true
  # Pod network namespaces under the state directory, not /run/netns: they
  # are this node's, and teardown finds them there.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = %[6]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[7]q
`, n.path("containerd/root"), n.path("containerd/state"), n.containerdSock(), n.containerdSock()+".ttrpc",
		PauseImage, runc, n.path("cni"))
}

// cniConfig: one bridge, pods get a default route to it, and the namespace
// it lives in has no route out of the machine.
func (n *Node) cniConfig() string {
	return fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "mcpguard-node", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": %q}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
`, PodCIDR, n.path("ipam"))
}

func (n *Node) kubeletConfig() string {
	// Pods' nameserver: the node's CoreDNS, when it runs.
	dnsIP := ""
	if n.DNS() {
		dnsIP = NodeIP
	}
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 hybrid hosts: allowed explicitly; cgroupfs driver (no systemd);
# a cgroup root of our own so nothing else's kubepods is touched.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /%[1]s
failSwapOn: false
containerRuntimeEndpoint: unix://%[2]s
address: %[3]s
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication: {anonymous: {enabled: false}, webhook: {enabled: false}, x509: {clientCAFile: %[4]s}}
authorization: {mode: AlwaysAllow}
podLogsDir: %[5]s
evictionHard: {}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
enforceNodeAllocatable: []
serializeImagePulls: false
clusterDomain: cluster.local
clusterDNS: [%[6]s]
resolvConf: ""
localStorageCapacityIsolation: false
maxPods: 60
`, cgroupName, n.containerdSock(), NodeIP, n.path("pki/ca.crt"), n.path("pod-logs"), dnsIP)
}

// corefile serves the cluster's zones from the API, and nothing else.
func (n *Node) corefile() string {
	return fmt.Sprintf(`cluster.local:53 in-addr.arpa:53 {
    errors
    kubernetes cluster.local in-addr.arpa {
        kubeconfig %s node
    }
    cache 30
}
`, n.Kubeconfig())
}

func (n *Node) path(elem ...string) string {
	return filepath.Join(append([]string{n.Dir}, elem...)...)
}

func (n *Node) containerdSock() string { return n.path("containerd/containerd.sock") }

// Kubeconfig is the admin kubeconfig; the server it names is reachable only
// inside the node's network namespace (Command, Dial).
func (n *Node) Kubeconfig() string { return n.path("pki/admin.kubeconfig") }
