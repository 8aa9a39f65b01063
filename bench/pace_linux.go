package bench

import (
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// preciseSleeps sets the calling thread's timer slack to 1 µs: the kernel's
// default (50 µs) would let every wake come up to that late.
func preciseSleeps() { _ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1000, 0, 0, 0) }

// sleepFor sleeps the calling thread in the kernel, to the microsecond.
// An interrupted sleep returns early; the caller checks the time again.
func sleepFor(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	_ = syscall.Nanosleep(&ts, nil)
}
