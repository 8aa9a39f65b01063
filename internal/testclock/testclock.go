// Package testclock is a clock that tests move by hand. Stores, caches and
// workers take a Now func instead of reading time.Now, so expiry, leases and
// retries are tested without sleeping; packages that need such a clock in
// their tests share this one rather than each writing its own.
package testclock

import (
	"sync"
	"time"
)

// Clock reads the time it was last set to; it is safe for concurrent use
// because the code under test reads it from its own goroutines.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a clock that reads t until it is moved.
func New(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time; pass the method value as a Now func.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Set moves the clock to t, for a test that needs the real time (a
// library checking a timestamp against its own clock).
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}
