// Package memtrim gives back the memory a long-running command needed only
// to start.
//
// Most of an idle mcpguard's resident set is not its own data: package
// initialisation (OPA registering its builtins, the exporters' protobuf
// descriptors) runs code and reads tables spread over the whole executable,
// and the kernel maps 64 KiB around each page touched. Those pages are clean
// copies of the file, shared through the page cache with every other process
// that runs the same binary, and the proxy does not touch most of them again
// (issue #18: 23 MiB of an idle sidecar's 31 MiB were such pages).
package memtrim

import (
	"context"
	"runtime/debug"
	"time"
)

// AfterStart is called once a command has started serving. It returns the
// heap start-up left free to the operating system and, on Linux, drops the
// executable's read-only pages from the process's resident set: they stay
// in the page cache, and a page the process touches again is mapped back on
// that touch, without reading the file. Nothing the process wrote is
// dropped (writable mappings are left alone). It costs one garbage
// collection and a few system calls: 5-15 ms of CPU (issue #18's machine).
//
// Until ctx ends, it then gives back what each burst of work brings back,
// once the process is idle again (whenIdle).
func AfterStart(ctx context.Context) {
	counters := runtimeCounters()
	// Read before this trim (the first read initialises runtime/metrics, so
	// before the pages are dropped too): a call served meanwhile, whose
	// pages the drop may not catch, counts as work for the idle trimmer.
	allocs, _, _ := counters()
	debug.FreeOSMemory()
	dropExecutablePages()
	_, gcs, _ := counters()
	go whenIdle(ctx, defaultIdle, idleState{allocs: allocs, gcs: gcs, lastWork: time.Now()}, counters, doAction)
}
