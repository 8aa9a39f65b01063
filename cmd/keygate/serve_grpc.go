package main

import (
	"context"
	"net/http"
	"runtime"
	"sync"

	"google.golang.org/grpc"
)

// streamWorkers keeps a pool of goroutines that serve Check calls one after
// another. Without it gRPC starts a goroutine per call, and each grows its
// stack from 8 KiB to what policy evaluation needs by copying it several
// times: profiled at 1,000 rps that stack growth (runtime.newstack /
// copystack) was ~20% of keygate's CPU. Calls beyond the pool still get a
// goroutine of their own, so a slow store read never holds others up.
//
// 16 workers a processor: gRPC starts them all in NewServer, and each
// one's first run (to wait on gRPC's channel) touches a page of a fresh
// stack before the first SERVING. The floor of 64 this had cost ~65 of the
// ~1,800 page faults of a start on one processor (a fault is ~8 µs on a
// VM); a call past the pool pays what every call paid before there was one
// (BenchmarkServeGRPC under callgrind: 381k instructions a Check through a
// worker, 410k with no workers).
func streamWorkers() grpc.ServerOption {
	return grpc.NumStreamWorkers(uint32(16 * runtime.GOMAXPROCS(0)))
}

// deepHandler runs h (forward-auth decides there) on a deepPool goroutine
// instead of the connection's.
func deepHandler(p *deepPool, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.run(func() { h.ServeHTTP(w, r) })
	})
}

// deepStacks runs every unary handler (Check: policy evaluation recurses
// deeply) on a deepPool goroutine instead of the stream worker that read
// the call.
func deepStacks(p *deepPool) grpc.ServerOption {
	return grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		p.run(func() { resp, err = h(ctx, req) })
		return resp, err
	})
}

// deepPool reuses goroutines last-in first-out. gRPC hands calls to its
// stream workers in turn (a channel is first-in first-out), so every one
// of them runs policy evaluation; each collection then halves the stack of
// every idle one (the runtime shrinks stacks using under a quarter), and
// each regrows it by copying on its next call: 6–7% of the CPU under the
// realistic workload (runtime.newstack). Taken last-in first-out, the
// few goroutines that the usual concurrency needs do all the work, so only
// those regrow after a collection.
type deepPool struct {
	mu   sync.Mutex
	idle []*deepWorker
}

type deepWorker struct {
	jobs chan func()
	done chan any // what the job panicked with, or nil
}

// maxIdleDeep bounds the goroutines a burst leaves behind.
const maxIdleDeep = 256

// run calls fn on a pooled goroutine and waits for it to return. A panic
// in fn is raised again here, on the caller's goroutine, where the server
// (net/http) recovers it as it would have.
func (p *deepPool) run(fn func()) {
	p.mu.Lock()
	var w *deepWorker
	if n := len(p.idle); n > 0 {
		w = p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
	}
	p.mu.Unlock()
	if w == nil {
		w = &deepWorker{jobs: make(chan func()), done: make(chan any)}
		go p.work(w)
	}
	w.jobs <- fn
	switch v := <-w.done; v.(type) {
	case nil:
	case goexited:
		runtime.Goexit() // as fn would have ended the caller's goroutine
	default:
		panic(v)
	}
}

// goexited is what a worker reports when its job called runtime.Goexit
// (t.FailNow in a test handler, say): the worker's goroutine is gone, and
// the caller's ends too, as it would have without the pool.
type goexited struct{}

// call runs fn, returning what it panicked with.
func call(fn func()) (panicked any) {
	defer func() { panicked = recover() }()
	fn()
	return nil
}

// work runs w's jobs until the pool has enough idle goroutines. It goes
// back to the pool before it says a job is done: the next caller that
// takes it waits in the send to jobs until this done is received.
func (p *deepPool) work(w *deepWorker) {
	for fn := range w.jobs {
		if !p.runJob(w, fn) {
			return
		}
	}
}

// runJob runs one job and reports whether w stays in the pool. A job that
// ends the goroutine (runtime.Goexit) skips the return but not the
// deferred report, so its caller is never left waiting.
func (p *deepPool) runJob(w *deepWorker, fn func()) (keep bool) {
	returned := false
	defer func() {
		if !returned {
			w.done <- goexited{}
		}
	}()
	panicked := call(fn)
	returned = true
	p.mu.Lock()
	keep = len(p.idle) < maxIdleDeep
	if keep {
		p.idle = append(p.idle, w)
	}
	p.mu.Unlock()
	w.done <- panicked
	return keep
}
