package maxprocs

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recorder stands in for the runtime: the GOMAXPROCS changes asked for.
type recorder struct {
	mu      sync.Mutex
	changes []bool // true: narrowed
}

func (r *recorder) set(narrow bool) {
	r.mu.Lock()
	r.changes = append(r.changes, narrow)
	r.mu.Unlock()
	runtime.Gosched() // widen the window a call starting meanwhile can fall into
}

func (r *recorder) narrow() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.changes) > 0 && r.changes[len(r.changes)-1]
}

// newTestFitter returns a Fitter on a clock the test moves (skip), its
// changes recorded by r, and a wait for its settling to end.
func newTestFitter(r *recorder) (f *Fitter, skip func(time.Duration)) {
	f = newFitter(r.set)
	var clock atomic.Int64
	f.now = clock.Load
	return f, func(d time.Duration) { clock.Add(int64(d)) }
}

func TestFitterSequences(t *testing.T) {
	// Steps: "c" a call alone (begin, end), "o" two calls that overlap,
	// "q" a quiet spell passes (the clock moves on by more than quiet).
	tests := []struct {
		name    string
		steps   string
		changes []bool
	}{
		{"calls alone before a quiet spell: nothing changes", "ccc", nil},
		{"calls alone after a quiet spell: narrow once", "qccc", []bool{true}},
		{"overlap widens at once", "qcco", []bool{true, false}},
		{"calls alone right after an overlap stay wide", "qcoccc", []bool{true, false}},
		{"a quiet spell after an overlap narrows again", "qcocqcc", []bool{true, false, true}},
		{"overlaps while wide change nothing", "ooo", nil},
		{"a burst after a quiet spell: its first call narrows, the second widens", "oooqoo", []bool{true, false}},
		{"quiet without calls changes nothing", "qqq", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r recorder
			f, skip := newTestFitter(&r)
			begin := func() { f.Begin(); f.settling.Wait() }
			for _, s := range tt.steps {
				switch s {
				case 'c':
					begin()
					f.End()
				case 'o':
					begin()
					begin()
					f.End()
					f.End()
				case 'q':
					skip(quiet + time.Millisecond)
				}
			}
			if !equal(r.changes, tt.changes) {
				t.Errorf("changes %v, want %v", r.changes, tt.changes)
			}
			if f.Narrow() != r.narrow() {
				t.Errorf("Narrow() = %v, the runtime was last set narrow=%v", f.Narrow(), r.narrow())
			}
		})
	}
}

func equal(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestFitterNarrowingMeetsACall races a call that narrows (the first after a
// quiet spell) with a second call starting: whichever order they run in,
// once both are in flight the process must be wide.
func TestFitterNarrowingMeetsACall(t *testing.T) {
	for i := range 2000 {
		var r recorder
		f, skip := newTestFitter(&r)
		skip(2 * quiet)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 2 {
			wg.Go(func() {
				<-start
				f.Begin()
			})
		}
		close(start)
		wg.Wait()
		f.settling.Wait()
		if f.Narrow() || r.narrow() {
			t.Fatalf("round %d: two calls in flight on one processor (changes %v)", i, r.changes)
		}
	}
}

// TestNilFitter: a nil *Fitter, what New returns when there is nothing to
// fit, counts nothing and is never narrow.
func TestNilFitter(t *testing.T) {
	var f *Fitter
	f.Begin()
	f.Begin()
	f.End()
	if f.Narrow() {
		t.Error("a nil Fitter is narrow")
	}
}

// TestOperatorsChoice: the values the Go runtime takes from GOMAXPROCS are
// the operator's choice, left alone; those it ignores are not.
func TestOperatorsChoice(t *testing.T) {
	for v, want := range map[string]bool{"1": true, "2": true, "64": true, "": false, "0": false, "-1": false, "max": false, "2 ": false, "+2": false} {
		if got := chosen(v); got != want {
			t.Errorf("GOMAXPROCS=%q: chosen = %v, want %v", v, got, want)
		}
	}
}

// TestRuntime drives the real runtime: narrowed to one processor, then back
// to its default.
func TestRuntime(t *testing.T) {
	t.Setenv("GOMAXPROCS", "2")
	if New() != nil {
		t.Fatal("New() fits GOMAXPROCS though the operator set it")
	}
	os.Unsetenv("GOMAXPROCS") // t.Setenv restores it after the test
	def := runtime.GOMAXPROCS(0)
	f := New()
	if def < 2 {
		if f != nil {
			t.Fatalf("New() = %v with GOMAXPROCS %d: nothing to fit", f, def)
		}
		t.Skipf("GOMAXPROCS is %d here: nothing to narrow", def)
	}
	defer runtime.SetDefaultGOMAXPROCS()
	defer f.gc.set(false) // however the test ends: Go's default, the hook disarmed
	if os.Getenv("GOGC") == "" && gogc() != defaultPercent {
		t.Errorf("before any call GOGC = %d, want %d: start-up's garbage is not paced", gogc(), defaultPercent)
	}
	var clock atomic.Int64
	f.now = clock.Load
	clock.Add(int64(2 * quiet))
	f.Begin()
	f.settling.Wait()
	f.End()
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Fatalf("after a call alone GOMAXPROCS = %d, want 1", got)
	}
	runtime.GC() // the pace is roomy only for a small live heap
	f.Begin()
	f.Begin()
	f.settling.Wait()
	if got := runtime.GOMAXPROCS(0); got != def {
		t.Fatalf("with two calls in flight GOMAXPROCS = %d, want the default %d", got, def)
	}
	if os.Getenv("GOGC") == "" && gogc() <= defaultPercent {
		t.Errorf("with two calls in flight GOGC = %d, want the roomy pace", gogc())
	}
	// Narrow again, which is also how this test leaves the collector's
	// pace: Go's default, the pace's hook disarmed.
	f.End()
	f.End()
	callAlone(f, &clock)
	if os.Getenv("GOGC") == "" && gogc() != defaultPercent {
		t.Errorf("after a call alone GOGC = %d, want %d", gogc(), defaultPercent)
	}
}

// TestRuntimeWideFromStart: the process starts wide, so the first calls
// that overlap change no processors and the Fitter's set is not called;
// Begin itself makes the collector's pace roomy.
func TestRuntimeWideFromStart(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	os.Unsetenv("GOMAXPROCS") // t.Setenv restores it after the test
	if os.Getenv("GOGC") != "" {
		t.Skip("GOGC is set: the pace is not fitted")
	}
	f := New()
	if f == nil {
		t.Skipf("GOMAXPROCS is %d here: nothing to fit", runtime.GOMAXPROCS(0))
	}
	defer runtime.SetDefaultGOMAXPROCS()
	defer f.gc.set(false) // however the test ends: Go's default, the hook disarmed
	var clock atomic.Int64
	f.now = clock.Load
	runtime.GC() // the pace is roomy only for a small live heap
	f.Begin()
	f.Begin()
	f.settling.Wait()
	if f.Narrow() {
		t.Fatal("narrow with two calls in flight")
	}
	if got := gogc(); got <= defaultPercent {
		t.Errorf("two calls in flight from the start: GOGC = %d, want the roomy pace", got)
	}
	f.End()
	f.End()
	callAlone(f, &clock)
	if got := gogc(); got != defaultPercent {
		t.Errorf("after a call alone GOGC = %d, want %d", got, defaultPercent)
	}
}

// callAlone makes one call after a quiet spell, which narrows, and waits
// for the change.
func callAlone(f *Fitter, clock *atomic.Int64) {
	clock.Add(int64(2 * quiet))
	f.Begin()
	f.settling.Wait()
	f.End()
}
