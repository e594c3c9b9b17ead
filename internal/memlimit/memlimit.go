// Package memlimit gives the Go runtime the memory limit of the container
// the process runs in, so that near the limit the garbage collector works
// harder instead of the kernel killing the process.
//
// Go reads its cgroup's CPU limit (GOMAXPROCS, since Go 1.25) but not its
// memory limit. Without GOMEMLIMIT the collector lets the heap grow to
// twice what was live after the last cycle (GOGC=100), whatever the
// container allows: a burst that doubles the live heap of a sidecar near
// its 256Mi limit ends in an OOM kill, where a collector that knew the
// limit would have collected more often and kept the process alive.
package memlimit

import (
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/debug"
)

// Where a Limit came from.
const (
	SourceEnv    = "GOMEMLIMIT" // the operator's GOMEMLIMIT, left as it is
	SourceCgroup = "cgroup"     // derived from the cgroup's limit (FromCgroup)
	SourceNone   = "none"       // no limit found: Go's default, none
)

// Limit is the Go runtime's memory limit once Apply has run.
type Limit struct {
	// Bytes is the runtime's soft memory limit; 0 when there is none.
	Bytes int64
	// Source is SourceEnv, SourceCgroup or SourceNone.
	Source string
	// Cgroup is the cgroup's memory limit Bytes was derived from (Source
	// SourceCgroup), and File the file that gave it.
	Cgroup int64
	File   string
}

// LogValue is the limit as one log attribute, e.g.
// {"bytes":241591911,"source":"cgroup","cgroup_bytes":268435456}.
func (l Limit) LogValue() slog.Value {
	attrs := []slog.Attr{slog.Int64("bytes", l.Bytes), slog.String("source", l.Source)}
	if l.Source == SourceCgroup {
		attrs = append(attrs, slog.Int64("cgroup_bytes", l.Cgroup))
	}
	return slog.GroupValue(attrs...)
}

// FromCgroup is the runtime limit Apply derives from a cgroup limit of n
// bytes: 90 % of it. GOMEMLIMIT counts only the memory the Go runtime
// manages (heap, stacks, its own metadata), while the cgroup also charges
// the executable's resident pages (up to the sidecar build's 17 MB; the
// kernel can reclaim them, but a process whose code is reclaimed under it
// crawls), the kernel's socket buffers, and, when a policy has Rego, the
// Rego worker process beside the sidecar (7-13 MiB, docs/performance.md).
// The other 10 %, 25.6 MiB of the webhook's default 256Mi, leaves room
// for them; more would only make the collector run early for nothing.
func FromCgroup(n int64) int64 { return n - n/10 }

// Apply sets the runtime's memory limit to FromCgroup of the process's
// cgroup memory limit (cgroup v2's memory.max, or v1's
// memory.limit_in_bytes; the lowest of its cgroup and the ancestors the
// process can see), unless the operator set GOMEMLIMIT (set and not
// empty: the runtime reads an empty value as unset too), which then
// stands, "off" included.
//
// It never fails the caller: when the limit cannot be read it leaves the
// runtime as it was and returns SourceNone with the reason, for a debug
// log line. "No limit" ("max", or v1's largest number) is not an error.
// Elsewhere than Linux it does nothing. It reads two small files of /proc
// and one file per cgroup level: ~50 µs in a container, which shows one
// level (BenchmarkCgroupLimit, docs/performance.md).
func Apply() (Limit, error) {
	if os.Getenv("GOMEMLIMIT") != "" {
		l := Limit{Bytes: debug.SetMemoryLimit(-1), Source: SourceEnv}
		if l.Bytes == math.MaxInt64 {
			l.Bytes = 0 // GOMEMLIMIT=off
		}
		return l, nil
	}
	if runtime.GOOS != "linux" {
		return Limit{Source: SourceNone}, nil
	}
	n, file, err := cgroupLimit(os.ReadFile)
	if err != nil || n == 0 {
		return Limit{Source: SourceNone}, err
	}
	l := Limit{Bytes: FromCgroup(n), Source: SourceCgroup, Cgroup: n, File: file}
	debug.SetMemoryLimit(l.Bytes)
	return l, nil
}
