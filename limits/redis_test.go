package limits

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/redistest"
)

// Two replicas (two limiters, each with its own connection pool) sharing
// one Redis let exactly the limit through a concurrent burst.
func TestRedisBurstAcrossReplicasLetsExactlyLimitThrough(t *testing.T) {
	c1, prefix := redistest.Client(t)
	c2, _ := redistest.Client(t)
	const n = 25
	replicas := make([]*Limiter, 2)
	for i, c := range []*redis.Client{c1, c2} {
		replicas[i], _ = newLimiter(t, Config{Redis: NewRedis(c, prefix)})
	}
	rate := Counter{Kind: Rate, Key: "key:k1:live", Limit: n, Period: time.Hour, Cost: 1}
	var allowed, refused atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n + 10 {
		wg.Go(func() {
			<-start
			out, err := replicas[i%2].Charge(context.Background(), time.Now(), []Counter{rate})
			switch {
			case err != nil:
				t.Error(err)
			case out.Denied == nil:
				allowed.Add(1)
			default:
				refused.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if allowed.Load() != n || refused.Load() != 10 {
		t.Fatalf("allowed %d, refused %d; want %d and 10", allowed.Load(), refused.Load(), n)
	}
	for _, l := range replicas {
		if l.redis.degraded.Load() {
			t.Fatal("a replica fell back to in-process counters: the test did not count in Redis")
		}
	}
}

// Redis and the in-process fallback answer the same for the same history.
func TestRedisMatchesMemory(t *testing.T) {
	client, prefix := redistest.Client(t)
	shared := NewRedis(client, prefix)
	local := NewMemory()
	c := Counter{Kind: Rate, Key: "key:k2:test", Limit: 4, Burst: 3, Period: time.Hour, Cost: 1}
	now := time.Now()
	for i := range 5 {
		got, err := shared.charge(context.Background(), now, c)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := local.charge(context.Background(), now, c)
		if got.Allowed != want.Allowed || got.Remaining != want.Remaining {
			t.Errorf("charge %d: redis allowed=%t remaining=%d, memory allowed=%t remaining=%d",
				i, got.Allowed, got.Remaining, want.Allowed, want.Remaining)
		}
		// Both clocks moved on a little; the durations agree to the second.
		if d := got.ResetAfter - want.ResetAfter; d > time.Second || d < -time.Second {
			t.Errorf("charge %d: reset after %s vs %s", i, got.ResetAfter, want.ResetAfter)
		}
	}
}

// BenchmarkCharge is one rate charge in-process and in Redis (one EVALSHA
// round trip over loopback).
func BenchmarkCharge(b *testing.B) {
	c := Counter{Kind: Rate, Key: "key:bench:live", Limit: 1_000_000_000, Period: time.Minute, Cost: 1}
	b.Run("in-process", func(b *testing.B) {
		m := NewMemory()
		b.ReportAllocs()
		for b.Loop() {
			if r, err := m.charge(context.Background(), time.Now(), c); err != nil || !r.Allowed {
				b.Fatal(r, err)
			}
		}
	})
	b.Run("redis", func(b *testing.B) {
		client, prefix := redistest.Client(b)
		r := NewRedis(client, prefix)
		b.ReportAllocs()
		for b.Loop() {
			if res, err := r.charge(context.Background(), time.Now(), c); err != nil || !res.Allowed {
				b.Fatal(res, err)
			}
		}
	})
}
