package proxy

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	inttel "mcpguard.dev/mcpguard/internal/telemetry"
	"mcpguard.dev/mcpguard/proxy/jsonrpc"
	"mcpguard.dev/mcpguard/rules"
)

// BenchmarkObserverSmallCall is telemetry's and the decision log's own
// work for one small tools/call, alone: the observer's hooks in the order
// an exchange calls them (received, decided, forwarded, the trace context
// put in the gateway request's headers (not in params._meta: the agent's
// carried none, TraceMetaAgent), gatewayAnswered,
// gatewayDone, delivered, ended), with telemetry as `mcpguard proxy` ships
// it (telemetry.Setup: the 2048-span ring and the metrics) and the
// decision's info-level log line (issue #18 item 3); answer-ns/op is the
// time of the hooks an exchange calls before the agent's answer is flushed
// (the books, the policy's telemetry and ended, after). Without the rest of a
// call around it, the few microseconds it takes are not lost in a loaded
// machine's noise:
//
//	go test -run '^$' -bench ObserverSmallCall -benchtime 100000x -count 6 ./proxy/
func BenchmarkObserverSmallCall(b *testing.B) {
	tel, err := inttel.Setup(context.Background(), inttel.Options{TraceBuffer: 2048})
	if err != nil {
		b.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	cfg := &Config{TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	tools := &sync.Map{}
	tools.Store("fetch_url", true)
	obs := newObserver(cfg, func() int { return 1 }, tools)
	r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8081/mcp", strings.NewReader(""))
	r.RemoteAddr = "127.0.0.1:40000"
	m, err := jsonrpc.DecodeOne([]byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fetch_url","arguments":{"url":"https://api.github.com/x"}}}`), jsonrpc.Limits{})
	if err != nil {
		b.Fatal(err)
	}
	resp, err := jsonrpc.DecodeOne([]byte(`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"ok"}]}}`), jsonrpc.Limits{})
	if err != nil {
		b.Fatal(err)
	}
	msgs := []*jsonrpc.Message{m}
	sc := scope{session: "AD1-3yHO3OcTRSq1-5DxexIzyJihN9HQlfdbtCgZoEE", version: "2025-06-18", r: r}
	in := rules.Input{Method: "tools/call", Tool: "fetch_url", Session: sc.session, ProtocolVersion: sc.version, Arguments: m.Params}
	d := rules.Decision{Allow: true, Rule: "fetch_url/approved-hosts", Mode: rules.Enforce}
	res := &http.Response{StatusCode: http.StatusOK, Status: "200 OK"}
	b.ReportAllocs()
	cpu := processCPU()
	var answering time.Duration
	for b.Loop() {
		start := time.Now()
		ctx, rec := obs.received(context.Background(), sc, msgs)
		n := &decisionNote{ctx: rec.contextOf(ctx, m), in: in, d: d, took: 2 * time.Microsecond, at: time.Now()}
		obs.decisions.recordNote(n) // tellLog
		rec.forwarded(ctx, msgs)
		if rec.metaContext(m) != nil {
			b.Fatal("trace context for the _meta of a message whose own carried none")
		}
		rec.traceContext().setHeaders(http.Header{}, &obs.traceKeys)
		rec.gatewayAnswered(res, nil)
		rec.gatewayDone()
		rec.delivered(resp)
		answering += time.Since(start)
		// The books (keepBooks), once the answer is flushed.
		obs.traceDecisions.recordNote(n)
		rec.ended(nil)
	}
	b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(answering)/float64(b.N), "answer-ns/op")
}

// processCPU is the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
