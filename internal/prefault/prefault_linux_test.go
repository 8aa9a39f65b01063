package prefault

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

func TestMappings(t *testing.T) {
	maps := "00400000-0140b000 r-xp 00000000 fd:01 42 /usr/bin/keygate\n" +
		"c000000000-c000400000 rw-p 00000000 00:00 0 \n" +
		"zz-10 rw-p 00000000 00:00 0\n" + // not hexadecimal: left out
		"7f0000000000-7f0000001000 rw-p 00000000 00:00 0\n" +
		"7f0000002000-7f00000" // cut by the buffer's end: left out
	got := mappings([]byte(maps))
	want := []mapping{{0x400000, 0x140b000}, {0xc000000000, 0xc000400000}, {0x7f0000000000, 0x7f0000001000}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("mappings = %x, want %x", got, want)
	}
	if got := mappings([]byte("ffffffffffffffffff-1 r-xp\n")); len(got) != 0 {
		t.Fatalf("an address longer than 64 bits parsed: %x", got)
	}
}

// untouched is initialised data nothing reads or writes: without
// prefault, its pages are never mapped.
var untouched = [512 << 10]byte{1}

// TestPopulated: after init, the program's initialised data is resident
// whole, and the heap's mapping from the probe's page on; with
// KEYGATE_PREFAULT=off (the test run again in a child) the data is not.
func TestPopulated(t *testing.T) {
	if !populateWorks() {
		t.Skip("this kernel has no MADV_POPULATE_WRITE (Linux 5.14)")
	}
	data := uintptr(unsafe.Pointer(&initialised))
	lo, size, rss := smaps(t, data)
	if lo2, _, _ := smaps(t, uintptr(unsafe.Pointer(&untouched))); lo2 != lo {
		t.Fatal("untouched is not in the initialised data's mapping")
	}
	off := os.Getenv("PREFAULT_TEST_CHILD") != ""
	t.Logf("data mapping %d KiB, resident %d KiB (prefault off: %v)", size>>10, rss>>10, off)
	switch {
	// The kernel maps up to 64 KiB around a read fault in a file's pages
	// (fault-around): neighbours' reads may map that much of untouched on
	// either side.
	case off && rss > size-uintptr(len(untouched))+128<<10:
		t.Fatalf("KEYGATE_PREFAULT=off, yet all %d KiB of the data are resident", size>>10)
	case off:
		return
	case rss < size:
		t.Fatalf("data mapping: %d of %d KiB resident after init", rss>>10, size>>10)
	}
	// The heap from the probe's page to the end of its mapping at init, as
	// init recorded it (the mapping grows right after, as the runtime
	// allocates on: what the test would read now is not what init saw).
	heap := uintptr(unsafe.Pointer(probe)) &^ (uintptr(syscall.Getpagesize()) - 1)
	lo, hi := heapPopulated[0], heapPopulated[1]
	if heapLo, heapSize, _ := smaps(t, heap); lo != heap || hi <= lo || hi > heapLo+heapSize || hi-lo > maxHeap {
		t.Fatalf("init populated the heap's %#x-%#x; the probe's page is %#x in a mapping %#x-%#x", lo, hi, heap, heapLo, heapLo+heapSize)
	}
	if in, all := resident(t, lo, hi); in != all {
		t.Fatalf("heap from the probe on: %d of %d pages resident after init", in, all)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestPopulated$", "-test.v")
	cmd.Env = append(os.Environ(), "PREFAULT_TEST_CHILD=1", "KEYGATE_PREFAULT=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("with KEYGATE_PREFAULT=off: %v\n%s", err, out)
	}
	t.Logf("child: %s", out)
}

// smaps is the start, size and resident size of the mapping holding addr.
func smaps(t *testing.T, addr uintptr) (start, size, rss uintptr) {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if lo, hi, ok := strings.Cut(strings.Fields(line)[0], "-"); ok && !strings.HasSuffix(lo, ":") {
			l, err1 := strconv.ParseUint(lo, 16, 64)
			h, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 == nil && err2 == nil {
				in = uintptr(l) <= addr && addr < uintptr(h)
				if in {
					start, size = uintptr(l), uintptr(h-l)
				}
				continue
			}
		}
		if in && strings.HasPrefix(line, "Rss:") {
			kb, _ := strconv.ParseUint(strings.Fields(line)[1], 10, 64)
			return start, size, uintptr(kb) << 10
		}
	}
	t.Fatalf("no mapping holds %#x", addr)
	return 0, 0, 0
}

// resident counts the pages of [lo, hi) in memory (mincore) and all of them.
func resident(t *testing.T, lo, hi uintptr) (in, all int) {
	t.Helper()
	page := uintptr(syscall.Getpagesize())
	vec := make([]byte, (hi-lo+page-1)/page)
	if _, _, e := syscall.Syscall(syscall.SYS_MINCORE, lo, hi-lo, uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatalf("mincore: %v", e)
	}
	for _, v := range vec {
		in += int(v & 1)
	}
	return in, len(vec)
}

// populateWorks: the kernel knows MADV_POPULATE_WRITE.
func populateWorks() bool {
	mem, err := syscall.Mmap(-1, 0, syscall.Getpagesize(), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return false
	}
	defer syscall.Munmap(mem)
	_, _, e := syscall.Syscall(syscall.SYS_MADVISE, uintptr(unsafe.Pointer(&mem[0])), uintptr(len(mem)), madvPopulateWrite)
	return e == 0
}
