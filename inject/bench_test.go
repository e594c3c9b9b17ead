package inject

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// percentiles reports the p50 and p99 of ds in microseconds.
func percentiles(b *testing.B, ds []time.Duration, prefix string) {
	b.Helper()
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	at := func(q float64) float64 { return float64(ds[int(q*float64(len(ds)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(at(0.50), prefix+"p50-µs")
	b.ReportMetric(at(0.99), prefix+"p99-µs")
}

// BenchmarkMutate is the pure function on a typical agent pod.
func BenchmarkMutate(b *testing.B) {
	cfg := testConfig()
	var pod corev1.Pod
	if err := yaml.Unmarshal([]byte(annotatedPod), &pod); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Mutate(&pod, &cfg, Target{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandler is one AdmissionReview through ServeHTTP, decode to
// encoded patch, without the network: the webhook's own share of an
// admission. The target is a p99 under 2 ms.
func BenchmarkHandler(b *testing.B) {
	for _, tc := range []struct{ name, pod string }{
		{"small-pod", annotatedPod},
		{"istio-pod", mustRead(b, "testdata/istio-native-first.yaml")},
		{"default-token-pod", mustRead(b, "testdata/default-token-mounted.yaml")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			wh := testWebhook(b)
			body := reviewBody(b, "bench", tc.pod, nil)
			wall := make([]time.Duration, 0, 1<<16)
			cpu := make([]time.Duration, 0, 1<<16)
			// Locked to one thread, the thread's CPU time is this review's
			// own cost; wall time adds whatever the machine's load adds.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodPost, PathMutate, bytes.NewReader(body))
				r.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				c0, ok := threadCPU()
				start := time.Now()
				wh.ServeHTTP(w, r)
				wall = append(wall, time.Since(start))
				if c1, _ := threadCPU(); ok {
					cpu = append(cpu, c1-c0)
				}
				if w.Code != http.StatusOK || !bytes.Contains(w.Body.Bytes(), []byte(`"patch"`)) {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
			percentiles(b, wall, "wall-")
			percentiles(b, cpu, "cpu-")
		})
	}
}

func mustRead(b *testing.B, path string) string {
	s, err := readTestdata(path[len("testdata/") : len(path)-len(".yaml")])
	if err != nil {
		b.Fatal(err)
	}
	return s
}
