package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"mcpguard.dev/mcpguard/internal/linebuf"
	inttel "mcpguard.dev/mcpguard/internal/telemetry"
)

// TestRingKeepsWhatTheSDKRecords holds the span ring's compact slots
// (issue #18) to the records they replaced: the same conversation through
// the proxy, traced by the SDK, is kept by the ring (as its span processor)
// exactly as the SDK's own snapshots convert, ids, times, attributes,
// status and events; and traced by the ring's own tracer (what `mcpguard
// proxy` ships), the ring keeps the same spans, but for ids, times and the
// values that differ between two sessions.
func TestRingKeepsWhatTheSDKRecords(t *testing.T) {
	sdkRing, ownRing := inttel.NewRing(256), inttel.NewRing(256)
	exp := tracetest.NewInMemoryExporter()
	sdkTP := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSpanProcessor(sdkRing))
	var runs [2][]inttel.Span
	for i, tp := range []trace.TracerProvider{sdkTP, inttel.NewRingTracerProvider(ownRing)} {
		base := newMCPGoUpstream(t)
		upSrv := httptest.NewServer(base.Config.Handler)
		t.Cleanup(upSrv.Close)
		p, srv := newTestProxy(t, upSrv.URL+"/mcp", func(c *Config) { c.TracerProvider = tp })
		e := &telemetryEnv{t: t, p: p, url: srv.URL + "/mcp"}
		e.post(`{"jsonrpc":"2.0","id":1,"method":"tools/list"`, nil) // refused: not JSON
		e.initialize()
		e.post(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, nil)
		e.callEcho()
		e.callDenied()
		e.post(`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"unlisted","arguments":{}}}`, nil)
		e.deleteSession(map[string]string{"Traceparent": agentHeaderTP})
		runs[i] = []inttel.Span{}
		if i == 0 {
			runs[i] = sdkRing.Spans()
		} else {
			runs[i] = ownRing.Spans()
		}
	}

	// The SDK's snapshots, converted as the ring converted them when it
	// kept the snapshots themselves (before its slots).
	var want []inttel.Span
	for _, s := range exp.GetSpans().Snapshots() {
		want = append(want, legacySpanOf(s))
	}
	sort.SliceStable(want, func(i, j int) bool { return want[i].Start.Before(want[j].Start) })
	if len(want) < 10 {
		t.Fatalf("only %d spans recorded", len(want))
	}
	if got := runs[0]; len(got) != len(want) {
		t.Fatalf("ring kept %d spans of the SDK's, want %d", len(got), len(want))
	}
	for i := range want {
		if g, w := spanString(runs[0][i], true), spanString(want[i], true); g != w {
			t.Errorf("span %d kept as\n%s\nwant\n%s", i, g, w)
		}
	}
	g, w := shapes(runs[1]), shapes(runs[0])
	if !slices.Equal(g, w) {
		t.Errorf("ring tracer's spans:\n%s\nthe SDK's:\n%s", strings.Join(g, "\n"), strings.Join(w, "\n"))
	}
}

// legacySpanOf is how the ring converted an SDK span before it kept spans
// in slots (internal/telemetry spanOf at 8f6890b).
func legacySpanOf(s sdktrace.ReadOnlySpan) inttel.Span {
	out := inttel.Span{
		TraceID: s.SpanContext().TraceID().String(),
		SpanID:  s.SpanContext().SpanID().String(),
		Name:    s.Name(),
		Kind:    s.SpanKind().String(),
		Start:   s.StartTime(),
		End:     s.EndTime(),
	}
	if p := s.Parent(); p.IsValid() {
		out.ParentSpanID = p.SpanID().String()
	}
	if st := s.Status(); st.Code == codes.Error {
		out.Error = st.Description
		if out.Error == "" {
			out.Error = "error"
		}
	}
	if attrs := s.Attributes(); len(attrs) > 0 {
		out.Attributes = make(map[string]any, len(attrs))
		for _, kv := range attrs {
			out.Attributes[string(kv.Key)] = kv.Value.AsInterface()
		}
	}
	for _, e := range s.Events() {
		ev := inttel.Event{Name: e.Name, Time: e.Time}
		if len(e.Attributes) > 0 {
			ev.Attributes = make(map[string]any, len(e.Attributes))
			for _, kv := range e.Attributes {
				ev.Attributes[string(kv.Key)] = kv.Value.AsInterface()
			}
		}
		out.Events = append(out.Events, ev)
	}
	return out
}

// spanString is s in full, map keys sorted; with exact, ids and times too.
func spanString(s inttel.Span, exact bool) string {
	var b strings.Builder
	if exact {
		fmt.Fprintf(&b, "%s/%s<-%s %d..%d ", s.TraceID, s.SpanID, s.ParentSpanID, s.Start.UnixNano(), s.End.UnixNano())
	}
	fmt.Fprintf(&b, "%s %q error=%q attrs=%s", s.Kind, s.Name, s.Error, mapString(s.Attributes, exact))
	for _, e := range s.Events {
		if exact {
			fmt.Fprintf(&b, " @%d", e.Time.UnixNano())
		}
		fmt.Fprintf(&b, " event %q %s", e.Name, mapString(e.Attributes, exact))
	}
	return b.String()
}

// varying are attributes whose values differ between two sessions.
var varying = map[string]bool{"mcp.session.id": true, "client.port": true, "server.port": true, "url.full": true,
	"mcpguard.policy.duration": true}

func mapString(m map[string]any, exact bool) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		v := fmt.Sprintf("%T(%v)", m[k], m[k])
		if !exact && varying[k] {
			v = fmt.Sprintf("%T", m[k])
		}
		fmt.Fprintf(&b, "%s=%s;", k, v)
	}
	return b.String()
}

// shapes are the spans without ids and times, each with its parent's name
// (or the remote parent's id), in a stable order.
func shapes(spans []inttel.Span) []string {
	names := map[string]string{}
	for _, s := range spans {
		names[s.SpanID] = s.Name
	}
	var out []string
	for _, s := range spans {
		parent := s.ParentSpanID
		if n, ok := names[parent]; ok {
			parent = "span " + n
		}
		out = append(out, spanString(s, false)+" parent="+parent)
	}
	sort.Strings(out)
	return out
}

// TestDecisionLineAsBefore holds the decision's log line, now handed to
// the handler directly (decisionLog.decided), to what Logger.LogAttrs
// wrote before: through slog's JSON handler and through the command's
// (linebuf.NewJSONHandler), each line is the one LogAttrs writes for the
// same fields, but for its time and took_us.
func TestDecisionLineAsBefore(t *testing.T) {
	for _, name := range []string{"slog", "linebuf"} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			var w *linebuf.Writer
			h := slog.Handler(slog.NewJSONHandler(&out, nil))
			if name == "linebuf" {
				w = linebuf.New(&out, time.Hour)
				h = linebuf.NewJSONHandler(w, nil)
			}
			base := newMCPGoUpstream(t)
			upSrv := httptest.NewServer(base.Config.Handler)
			t.Cleanup(upSrv.Close)
			p, srv := newTestProxy(t, upSrv.URL+"/mcp", func(c *Config) { c.Logger = slog.New(h) })
			e := &telemetryEnv{t: t, p: p, url: srv.URL + "/mcp"}
			e.initialize()
			e.callEcho()
			e.callDenied()
			e.post(`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"ru\u2028n \"<x>\"","arguments":{}}}`, nil)
			if w != nil {
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
			}
			var lines []string
			for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				if strings.Contains(l, `"msg":"policy decision"`) {
					lines = append(lines, l)
				}
			}
			want := []struct {
				level                                     slog.Level
				tool, decision, rule, reason, mode, sessn string
			}{
				{slog.LevelInfo, "echo", "allow", "allow/echo", "", "enforce", e.session},
				{slog.LevelWarn, "run_command", "deny", "deny/run_command", "", "enforce", e.session},
				{slog.LevelInfo, "ru\u2028n \"<x>\"", "allow", "allow/ru\u2028n \"<x>\"", "", "enforce", e.session},
			}
			if len(lines) != len(want) {
				t.Fatalf("%d decision lines, want %d:\n%s", len(lines), len(want), out.String())
			}
			for i, wl := range want {
				var before bytes.Buffer
				took := tookOf(t, lines[i])
				reason, rule := reasonRule(t, lines[i])
				if rule != wl.rule {
					t.Errorf("line %d: rule %q, want %q", i, rule, wl.rule)
				}
				wl.reason = reason // the policy's wording
				slog.New(slog.NewJSONHandler(&before, nil)).LogAttrs(context.Background(), wl.level, "policy decision",
					slog.String("method", "tools/call"), slog.String("tool", wl.tool), slog.String("decision", wl.decision),
					slog.String("rule", wl.rule), slog.String("reason", wl.reason), slog.String("mode", wl.mode),
					slog.String("session", wl.sessn), slog.Int64("took_us", took))
				if g, w := withoutTime(lines[i]), withoutTime(strings.TrimSpace(before.String())); g != w {
					t.Errorf("line %d:\n got %s\nwant %s", i, g, w)
				}
			}
		})
	}
}

func withoutTime(line string) string {
	_, rest, _ := strings.Cut(line, `,"level":`)
	return rest
}

func tookOf(t *testing.T, line string) int64 {
	var v struct {
		Took int64 `json:"took_us"`
	}
	if err := json.Unmarshal([]byte(line), &v); err != nil {
		t.Fatal(err)
	}
	return v.Took
}

func reasonRule(t *testing.T, line string) (reason, rule string) {
	var v struct{ Reason, Rule string }
	if err := json.Unmarshal([]byte(line), &v); err != nil {
		t.Fatal(err)
	}
	return v.Reason, v.Rule
}

// TestAttrPoolComesBackZeroed: every scratch attribute list goes back to
// attrPool zeroed to its capacity (putAttrs clears only what its user says
// it wrote), so no pooled list keeps a call's strings alive.
func TestAttrPoolComesBackZeroed(t *testing.T) {
	// One P: the lists the calls put back are the ones Get finds.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	e := newTelemetryEnv(t, func(c *Config) {
		c.RecordArguments = func(args json.RawMessage) json.RawMessage { return args }
	})
	e.initialize()
	e.callEcho()
	e.callDenied()
	for range 8 {
		buf := attrPool.Get().(*[]attribute.KeyValue)
		for i, kv := range (*buf)[:cap(*buf)] {
			if kv != (attribute.KeyValue{}) {
				t.Fatalf("pooled list: entry %d of %d is %v", i, cap(*buf), kv)
			}
		}
	}
}
