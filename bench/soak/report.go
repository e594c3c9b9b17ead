//go:build linux

package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"mcpguard.dev/mcpguard/bench/loadgen"
)

// report gathers what the run measured.
type report struct {
	o                      options
	loadStart, loadEnd     string
	idle, start, peak, end sample
	pooled                 sample        // sessions closed, the proxy's idle gateway connections still pooled
	lingered               sample        // -linger after the end
	settled                time.Duration // how long the goroutines took to come back once the pool emptied
	elapsed                time.Duration
	ended                  bool // mcpguard exited during the run
	reloadsWritten         int
	reloadsDone            int
	reloadsFailed          int
	alarms                 []string // log lines no run may print (scanLog)

	requests [2]int // session-era, stateless
	byOp     [nops]int
	lat      []time.Duration
	latOp    [nops][]time.Duration
	progress int
	dropped  int
	asks     int
	errs     map[string]int
	samples  []string
	failures []string
}

func (r *report) fail(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

func (r *report) add(w *worker) {
	if r.errs == nil {
		r.errs = map[string]int{}
	}
	for o := range nops {
		r.requests[min(int(w.kind-'s'), 1)] += w.requests[o] // 's' → 0, 'x' → 1
		r.byOp[o] += w.requests[o]
		r.lat = append(r.lat, w.lat[o]...)
		r.latOp[o] = append(r.latOp[o], w.lat[o]...)
	}
	r.progress += w.progress
	r.dropped += w.dropped
	r.asks += w.asks
	for k, n := range w.errs {
		if r.errs[k] == 0 {
			r.samples = append(r.samples, k+": "+w.sample[k])
		}
		r.errs[k] += n
	}
}

// saveProfiles saves mcpguard's heap and goroutine profiles as
// <when>.heap.pb.gz and <when>.goroutine.txt under -profiles.
func (r *report) saveProfiles(px *proc, when string) {
	if r.o.profiles == "" || px == nil {
		return
	}
	for name, file := range map[string]string{"heap": when + ".heap.pb.gz", "goroutine?debug=1": when + ".goroutine.txt"} {
		if err := px.profile(name, filepath.Join(r.o.profiles, file)); err != nil {
			logf("saving the %s profile: %v", name, err)
		}
	}
}

// print writes the markdown report and reports whether every invariant held.
func (r *report) print(w io.Writer) bool {
	slices.Sort(r.lat)
	total := r.requests[0] + r.requests[1]
	var nerr int
	for _, n := range r.errs {
		nerr += n
	}
	if nerr > 0 {
		r.fail("%d of %d requests failed", nerr, total)
	}
	if total == 0 {
		r.fail("no request was made")
	}
	if r.o.sessions > 0 && r.o.mix.askEvery > 0 && r.asks == 0 {
		r.fail("no server→client request was answered")
	}
	if r.o.mix.progressEvery > 0 && r.o.mix.ticks > 0 && r.progress == 0 {
		r.fail("no progress notification arrived")
	}
	if r.ended {
		r.fail("mcpguard exited during the run")
	}
	if r.reloadsFailed > 0 {
		r.fail("%d policy reloads failed", r.reloadsFailed)
	}
	for _, a := range r.alarms {
		r.fail("mcpguard logged: %s", a)
	}
	if r.end.sessions > r.idle.sessions {
		r.fail("%d sessions still active after every session was closed (%d idle)", r.end.sessions, r.idle.sessions)
	}
	if r.reloadsDone == 0 && !r.o.direct {
		r.fail("the policy was replaced %d times but never reloaded", r.reloadsWritten)
	}
	if !r.o.direct {
		if r.end.goroutines < 0 || r.end.goroutines > r.idle.goroutines+int64(r.o.goroutineSlack) {
			r.fail("goroutine leak: %s at the end, %s idle (slack %d)", fmtInt(r.end.goroutines), fmtInt(r.idle.goroutines), r.o.goroutineSlack)
		}
		if r.end.heapAlloc < 0 || r.end.heapAlloc > r.idle.heapAlloc+r.o.heapSlack {
			r.fail("heap leak: %s live at the end, %s idle (slack %s)", fmtMiB(r.end.heapAlloc), fmtMiB(r.idle.heapAlloc), fmtMiB(r.o.heapSlack))
		}
	}

	fmt.Fprintf(w, "### mcpguard soak (bench/soak, %s)\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "%d CPUs shared by client, stand-in gateway and proxy; %s. Load: %d session-era sessions (%s) and %d stateless workers (%s), "+
		"closed loop, every %d-th request tools/list, of the others every %d-th (session-era) %s, every %d-th %s (%d notifications), the rest fetch_url; "+
		"policy file replaced every %s.\n\n",
		runtime.NumCPU(), runtime.Version(), r.o.sessions, loadgen.ProtocolVersion, r.o.stateless, statelessVersion,
		r.o.mix.listEvery, r.o.mix.askEvery, loadgen.AskTool, r.o.mix.progressEvery, loadgen.ProgressTool, r.o.mix.ticks, r.o.reload)
	if r.o.direct {
		fmt.Fprint(w, "**Direct**: no mcpguard in the path (the reference row); the policy reloads and proxy figures do not apply.\n\n")
	}
	fmt.Fprintf(w, "uptime at start: %s  \nuptime at end: %s\n\n", r.loadStart, r.loadEnd)
	fmt.Fprintln(w, "| measure | value |")
	fmt.Fprintln(w, "|---|---:|")
	fmt.Fprintf(w, "| duration | %.1f s |\n", r.elapsed.Seconds())
	fmt.Fprintf(w, "| requests (session-era + stateless) | %d (%d + %d) |\n", total, r.requests[0], r.requests[1])
	fmt.Fprintf(w, "| requests/s | %.0f |\n", float64(total)/max(r.elapsed.Seconds(), 1e-9))
	counts := make([]string, nops)
	for o := range nops {
		counts[o] = strconv.Itoa(r.byOp[o])
	}
	fmt.Fprintf(w, "| requests: %s | %s |\n", strings.Join(opNames[:], " / "), strings.Join(counts, " / "))
	fmt.Fprintf(w, "| progress notifications checked (own token, in order, before the answer, all the gateway wrote) | %d |\n", r.progress)
	fmt.Fprintf(w, "| progress notifications the gateway dropped (mcp-go race, not counted as errors) | %d |\n", r.dropped)
	if r.o.mix.replay {
		fmt.Fprintf(w, "| server→client requests answered (once each; a second answer refused) | %d |\n", r.asks)
	} else {
		fmt.Fprintf(w, "| server→client requests answered (once each) | %d |\n", r.asks)
	}
	kinds := slices.Sorted(func(yield func(string) bool) {
		for k := range r.errs {
			if !yield(k) {
				return
			}
		}
	})
	if len(kinds) == 0 {
		fmt.Fprintln(w, "| errors | 0 |")
	}
	for _, k := range kinds {
		fmt.Fprintf(w, "| errors: %s | %d |\n", k, r.errs[k])
	}
	fmt.Fprintf(w, "| latency p50 / p99 / p999 | %s / %s / %s |\n",
		fmtDur(loadgen.Percentile(r.lat, 50)), fmtDur(loadgen.Percentile(r.lat, 99)), fmtDur(loadgen.Percentile(r.lat, 99.9)))
	for o := range nops {
		slices.Sort(r.latOp[o])
		if len(r.latOp[o]) > 0 {
			fmt.Fprintf(w, "| latency p50 / p99, %s | %s / %s |\n", opNames[o],
				fmtDur(loadgen.Percentile(r.latOp[o], 50)), fmtDur(loadgen.Percentile(r.latOp[o], 99)))
		}
	}
	fmt.Fprintf(w, "| policy reloads (file replaced / reloaded / failed) | %d / %d / %d |\n", r.reloadsWritten, r.reloadsDone, r.reloadsFailed)
	if !r.o.direct {
		fmt.Fprintf(w, "| proxy sessions active idle / start / peak / end | %s / %s / %s / %s |\n",
			fmtInt(r.idle.sessions), fmtInt(r.start.sessions), fmtInt(r.peak.sessions), fmtInt(r.end.sessions))
		fmt.Fprintf(w, "| proxy RSS idle / start / peak / pooled / end | %s / %s / %s / %s / %s |\n",
			fmtMiB(r.idle.rss), fmtMiB(r.start.rss), fmtMiB(r.peak.rss), fmtMiB(r.pooled.rss), fmtMiB(r.end.rss))
		fmt.Fprintf(w, "| proxy goroutines idle / start / peak / pooled / end | %s / %s / %s / %s / %s |\n",
			fmtInt(r.idle.goroutines), fmtInt(r.start.goroutines), fmtInt(r.peak.goroutines), fmtInt(r.pooled.goroutines), fmtInt(r.end.goroutines))
		fmt.Fprintf(w, "| proxy live heap after GC idle / start / peak / pooled / end | %s / %s / %s / %s / %s |\n",
			fmtMiB(r.idle.heapAlloc), fmtMiB(r.start.heapAlloc), fmtMiB(r.peak.heapAlloc), fmtMiB(r.pooled.heapAlloc), fmtMiB(r.end.heapAlloc))
		fmt.Fprintf(w, "| proxy heap spans in use after GC idle / start / peak / pooled / end | %s / %s / %s / %s / %s |\n",
			fmtMiB(r.idle.heapInuse), fmtMiB(r.start.heapInuse), fmtMiB(r.peak.heapInuse), fmtMiB(r.pooled.heapInuse), fmtMiB(r.end.heapInuse))
		fmt.Fprintf(w, "| proxy heap free but not returned to the OS, pooled / end | %s / %s |\n", fmtMiB(r.pooled.heapUnused), fmtMiB(r.end.heapUnused))
		if r.o.linger > 0 {
			fmt.Fprintf(w, "| proxy after %s idle: RSS / live heap / free heap not returned | %s / %s / %s |\n",
				r.o.linger, fmtMiB(r.lingered.rss), fmtMiB(r.lingered.heapAlloc), fmtMiB(r.lingered.heapUnused))
		}
		fmt.Fprintf(w, "| goroutines back within slack (%d) after the pool emptied | %.1f s |\n", r.o.goroutineSlack, r.settled.Seconds())
	}
	result := "all invariants held"
	if len(r.failures) > 0 {
		result = "**FAILED**: " + strings.Join(r.failures, "; ")
	}
	fmt.Fprintf(w, "| result | %s |\n", result)
	if len(r.samples) > 0 {
		slices.Sort(r.samples)
		fmt.Fprintln(w, "\nFirst error of each kind:")
		for _, s := range r.samples {
			fmt.Fprintf(w, "- %s\n", s)
		}
	}
	return len(r.failures) == 0
}

func fmtDur(d time.Duration) string {
	if d >= 10*time.Millisecond {
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.0f µs", float64(d)/1e3)
}

func fmtMiB(b int64) string {
	if b < 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

func fmtInt(n int64) string {
	if n < 0 {
		return "–"
	}
	return strconv.FormatInt(n, 10)
}

func uptime() string {
	out, err := exec.Command("uptime").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}
