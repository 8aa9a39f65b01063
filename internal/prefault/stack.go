package prefault

import "syscall"

// off is KEYGATE_PREFAULT=off (or 0, false): the package does nothing.
var off = func() bool {
	v, _ := syscall.Getenv("KEYGATE_PREFAULT")
	return v == "off" || v == "0" || v == "false"
}()

// growStack grows the calling goroutine's stack to stackSize in one step.
//
// A goroutine starts on a 2 KiB stack (until a collection has measured an
// average) and the runtime doubles it whenever a call would overflow it:
// each doubling allocates the larger stack, copies the old one and walks
// every frame on it through the executable's function tables to adjust
// its pointers. The packages' initialisation runs on the main goroutine
// and takes it to 128 KiB (regexp compiles, protobuf descriptors): by the
// time this package initialises it is at 16 KiB, and the doublings to 32,
// 64 and 128 KiB would copy ~15, ~30 and ~63 KiB of deep frames. One large
// frame made here, with ~9 KiB in use, costs one copy of those few frames
// instead. A collection shrinks the stack again once most of it goes
// unused.
func growStack() {
	grow(0)
}

// stackSize is what growStack grows a stack to; growFrame is the frame
// that makes the runtime grow it there from a stack with less than
// stackSize-growFrame in use (and more than half of stackSize needed).
const (
	stackSize = 128 << 10
	growFrame = 96 << 10
)

// grow's frame is growFrame bytes; it is never inlined, so the frame is
// made whatever its result.
//
//go:noinline
func grow(i int) byte {
	var frame [growFrame]byte
	frame[i] = 1
	return frame[len(frame)-1-i]
}
