package customer_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/customer"
)

// pairBench times foreign and missing alternately in every iteration (in
// turns first, so neither always runs on a warmer cache) and reports each
// one's median and the ratio of the medians. Interleaving matters on a
// shared machine: two sub-benchmarks run minutes apart would compare the
// machine's load, not the two paths. ns/op is the pair.
func pairBench(b *testing.B, foreign, missing func()) {
	var fd, md []time.Duration
	timed := func(fn func(), into *[]time.Duration) {
		start := time.Now()
		fn()
		*into = append(*into, time.Since(start))
	}
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			timed(foreign, &fd)
			timed(missing, &md)
		} else {
			timed(missing, &md)
			timed(foreign, &fd)
		}
	}
	f, m := median(fd), median(md)
	b.ReportMetric(float64(f.Nanoseconds()), "foreign-median-ns")
	b.ReportMetric(float64(m.Nanoseconds()), "missing-median-ns")
	b.ReportMetric(float64(f)/float64(m), "foreign/missing")
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// BenchmarkNotFound times the two answers the account boundary must not
// tell apart, through the whole handler: account A naming B's key or site
// (which exist, in another account) and naming a key id or site that does
// not exist. Both run the same steps: the session check, the account read,
// the write-rate charge, one ownership query that returns no row for
// either (keystore.AccountOwnsKey, or AccountOwnsSite for rotate-key and
// every ?site=), and the same 404 body.
//
// Run: go test -run '^$' -bench NotFound -benchtime 1000x -count 5 ./customer/
// (README "Let customers manage their keys" has the numbers.)
func BenchmarkNotFound(b *testing.B) {
	f := newFixture(b, func(h *customer.Handler) { h.WritesPerMinute = 1 << 40 })
	theirs := f.mustKey("site_b")
	auth := "Bearer " + f.token("acc_a", "owner")
	post := func(path string) func() {
		return func() {
			req := httptest.NewRequest(http.MethodPost, path, nil)
			req.Header.Set("Authorization", auth)
			rec := httptest.NewRecorder()
			f.mux.ServeHTTP(rec, req)
			if rec.Code != http.StatusNotFound {
				b.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
			}
		}
	}
	b.Run("revoke", func(b *testing.B) {
		pairBench(b, post("/v1/api-keys/"+theirs.ID+"/revoke"), post("/v1/api-keys/key_doesnotexist12345678/revoke"))
	})
	b.Run("rotate", func(b *testing.B) {
		pairBench(b, post("/v1/sites/site_b/rotate-key"), post("/v1/sites/site_q/rotate-key"))
	})
}

// BenchmarkNotFoundQuery times only the store reads: the ownership
// queries the handler makes (owns/key, owns/site), and for comparison the
// read-then-compare the handler made before (read/key: LookupKeyID, whose
// join finds, scans and parses B's row but nothing for a missing id;
// read/site: Store.Site).
func BenchmarkNotFoundQuery(b *testing.B) {
	f := newFixture(b, nil)
	theirs := f.mustKey("site_b")
	ctx := b.Context()
	const missingKey = "key_doesnotexist12345678"
	b.Run("owns/key", func(b *testing.B) {
		pairBench(b, func() { _ = f.store.AccountOwnsKey(ctx, "acc_a", theirs.ID) },
			func() { _ = f.store.AccountOwnsKey(ctx, "acc_a", missingKey) })
	})
	b.Run("owns/site", func(b *testing.B) {
		pairBench(b, func() { _ = f.store.AccountOwnsSite(ctx, "acc_a", "site_b") },
			func() { _ = f.store.AccountOwnsSite(ctx, "acc_a", "site_q") })
	})
	b.Run("read/key", func(b *testing.B) {
		pairBench(b, func() { _, _ = f.store.LookupKeyID(ctx, theirs.ID) },
			func() { _, _ = f.store.LookupKeyID(ctx, missingKey) })
	})
	b.Run("read/site", func(b *testing.B) {
		pairBench(b, func() { _, _ = f.store.Site(ctx, "site_b") }, func() { _, _ = f.store.Site(ctx, "site_q") })
	})
}
