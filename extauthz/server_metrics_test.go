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

// TestCheckDurationIsTheOutcomes: keygate_check_duration_seconds observes
// the duration the decision log and the trace carry (Check reads the clock
// once at each end, not once more for the metric).
func TestCheckDurationIsTheOutcomes(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	f.server.Metrics = NewMetrics(reg)
	rec := &recorder{}
	f.server.Authorizer.Observer = rec
	f.server.Check(envoyContext(t), envoyCheckRequest("GET", "/v1/videos", typicalHeaders("Bearer "+f.live.Reveal()))) //nolint:errcheck // never fails
	o := rec.only(t)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "keygate_check_duration_seconds" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		if h.GetSampleCount() != 1 || h.GetSampleSum() != o.Duration.Seconds() {
			t.Errorf("observed %d, sum %v s; the outcome took %v s", h.GetSampleCount(), h.GetSampleSum(), o.Duration.Seconds())
		}
		return
	}
	t.Fatal("keygate_check_duration_seconds not gathered")
}
