package keystore

import (
	"fmt"
	"sync"
)

// fills shares store reads between the callers that miss one entry at one
// generation, and runs each read on a goroutine it keeps for them.
//
// singleflight's DoChan started a goroutine for every read: it began on a
// small stack, and a SQLite read (modernc's transpiled C has deep, large
// frames) grew that stack by copying several times, 13–15% of a miss's
// CPU (runtime.newstack under the realistic workload at 1,000 rps and in
// BenchmarkCacheMissRead). A kept goroutine has grown its stack already.
// They are taken last-in first-out, so the few that the usual misses need
// do all the reads, and only those regrow after a collection shrinks the
// stacks of idle goroutines.
type fills struct {
	mu     sync.Mutex
	calls  map[fillKey]*fillCall
	idle   []chan fillJob
	closed bool
}

// fillKey names a read of entry ck begun at generation gen: a request that
// arrives after an invalidation never joins a read that began before it.
type fillKey struct {
	ck  string
	gen uint64
}

// fillCall is one read; done is closed once e and err are set.
type fillCall struct {
	done chan struct{}
	e    entry
	err  error
}

// maxIdleFillers bounds the goroutines a burst of misses leaves behind.
const maxIdleFillers = 16

// fillJob is a read for a kept goroutine to run.
type fillJob struct {
	k    fillKey
	c    *fillCall
	load func() (entry, error)
}

// errReadExited is what a read's callers get when its load ended the
// goroutine (runtime.Goexit, as t.FailNow does in a test's loader) instead
// of returning: they are never left waiting on it.
var errReadExited = fmt.Errorf("keystore: lookup: %w: the store read did not return", ErrUnavailable)

// do returns the read of k, starting load on a kept goroutine unless one is
// in flight. load must not panic (Cache.fill's recovers).
func (f *fills) do(k fillKey, load func() (entry, error)) *fillCall {
	f.mu.Lock()
	if c, ok := f.calls[k]; ok {
		f.mu.Unlock()
		return c
	}
	c := &fillCall{done: make(chan struct{})}
	if f.calls == nil {
		f.calls = map[fillKey]*fillCall{}
	}
	f.calls[k] = c
	var w chan fillJob
	if n := len(f.idle); n > 0 {
		w = f.idle[n-1]
		f.idle[n-1] = nil
		f.idle = f.idle[:n-1]
	}
	f.mu.Unlock()
	j := fillJob{k, c, load}
	if w == nil {
		go f.work(make(chan fillJob, 1), j)
	} else {
		w <- j // do took it off idle; the channel is buffered, so this never blocks
	}
	return c
}

// work runs j, then waits on jobs for the next one while it is idle, until
// the cache closes or enough others are idle.
func (f *fills) work(jobs chan fillJob, j fillJob) {
	for f.run(jobs, j) {
		var ok bool
		if j, ok = <-jobs; !ok {
			return
		}
	}
}

// run reads j and reports whether its goroutine stays for another read.
// It goes back on idle before the read's callers wake, so a caller's next
// miss finds it there; a load that ends the goroutine still wakes them,
// with errReadExited, and the goroutine is not kept.
func (f *fills) run(jobs chan fillJob, j fillJob) (keep bool) {
	returned := false
	j.c.err = errReadExited
	defer func() {
		f.mu.Lock()
		delete(f.calls, j.k)
		keep = returned && !f.closed && len(f.idle) < maxIdleFillers
		if keep {
			f.idle = append(f.idle, jobs)
		}
		f.mu.Unlock()
		close(j.c.done)
	}()
	j.c.e, j.c.err = j.load()
	returned = true
	return keep
}

// close ends the idle goroutines; reads in flight finish, and their
// goroutines end after them.
func (f *fills) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for _, w := range f.idle {
		close(w)
	}
	f.idle = nil
}
