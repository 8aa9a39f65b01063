package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/keystore"
)

// followChanges connects the follower to the store's notifications (when
// the store has them) and to the metrics: the propagation lag of every
// change applied, and the answers served stale during an outage. It returns
// the listener's runner, to be started with the follower.
func followChanges(store *keystore.Store, follower *keystore.Follower, cache *keystore.Cache, reg prometheus.Registerer, log *slog.Logger) func(ctx context.Context) {
	lag := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "keygate_change_propagation_seconds",
		Help:    "Time from a store write (its change-log time) to this replica's cache applying it.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	})
	reg.MustRegister(lag,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keygate_cache_stale_hits_total",
			Help: "Key and site facts served past their freshness because the store was unreachable."},
			func() float64 { return float64(cache.StaleHits()) }))
	follower.OnApplied = func(c keystore.Change) { lag.Observe(max(time.Since(c.At).Seconds(), 0)) }
	if !store.Notifies() {
		return func(context.Context) {}
	}
	wake := make(chan struct{}, 1)
	follower.Wake = wake
	return func(ctx context.Context) { store.Listen(ctx, wake, log) }
}
