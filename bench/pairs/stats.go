//go:build linux

package main

import (
	"fmt"
	"math"
	"slices"
)

// median returns the middle of xs (the mean of the two middle values when
// there is an even number of them), or NaN when xs is empty. xs is not
// changed.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// paired returns op(xs[i], ys[i]) for every round i: the difference or ratio
// of two paths measured in the same round. The median of these is what the
// harness reports, not op of the two medians: a round's drift falls on both
// of its figures and cancels in the pair.
func paired(xs, ys []float64, op func(x, y float64) float64) []float64 {
	out := make([]float64, min(len(xs), len(ys)))
	for i := range out {
		out[i] = op(xs[i], ys[i])
	}
	return out
}

func diff(x, y float64) float64  { return x - y }
func ratio(x, y float64) float64 { return x / y }

// estimate is the median of per-round figures with a confidence interval
// for it.
type estimate struct {
	median, lo, hi float64
	// coverage is the interval's exact coverage, at least the level asked
	// for; 0 when there were too few rounds for one, and lo and hi are then
	// −Inf and +Inf.
	coverage float64
	n        int
}

// signRank returns k such that the k-th smallest and k-th largest of n
// values bound their population's median with probability at least level,
// and that probability: the sign test's interval, which assumes nothing of
// the distribution but that it is continuous. The interval misses the
// median when fewer than k values lie on one side of it, so its coverage
// is 1 − 2·P(B ≤ k−1) for B ~ Binomial(n, ½); k is the largest that keeps
// this at level or above, and 0 when not even the extremes do (n < 6 at
// 95%). At 95%: n = 6 → 1, 10 → 2, 20 → 6, 40 → 14, 100 → 40.
func signRank(n int, level float64) (k int, coverage float64) {
	cdf := 0.0 // P(B ≤ j)
	for j := 0; j < n; j++ {
		cdf += binomialHalf(n, j)
		if 2*cdf > 1-level {
			break
		}
		k, coverage = j+1, 1-2*cdf
	}
	return k, coverage
}

// binomialHalf is P(B = j) for B ~ Binomial(n, ½), computed through
// logarithms so that a large n neither overflows C(n, j) nor underflows 2^−n.
func binomialHalf(n, j int) float64 {
	lg := func(x int) float64 { v, _ := math.Lgamma(float64(x) + 1); return v }
	return math.Exp(lg(n) - lg(j) - lg(n-j) - float64(n)*math.Ln2)
}

// medianCI returns the median of xs with its sign-test interval at level.
func medianCI(xs []float64, level float64) estimate {
	e := estimate{median: median(xs), lo: math.Inf(-1), hi: math.Inf(1), n: len(xs)}
	k, cov := signRank(len(xs), level)
	if k > 0 {
		s := slices.Sorted(slices.Values(xs))
		e.lo, e.hi, e.coverage = s[k-1], s[len(s)-k], cov
	}
	return e
}

// verdict says whether the estimate meets a target of at most (atMost) or
// at least limit: "met" or "not met" when the whole interval is on one side
// of it, "undecided" when the interval straddles it or there is none.
func verdict(e estimate, limit float64, atMost bool) string {
	lo, hi := e.lo, e.hi
	if !atMost {
		lo, hi = -hi, -lo
		limit = -limit
	}
	switch {
	case e.coverage == 0:
		return "undecided (too few rounds for an interval)"
	case hi <= limit:
		return "met"
	case lo > limit:
		return "not met"
	}
	return "undecided (the interval straddles the target)"
}

// us formats an estimate of microseconds, signed: "+12.3 µs [+5.1, +19.0]".
func (e estimate) us() string {
	return fmt.Sprintf("%+.1f µs %s", e.median, e.interval("%+.1f"))
}

// times formats an estimate of a ratio: "×0.981 [0.962, 1.004]".
func (e estimate) times() string {
	return fmt.Sprintf("×%.3f %s", e.median, e.interval("%.3f"))
}

func (e estimate) interval(verb string) string {
	if e.coverage == 0 {
		return fmt.Sprintf("[no interval from %d rounds]", e.n)
	}
	return fmt.Sprintf("["+verb+", "+verb+"]", e.lo, e.hi)
}

// order returns the order in which round r runs n paths: rotated by r/2,
// reversed in odd rounds (A B, B A, B A, A B … for two paths; all six
// orders of three in six rounds). Every two rounds each pair of paths runs
// once in each order, and every 2n rounds each path runs in each position
// twice, so neither a path's place in the round nor its neighbour favours
// one path.
func order(n, r int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = (i + r/2) % n
	}
	if r%2 == 1 {
		slices.Reverse(out)
	}
	return out
}
