package proxy

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
)

// BenchmarkUpstreamDo: one small call to a gateway over loopback through
// upstream.do and h1Client, the contexts and timers of a call included:
// the exchange's call timeout under a request's context, as net/http's
// server gives one.
//
//	go test -run '^$' -bench UpstreamDo -count 8 ./proxy/
func BenchmarkUpstreamDo(b *testing.B) {
	answer := okAnswer(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}}`)
	g := startRawGateway(b, func(_ int, _ *http.Request, w io.Writer) bool {
		_, err := io.WriteString(w, answer)
		return err == nil
	})
	u, err := newUpstream(&Config{Upstream: g.url, ConnectTimeout: 5 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch_url","arguments":{"url":"https://api.github.com/"}}}`)
	var pieces jsonrpc.Pieces
	pieces.AppendRaw(string(body))
	call := upstreamCall{method: http.MethodPost, pieces: &pieces, sessionID: "a3f1c2d4e5b6a7980112233445566778",
		protocolVersion: "2025-11-25"}
	reqCtx, cancelReq := context.WithCancel(context.Background())
	defer cancelReq()
	buf := make([]byte, 512)
	// Locked to its thread, the loop's CPU time is the client's alone,
	// which a busy machine moves less than the wall time.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu, _ := ThreadCPU()
	b.ReportAllocs()
	for b.Loop() {
		ctx, cancel := context.WithTimeoutCause(reqCtx, 10*time.Minute, errCallTimedOut)
		res, err := u.do(ctx, call)
		if err != nil {
			b.Fatal(err)
		}
		for err == nil {
			_, err = res.Body.Read(buf)
		}
		res.Body.Close()
		cancel()
		if err != io.EOF {
			b.Fatal(err)
		}
	}
	if end, ok := ThreadCPU(); ok {
		b.ReportMetric(float64(end-cpu)/float64(b.N), "cpu-ns/op")
	}
}
