package memtrim

import (
	"bufio"
	"os"
	"strconv"
	"strings"
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

// executableMappings returns the mappings of exe that are private and
// neither writable nor shared ("r--p", "r-xp"), from /proc/self/maps.
func executableMappings(exe string) []mapping {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) != 6 || fields[5] != exe {
			continue
		}
		if perms := fields[1]; perms != "r--p" && perms != "r-xp" {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, mapping{uintptr(start), uintptr(end)})
	}
	return out
}
