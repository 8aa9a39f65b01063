package keystore_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testclock"
)

// leaseRunners records which of several contenders run a job, and how many
// ran at once.
type leaseRunners struct {
	mu         sync.Mutex
	running    map[string]bool
	maxRunning int
	started    chan string
	stopped    chan string
}

func newLeaseRunners() *leaseRunners {
	return &leaseRunners{running: map[string]bool{}, started: make(chan string, 16), stopped: make(chan string, 16)}
}

func (r *leaseRunners) job(name string) func(context.Context) error {
	return func(ctx context.Context) error {
		r.mu.Lock()
		r.running[name] = true
		r.maxRunning = max(r.maxRunning, len(r.running))
		r.mu.Unlock()
		r.started <- name
		<-ctx.Done()
		r.mu.Lock()
		delete(r.running, name)
		r.mu.Unlock()
		r.stopped <- name
		return ctx.Err()
	}
}

func expectStart(t *testing.T, ch chan string, want string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("%s started, want %s", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s never started", want)
	}
}

func expectQuiet(t *testing.T, ch chan string) {
	t.Helper()
	select {
	case got := <-ch:
		t.Fatalf("%s started while another process holds the lease", got)
	case <-time.After(300 * time.Millisecond):
	}
}

// Two processes' stores on one SQLite file contend for a job: one runs it,
// the other takes over when it stops cleanly, when its holder died (the
// lease expired unrenewed) and never while the lease is someone else's.
func TestExclusiveSQLiteLease(t *testing.T) {
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "k.db")
	c := testclock.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	a, _ := open(t, dsn, c)
	b, _ := open(t, dsn, c)
	r := newLeaseRunners()
	const check = 20 * time.Millisecond
	run := func(s interface {
		Exclusive(context.Context, int, time.Duration, func(context.Context) error) error
	}, name string) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Exclusive(ctx, 7, check, r.job(name)) }()
		return func() { cancel(); <-done }
	}

	stopA := run(a, "a")
	expectStart(t, r.started, "a")
	stopB := run(b, "b")
	expectQuiet(t, r.started)

	// A clean stop releases the lease at once.
	stopA()
	expectStart(t, r.started, "b")
	stopB()
	for range 2 {
		<-r.stopped // a's and b's runs above
	}

	// A holder that died leaves a lease nobody renews: it is taken over
	// once it expired, not before.
	if _, err := b.DB().Exec(`UPDATE worker_leases SET holder = 'wl_dead', expires_at = $1 WHERE job = 7`, c.Now().Add(time.Minute).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	stopA = run(a, "a")
	expectQuiet(t, r.started)
	c.Add(time.Minute)
	expectStart(t, r.started, "a")

	// A lease taken over under a running holder (its renewals could not
	// reach the file in time) ends the holder's run.
	if _, err := b.DB().Exec(`UPDATE worker_leases SET holder = 'wl_other', expires_at = $1 WHERE job = 7`, c.Now().Add(time.Minute).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the holder kept running after its lease was taken")
	}
	expectQuiet(t, r.started)
	stopA()
	if r.maxRunning != 1 {
		t.Fatalf("%d runners at once", r.maxRunning)
	}
	var n int
	if err := a.DB().QueryRow(`SELECT COUNT(*) FROM worker_leases`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d lease rows, %v", n, err)
	}
}
