package telemetry

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Attribute keys the call views read. They are the proxy's (proxy/telemetry.go
// defines them); repeated here as strings because the views only read JSON.
const (
	keyTool     = "gen_ai.tool.name"
	keySession  = "mcp.session.id"
	keyMethod   = "mcp.method.name"
	keyDecision = "mcpguard.policy.decision"
	keyRule     = "mcpguard.policy.rule"
	keyReason   = "mcpguard.policy.reason"
	keyErrType  = "error.type"
)

// Call is one MCP operation as the proxy saw it: a span whose parent is not
// among the kept spans (the server span of an agent's request, its parent
// being in the agent's process), with the spans under it.
type Call struct {
	Span
	Children []*Call `json:"children,omitempty"`
}

// Filter selects calls. The zero Filter selects all.
type Filter struct {
	Denied  bool   // only calls the policy denied (in either mode)
	Tool    string // only calls of this tool
	Session string // only calls of this session
	Limit   int    // at most the newest Limit calls; 0 means all
}

// FilterFromQuery reads a Filter from URL query parameters denied=1, tool,
// session and limit.
func FilterFromQuery(q map[string][]string) (Filter, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	f := Filter{Tool: get("tool"), Session: get("session")}
	if d := get("denied"); d != "" {
		b, err := strconv.ParseBool(d)
		if err != nil {
			return f, fmt.Errorf("denied: %q is not a boolean", d)
		}
		f.Denied = b
	}
	if l := get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			return f, fmt.Errorf("limit: %q is not a non-negative integer", l)
		}
		f.Limit = n
	}
	return f, nil
}

// Calls builds the call trees of spans (oldest first) that f selects.
func Calls(spans []Span, f Filter) []*Call {
	nodes := make(map[string]*Call, len(spans))
	for i := range spans {
		nodes[spans[i].TraceID+"/"+spans[i].SpanID] = &Call{Span: spans[i]}
	}
	var roots []*Call
	for i := range spans {
		n := nodes[spans[i].TraceID+"/"+spans[i].SpanID]
		if p, ok := nodes[spans[i].TraceID+"/"+spans[i].ParentSpanID]; ok && spans[i].ParentSpanID != "" {
			p.Children = append(p.Children, n)
			continue
		}
		roots = append(roots, n)
	}
	out := roots[:0]
	for _, c := range roots {
		if f.match(c) {
			out = append(out, c)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	for _, c := range out {
		c.sortChildren()
	}
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return out
}

func (c *Call) sortChildren() {
	sort.SliceStable(c.Children, func(i, j int) bool { return c.Children[i].Start.Before(c.Children[j].Start) })
	for _, ch := range c.Children {
		ch.sortChildren()
	}
}

func (f Filter) match(c *Call) bool {
	if f.Tool != "" && c.Attr(keyTool) != f.Tool {
		return false
	}
	if f.Session != "" && c.Attr(keySession) != f.Session {
		return false
	}
	if f.Denied && !c.denied() {
		return false
	}
	return true
}

// Decision is the policy's verdict on the call ("allow", "deny") or "".
func (c *Call) Decision() string {
	if d := c.Attr(keyDecision); d != "" {
		return d
	}
	for _, ch := range c.Children {
		if d := ch.Decision(); d != "" {
			return d
		}
	}
	return ""
}

// Rule is the rule that decided the call, or "".
func (c *Call) Rule() string {
	if r := c.Attr(keyRule); r != "" {
		return r
	}
	for _, ch := range c.Children {
		if r := ch.Rule(); r != "" {
			return r
		}
	}
	return ""
}

func (c *Call) denied() bool {
	if c.Decision() == "deny" {
		return true
	}
	for _, e := range c.Events {
		if e.Name == "mcpguard.policy.hidden" {
			return true
		}
	}
	return false
}

// Outcome is what the agent got: "error <type>" or "ok".
func (c *Call) Outcome() string {
	if t := c.Attr(keyErrType); t != "" {
		return "error " + t
	}
	return "ok"
}

// TracesJSON is the body of GET /debug/traces.
type TracesJSON struct {
	// Buffer is how many spans the proxy keeps.
	Buffer int     `json:"buffer"`
	Calls  []*Call `json:"calls"`
}

// TracesHandler serves the kept calls as JSON, filtered by the query
// (denied, tool, session, limit).
func TracesHandler(r *Ring) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		f, err := FilterFromQuery(req.URL.Query())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body := TracesJSON{Buffer: r.Size(), Calls: Calls(r.Spans(), f)}
		if body.Calls == nil {
			body.Calls = []*Call{}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(body)
	})
}

// WriteTree prints calls as indented trees: offset from the call's start,
// duration, span name, decision and rule, outcome.
//
//	06:31:02.123  tools/call fetch_url  4.1ms  deny fetch_url/approved-hosts  error -32003  session abc…
//	  +0.02ms  0.01ms  mcpguard.policy  deny fetch_url/approved-hosts
func WriteTree(w io.Writer, calls []*Call) error {
	for _, c := range calls {
		var b strings.Builder
		fmt.Fprintf(&b, "%s  %s  %s", c.Start.Local().Format("15:04:05.000"), c.Name, fmtDuration(c.Duration()))
		if d := c.Decision(); d != "" {
			fmt.Fprintf(&b, "  %s %s", d, c.Rule())
		}
		fmt.Fprintf(&b, "  %s", c.Outcome())
		if s := c.Attr(keySession); s != "" {
			fmt.Fprintf(&b, "  session %s", short(s, 12))
		}
		fmt.Fprintf(&b, "  trace %s\n", c.TraceID)
		writeChildren(&b, c, c.Start, "  ")
		for _, e := range c.Events {
			if e.Name == "mcpguard.policy.hidden" {
				fmt.Fprintf(&b, "  hidden %v (%v)\n", e.Attributes[keyTool], e.Attributes[keyRule])
			}
		}
		if _, err := io.WriteString(w, b.String()); err != nil {
			return err
		}
	}
	return nil
}

func writeChildren(b *strings.Builder, c *Call, t0 time.Time, indent string) {
	for _, ch := range c.Children {
		fmt.Fprintf(b, "%s+%s  %s  %s %s", indent, fmtDuration(ch.Start.Sub(t0)), fmtDuration(ch.Duration()), ch.Name, strings.ToLower(ch.Kind))
		if d := ch.Attr(keyDecision); d != "" {
			fmt.Fprintf(b, "  %s %s", d, ch.Attr(keyRule))
			if r := ch.Attr(keyReason); r != "" {
				fmt.Fprintf(b, ": %s", r)
			}
		}
		if ch.Error != "" {
			fmt.Fprintf(b, "  error %s", ch.Error)
		}
		b.WriteByte('\n')
		writeChildren(b, ch, t0, indent+"  ")
	}
}

func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
