package memtrim

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// TestIdleLook: the idle trimmer acts once work has stopped for the quiet
// period, at most once per minGap; it collects only after work that left
// garbage worth a collection, and otherwise, or after a collection the
// process ran while idle, only drops the pages.
func TestIdleLook(t *testing.T) {
	p := idlePolicy{quiet: time.Second, minGap: 30 * time.Second, noise: 100, minGarbage: 1000, idleLook: 5 * time.Second}
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type look struct {
		at          time.Duration
		allocs, gcs uint64
		want        action
	}
	tests := []struct {
		name    string
		state   idleState // before the looks; lastWork is t0
		garbage uint64    // the heap's garbage at every look
		looks   []look
	}{
		{"no work, no collection: nothing", idleState{allocs: 1000, gcs: 3}, 4000, []look{
			{time.Second, 1000, 3, none}, {time.Minute, 1050, 3, none}, // 50 bytes: noise
		}},
		{"work, then quiet: one trim", idleState{allocs: 1000, gcs: 3}, 4000, []look{
			{500 * time.Millisecond, 5000, 3, none},  // work
			{time.Second, 5000, 3, none},             // quiet for 0.5 s
			{1500 * time.Millisecond, 5000, 3, trim}, // quiet for 1 s
		}},
		{"work that goes on is never trimmed", idleState{allocs: 1000, gcs: 3}, 4000, []look{
			{500 * time.Millisecond, 5000, 3, none}, {time.Second, 9000, 4, none},
			{1500 * time.Millisecond, 13000, 5, none}, {2 * time.Second, 17000, 5, none},
		}},
		{"a collection while idle: pages dropped, no collection of ours", idleState{allocs: 1000, gcs: 3}, 4000, []look{
			{2 * time.Minute, 1000, 4, drop},
		}},
		{"a collection during work: the trim after it", idleState{allocs: 1000, gcs: 3}, 4000, []look{
			{500 * time.Millisecond, 5000, 4, none}, {1500 * time.Millisecond, 5000, 4, trim},
		}},
		{"within minGap of the last action: wait", idleState{allocs: 1000, gcs: 3, lastAct: at(0)}, 4000, []look{
			{500 * time.Millisecond, 5000, 3, none},
			{2 * time.Second, 5000, 3, none},  // quiet, but 2 s after the last trim
			{29 * time.Second, 5000, 3, none}, // still within 30 s
			{30 * time.Second, 5000, 3, trim},
		}},
		{"work that left less garbage than a collection is worth: pages only", idleState{allocs: 1000, gcs: 3}, 999, []look{
			{500 * time.Millisecond, 5000, 3, none}, {1500 * time.Millisecond, 5000, 3, drop},
			{time.Hour, 5000, 3, none}, // once
		}},
		{"the quiet period counts from the last work, not the last look", idleState{allocs: 1000, gcs: 3}, 4000, []look{
			{10 * time.Second, 5000, 3, none}, {10*time.Second + 999*time.Millisecond, 5000, 3, none},
			{11 * time.Second, 5000, 3, trim},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.state
			s.lastWork = t0
			for i, l := range tt.looks {
				if got := s.look(p, at(l.at), l.allocs, l.gcs, tt.garbage); got != l.want {
					t.Fatalf("look %d at +%v (allocs %d, collections %d) = %v, want %v", i, l.at, l.allocs, l.gcs, got, l.want)
				}
				if l.want != none {
					s.acted(at(l.at), l.allocs, l.gcs)
				}
			}
		})
	}
}

// TestIdleActedForgetsItsOwnWork: the trim's own collection and allocations
// are not work, so one burst gives one trim, and the next burst (after
// minGap) another.
func TestIdleActedForgetsItsOwnWork(t *testing.T) {
	p := idlePolicy{quiet: time.Second, minGap: 30 * time.Second, noise: 100, minGarbage: 1000}
	t0 := time.Unix(1000, 0)
	s := idleState{allocs: 1000, gcs: 3, lastWork: t0}
	if got := s.look(p, t0.Add(time.Second), 5000, 3, 4000); got != none {
		t.Fatalf("work: %v", got)
	}
	if got := s.look(p, t0.Add(2*time.Second), 5000, 3, 4000); got != trim {
		t.Fatalf("after a quiet second: %v, want trim", got)
	}
	s.acted(t0.Add(2*time.Second), 5600, 4) // the trim allocated and collected
	for _, d := range []time.Duration{3 * time.Second, time.Minute, time.Hour} {
		if got := s.look(p, t0.Add(d), 5600, 4, 4000); got != none {
			t.Fatalf("at +%v with no work since the trim: %v, want none", d, got)
		}
	}
	if got := s.look(p, t0.Add(time.Hour+time.Second), 9000, 4, 4000); got != none {
		t.Fatalf("new work: %v", got)
	}
	if got := s.look(p, t0.Add(time.Hour+2*time.Second), 9000, 4, 4000); got != trim {
		t.Fatalf("after the new work: %v, want trim", got)
	}
}

// TestWhenIdle runs the trimmer's loop on synctest's clock: work for 3 s,
// then quiet; one trim a second after the last look that saw work, then
// nothing while idle, and one drop at the first look after the runtime's own
// collection two minutes later.
func TestWhenIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var allocs, gcs uint64 = 1 << 20, 2
		var log []string
		counters := func() (uint64, uint64, uint64) {
			el := time.Since(start)
			if el < 3*time.Second { // working
				allocs += 1 << 20
			}
			if el >= 2*time.Minute && gcs < 10 {
				gcs = 10 // the runtime's periodic collection
			}
			return allocs, gcs, 4 << 20
		}
		do := func(a action) {
			log = append(log, fmt.Sprintf("%v at %v", a, time.Since(start).Round(100*time.Millisecond)))
			if a == trim {
				gcs++ // ours
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		a, g, _ := counters()
		go func() {
			whenIdle(ctx, defaultIdle, idleState{allocs: a, gcs: g, lastWork: time.Now()}, counters, do)
			close(done)
		}()
		time.Sleep(5 * time.Minute)
		cancel()
		<-done
		// The last look that saw work was at 2.5 s; with none left to give
		// back, the trimmer looks every 5 s (3.5 s + 24 × 5 s).
		want := []string{"trim at 3.5s", "drop at 2m3.5s"}
		if fmt.Sprint(log) != fmt.Sprint(want) {
			t.Errorf("actions %q, want %q", log, want)
		}
	})
}

func (a action) String() string {
	switch a {
	case trim:
		return "trim"
	case drop:
		return "drop"
	}
	return "none"
}
