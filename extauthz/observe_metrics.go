package extauthz

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// resolvedSeries are OpsMetrics' series kept once resolved: WithLabelValues
// validates and hashes every label value, byte by byte, under a lock, and
// every decision counted in three vectors. A series is resolved when it
// first occurs, so /metrics shows the series it showed before.
type resolvedSeries struct {
	// memo is filled in NewOpsMetrics (those series are present from the
	// start, so ratios are defined) and only read after.
	memo      map[string]prometheus.Counter
	decisions lazySeries[decisionLabels, prometheus.Counter]
	duration  lazySeries[string, prometheus.Observer]
}

type decisionLabels struct{ transport, code, rule string }

// resolveMemoSeries resolves the memo's series (m.resolved is not yet shared).
func (m *OpsMetrics) resolveMemoSeries() {
	m.resolved.memo = map[string]prometheus.Counter{}
	for _, res := range []string{"hit", "miss", "off"} {
		m.resolved.memo[res] = m.memo.WithLabelValues(res)
	}
}

func (m *OpsMetrics) decided(transport, code, rule string) prometheus.Counter {
	return m.resolved.decisions.get(decisionLabels{transport, code, rule}, func() prometheus.Counter {
		return m.decisions.WithLabelValues(transport, code, rule)
	})
}

func (m *OpsMetrics) memoResult(res string) prometheus.Counter {
	if c, ok := m.resolved.memo[res]; ok {
		return c
	}
	return m.memo.WithLabelValues(res)
}

func (m *OpsMetrics) took(transport string) prometheus.Observer {
	return m.resolved.duration.get(transport, func() prometheus.Observer { return m.duration.WithLabelValues(transport) })
}

// lazySeries remembers up to maxResolvedSeries series by their labels.
// Codes and rules come from the policy: the bound keeps an odd policy from
// growing the map without end; past it, every lookup resolves afresh.
type lazySeries[K comparable, V any] struct {
	m sync.Map // K → V
	n atomic.Int64
}

const maxResolvedSeries = 1024

func (l *lazySeries[K, V]) get(k K, resolve func() V) V {
	if v, ok := l.m.Load(k); ok {
		return v.(V)
	}
	v := resolve()
	// A place is taken before the series is stored, so that racing
	// decisions cannot store more than the bound.
	if l.n.Add(1) > maxResolvedSeries {
		l.n.Add(-1)
		return v
	}
	if _, loaded := l.m.LoadOrStore(k, v); loaded {
		l.n.Add(-1)
	}
	return v
}
