package keystore_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/internal/testclock"
)

// Two replicas contend for one job: only one runs it; when it stops, the
// other takes over.
func TestExclusivePostgres(t *testing.T) {
	dsn := pgtest.NewDatabase(t, os.Getenv)
	c := testclock.New(time.Now())
	a, _ := open(t, dsn, c)
	b, _ := open(t, dsn, c)
	var mu sync.Mutex
	running, maxRunning := map[string]bool{}, 0
	started := make(chan string, 4)
	job := func(name string) func(context.Context) error {
		return func(ctx context.Context) error {
			mu.Lock()
			running[name] = true
			maxRunning = max(maxRunning, len(running))
			mu.Unlock()
			started <- name
			<-ctx.Done()
			mu.Lock()
			delete(running, name)
			mu.Unlock()
			return ctx.Err()
		}
	}
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	doneA, doneB := make(chan error, 1), make(chan error, 1)
	go func() { doneA <- a.Exclusive(ctxA, 7, 50*time.Millisecond, job("a")) }()
	first := <-started
	go func() { doneB <- b.Exclusive(ctxB, 7, 50*time.Millisecond, job("b")) }()
	if first != "a" {
		t.Fatalf("first runner %s", first)
	}
	// b polls the lock every 50 ms; while a holds it no session can take
	// it (the id is exclusiveLockBase + job in webhooks.go).
	for range 10 {
		var got bool
		if err := b.DB().QueryRow(`SELECT pg_try_advisory_lock($1)`, int64(0x6b6579676100+7)).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got {
			t.Fatal("the job's lock is free while a runs it")
		}
	}
	stopA()
	<-doneA
	if second := <-started; second != "b" {
		t.Fatalf("after a stopped: %s", second)
	}
	stopB()
	<-doneB
	if maxRunning != 1 {
		t.Fatalf("%d runners at once", maxRunning)
	}
}
