package kubenode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Options configure Start. The zero value of each field is its default.
type Options struct {
	// Bin is the directory holding kubelet, kube-apiserver,
	// kube-controller-manager, kube-scheduler, kube-proxy, kubectl and etcd
	// (scripts/kube-test-bins.sh prints it), and coredns for cluster DNS
	// (without it pods get no DNS server). Required.
	Bin string
	// Dir holds the node's state and logs. Default /tmp/mcpguard-node. Start
	// empties it (logs/ of the previous run excepted).
	Dir string
	// Detach leaves the node running when this process exits (the
	// scripts/kube-node.sh case); otherwise every daemon gets SIGKILL when
	// this process dies, however it dies.
	Detach bool
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Node is a running single-node Kubernetes. Its methods are safe for
// concurrent use; Stop may be called more than once.
type Node struct {
	Options
	// Timings of the bring-up, by step, for the figures.
	Timings []Timing
	lock    *os.File
	start   time.Time
}

// Timing is the time from Start to the end of a step.
type Timing struct {
	Step string
	At   time.Duration
}

// daemon order for the bring-up; teardown stops them in reverse.
const (
	dEtcd       = "etcd"
	dAPIServer  = "kube-apiserver"
	dContainerd = "containerd"
	dKubelet    = "kubelet"
	dCM         = "kube-controller-manager"
	dScheduler  = "kube-scheduler"
	dProxy      = "kube-proxy"
	dCoreDNS    = "coredns"
)

// Start brings a node up. It first tears down whatever an earlier run left
// (a process killed before its teardown), then holds a machine-wide lock
// until Stop: one node per machine. On error everything it started is
// stopped again.
func Start(ctx context.Context, o Options) (n *Node, err error) {
	if o.Bin == "" {
		return nil, errors.New("kubenode: Options.Bin is required")
	}
	if o.Dir == "" {
		o.Dir = "/tmp/mcpguard-node"
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("kubenode: a node needs root (network namespaces, mounts, cgroups)")
	}
	for _, tool := range []string{"ip", "nsenter", "containerd", "runc", "iptables", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("kubenode: %s is not installed (scripts/kube-node.sh installs containerd, runc, containernetworking-plugins and iptables from Debian): %w", tool, err)
		}
	}
	n = &Node{Options: o, start: time.Now()}
	if n.lock, err = os.OpenFile("/run/lock/mcpguard-node.lock", os.O_CREATE|os.O_RDWR, 0o600); err != nil {
		return nil, err
	}
	if err := unix.Flock(int(n.lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		fmt.Fprintln(o.Log, "kubenode: waiting for another node on this machine to stop")
		if err := unix.Flock(int(n.lock.Fd()), unix.LOCK_EX); err != nil {
			n.lock.Close()
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, n.LogTails(20))
			n.Stop()
			n = nil
		}
	}()
	n.teardown()
	if err := n.up(ctx); err != nil {
		return n, err
	}
	return n, nil
}

func (n *Node) mark(step string) {
	d := time.Since(n.start)
	n.Timings = append(n.Timings, Timing{step, d})
	fmt.Fprintf(n.Log, "kubenode: %-24s %5.1fs\n", step, d.Seconds())
}

func (n *Node) up(ctx context.Context) error {
	// Fresh state; the previous run's logs are kept beside it for a look.
	_ = os.RemoveAll(n.path("logs.previous"))
	_ = os.Rename(n.path("logs"), n.path("logs.previous"))
	for _, d := range []string{"etcd", "containerd", "kubelet", "cni", "ipam", "pod-logs", "pki", "run"} {
		if err := os.RemoveAll(n.path(d)); err != nil {
			return err
		}
	}
	for _, d := range []string{"logs", "run", "pki", "etcd", "containerd", "kubelet", "pod-logs", "cni", "ipam"} {
		if err := os.MkdirAll(n.path(d), 0o700); err != nil {
			return err
		}
	}

	// Sysctls first (the kubelet changes them), then the safety net, then the namespace.
	if _, err := os.Stat(n.path("sysctl-before")); err != nil {
		var saved []string
		for _, k := range sysctls {
			v, err := os.ReadFile("/proc/sys/" + k)
			if err != nil {
				return err
			}
			saved = append(saved, k+"="+strings.TrimSpace(string(v)))
		}
		if err := os.WriteFile(n.path("sysctl-before"), []byte(strings.Join(saved, "\n")+"\n"), 0o600); err != nil {
			return err
		}
	}
	for _, r := range blackholes {
		if err := run(ctx, "ip", "route", "replace", "blackhole", r); err != nil {
			return err
		}
	}
	if err := run(ctx, "ip", "netns", "add", NetNS); err != nil {
		return err
	}
	if err := run(ctx, "ip", "-n", NetNS, "link", "set", "lo", "up"); err != nil {
		return err
	}
	if err := run(ctx, "ip", "-n", NetNS, "addr", "add", NodeIP+"/32", "dev", "lo"); err != nil {
		return err
	}
	if err := writePKI(n.path("pki")); err != nil {
		return fmt.Errorf("kubenode: pki: %w", err)
	}
	n.mark("namespace and pki")

	p := n.path("pki")
	if err := n.daemon(dEtcd, filepath.Join(n.Bin, "etcd"), "--name", "node", "--data-dir", n.path("etcd"), "--unsafe-no-fsync",
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "node=http://127.0.0.1:2380", "--listen-metrics-urls", "http://127.0.0.1:2381"); err != nil {
		return err
	}
	if err := n.daemon(dAPIServer, filepath.Join(n.Bin, "kube-apiserver"), "--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=0.0.0.0", "--secure-port=6443", "--advertise-address="+NodeIP,
		"--tls-cert-file="+p+"/apiserver.crt", "--tls-private-key-file="+p+"/apiserver.key",
		"--client-ca-file="+p+"/ca.crt", "--authorization-mode=Node,RBAC",
		// OwnerReferencesPermissionEnforcement as OpenShift has it on: setting an
		// owner reference needs delete on the object (the webhook's own-CA
		// Secrets are owned by its configuration).
		"--enable-admission-plugins=NodeRestriction,OwnerReferencesPermissionEnforcement",
		"--service-account-issuer=https://kubernetes.default.svc", "--service-account-key-file="+p+"/sa.pub",
		"--service-account-signing-key-file="+p+"/sa.key", "--service-cluster-ip-range="+ServiceCIDR,
		"--kubelet-client-certificate="+p+"/apiserver-kubelet-client.crt", "--kubelet-client-key="+p+"/apiserver-kubelet-client.key",
		"--enable-aggregator-routing=true", "--kubelet-preferred-address-types=InternalIP,Hostname"); err != nil {
		return err
	}

	runc, err := exec.LookPath("runc")
	if err != nil {
		return err
	}
	if err := os.WriteFile(n.path("containerd.toml"), []byte(n.containerdConfig(runc)), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(n.path("cni/10-mcpguard-node.conflist"), []byte(n.cniConfig()), 0o600); err != nil {
		return err
	}
	if err := n.daemon(dContainerd, "containerd", "--config", n.path("containerd.toml")); err != nil {
		return err
	}
	if err := n.waitFor(ctx, dContainerd, 60*time.Second, func(ctx context.Context) error {
		return n.Command(ctx, "ctr", "--address", n.containerdSock(), "version").Run()
	}); err != nil {
		return err
	}
	pause, err := pauseImage(n.path("run"))
	if err != nil {
		return err
	}
	if err := n.ImportImage(ctx, pause); err != nil {
		return err
	}
	if err := makeCgroups(); err != nil {
		return err
	}
	httpc := n.HTTPClient()
	if err := n.waitFor(ctx, dAPIServer, 3*time.Minute, func(ctx context.Context) error {
		return get(ctx, httpc, "https://"+apiAddr+"/readyz")
	}); err != nil {
		return err
	}

	if err := os.WriteFile(n.path("kubelet.yaml"), []byte(n.kubeletConfig()), 0o600); err != nil {
		return err
	}
	if err := n.daemon(dKubelet, filepath.Join(n.Bin, "kubelet"), "--config="+n.path("kubelet.yaml"),
		"--kubeconfig="+p+"/kubelet.kubeconfig", "--root-dir="+n.path("kubelet"), "--node-ip="+NodeIP,
		"--hostname-override="+NodeName, "--v=1"); err != nil {
		return err
	}
	admin := p + "/admin.kubeconfig"
	if err := n.daemon(dCM, filepath.Join(n.Bin, "kube-controller-manager"), "--kubeconfig="+admin,
		"--authentication-kubeconfig="+admin, "--authorization-kubeconfig="+admin, "--bind-address=127.0.0.1",
		"--leader-elect=false", "--service-account-private-key-file="+p+"/sa.key", "--root-ca-file="+p+"/ca.crt",
		"--cluster-signing-cert-file="+p+"/ca.crt", "--cluster-signing-key-file="+p+"/ca.key",
		"--use-service-account-credentials=false"); err != nil {
		return err
	}
	if err := n.daemon(dScheduler, filepath.Join(n.Bin, "kube-scheduler"), "--kubeconfig="+admin,
		"--authentication-kubeconfig="+admin, "--authorization-kubeconfig="+admin, "--bind-address=127.0.0.1",
		"--leader-elect=false"); err != nil {
		return err
	}
	// Conntrack settings at 0: kube-proxy leaves the host's (machine-wide)
	// conntrack sysctls alone.
	if err := n.daemon(dProxy, filepath.Join(n.Bin, "kube-proxy"), "--kubeconfig="+admin,
		"--hostname-override="+NodeName, "--cluster-cidr="+PodCIDR, "--proxy-mode=iptables", "--masquerade-all=true",
		"--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0",
		"--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256"); err != nil {
		return err
	}
	if err := n.waitFor(ctx, "node Ready", 3*time.Minute, func(ctx context.Context) error {
		out, err := n.Kubectl(ctx, "get", "node", NodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(out)) != "True" {
			return fmt.Errorf("node Ready is %q", out)
		}
		return nil
	}); err != nil {
		return err
	}
	if err := n.waitFor(ctx, "default ServiceAccount", 2*time.Minute, func(ctx context.Context) error {
		_, err := n.Kubectl(ctx, "-n", "default", "get", "serviceaccount", "default")
		return err
	}); err != nil {
		return err
	}
	if !n.DNS() {
		return nil
	}
	// Cluster DNS: CoreDNS as a daemon of the node, like kube-proxy, serving
	// only the cluster's zones (no forwarding: a name outside them is
	// refused, so nothing is ever asked off the machine).
	if err := os.WriteFile(n.path("Corefile"), []byte(n.corefile()), 0o600); err != nil {
		return err
	}
	if err := n.daemon(dCoreDNS, filepath.Join(n.Bin, "coredns"), "-conf", n.path("Corefile")); err != nil {
		return err
	}
	r := n.Resolver()
	return n.waitFor(ctx, "cluster DNS", time.Minute, func(ctx context.Context) error {
		addrs, err := r.LookupHost(ctx, "kubernetes.default.svc.cluster.local")
		if err != nil {
			return err
		}
		if !slices.Equal(addrs, []string{apiServiceIP}) {
			return fmt.Errorf("kubernetes.default.svc.cluster.local is %v, want %s", addrs, apiServiceIP)
		}
		return nil
	})
}

// DNS reports whether the node runs cluster DNS: CoreDNS, when Bin holds
// it, on the node's address, which the kubelet gives pods as their
// nameserver.
func (n *Node) DNS() bool {
	_, err := os.Stat(filepath.Join(n.Bin, "coredns"))
	return err == nil
}

// Resolver asks the node's cluster DNS, from inside its namespace.
func (n *Node) Resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return n.Dial(ctx, network, net.JoinHostPort(NodeIP, "53"))
	}}
}

// Stop tears the node down: workloads through the API (so the kubelet
// removes each sandbox), then every daemon by PID, the containers'
// processes, mounts, the network namespace, the blackhole routes and the
// cgroups, and restores the sysctls. Safe to call twice, and after a Start
// that failed half way.
func (n *Node) Stop() {
	if n == nil {
		return
	}
	n.teardown()
	if n.lock != nil {
		_ = unix.Flock(int(n.lock.Fd()), unix.LOCK_UN)
		n.lock.Close()
		n.lock = nil
	}
}

// Down tears down a node started by another process (scripts/kube-node.sh
// down), with the same steps as Stop.
func Down(o Options) {
	if o.Dir == "" {
		o.Dir = "/tmp/mcpguard-node"
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	(&Node{Options: o, start: time.Now()}).teardown()
}

func (n *Node) teardown() {
	if _, err := os.Stat("/run/netns/" + NetNS); err == nil && n.alive(dAPIServer) && n.alive(dKubelet) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		// Workloads first, through the API, so the kubelet removes each
		// sandbox (CNI DEL, the pod's network namespace and mounts).
		_, _ = n.Kubectl(ctx, "delete", "mutatingwebhookconfigurations,validatingwebhookconfigurations", "--all", "--wait=false")
		_, _ = n.Kubectl(ctx, "delete", "deploy,rs,sts,ds,job", "--all", "-A", "--wait=false")
		_, _ = n.Kubectl(ctx, "delete", "pods", "--all", "-A", "--grace-period=1", "--wait=false")
		for ctx.Err() == nil {
			out, err := n.Kubectl(ctx, "get", "pods", "-A", "--no-headers")
			if err != nil || len(bytes.TrimSpace(out)) == 0 {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		cancel()
	}
	for _, d := range []string{dCoreDNS, dProxy, dScheduler, dCM, dKubelet} {
		n.stopDaemon(d)
	}
	if n.alive(dContainerd) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, _ := n.Command(ctx, "ctr", "--address", n.containerdSock(), "-n", "k8s.io", "tasks", "ls", "-q").Output()
		for _, id := range strings.Fields(string(out)) {
			_ = n.Command(ctx, "ctr", "--address", n.containerdSock(), "-n", "k8s.io", "tasks", "kill", "-s", "KILL", id).Run()
		}
		cancel()
	}
	n.stopDaemon(dContainerd)
	// The shims of this containerd (their command line names its socket)
	// and anything left in the node's cgroups: by PID.
	sock := n.containerdSock()
	for _, pid := range pidsWhere(func(cmdline string) bool {
		return strings.Contains(cmdline, "containerd-shim") && strings.Contains(cmdline, sock)
	}) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	killCgroups()
	n.stopDaemon(dAPIServer)
	n.stopDaemon(dEtcd)
	// Mounts under the state directory (overlay rootfs, pod network
	// namespaces, the kubelet's volumes), deepest first.
	for _, m := range mountsUnder(n.Dir) {
		_ = unix.Unmount(m, unix.MNT_DETACH)
	}
	if _, err := os.Stat("/run/netns/" + NetNS); err == nil {
		_ = exec.Command("ip", "netns", "del", NetNS).Run()
	}
	// `ip netns add` made /run/netns a mount point; undo it when nothing
	// else lives there.
	if ents, err := os.ReadDir("/run/netns"); err == nil && len(ents) == 0 && slices.Contains(mountsUnder("/run/netns"), "/run/netns") {
		_ = unix.Unmount("/run/netns", unix.MNT_DETACH)
	}
	for _, r := range blackholes {
		_ = exec.Command("ip", "route", "del", "blackhole", r).Run()
	}
	removeCgroups()
	if b, err := os.ReadFile(n.path("sysctl-before")); err == nil {
		ok := true
		for _, kv := range strings.Fields(string(b)) {
			k, v, _ := strings.Cut(kv, "=")
			if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
				fmt.Fprintf(n.Log, "kubenode: restoring %s=%s: %v\n", k, v, err)
				ok = false
			}
		}
		if ok {
			_ = os.Remove(n.path("sysctl-before"))
		}
	}
	if left := pidsWhere(func(cmdline string) bool { return strings.Contains(cmdline, n.Dir+"/") }); len(left) > 0 {
		fmt.Fprintf(n.Log, "kubenode: processes still naming %s: %v\n", n.Dir, left)
	}
}

// spawner starts every daemon from one OS thread that lives as long as the
// process: Pdeathsig fires when the thread that forked a child exits, and
// the Go runtime may end other threads.
var spawner = make(chan func())

func init() {
	go func() {
		runtime.LockOSThread()
		for f := range spawner {
			f()
		}
	}()
}

// daemon starts name inside the namespace, logging to logs/NAME.log, and
// records its PID in run/NAME.pid.
func (n *Node) daemon(name, bin string, args ...string) error {
	logf, err := os.OpenFile(n.path("logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + NetNS, "--", bin}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = n.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !n.Detach {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	done := make(chan error, 1)
	spawner <- func() { done <- cmd.Start() }
	if err := <-done; err != nil {
		return fmt.Errorf("kubenode: starting %s: %w", name, err)
	}
	// Reap it when it exits, so a dead daemon is not a zombie that looks alive.
	go func() { _ = cmd.Wait() }()
	return os.WriteFile(n.path("run", name+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600)
}

// pid returns the recorded PID of a daemon if that process is still the
// daemon (its command line names the node's directory or its binary).
func (n *Node) pid(name string) int {
	b, err := os.ReadFile(n.path("run", name+".pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte(name)) {
		return 0
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		if f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:])); len(f) > 0 && f[0] == "Z" {
			return 0
		}
	}
	return pid
}

func (n *Node) alive(name string) bool { return n.pid(name) != 0 }

// stopDaemon sends SIGTERM, waits up to 15 s, then SIGKILL.
func (n *Node) stopDaemon(name string) {
	defer os.Remove(n.path("run", name+".pid"))
	pid := n.pid(name)
	if pid == 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 60 && n.pid(name) != 0; i++ {
		time.Sleep(250 * time.Millisecond)
	}
	if n.pid(name) != 0 {
		fmt.Fprintf(n.Log, "kubenode: %s (%d) needed SIGKILL\n", name, pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 20 && n.pid(name) != 0; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// waitFor polls check every 250 ms until it succeeds or limit passes.
func (n *Node) waitFor(ctx context.Context, what string, limit time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			n.mark(what)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubenode: waiting for %s: %v (logs in %s)", what, last, n.path("logs"))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Command returns cmd to run inside the node's network namespace, with the
// admin kubeconfig and the node's binaries first on PATH.
func (n *Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + NetNS, "--", name}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+n.Kubeconfig(), "PATH="+n.Bin+":"+os.Getenv("PATH"))
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Kubectl runs kubectl inside the namespace and returns its stdout; the
// error carries stderr.
func (n *Node) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := n.Command(ctx, filepath.Join(n.Bin, "kubectl"), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// ImportImage imports a docker-archive or OCI archive into the node's
// containerd, where pods with imagePullPolicy IfNotPresent or Never find it.
func (n *Node) ImportImage(ctx context.Context, archive string) error {
	out, err := exec.CommandContext(ctx, "ctr", "--address", n.containerdSock(), "-n", "k8s.io", "images", "import", "--no-unpack=false", archive).CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubenode: importing %s: %v: %s", archive, err, out)
	}
	return nil
}

// Dial connects from inside the node's network namespace: the socket is
// made on an OS thread moved into the namespace, which then ends with its
// goroutine (it is never handed back to the Go scheduler). The host's
// namespace is never used to reach the node's addresses.
func (n *Node) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		fd, err := unix.Open("/run/netns/"+NetNS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			ch <- result{nil, fmt.Errorf("kubenode: entering %s: %w", NetNS, err)}
			return
		}
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// HTTPClient returns a client that dials inside the namespace and
// authenticates as the admin.
func (n *Node) HTTPClient() *http.Client {
	cfg, err := n.tlsConfig()
	tr := &http.Transport{DialContext: n.Dial, TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	if err != nil {
		tr.DialContext = func(context.Context, string, string) (net.Conn, error) { return nil, err }
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// LogTails returns the last lines of every daemon's log, for a failure message.
func (n *Node) LogTails(lines int) string {
	var b strings.Builder
	for _, d := range []string{dEtcd, dAPIServer, dContainerd, dKubelet, dCM, dScheduler, dProxy} {
		data, err := os.ReadFile(n.path("logs", d+".log"))
		if err != nil {
			continue
		}
		ls := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(ls) > lines {
			ls = ls[len(ls)-lines:]
		}
		fmt.Fprintf(&b, "--- %s (last %d lines of %s)\n%s\n", d, len(ls), n.path("logs", d+".log"), strings.Join(ls, "\n"))
	}
	return b.String()
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func get(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return nil
}
