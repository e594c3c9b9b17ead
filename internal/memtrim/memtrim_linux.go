package memtrim

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"strconv"
	"syscall"
)

// dropExecutablePages advises the kernel that the read-only mappings of
// the process's own executable (its code, and its read-only data and
// tables) are not needed now: MADV_DONTNEED unmaps their pages, which for
// a private file mapping that was never written leaves the file's pages in
// the page cache and loses nothing.
func dropExecutablePages() {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
	for _, m := range executableMappings(exe) {
		_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, syscall.MADV_DONTNEED)
	}
}

type mapping struct{ start, end uintptr }

// executableMappings returns the mappings of exe that dropExecutablePages
// may drop, from /proc/self/smaps.
func executableMappings(exe string) []mapping {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil
	}
	defer f.Close()
	return droppable(f, exe)
}

// droppable reads smaps and returns the mappings of exe that are private,
// neither writable nor shared ("r--p", "r-xp"), and hold no page written
// since it was mapped (Anonymous: 0 kB). A read-only mapping can hold
// written pages: a dynamically linked build's RELRO (its GOT, written by
// the loader, then made read-only). Dropping those would bring the file's
// unrelocated bytes back in their place, so they are kept.
func droppable(smaps io.Reader, exe string) []mapping {
	var out []mapping
	var cur *mapping // the current mapping, while it may be dropped
	sc := bufio.NewScanner(smaps)
	for sc.Scan() {
		// Read as bytes, field by field: the idle trimmer counts the
		// process's allocations as work, so its own look allocates little.
		line := sc.Bytes()
		if v, ok := bytes.CutPrefix(line, []byte("Anonymous:")); ok {
			if cur != nil && string(bytes.TrimSpace(v)) == "0 kB" {
				out = append(out, *cur)
			}
			cur = nil
			continue
		}
		// A mapping's header: address perms offset dev inode path. Its
		// attribute lines ("Rss:    4 kB") have a colon in the first field.
		addr, rest, _ := bytes.Cut(line, []byte(" "))
		if bytes.HasSuffix(addr, []byte(":")) || len(rest) == 0 {
			continue
		}
		cur = nil
		perms, rest := nextField(rest)
		_, rest = nextField(rest) // offset
		_, rest = nextField(rest) // device
		inode, rest := nextField(rest)
		path := bytes.TrimSpace(rest)
		if len(inode) == 0 || string(path) != exe {
			continue
		}
		if string(perms) != "r--p" && string(perms) != "r-xp" {
			continue
		}
		lo, hi, ok := bytes.Cut(addr, []byte("-"))
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		if !ok || err1 != nil || err2 != nil || end <= start {
			continue
		}
		cur = &mapping{uintptr(start), uintptr(end)}
	}
	if sc.Err() != nil {
		return nil // a partial read decides nothing
	}
	return out
}

// nextField returns the field at the start of b, spaces before it skipped,
// and what follows it.
func nextField(b []byte) (field, rest []byte) {
	b = bytes.TrimLeft(b, " ")
	field, rest, _ = bytes.Cut(b, []byte(" "))
	return field, rest
}
