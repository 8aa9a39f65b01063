package extauthz

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/policies"
)

// BenchmarkOpsMetricsObserve is what every served decision costs the
// operations metrics.
func BenchmarkOpsMetricsObserve(b *testing.B) {
	m := NewOpsMetrics(prometheus.NewRegistry())
	o := Outcome{Transport: TransportGRPC, Duration: 40 * time.Microsecond,
		Result: Result{Decision: policies.Decision{Allow: true, Rule: "site_key_allowed"}, Memo: "hit"}}
	b.ReportAllocs()
	for b.Loop() {
		m.Observe(o)
	}
}
