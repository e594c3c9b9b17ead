package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// BenchmarkStdioCall measures one tools/call round trip from the Go SDK's
// client to a small mcp-go stdio server (this test binary in server mode),
// directly and through `mcpguard wrap` with a policy: the difference is the
// latency wrap adds (two extra pipe hops, strict decoding both ways, one
// policy decision, re-encoding).
//
// The three sessions are open at once and each iteration calls each of
// them in turn, so a shared machine's changing load falls on all alike; the
// medians and the added latency are reported as metrics.
//
//	go test ./cmd/mcpguard -run '^$' -bench StdioCall -benchtime 3000x
func BenchmarkStdioCall(b *testing.B) {
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	policy := writePolicy(b, testPolicy)
	variants := []struct {
		name string
		argv []string
	}{
		{"direct", []string{self}},
		{"wrap", []string{mcpguardBin(b), "wrap", "--log-level", "warn", "--policy", policy, "--", self}},
		// The default log level writes a decision line per call to stderr.
		{"wrap-info-log", []string{mcpguardBin(b), "wrap", "--policy", policy, "--", self}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	params := &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "benchmark"}}
	sessions := make([]*sdk.ClientSession, len(variants))
	for i, v := range variants {
		cmd := exec.Command(v.argv[0], v.argv[1:]...)
		cmd.Env = append(os.Environ(), testServerEnv+"=exit42")
		cmd.Stderr = io.Discard
		client := sdk.NewClient(&sdk.Implementation{Name: "bench", Version: "1"}, nil)
		cs, err := client.Connect(ctx, &sdk.CommandTransport{Command: cmd}, nil)
		if err != nil {
			b.Fatalf("%s: %v", v.name, err)
		}
		defer cs.Close()
		for range 20 { // warm up
			if _, err := cs.CallTool(ctx, params); err != nil {
				b.Fatalf("%s: %v", v.name, err)
			}
		}
		sessions[i] = cs
	}
	took := make([][]time.Duration, len(variants))
	b.ResetTimer()
	for b.Loop() {
		for i, cs := range sessions {
			start := time.Now()
			res, err := cs.CallTool(ctx, params)
			took[i] = append(took[i], time.Since(start))
			if err != nil || res.IsError {
				b.Fatalf("%s: echo: %v %+v", variants[i].name, err, res)
			}
		}
	}
	b.StopTimer()
	median := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2].Microseconds())
	}
	direct := median(took[0])
	for i, v := range variants {
		m := median(took[i])
		b.ReportMetric(m, v.name+"-µs/call")
		if i > 0 {
			b.ReportMetric(m-direct, v.name+"-added-µs")
		}
	}
	b.ReportMetric(median(took[1])/direct, "wrap/direct")
}
