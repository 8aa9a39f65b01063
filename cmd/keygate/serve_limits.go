package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/limits"
)

// redisKeyPrefix namespaces keygate's counters in a Redis shared with
// other applications.
const redisKeyPrefix = "keygate:"

// newLimiter builds the rate-limit and quota counters: rates in Redis when
// --redis is set (shared by replicas), in-process otherwise; quotas in the
// store. The returned function closes the Redis client.
func newLimiter(ctx context.Context, cfg serveConfig, store *keystore.Store, log *slog.Logger, reg prometheus.Registerer) (*limits.Limiter, func(), error) {
	lc := limits.Config{Quotas: store, FailClosed: cfg.limitsFailClosed, Log: log, Registerer: reg}
	closer := func() {}
	if cfg.redis != "" {
		client, err := redisClient(cfg.redis)
		if err != nil {
			return nil, nil, err
		}
		closer = func() { _ = client.Close() }
		pingCtx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if err := client.Ping(pingCtx).Err(); err != nil {
			// Not fatal: the limiter falls back (or fails closed) per request
			// and picks Redis up when it answers.
			log.Warn("redis unreachable at start", "err", err)
		}
		lc.Redis = limits.NewRedis(client, redisKeyPrefix)
	}
	l, err := limits.New(lc)
	if err != nil {
		closer()
		return nil, nil, err
	}
	return l, closer, nil
}

// redisClient parses a redis:// URL. Timeouts are short unless the URL sets
// them: a rate-limit round trip must fit a decision's 150 ms budget, and a
// dead Redis must cost one short timeout, not the 5 s default.
func redisClient(url string) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		// url.Error quotes the whole URL, password included: keep only
		// what went wrong.
		var uerr *neturl.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("--redis: cannot use the URL: %v", err)
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 250 * time.Millisecond
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = 200 * time.Millisecond
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = 200 * time.Millisecond
	}
	// Retrying inside a decision would only spend its budget; the limiter
	// falls back instead.
	opts.MaxRetries = -1
	if opts.DialerRetries == 0 {
		opts.DialerRetries = 1
	}
	opts.ContextTimeoutEnabled = true
	return redis.NewClient(opts), nil
}
