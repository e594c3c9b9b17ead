// Package maxprocs fits the Go scheduler to the calls a proxy serves at once:
// one processor (GOMAXPROCS=1) while calls come one at a time, the runtime's
// own default as soon as two overlap; and the collector's pace with it
// (gcpace.go): a heap goal of at least 16 MiB once calls overlap, until the
// process narrows again, Go's default while narrow.
//
// An agent calls its tools one after another, so the sidecar mostly serves
// one call at a time, and a call's path is strictly serial: read the
// request, decide, write it to the gateway, wait, read the answer, write it
// back. With two or more processors each wait hands the next step to
// whichever thread the scheduler wakes: a goroutine readied by the network
// poller starts another processor spinning to look for work (a futex wake,
// a thread that spins and sleeps again), and the call moves between cores.
// On issue #18's machine that cost, at 1 session, 36 µs of added p50 and
// 40 µs of CPU per small call (bench/wakeups, ABBA: mcpguard +64 µs over a
// plain reverse proxy with the default GOMAXPROCS=2, +28 µs with 1; CPU
// 219 vs 179 µs a call, the reverse proxy's 180). With calls overlapping,
// one processor is a queue (16 sessions: p50 +12 %), so the default comes
// back as soon as a second call starts, and one processor only after a
// quiet spell with no overlap.
//
// The calls are counted where the proxy counts them (proxy.Config.Calls):
// a POST's time in its handler is not a call's, since a legacy HTTP+SSE
// call outlives the POST answered 202, and a subscriptions/listen stream
// is a POST that is no call.
//
// GOMAXPROCS set by the operator is left alone (New returns nil), and so
// is GOGC (the collector's pace is not fitted).
package maxprocs

import (
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// quiet is how long calls must have come one at a time before the process
// narrows to one processor. Every change stops the world for a moment
// (~15 µs here): this bounds the changes to about two a second however
// calls come, and a burst of parallel tool calls keeps every processor
// until a second after it ends.
const quiet = time.Second

// Fitter counts the calls in flight and sets GOMAXPROCS from them. A nil
// *Fitter does nothing.
//
// The change itself is made by a goroutine of its own (settle), never by
// the call that asks for it: runtime.GOMAXPROCS first waits for a garbage
// collection in progress to end, 2-3 ms with a few MiB live on issue #18's
// machine, which no call should wait for.
type Fitter struct {
	now      func() int64 // monotonic nanoseconds
	inflight atomic.Int64
	narrow   atomic.Bool  // GOMAXPROCS is 1 (or about to be)
	overlap  atomic.Int64 // time since start of the last call that began with another in flight
	busy     atomic.Bool  // settle is running: it makes every change, one at a time
	settling sync.WaitGroup
	set      func(narrow bool)
	gc       *pace // the collector's, nil when not fitted
}

// New returns a Fitter, or nil when there is nothing to fit: the operator
// chose GOMAXPROCS, or the runtime's default is already 1.
func New() *Fitter {
	if chosen(os.Getenv("GOMAXPROCS")) || runtime.GOMAXPROCS(0) < 2 {
		return nil
	}
	f := newFitter(setRuntime)
	if f.gc = newPace(); f.gc != nil {
		f.set = func(narrow bool) {
			setRuntime(narrow)
			f.gc.set(!narrow)
		}
	}
	return f
}

// chosen reports whether the runtime took GOMAXPROCS=v as the operator's
// choice: a positive number. It ignores anything else (empty, 0, "+2"),
// and so does the Fitter.
func chosen(v string) bool {
	n, err := strconv.Atoi(v)
	return err == nil && n > 0 && v[0] != '+' // the runtime's atoi takes no sign
}

func newFitter(set func(narrow bool)) *Fitter {
	// No narrowing in the first quiet spell: start-up's own work (policy
	// compile, the first trim) runs on every processor.
	start := time.Now()
	return &Fitter{now: func() int64 { return int64(time.Since(start)) }, set: set}
}

// setRuntime narrows to one processor, or gives the runtime back its
// default, which follows the container's CPU limit (Go 1.25's
// container-aware GOMAXPROCS, whose periodic updates resume with it).
func setRuntime(narrow bool) {
	if narrow {
		runtime.GOMAXPROCS(1)
		return
	}
	runtime.SetDefaultGOMAXPROCS()
}

// Begin counts a call in. A call that overlaps another widens at once; a
// call alone after a quiet spell narrows.
//
// Begin and settle pair their atomics so that a narrowing and a call that
// starts meanwhile cannot both miss each other: settle stores narrow before
// it loads inflight again, Begin adds to inflight before it loads narrow,
// so one of the two loads sees the other's store and the process widens
// again.
func (f *Fitter) Begin() {
	if f == nil {
		return
	}
	now := f.now()
	if f.inflight.Add(1) > 1 {
		f.overlap.Store(now)
		if f.narrow.Load() {
			f.settle()
		}
		// Also when the process was never narrowed (from the start):
		// the pace is roomy only once calls overlap, not for start-up's
		// garbage.
		f.gc.widen()
		return
	}
	if !f.narrow.Load() && now-f.overlap.Load() >= int64(quiet) {
		f.settle()
	}
}

// End counts a call out.
func (f *Fitter) End() {
	if f != nil {
		f.inflight.Add(-1)
	}
}

// wantNarrow reports whether the process should run on one processor: at
// most one call in flight, and none overlapping for a quiet spell.
func (f *Fitter) wantNarrow() bool {
	return f.inflight.Load() <= 1 && f.now()-f.overlap.Load() >= int64(quiet)
}

// settle starts the goroutine that brings GOMAXPROCS to what the calls
// want, unless it runs already; then it will see this call too.
func (f *Fitter) settle() {
	if f.busy.CompareAndSwap(false, true) {
		f.settling.Add(1)
		go f.settleLoop()
	}
}

func (f *Fitter) settleLoop() {
	defer f.settling.Done()
	for {
		for want := f.wantNarrow(); want != f.narrow.Load(); want = f.wantNarrow() {
			f.narrow.Store(want)
			f.set(want)
		}
		f.busy.Store(false)
		// A Begin that found the loop busy left its change to it: look
		// once more after letting go, and go on if no other loop started.
		if f.wantNarrow() == f.narrow.Load() || !f.busy.CompareAndSwap(false, true) {
			return
		}
	}
}

// Narrow reports whether the process runs on one processor now.
func (f *Fitter) Narrow() bool { return f != nil && f.narrow.Load() }
