//go:build starttrace

package main

import (
	"os"
	"runtime/trace"
	"time"
)

// With -tags starttrace, KEYGATE_START_TRACE=FILE writes an execution
// trace (go tool trace) of the process's first second: from main's
// package init, so a start to SERVING can be read goroutine by goroutine.
// KEYGATE_EXIT_AT_SERVING=1 ends the process at the first SERVING, so that
// a profile of the start (callgrind, strace) covers the start alone.
func init() {
	if os.Getenv("KEYGATE_EXIT_AT_SERVING") != "" {
		atServing = func() { os.Exit(0) }
	}
	path := os.Getenv("KEYGATE_START_TRACE")
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		return
	}
	if trace.Start(f) != nil {
		f.Close()
		return
	}
	time.AfterFunc(time.Second, func() { trace.Stop(); f.Close() })
}
