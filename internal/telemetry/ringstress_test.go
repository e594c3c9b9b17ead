package telemetry

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// TestRingChunksUnderConcurrency: fresh rings whose sizes are and are not
// multiples of the allocation chunk, written from many goroutines released
// at once (so several race to allocate the same chunk) and lapped, while
// readers decode them: no span is lost to a chunk allocated twice, every
// span read is whole, no span is read twice, and once the writers are done
// the ring holds exactly the last Size spans kept.
func TestRingChunksUnderConcurrency(t *testing.T) {
	const writers, perWriter = 6, 150
	for _, size := range []int{1, 2, ringChunk - 1, ringChunk, ringChunk + 1, 3*ringChunk - 5, 4 * ringChunk, writers * perWriter, writers*perWriter + 7} {
		t.Run(fmt.Sprint("size", size), func(t *testing.T) {
			for round := range 5 {
				ring := NewRing(size)
				tr := NewRingTracerProvider(ring).Tracer("x").(*ringTracer)
				start := make(chan struct{})
				var writing, reading sync.WaitGroup
				for w := range writers {
					writing.Go(func() {
						<-start
						for i := range perWriter {
							id := strconv.Itoa(w*perWriter + i)
							at := time.Unix(1000, int64(w*perWriter+i))
							tr.RecordSpan(context.Background(), "span "+id, trace.SpanKindInternal, at, at,
								[]attribute.KeyValue{attribute.String("id", id)}, "")
						}
					})
				}
				done := make(chan struct{})
				for range 2 {
					reading.Go(func() {
						<-start
						for {
							seen := map[string]bool{}
							for _, s := range ring.Spans() {
								if id := s.Attr("id"); s.Name != "span "+id || seen[id] {
									t.Errorf("round %d: span %q with id %q (seen before: %v)", round, s.Name, id, seen[id])
									return
								}
								seen[s.Attr("id")] = true
							}
							if len(seen) > size {
								t.Errorf("round %d: read %d spans from a ring of %d", round, len(seen), size)
								return
							}
							select {
							case <-done:
								return
							default:
							}
						}
					})
				}
				close(start)
				writing.Wait()
				close(done)
				reading.Wait()
				spans := ring.Spans()
				if want := min(size, writers*perWriter); len(spans) != want {
					t.Fatalf("round %d: %d spans kept, want %d", round, len(spans), want)
				}
				if got := ring.next.Load(); got != writers*perWriter {
					t.Fatalf("round %d: %d spans counted, want %d", round, got, writers*perWriter)
				}
				// Every slot holds the last span whose seq mapped to it.
				for c := range ring.chunks {
					p := ring.chunks[c].Load()
					if p == nil {
						if c*ringChunk < min(size, writers*perWriter) {
							t.Fatalf("round %d: chunk %d never allocated", round, c)
						}
						continue
					}
					for i := range min(ringChunk, size-c*ringChunk) {
						idx := uint64(c*ringChunk + i)
						if idx >= uint64(writers*perWriter) {
							break
						}
						n := uint64(writers * perWriter)
						want := n - (n-1-idx)%uint64(size) // the last seq ≡ idx+1 (mod size)
						if got := p[i].seq; got != want {
							t.Fatalf("round %d: slot %d holds seq %d, want %d", round, idx, got, want)
						}
					}
				}
			}
		})
	}
}
