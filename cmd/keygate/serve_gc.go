package main

import (
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// startupMemoryLimit bounds the heap while pauseGC holds collections off.
const startupMemoryLimit = 256 << 20

// The collector's policy while serving, unless GOGC is set: the heap may
// grow by gcHeadroom past the live heap between collections (GOGC up to
// gcMaxPercent), never by less than the live heap (GOGC=100, Go's
// default). keygate's live heap is small (~20–40 MB: cache, compiled
// policy) and every Check allocates (~10 KB with gRPC's share), so at
// Go's default the collector runs ten and more times a second, each
// time marking the whole live heap: ~10% of serve's CPU under load. The
// price is RSS: at most gcHeadroom more heap than Go's default, and
// nothing more once the live heap reaches gcHeadroom.
const (
	gcHeadroom   = 64 << 20
	gcMaxPercent = 400
)

// gcPercentFor is the GOGC that lets a heap of live bytes grow by
// gcHeadroom, within 100 and gcMaxPercent.
func gcPercentFor(live uint64) int {
	if live == 0 {
		return gcMaxPercent
	}
	return int(min(max(gcHeadroom*100/live, 100), gcMaxPercent))
}

// gcControl is serve's hold on the collector: pauseGC starts it, resume
// hands over to the serving policy, stop restores what the process had.
type gcControl struct {
	getenv func(string) string
	live   func() (uint64, bool) // the live heap the last collection found

	mu      sync.Mutex
	paused  bool
	limit   int64 // the memory limit before pauseGC
	percent int   // GOGC before pauseGC (-1: off)
	tuning  bool  // the serving policy is on
	current int   // the percent it set last
}

// pauseGC holds the collector off (up to startupMemoryLimit, or a lower
// GOMEMLIMIT) until resume is called. Start-up allocates mostly what it
// keeps (the compiled policy, the store's statements); at the default
// GOGC the heap doubles through several collections on the way there,
// each scanning everything loaded so far, ~15% of the CPU to the first
// SERVING on one core. With GOGC=off already, it does nothing.
func pauseGC(getenv func(string) string) *gcControl {
	g := &gcControl{getenv: getenv, live: liveHeap}
	g.limit = debug.SetMemoryLimit(-1)
	g.percent = debug.SetGCPercent(-1)
	if g.percent < 0 {
		return g
	}
	g.paused = true
	debug.SetMemoryLimit(min(g.limit, startupMemoryLimit))
	return g
}

// resume ends the pause and, unless GOGC is set (then Go's own policy
// applies as set), starts the serving policy: after every collection
// GOGC is set from the live heap (gcPercentFor). GOMEMLIMIT, when set,
// still bounds the heap as Go documents.
func (g *gcControl) resume(log *slog.Logger) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.paused {
		return
	}
	g.paused = false
	debug.SetMemoryLimit(g.limit)
	debug.SetGCPercent(g.percent)
	if g.getenv("GOGC") != "" {
		return
	}
	g.tuning, g.current = true, g.percent
	g.adjustLocked()
	armGC(g)
	log.Debug("collector: GOGC follows the live heap (set GOGC to fix it)", "headroom_mib", gcHeadroom>>20, "max_percent", gcMaxPercent)
}

// stop ends the pause or the serving policy and restores the collector
// settings the process had before pauseGC.
func (g *gcControl) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.paused && !g.tuning {
		return
	}
	g.paused, g.tuning = false, false
	debug.SetMemoryLimit(g.limit)
	debug.SetGCPercent(g.percent)
}

// adjust sets GOGC from the live heap the last collection found.
func (g *gcControl) adjust() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.tuning {
		g.adjustLocked()
	}
	return g.tuning
}

func (g *gcControl) adjustLocked() {
	live, ok := g.live()
	if !ok {
		return // not measured by this runtime: Go's policy as it is
	}
	if p := gcPercentFor(live); p != g.current {
		debug.SetGCPercent(p)
		g.current = p
	}
}

// liveHeap is the heap the last collection marked live.
func liveHeap() (uint64, bool) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0, false
	}
	return s[0].Value.Uint64(), true
}

// gcSentinel is garbage as soon as it is made: its finalizer runs after
// the next collection. It holds a pointer, so the tiny allocator never
// packs it with other objects (which could keep it alive).
type gcSentinel struct{ g *gcControl }

// armGC makes g adjust after the next collection, and again after each
// one while the serving policy is on.
func armGC(g *gcControl) {
	runtime.SetFinalizer(&gcSentinel{g: g}, func(s *gcSentinel) {
		if s.g.adjust() {
			armGC(s.g)
		}
	})
}
