//go:build linux

package main

import (
	"math"
	"slices"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want float64
	}{
		{[]float64{7}, 7},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{-3, 10, -1, 0, 2}, 0},
	} {
		in := slices.Clone(tc.xs)
		if got := median(tc.xs); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", in, got, tc.want)
		}
		if !slices.Equal(in, tc.xs) {
			t.Errorf("median changed its argument: %v, was %v", tc.xs, in)
		}
	}
	if got := median(nil); !math.IsNaN(got) {
		t.Errorf("median(nil) = %v, want NaN", got)
	}
}

// The ranks of the sign test's 95% interval, as tables of it give them
// (e.g. n = 100: the 40th and 61st values), and their exact coverage,
// 1 − 2·P(Binomial(n, ½) ≤ k−1), computed with exact integers.
func TestSignRank(t *testing.T) {
	for _, tc := range []struct {
		n, k     int
		coverage float64
	}{
		{0, 0, 0},
		{5, 0, 0}, // even the extremes cover only 1 − 2/32 = 93.75%
		{6, 1, 1 - 2.0/64},
		{8, 1, 1 - 2.0/256},
		{9, 2, 1 - 2*10.0/512},
		{10, 2, 1 - 2*11.0/1024},
		{20, 6, 0.9586105346679688},
		{40, 14, 0.9615226917157997},
		{100, 40, 0.9647997997822952},
	} {
		k, cov := signRank(tc.n, 0.95)
		if k != tc.k || math.Abs(cov-tc.coverage) > 1e-9 {
			t.Errorf("signRank(%d, 0.95) = %d, %.10f; want %d, %.10f", tc.n, k, cov, tc.k, tc.coverage)
		}
	}
}

func TestPairedMedianCI(t *testing.T) {
	for _, tc := range []struct {
		name     string
		xs, ys   []float64
		op       func(x, y float64) float64
		want     estimate
		coverage bool // whether an interval is expected
	}{{
		// Paired, the rounds' drift cancels: the differences are −1, −18
		// and 1, median −1; the difference of the medians would be 2 − 20.
		name: "difference of pairs, not of medians",
		xs:   []float64{1, 2, 30}, ys: []float64{0, 20, 31}, op: diff,
		want: estimate{median: -1, lo: math.Inf(-1), hi: math.Inf(1), n: 3},
	}, {
		// Differences 3, −2, 5, 1, 4, 0: six rounds, so the interval is
		// the extremes.
		name: "six rounds: the extremes",
		xs:   []float64{13, 18, 25, 31, 44, 50}, ys: []float64{10, 20, 20, 30, 40, 50}, op: diff,
		want:     estimate{median: 2, lo: -2, hi: 5, n: 6},
		coverage: true,
	}, {
		// Ratios 1.1, 0.9, 1.0, 1.2, 0.8, 1.05, 0.95, 1.3, 0.7, 1.15:
		// sorted 0.7 0.8 0.9 0.95 1.0 1.05 1.1 1.15 1.2 1.3; ten rounds,
		// the 2nd and 9th.
		name: "ten ratios: the second smallest and largest",
		xs:   []float64{110, 90, 100, 120, 80, 105, 95, 130, 70, 115}, ys: []float64{100, 100, 100, 100, 100, 100, 100, 100, 100, 100}, op: ratio,
		want:     estimate{median: 1.025, lo: 0.8, hi: 1.2, n: 10},
		coverage: true,
	}} {
		got := medianCI(paired(tc.xs, tc.ys, tc.op), 0.95)
		if math.Abs(got.median-tc.want.median) > 1e-9 || math.Abs(got.lo-tc.want.lo) > 1e-9 ||
			math.Abs(got.hi-tc.want.hi) > 1e-9 || got.n != tc.want.n || (got.coverage > 0) != tc.coverage {
			t.Errorf("%s: got %+v, want %+v (an interval: %v)", tc.name, got, tc.want, tc.coverage)
		}
	}
}

func TestVerdict(t *testing.T) {
	ci := func(lo, hi float64) estimate {
		return estimate{median: (lo + hi) / 2, lo: lo, hi: hi, coverage: 0.96, n: 40}
	}
	for _, tc := range []struct {
		e      estimate
		limit  float64
		atMost bool
		want   string
	}{
		{ci(5, 19), 20, true, "met"},
		{ci(5, 20), 20, true, "met"},
		{ci(15, 25), 20, true, "undecided (the interval straddles the target)"},
		{ci(21, 30), 20, true, "not met"},
		{ci(1.00, 1.05), 1, false, "met"},
		{ci(0.97, 1.02), 1, false, "undecided (the interval straddles the target)"},
		{ci(0.90, 0.99), 1, false, "not met"},
		{estimate{median: 0, lo: math.Inf(-1), hi: math.Inf(1), n: 4}, 20, true, "undecided (too few rounds for an interval)"},
	} {
		if got := verdict(tc.e, tc.limit, tc.atMost); got != tc.want {
			t.Errorf("verdict([%v, %v], %v, atMost %v) = %q, want %q", tc.e.lo, tc.e.hi, tc.limit, tc.atMost, got, tc.want)
		}
	}
}

// Every two rounds each pair of paths runs once in each order, and every
// 2n rounds each path takes each position twice.
func TestOrder(t *testing.T) {
	for n := 1; n <= 5; n++ {
		at := make([][]int, n) // at[path][position]
		for i := range at {
			at[i] = make([]int, n)
		}
		for r := 0; r < 2*n; r++ {
			o := order(n, r)
			if s := slices.Sorted(slices.Values(o)); !slices.Equal(s, order(n, 0)) {
				t.Fatalf("order(%d, %d) = %v: not every path once", n, r, o)
			}
			for pos, p := range o {
				at[p][pos]++
			}
			if r%2 == 1 {
				prev := order(n, r-1)
				for a := range n {
					for b := range n {
						if a != b && (slices.Index(o, a) < slices.Index(o, b)) == (slices.Index(prev, a) < slices.Index(prev, b)) {
							t.Errorf("rounds %d and %d run paths %d and %d in the same order: %v, %v", r-1, r, a, b, prev, o)
						}
					}
				}
			}
		}
		for p := range n {
			for pos := range n {
				if at[p][pos] != 2 {
					t.Errorf("n=%d: path %d ran at position %d %d times in %d rounds, want 2", n, p, pos, at[p][pos], 2*n)
				}
			}
		}
	}
}
