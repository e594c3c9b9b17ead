package maxprocs

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercentFor(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		live, scanned uint64 // scanned: the live heap, stacks and globals
		want          int
	}{
		{0, 0, maxPercent},
		{512 << 10, 512 << 10, maxPercent},     // bounded: the heap minimum makes the goal
		{400 << 10, 2900 << 10, maxPercent},    // just after start: 552 by the formula, bounded
		{4 * mib, 4 * mib, 300},                // 4 + 4 × 3 = 16 MiB
		{2560 << 10, 4 * mib, 338},             // the sidecar at 16 sessions: stacks and globals count
		{8 * mib, 8 * mib, defaultPercent},     // twice is the goal already
		{8*mib - 1, 8*mib - 1, 101},            // a byte short: rounded up, so the goal is not under 16 MiB
		{6 * mib, 10 * mib, defaultPercent},    // stacks and globals make the default's goal enough
		{100 * mib, 101 * mib, defaultPercent}, // never under Go's default
		{roomyGoal, roomyGoal, defaultPercent}, // the goal is met by the live heap alone
	}
	for _, tt := range tests {
		got := percentFor(tt.live, tt.scanned)
		if got != tt.want {
			t.Errorf("percentFor(%d, %d) = %d, want %d", tt.live, tt.scanned, got, tt.want)
		}
		// The runtime's goal: the formula, or the heap minimum.
		goal := max(tt.live+tt.scanned*uint64(got)/100, 4*mib*uint64(got)/100)
		if goal < roomyGoal {
			t.Errorf("percentFor(%d, %d) = %d: goal %d under %d", tt.live, tt.scanned, got, goal, roomyGoal)
		}
		if got > defaultPercent && goal > roomyGoal+roomyGoal/16 {
			t.Errorf("percentFor(%d, %d) = %d: goal %d, far over %d", tt.live, tt.scanned, got, goal, roomyGoal)
		}
	}
}

// heapGoal reads the runtime's heap goal.
func heapGoal() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// gogc reads the runtime's GOGC.
func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// TestPaceRuntime drives the real runtime: roomy while wide, set again after
// a cycle for the heap live then, and Go's default when narrow.
func TestPaceRuntime(t *testing.T) {
	t.Setenv("GOGC", "50")
	if newPace() != nil {
		t.Fatal("newPace() paces the collector though the operator set GOGC")
	}
	t.Setenv("GOGC", "") // unset, for the runtime too
	if newPace() == nil {
		t.Fatal("newPace() = nil for an empty GOGC, which the runtime takes as unset")
	}
	os.Unsetenv("GOGC") // t.Setenv restores it after the test
	defer debug.SetGCPercent(debug.SetGCPercent(defaultPercent))

	p := newPace()
	defer p.set(false) // before GOGC is restored: a test that fails roomy leaves no hook armed
	runtime.GC()
	p.set(true)
	if got := gogc(); got <= defaultPercent {
		t.Fatalf("wide with a small heap: GOGC %d, want more than %d", got, defaultPercent)
	}
	if goal := heapGoal(); goal < roomyGoal || goal > roomyGoal+roomyGoal/8 {
		t.Fatalf("wide with a small heap: the runtime's heap goal is %d, want about %d", goal, roomyGoal)
	}

	// 12 MiB live: after the next cycle the goal needs only twice it.
	bigHeap(t, "12 MiB live after a cycle")

	// Small again: the next cycles raise it again.
	untilGOGC(t, func(p int) bool { return p > defaultPercent }, "the heap shrank while wide: GOGC back above the default")

	p.set(false)
	if got := gogc(); got != defaultPercent {
		t.Fatalf("narrow: GOGC %d, want %d", got, defaultPercent)
	}
	runtime.GC()
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	if got := gogc(); got != defaultPercent {
		t.Errorf("narrow, after cycles: GOGC %d, want %d (the hook must stop)", got, defaultPercent)
	}
	var nilPace *pace
	nilPace.set(true) // does nothing
}

// TestPaceRearms: after a narrow spell whose cycles ended the hook, the
// next widening arms it again, and GOGC follows the live heap once more.
func TestPaceRearms(t *testing.T) {
	if os.Getenv("GOGC") != "" {
		t.Skip("GOGC is set: the pace is not fitted")
	}
	defer debug.SetGCPercent(debug.SetGCPercent(defaultPercent))
	p := newPace()
	defer p.set(false)
	runtime.GC()
	p.set(true)
	p.set(false)
	runtime.GC() // runs the hook, which finds the pace narrow and ends
	runtime.GC()
	p.set(true)
	if got := gogc(); got <= defaultPercent {
		t.Fatalf("wide again with a small heap: GOGC %d, want more than %d", got, defaultPercent)
	}
	bigHeap(t, "wide again, 12 MiB live after a cycle (no hook armed?)")
	runtime.GC() // the live heap other tests read is small again
}

// bigHeap holds 12 MiB live until a cycle's hook has brought GOGC down to
// the default (twice it is over the roomy goal), then lets it go.
func bigHeap(t *testing.T, what string) {
	t.Helper()
	live := make([][]byte, 12)
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	untilGOGC(t, func(p int) bool { return p == defaultPercent }, what+": GOGC at the default")
	runtime.KeepAlive(live)
}

// untilGOGC collects until ok(GOGC), for at most 5 s.
func untilGOGC(t *testing.T, ok func(int) bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(gogc()); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: GOGC is %d", what, gogc())
		}
		runtime.GC()
	}
}
