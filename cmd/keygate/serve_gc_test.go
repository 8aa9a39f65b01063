package main

import (
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"testing"
)

func TestGCPercentFor(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, gcMaxPercent},
		{1 << 20, gcMaxPercent},          // tiny heap: capped
		{16 << 20, 400},                  // 64 MiB headroom = 4x live
		{32 << 20, 200},                  // 64 MiB headroom = 2x live
		{64 << 20, 100},                  // Go's default from here on
		{1 << 30, 100},                   // never below Go's default
		{(64 << 20) / 3, 300},            // in between: rounded down
		{uint64(gcHeadroom) * 100, 100},  // a huge heap
		{uint64(gcHeadroom) / 1000, 400}, // a small one
	} {
		if got := gcPercentFor(c.live); got != c.want {
			t.Errorf("gcPercentFor(%d) = %d, want %d", c.live, got, c.want)
		}
	}
}

// gcPercent reads GOGC as the runtime has it now.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// collectUntil runs collections until GOGC is want (the serving policy
// adjusts in a finalizer, after a collection), at most 100 of them, and
// returns GOGC.
func collectUntil(want int) int {
	for i := 0; i < 100 && gcPercent() != want; i++ {
		runtime.GC()
		runtime.Gosched()
	}
	return gcPercent()
}

func gogc(v string) func(string) string {
	return func(k string) string {
		if k == "GOGC" {
			return v
		}
		return ""
	}
}

// TestGCControl: while serving, GOGC follows the live heap after every
// collection; stop puts back what the process had and later collections
// change nothing.
func TestGCControl(t *testing.T) {
	before, limit := gcPercent(), debug.SetMemoryLimit(-1)
	defer debug.SetGCPercent(before)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var live atomic.Uint64
	live.Store(32 << 20)

	defer setBase(func() (uint64, bool) { return live.Load(), true })()
	g := pauseGC(gogc(""))
	if got := gcPercent(); got != -1 {
		t.Fatalf("paused: GOGC %d, want off", got)
	}
	g.resume(log)
	if got := gcPercent(); got != 200 {
		t.Fatalf("resumed: GOGC %d, want 200 for a 32 MiB live heap", got)
	}
	live.Store(16 << 20)
	if got := collectUntil(400); got != 400 {
		t.Fatalf("live heap 16 MiB: GOGC %d, want 400", got)
	}
	live.Store(1 << 30)
	if got := collectUntil(100); got != 100 {
		t.Fatalf("live heap 1 GiB: GOGC %d, want 100", got)
	}
	g.stop()
	if got := gcPercent(); got != before {
		t.Fatalf("stopped: GOGC %d, want %d", got, before)
	}
	if got := debug.SetMemoryLimit(-1); got != limit {
		t.Fatalf("stopped: memory limit %d, want %d", got, limit)
	}
	debug.SetGCPercent(77)
	live.Store(16 << 20)
	for i := 0; i < 5; i++ {
		runtime.GC()
		runtime.Gosched()
	}
	if got := gcPercent(); got != 77 {
		t.Fatalf("after stop: GOGC %d, want 77 left alone", got)
	}
}

// TestGCControlGOGCSet: with GOGC in the environment the process keeps
// Go's policy as set; only the start-up pause happens.
func TestGCControlGOGCSet(t *testing.T) {
	before := gcPercent()
	defer setBase(func() (uint64, bool) { return 1 << 20, true })()
	g := pauseGC(gogc("150"))
	g.resume(slog.New(slog.NewTextHandler(io.Discard, nil)))
	for i := 0; i < 5; i++ {
		runtime.GC()
		runtime.Gosched()
	}
	if got := gcPercent(); got != before {
		t.Fatalf("GOGC set: GOGC %d, want %d as the process had it", got, before)
	}
	g.stop()
}

// setBase makes the serving policy read base instead of the runtime's
// figures, until the returned func puts gcBase back.
func setBase(base func() (uint64, bool)) func() {
	collector.mu.Lock()
	defer collector.mu.Unlock()
	collector.base = base
	return func() {
		collector.mu.Lock()
		defer collector.mu.Unlock()
		collector.base = gcBase
	}
}

// TestGCControlOverlapping: two serves in one process share the hold.
// The first to stop leaves the other's policy running; the last restores
// what the process had, not what the other serve found when it started.
func TestGCControlOverlapping(t *testing.T) {
	before := gcPercent()
	defer debug.SetGCPercent(before)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var live atomic.Uint64
	live.Store(32 << 20)
	defer setBase(func() (uint64, bool) { return live.Load(), true })()

	a := pauseGC(gogc(""))
	a.resume(log)
	b := pauseGC(gogc(""))
	if got := gcPercent(); got != 200 {
		t.Fatalf("second serve starting: GOGC %d, want the first's 200 kept", got)
	}
	b.resume(log)
	a.stop()
	live.Store(16 << 20)
	if got := collectUntil(400); got != 400 {
		t.Fatalf("first serve stopped: GOGC %d, want 400 (the second's policy still on)", got)
	}
	b.stop()
	if got := gcPercent(); got != before {
		t.Fatalf("both stopped: GOGC %d, want %d as the process had it", got, before)
	}
	b.stop() // a second stop changes nothing
	if got := gcPercent(); got != before {
		t.Fatalf("stopped twice: GOGC %d, want %d", got, before)
	}
}

// TestGCBase: the base the serving policy divides its headroom by counts
// what the runtime multiplies GOGC by, the scanned stacks and globals as
// well as the live heap.
func TestGCBase(t *testing.T) {
	runtime.GC()
	base, ok := gcBase()
	if !ok {
		t.Skip("this runtime does not report the heap goal's inputs")
	}
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/globals:bytes"}}
	metrics.Read(s)
	live, globals := s[0].Value.Uint64(), s[1].Value.Uint64()
	if globals == 0 || base < live+globals {
		t.Fatalf("gcBase = %d, want at least live %d + globals %d", base, live, globals)
	}
}
