package rules

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"mcpguard.dev/mcpguard/manifests/policies"
	"mcpguard.dev/mcpguard/proxy/jsonrpc"
)

// The benchmarks decide with the shipped policy, as the proxy would. Each
// also reports the median ("p50-ns") and 99th percentile of single
// decisions, since the targets are stated as medians: ≤ 5 µs declarative,
// ≤ 30 µs Rego.

func benchDecide(b *testing.B, e *Engine, in Input, wantAllow bool) {
	b.Helper()
	// The proxy hands over arguments its codec decoded: canonical JSON,
	// read in place (Input.Canonical).
	if canon, err := jsonrpc.Canonical(nil, in.Arguments, jsonrpc.Limits{}); err == nil && string(canon) == string(in.Arguments) {
		in.Canonical = true
	}
	ctx := context.Background()
	if d := e.Decide(ctx, in); d.Allow != wantAllow {
		b.Fatalf("decision %+v, want allow=%v", d, wantAllow)
	}
	b.ReportAllocs()
	samples := make([]time.Duration, 0, 4096)
	for i := 0; b.Loop(); i++ {
		if i%16 == 0 && len(samples) < cap(samples) {
			t := time.Now()
			e.Decide(ctx, in)
			samples = append(samples, time.Since(t))
			continue
		}
		e.Decide(ctx, in)
	}
	if len(samples) > 0 {
		slices.Sort(samples)
		b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(samples[len(samples)*99/100].Nanoseconds()), "p99-ns")
	}
}

func shipped(b *testing.B) *Engine {
	e, err := Parse("approved-apis.yaml", policies.ApprovedAPIs)
	if err != nil {
		b.Fatal(err)
	}
	return e
}

func BenchmarkDecideDeclarativeAllow(b *testing.B) {
	benchDecide(b, shipped(b), call("fetch_url", `{"url":"https://api.weather.gov/points/39.7456,-97.0892"}`), true)
}

func BenchmarkDecideDeclarativeDenyMetadata(b *testing.B) {
	benchDecide(b, shipped(b), call("fetch_url", `{"url":"http://0xa9.0xfe.0xa9.0xfe/latest/meta-data/"}`), false)
}

func BenchmarkDecideDeclarativeReadFile(b *testing.B) {
	benchDecide(b, shipped(b), call("read_file", `{"path":"/workspace/notes/todo.md"}`), true)
}

func BenchmarkDecideToolsList(b *testing.B) {
	benchDecide(b, shipped(b), Input{Method: "tools/list", Tool: "fetch_url", Definition: json.RawMessage(weatherDef)}, true)
}

func BenchmarkDecideRego(b *testing.B) {
	e, err := Parse("policy.yaml", []byte(regoPolicy))
	if err != nil {
		b.Fatal(err)
	}
	benchDecide(b, e, call("gh", `{"url":"https://api.github.com/repos/golang/go"}`), true)
}

func BenchmarkDecideParallel(b *testing.B) {
	e := shipped(b)
	in := call("fetch_url", `{"url":"https://api.weather.gov/points/39.7456,-97.0892"}`)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e.Decide(context.Background(), in)
		}
	})
}

func BenchmarkParseURL(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseURL("https://api.weather.gov/points/39.7456,-97.0892"); err != nil {
			b.Fatal(err)
		}
	}
}
