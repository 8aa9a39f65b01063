package prefault

import (
	"bytes"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"
)

// madvPopulateRead and madvPopulateWrite are MADV_POPULATE_READ and
// MADV_POPULATE_WRITE (Linux 5.14): fault the range in as if read, or
// written, without reading or writing it.
const (
	madvPopulateRead  = 22
	madvPopulateWrite = 23
)

// maxHeap bounds the heap populated: the runtime maps its heap 4 MiB at a
// time, so the mapping at init is rarely larger.
const maxHeap = 16 << 20

// maxText bounds the code populated (keygate's is ~17 MiB).
const maxText = 64 << 20

// mapsLimit bounds the read of /proc/self/maps: a Go program starting has
// a few dozen mappings (~80 bytes each); what does not fit is left out.
const mapsLimit = 8 << 10

// probe is allocated by init: its page is in the heap's mapping.
var probe *[16]byte

// heapPopulated and textPopulated are the ranges init populated (the
// heap's mapping may grow right after: the test reads what init did here),
// and textErr what the code's madvise returned.
var (
	heapPopulated, textPopulated [2]uintptr
	textErr                      syscall.Errno
)

func init() {
	if off {
		return
	}
	// After the heap is populated the larger stack comes from populated
	// pages; the packages initialised after this one run on it.
	defer growStack()
	probe = new([16]byte)
	heap := uintptr(unsafe.Pointer(probe))
	var pc [1]uintptr
	runtime.Callers(0, pc[:]) // an address in the program's code
	buf := make([]byte, mapsLimit)
	n := readMaps(buf)
	for _, m := range mappings(buf[:n]) {
		switch {
		case m.lo <= pc[0] && pc[0] < m.hi:
			textPopulated = [2]uintptr{m.lo, min(m.hi, m.lo+maxText)}
			textErr = populate(textPopulated[0], textPopulated[1], madvPopulateRead)
		case m.lo <= heap && heap < m.hi:
			lo := heap &^ (uintptr(syscall.Getpagesize()) - 1)
			heapPopulated = [2]uintptr{lo, min(m.hi, lo+maxHeap)}
			populate(heapPopulated[0], heapPopulated[1], madvPopulateWrite)
		}
	}
}

func populate(lo, hi, advice uintptr) syscall.Errno {
	if hi <= lo {
		return 0
	}
	_, _, e := syscall.Syscall(syscall.SYS_MADVISE, lo, hi-lo, advice)
	return e
}

// readMaps reads /proc/self/maps into buf.
func readMaps(buf []byte) int {
	fd, err := syscall.Open("/proc/self/maps", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer syscall.Close(fd)
	n := 0
	for n < len(buf) {
		m, err := syscall.Read(fd, buf[n:])
		if m <= 0 || err != nil {
			break
		}
		n += m
	}
	return n
}

type mapping struct{ lo, hi uintptr }

// mappings parses the address ranges of /proc/self/maps' lines
// ("lo-hi perms offset dev inode path", lo and hi in hex); a line cut short
// by the buffer's end, or not of that form, is left out.
func mappings(b []byte) []mapping {
	var out []mapping
	for {
		line, rest, whole := bytes.Cut(b, []byte{'\n'})
		if !whole {
			return out
		}
		b = rest
		addrs, _, _ := bytes.Cut(line, []byte{' '})
		l, h, _ := bytes.Cut(addrs, []byte{'-'})
		lo, err := strconv.ParseUint(string(l), 16, 64)
		if err != nil {
			continue
		}
		if hi, err := strconv.ParseUint(string(h), 16, 64); err == nil && hi > lo {
			out = append(out, mapping{uintptr(lo), uintptr(hi)})
		}
	}
}
