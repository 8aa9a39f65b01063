package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/keygate/keygate/extauthz"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
)

// serveConfig is every setting of `keygate serve`, parsed and validated once.
type serveConfig struct {
	storeFlags
	replicaConfig
	tokenFlags
	opsFlags
	grpcAddr, httpAddr, adminAddr string
	policies                      string
	redis                         string
	adminToken                    string
	adminTokens                   map[string]string
	logFormat, logLevel           string
	pollInterval                  time.Duration
	demo                          bool
	decisionMemo                  bool
	limitsFailClosed              bool
}

func (e environment) parseServe(args []string) (serveConfig, error) {
	var c serveConfig
	fs := e.flags("serve")
	c.storeFlags.register(fs)
	c.replicaConfig.register(fs)
	c.tokenFlags.register(fs)
	c.opsFlags.register(fs)
	fs.StringVar(&c.grpcAddr, "grpc-addr", ":9191", "ext_authz gRPC listen address")
	fs.StringVar(&c.httpAddr, "http-addr", ":8080", "HTTP listen address: token endpoints, /health, /metrics, forward-auth")
	fs.StringVar(&c.adminAddr, "admin-addr", "127.0.0.1:8081", "admin API listen address (needs KEYGATE_ADMIN_TOKEN)")
	fs.StringVar(&c.policies, "policies", "", "policy directory (default: the built-in policies)")
	fs.StringVar(&c.redis, "redis", "", "redis://… for counters shared by replicas (default: in-process)")
	fs.StringVar(&c.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&c.pollInterval, "change-poll", 200*time.Millisecond, "how often to poll the store's change log")
	fs.BoolVar(&c.demo, "demo", false, "seed a demo account and site, and print fresh demo keys")
	fs.BoolVar(&c.decisionMemo, "decision-memo", true, "remember decisions of deterministic policies by their input (off: evaluate every request)")
	fs.BoolVar(&c.limitsFailClosed, "limits-fail-closed", false, "refuse rate-limited and metered requests with 503 while Redis or the quota store is unreachable (default: count in-process / uncounted)")
	if _, err := fs.parse(args); err != nil {
		return c, err
	}
	c.adminToken = e.getenv("KEYGATE_ADMIN_TOKEN")
	var err error
	if c.adminTokens, err = adminTokens(e.getenv); err != nil {
		return c, err
	}
	if err := c.replicaConfig.validate(); err != nil {
		return c, err
	}
	if err := c.tokenFlags.validate(); err != nil {
		return c, err
	}
	if err := c.opsFlags.validate(); err != nil {
		return c, err
	}
	if c.pollInterval < 10*time.Millisecond || c.pollInterval > time.Minute {
		return c, fmt.Errorf("%w: --change-poll must be between 10ms and 1m", errUsage)
	}
	if c.adminToken != "" && len(c.adminToken) < 16 {
		return c, fmt.Errorf("KEYGATE_ADMIN_TOKEN must be at least 16 characters")
	}
	return c, nil
}

func (c serveConfig) logger(w *os.File) (*slog.Logger, error) {
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
	return nil, fmt.Errorf("%w: --log-format: want text or json", errUsage)
}

// serve wires keygate in dependency order: store, cache, change-log
// follower, policy, authorizer, then the listeners; it stops in reverse.
func (e environment) serve(ctx context.Context, args []string) (err error) {
	cfg, err := e.parseServe(args)
	if err != nil {
		return err
	}
	logOut := os.Stderr
	if f, ok := e.stderr.(*os.File); ok {
		logOut = f
	}
	log, err := cfg.logger(logOut)
	if err != nil {
		return err
	}
	format, digester, err := e.keyTools(cfg.storeFlags)
	if err != nil {
		return err
	}
	store, err := keystore.Open(ctx, cfg.store, keystore.Options{Format: format, Digester: digester})
	if err != nil {
		return err
	}
	defer closeInto(&err, store)

	if cfg.demo {
		if err := e.seedDemo(ctx, store); err != nil {
			return fmt.Errorf("demo data: %w", err)
		}
	}

	storeMetrics := newStoreMetrics(store)
	cache, err := keystore.NewCache(storeMetrics, keystore.CacheConfig{StaleIfError: cfg.staleIfError})
	if err != nil {
		return err
	}
	defer cache.Close()
	follower := &keystore.Follower{Source: store, Cache: cache, Interval: cfg.pollInterval, Log: log}
	if err := follower.Start(ctx); err != nil {
		return fmt.Errorf("reading the change log: %w", err)
	}

	policy, err := startPolicy(ctx, cfg.policies, log)
	if err != nil {
		return err
	}
	policy.engine.SetMemo(cfg.decisionMemo)
	engine := policy.engine

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keygate_cache_hits_total", Help: "Key and site facts served from the cache."},
			func() float64 { h, _ := cache.Stats(); return float64(h) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keygate_store_lookups_total", Help: "Key and site facts read from the store (cache misses)."},
			func() float64 { _, m := cache.Stats(); return float64(m) }),
	)
	storeMetrics.register(reg)
	registerBuildInfo(reg)
	listen := followChanges(store, follower, cache, reg, log)
	policy.register(reg)
	usage := &keystore.Usage{Writer: store, Log: log}
	limiter, closeLimiter, err := newLimiter(ctx, cfg, store, log, reg)
	if err != nil {
		return err
	}
	defer closeLimiter()
	authz := &extauthz.Authorizer{Facts: cache, Policy: engine, Format: format, Digester: digester, Log: log, Usage: usage,
		ImportedKeys: cfg.importedKeys, Limits: limiter}
	keyring, exchange, err := cfg.tokenExchange(ctx, store, format, authz, reg)
	if err != nil {
		return err
	}
	authz.Tokens = keyring
	closeOps, err := cfg.opsFlags.startOps(ctx, authz, format, reg, log)
	if err != nil {
		return err
	}
	defer closeOps()
	srv := &extauthz.Server{Authorizer: authz, Metrics: extauthz.NewMetrics(reg), Log: log}

	grpcLis, err := net.Listen("tcp", cfg.grpcAddr)
	if err != nil {
		return fmt.Errorf("grpc listener: %w", err)
	}
	httpLis, err := net.Listen("tcp", cfg.httpAddr)
	if err != nil {
		grpcLis.Close()
		return fmt.Errorf("http listener: %w", err)
	}
	g := grpc.NewServer(
		grpc.MaxRecvMsgSize(4<<20),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second}),
	)
	grpcHealth := srv.Register(g)
	ready := readiness{store: store, engine: engine, cache: cache}
	mux := http.NewServeMux()
	ready.register(mux)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /health", healthHandler(store, engine, policy))
	exchange.Register(mux)
	// Forward-auth (nginx auth_request, Traefik/Caddy, Envoy http_service)
	// sees the raw request target, before the mux's path cleaning.
	forwardAuth := &extauthz.ForwardAuth{Authorizer: authz, Metrics: srv.Metrics, Log: log}
	// Bodies are small (token exchange ≤ 4 KiB, forward-auth none): a client
	// that trickles one in is cut off rather than holding a connection.
	hs := &http.Server{Handler: forwardAuth.Wrap(mux), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	adminAddr, stopAdmin, err := startAdmin(cfg.adminAddr, cfg.adminToken, cfg.adminTokens, store, log, errc)
	if err != nil {
		grpcLis.Close()
		httpLis.Close()
		return err
	}
	done := make(chan struct{}, 6)
	go func() { ready.follow(runCtx, grpcHealth, 2*time.Second); done <- struct{}{} }()
	go func() { follower.Run(runCtx); done <- struct{}{} }()
	go func() { usage.Run(runCtx); done <- struct{}{} }()
	go func() { listen(runCtx); done <- struct{}{} }()
	go func() { policy.run(runCtx); done <- struct{}{} }()
	go func() { cfg.runKeyring(runCtx, store, keyring, log); done <- struct{}{} }()
	go func() { errc <- g.Serve(grpcLis) }()
	go func() {
		if err := hs.Serve(httpLis); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	if cfg.adminToken == "" && len(cfg.adminTokens) == 0 {
		log.Info("admin API off: set KEYGATE_ADMIN_TOKEN (or KEYGATE_ADMIN_TOKENS) to enable it")
	}
	serving := []any{"grpc", grpcLis.Addr().String(), "http", httpLis.Addr().String()}
	if adminAddr != "" {
		serving = append(serving, "admin", adminAddr)
	}
	log.Info("keygate serving", append(serving, "store", storeKind(cfg.store), "policy", engine.Current().Bundle.Source)...)

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err = <-errc:
		log.Error("listener failed", "err", err)
	}
	shutdownCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer stop()
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-shutdownCtx.Done():
		g.Stop()
	}
	_ = hs.Shutdown(shutdownCtx)
	stopAdmin(shutdownCtx)
	cancel()
	for range 6 { // readiness, follower, usage, change listener, policy reload, keyring
		<-done
	}
	return err
}

// storeKind names the store without its credentials.
func storeKind(dsn string) string {
	if len(dsn) >= 7 && dsn[:7] == "sqlite:" {
		return dsn
	}
	return "postgres"
}

// loadPolicy compiles the built-in policy or a directory.
func loadPolicy(ctx context.Context, dir string) (*policies.Policy, error) {
	b, err := loadBundle(dir)
	if err != nil {
		return nil, err
	}
	return policies.Compile(ctx, b)
}

func healthHandler(store *keystore.Store, engine *policies.Engine, policy *policyRuntime) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		body := map[string]any{"status": "ok", "store": "ok", "policy": engine.Current().Bundle.Source,
			"policy_reload": policy.status()}
		if err := store.Ping(ctx); err != nil {
			body["status"], body["store"] = "degraded", "unavailable"
		}
		w.Header().Set("content-type", "application/json")
		_ = json.NewEncoder(w).Encode(body)
	}
}
