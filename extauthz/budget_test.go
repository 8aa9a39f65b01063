package extauthz

import (
	"context"
	"errors"
	"testing"
	"time"
)

// bound is Authorizer.bound as authorize uses it: ctx with the budget, if
// any, and the func that ends it.
func bound(a *Authorizer, ctx context.Context, start time.Time) (context.Context, func()) {
	if b := a.bound(ctx, start); b != nil {
		return b, b.cancel
	}
	return ctx, func() {}
}

// TestBudgetIsADeadline: a request without a deadline gets the budget as
// one, which ends the wait of anything that waits on it, and passes on
// the caller's values and cancellation; its end cancels it.
func TestBudgetIsADeadline(t *testing.T) {
	type key struct{}
	parent, cancelParent := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	defer cancelParent()
	a := &Authorizer{Budget: 20 * time.Millisecond}
	start := time.Now()
	ctx, cancel := bound(a, parent, start)
	defer cancel()
	if d, ok := ctx.Deadline(); !ok || !d.Equal(start.Add(a.Budget)) {
		t.Fatalf("deadline %v %v, want %v", d, ok, start.Add(a.Budget))
	}
	if ctx.Value(key{}) != "v" || ctx.Err() != nil {
		t.Fatalf("value %v err %v", ctx.Value(key{}), ctx.Err())
	}
	<-ctx.Done() // the budget ends the wait (else the test times out)
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("err %v, want deadline exceeded", ctx.Err())
	}
	if ctx.Value(key{}) != "v" {
		t.Fatal("value lost once the timer started")
	}

	// The caller's cancellation reaches a context derived from it, both
	// before and after its timer started.
	for _, startTimer := range []bool{false, true} {
		parent, cancelParent := context.WithCancel(context.Background())
		ctx, cancel := bound(a, parent, time.Now().Add(time.Hour))
		if startTimer {
			ctx.Done()
		}
		child, cancelChild := context.WithCancel(ctx)
		cancelParent()
		<-child.Done()
		if !errors.Is(ctx.Err(), context.Canceled) || !errors.Is(child.Err(), context.Canceled) {
			t.Errorf("timer started %v: err %v, child %v; want canceled", startTimer, ctx.Err(), child.Err())
		}
		cancelChild()
		cancel()
	}
}

// TestBudgetEnds: the end of a request cancels its budget, whether or not
// anything waited on it before; and a budget already spent is an error
// before anything waits.
func TestBudgetEnds(t *testing.T) {
	a := &Authorizer{}
	for _, startTimer := range []bool{false, true} {
		ctx, cancel := bound(a, context.Background(), time.Now())
		if startTimer {
			ctx.Done()
		}
		cancel()
		<-ctx.Done()
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Errorf("timer started %v: err %v after the end, want canceled", startTimer, ctx.Err())
		}
	}
	ctx, cancel := bound(a, context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("spent budget: err %v, want deadline exceeded", ctx.Err())
	}
}

// TestBudgetKeepsCallersDeadline: a request with a deadline keeps it.
func TestBudgetKeepsCallersDeadline(t *testing.T) {
	want := time.Now().Add(time.Minute)
	parent, cancelParent := context.WithDeadline(context.Background(), want)
	defer cancelParent()
	ctx, cancel := bound(&Authorizer{}, parent, time.Now())
	defer cancel()
	if ctx != parent {
		t.Fatal("a caller's deadline was replaced")
	}
}

// TestBudgetTimerOnlyWhenWaited: a decision that waits on nothing starts
// no timer (the budget's point), and one that does starts one (which
// then ends its wait).
func TestBudgetTimerOnlyWhenWaited(t *testing.T) {
	ctx, cancel := bound(&Authorizer{}, context.Background(), time.Now())
	defer cancel()
	b, ok := ctx.(*budgetCtx)
	if !ok {
		t.Fatalf("bound gave a %T, want the lazy budget", ctx)
	}
	ctx.Deadline()
	ctx.Err()
	ctx.Value("x")
	if b.timed.Load() != nil {
		t.Fatal("a timer started before anything waited")
	}
	ctx.Done()
	if b.timed.Load() == nil {
		t.Fatal("Done started no timer")
	}
}

// Once Err has returned an error it returns that one, whatever happens
// next: the request's end, the caller's cancellation, a late Done.
func TestBudgetErrStays(t *testing.T) {
	a := &Authorizer{Budget: time.Millisecond}
	past := time.Now().Add(-time.Second)

	// Spent, then the request ends, then a late Done.
	ctx, cancel := bound(a, context.Background(), past)
	first := ctx.Err()
	cancel()
	second := ctx.Err()
	<-ctx.Done()
	if first != context.DeadlineExceeded || second != first || ctx.Err() != first {
		t.Errorf("spent, ended, late Done: %v, %v, %v", first, second, ctx.Err())
	}

	// Spent, then the caller is cancelled.
	parent, cancelParent := context.WithCancel(context.Background())
	ctx, cancel = bound(a, parent, past)
	first = ctx.Err()
	cancelParent()
	if first != context.DeadlineExceeded || ctx.Err() != first {
		t.Errorf("spent, caller cancelled: %v, %v", first, ctx.Err())
	}
	cancel()

	// Ended before the deadline, then a Done after it.
	start := time.Now()
	ctx, cancel = bound(a, context.Background(), start)
	cancel()
	first = ctx.Err()
	for !time.Now().After(start.Add(a.Budget)) {
		time.Sleep(time.Millisecond)
	}
	second = ctx.Err()
	<-ctx.Done()
	if first != context.Canceled || second != first || ctx.Err() != first {
		t.Errorf("ended, deadline passed, late Done: %v, %v, %v", first, second, ctx.Err())
	}
}
