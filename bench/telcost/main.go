//go:build linux

// Command telcost measures what telemetry as `mcpguard proxy` ships it (the
// span ring and the metrics) costs per call, as a share of a small call's
// proxy CPU (issue #18 item 3). Two proxies run as separate processes in
// front of one upstream, the same as each other but for telemetry (off; as
// shipped, telemetry.Setup with the default span ring), and one client
// alternates its calls between them, a small tools/call of the shipped
// policy each, so both see the same machine at the same moments however
// busy it is. Each proxy's CPU (user + system, its garbage collection
// included, from /proc) is divided by its calls; the printed figures are
// medians over -rounds.
//
//	go run ./bench/telcost -rounds 7 -calls 5000
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"mcpguard.dev/mcpguard/bench/loadgen"
	"mcpguard.dev/mcpguard/internal/linebuf"
	"mcpguard.dev/mcpguard/internal/telemetry"
	"mcpguard.dev/mcpguard/manifests/policies"
	"mcpguard.dev/mcpguard/proxy"
	"mcpguard.dev/mcpguard/rules"
)

var ring int

func main() {
	rounds := flag.Int("rounds", 7, "rounds; figures are medians")
	calls := flag.Int("calls", 5000, "calls to each proxy per round")
	role := flag.String("role", "", "internal: serve as upstream, off or shipped")
	target := flag.String("target", "", "internal: the proxies' upstream URL")
	flag.IntVar(&ring, "ring", 2048, "spans the shipped proxy's ring keeps (mcpguard proxy --trace-buffer)")
	flag.Parse()
	if *role != "" {
		if err := serve(*role, *target); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := run(*rounds, *calls); err != nil {
		fmt.Fprintln(os.Stderr, "telcost:", err)
		os.Exit(1)
	}
}

// serve is a child process: the upstream, or a proxy with telemetry off or
// as shipped. It prints its address and serves until killed.
func serve(role, target string) error {
	if role == "upstream" {
		return loadgen.ServeRole("upstream", "127.0.0.1:0", "")
	}
	engine, err := rules.Parse("manifests/policies/approved-apis.yaml", policies.ApprovedAPIs)
	if err != nil {
		return err
	}
	// Info-level JSON logs of every decision, as the command writes them.
	log := slog.New(linebuf.NewJSONHandler(linebuf.New(io.Discard, 100*time.Millisecond), nil))
	cfg := proxy.Config{Upstream: target, Policy: engine, Logger: log}
	switch role {
	case "off":
	case "shipped":
		tel, err := telemetry.Setup(context.Background(), telemetry.Options{TraceBuffer: ring})
		if err != nil {
			return err
		}
		cfg.TracerProvider, cfg.MeterProvider = tel.TracerProvider, tel.MeterProvider
	default:
		return fmt.Errorf("unknown -role %q", role)
	}
	p, err := proxy.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	return p.HTTPServer().Serve(ln)
}

type child struct {
	*loadgen.Child
	addr string
}

func start(ctx context.Context, args ...string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c, err := loadgen.StartChild(cmd)
	if err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		c.Stop(3 * time.Second)
		return nil, fmt.Errorf("%v: no address: %v", args, err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return &child{Child: c, addr: strings.TrimSpace(line)}, nil
}

func run(rounds, calls int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	up, err := start(ctx, "-role", "upstream")
	if err != nil {
		return err
	}
	defer up.Stop(3 * time.Second)
	var proxies [2]*child
	var sessions [2]*loadgen.Session
	for i, role := range []string{"off", "shipped"} {
		if proxies[i], err = start(ctx, "-role", role, "-target", "http://"+up.addr+"/mcp", "-ring", fmt.Sprint(ring)); err != nil {
			return err
		}
		defer proxies[i].Stop(3 * time.Second)
		c := loadgen.NewClient("http://"+proxies[i].addr+"/mcp", 1)
		if sessions[i], err = c.Open(ctx); err != nil {
			return fmt.Errorf("%s: %w", role, err)
		}
		// An agent lists the tools before it calls one.
		if err := sessions[i].List(ctx); err != nil {
			return fmt.Errorf("%s: tools/list: %w", role, err)
		}
	}
	call := loadgen.NewCall(loadgen.Payloads[0])
	fmt.Printf("%s; %s; load average %s\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.Version(), loadgen.LoadAvg())
	fmt.Printf("%d rounds of %d small tools/call to each proxy, alternating\n\n", rounds, calls)
	fmt.Println("round  off µs/call  shipped µs/call  telemetry µs/call  share of off")
	var offs, ons, shares []float64
	for r := 0; r <= rounds; r++ { // round 0 warms up
		var before [2]time.Duration
		for i, p := range proxies {
			if before[i], err = loadgen.CPUTime(p.Cmd.Process.Pid); err != nil {
				return err
			}
		}
		for range calls {
			for _, s := range sessions {
				if err := s.Do(ctx, call); err != nil {
					return err
				}
			}
		}
		var per [2]float64
		for i, p := range proxies {
			after, err := loadgen.CPUTime(p.Cmd.Process.Pid)
			if err != nil {
				return err
			}
			per[i] = float64(after-before[i]) / float64(time.Microsecond) / float64(calls)
		}
		if r == 0 {
			continue
		}
		share := (per[1] - per[0]) / per[0]
		offs, ons, shares = append(offs, per[0]), append(ons, per[1]), append(shares, share)
		fmt.Printf("%5d  %11.1f  %15.1f  %17.1f  %11.1f%%\n", r, per[0], per[1], per[1]-per[0], 100*share)
	}
	fmt.Printf("median %11.1f  %15.1f  %17.1f  %11.1f%%\n", median(offs), median(ons), median(ons)-median(offs), 100*median(shares))
	return nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
