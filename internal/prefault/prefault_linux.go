package prefault

import (
	"syscall"
	"unsafe"
)

// err is what populating returned: nil once the code segment was mapped.
var err = populateCode()

// populateCode maps the pages of the executable's code segments.
func populateCode() error {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		return nil // 32-bit: its headers are Elf32_Phdr; not worth a second layout
	}
	var aux [64]uintptr // the auxiliary vector, as (type, value) pairs
	if !readAuxv(aux[:]) {
		return syscall.ENOENT
	}
	var at unsafe.Pointer // mapped with the executable, not Go's memory
	var n uintptr
	for i := 0; i+1 < len(aux) && aux[i] != atNull; i += 2 {
		switch aux[i] {
		case atPHDR:
			at = *(*unsafe.Pointer)(unsafe.Pointer(&aux[i+1]))
		case atPHNUM:
			n = aux[i+1]
		}
	}
	if at == nil || n == 0 || n > 64 {
		return syscall.ENOENT
	}
	headers := unsafe.Slice((*programHeader)(at), n)
	var err error
	for _, s := range codeSegments(headers, uintptr(at), uintptr(syscall.Getpagesize())) {
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, s.start, s.end-s.start, madvPopulateRead); e != 0 {
			err = e // EINVAL before Linux 5.14: the faults happen as before
		}
	}
	return err
}

// readAuxv fills aux from /proc/self/auxv, without allocating.
func readAuxv(aux []uintptr) bool {
	fd, err := syscall.Open("/proc/self/auxv", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer syscall.Close(fd)
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&aux[0])), len(aux)*int(unsafe.Sizeof(aux[0])))
	n, err := syscall.Read(fd, buf)
	return err == nil && n > 0
}

const (
	atNull  = 0
	atPHDR  = 3 // where the program headers are mapped
	atPHNUM = 5 // how many there are

	ptLoad = 1
	ptPHDR = 6
	pfX    = 1
	pfW    = 2

	madvPopulateRead = 22 // Linux 5.14
)

// programHeader is an ELF64 program header (Elf64_Phdr).
type programHeader struct {
	typ, flags                              uint32
	off, vaddr, paddr, filesz, memsz, align uint64
}

type segment struct{ start, end uintptr }

// codeSegments returns the executable, not writable loadable segments of
// the program whose headers are mapped at at, in memory, from the start of
// the page each begins in:
// a position-independent executable is loaded at an offset from its
// addresses, found from where its own header segment was mapped.
func codeSegments(headers []programHeader, at, pageSize uintptr) []segment {
	var bias uintptr
	for _, h := range headers {
		if h.typ == ptPHDR {
			bias = at - uintptr(h.vaddr)
		}
	}
	var out []segment
	for _, h := range headers {
		if h.typ != ptLoad || h.flags&pfX == 0 || h.flags&pfW != 0 || h.filesz == 0 {
			continue
		}
		start := bias + uintptr(h.vaddr)
		out = append(out, segment{start &^ (pageSize - 1), start + uintptr(h.filesz)})
	}
	return out
}
