//go:build linux

// Command wakeups measures what one session of small tools/calls costs each
// process on the path in scheduling: CPU time, times a thread was put on a
// CPU (schedstat), voluntary and involuntary context switches, summed over
// every thread, per call. It runs the upstream and the reference reverse
// proxy as bench/load does and compares direct, the reverse proxy and
// mcpguard, interleaved, several rounds; figures are medians.
//
//	go run ./bench/wakeups -mcpguard /tmp/mgs -calls 2000 -rounds 5
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"time"

	"mcpguard.dev/mcpguard/bench/loadgen"
	"mcpguard.dev/mcpguard/manifests/policies"
)

type counters struct {
	cpu, slices, vol, invol int64
	faults                  int64 // minor page faults, the whole process's
}

func (a counters) sub(b counters) counters {
	return counters{a.cpu - b.cpu, a.slices - b.slices, a.vol - b.vol, a.invol - b.invol, a.faults - b.faults}
}

func read(pid int) counters {
	var c counters
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command (which may hold spaces): minflt is the 10th field of the line.
		if i := strings.LastIndexByte(string(data), ')'); i >= 0 {
			if f := strings.Fields(string(data[i+1:])); len(f) > 7 {
				c.faults, _ = strconv.ParseInt(f[7], 10, 64)
			}
		}
	}
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name())); err == nil {
			f := strings.Fields(string(data))
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			n, _ := strconv.ParseInt(f[2], 10, 64)
			c.cpu += ns
			c.slices += n
		}
		if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name())); err == nil {
			for _, line := range strings.Split(string(data), "\n") {
				if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
					n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					c.vol += n
				}
				if v, ok := strings.CutPrefix(line, "nonvoluntary_ctxt_switches:"); ok {
					n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					c.invol += n
				}
			}
		}
	}
	return c
}

func main() {
	var bins, role, target string
	var calls, rounds int
	var hold time.Duration
	flag.StringVar(&bins, "mcpguard", "", "comma-separated mcpguard binaries")
	flag.IntVar(&calls, "calls", 2000, "calls per measurement")
	flag.IntVar(&rounds, "rounds", 5, "rounds (ABBA over the binaries)")
	sessions := flag.Int("sessions", 1, "concurrent sessions, each calling as soon as its last call returned")
	flag.DurationVar(&hold, "hold", 0, "print the pids and keep the paths up this long, then exit (for strace/perf)")
	flag.StringVar(&role, "role", "", "internal")
	flag.StringVar(&target, "target", "", "internal")
	payload := flag.String("payload", "small", "the call's payload: small or 64KiB")
	drive := flag.String("drive", "", "only make -calls calls on -sessions sessions of this MCP endpoint")
	flag.Parse()
	pi := slices.IndexFunc(loadgen.Payloads, func(p loadgen.Payload) bool { return p.Name == *payload })
	if pi < 0 {
		fmt.Fprintf(os.Stderr, "wakeups: -payload %q is not small or 64KiB\n", *payload)
		os.Exit(2)
	}
	call := loadgen.NewCall(loadgen.Payloads[pi])
	if *drive != "" {
		c := loadgen.NewClient(*drive, *sessions)
		ss, err := c.OpenSessions(context.Background(), *sessions, *sessions)
		if err != nil {
			panic(err)
		}
		res, err := loadgen.Run(context.Background(), ss, call, int64(calls), time.Time{})
		if err != nil {
			panic(err)
		}
		fmt.Println("p50", res.P50)
		return
	}
	if role != "" {
		if f := os.Getenv("WAKEUPS_TRACE"); f != "" {
			go func() {
				time.Sleep(8 * time.Second)
				out, _ := os.Create(f)
				_ = trace.Start(out)
				time.Sleep(2 * time.Second)
				trace.Stop()
				out.Close()
			}()
		}
		if err := loadgen.ServeRole(role, "127.0.0.1:0", target); err != nil {
			panic(err)
		}
		return
	}
	ctx := context.Background()
	tmp, _ := os.MkdirTemp("", "wakeups-")
	defer os.RemoveAll(tmp)
	policy := filepath.Join(tmp, "p.yaml")
	_ = os.WriteFile(policy, policies.ApprovedAPIs, 0o600)
	up, upAddr, err := loadgen.StartRole(ctx, "-role", "upstream")
	if err != nil {
		panic(err)
	}
	defer up.Stop(time.Second)
	rp, rpAddr, err := loadgen.StartRole(ctx, "-role", "reverseproxy", "-target", "http://"+upAddr)
	if err != nil {
		panic(err)
	}
	defer rp.Stop(time.Second)

	type path struct {
		name, url string
		pid       int
	}
	paths := []path{{"direct", "http://" + upAddr + "/mcp", 0}, {"reverseproxy", "http://" + rpAddr + "/mcp", rp.Cmd.Process.Pid}}
	for i, bin := range strings.Split(bins, ",") {
		listen, _ := loadgen.FreeAddr()
		admin, _ := loadgen.FreeAddr()
		cmd := exec.CommandContext(ctx, bin, "proxy", "--listen", listen, "--admin-listen", admin,
			"--upstream", "http://"+upAddr+"/mcp", "--policy", policy, "--log-level", "info")
		logf, _ := os.Create(filepath.Join(tmp, fmt.Sprintf("mg%d.log", i)))
		cmd.Stderr = logf
		mg, err := loadgen.StartChild(cmd)
		if err != nil {
			panic(err)
		}
		defer mg.Stop(time.Second)
		for {
			res, err := http.Get("http://" + admin + "/readyz")
			if err == nil && res.StatusCode == 200 {
				res.Body.Close()
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		paths = append(paths, path{fmt.Sprintf("mcpguard#%d", i), "http://" + listen + "/mcp", cmd.Process.Pid})
		fmt.Fprintln(os.Stderr, "mcpguard", bin, "admin", admin)
	}
	if hold > 0 {
		for _, p := range paths {
			fmt.Printf("%s %s pid %d upstream pid %d\n", p.name, p.url, p.pid, up.Cmd.Process.Pid)
		}
		time.Sleep(hold)
		return
	}
	type row struct{ proxy, upstream []counters }
	results := map[string]*row{}
	lat := map[string][]float64{}
	for r := range rounds {
		order := slices.Clone(paths)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, p := range order {
			c := loadgen.NewClient(p.url, *sessions)
			ss, err := c.OpenSessions(ctx, *sessions, *sessions)
			if err != nil {
				panic(err)
			}
			if _, err := loadgen.Run(ctx, ss, call, int64(300**sessions), time.Time{}); err != nil {
				panic(err)
			}
			var p0 counters
			if p.pid != 0 {
				p0 = read(p.pid)
			}
			u0 := read(up.Cmd.Process.Pid)
			res, err := loadgen.Run(ctx, ss, call, int64(calls), time.Time{})
			if err != nil {
				panic(err)
			}
			var pd counters
			if p.pid != 0 {
				pd = read(p.pid).sub(p0)
			}
			ud := read(up.Cmd.Process.Pid).sub(u0)
			for _, s := range ss {
				s.Close(ctx)
			}
			c.CloseIdle()
			if results[p.name] == nil {
				results[p.name] = &row{}
			}
			results[p.name].proxy = append(results[p.name].proxy, pd)
			results[p.name].upstream = append(results[p.name].upstream, ud)
			lat[p.name] = append(lat[p.name], float64(res.P50.Microseconds()))
		}
	}
	med := func(cs []counters, f func(counters) int64) float64 {
		xs := make([]float64, len(cs))
		for i, c := range cs {
			xs[i] = float64(f(c)) / float64(calls)
		}
		slices.Sort(xs)
		return xs[len(xs)/2]
	}
	medf := func(xs []float64) float64 { s := slices.Sorted(slices.Values(xs)); return s[len(s)/2] }
	fmt.Printf("load %s; %d sessions, %d calls x %d rounds, medians per call\n", loadgen.LoadAvg(), *sessions, calls, rounds)
	fmt.Printf("%-14s %7s | %9s %7s %6s %6s %6s | %9s %7s %6s %6s %6s\n", "path", "p50µs", "proxyCPUµs", "onCPU", "vol", "invol", "faults", "upCPUµs", "onCPU", "vol", "invol", "faults")
	for _, p := range paths {
		r := results[p.name]
		fmt.Printf("%-14s %7.0f | %9.1f %7.2f %6.2f %6.2f %6.3f | %9.1f %7.2f %6.2f %6.2f %6.3f\n", p.name, medf(lat[p.name]),
			med(r.proxy, func(c counters) int64 { return c.cpu })/1e3, med(r.proxy, func(c counters) int64 { return c.slices }),
			med(r.proxy, func(c counters) int64 { return c.vol }), med(r.proxy, func(c counters) int64 { return c.invol }),
			med(r.proxy, func(c counters) int64 { return c.faults }),
			med(r.upstream, func(c counters) int64 { return c.cpu })/1e3, med(r.upstream, func(c counters) int64 { return c.slices }),
			med(r.upstream, func(c counters) int64 { return c.vol }), med(r.upstream, func(c counters) int64 { return c.invol }),
			med(r.upstream, func(c counters) int64 { return c.faults }))
	}
}
