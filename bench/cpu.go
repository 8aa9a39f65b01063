package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// processCPU is the CPU time the threads of process pid have run so far,
// from Linux's per-thread schedstat (nanoseconds, unlike the 10 ms ticks
// of /proc/PID/stat). Threads that have exited are not counted; a Go
// program keeps its threads. On a shared machine this is the start-up
// figure that does not depend on how long the process waited for a core.
func processCPU(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("bench: no schedstat for process %d", pid)
	}
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread exited meanwhile
		}
		fields := strings.Fields(string(b))
		if len(fields) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: %s: %w", t, err)
		}
		total += time.Duration(ns)
	}
	return total, nil
}
