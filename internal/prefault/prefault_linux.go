package prefault

import (
	"bytes"
	"strconv"
	"syscall"
	"unsafe"
)

// madvPopulateWrite is MADV_POPULATE_WRITE (Linux 5.14): fault the range in
// as if written, without writing it.
const madvPopulateWrite = 23

// maxHeap bounds the heap populated: the runtime maps its heap 4 MiB at a
// time, so the mapping at init is rarely larger.
const maxHeap = 16 << 20

// maxData bounds the initialised data populated (keygate's is ~2 MiB).
const maxData = 8 << 20

// mapsLimit bounds the read of /proc/self/maps: a Go program starting has
// a few dozen mappings (~80 bytes each); what does not fit is left out.
const mapsLimit = 8 << 10

// initialised lives in the program's initialised data (.noptrdata): its
// mapping is the file-backed read-write part of the executable.
var initialised = [1]uintptr{1}

// probe is allocated by init: its page is in the heap's mapping.
var probe *[16]byte

// heapPopulated is the part of the heap init populated (the mapping may
// grow right after: the test reads what init did here).
var heapPopulated [2]uintptr

func init() {
	if off {
		return
	}
	// After the heap is populated the larger stack comes from populated
	// pages; the packages initialised after this one run on it.
	defer growStack()
	probe = new([16]byte)
	heap := uintptr(unsafe.Pointer(probe))
	data := uintptr(unsafe.Pointer(&initialised))
	buf := make([]byte, mapsLimit)
	n := readMaps(buf)
	for _, m := range mappings(buf[:n]) {
		switch {
		case m.lo <= heap && heap < m.hi:
			lo := heap &^ (uintptr(syscall.Getpagesize()) - 1)
			heapPopulated = [2]uintptr{lo, min(m.hi, lo+maxHeap)}
			populate(heapPopulated[0], heapPopulated[1])
		case m.lo <= data && data < m.hi:
			populate(m.lo, min(m.hi, m.lo+maxData))
		}
	}
}

func populate(lo, hi uintptr) {
	if hi > lo {
		_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, lo, hi-lo, madvPopulateWrite)
	}
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
