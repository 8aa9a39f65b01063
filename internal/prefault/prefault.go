// Package prefault maps, at a keygate process's start, the memory it is
// about to write in one system call per region instead of one page fault
// per page.
//
// A page fault costs a trap into the kernel; on the virtual machines keygate
// often runs on (Firecracker and other micro-VMs, nested virtualisation) a
// trap costs several microseconds: measured on the 2-core VM of issue 12,
// 10–15 µs a fault against 0.5–1.3 µs a page for madvise(MADV_POPULATE_WRITE)
// of the same memory. A start of `keygate serve` to SERVING took ~1,890
// faults, more than half of them on the Go heap.
//
// Imported for its initialisation only, by cmd/keygate, it runs among the
// first packages' init (it imports only low-level standard packages: bytes, strconv, syscall, unsafe). It
// populates two regions:
//   - the heap the runtime has mapped so far, from the page of an object
//     allocated now to the end of that mapping (at most maxHeap): the
//     allocations of the packages' initialisation and of serve's start
//     fill it from there on. Go maps its heap 4 MiB at a time and, since
//     Go 1.26, starts it at a random page of the first 4 MiB, so what is
//     left of that first mapping, and so populated, varies from start to
//     start (0–4 MiB): over 10 starts of serve, 870–1,590 faults (median
//     ~1,290) against ~1,890 without;
//   - the program's initialised data (the file-backed part of its
//     read-write segment, .data and .noptrdata: ~2 MiB), which the
//     runtime's and packages' initialisation write here and there: ~120
//     faults of serve's start, ~20% of its pages.
//
// The price is resident memory: the data's pages become private copies
// (~2 MiB, most of which would have stayed shared with the file), and the
// heap's rest of its first mapping is resident at once (measured: idle
// RSS of serve 0.2–1.6 MB more). KEYGATE_PREFAULT=off (or 0, false) turns
// it off. On a kernel without MADV_POPULATE_WRITE (before Linux 5.14) the
// calls fail and nothing changes. Failures are never reported: this only
// moves cost.
//
// On Linux it then grows the main goroutine's stack to 128 KiB in one step
// (growStack), before the packages initialised after it run their deep
// initialisation on it.
package prefault
