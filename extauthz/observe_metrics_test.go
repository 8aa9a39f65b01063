package extauthz

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keygate/keygate/policies"
)

// TestOpsMetricsSeries: decisions land in their series whether resolved
// before, resolved now, or past the bound on resolved series; no series
// appears that no decision made.
func TestOpsMetricsSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewOpsMetrics(reg)
	allow := Outcome{Transport: TransportGRPC, Duration: time.Millisecond,
		Result: Result{Decision: policies.Decision{Allow: true, Rule: "key_ok"}, Memo: "hit"}}
	for range 3 {
		m.Observe(allow)
	}
	deny := Outcome{Transport: TransportForwardAuth, Result: Result{Decision: policies.Decision{Code: "KEY_REVOKED", Rule: "revoked"}, Memo: "miss"}}
	m.Observe(deny)
	for i := range maxResolvedSeries + 10 { // past the bound
		m.Observe(Outcome{Transport: TransportGRPC, Result: Result{Decision: policies.Decision{Code: "C" + strconv.Itoa(i), Rule: "r"}}})
	}
	m.Observe(Outcome{Transport: TransportGRPC, Result: Result{Decision: policies.Decision{Code: "C5", Rule: "r"}}})
	m.Observe(Outcome{Transport: TransportGRPC, Result: Result{Decision: policies.Decision{Code: "C" + strconv.Itoa(maxResolvedSeries+5), Rule: "r"}}})
	for _, c := range []struct {
		got  prometheus.Collector
		want float64
	}{
		{m.decisions.WithLabelValues(TransportGRPC, "OK", "key_ok"), 3},
		{m.decisions.WithLabelValues(TransportForwardAuth, "KEY_REVOKED", "revoked"), 1},
		{m.decisions.WithLabelValues(TransportGRPC, "C5", "r"), 2},
		{m.decisions.WithLabelValues(TransportGRPC, "C"+strconv.Itoa(maxResolvedSeries+5), "r"), 2},
		{m.memo.WithLabelValues("hit"), 3},
		{m.memo.WithLabelValues("miss"), 1},
		{m.memo.WithLabelValues("off"), 0},
	} {
		if got := testutil.ToFloat64(c.got); got != c.want {
			t.Errorf("%v = %v, want %v", c.got.(prometheus.Metric).Desc(), got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.duration); n != 2 {
		t.Errorf("%d duration series, want 2 (the transports that decided)", n)
	}
	if n := m.resolved.decisions.n.Load(); n != maxResolvedSeries {
		t.Errorf("%d decision series resolved, bound is %d", n, maxResolvedSeries)
	}
}

// TestOpsMetricsConcurrent: decisions counted from many goroutines at once
// all land, and no more series are kept than the bound.
func TestOpsMetricsConcurrent(t *testing.T) {
	m := NewOpsMetrics(prometheus.NewRegistry())
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				code := "C" + strconv.Itoa(g*150+i) // goroutines overlap on half their codes
				m.Observe(Outcome{Transport: TransportGRPC, Result: Result{Decision: policies.Decision{Code: code, Rule: "r"}}})
			}
		}()
	}
	wg.Wait()
	if n := m.resolved.decisions.n.Load(); n > maxResolvedSeries {
		t.Errorf("%d decision series kept, bound is %d", n, maxResolvedSeries)
	}
	total := 0.0
	for i := range 7*150 + 300 {
		total += testutil.ToFloat64(m.decisions.WithLabelValues(TransportGRPC, "C"+strconv.Itoa(i), "r"))
	}
	if total != 8*300 {
		t.Errorf("%v decisions counted, want %d", total, 8*300)
	}
}
