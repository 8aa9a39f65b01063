package prefault

import (
	"runtime"
	"testing"
)

// TestGrowStack checks that GrowStack leaves its goroutine on a stack of
// stackSize: the runtime's stacks in use grow by it (a goroutine starts on
// 2 KiB). An inlined or optimised-away frame would leave them as they were.
func TestGrowStack(t *testing.T) {
	var before, after runtime.MemStats
	grown, done := make(chan struct{}), make(chan struct{})
	runtime.ReadMemStats(&before)
	go func() {
		GrowStack()
		close(grown)
		<-done
	}()
	<-grown
	runtime.ReadMemStats(&after)
	close(done)
	if d := int64(after.StackInuse) - int64(before.StackInuse); d < stackSize/2 {
		t.Fatalf("stacks in use grew by %d bytes, want about %d", d, stackSize)
	}
}
