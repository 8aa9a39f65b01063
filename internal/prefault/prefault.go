// Package prefault maps, at a keygate process's start, the memory it is
// about to use in one system call per region instead of one page fault per
// page (or per 64 KiB of code).
//
// A page fault costs a trap into the kernel; on the virtual machines keygate
// often runs on (Firecracker and other micro-VMs, nested virtualisation) a
// trap costs several microseconds: measured on the 2-core VM of issue 12,
// 10–15 µs a fault against 0.5–1.3 µs a page for madvise(MADV_POPULATE_WRITE)
// of the same memory. A start of `keygate serve` to SERVING took ~1,890
// faults, more than half of them on the Go heap.
//
// Imported for its initialisation only, by cmd/keygate, it runs among the
// first packages' init (it imports only low-level standard packages:
// bytes, runtime, strconv, syscall, unsafe). It populates two regions:
//   - the program's code (its executable mapping, ~17 MiB for keygate):
//     a read fault in a file's pages maps the 64 KiB around it, and serve's
//     start still took ~220 of them in code scattered over nearly all of
//     it; madvise(MADV_POPULATE_READ) maps it all in ~1.3 ms with the file
//     in the page cache: ~2 ms of CPU fewer to SERVING, measured (issue
//     12, session 14). The price: ~2.4 MB more resident, all of it pages
//     of the executable shared with the page cache. With the file not in
//     the page cache (a first start) the call reads all of the code, in
//     order, where the faults would have read most of it, here and there
//     (5 starts each after dropping the page cache: no slower). The
//     read-only data and function tables after the code are left alone:
//     populating them (~24 MiB) cost more than the ~90 faults it saved;
//   - the heap the runtime has mapped so far, from the page of an object
//     allocated now to the end of that mapping (at most maxHeap): the
//     allocations of the packages' initialisation and of serve's start
//     fill it from there on. Go maps its heap 4 MiB at a time and, since
//     Go 1.26, starts it at a random page of the first 4 MiB, so what is
//     left of that first mapping, and so populated, varies from start to
//     start (0–4 MiB): over 10 starts of serve in session 12 (heap and
//     initialised data populated), 870–1,590 faults (median ~1,290)
//     against ~1,890 without; session 14's (heap and code) ~760–1,190.
//
// The initialised data (.noptrdata and .data, ~1.7 MiB) was populated too
// until session 14: making all of its ~430 pages private copies took
// ~1.45 ms to spare the ~75 pages a start writes a fault each (~0.9 ms).
//
// KEYGATE_PREFAULT=off (or 0, false) turns it off. On a kernel without
// MADV_POPULATE_READ/WRITE (before Linux 5.14) the calls fail and nothing
// changes. Failures are never reported: this only moves cost.
//
// On Linux it then grows the main goroutine's stack to 128 KiB in one step
// (growStack), before the packages initialised after it run their deep
// initialisation on it.
package prefault
