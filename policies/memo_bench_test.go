package policies

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkMemoKeys decides requests from N distinct keys in turn, as
// traffic with tens of thousands of active keys does: each key is decided
// once before the timer starts, then every decision is a memo hit if the
// memo held them all. It reports the hit ratio of the timed decisions, the
// heap held per memo entry and how many distinct decisions the entries
// hold.
func BenchmarkMemoKeys(b *testing.B) {
	for _, n := range []int{1_000, 20_000, 100_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			e := engineFor(b, Default())
			ins := distinctKeyInputs(n)
			ctx := context.Background()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for _, in := range ins {
				d, err := e.Decide(ctx, in)
				if err != nil || !d.Allow {
					b.Fatal(d, err)
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			distinct := map[string]bool{} // counted after the heap was read
			for _, in := range ins {
				d, _ := e.Decide(ctx, in)
				distinct[fmt.Sprint(d)] = true
			}
			held, estimated := memoLen(e.Current().memo), memoBytes(e.Current().memo)
			start := e.MemoStats()
			benchDecideEach(b, e, func(i int) *Input { return ins[i%len(ins)] })
			end := e.MemoStats()
			hits := end.Hits - start.Hits
			b.ReportMetric(float64(hits)/float64(hits+end.Misses-start.Misses), "hit-ratio")
			// After the loop: b.Loop's reset drops metrics reported before it.
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(held), "B/entry")
			b.ReportMetric(float64(estimated)/float64(held), "est-B/entry")
			b.ReportMetric(float64(held), "entries")
			b.ReportMetric(float64(len(distinct)), "decisions")
		})
	}
}

// distinctKeyInputs are n inputs of n keys over 500 sites, shaped as
// extauthz builds them for a key route with an id in the path. Each key has
// a rate of its own: keys with the same facts share one memo entry (the
// built-in policy reads no id), these share none.
func distinctKeyInputs(n int) []*Input {
	ins := make([]*Input, n)
	for i := range ins {
		in := proInput()
		site := strconv.Itoa(i % 500)
		in.Request.Path = "/v1/videos/vid_" + strconv.Itoa(i)
		in.Key = &Key{ID: fmt.Sprintf("key_%020d", i), Mode: "live", Name: "key " + strconv.Itoa(i),
			Limits: map[string]int64{"rate": int64(1000 + i)}}
		in.Site = &Site{ID: "site_" + site, Account: "acct_" + site, Domains: []string{"s" + site + ".example.com"}, Active: true}
		in.Account = &Account{ID: "acct_" + site, Plan: "pro", Status: "active"}
		ins[i] = in
	}
	return ins
}

// BenchmarkMemoEvictHot puts a new entry into a full memo (~25,000
// entries) every entry of which was hit since the CLOCK hand last passed,
// as a working set larger than the budget leaves it, while a reader looks
// entries up: the put evicts under the write lock every lookup waits for.
// put-µs is one such put, timed apart from the marking before it (on a
// busy machine mostly the wait for a descheduled reader's read lock);
// swept/put the entries the put's eviction passed (unmarked after it).
func BenchmarkMemoEvictHot(b *testing.B) {
	t := &memoTable{budget: 10 << 20}
	var ks [][]byte
	for i := 0; ; i++ {
		k := memoKey(i).key
		t.add(k, keyedDecision(i))
		if n, _, _ := t.stats(); n == len(ks) {
			break
		}
		ks = append(ks, k)
	}
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; !stop.Load(); i++ {
			t.lookup(ks[i%len(ks)])
		}
	}()
	var put time.Duration
	swept := 0
	i := 0
	for b.Loop() {
		for _, k := range ks {
			t.lookup(k)
		}
		k, d := memoKey(len(ks)+i).key, keyedDecision(i)
		t0 := time.Now()
		t.add(k, d)
		put += time.Since(t0)
		i++
		for j := range t.slots {
			if t.slots[j].size != 0 && !t.slots[j].used.Load() {
				swept++
			}
		}
	}
	stop.Store(true)
	<-done
	b.ReportMetric(float64(put.Microseconds())/float64(i), "put-µs")
	b.ReportMetric(float64(swept)/float64(i), "swept/put")
	b.ReportMetric(float64(len(ks)), "entries")
}
