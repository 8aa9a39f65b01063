package prefault

import "syscall"

// off is KEYGATE_PREFAULT=off (or 0, false): the package does nothing.
var off = func() bool {
	v, _ := syscall.Getenv("KEYGATE_PREFAULT")
	return v == "off" || v == "0" || v == "false"
}()

// GrowStack grows the calling goroutine's stack to stackSize (64 KiB) in
// one step, before it runs deep code.
//
// A goroutine starts with a 2 KiB stack (until a collection has measured
// an average) and the runtime doubles it whenever a call would overflow
// it: each doubling allocates the larger stack, copies the old one and
// walks every frame on it through the executable's function tables to
// adjust its pointers. A start of serve runs deep code on a few
// goroutines (the packages' initialisation on the main one: OPA's
// builtins, protobuf's descriptors; the built-in policy's load on
// another), each of which grew through four or five such copies, ~4% of
// the CPU to SERVING in a profile of 10 starts (copystack, the function
// table walks and their page faults). One large frame made while the
// stack is nearly empty costs one copy of a few frames instead. A
// collection shrinks the stack again once most of it goes unused.
func GrowStack() {
	if !off {
		stackSink = grow(0)
	}
}

// stackSize is what GrowStack grows a stack to; growFrame is the frame
// that makes the runtime grow it there (its next power of two).
const (
	stackSize = 64 << 10
	growFrame = stackSize - 24<<10
)

// stackSink keeps grow's result alive, so that its frame is not
// optimised away.
var stackSink byte

//go:noinline
func grow(i int) byte {
	var frame [growFrame]byte
	frame[i] = 1
	return frame[len(frame)-1-i]
}
