package promtext

import (
	"bytes"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// runtimeReader reads what client_golang's default Go collector
// (collectors.NewGoCollector, v1.25) and process collector write, under the
// same names, types and help: go_* from runtime/metrics, runtime and
// runtime/debug; process_* from /proc/self, as its procfs did. A value
// that cannot be read (no /proc) leaves its family out.
type runtimeReader struct {
	samples []metrics.Sample
	index   map[string]int // runtime/metrics name → samples index
	help    map[string]string
	start   float64 // process_start_time_seconds, 0 until read
	gc      debug.GCStats
	buf     []byte // reused by readProc
}

// Runtime metrics read for the memstats-like families; the collector
// computes each go_memstats_* from these as named in its help.
const (
	rmTinyAllocs    = "/gc/heap/tiny/allocs:objects"
	rmAllocs        = "/gc/heap/allocs:objects"
	rmFrees         = "/gc/heap/frees:objects"
	rmAllocBytes    = "/gc/heap/allocs:bytes"
	rmObjects       = "/gc/heap/objects:objects"
	rmGoal          = "/gc/heap/goal:bytes"
	rmTotal         = "/memory/classes/total:bytes"
	rmHeapObjects   = "/memory/classes/heap/objects:bytes"
	rmHeapUnused    = "/memory/classes/heap/unused:bytes"
	rmHeapReleased  = "/memory/classes/heap/released:bytes"
	rmHeapFree      = "/memory/classes/heap/free:bytes"
	rmHeapStacks    = "/memory/classes/heap/stacks:bytes"
	rmOSStacks      = "/memory/classes/os-stacks:bytes"
	rmMSpanInuse    = "/memory/classes/metadata/mspan/inuse:bytes"
	rmMSpanFree     = "/memory/classes/metadata/mspan/free:bytes"
	rmMCacheInuse   = "/memory/classes/metadata/mcache/inuse:bytes"
	rmMCacheFree    = "/memory/classes/metadata/mcache/free:bytes"
	rmProfBuckets   = "/memory/classes/profiling/buckets:bytes"
	rmMetadataOther = "/memory/classes/metadata/other:bytes"
	rmOther         = "/memory/classes/other:bytes"
	rmGOGC          = "/gc/gogc:percent"
	rmMemLimit      = "/gc/gomemlimit:bytes"
	rmGOMAXPROCS    = "/sched/gomaxprocs:threads"
)

// rmFamilies are the runtime/metrics the collector exposes under their own
// translated names by default (its GoCollectorDefaultRuntimeMetrics).
var rmFamilies = []struct{ metric, name string }{
	{rmGOGC, "go_gc_gogc_percent"},
	{rmMemLimit, "go_gc_gomemlimit_bytes"},
	{rmGOMAXPROCS, "go_sched_gomaxprocs_threads"},
}

func newRuntimeReader() *runtimeReader {
	r := &runtimeReader{index: map[string]int{}, help: map[string]string{}}
	wanted := map[string]bool{}
	for _, n := range []string{rmTinyAllocs, rmAllocs, rmFrees, rmAllocBytes, rmObjects, rmGoal, rmTotal,
		rmHeapObjects, rmHeapUnused, rmHeapReleased, rmHeapFree, rmHeapStacks, rmOSStacks, rmMSpanInuse,
		rmMSpanFree, rmMCacheInuse, rmMCacheFree, rmProfBuckets, rmMetadataOther, rmOther} {
		wanted[n] = true
	}
	for _, f := range rmFamilies {
		wanted[f.metric] = true
	}
	for _, d := range metrics.All() {
		if !wanted[d.Name] {
			continue
		}
		r.index[d.Name] = len(r.samples)
		r.samples = append(r.samples, metrics.Sample{Name: d.Name})
		r.help[d.Name] = d.Description + " Sourced from " + d.Name + "."
	}
	return r
}

// value is a sample read by the last read, as a float; 0 if the runtime
// does not have it.
func (r *runtimeReader) value(name string) float64 {
	i, ok := r.index[name]
	if !ok {
		return 0
	}
	switch v := r.samples[i].Value; v.Kind() {
	case metrics.KindUint64:
		return float64(v.Uint64())
	case metrics.KindFloat64:
		return v.Float64()
	}
	return 0
}

func gauge(name, help string, v float64) family {
	return family{name: name, help: help, typ: typeGauge, series: []series{{value: v}}}
}

func counter(name, help string, v float64) family {
	return family{name: name, help: help, typ: typeCounter, series: []series{{value: v}}}
}

// read returns the go_* and process_* families as they are now.
func (r *runtimeReader) read() []family {
	metrics.Read(r.samples)
	v := r.value
	fams := []family{
		gauge("go_goroutines", "Number of goroutines that currently exist.", float64(runtime.NumGoroutine())),
		{name: "go_info", help: "Information about the Go environment.", typ: typeGauge,
			series: []series{{labels: []label{{"version", runtime.Version()}}, value: 1}}},
		gauge("go_memstats_alloc_bytes", "Number of bytes allocated in heap and currently in use. Equals to /memory/classes/heap/objects:bytes.", v(rmHeapObjects)),
		counter("go_memstats_alloc_bytes_total", "Total number of bytes allocated in heap until now, even if released already. Equals to /gc/heap/allocs:bytes.", v(rmAllocBytes)),
		gauge("go_memstats_buck_hash_sys_bytes", "Number of bytes used by the profiling bucket hash table. Equals to /memory/classes/profiling/buckets:bytes.", v(rmProfBuckets)),
		counter("go_memstats_frees_total", "Total number of heap objects frees. Equals to /gc/heap/frees:objects + /gc/heap/tiny/allocs:objects.", v(rmFrees)+v(rmTinyAllocs)),
		gauge("go_memstats_gc_sys_bytes", "Number of bytes used for garbage collection system metadata. Equals to /memory/classes/metadata/other:bytes.", v(rmMetadataOther)),
		gauge("go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and currently in use, same as go_memstats_alloc_bytes. Equals to /memory/classes/heap/objects:bytes.", v(rmHeapObjects)),
		gauge("go_memstats_heap_idle_bytes", "Number of heap bytes waiting to be used. Equals to /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes.", v(rmHeapReleased)+v(rmHeapFree)),
		gauge("go_memstats_heap_inuse_bytes", "Number of heap bytes that are in use. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes", v(rmHeapObjects)+v(rmHeapUnused)),
		gauge("go_memstats_heap_objects", "Number of currently allocated objects. Equals to /gc/heap/objects:objects.", v(rmObjects)),
		gauge("go_memstats_heap_released_bytes", "Number of heap bytes released to OS. Equals to /memory/classes/heap/released:bytes.", v(rmHeapReleased)),
		gauge("go_memstats_heap_sys_bytes", "Number of heap bytes obtained from system. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes + /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes.", v(rmHeapObjects)+v(rmHeapUnused)+v(rmHeapReleased)+v(rmHeapFree)),
		counter("go_memstats_mallocs_total", "Total number of heap objects allocated, both live and gc-ed. Semantically a counter version for go_memstats_heap_objects gauge. Equals to /gc/heap/allocs:objects + /gc/heap/tiny/allocs:objects.", v(rmAllocs)+v(rmTinyAllocs)),
		gauge("go_memstats_mcache_inuse_bytes", "Number of bytes in use by mcache structures. Equals to /memory/classes/metadata/mcache/inuse:bytes.", v(rmMCacheInuse)),
		gauge("go_memstats_mcache_sys_bytes", "Number of bytes used for mcache structures obtained from system. Equals to /memory/classes/metadata/mcache/inuse:bytes + /memory/classes/metadata/mcache/free:bytes.", v(rmMCacheInuse)+v(rmMCacheFree)),
		gauge("go_memstats_mspan_inuse_bytes", "Number of bytes in use by mspan structures. Equals to /memory/classes/metadata/mspan/inuse:bytes.", v(rmMSpanInuse)),
		gauge("go_memstats_mspan_sys_bytes", "Number of bytes used for mspan structures obtained from system. Equals to /memory/classes/metadata/mspan/inuse:bytes + /memory/classes/metadata/mspan/free:bytes.", v(rmMSpanInuse)+v(rmMSpanFree)),
		gauge("go_memstats_next_gc_bytes", "Number of heap bytes when next garbage collection will take place. Equals to /gc/heap/goal:bytes.", v(rmGoal)),
		gauge("go_memstats_other_sys_bytes", "Number of bytes used for other system allocations. Equals to /memory/classes/other:bytes.", v(rmOther)),
		gauge("go_memstats_stack_inuse_bytes", "Number of bytes obtained from system for stack allocator in non-CGO environments. Equals to /memory/classes/heap/stacks:bytes.", v(rmHeapStacks)),
		gauge("go_memstats_stack_sys_bytes", "Number of bytes obtained from system for stack allocator. Equals to /memory/classes/heap/stacks:bytes + /memory/classes/os-stacks:bytes.", v(rmHeapStacks)+v(rmOSStacks)),
		gauge("go_memstats_sys_bytes", "Number of bytes obtained from system. Equals to /memory/classes/total:byte.", v(rmTotal)),
		gauge("go_threads", "Number of OS threads created.", threads()),
	}
	for _, f := range rmFamilies {
		if _, ok := r.index[f.metric]; ok {
			fams = append(fams, gauge(f.name, r.help[f.metric], v(f.metric)))
		}
	}

	// The GC's pauses: quantiles 0, 0.25, 0.5, 0.75, 1 of the recent ones.
	gc := &r.gc
	if gc.PauseQuantiles == nil {
		gc.PauseQuantiles = make([]time.Duration, 5)
	}
	debug.ReadGCStats(gc) // reuses gc's slices
	pauses := series{count: uint64(gc.NumGC), sum: gc.PauseTotal.Seconds()}
	for i, q := range gc.PauseQuantiles {
		pauses.bounds = append(pauses.bounds, float64(i)/4)
		pauses.values = append(pauses.values, q.Seconds())
	}
	fams = append(fams,
		family{name: "go_gc_duration_seconds", help: "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.",
			typ: typeSummary, series: []series{pauses}},
		gauge("go_memstats_last_gc_time_seconds", "Number of seconds since 1970 of last garbage collection.", float64(gc.LastGC.UnixNano())/1e9))
	return append(fams, r.process()...)
}

func threads() float64 {
	n, _ := runtime.ThreadCreateProfile(nil)
	return float64(n)
}

// userHZ is the kernel's USER_HZ, the unit of /proc's CPU times: 100 on
// every Linux architecture Go supports (procfs assumes the same).
const userHZ = 100

// process reads the process_* families from /proc/self.
func (r *runtimeReader) process() []family {
	var fams []family
	if stat, err := r.readProc("/proc/self/stat"); err == nil {
		// Fields after the command, which is in parentheses and may hold
		// anything: f[0] is field 3 (state) of proc(5).
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 {
			f := strings.Fields(string(stat[i+1:]))
			if len(f) > 21 {
				utime, _ := strconv.ParseUint(f[11], 10, 64)
				stime, _ := strconv.ParseUint(f[12], 10, 64)
				vsize, _ := strconv.ParseUint(f[20], 10, 64)
				rss, _ := strconv.ParseInt(f[21], 10, 64)
				fams = append(fams,
					counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", float64(utime+stime)/userHZ),
					gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", float64(vsize)),
					gauge("process_resident_memory_bytes", "Resident memory size in bytes.", float64(rss*int64(os.Getpagesize()))))
				if r.start == 0 {
					r.start = startTime(f[19])
				}
				if r.start != 0 {
					fams = append(fams, gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", r.start))
				}
			}
		}
	}
	if fd, err := os.Open("/proc/self/fd"); err == nil {
		names, err := fd.Readdirnames(-1)
		fd.Close()
		if err == nil {
			fams = append(fams, gauge("process_open_fds", "Number of open file descriptors.", float64(len(names))))
		}
	}
	if limits, err := r.readProc("/proc/self/limits"); err == nil {
		if v, ok := limit(limits, "Max open files"); ok {
			fams = append(fams, gauge("process_max_fds", "Maximum number of open file descriptors.", v))
		}
		if v, ok := limit(limits, "Max address space"); ok {
			fams = append(fams, gauge("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", v))
		}
	}
	if netstat, err := r.readProc("/proc/self/net/netstat"); err == nil {
		in, out := ipOctets(netstat)
		fams = append(fams,
			counter("process_network_receive_bytes_total", "Number of bytes received by the process over the network.", in),
			counter("process_network_transmit_bytes_total", "Number of bytes sent by the process over the network.", out))
	}
	return fams
}

// readProc reads a /proc file into r.buf, which the next read reuses: a
// /proc file has no size for os.ReadFile to allocate by.
func (r *runtimeReader) readProc(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if r.buf == nil {
		r.buf = make([]byte, 0, 4<<10)
	}
	b := r.buf[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := f.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			r.buf = b
			return b, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// startTime is the process's start in seconds since the epoch: the boot
// time in /proc/stat plus its start in ticks after boot; 0 if unknown.
func startTime(ticks string) float64 {
	t, err := strconv.ParseUint(ticks, 10, 64)
	if err != nil {
		return 0
	}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(stat)) {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			boot, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0
			}
			return float64(boot) + float64(t)/userHZ
		}
	}
	return 0
}

// limit is the soft limit on the line of /proc/self/limits that starts
// with name; "unlimited" is the largest uint64, as procfs reads it.
func limit(limits []byte, name string) (float64, bool) {
	for line := range bytes.Lines(limits) {
		rest, ok := bytes.CutPrefix(line, []byte(name))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) == 0 {
			return 0, false
		}
		if string(f[0]) == "unlimited" {
			return float64(math.MaxUint64), true
		}
		v, err := strconv.ParseUint(string(f[0]), 10, 64)
		return float64(v), err == nil
	}
	return 0, false
}

// ipOctets are InOctets and OutOctets of the IpExt lines of
// /proc/self/net/netstat (the network namespace's, which is what procfs
// reports too); 0 when absent.
func ipOctets(netstat []byte) (in, out float64) {
	var names [][]byte
	for line := range bytes.Lines(netstat) {
		rest, ok := bytes.CutPrefix(line, []byte("IpExt:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if i >= len(f) {
				break
			}
			v, err := strconv.ParseFloat(string(f[i]), 64)
			if err != nil {
				continue
			}
			switch string(n) {
			case "InOctets":
				in = v
			case "OutOctets":
				out = v
			}
		}
		break
	}
	return in, out
}
