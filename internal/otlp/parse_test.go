package otlp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func retryStatus(d *durationpb.Duration, extra ...proto.Message) []byte {
	st := &spb.Status{Code: 8, Message: "slow down"}
	for _, m := range append(extra, &errdetails.RetryInfo{RetryDelay: d}) {
		a, _ := anypb.New(m)
		st.Details = append(st.Details, a)
	}
	b, _ := proto.Marshal(st)
	return b
}

// FuzzResponse feeds the parsers of what a receiver answers (partial
// success, grpc-status-details-bin, a gRPC frame) arbitrary bytes; where
// the protobuf runtime can decode them, both must agree.
func FuzzResponse(f *testing.F) {
	ps, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{RejectedSpans: 3, ErrorMessage: "x"}})
	f.Add(ps)
	ps, _ = proto.Marshal(&colmetricpb.ExportMetricsServiceResponse{PartialSuccess: &colmetricpb.ExportMetricsPartialSuccess{RejectedDataPoints: -1}})
	f.Add(ps)
	f.Add(retryStatus(durationpb.New(1500 * time.Millisecond)))
	f.Add(retryStatus(&durationpb.Duration{Seconds: -1, Nanos: 2e9}, &errdetails.DebugInfo{Detail: "d"}))
	f.Add(retryStatus(&durationpb.Duration{Seconds: 1 << 62}))
	f.Add([]byte{0, 0, 0, 0, 2, 8, 1})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		// Partial success, against the generated code.
		n, msg, err := partialSuccess(b)
		var tr coltracepb.ExportTraceServiceResponse
		if proto.Unmarshal(b, &tr) == nil {
			if err != nil {
				t.Fatalf("partialSuccess: %v; proto decodes it", err)
			}
			if n != tr.GetPartialSuccess().GetRejectedSpans() || msg != tr.GetPartialSuccess().GetErrorMessage() {
				t.Fatalf("partialSuccess = %d %q, proto %d %q", n, msg,
					tr.GetPartialSuccess().GetRejectedSpans(), tr.GetPartialSuccess().GetErrorMessage())
			}
		}

		// RetryInfo, against the generated code and durationpb.
		delay, ok, err := retryInfo(b)
		var st spb.Status
		if proto.Unmarshal(b, &st) == nil {
			var want *errdetails.RetryInfo
			decodable := true
			for _, a := range st.Details {
				if a.TypeUrl != retryInfoType {
					continue
				}
				ri := &errdetails.RetryInfo{}
				if proto.Unmarshal(a.Value, ri) != nil {
					decodable = false
				} else if want == nil {
					want = ri
				}
			}
			if decodable {
				if err != nil {
					t.Fatalf("retryInfo: %v; proto decodes it", err)
				}
				if ok != (want != nil) {
					t.Fatalf("retryInfo ok = %v, proto found %v", ok, want)
				}
				if want != nil {
					if d := max(want.GetRetryDelay().AsDuration(), 0); d != delay {
						t.Fatalf("retryInfo delay %v, durationpb %v", delay, d)
					}
				}
			}
		}

		// A gRPC frame: whatever it reads lies within the input.
		m, _, err := readFrame(bytes.NewReader(b), 1<<10)
		if err == nil {
			if len(b) < 5 || int(binary.BigEndian.Uint32(b[1:5])) != len(m) || !bytes.Equal(m, b[5:5+len(m)]) {
				t.Fatalf("readFrame read %d bytes from %x", len(m), b)
			}
		} else if len(b) == 0 && !errors.Is(err, io.EOF) {
			t.Fatalf("readFrame of nothing: %v", err)
		}
	})
}

// TestLinkTraceState: a link's trace state is sent (the official exporter
// leaves it out, so the oracle's links have none).
func TestLinkTraceState(t *testing.T) {
	rc := &receiver{}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", startHTTP(t, rc, nil))
	e, err := NewSpanExporter(HTTPProtobuf)
	if err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ts, _ := trace.ParseTraceState("k=v")
	linked := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceState: ts})
	_, s := tp.Tracer("t").Start(t.Context(), "s", trace.WithLinks(trace.Link{SpanContext: linked}))
	s.End()
	if err := e.ExportSpans(t.Context(), rec.Ended()); err != nil {
		t.Fatal(err)
	}
	if got := rc.traces[0].ResourceSpans[0].ScopeSpans[0].Spans[0].Links[0].TraceState; got != "k=v" {
		t.Errorf("link trace state %q, want k=v", got)
	}
}
