package kubenode

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"k8s.io/client-go/rest"
)

func (n *Node) tlsConfig() (*tls.Config, error) {
	ca, err := os.ReadFile(n.path("pki/ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("kubenode: no CA certificate in pki/ca.crt")
	}
	cert, err := tls.LoadX509KeyPair(n.path("pki/admin.crt"), n.path("pki/admin.key"))
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// RESTConfig is a client-go configuration for the admin that reaches the
// apiserver from inside the node's namespace (Dial).
func (n *Node) RESTConfig() *rest.Config {
	return &rest.Config{
		Host: "https://" + apiAddr,
		TLSClientConfig: rest.TLSClientConfig{
			CAFile:   n.path("pki/ca.crt"),
			CertFile: n.path("pki/admin.crt"),
			KeyFile:  n.path("pki/admin.key"),
		},
		Dial:  n.Dial,
		QPS:   50,
		Burst: 100,
	}
}

// cgroupDirs are the node's cgroup parents: one per cgroup v1 hierarchy, or
// one in the unified hierarchy.
func cgroupDirs() []string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return []string{"/sys/fs/cgroup/" + cgroupName}
	}
	var dirs []string
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range ents {
		base := "/sys/fs/cgroup/" + e.Name()
		if _, err := os.Stat(base + "/cgroup.procs"); err == nil && e.Name() != "unified" {
			dirs = append(dirs, base+"/"+cgroupName)
		}
	}
	return dirs
}

// makeCgroups creates the kubelet's cgroupRoot in every hierarchy (the
// kubelet expects it to exist), copying cpuset's cpus and mems from the root.
func makeCgroups() error {
	for _, d := range cgroupDirs() {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if filepath.Base(filepath.Dir(d)) == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join(filepath.Dir(d), f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(d, f), v, 0o644); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// killCgroups sends SIGKILL to every process left in the node's cgroups:
// containers whose shim was killed before it could stop them.
func killCgroups() {
	for _, d := range cgroupDirs() {
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || e.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			return nil
		})
	}
}

// removeCgroups removes the node's cgroups, deepest first.
func removeCgroups() {
	for _, d := range cgroupDirs() {
		var dirs []string
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = os.Remove(dirs[i])
		}
	}
}

// pidsWhere lists the processes whose command line matches.
func pidsWhere(match func(cmdline string) bool) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(b) == 0 {
			continue
		}
		if match(strings.ReplaceAll(string(b), "\x00", " ")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// mountsUnder lists the mount points at or under dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var ms []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		m := unescapeMount(fields[4])
		if m == dir || strings.HasPrefix(m, dir+"/") {
			ms = append(ms, m)
		}
	}
	sort.Slice(ms, func(i, j int) bool { return len(ms[i]) > len(ms[j]) })
	return ms
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
