package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/keygate/keygate/extauthz"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
	"github.com/keygate/keygate/secretscan"
	"github.com/keygate/keygate/shadow"
)

// serveConfig is every setting of `keygate serve`, registered in one place
// (register) and validated once (validate). A new serve flag is one field
// here and one line in register.
type serveConfig struct {
	coreConfig
	tokenFlags
	webhookFlags
	customerFlags
	opsFlags
	shadowConfig
	logFlags
	grpcAddr, httpAddr, adminAddr string
	redis                         string
	adminToken                    string            // KEYGATE_ADMIN_TOKEN, never a flag
	adminTokens                   map[string]string // KEYGATE_ADMIN_TOKENS: named tokens, for the audit trail
	pollInterval                  time.Duration
	demo                          bool
	decisionMemo                  bool
	limitsFailClosed              bool
}

func (c *serveConfig) register(fs *flagSet) {
	c.coreConfig.register(fs)
	c.tokenFlags.register(fs)
	c.webhookFlags.register(fs)
	c.customerFlags.register(fs)
	c.opsFlags.register(fs)
	c.shadowConfig.register(fs)
	c.logFlags.register(fs)
	fs.StringVar(&c.grpcAddr, "grpc-addr", ":9191", "ext_authz gRPC listen address")
	fs.StringVar(&c.httpAddr, "http-addr", ":8080", "HTTP listen address: token endpoints, /health, /metrics, forward-auth")
	fs.StringVar(&c.adminAddr, "admin-addr", "127.0.0.1:8081", "admin API listen address (needs KEYGATE_ADMIN_TOKEN)")
	fs.StringVar(&c.redis, "redis", "", "redis://… for counters shared by replicas (default: in-process)")
	fs.DurationVar(&c.pollInterval, "change-poll", 200*time.Millisecond, "how often to poll the store's change log")
	fs.DurationVar(&c.staleIfError, "stale-if-error", 60*time.Second,
		"while the store is unreachable, keep deciding cached keys for at most this long (0: until the cache TTL)")
	fs.BoolVar(&c.demo, "demo", false, "seed a demo account and site, and print fresh demo keys")
	fs.BoolVar(&c.decisionMemo, "decision-memo", true, "remember decisions of deterministic policies by their input (off: evaluate every request)")
	fs.BoolVar(&c.limitsFailClosed, "limits-fail-closed", false, "refuse rate-limited and metered requests with 503 while Redis or the quota store is unreachable (default: count in-process / uncounted)")
}

func (c *serveConfig) validate(getenv func(string) string) error {
	c.adminToken = getenv("KEYGATE_ADMIN_TOKEN")
	var err error
	if c.adminTokens, err = adminTokens(getenv); err != nil {
		return err
	}
	if err := c.opsFlags.validate(); err != nil {
		return err
	}
	if err := c.shadowConfig.validate(); err != nil {
		return err
	}
	if err := c.tokenFlags.validate(); err != nil {
		return err
	}
	if err := c.webhookFlags.validate(); err != nil {
		return err
	}
	if err := c.customerFlags.validate(); err != nil {
		return err
	}
	switch {
	case c.staleIfError < 0 || c.staleIfError > time.Hour:
		return fmt.Errorf("%w: --stale-if-error must be between 0 and 1h", errUsage)
	case c.pollInterval < 10*time.Millisecond || c.pollInterval > time.Minute:
		return fmt.Errorf("%w: --change-poll must be between 10ms and 1m", errUsage)
	case c.adminToken != "" && len(c.adminToken) < 16:
		return fmt.Errorf("KEYGATE_ADMIN_TOKEN must be at least 16 characters (it is %d); use e.g. openssl rand -hex 32", len(c.adminToken))
	}
	return nil
}

// logFlags choose serve's log lines: format and least level.
type logFlags struct {
	logFormat, logLevel string
}

func (c *logFlags) register(fs *flagSet) {
	fs.StringVar(&c.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
}

// logger writes to w as the flags ask.
func (c *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("%w: --log-level: %v", errUsage, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("%w: --log-format %q: want text or json", errUsage, c.logFormat)
}

func (e *environment) serveCommand() *cobra.Command {
	var cfg serveConfig
	c, fs := e.newLeaf("serve", "run the ext_authz gRPC server, the HTTP endpoints and the admin API", e.noArgs,
		func(ctx context.Context, _ []string) error {
			if err := cfg.validate(e.getenv); err != nil {
				return err
			}
			return e.serve(ctx, cfg)
		})
	c.Long = `Run the ext_authz gRPC server (--grpc-addr), the HTTP endpoints (--http-addr:
token exchange, /health, /metrics, forward-auth) and, when KEYGATE_ADMIN_TOKEN
is set, the admin API (--admin-addr). serve is the only command that creates
a missing SQLite database.`
	cfg.register(fs)
	return c
}

// serve wires keygate in dependency order (core, change-log follower,
// counters, token exchange, listeners), then runs everything in one
// errgroup: the first listener to fail, or ctx ending, stops them all.
// Logs go to e.stderr.
func (e *environment) serve(ctx context.Context, cfg serveConfig) (err error) {
	log, stopPprof, err := cfg.diagnostics(e.stderr)
	if err != nil {
		return err
	}
	defer stopPprof()
	gc := pauseGC(e.getenv)
	defer gc.stop()
	follower := &keystore.Follower{Interval: cfg.pollInterval, Log: log}
	var storeMetrics *storeMetrics
	c, err := e.newCore(ctx, cfg.coreConfig, log, true, follower, func(l keystore.Loader) keystore.Loader {
		storeMetrics = newStoreMetrics(l)
		return storeMetrics
	})
	if err != nil {
		return err
	}
	defer closeInto(&err, c)
	if cfg.demo {
		if err := e.seedDemo(ctx, c.store); err != nil {
			return fmt.Errorf("demo data: %w", err)
		}
	}
	c.policy.engine.SetMemo(cfg.decisionMemo)

	reg := newRegistry(c.cache, c.filter)
	storeMetrics.register(reg)
	registerBuildInfo(reg)
	listen := followChanges(c.store, follower, c.cache, reg, log)
	c.policy.register(reg)
	usage := &keystore.Usage{Writer: c.store, Log: log}
	limiter, closeLimiter, err := newLimiter(ctx, cfg, c.store, log, reg)
	if err != nil {
		return err
	}
	defer closeLimiter()
	authz := c.authz
	authz.Usage, authz.Limits = usage, limiter
	authz.Uses = c.store // keys' remaining uses, spent after the limits (issue 15)
	keyring, exchange, err := cfg.tokenExchangeOrOff(ctx, c.store, c.format, authz, reg, log)
	if err != nil {
		return err
	}
	leaks, err := cfg.secretScanning(c.store, c.format, authz.Digester, keyring, log)
	if err != nil {
		return err
	}
	shadowEval, shadowPolicy := startShadow(ctx, cfg.shadowConfig, reg, log)
	closeOps, err := cfg.opsFlags.startOps(ctx, authz, c.format, shadowEval, reg, log)
	if err != nil {
		return err
	}
	defer closeOps()
	srv := &extauthz.Server{Authorizer: authz, Metrics: extauthz.NewMetrics(reg), Log: log}

	deep := &deepPool{}
	g := newGRPCServer(deep)
	grpcHealth := registerHealth(srv, g)
	ready := readiness{store: c.store, engine: c.policy.engine, cache: c.cache, served: make(chan struct{}), onServed: logServing(log),
		afterFirst: func() { gc.resume(log) }}
	mux := serveMux(ready, reg, healthHandler(c.store, c.policy, shadowEval), exchange, leaks)
	if err := cfg.customerAPI(ctx, mux, c.store, c.cache, limiter, c.policy.engine, log); err != nil {
		return err
	}
	// Forward-auth (nginx auth_request, Traefik/Caddy, Envoy http_service)
	// sees the raw request target, before the mux's path cleaning.
	forwardAuth := &extauthz.ForwardAuth{Authorizer: authz, Metrics: srv.Metrics, Log: log, Proxies: cfg.clientProxies()}
	listeners, err := cfg.listeners(c, g, newHTTPServer(deepHandler(deep, forwardAuth.Wrap(mux))), log)
	if err != nil {
		return err
	}
	runners := []func(context.Context){follower.Run, usage.Run, listen,
		afterServing(c.policy.completed, func(ctx context.Context) { loadKeyFilter(ctx, c.filter, log) }),
		func(ctx context.Context) { c.policy.run(ctx, ready.served) },
		func(ctx context.Context) { cfg.runKeyring(ctx, c.store, keyring, log) },
		afterServing(c.policy.completed, func(ctx context.Context) { cfg.runWebhooks(ctx, c.store, log) }),
		func(ctx context.Context) { ready.follow(ctx, grpcHealth, 2*time.Second) },
		func(ctx context.Context) { runShadow(ctx, shadowEval, shadowPolicy) }}
	return lifecycle(ctx, listeners, runners, log, "store", storeKind(cfg.store), "policy", c.policy.engine.Current().Bundle.Source)
}

// diagnostics is serve's logger and, when KEYGATE_PPROF_ADDR asks for it,
// the pprof listener (stop closes it).
func (cfg serveConfig) diagnostics(stderr io.Writer) (log *slog.Logger, stop func(), err error) {
	if log, err = cfg.logger(stderr); err != nil {
		return nil, nil, err
	}
	if stop, err = startPprof(log); err != nil {
		return nil, nil, err
	}
	return log, stop, nil
}

// newRegistry is the Prometheus registry with the process and cache metrics.
func newRegistry(cache *keystore.Cache, filter *keystore.KeyFilter) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&lazyCollector{make: func() prometheus.Collector { return collectors.NewGoCollector() }},
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keygate_cache_hits_total", Help: "Key and site facts served from the cache."},
			func() float64 { h, _ := cache.Stats(); return float64(h) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keygate_store_lookups_total", Help: "Key and site facts read from the store (cache misses the key filter let through)."},
			func() float64 { n, _ := filter.Stats(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keygate_key_filter_rejections_total", Help: "Key lookups answered 'no such key' by the key filter without a store read (or, before it is loaded, 'unavailable')."},
			func() float64 { _, n := filter.Stats(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keygate_key_filter_loaded", Help: "1 once the key filter has read every stored key digest (after start-up), else 0."},
			func() float64 {
				if filter.Loaded() {
					return 1
				}
				return 0
			}),
	)
	return reg
}

// lazyCollector makes its collector at the first scrape, not at Register:
// the Go collector's set-up (matching runtime/metrics' names against its
// rules, ~0.5 M instructions) and the build info's (parsing the binary's
// build information) are then not on the way to the first SERVING. It
// describes nothing, which makes it an unchecked collector: the registry
// checks its metrics at each Gather instead of at Register.
type lazyCollector struct {
	once sync.Once
	make func() prometheus.Collector
	c    prometheus.Collector
}

func (l *lazyCollector) Describe(chan<- *prometheus.Desc) {}

func (l *lazyCollector) Collect(ch chan<- prometheus.Metric) {
	l.once.Do(func() { l.c = l.make() })
	l.c.Collect(ch)
}

func healthHandler(store *keystore.Store, policy *policyRuntime, shadow *shadow.Evaluator) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		body := map[string]any{"status": "ok", "store": "ok", "policy": policy.engine.Current().Bundle.Source,
			"policy_reload": policy.status(), "policy_evaluator": policy.engine.Current().Evaluator()}
		if shadow != nil {
			body["shadow"] = shadow.Status()
		}
		if err := store.Ping(ctx); err != nil {
			body["status"], body["store"] = "degraded", "unavailable"
		}
		w.Header().Set("content-type", "application/json")
		_ = json.NewEncoder(w).Encode(body)
	}
}

// loadPolicy compiles the built-in policy or a directory.
func loadPolicy(ctx context.Context, dir string) (*policies.Policy, error) {
	b, err := loadBundle(dir)
	if err != nil {
		return nil, err
	}
	return policies.Compile(ctx, b)
}

// serveMux holds the HTTP listener's own routes: probes, metrics, health,
// the token exchange and the secret-scanning endpoint (nil: off).
func serveMux(ready readiness, reg *prometheus.Registry, health http.HandlerFunc, exchange *extauthz.Exchange, leaks http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	ready.register(mux)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /health", health)
	registerExchange(mux, exchange)
	if leaks != nil {
		mux.Handle("POST "+secretscan.GitHubPath, leaks)
	}
	return mux
}
