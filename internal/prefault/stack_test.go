package prefault

import (
	"testing"
	"unsafe"
)

// TestGrowStack checks that growStack leaves its goroutine on a stack of
// stackSize: a frame that needs more than half of it then fits without the
// runtime moving the stack (a goroutine starts on 2 KiB; an inlined or
// optimised-away grow would leave it there, and the call below would move
// it, and the local with it).
func TestGrowStack(t *testing.T) {
	moved := make(chan bool)
	go func() {
		growStack()
		var x byte
		before := uintptr(unsafe.Pointer(&x))
		big(0)
		moved <- uintptr(unsafe.Pointer(&x)) != before
	}()
	if <-moved {
		t.Fatalf("the stack moved for a %d KiB frame after growStack: it was not %d KiB", checkFrame>>10, stackSize>>10)
	}
}

// checkFrame needs more than half of stackSize and fits in it, with what a
// test goroutine has in use.
const checkFrame = stackSize/2 + 16<<10

//go:noinline
func big(i int) byte {
	var frame [checkFrame]byte
	frame[i] = 1
	return frame[len(frame)-1-i]
}
