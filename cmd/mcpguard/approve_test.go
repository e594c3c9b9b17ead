package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestApprovalCommands: a confirm-gated call from a client without
// elicitation waits on `mcpguard proxy`'s approval queue; `mcpguard
// approvals` lists it, `approve` lets it through, `deny` refuses the next,
// and answering an id no call waits under exits 1.
func TestApprovalCommands(t *testing.T) {
	policy := filepath.Join(t.TempDir(), "confirm.yaml")
	if err := os.WriteFile(policy, []byte(`apiVersion: mcpguard.dev/v1alpha1
kind: ToolPolicy
metadata: {name: confirm}
spec:
  approval: {timeout: 20s, fallback: queue}
  tools:
    - tool: get_time
      action: confirm
`), 0o644); err != nil {
		t.Fatal(err)
	}
	r, _, _ := startObservedProxy(t, nil, func(o *proxyOptions) { o.Policy = []string{policy} })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "no-elicitation", Version: "1"}, nil).
		Connect(ctx, &sdk.StreamableClientTransport{Endpoint: r.URL}, &sdk.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	run := func(args ...string) (string, error) {
		var cmd = newApprovalsCmd()
		switch args[0] {
		case "approve":
			cmd = newApproveCmd(true)
		case "deny":
			cmd = newApproveCmd(false)
		}
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append(args[1:], "--admin", r.AdminURL))
		err := cmd.ExecuteContext(ctx)
		return out.String(), err
	}
	for _, verb := range []string{"approve", "deny"} {
		done := make(chan string, 1)
		go func() {
			res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "get_time", Arguments: map[string]any{}})
			if err != nil {
				done <- err.Error()
				return
			}
			done <- res.Content[0].(*sdk.TextContent).Text
		}()
		var id string
		for id == "" {
			out, err := run("approvals")
			if err != nil {
				t.Fatalf("approvals: %v: %s", err, out)
			}
			if line, _, _ := strings.Cut(out, "\n"); strings.Contains(line, "get_time  rule get_time") {
				id, _, _ = strings.Cut(line, " ")
			}
			if ctx.Err() != nil {
				t.Fatal("the call never reached the queue")
			}
			time.Sleep(20 * time.Millisecond)
		}
		out, err := run(verb, id)
		if err != nil || !strings.Contains(out, id) {
			t.Fatalf("%s %s: %v: %s", verb, id, err, out)
		}
		got := <-done
		want := map[string]string{"approve": "12:00", "deny": "an operator declined it (queue)"}[verb]
		if !strings.Contains(got, want) {
			t.Errorf("after %s the call answered %q, want %q", verb, got, want)
		}
		// The id is gone: answering it again fails with exit 1.
		_, err = run(verb, id)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != exitFail || !strings.Contains(err.Error(), "no call awaits approval") {
			t.Errorf("%s of an answered id: %v, want exit 1 saying no call awaits", verb, err)
		}
	}
	if out, _ := run("approvals"); !strings.Contains(out, "no calls await approval") {
		t.Errorf("approvals with none waiting: %q", out)
	}
}
