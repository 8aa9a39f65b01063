// Package prefault maps, at a keygate process's start, the memory it is
// about to write in one system call per region instead of one page fault
// per page.
//
// A page fault costs a trap into the kernel; on the virtual machines keygate
// often runs on (Firecracker and other micro-VMs, nested virtualisation) a
// trap costs several microseconds: measured on the 2-core VM of issue 12,
// 10–15 µs a fault against 0.5–1.3 µs a page for madvise(MADV_POPULATE_WRITE)
// of the same memory. A start of `keygate serve` to SERVING takes ~1,800
// faults, half of them on the Go heap and its first pages, so the faults
// alone were more CPU than the no-op floor's whole start.
//
// Imported for its initialisation only, by cmd/keygate, it runs among the
// first packages' init (it imports nothing but syscall and unsafe). It
// populates two regions, both written by every start anyway:
//   - the heap the runtime has mapped so far, from the page of an object
//     allocated now to the end of that mapping (at most maxHeap): the
//     allocations of the packages' initialisation and of serve's start fill
//     it from there on;
//   - the program's initialised data (the file-backed part of its
//     read-write segment, .data and .noptrdata: ~2 MiB), which the
//     runtime's and packages' initialisation write across.
//
// The price is resident memory: what was populated and would not have been
// touched (a few MiB at most). KEYGATE_PREFAULT=off (or 0, false) turns it off. On a
// kernel without MADV_POPULATE_WRITE (before Linux 5.14) the calls fail and
// nothing changes. Failures are never reported: this only moves cost.
package prefault
