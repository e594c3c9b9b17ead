// Package gcpace paces the garbage collector of a process whose live heap is
// small, as a sidecar's is (~2 MB).
//
// Go's default, GOGC=100, starts a cycle when the heap has doubled since the
// last one, and at least every 4 MB. A sidecar proxying small calls
// allocates ~8 KB per call, so it collects every few hundred calls, and on a
// virtual machine each cycle's fixed cost (stopping the world twice, waking
// the mark workers on other threads) is milliseconds of CPU: measured on the
// project's 2-core guest, 5.8 ms of CPU every ~240 calls, a quarter of
// mcpguard's CPU per call beyond the plain reverse proxy's
// (docs/performance.md). Raising GOGC for good would make a large heap grow
// five-fold before its next cycle.
//
// So the pacer keeps GOGC's doubling for a large heap and gives a small one
// a floor: after every cycle it sets the next cycle's goal to the larger of
// twice the live heap and Floor. It does so through GOGC itself
// (debug.SetGCPercent), which also scales the runtime's 4 MB minimum: a
// percentage p makes the goal max(4 MB × p/100, live × (1 + p/100)), so
// p = 100 × (Floor − live)/live, clamped to [100, 100 × Floor/4 MB], gives
// exactly max(2 × live, Floor).
package gcpace

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// Floor is the smallest heap goal the pacer sets: 16 MiB, four times the
// runtime's own minimum. A sidecar's idle RSS does not grow with it (an
// idle process allocates nothing); under load its heap may reach it.
const Floor = 16 << 20

// heapMinimum is the runtime's minimum heap goal at GOGC=100, which it
// scales with GOGC (runtime/mgcpacer.go defaultHeapMinimum).
const heapMinimum = 4 << 20

// Percent returns the GOGC that makes the next goal max(2 × live, floor),
// where live is the heap (with stacks and globals, as the runtime counts
// them) that survived the last cycle.
func Percent(live, floor uint64) int {
	most := max(100, int(100*floor/heapMinimum))
	switch {
	case live == 0: // no cycle yet
		return most
	case live >= floor/2: // doubling reaches the floor
		return 100
	}
	return min(most, int(100*(floor-live)/live))
}

// Start paces the collector until stop is called, unless the environment
// sets GOGC: an operator's choice wins. It sets the first goal at once (no
// cycle has run: the floor), then after every cycle. stop puts back the
// GOGC the process had.
func Start() (stop func()) {
	if _, set := os.LookupEnv("GOGC"); set {
		return func() {}
	}
	p := &pacer{last: -1, samples: []metrics.Sample{
		{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"},
	}}
	p.mu.Lock()
	p.was = p.adjustLocked()
	p.mu.Unlock()
	p.arm()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.stopped {
			p.stopped = true
			debug.SetGCPercent(p.was)
		}
	}
}

type pacer struct {
	mu      sync.Mutex // a cycle's cleanup against stop
	stopped bool
	was     int // GOGC before Start
	samples []metrics.Sample
	last    int
}

// sentinel becomes garbage as soon as it is made: its cleanup runs after
// the next cycle. It holds a pointer so that the tiny allocator, which
// batches small pointer-free objects with live ones, never takes it.
type sentinel struct{ p *pacer }

func (p *pacer) arm() {
	s := &sentinel{p: p}
	runtime.AddCleanup(s, func(p *pacer) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.stopped {
			return
		}
		p.adjustLocked()
		p.arm()
	}, p)
}

// adjustLocked sets GOGC for the live heap the last cycle left, and
// returns the GOGC it replaced (the current one when it did not change it).
func (p *pacer) adjustLocked() (was int) {
	metrics.Read(p.samples)
	var live uint64
	for _, s := range p.samples {
		if s.Value.Kind() == metrics.KindUint64 {
			live += s.Value.Uint64()
		}
	}
	pct := Percent(live, Floor)
	if pct == p.last {
		return pct
	}
	p.last = pct
	return debug.SetGCPercent(pct)
}
