package limits

import (
	"context"
	"sync"
	"time"
)

// Memory is an in-process GCRA rate limiter: the counters of a single
// replica (no --redis), and the fallback while Redis is unreachable. Its
// arithmetic is the one Redis runs (see Redis), so a counter answers the
// same wherever it lives.
type Memory struct {
	mu  sync.Mutex
	tat map[string]time.Time // theoretical arrival time of the next request
	ops int
}

// NewMemory returns an empty in-process limiter.
func NewMemory() *Memory { return &Memory{tat: map[string]time.Time{}} }

// sweepEvery bounds the map: every so many charges, keys whose bucket has
// drained (their state equals "never seen") are dropped.
const sweepEvery = 4096

func (m *Memory) charge(_ context.Context, now time.Time, c Counter) (Result, error) {
	// The emission interval: one request's share of the period (at least
	// 1 ns, for absurdly high limits).
	interval := max(c.Period/time.Duration(c.Limit), time.Nanosecond)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ops++
	if m.ops%sweepEvery == 0 {
		for k, t := range m.tat {
			if !t.After(now) {
				delete(m.tat, k)
			}
		}
	}
	r, tat := gcra(now, m.tat[c.Key], interval, c)
	if r.Allowed {
		m.tat[c.Key] = tat
	}
	return r, nil
}

// gcra decides one charge given the stored theoretical arrival time (zero
// when unseen) and returns the new one.
func gcra(now, stored time.Time, interval time.Duration, c Counter) (Result, time.Time) {
	tat := stored
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(interval * time.Duration(c.Cost))
	allowAt := next.Add(-interval * time.Duration(c.burst()))
	diff := now.Sub(allowAt)
	if diff < 0 {
		return Result{Counter: c, RetryAfter: -diff, ResetAfter: tat.Sub(now)}, stored
	}
	return Result{Counter: c, Allowed: true, Remaining: int64(diff / interval), ResetAfter: next.Sub(now)}, next
}
