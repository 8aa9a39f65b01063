package extauthz

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keygate/keygate/policies"
)

// TestMetricsCountByCode: allows count under OK (a counter resolved once),
// denies under their code.
func TestMetricsCountByCode(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	m.observe(Result{Decision: policies.Decision{Allow: true, Code: "IGNORED"}}, 0)
	m.observe(Result{Decision: policies.Decision{Allow: true}}, 0)
	m.observe(Result{Decision: policies.Decision{Code: "RATE_LIMITED"}}, 0)
	for code, want := range map[string]float64{"OK": 2, "RATE_LIMITED": 1, "IGNORED": 0} {
		if got := testutil.ToFloat64(m.decisions.WithLabelValues(code)); got != want {
			t.Errorf("keygate_decisions_total{code=%q} = %v, want %v", code, got, want)
		}
	}
}
