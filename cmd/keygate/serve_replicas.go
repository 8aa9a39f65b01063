package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
)

// replicaConfig holds the serve settings for running several replicas over
// one store: outage tolerance, imported keys.
type replicaConfig struct {
	staleIfError time.Duration
	importedKeys bool
}

func (c *replicaConfig) register(fs *flagSet) {
	fs.DurationVar(&c.staleIfError, "stale-if-error", 60*time.Second,
		"while the store is unreachable, keep deciding cached keys for at most this long (0: until the cache TTL)")
	fs.BoolVar(&c.importedKeys, "imported-keys", false,
		"accept keys imported from an older system (any string): credentials that are not keygate keys are then looked up by digest instead of refused offline")
}

func (c replicaConfig) validate() error {
	if c.staleIfError < 0 || c.staleIfError > time.Hour {
		return fmt.Errorf("%w: --stale-if-error must be between 0 and 1h", errUsage)
	}
	return nil
}

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

// startAdmin serves the admin API when a token is set. It returns the bound
// address ("" when off) and a shutdown func.
func startAdmin(addr, token string, named map[string]string, store *keystore.Store, log *slog.Logger, errc chan<- error) (string, func(context.Context), error) {
	if token == "" && len(named) == 0 {
		return "", func(context.Context) {}, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("admin listener: %w", err)
	}
	hs := &http.Server{Handler: &admin.Handler{Store: store, Token: token, Tokens: named, Log: log},
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, MaxHeaderBytes: 64 << 10}
	go func() {
		if err := hs.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("admin: %w", err)
		}
	}()
	return lis.Addr().String(), func(ctx context.Context) { _ = hs.Shutdown(ctx) }, nil
}
