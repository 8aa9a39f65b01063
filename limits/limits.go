// Package limits counts what keygate's decisions charge: per-key request
// rates (GCRA, in Redis when several replicas share it, in-process
// otherwise) and monthly quotas (in the SQL store, so a month of usage
// survives restarts and every replica and the CLI see the same numbers).
//
// limits imports no other package of the project: the authorizer turns a
// policy decision into Counters, and cmd wires the stores in.
package limits

import (
	"errors"
	"fmt"
	"time"
)

// Kind is how a counter counts.
type Kind uint8

const (
	// Rate is a GCRA rate limit: Limit requests per Period with bursts of
	// up to Burst.
	Rate Kind = iota + 1
	// Quota is a fixed budget per calendar month (UTC).
	Quota
)

func (k Kind) String() string {
	switch k {
	case Rate:
		return "rate"
	case Quota:
		return "quota"
	}
	return "unknown"
}

// Counter is one thing a request charges.
type Counter struct {
	Kind Kind
	// Key names the counter, e.g. "key:key_123:live" or "site:acme:test".
	// Quota keys get the month appended by the store.
	Key   string
	Limit int64
	// Burst is how many requests a rate counter lets through at once
	// (default Limit). Quotas ignore it.
	Burst int64
	// Period is the rate's window; quotas always count per calendar month.
	Period time.Duration
	Cost   int64
}

func (c Counter) burst() int64 {
	if c.Burst > 0 {
		return c.Burst
	}
	return c.Limit
}

// Result is one counter's state after a charge.
type Result struct {
	Counter Counter
	Allowed bool
	// Remaining is how many more cost-1 requests the counter would let
	// through right now.
	Remaining int64
	// RetryAfter is how long a refused request should wait (0 if allowed).
	RetryAfter time.Duration
	// ResetAfter is how long until the counter is back to its full
	// allowance: a rate's bucket drains, a quota's month ends.
	ResetAfter time.Duration
	// Used is a quota's usage in the current month, this charge included
	// when allowed.
	Used int64
}

// ErrUnavailable wraps a failure to reach a counter store when the limiter
// is configured to fail closed: the caller denies with 503.
var ErrUnavailable = errors.New("limits: counters unavailable")

// Month names the calendar month (UTC) t falls in, e.g. "2026-11": the
// period a quota charge counts against.
func Month(t time.Time) string { return t.UTC().Format("2006-01") }

// MonthEnd is when the month t falls in ends (UTC), i.e. when its quotas
// reset.
func MonthEnd(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
}

// Validate checks a counter before anything charges it.
func (c Counter) Validate() error {
	switch {
	case c.Kind != Rate && c.Kind != Quota:
		return fmt.Errorf("limits: counter %q: unknown kind", c.Key)
	case c.Key == "" || len(c.Key) > 200:
		return fmt.Errorf("limits: counter key must be 1 to 200 bytes")
	case c.Limit <= 0 || c.Cost < 0 || c.Burst < 0:
		return fmt.Errorf("limits: counter %q: limit must be positive, cost and burst not negative", c.Key)
	case c.Kind == Rate && c.Period <= 0:
		return fmt.Errorf("limits: counter %q: a rate needs a period", c.Key)
	}
	return nil
}
