package limits

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
)

var t0 = time.Date(2026, 11, 30, 23, 59, 0, 0, time.UTC)

func TestMemoryGCRA(t *testing.T) {
	perMin := Counter{Kind: Rate, Key: "k", Limit: 6, Period: time.Minute, Cost: 1} // one every 10 s, bursts of 6
	type step struct {
		at         time.Duration
		c          Counter
		allowed    bool
		remaining  int64
		retryAfter time.Duration
		resetAfter time.Duration
	}
	withCost := func(c Counter, cost int64) Counter { c.Cost = cost; return c }
	withBurst := func(c Counter, b int64) Counter { c.Burst = b; return c }
	tests := []struct {
		name  string
		steps []step
	}{
		{"burst then refill", []step{
			{0, perMin, true, 5, 0, 10 * time.Second},
			{0, perMin, true, 4, 0, 20 * time.Second},
			{0, perMin, true, 3, 0, 30 * time.Second},
			{0, perMin, true, 2, 0, 40 * time.Second},
			{0, perMin, true, 1, 0, 50 * time.Second},
			{0, perMin, true, 0, 0, time.Minute},
			{0, perMin, false, 0, 10 * time.Second, time.Minute},
			{9 * time.Second, perMin, false, 0, time.Second, 51 * time.Second},
			{10 * time.Second, perMin, true, 0, 0, time.Minute},
			{10 * time.Second, perMin, false, 0, 10 * time.Second, time.Minute},
			{2 * time.Minute, perMin, true, 5, 0, 10 * time.Second},
		}},
		{"cost", []step{
			{0, withCost(perMin, 4), true, 2, 0, 40 * time.Second},
			{0, withCost(perMin, 3), false, 0, 10 * time.Second, 40 * time.Second},
			{0, withCost(perMin, 2), true, 0, 0, time.Minute},
		}},
		{"burst smaller than limit", []step{
			{0, withBurst(perMin, 2), true, 1, 0, 10 * time.Second},
			{0, withBurst(perMin, 2), true, 0, 0, 20 * time.Second},
			{0, withBurst(perMin, 2), false, 0, 10 * time.Second, 20 * time.Second},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMemory()
			for i, s := range tt.steps {
				r, err := m.charge(context.Background(), t0.Add(s.at), s.c)
				if err != nil {
					t.Fatal(err)
				}
				got := step{s.at, s.c, r.Allowed, r.Remaining, r.RetryAfter, r.ResetAfter}
				if got != s {
					t.Errorf("step %d: got %+v, want %+v", i, got, s)
				}
			}
		})
	}
}

// fakeQuotas is an in-memory QuotaStore with the store's semantics.
type fakeQuotas struct {
	mu    sync.Mutex
	used  map[string]int64
	calls int
	err   error
}

func (f *fakeQuotas) ChargeQuota(_ context.Context, counter, period string, cost, limit int64, _ time.Time) (int64, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return 0, false, f.err
	}
	if f.used == nil {
		f.used = map[string]int64{}
	}
	k := counter + "@" + period
	if f.used[k]+cost > limit {
		return f.used[k], false, nil
	}
	f.used[k] += cost
	return f.used[k], true, nil
}

func newLimiter(t *testing.T, cfg Config) (*Limiter, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	cfg.Log = slog.New(slog.NewTextHandler(&logs, nil))
	if cfg.Quotas == nil {
		cfg.Quotas = &fakeQuotas{}
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l, &logs
}

func TestQuotaResetsAtMonthBoundary(t *testing.T) {
	l, _ := newLimiter(t, Config{})
	quota := Counter{Kind: Quota, Key: "site:s1:live", Limit: 3, Cost: 1}
	for i := range 3 {
		out, err := l.Charge(context.Background(), t0, []Counter{quota})
		if err != nil || out.Denied != nil {
			t.Fatalf("charge %d: %+v, %v", i, out, err)
		}
	}
	out, err := l.Charge(context.Background(), t0, []Counter{quota})
	if err != nil || out.Denied == nil {
		t.Fatalf("4th charge: want a refusal, got %+v, %v", out, err)
	}
	if want := time.Minute; out.Denied.ResetAfter != want || out.Denied.Used != 3 {
		t.Errorf("refusal: reset after %s used %d, want %s and 3", out.Denied.ResetAfter, out.Denied.Used, want)
	}
	// The first second of December is a new month.
	out, err = l.Charge(context.Background(), t0.Add(time.Minute), []Counter{quota})
	if err != nil || out.Denied != nil || out.Results[0].Used != 1 {
		t.Fatalf("first charge of the new month: %+v, %v", out, err)
	}
}

func TestRateRefusalChargesNoQuota(t *testing.T) {
	q := &fakeQuotas{}
	l, _ := newLimiter(t, Config{Quotas: q})
	rate := Counter{Kind: Rate, Key: "key:k1:live", Limit: 1, Period: time.Hour, Cost: 1}
	quota := Counter{Kind: Quota, Key: "site:s1:live", Limit: 100, Cost: 1}
	for i, wantDenied := range []bool{false, true, true} {
		// Quota listed first: the limiter still charges the rate first.
		out, err := l.Charge(context.Background(), t0, []Counter{quota, rate})
		if err != nil || (out.Denied != nil) != wantDenied {
			t.Fatalf("charge %d: %+v, %v", i, out, err)
		}
		if wantDenied && out.Denied.Counter.Kind != Rate {
			t.Fatalf("charge %d: refused by %v, want the rate", i, out.Denied.Counter.Kind)
		}
	}
	if q.used["site:s1:live@2026-11"] != 1 {
		t.Errorf("quota used %d, want 1: rate-limited requests must not be metered", q.used["site:s1:live@2026-11"])
	}
}

// TestUnknownKindChargesNothing: a counter of an unknown kind is an error
// before any counter is charged, wherever it stands in the list.
func TestUnknownKindChargesNothing(t *testing.T) {
	q := &fakeQuotas{}
	l, _ := newLimiter(t, Config{Quotas: q})
	rate := Counter{Kind: Rate, Key: "key:k1:live", Limit: 1, Period: time.Hour, Cost: 1}
	quota := Counter{Kind: Quota, Key: "site:s1:live", Limit: 100, Cost: 1}
	odd := Counter{Kind: Kind(9), Key: "odd", Limit: 1, Cost: 1}
	if _, err := l.Charge(context.Background(), t0, []Counter{rate, quota, odd}); err == nil {
		t.Fatal("a counter of unknown kind was accepted")
	}
	if q.calls != 0 {
		t.Errorf("quota charged %d times, want 0", q.calls)
	}
	if r, _ := l.local.charge(context.Background(), t0, rate); !r.Allowed {
		t.Error("the rate was charged before the error")
	}
}

// TestChargeAllocs: charging a rate and a quota allocates only the
// results it returns (a sorted copy of the counters cost two more).
func TestChargeAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	l, _ := newLimiter(t, Config{Quotas: &fakeQuotas{}})
	counters := []Counter{
		{Kind: Quota, Key: "site:s1:live", Limit: 1 << 40, Cost: 1},
		{Kind: Rate, Key: "key:k1:live", Limit: 1 << 40, Period: time.Minute, Cost: 1},
	}
	allocs := testing.AllocsPerRun(100, func() {
		if out, err := l.Charge(context.Background(), t0, counters); err != nil || out.Denied != nil {
			t.Fatal(out, err)
		}
	})
	quotaAllocs := testing.AllocsPerRun(100, func() {
		if out, err := l.Charge(context.Background(), t0, counters[:1]); err != nil || out.Denied != nil {
			t.Fatal(out, err)
		}
	})
	// The quota's own allocations (the month's name, the fake store's map
	// key) are the same either way; the rate adds none.
	if allocs > quotaAllocs {
		t.Fatalf("rate and quota: %v allocations, the quota alone %v", allocs, quotaAllocs)
	}
}

func TestExhaustedQuotaSparesRateAndStore(t *testing.T) {
	q := &fakeQuotas{}
	l, _ := newLimiter(t, Config{Quotas: q})
	rate := Counter{Kind: Rate, Key: "key:k1:live", Limit: 10, Period: time.Hour, Cost: 1}
	quota := Counter{Kind: Quota, Key: "site:s1:live", Limit: 1, Cost: 1}
	var last Outcome
	for range 5 {
		var err error
		if last, err = l.Charge(context.Background(), t0, []Counter{rate, quota}); err != nil {
			t.Fatal(err)
		}
	}
	if last.Denied == nil || last.Denied.Counter.Kind != Quota {
		t.Fatalf("want a quota refusal, got %+v", last)
	}
	if q.calls != 2 {
		t.Errorf("store charged %d times, want 2 (then the memo answers)", q.calls)
	}
	// Two requests took a rate token: the one allowed and the first refusal.
	r, _ := l.local.charge(context.Background(), t0, rate)
	if r.Remaining != 7 {
		t.Errorf("rate remaining %d, want 7", r.Remaining)
	}
	// The memo does not outlive the month.
	out, err := l.Charge(context.Background(), t0.Add(time.Minute), []Counter{quota})
	if err != nil || out.Denied != nil {
		t.Fatalf("new month: %+v, %v", out, err)
	}
}

// deadRedis is a Redis URL on a port nothing listens on.
func deadRedis(t *testing.T) *Redis {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	client := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 100 * time.Millisecond, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { client.Close() })
	return NewRedis(client, "test:")
}

func TestRedisDownFallsBack(t *testing.T) {
	rate := Counter{Kind: Rate, Key: "key:k1:live", Limit: 2, Period: time.Hour, Cost: 1}
	t.Run("in-process", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		l, logs := newLimiter(t, Config{Redis: deadRedis(t), Registerer: reg})
		var allowed int
		for range 4 {
			out, err := l.Charge(context.Background(), t0, []Counter{rate})
			if err != nil {
				t.Fatal(err)
			}
			if out.Denied == nil {
				allowed++
			}
		}
		if allowed != 2 {
			t.Errorf("allowed %d of 4 with a limit of 2 in the fallback", allowed)
		}
		if got := testutil.ToFloat64(l.fallbacks.WithLabelValues("redis")); got != 4 {
			t.Errorf("fallback metric %v, want 4", got)
		}
		if n := strings.Count(logs.String(), "Redis unreachable"); n != 1 {
			t.Errorf("logged the outage %d times, want once:\n%s", n, logs)
		}
	})
	t.Run("fail closed", func(t *testing.T) {
		l, _ := newLimiter(t, Config{Redis: deadRedis(t), FailClosed: true})
		_, err := l.Charge(context.Background(), t0, []Counter{rate})
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("want ErrUnavailable, got %v", err)
		}
	})
}

func TestQuotaStoreDown(t *testing.T) {
	quota := Counter{Kind: Quota, Key: "site:s1:live", Limit: 1, Cost: 1}
	down := &fakeQuotas{err: fmt.Errorf("store gone")}
	l, _ := newLimiter(t, Config{Quotas: down})
	if out, err := l.Charge(context.Background(), t0, []Counter{quota}); err != nil || out.Denied != nil {
		t.Fatalf("fallback: want allowed uncounted, got %+v, %v", out, err)
	}
	l, _ = newLimiter(t, Config{Quotas: down, FailClosed: true})
	if _, err := l.Charge(context.Background(), t0, []Counter{quota}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("fail closed: want ErrUnavailable, got %v", err)
	}
}

// An unreachable quota store is tried once per cooldown, not once per
// metered request, and again after it.
func TestQuotaStoreCooldown(t *testing.T) {
	quota := Counter{Kind: Quota, Key: "site:s1:live", Limit: 10, Cost: 1}
	down := &fakeQuotas{err: fmt.Errorf("store gone")}
	l, _ := newLimiter(t, Config{Quotas: down, Cooldown: time.Second})
	for i := range 5 {
		if out, err := l.Charge(context.Background(), t0.Add(time.Duration(i)*100*time.Millisecond), []Counter{quota}); err != nil || out.Denied != nil {
			t.Fatalf("charge %d: %+v, %v", i, out, err)
		}
	}
	if down.calls != 1 {
		t.Fatalf("quota store tried %d times within the cooldown, want 1", down.calls)
	}
	down.mu.Lock()
	down.err = nil
	down.mu.Unlock()
	if _, err := l.Charge(context.Background(), t0.Add(2*time.Second), []Counter{quota}); err != nil || down.calls != 2 {
		t.Fatalf("after the cooldown: %v, %d calls, want the store tried again", err, down.calls)
	}
}

func TestMonth(t *testing.T) {
	for _, tt := range []struct {
		at       time.Time
		month    string
		resetsAt time.Time
	}{
		{t0, "2026-11", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)},
		{time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC), "2026-12", time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
		// 00:30 on Dec 1 in UTC+1 is still November in UTC.
		{time.Date(2026, 12, 1, 0, 30, 0, 0, time.FixedZone("CET", 3600)), "2026-11", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if got := Month(tt.at); got != tt.month {
			t.Errorf("Month(%s) = %s, want %s", tt.at, got, tt.month)
		}
		if got := MonthEnd(tt.at); !got.Equal(tt.resetsAt) {
			t.Errorf("MonthEnd(%s) = %s, want %s", tt.at, got, tt.resetsAt)
		}
	}
}

func TestMemoryForgetsDrainedKeys(t *testing.T) {
	m := NewMemory()
	c := Counter{Kind: Rate, Limit: 60, Period: time.Minute, Cost: 1}
	for i := range sweepEvery - 1 {
		c.Key = fmt.Sprint("k", i)
		if _, err := m.charge(context.Background(), t0, c); err != nil {
			t.Fatal(err)
		}
	}
	if len(m.tat) != sweepEvery-1 {
		t.Fatalf("%d keys tracked, want %d", len(m.tat), sweepEvery-1)
	}
	// A second later every bucket has drained: the next charge sweeps them.
	c.Key = "fresh"
	if _, err := m.charge(context.Background(), t0.Add(time.Second), c); err != nil {
		t.Fatal(err)
	}
	if len(m.tat) != 1 {
		t.Fatalf("%d keys tracked after the sweep, want 1", len(m.tat))
	}
}
