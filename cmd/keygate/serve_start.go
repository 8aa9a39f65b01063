package main

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/keygate/keygate/keystore"
)

// builtinTestsDelay is how long after the first SERVING the built-in
// policy's tests wait: Envoy's first health checks and decisions come then.
const builtinTestsDelay = 3 * time.Second

// afterServing runs fn once the gRPC health service first reports SERVING
// (readiness.served is closed), or not at all if ctx ends first. Start-up
// work that no decision waits for (reading every key digest, webhook
// deliveries; the built-in policy's tests wait the same way, in
// policyRuntime.run) goes here: on one core it would otherwise share the
// CPU with the path to the first decision.
func afterServing(served <-chan struct{}, fn func(context.Context)) func(context.Context) {
	return func(ctx context.Context) {
		select {
		case <-served:
			fn(ctx)
		case <-ctx.Done():
		}
	}
}

// loadKeyFilter reads every key digest into the key filter, retrying each
// second until it has or ctx ends. Until then the filter rules nothing out
// and the unknown-key budget bounds the store reads (KeyFilter.Load).
func loadKeyFilter(ctx context.Context, f *keystore.KeyFilter, log *slog.Logger) {
	for {
		start := time.Now()
		err := f.Load(ctx)
		if err == nil {
			log.Info("key filter loaded", "took", time.Since(start).Round(time.Millisecond))
			return
		}
		log.Warn("key filter not loaded; unknown keys are refused past the unknown-key budget until it is", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// logServing logs, the first time serve reports SERVING, the CPU time the
// process had used by then (cpu_to_serving): the start-up figure that
// depends neither on how long a shared core made the process wait nor on
// the work that follows SERVING, which `keygate-bench startup` cannot tell
// apart from what preceded it (README, "Measuring it").
func logServing(log *slog.Logger) func() {
	return func() {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			log.Info("first SERVING")
		} else {
			cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			log.Info("first SERVING", "cpu_to_serving", cpu.Round(10*time.Microsecond))
		}
		if atServing != nil {
			atServing()
		}
	}
}

// atServing, when set (only by -tags starttrace: KEYGATE_EXIT_AT_SERVING),
// runs right after the first SERVING is logged, so that a profile of the
// start (callgrind, strace) ends there.
var atServing func()

// spareP is the process's one hold on an extra P (GOMAXPROCS one above
// what it was) for the CPU-heavy work that follows SERVING: completing the
// built-in policy (OPA's parse and compile, ~100-200 ms of CPU on one
// core) and its tests. Go does not preempt a running goroutine for 10 ms
// and more, so with as many Ps as cores (one under `taskset -c 0`) that
// work held the only P while the first health checks and decisions
// waited behind it at each hand-off (accept, read, handler, write): the
// first SERVING answer reached its client 40-100 ms after serve reported
// SERVING. With a spare P the request path has a P of its own and the
// kernel shares the core: a thread woken by the network runs at once.
type spareP struct {
	getenv  func(string) string
	mu      sync.Mutex
	holders int
	before  int // GOMAXPROCS before the first holder
}

var spare = &spareP{getenv: os.Getenv}

// run runs fn with the spare P. Concurrent holders share one; the last
// to finish gives GOMAXPROCS back to the runtime's default (which follows
// CPU affinity and cgroup limits as they change; setting it from the
// program turns that off), unless something else changed it since. A
// GOMAXPROCS the operator set in the environment is kept as set: no spare.
func (s *spareP) run(fn func()) {
	if s.getenv("GOMAXPROCS") != "" {
		fn()
		return
	}
	s.mu.Lock()
	if s.holders == 0 {
		s.before = runtime.GOMAXPROCS(0)
		runtime.GOMAXPROCS(s.before + 1)
	}
	s.holders++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.holders--
		if s.holders == 0 && runtime.GOMAXPROCS(0) == s.before+1 {
			runtime.SetDefaultGOMAXPROCS()
		}
	}()
	fn()
}
