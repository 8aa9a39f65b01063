package tests

import (
	"sync"
	"sync/atomic"
)

// burst runs fn(0) … fn(n-1) each on its own goroutine, released at once
// so that their requests overlap as much as they can, and waits for all.
func burst(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

// hammer calls fn over and over on each of workers goroutines until stop
// is called; stop returns once every loop has ended.
func hammer(workers int, fn func()) (stop func()) {
	var halt atomic.Bool
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for !halt.Load() {
				fn()
			}
		})
	}
	return func() {
		halt.Store(true)
		wg.Wait()
	}
}
