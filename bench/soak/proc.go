//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"mcpguard.dev/mcpguard/bench/loadgen"
)

// proc is the running mcpguard.
type proc struct {
	*loadgen.Child
	url   string // the MCP endpoint
	admin string // the admin listener's base URL
	hc    *http.Client
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startProxy execs mcpguard with info-level logs to logFile and returns once
// /readyz answers 200. mcpguard dies with this program (SIGKILL on parent
// death).
func startProxy(ctx context.Context, bin, upstream, policy, logFile string) (*proc, error) {
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	f, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, bin, "proxy", "--listen", listen, "--admin-listen", admin,
		"--upstream", upstream, "--policy", policy, "--log-level", "info")
	cmd.Stdout, cmd.Stderr = f, f
	child, err := loadgen.StartChild(cmd)
	if err != nil {
		return nil, err
	}
	p := &proc{Child: child, url: "http://" + listen + "/mcp", admin: "http://" + admin,
		hc: &http.Client{Timeout: 10 * time.Second}}
	t0 := time.Now()
	for {
		res, err := p.hc.Get(p.admin + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if p.exited() || ctx.Err() != nil || time.Since(t0) > 15*time.Second {
			p.stop()
			data, _ := os.ReadFile(logFile)
			return nil, fmt.Errorf("mcpguard did not become ready (%v); its log:\n%s", err, data[max(0, len(data)-2000):])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop ends mcpguard with SIGTERM, then SIGKILL after 5s.
func (p *proc) stop() { p.Stop(5 * time.Second) }

// exited reports whether mcpguard exited; with -direct there is none.
func (p *proc) exited() bool { return p != nil && p.Exited() }

// sample is the proxy's footprint at one moment; -1 where unknown.
type sample struct {
	rss        int64 // bytes, VmRSS
	goroutines int64 // go_goroutines
	sessions   int64 // mcpguard_sessions_active
	heapInuse  int64 // go_memstats_heap_inuse_bytes: spans holding objects
	heapAlloc  int64 // go_memstats_heap_alloc_bytes: allocated objects
	heapUnused int64 // go_memstats_heap_idle_bytes - go_memstats_heap_released_bytes: free, not returned to the OS
	gc         bool  // taken right after a forced GC
}

// sample reads the proxy's footprint. With gc it first has the proxy
// collect (GET /debug/pprof/heap?gc=1, which runs runtime.GC before writing
// the profile), so the heap figures are what is live, not garbage awaiting
// the next cycle.
func (p *proc) sample(gc bool) sample {
	s := sample{rss: -1, goroutines: -1, sessions: -1, heapInuse: -1, heapAlloc: -1, heapUnused: -1}
	if p == nil {
		return s
	}
	if gc {
		res, err := p.hc.Get(p.admin + "/debug/pprof/heap?gc=1")
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			s.gc = res.StatusCode == http.StatusOK
		}
	}
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Cmd.Process.Pid)); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				if kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64); err == nil {
					s.rss = kb << 10
				}
			}
		}
	}
	res, err := p.hc.Get(p.admin + "/metrics")
	if err != nil {
		return s
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	idle, released := int64(-1), int64(-1)
	for sc.Scan() {
		name, value := metric(sc.Text())
		switch name {
		case "go_goroutines":
			s.goroutines = value
		case "mcpguard_sessions_active":
			s.sessions = value
		case "go_memstats_heap_inuse_bytes":
			s.heapInuse = value
		case "go_memstats_heap_alloc_bytes":
			s.heapAlloc = value
		case "go_memstats_heap_idle_bytes":
			idle = value
		case "go_memstats_heap_released_bytes":
			released = value
		}
	}
	if idle >= 0 && released >= 0 {
		s.heapUnused = idle - released
	}
	return s
}

// profile saves the proxy's debug/pprof/name (heap, goroutine) to path, for
// a diff between two moments with go tool pprof -diff_base.
func (p *proc) profile(name, path string) error {
	if p == nil {
		return nil
	}
	res, err := p.hc.Get(p.admin + "/debug/pprof/" + name)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /debug/pprof/%s: %s", name, res.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, res.Body)
	return errors.Join(err, f.Close())
}

// metric splits a Prometheus text-format sample line into its name and
// value; "" for comments and lines it cannot read.
func metric(line string) (string, int64) {
	if strings.HasPrefix(line, "#") {
		return "", 0
	}
	i := strings.LastIndexByte(line, ' ')
	if i < 0 {
		return "", 0
	}
	f, err := strconv.ParseFloat(line[i+1:], 64)
	if err != nil {
		return "", 0
	}
	name, _, _ := strings.Cut(line[:i], "{")
	return strings.TrimSpace(name), int64(f)
}
