package extauthz

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// budgetCtx is the caller's context with the Authorizer's budget as its
// deadline, for a request that came without one (see Authorizer.bound).
//
// context.WithTimeout starts a timer and registers a child with the
// caller's context on every request, and stops and unregisters them at the
// end: under the realistic workload (whose Checks carry no deadline) that
// was ~2.5% of serve's CPU, for a decision that most of the time never
// waits on anything (a cached key, a memo hit, an in-process rate). So the
// timer is started only when something asks for Done, the one way to wait
// for the deadline: a store read, a quota charge, a policy evaluation.
// Until then Deadline is known, and Err reads the clock itself. Its cancel
// ends it, as context.WithDeadline's cancel func does.
type budgetCtx struct {
	context.Context // the caller's
	deadline        time.Time

	// timed is context.WithDeadline(Context, deadline), made by the first
	// Done (under mu); every method answers from it once it exists.
	timed    atomic.Pointer[timedCtx]
	mu       sync.Mutex
	canceled bool // the request is over: a late Done finds it canceled
	// err is the first error Err returned: it answers every later call
	// (context.Context's rule), whatever the clock, the caller or a late
	// timer would say then.
	err atomic.Pointer[error]
}

type timedCtx struct {
	context.Context
	cancel context.CancelFunc
}

// Deadline implements context.Context.
func (c *budgetCtx) Deadline() (time.Time, bool) { return c.deadline, true }

// Done implements context.Context: it starts the timer.
func (c *budgetCtx) Done() <-chan struct{} { return c.start().Done() }

// Err implements context.Context. Once it has returned an error it
// returns that one.
func (c *budgetCtx) Err() error {
	if p := c.err.Load(); p != nil {
		return *p
	}
	err := c.currentErr()
	if err == nil {
		return nil
	}
	c.err.CompareAndSwap(nil, &err)
	return *c.err.Load()
}

func (c *budgetCtx) currentErr() error {
	if t := c.timed.Load(); t != nil {
		return t.Err()
	}
	c.mu.Lock()
	canceled := c.canceled
	c.mu.Unlock()
	switch {
	case canceled:
		return context.Canceled
	case c.Context.Err() != nil:
		return c.Context.Err()
	case !time.Now().Before(c.deadline):
		return context.DeadlineExceeded
	}
	return nil
}

// Value implements context.Context. Once the timer runs, values come
// through it, so that a context derived from c then (context.WithCancel)
// finds the timed context's cancellation as its parent's, as it would
// under context.WithDeadline, rather than watching c from a goroutine.
func (c *budgetCtx) Value(key any) any {
	if t := c.timed.Load(); t != nil {
		return t.Value(key)
	}
	return c.Context.Value(key)
}

// start makes the timed context once; after cancel it is made canceled.
func (c *budgetCtx) start() *timedCtx {
	if t := c.timed.Load(); t != nil {
		return t
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.timed.Load(); t != nil {
		return t
	}
	ctx, cancel := context.WithDeadline(c.Context, c.deadline)
	if c.canceled {
		cancel()
	}
	t := &timedCtx{Context: ctx, cancel: cancel}
	c.timed.Store(t)
	return t
}

func (c *budgetCtx) cancel() {
	c.mu.Lock()
	c.canceled = true
	t := c.timed.Load()
	c.mu.Unlock()
	if t != nil {
		t.cancel()
	}
}

// String names c as context.WithDeadline's contexts name themselves.
func (c *budgetCtx) String() string {
	return "extauthz.budget(" + c.deadline.String() + ")"
}
