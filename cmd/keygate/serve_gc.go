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

// gcPercentFor is the GOGC that lets the heap grow by gcHeadroom past
// the last collection's live heap, within 100 and gcMaxPercent. base is
// what the runtime multiplies GOGC by: the live heap plus the stacks and
// globals it scanned (its heap goal is live + base×GOGC/100).
func gcPercentFor(base uint64) int {
	if base == 0 {
		return gcMaxPercent
	}
	return int(min(max(gcHeadroom*100/base, 100), gcMaxPercent))
}

// gcHold is the process's one hold on the collector. Every serve in the
// process shares it (tests run several): the first pauseGC saves the
// settings the process had, the last stop puts them back, so one serve
// stopping neither restores what another still tunes nor leaves its own
// GOGC behind.
type gcHold struct {
	mu      sync.Mutex
	base    func() (uint64, bool) // gcBase, replaced by tests
	holders int
	paused  bool
	tuning  bool
	gen     int   // counts starts of the serving policy: stale finalizers stop
	limit   int64 // the memory limit before the first pauseGC
	percent int   // GOGC before the first pauseGC (-1: off)
	current int   // the percent the serving policy set last
}

var collector = &gcHold{base: gcBase}

// gcControl is one serve's share of the hold: pauseGC takes it, resume
// hands over to the serving policy, stop lets go of it.
type gcControl struct {
	h       *gcHold
	getenv  func(string) string
	resumed bool
	stopped bool
}

// pauseGC holds the collector off (up to startupMemoryLimit, or a lower
// GOMEMLIMIT) until resume is called. Start-up allocates mostly what it
// keeps (the compiled policy, the store's statements); at the default
// GOGC the heap doubles through several collections on the way there,
// each scanning everything loaded so far, ~15% of the CPU to the first
// SERVING on one core. With GOGC=off already, or while another serve in
// the process holds the collector, it changes nothing.
func pauseGC(getenv func(string) string) *gcControl {
	h := collector
	h.mu.Lock()
	defer h.mu.Unlock()
	h.holders++
	if h.holders == 1 {
		h.limit = debug.SetMemoryLimit(-1)
		h.percent = debug.SetGCPercent(-1)
		if h.percent >= 0 { // GOGC=off stays off
			h.paused = true
			debug.SetMemoryLimit(min(h.limit, startupMemoryLimit))
		}
	}
	return &gcControl{h: h, getenv: getenv}
}

// resume ends the pause and, unless GOGC is set (then Go's own policy
// applies as set), starts the serving policy: after every collection
// GOGC is set from the live heap (gcPercentFor). GOMEMLIMIT, when set,
// still bounds the heap as Go documents.
func (g *gcControl) resume(log *slog.Logger) {
	h := g.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if g.resumed || g.stopped || !h.paused {
		g.resumed = true
		return
	}
	g.resumed, h.paused = true, false
	debug.SetMemoryLimit(h.limit)
	debug.SetGCPercent(h.percent)
	if g.getenv("GOGC") != "" {
		return
	}
	h.tuning, h.current = true, h.percent
	h.gen++
	h.adjustLocked()
	armGC(h, h.gen)
	log.Debug("collector: GOGC follows the live heap (set GOGC to fix it)", "headroom_mib", gcHeadroom>>20, "max_percent", gcMaxPercent)
}

// stop lets go of g's share; the last one out ends the pause or the
// serving policy and restores the settings the process had.
func (g *gcControl) stop() {
	h := g.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if g.stopped {
		return
	}
	g.stopped = true
	h.holders--
	if h.holders > 0 {
		return
	}
	if h.paused || h.tuning {
		debug.SetMemoryLimit(h.limit)
		debug.SetGCPercent(h.percent)
	}
	h.paused, h.tuning = false, false
}

// adjust sets GOGC from the last collection's live heap, while the
// serving policy started as gen is on.
func (h *gcHold) adjust(gen int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.tuning || h.gen != gen {
		return false
	}
	h.adjustLocked()
	return true
}

func (h *gcHold) adjustLocked() {
	base, ok := h.base()
	if !ok {
		return // not measured by this runtime: Go's policy as it is
	}
	if p := gcPercentFor(base); p != h.current {
		debug.SetGCPercent(p)
		h.current = p
	}
}

// gcBase is what GOGC multiplies after the last collection: the heap it
// marked live plus the stacks and globals it scanned.
func gcBase() (uint64, bool) {
	s := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/scan/stack:bytes"},
		{Name: "/gc/scan/globals:bytes"},
	}
	metrics.Read(s)
	var sum uint64
	for _, v := range s {
		if v.Value.Kind() != metrics.KindUint64 {
			return 0, false
		}
		sum += v.Value.Uint64()
	}
	return sum, true
}

// gcSentinel is garbage as soon as it is made: its finalizer runs after
// the next collection. It holds a pointer, so the tiny allocator never
// packs it with other objects (which could keep it alive).
type gcSentinel struct {
	h   *gcHold
	gen int
}

// armGC makes h adjust after the next collection, and again after each
// one while the serving policy started as gen is on.
func armGC(h *gcHold, gen int) {
	runtime.SetFinalizer(&gcSentinel{h: h, gen: gen}, func(s *gcSentinel) {
		if s.h.adjust(s.gen) {
			armGC(s.h, s.gen)
		}
	})
}
