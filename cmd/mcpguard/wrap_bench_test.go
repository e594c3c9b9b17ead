package main

import (
	"context"
	"io"
	"os"
	"os/exec"
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
//	go test ./cmd/mcpguard -run '^$' -bench StdioCall -benchtime 2000x
func BenchmarkStdioCall(b *testing.B) {
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	policy := writePolicy(b, testPolicy)
	for _, tt := range []struct {
		name string
		argv []string
	}{
		{"direct", []string{self}},
		{"wrap", []string{mcpguardBin(b), "wrap", "--log-level", "warn", "--policy", policy, "--", self}},
		// The default log level writes a decision line per call to stderr.
		{"wrap-info-log", []string{mcpguardBin(b), "wrap", "--policy", policy, "--", self}},
	} {
		b.Run(tt.name, func(b *testing.B) {
			cmd := exec.Command(tt.argv[0], tt.argv[1:]...)
			cmd.Env = append(os.Environ(), testServerEnv+"=exit42")
			cmd.Stderr = io.Discard
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			client := sdk.NewClient(&sdk.Implementation{Name: "bench", Version: "1"}, nil)
			cs, err := client.Connect(ctx, &sdk.CommandTransport{Command: cmd}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer cs.Close()
			params := &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "benchmark"}}
			if _, err := cs.CallTool(ctx, params); err != nil { // warm up
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				res, err := cs.CallTool(ctx, params)
				if err != nil || res.IsError {
					b.Fatalf("echo: %v %+v", err, res)
				}
			}
		})
	}
}
