//go:build !linux

package bench

import "time"

func preciseSleeps() {}

// sleepFor falls back to the runtime's timers elsewhere (coarser: see pacer).
func sleepFor(d time.Duration) { time.Sleep(d) }
