// Package prefault maps the executable's code into the process in one
// system call as the process starts, instead of one page fault at a time.
//
// A Go program's start-up runs code from all over its executable (the
// runtime, then every linked package's initialisation, then main), and on
// the virtual machines agent pods run on a page fault costs 10-40 µs: the
// sidecar took ~190 faults in its code segment before it answered /readyz,
// and by then 90-98 % of the segment was resident anyway (issue #18). One
// madvise(MADV_POPULATE_READ) over the segment maps it all, from the page
// cache, for less CPU than those faults (docs/performance.md).
// Only the code: the read-only data segment (tables, type data, the
// function table) is half untouched at ready, and mapping it would read
// and keep pages no one uses.
//
// Import it for its side effect, from the main package only:
//
//	import _ "mcpguard.dev/mcpguard/internal/prefault"
//
// It depends on nothing but the syscall package, so Go's initialisation
// order (packages in import-path order as soon as their imports are
// initialised) runs it before any package outside the standard library;
// the sidecar build's test checks that. What start-up touched is given
// back once the process is idle (internal/memtrim drops the executable's
// read-only pages): the code stays in the page cache, shared by every
// process running the binary.
//
// Elsewhere than Linux, and on Linux before 5.14 (no MADV_POPULATE_READ),
// it does nothing.
package prefault
