package memtrim

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// After start-up, work brings memory back: a burst of calls leaves garbage
// in the heap until the next collection, which an idle process does not
// reach for minutes (the runtime forces one every 2 min), goroutine stacks
// grown by deep call paths stay grown until a collection shrinks them, and
// the code and tables the calls ran are mapped again (issue #18: an idle
// sidecar held 7.6 MiB before its first call, 16.9 MiB after). whenIdle
// gives that back once the process has been quiet a while after work, at
// most once per minGap, so a process serving steadily never pays for it.

// idlePolicy says when the idle trimmer acts.
type idlePolicy struct {
	quiet  time.Duration // no work for this long: the process is idle
	minGap time.Duration // at least this long between two actions
	noise  uint64        // heap bytes allocated between two looks that are not work
	// minGarbage is the least garbage worth a collection: one leaves about
	// 0.4 MiB of its own bookkeeping resident (mark bits, work buffers), so
	// with less garbage than this the trim only drops the pages.
	minGarbage uint64
	// idleLook is how often to look while no work is waiting to be given
	// back: work is then noticed up to this late.
	idleLook time.Duration
}

// defaultIdle: a second without work ends a burst (a tool call is answered
// in milliseconds; an agent thinks for seconds between calls), and a trim
// costs two garbage collections and a return of the freed heap (10-20 ms of
// CPU on issue #18's machine) plus the page faults that map the call path
// back on the next call (5-10 ms), so at most one every 30 s. The sidecar at idle allocates nothing between
// looks (its timers run without allocating); 16 KiB is below what one small
// call allocates.
var defaultIdle = idlePolicy{quiet: time.Second, minGap: 30 * time.Second, noise: 16 << 10, minGarbage: 1 << 20, idleLook: 5 * time.Second}

// action is what the idle trimmer does after a look.
type action int

const (
	none action = iota
	// trim: garbage collections that return the freed heap to the
	// operating system (and shrink grown stacks), then drop the
	// executable's read-only pages, as AfterStart does.
	trim
	// drop: only drop the executable's pages: after work that left less
	// garbage than a collection is worth, or after a collection the process
	// ran while otherwise idle (the runtime's periodic one, which read
	// stack maps and type data back in; the heap it freed is returned by
	// the runtime's own scavenger).
	drop
)

// idleState is what the idle trimmer remembers between looks.
type idleState struct {
	allocs   uint64    // heap bytes allocated in total, at the last look
	gcs      uint64    // collections completed, after the last action
	lastWork time.Time // the last look that saw work
	worked   bool      // work seen since the last action
	lastAct  time.Time // the last action (zero: none yet)
}

// look takes the process's cumulative allocations, completed collections
// and the heap's garbage (what it holds beyond the last collection's live
// objects) at now, and says what to do. After doing it, the caller
// reports with acted, so the action's own collection and allocations are
// not taken for work.
func (s *idleState) look(p idlePolicy, now time.Time, allocs, gcs, garbage uint64) action {
	if allocs > s.allocs+p.noise {
		s.lastWork, s.worked = now, true
	}
	s.allocs = allocs
	if now.Sub(s.lastWork) < p.quiet || (!s.lastAct.IsZero() && now.Sub(s.lastAct) < p.minGap) {
		return none
	}
	switch {
	case s.worked && garbage >= p.minGarbage:
		return trim
	case s.worked, gcs != s.gcs:
		return drop
	}
	return none
}

// acted records an action done at now, and the allocations and
// collections counted after it.
func (s *idleState) acted(now time.Time, allocs, gcs uint64) {
	s.allocs, s.gcs = allocs, gcs
	s.worked, s.lastAct = false, now
}

// runtimeCounters returns a reader, for one goroutine, of the heap bytes
// allocated and the collections completed since the process started, and
// of the heap's garbage: its objects, live or not yet found dead, beyond
// those the last collection marked live.
func runtimeCounters() func() (allocs, gcs, garbage uint64) {
	samples := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
	return func() (allocs, gcs, garbage uint64) {
		metrics.Read(samples)
		objects, live := samples[2].Value.Uint64(), samples[3].Value.Uint64()
		return samples[0].Value.Uint64(), samples[1].Value.Uint64(), objects - min(live, objects)
	}
}

// whenIdle runs until ctx ends, from state s, giving back what work
// brought back each time the process goes idle after it (see idlePolicy).
// Each look reads two runtime counters and allocates nothing: twice per
// quiet period while there is work to wait out, every p.idleLook when there
// is none (an idle process wakes every few seconds, not twice a second).
func whenIdle(ctx context.Context, p idlePolicy, s idleState, counters func() (allocs, gcs, garbage uint64), do func(action)) {
	t := time.NewTimer(p.quiet / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			allocs, gcs, garbage := counters()
			if a := s.look(p, now, allocs, gcs, garbage); a != none {
				do(a)
				allocs, gcs, _ = counters()
				s.acted(now, allocs, gcs)
			}
			next := p.idleLook
			if s.worked {
				next = p.quiet / 2
			}
			t.Reset(next)
		}
	}
}

func doAction(a action) {
	if a == trim {
		// Two collections: what a sync.Pool held (the proxy's body
		// buffers, the metrics handler's gzip writers) survives the first
		// in the pool's victim cache and is freed by the second. After 300
		// calls of 64 KiB, 0.4 MiB less than with one; after small calls,
		// 0.1-0.2 MiB.
		runtime.GC()
		debug.FreeOSMemory()
	}
	dropExecutablePages()
}
