package main

import (
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestDeepPool: every job runs once and its caller sees its effects when
// run returns, under concurrency; a burst leaves at most maxIdleDeep idle
// goroutines, and sequential calls reuse one goroutine.
func TestDeepPool(t *testing.T) {
	var p deepPool
	var ran atomic.Int64
	var wg sync.WaitGroup
	for range 2 * maxIdleDeep {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				var v int
				p.run(func() { v = 1; ran.Add(1) })
				if v != 1 {
					t.Error("run returned before its job")
				}
			}
		}()
	}
	wg.Wait()
	if got := ran.Load(); got != 2*maxIdleDeep*20 {
		t.Fatalf("%d jobs ran, want %d", got, 2*maxIdleDeep*20)
	}
	if n := len(p.idle); n > maxIdleDeep || n == 0 {
		t.Fatalf("%d idle goroutines after the burst, want 1..%d", n, maxIdleDeep)
	}
	top := p.idle[len(p.idle)-1]
	for range 5 {
		p.run(func() {})
		if p.idle[len(p.idle)-1] != top {
			t.Fatal("sequential calls did not reuse the most recent goroutine")
		}
	}
}

// TestDeepPoolPanic: a job's panic reaches run's caller (where net/http
// recovers it), and the goroutine goes on serving.
func TestDeepPoolPanic(t *testing.T) {
	var p deepPool
	got := func() (v any) {
		defer func() { v = recover() }()
		p.run(func() { panic(http.ErrAbortHandler) })
		return nil
	}()
	if got != http.ErrAbortHandler { //nolint:errorlint // the very value
		t.Fatalf("recovered %v, want http.ErrAbortHandler", got)
	}
	ran := false
	p.run(func() { ran = true })
	if !ran || len(p.idle) != 1 {
		t.Fatalf("after a panic: ran %v, %d idle goroutines", ran, len(p.idle))
	}
}

// TestDeepPoolGoexit: a job that ends its goroutine (runtime.Goexit, as
// t.FailNow does) ends the caller's goroutine too, after its deferred
// calls, instead of leaving it waiting forever; the pool still serves.
func TestDeepPoolGoexit(t *testing.T) {
	var p deepPool
	ended := make(chan bool)
	go func() {
		after := false
		defer func() { ended <- after }()
		p.run(runtime.Goexit)
		after = true
	}()
	if <-ended {
		t.Fatal("the caller went on after its job called runtime.Goexit")
	}
	ran := false
	p.run(func() { ran = true })
	if !ran {
		t.Fatal("the pool stopped serving after a Goexit")
	}
}
