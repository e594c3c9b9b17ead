package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// fastRetry keeps the official backoff's shape at a test's pace.
var fastRetry = retryConfig{initial: 20 * time.Millisecond, max: 50 * time.Millisecond, maxElapsed: time.Minute}

func grpcStatus(c codes.Code, msg string, retryDelay time.Duration) error {
	s := status.New(c, msg)
	if retryDelay > 0 {
		s, _ = s.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retryDelay)})
	}
	return s.Err()
}

// TestFailures: what the exporters retry, what they do not, and that an
// export never outlasts its timeout.
func TestFailures(t *testing.T) {
	spans := recordSpans(t)[:1]
	tests := []struct {
		name    string
		grpc    bool
		down    bool // no receiver listening
		timeout string
		script  []answer
		calls   int           // calls the receiver answered
		err     string        // substring of the error; "" for success
		within  time.Duration // the export returns within this
	}{
		{name: "http receiver down: not retried", down: true, err: "connection refused", within: time.Second},
		{name: "grpc receiver down: retried until the timeout", grpc: true, down: true, timeout: "400",
			err: "code = 14", within: 1500 * time.Millisecond},
		{name: "http 503 then OK", script: []answer{{httpStatus: 503}}, calls: 2},
		{name: "http 429, 502, 504 with Retry-After 0, then OK",
			script: []answer{{httpStatus: 429, retryAfter: "0"}, {httpStatus: 502}, {httpStatus: 504}}, calls: 4},
		{name: "http 400 not retried", script: []answer{{httpStatus: 400}}, calls: 1, err: "400 Bad Request (body: scripted failure)"},
		{name: "http 500 not retried", script: []answer{{httpStatus: 500}}, calls: 1, err: "500 Internal Server Error"},
		{name: "http Retry-After beyond the timeout: no wait", timeout: "300",
			script: []answer{{httpStatus: 503, retryAfter: "30"}}, calls: 1, err: "no time left to retry", within: 250 * time.Millisecond},
		{name: "http timeout", timeout: "200", script: []answer{{delay: 2 * time.Second}}, calls: 1,
			err: "OTLP export timeout", within: time.Second},
		{name: "grpc Unavailable then OK", grpc: true, script: []answer{{grpcErr: grpcStatus(codes.Unavailable, "not yet", 0)}}, calls: 2},
		{name: "grpc Aborted, DeadlineExceeded then OK", grpc: true,
			script: []answer{{grpcErr: grpcStatus(codes.Aborted, "", 0)}, {grpcErr: grpcStatus(codes.DeadlineExceeded, "", 0)}}, calls: 3},
		{name: "grpc ResourceExhausted without RetryInfo: not retried", grpc: true,
			script: []answer{{grpcErr: grpcStatus(codes.ResourceExhausted, "full", 0)}}, calls: 1, err: "code = 8 desc = full"},
		{name: "grpc ResourceExhausted with RetryInfo: retried after it", grpc: true,
			script: []answer{{grpcErr: grpcStatus(codes.ResourceExhausted, "later", 300*time.Millisecond)}}, calls: 2},
		{name: "grpc InvalidArgument not retried, message decoded", grpc: true,
			script: []answer{{grpcErr: grpcStatus(codes.InvalidArgument, "bad span: 100% wrong", 0)}}, calls: 1,
			err: "code = 3 desc = bad span: 100% wrong"},
		// The receiver keeps the grpc-timeout the exporter sends and
		// resets the stream at it, which may reach the exporter a hair
		// before its own deadline: "no time left to retry before the
		// export timeout" then, not the deadline's "OTLP export timeout".
		{name: "grpc timeout", grpc: true, timeout: "200", script: []answer{{delay: 2 * time.Second}}, calls: 1,
			err: "export timeout", within: time.Second},
		{name: "http partial success", script: []answer{{rejected: 3, message: "bad data"}}, calls: 1,
			err: "OTLP partial success: bad data (3 spans rejected)"},
		{name: "grpc partial success", grpc: true, script: []answer{{rejected: 2, message: "meh"}}, calls: 1,
			err: "OTLP partial success: meh (2 spans rejected)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := &receiver{script: tt.script}
			var addr string
			switch {
			case tt.down:
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				addr = "http://" + ln.Addr().String()
				ln.Close()
			case tt.grpc:
				addr = "http://" + startGRPC(t, rc, nil)
			default:
				addr = startHTTP(t, rc, nil)
			}
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", addr)
			if tt.timeout != "" {
				t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", tt.timeout)
			}
			e, err := NewSpanExporter(protocolOf(tt.grpc))
			if err != nil {
				t.Fatal(err)
			}
			e.c.cfg.retry = fastRetry
			defer e.Shutdown(context.Background())
			start := time.Now()
			err = e.ExportSpans(context.Background(), spans)
			took := time.Since(start)
			switch {
			case tt.err == "" && err != nil:
				t.Errorf("export: %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("export error %v, want one with %q", err, tt.err)
			}
			if tt.within > 0 && took > tt.within {
				t.Errorf("the export took %v, want at most %v", took, tt.within)
			}
			rc.mu.Lock()
			calls := rc.calls
			rc.mu.Unlock()
			if calls != tt.calls {
				t.Errorf("the receiver answered %d calls, want %d", calls, tt.calls)
			}
		})
	}
}

// TestRetryAfterWaited: a server's delay is waited even when the backoff's
// is shorter.
func TestRetryAfterWaited(t *testing.T) {
	rc := &receiver{script: []answer{{httpStatus: 503, retryAfter: "1"}}}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", startHTTP(t, rc, nil))
	e, err := NewSpanExporter(HTTPProtobuf)
	if err != nil {
		t.Fatal(err)
	}
	e.c.cfg.retry = fastRetry
	start := time.Now()
	if err := e.ExportSpans(context.Background(), recordSpans(t)[:1]); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("retried after %v, before Retry-After's second", took)
	}
}

// TestMetricPartialSuccess: the metrics answer names data points.
func TestMetricPartialSuccess(t *testing.T) {
	for _, grpc := range []bool{false, true} {
		rc := &receiver{script: []answer{{rejected: 5, message: "too old"}}}
		if grpc {
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+startGRPC(t, rc, nil))
		} else {
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", startHTTP(t, rc, nil))
		}
		e, err := NewMetricExporter(protocolOf(grpc))
		if err != nil {
			t.Fatal(err)
		}
		err = e.Export(context.Background(), recordMetrics(t))
		if want := "OTLP partial success: too old (5 data points rejected)"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("grpc %v: error %v, want %q", grpc, err, want)
		}
		if len(rc.metrics) != 1 {
			t.Errorf("grpc %v: %d requests arrived", grpc, len(rc.metrics))
		}
	}
}

// TestShutdown: an export in flight is cancelled, later ones fail at once.
func TestShutdown(t *testing.T) {
	for _, grpc := range []bool{false, true} {
		rc := &receiver{script: []answer{{delay: 3 * time.Second}}}
		if grpc {
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+startGRPC(t, rc, nil))
		} else {
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", startHTTP(t, rc, nil))
		}
		e, err := NewSpanExporter(protocolOf(grpc))
		if err != nil {
			t.Fatal(err)
		}
		spans := recordSpans(t)[:1]
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- e.ExportSpans(context.Background(), spans) }()
		time.Sleep(100 * time.Millisecond)
		if err := e.Shutdown(context.Background()); err != nil {
			t.Errorf("grpc %v: shutdown: %v", grpc, err)
		}
		if err := <-done; err == nil || time.Since(start) > 2*time.Second {
			t.Errorf("grpc %v: the export in flight returned %v after %v", grpc, err, time.Since(start))
		}
		if err := e.ExportSpans(context.Background(), spans); !errors.Is(err, ErrShutdown) {
			t.Errorf("grpc %v: export after shutdown: %v", grpc, err)
		}
	}
}

// TestGRPCWire: answers grpc-go would not give, from an HTTP/2 (h2c)
// server written by hand: a proxy's HTTP status (mapped as gRPC says), a
// gzip-compressed response message in a frame with its trailers, an
// answer without grpc-status.
func TestGRPCWire(t *testing.T) {
	partial, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{
		PartialSuccess: &coltracepb.ExportTracePartialSuccess{RejectedSpans: 1, ErrorMessage: "zipped"}})
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	_, _ = zw.Write(partial)
	_ = zw.Close()
	frame := append([]byte{1, 0, 0, 0, 0}, zipped.Bytes()...)
	binary.BigEndian.PutUint32(frame[1:5], uint32(zipped.Len()))

	type reply func(w http.ResponseWriter)
	status := func(code int) reply { return func(w http.ResponseWriter) { w.WriteHeader(code) } }
	compressed := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Encoding", "gzip")
		w.Header().Set("Trailer", "Grpc-Status")
		_, _ = w.Write(frame)
		w.Header().Set("Grpc-Status", "0")
	}
	noStatus := func(w http.ResponseWriter) { w.Header().Set("Content-Type", "application/grpc") }
	redirect := func(w http.ResponseWriter) {
		w.Header().Set("Location", "/opentelemetry.proto.collector.trace.v1.TraceService/Export")
		w.WriteHeader(http.StatusTemporaryRedirect)
	}
	tests := []struct {
		name    string
		replies []reply
		err     string
		calls   int
	}{
		{"HTTP 503 is Unavailable: retried; a compressed answer read", []reply{status(503), compressed}, "OTLP partial success: zipped (1 spans rejected)", 2},
		{"HTTP 404 is Unimplemented: not retried", []reply{status(404)}, "code = 12 desc = unexpected HTTP status 404 Not Found", 1},
		{"no grpc-status", []reply{noStatus}, "code = 13 desc = grpc: the server sent no grpc-status", 1},
		// grpc-go follows no redirect: the headers (an API key) would go
		// wherever the answer points.
		{"HTTP 307 not followed", []reply{redirect, compressed}, "code = 2 desc = unexpected HTTP status 307 Temporary Redirect", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			calls := 0
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				mu.Lock()
				i := calls
				calls++
				mu.Unlock()
				if r.ProtoMajor != 2 || r.Header.Get("Content-Type") != "application/grpc" || r.Header.Get("Te") != "trailers" ||
					r.URL.Path != "/opentelemetry.proto.collector.trace.v1.TraceService/Export" {
					t.Errorf("request %s %s %q", r.Proto, r.URL.Path, r.Header)
				}
				tt.replies[min(i, len(tt.replies)-1)](w)
			}), Protocols: new(http.Protocols)}
			srv.Protocols.SetUnencryptedHTTP2(true)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = srv.Serve(ln) }()
			defer srv.Close()
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+ln.Addr().String())
			e, err := NewSpanExporter(GRPC)
			if err != nil {
				t.Fatal(err)
			}
			e.c.cfg.retry = fastRetry
			err = e.ExportSpans(context.Background(), recordSpans(t)[:1])
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("export error %v, want %q", err, tt.err)
			}
			mu.Lock()
			defer mu.Unlock()
			if calls != tt.calls {
				t.Errorf("%d calls, want %d", calls, tt.calls)
			}
		})
	}
}

// TestGRPCUnixSocket: a unix:///path endpoint reaches a grpc-go receiver
// listening on that socket, in plain text.
func TestGRPCUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "otlp.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	rc := &receiver{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, rc)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "unix://"+sock)
	e, err := NewSpanExporter(GRPC)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ExportSpans(context.Background(), recordSpans(t)[:2]); err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.traces) != 1 || countSpans(rc.traces[0]) != 2 {
		t.Errorf("the receiver got %d requests", len(rc.traces))
	}
}
