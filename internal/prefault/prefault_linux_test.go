package prefault

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
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
	m := func(lo, hi uint64) mapping { return mapping{uintptr(lo), uintptr(hi)} } // builds on 32-bit too
	want := []mapping{m(0x400000, 0x140b000), m(0xc000000000, 0xc000400000), m(0x7f0000000000, 0x7f0000001000)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("mappings = %x, want %x", got, want)
	}
	if got := mappings([]byte("ffffffffffffffffff-1 r-xp\n")); len(got) != 0 {
		t.Fatalf("an address longer than 64 bits parsed: %x", got)
	}
}

// untouched is initialised data nothing reads or writes: init leaves the
// initialised data alone, so its pages are never made private copies.
var untouched = [512 << 10]byte{1}

// TestPopulated: after init, the program's code is mapped whole, the heap's
// mapping from the probe's page on is resident and the initialised data is
// left alone; with KEYGATE_PREFAULT=off (the test run again in a child)
// init populates nothing.
func TestPopulated(t *testing.T) {
	if !populateWorks() {
		t.Skip("this kernel has no MADV_POPULATE_READ/WRITE (Linux 5.14)")
	}
	var pc [1]uintptr
	runtime.Callers(0, pc[:])
	textLo, textSize, textRSS := smaps(t, pc[0])
	off := os.Getenv("PREFAULT_TEST_CHILD") != ""
	t.Logf("code mapping %d KiB, %d KiB mapped (prefault off: %v)", textSize>>10, textRSS>>10, off)
	if off {
		// How much of the code its run maps without prefault depends on
		// the kernel and on how the executable's pages sit in the page
		// cache (a fault may map a 64 KiB window or a whole large folio):
		// only what init did is checked.
		if textPopulated != [2]uintptr{} || heapPopulated != [2]uintptr{} {
			t.Fatalf("KEYGATE_PREFAULT=off, yet init populated the code's %#x and the heap's %#x", textPopulated, heapPopulated)
		}
		return
	}
	if lo, hi := textPopulated[0], textPopulated[1]; lo != textLo || hi != textLo+textSize || textErr != 0 {
		t.Fatalf("init populated %#x-%#x (%v); the code's mapping is %#x-%#x", lo, hi, textErr, textLo, textLo+textSize)
	}
	if textRSS < textSize {
		t.Fatalf("code mapping: %d of %d KiB mapped after init", textRSS>>10, textSize>>10)
	}
	// Private copies of the untouched data would show as anonymous memory.
	if anon := anonymous(t, uintptr(unsafe.Pointer(&untouched))); anon >= uintptr(len(untouched)) {
		t.Fatalf("the initialised data's mapping has %d KiB of private copies, untouched's %d KiB among them: init populated it", anon>>10, len(untouched)>>10)
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
	start, size, fields := smapsFields(t, addr, "Rss:")
	return start, size, fields["Rss:"]
}

// anonymous is the anonymous memory (private copies of a file's pages
// included) of the mapping holding addr.
func anonymous(t *testing.T, addr uintptr) uintptr {
	t.Helper()
	_, _, fields := smapsFields(t, addr, "Anonymous:")
	return fields["Anonymous:"]
}

// smapsFields is the start and size of the mapping holding addr and the
// sizes its /proc/self/smaps entry gives for names, in bytes.
func smapsFields(t *testing.T, addr uintptr, names ...string) (start, size uintptr, fields map[string]uintptr) {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) == 0 {
			continue
		}
		if lo, hi, ok := strings.Cut(fs[0], "-"); ok && !strings.HasSuffix(lo, ":") {
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
		if !in {
			continue
		}
		for _, name := range names {
			if len(fs) >= 2 && fs[0] == name {
				kb, _ := strconv.ParseUint(fs[1], 10, 64)
				if fields == nil {
					fields = map[string]uintptr{}
				}
				fields[name] = uintptr(kb) << 10
			}
		}
		if len(fields) == len(names) {
			return start, size, fields
		}
	}
	t.Fatalf("no mapping holds %#x, or its entry lacks %v", addr, names)
	return 0, 0, nil
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
