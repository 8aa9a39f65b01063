package keystore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testclock"
	"github.com/keygate/keygate/keystore"
)

// BenchmarkChargeQuota is one metered request's quota charge on SQLite, in
// the realistic workload's shape: the counters of 100 sites, every charge
// allowed, under a context with a deadline as a Check's is.
func BenchmarkChargeQuota(b *testing.B) {
	s := benchQuotaStore(b)
	counters := quotaCounters(100)
	at := time.Date(2026, 11, 3, 4, 5, 6, 0, time.UTC)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, ok, err := s.ChargeQuota(ctx, counters[i%len(counters)], "2026-11", 1, 1<<40, at); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkChargeQuotaParallel is concurrent charges, as a loaded server
// makes them.
func BenchmarkChargeQuotaParallel(b *testing.B) {
	s := benchQuotaStore(b)
	counters := quotaCounters(100)
	at := time.Date(2026, 11, 3, 4, 5, 6, 0, time.UTC)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	b.ReportAllocs()
	b.SetParallelism(2) // 2×GOMAXPROCS goroutines: a server's concurrent Checks
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, ok, err := s.ChargeQuota(ctx, counters[i%len(counters)], "2026-11", 1, 1<<40, at); err != nil || !ok {
				b.Error(ok, err)
				return
			}
		}
	})
}

func quotaCounters(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("site:site_%03d:live", i)
	}
	return out
}

func benchQuotaStore(b *testing.B) *keystore.Store {
	b.Helper()
	f, _ := keystore.NewFormat("kg")
	d, err := keystore.NewDigester([]byte("pepper-one-0123456789"))
	if err != nil {
		b.Fatal(err)
	}
	c := testclock.New(time.Date(2026, 11, 3, 4, 5, 6, 0, time.UTC))
	s, err := keystore.Open(context.Background(), "sqlite:"+filepath.Join(b.TempDir(), "q.db"), keystore.Options{Format: f, Digester: d, Now: c.Now})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}
