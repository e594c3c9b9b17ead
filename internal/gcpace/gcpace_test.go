package gcpace

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const MiB = 1 << 20
	for _, c := range []struct {
		live, floor uint64
		want        int
	}{
		{0, 16 * MiB, 400},             // before the first cycle: the floor, through the runtime's minimum
		{1 * MiB, 16 * MiB, 400},       // capped: 1500 would raise the runtime's minimum to 60 MiB
		{2 * MiB, 16 * MiB, 400},       // goal max(16, 10) MiB
		{32 * MiB / 10, 16 * MiB, 400}, // goal max(16, 16)
		{4 * MiB, 16 * MiB, 300},       // goal max(12, 16)
		{6 * MiB, 16 * MiB, 166},       // goal max(6.6, 15.96)
		{8 * MiB, 16 * MiB, 100},       // doubling reaches the floor
		{64 * MiB, 16 * MiB, 100},      // a large heap doubles, as with GOGC=100
		{1 * MiB, 4 * MiB, 100},        // a floor no higher than the runtime's own changes nothing
		{100, 16 * MiB, 400},           // tiny live heap, no overflow
		{16 * MiB, 16 * MiB, 100},      // at the floor
		{8*MiB - 4096, 16 * MiB, 100},  // just under half: 100.x rounds down to 100
	} {
		if got := Percent(c.live, c.floor); got != c.want {
			t.Errorf("Percent(%d, %d) = %d, want %d", c.live, c.floor, got, c.want)
		}
		// The goal this percentage gives, as the runtime computes it, is
		// the larger of twice the live heap and the floor, within 1 %.
		p := uint64(Percent(c.live, c.floor))
		goal := max(heapMinimum*p/100, c.live+c.live*p/100)
		want := max(2*c.live, max(c.floor, heapMinimum))
		if c.live > 0 && (float64(goal) < 0.99*float64(want) || float64(goal) > 1.01*float64(want)) {
			t.Errorf("live %d floor %d: goal %d, want %d", c.live, c.floor, goal, want)
		}
	}
}

func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64() + s[1].Value.Uint64() + s[2].Value.Uint64()
}

// TestStartPacesEachCycle checks the pacer against the real runtime: it
// sets GOGC at once, sets it again after cycles as the live heap changes,
// and stop puts the old GOGC back.
func TestStartPacesEachCycle(t *testing.T) {
	t.Setenv("GOGC", "") // cleared below: Start looks for the variable, not its value
	if err := os.Unsetenv("GOGC"); err != nil {
		t.Fatal(err)
	}
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)

	stop := Start()
	if got := gogc(); got != 400 && got != uint64(Percent(liveHeap(), Floor)) {
		t.Fatalf("GOGC after Start = %d, want the floor's 400 or the live heap's %d", got, Percent(liveHeap(), Floor))
	}
	// A live heap of ~12 MiB: the pacer must fall back to doubling.
	ballast := make([][]byte, 12)
	for i := range ballast {
		ballast[i] = make([]byte, 1<<20)
	}
	waitGOGC(t, 100)
	runtime.KeepAlive(ballast)
	ballast = nil
	// Small again: back to the floor's percentage.
	waitGOGC(t, 400)
	stop()
	if got := gogc(); got != 100 {
		t.Fatalf("GOGC after stop = %d, want the 100 it replaced", got)
	}
	runtime.GC()
	runtime.GC()
	if got := gogc(); got != 100 {
		t.Fatalf("GOGC changed after stop: %d", got)
	}
}

// waitGOGC runs cycles until the pacer has set want (its cleanup runs
// after a cycle, on its own goroutine).
func waitGOGC(t *testing.T, want uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for gogc() != want {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC = %d after 5 s of cycles, want %d (live heap %d)", gogc(), want, liveHeap())
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
}

func TestStartLeavesAnOperatorsGOGC(t *testing.T) {
	t.Setenv("GOGC", "250")
	before := debug.SetGCPercent(250)
	defer debug.SetGCPercent(before)
	stop := Start()
	defer stop()
	runtime.GC()
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	if got := gogc(); got != 250 {
		t.Fatalf("GOGC = %d, want the operator's 250", got)
	}
}
