// Package kubenode runs a real single-node Kubernetes for mcpguard's
// end-to-end tests (e2e/) and scripts/kube-node.sh: etcd, kube-apiserver,
// containerd (Debian's), the kubelet, kube-controller-manager,
// kube-scheduler, kube-proxy and CoreDNS (the cluster DNS pods are given,
// for the cluster's zones only: it forwards nothing), all inside a network
// namespace of its own.
//
//	host namespace                      namespace mcpguard-node (lo: 127.0.0.1, 10.250.0.2)
//	  blackhole 10.250.0.0/24             etcd :2379 ── kube-apiserver :6443
//	  blackhole 10.244.0.0/16             containerd ── kubelet ── cni0 10.244.0.1/24 ── pods
//	  blackhole 10.96.0.0/24              controller-manager, scheduler, kube-proxy (iptables)
//	                                      coredns 10.250.0.2:53 (cluster.local, in-addr.arpa)
//	  test process ──Dial (setns)──────▶  127.0.0.1:6443
//
// Safety (no test traffic may leave the machine): the blackhole routes go in
// before anything starts, so a command that forgets the namespace fails on
// the machine; the namespace has no route out, so pods have none either; the
// host's namespace never contacts the node's addresses (Dial and Command
// enter the namespace). Teardown (Stop, Down) stops every process by its
// PID, removes mounts, the namespace, the routes and the cgroups, restores
// the sysctls the kubelet changes, and is safe to run twice; Start runs it
// first, so a run killed before its teardown is cleaned up by the next.
//
// One node per machine: Start holds a lock until Stop.
package kubenode
