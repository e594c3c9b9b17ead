package maxprocs

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// The collector's pace follows the processors. While calls overlap, a
// sidecar with a few MiB live (2.5 MiB at 16 sessions on issue #18's
// machine) collects every few hundred calls under Go's default (GOGC=100:
// the heap may double, and at least 4 MiB), and each cycle costs it
// milliseconds of CPU that the calls in flight wait for. So while the
// process is wide, the heap goal is at least roomyGoal: GOGC is raised to
// what gives that goal for the heap live after the last cycle, set again
// after each cycle (or the next: a hook armed while a cycle marks survives
// it). While calls come one at a time it is 100 again: there
// a larger heap costs more than it saves (a cycle of fresh allocations that
// misses the caches a small one stays in; measured in docs/performance.md).
//
// The memory limit still binds (internal/memlimit sets it from the
// container's): near it the collector works as hard as it must. GOGC set by
// the operator is left alone.

// roomyGoal is the least heap goal while calls overlap.
const roomyGoal = 16 << 20

// maxPercent bounds GOGC while wide. The runtime's goal is never under
// its heap minimum, 4 MiB scaled by GOGC/100: at 400 that minimum is
// roomyGoal itself, so a small live heap (0.2 MiB just after start, which
// would ask for thousands) still gets 16 MiB, not 64 at GOGC 1600.
const maxPercent = roomyGoal / (4 << 20) * 100

// defaultPercent is GOGC while calls come one at a time: Go's default.
const defaultPercent = 100

// percentFor is the GOGC that makes the heap goal at least roomyGoal, never
// under the default nor over maxPercent. The runtime's goal is the heap
// live after the last cycle plus GOGC percent of what the collector scans
// (that heap, goroutine stacks, globals): counting the heap alone, the
// sidecar at 16 sessions (2.5 MiB live, 1.5 MiB of stacks and globals)
// would get a goal of 18.5 MiB, and one with 4 MiB live and as much again
// of stacks and globals 28 MiB, not 16.
func percentFor(live, scanned uint64) int {
	if live >= roomyGoal {
		return defaultPercent
	}
	if scanned == 0 {
		return maxPercent
	}
	p := int(((roomyGoal-live)*100 + scanned - 1) / scanned) // goal = live + scanned × p/100
	return min(max(p, defaultPercent), maxPercent)
}

// pace sets GOGC from the processors' state. A nil *pace does nothing.
type pace struct {
	mu sync.Mutex
	// roomy: calls overlap, the goal is at least roomyGoal. Written under
	// mu; atomic so that widen can look without it.
	roomy   atomic.Bool
	armed   bool // a hook waits for the next cycle
	percent int  // the GOGC last set
	sample  []metrics.Sample
}

// newPace returns nil when the operator chose GOGC.
func newPace() *pace {
	if os.Getenv("GOGC") != "" { // empty is unset, for the runtime too
		return nil
	}
	return &pace{percent: defaultPercent, sample: []metrics.Sample{
		{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"}}}
}

// set is called with the processors: roomy while wide.
func (p *pace) set(roomy bool) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.roomy.Store(roomy)
	p.apply()
	if roomy && !p.armed {
		p.armed = true
		p.arm()
	}
}

// widen makes the pace roomy if it is not: a call that overlaps another
// asks, whether or not the processors change (they do not from the start,
// when the process is wide already). Once per widening it reads the live
// heap and sets GOGC, under a microsecond, under the lock set(false) takes.
func (p *pace) widen() {
	if p != nil && !p.roomy.Load() {
		p.set(true)
	}
}

// apply sets GOGC for the live heap now; p.mu is held.
func (p *pace) apply() {
	want := defaultPercent
	if p.roomy.Load() {
		metrics.Read(p.sample)
		live := p.sample[0].Value.Uint64()
		want = percentFor(live, live+p.sample[1].Value.Uint64()+p.sample[2].Value.Uint64())
	}
	if want != p.percent {
		p.percent = want
		debug.SetGCPercent(want)
	}
}

// arm sets GOGC again after the next cycle, and so on while wide: the goal
// follows the live heap, which a cycle has just measured.
func (p *pace) arm() {
	sentinel := new([32]byte) // not a tiny allocation: its own cleanup, once unreachable
	runtime.AddCleanup(sentinel, func(*pace) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.roomy.Load() {
			p.armed = false
			return
		}
		p.apply()
		p.arm()
	}, p)
}
