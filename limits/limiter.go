package limits

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// QuotaStore keeps monthly usage; keystore.Store implements it in SQL.
type QuotaStore interface {
	// ChargeQuota adds cost to counter's usage in period if the total stays
	// within limit, atomically. It returns the usage after the charge, or
	// the unchanged usage and false when the charge would exceed limit.
	ChargeQuota(ctx context.Context, counter, period string, cost, limit int64, at time.Time) (used int64, ok bool, err error)
}

// Config configures a Limiter.
type Config struct {
	// Redis, when set, holds the rate counters shared by every replica; nil
	// means in-process counters.
	Redis *Redis
	// Quotas holds monthly usage (required).
	Quotas QuotaStore
	// FailClosed refuses (ErrUnavailable) instead of falling back when a
	// counter store is unreachable.
	FailClosed bool
	Log        *slog.Logger
	// Registerer receives the limiter's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Cooldown is how long Redis is left alone after a failure before it is
	// tried again (default 1 s), so an outage costs one timeout per
	// cooldown rather than one per request.
	Cooldown time.Duration
}

// Limiter charges the counters of one decision: rates first, then quotas,
// stopping at the first that refuses.
type Limiter struct {
	shared     *Redis
	local      *Memory
	quotas     QuotaStore
	failClosed bool
	log        *slog.Logger
	cooldown   time.Duration

	redis, store health
	fallbacks    *prometheus.CounterVec

	exhausted exhaustedMemo
}

// New builds a limiter.
func New(cfg Config) (*Limiter, error) {
	if cfg.Quotas == nil || cfg.Log == nil {
		return nil, fmt.Errorf("limits: a quota store and a logger are required")
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = time.Second
	}
	l := &Limiter{shared: cfg.Redis, local: NewMemory(), quotas: cfg.Quotas, failClosed: cfg.FailClosed,
		log: cfg.Log, cooldown: cfg.Cooldown, exhausted: exhaustedMemo{m: map[memoKey]memoEntry{}}}
	l.redis.name, l.store.name = "redis", "store"
	l.fallbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keygate_limits_fallbacks_total",
		Help: "Charges that could not reach their counter store (redis: rate counted in-process or refused; store: quota not counted or refused).",
	}, []string{"store"})
	// Present from the start, so dashboards show 0 rather than no data.
	l.fallbacks.WithLabelValues("redis")
	l.fallbacks.WithLabelValues("store")
	degraded := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "keygate_limits_redis_degraded", Help: "1 while Redis is unreachable and rate limits are counted in-process (or refused).",
	}, func() float64 {
		if l.redis.degraded.Load() {
			return 1
		}
		return 0
	})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(l.fallbacks); err != nil {
			return nil, fmt.Errorf("limits: metrics: %w", err)
		}
		if err := cfg.Registerer.Register(degraded); err != nil {
			return nil, fmt.Errorf("limits: metrics: %w", err)
		}
	}
	return l, nil
}

// Outcome is what a charge did.
type Outcome struct {
	// Results holds one entry per counter consulted, in charge order.
	Results []Result
	// Denied is the counter that refused (the last Result), nil if none did.
	Denied *Result
}

// Charge charges every counter with a positive cost, rates before quotas,
// and stops at the first refusal. A rate refusal charges no quota. A quota
// refusal leaves the rate charged (the request did arrive), but a quota
// known to be used up is refused before any rate is touched, so a client
// retrying against an exhausted quota sees 403 QUOTA_EXCEEDED, not 429.
// A counter of an unknown kind is an error before anything is charged.
func (l *Limiter) Charge(ctx context.Context, now time.Time, counters []Counter) (Outcome, error) {
	var out Outcome
	for _, c := range counters {
		switch {
		case c.Cost <= 0:
		case c.Kind != Rate && c.Kind != Quota:
			return out, c.Validate() // before anything is charged
		case c.Kind == Quota:
			if r, ok := l.exhausted.get(c, now); ok {
				out.Results = append(out.Results, r)
				out.Denied = &out.Results[0]
				return out, nil
			}
		}
	}
	// Rates, then quotas, each in the order given: two passes rather than a
	// sorted copy, which cost two allocations on every limited request.
	for _, kind := range [...]Kind{Rate, Quota} {
		for _, c := range counters {
			if c.Cost <= 0 || c.Kind != kind {
				continue
			}
			var r Result
			var err error
			if kind == Rate {
				r, err = l.chargeRate(ctx, now, c)
			} else {
				r, err = l.chargeQuota(ctx, now, c)
			}
			if err != nil {
				return out, err
			}
			if out.Results == nil {
				out.Results = make([]Result, 0, len(counters))
			}
			out.Results = append(out.Results, r)
			if !r.Allowed {
				out.Denied = &out.Results[len(out.Results)-1]
				return out, nil
			}
		}
	}
	return out, nil
}

func (l *Limiter) chargeRate(ctx context.Context, now time.Time, c Counter) (Result, error) {
	if err := c.Validate(); err != nil {
		return Result{}, err
	}
	if l.shared == nil {
		return l.local.charge(ctx, now, c)
	}
	if l.redis.usable(now) {
		r, err := l.shared.charge(ctx, now, c)
		if err == nil {
			l.redis.ok(l.log, "rate limits counted in Redis again")
			return r, nil
		}
		l.redis.failed(l.log, now.Add(l.cooldown), err, l.fallbackNote())
	}
	l.fallbacks.WithLabelValues("redis").Inc()
	if l.failClosed {
		return Result{}, fmt.Errorf("%w: redis unreachable", ErrUnavailable)
	}
	return l.local.charge(ctx, now, c)
}

func (l *Limiter) fallbackNote() string {
	if l.failClosed {
		return "Redis unreachable; refusing rate-limited requests with 503 (--limits-fail-closed)"
	}
	return "Redis unreachable; rate limits counted in-process on this replica until it is back"
}

func (l *Limiter) chargeQuota(ctx context.Context, now time.Time, c Counter) (Result, error) {
	if err := c.Validate(); err != nil {
		return Result{}, err
	}
	reset := MonthEnd(now).Sub(now)
	// As with Redis, an unreachable quota store is left alone for the
	// cooldown: metered requests must not each wait out a database timeout.
	if l.store.usable(now) {
		used, ok, err := l.quotas.ChargeQuota(ctx, c.Key, Month(now), c.Cost, c.Limit, now)
		if err == nil {
			return l.quotaCharged(now, c, used, ok, reset), nil
		}
		note := "quota store unreachable; metered requests pass uncounted until it is back"
		if l.failClosed {
			note = "quota store unreachable; refusing metered requests with 503 (--limits-fail-closed)"
		}
		l.store.failed(l.log, now.Add(l.cooldown), err, note)
	}
	l.fallbacks.WithLabelValues("store").Inc()
	if l.failClosed {
		return Result{}, fmt.Errorf("%w: quota store unreachable", ErrUnavailable)
	}
	return Result{Counter: c, Allowed: true, Remaining: -1, ResetAfter: reset}, nil
}

// quotaCharged is the result of a quota charge the store answered.
func (l *Limiter) quotaCharged(now time.Time, c Counter, used int64, ok bool, reset time.Duration) Result {
	l.store.ok(l.log, "quota store reachable again")
	r := Result{Counter: c, Allowed: ok, Used: used, Remaining: max(c.Limit-used, 0), ResetAfter: reset}
	if !ok {
		r.RetryAfter = reset
		l.exhausted.put(c, now, r)
	}
	return r
}

// health tracks one counter store's reachability, so that a change of
// state is logged once rather than once per request.
type health struct {
	name      string
	degraded  atomic.Bool
	downUntil atomic.Int64 // unix nanos before which the store is not tried
}

func (h *health) usable(now time.Time) bool { return now.UnixNano() >= h.downUntil.Load() }

func (h *health) failed(log *slog.Logger, retryAt time.Time, err error, note string) {
	h.downUntil.Store(retryAt.UnixNano())
	if h.degraded.CompareAndSwap(false, true) {
		log.Warn(note, "store", h.name, "err", err)
	}
}

func (h *health) ok(log *slog.Logger, note string) {
	if h.degraded.CompareAndSwap(true, false) {
		log.Info(note, "store", h.name)
	}
}

// exhaustedMemo remembers, briefly, quotas found used up, so that a client
// hammering an exhausted quota costs neither a store write nor a rate
// token. The memo is keyed by the limit too: raising a site's quota takes
// effect at once.
type exhaustedMemo struct {
	mu sync.Mutex
	m  map[memoKey]memoEntry
}

type memoKey struct {
	key, month string
	limit      int64
}

type memoEntry struct {
	until time.Time
	r     Result
}

// memoTTL bounds how long a memo may hide a usage change made elsewhere
// (an operator resetting a site's usage).
const memoTTL = 10 * time.Second

func (e *exhaustedMemo) get(c Counter, now time.Time) (Result, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	m, ok := e.m[memoKey{c.Key, Month(now), c.Limit}]
	if !ok || !now.Before(m.until) || m.r.Counter.Cost > c.Cost {
		return Result{}, false
	}
	r := m.r
	r.Counter = c
	r.ResetAfter = MonthEnd(now).Sub(now)
	r.RetryAfter = r.ResetAfter
	return r, true
}

func (e *exhaustedMemo) put(c Counter, now time.Time, r Result) {
	until := now.Add(memoTTL)
	if end := MonthEnd(now); end.Before(until) {
		until = end
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.m) >= 10000 {
		clear(e.m)
	}
	e.m[memoKey{c.Key, Month(now), c.Limit}] = memoEntry{until: until, r: r}
}
