package main

import (
	"runtime"
	"testing"
)

// TestMemProfileRate: memory profiling is off unless the profiler
// listener, its only reader, is asked for.
func TestMemProfileRate(t *testing.T) {
	for _, tc := range []struct {
		name, addr string
		want       int
	}{
		{name: "no pprof listener", addr: "", want: 0},
		{name: "pprof listener", addr: "127.0.0.1:6060", want: runtime.MemProfileRate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == "KEYGATE_PPROF_ADDR" {
					return tc.addr
				}
				return ""
			}
			if got := memProfileRate(getenv); got != tc.want {
				t.Errorf("memProfileRate = %d, want %d", got, tc.want)
			}
		})
	}
}
