package telemetry

import "testing"

// TestAllocSpanOneAllocation holds allocSpan to its reason for being: a span
// and the room for its attributes come in one allocation, with room for at
// least what was asked.
func TestAllocSpanOneAllocation(t *testing.T) {
	for _, n := range []int{0, 7, 8, 9, 12, 15, 18, 19, 22, 23, 40} {
		var s *ringSpan
		allocs := testing.AllocsPerRun(100, func() { s = allocSpan(n) })
		if cap(s.attrs) < n || len(s.attrs) != 0 {
			t.Errorf("allocSpan(%d): len %d cap %d, want len 0 cap >= %d", n, len(s.attrs), cap(s.attrs), n)
		}
		want := 1.0
		if n > 22 {
			want = 2 // beyond the sized rooms: the span, then a slice
		}
		if allocs != want {
			t.Errorf("allocSpan(%d): %v allocations, want %v", n, allocs, want)
		}
	}
}
