package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"mcpguard.dev/mcpguard/internal/telemetry/decisionlog"
)

// TestSIGTERMLosesNoDecision: the log and the decision log are written in
// batches, not a write per call (issue #18). A SIGTERM right after a burst
// of calls, allowed (info lines, batched) and denied (warnings, written at
// once), still finds every decision in both when the process has exited.
func TestSIGTERMLosesNoDecision(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the mcpguard binary")
	}
	up := startHoldUpstream(t)
	policy := writePolicy(t, `apiVersion: mcpguard.dev/v1alpha1
kind: ToolPolicy
metadata:
  name: flush
spec:
  mode: enforce
  defaultAction: deny
  tools:
    - tool: quick
`)
	decisions := filepath.Join(t.TempDir(), "decisions.jsonl")
	p, l := startProcess(t, "mcpguard proxy listening", "proxy",
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--upstream", up.URL,
		"--policy", policy, "--decision-log", decisions, "--trace-buffer", "0")
	url, _ := l["listen"].(string)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ss := openSessions(t, url, 1)
	hc := &http.Client{}
	const calls = 300
	for i := range calls {
		tool := "quick"
		if i%10 == 9 {
			tool = "nope" // denied: a warning
		}
		o := rawCall(ctx, hc, url, ss[0].ID, i+1, tool, fmt.Sprint("c", i))
		if o.err != nil || len(o.answers()) != 1 {
			t.Fatalf("call %d (%s): HTTP %d, %v", i, tool, o.status, o.err)
		}
	}
	sigterm := time.Now()
	p.signal(t, syscall.SIGTERM)
	p.exitCleanly(t, 15*time.Second, sigterm)

	logged := 0
	for _, msg := range p.logged() {
		if msg == "policy decision" {
			logged++
		}
	}
	if logged != calls {
		t.Errorf("%d policy decision lines on stderr, want %d", logged, calls)
	}
	data, err := os.ReadFile(decisions)
	if err != nil {
		t.Fatal(err)
	}
	recorded, denied := 0, 0
	for rec, err := range decisionlog.Read(bytes.NewReader(data)) {
		if err != nil {
			t.Fatal(err)
		}
		recorded++
		if rec.Decision == "deny" {
			denied++
		}
	}
	if recorded != calls || denied != calls/10 {
		t.Errorf("decision log: %d records (%d denied), want %d (%d denied)", recorded, denied, calls, calls/10)
	}
	if last := p.logged(); len(last) == 0 || last[len(last)-1] != "stopped" {
		t.Errorf("the drain's last line is missing: %q", last)
	}
}
