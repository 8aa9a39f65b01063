package bench

import (
	"runtime"
	"time"
)

// A pacer waits until each request of an open loop is due.
//
// time.Sleep cannot: when the process is otherwise idle, the Go runtime
// waits for its next timer in epoll_wait, whose timeout is whole
// milliseconds, so every wait shorter than 1 ms lasts about 1 ms. At 1,000
// requests a second the sends then fell 0.4 ms behind their schedule at
// the median and 2–2.5 ms at the 99th percentile (measured, both against
// keygate and against the floor), and since latency counts from the due
// time (no coordinated omission), that lateness was most of the p99 the
// tool reported: the tool measured its own sleeping.
//
// The pacer waits on a thread of its own with a high-resolution sleep
// (pace_linux.go: nanosleep with the thread's timer slack at 1 µs; the
// tool is Linux-only, as its startup command is), and the load needs a
// second P so that the sends and their responses run while the pacing
// thread sleeps in the kernel.
type pacer struct {
	prev int // GOMAXPROCS before the pacer
}

// newPacer locks the calling goroutine to its thread for the pacing and
// makes sure the runtime has a P besides it. stop unlocks the thread and
// sets GOMAXPROCS back to its value (an explicit one from then on); the
// thread keeps its timer slack.
func newPacer() *pacer {
	p := &pacer{prev: runtime.GOMAXPROCS(0)}
	if p.prev < 2 {
		runtime.GOMAXPROCS(2)
	}
	runtime.LockOSThread()
	preciseSleeps()
	return p
}

func (p *pacer) stop() {
	runtime.UnlockOSThread()
	if p.prev < 2 {
		runtime.GOMAXPROCS(p.prev)
	}
}

// until returns when due has come (at once when it has passed).
func (p *pacer) until(due time.Time) {
	for {
		d := time.Until(due)
		if d <= 0 {
			return
		}
		sleepFor(d)
	}
}
