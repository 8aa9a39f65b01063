package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/keygate/keygate/decisionlog"
	"github.com/keygate/keygate/extauthz"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
	"github.com/keygate/keygate/shadow"
)

// opsFlags are the operations settings of `keygate serve`: decision log,
// tracing. (Probes and metrics need no flag.)
type opsFlags struct {
	decisionLog       string
	decisionLogSample float64
	otlpEndpoint      string
}

func (o *opsFlags) register(fs *flagSet) {
	fs.StringVar(&o.decisionLog, "decision-log", "", "write one JSON line per decision to this file (- for stdout; SIGHUP reopens it)")
	fs.Float64Var(&o.decisionLogSample, "decision-log-sample", 1, "share of allows written to the decision log, 0 to 1 (denies are always written)")
	fs.StringVar(&o.otlpEndpoint, "otlp-endpoint", "", "send OpenTelemetry traces over OTLP/gRPC to host:port (OTEL_EXPORTER_OTLP_* and OTEL_SERVICE_NAME are honoured; off without it)")
}

func (o *opsFlags) validate() error {
	if o.decisionLogSample < 0 || o.decisionLogSample > 1 {
		return fmt.Errorf("%w: --decision-log-sample must be between 0 and 1", errUsage)
	}
	return nil
}

// startOps turns on what the flags ask for on authz: the decision log and
// the metrics every decision feeds, tracing. It returns a func that
// flushes and closes them (after the listeners stopped).
func (o *opsFlags) startOps(ctx context.Context, authz *extauthz.Authorizer, format keystore.Format, shadowEval *shadow.Evaluator, reg prometheus.Registerer, log *slog.Logger) (func(), error) {
	observers := extauthz.Observers{extauthz.NewOpsMetrics(reg)}
	// The decision log and the shadow policy read the input's headers;
	// without them, a policy that never reads headers is given none.
	authz.DropUnreadHeaders = o.decisionLog == "" && shadowEval == nil
	var logged extauthz.Observer // the decision log, when on
	var closers []func()
	if o.decisionLog != "" {
		p := format.Prefix
		dl, err := decisionlog.New(decisionlog.Config{Path: o.decisionLog, SampleAllows: o.decisionLogSample, Log: log,
			Secrets: []string{p + "_live_", p + "_test_", p + "_at_", p + "_rt_"}}, reg)
		if err != nil {
			return nil, err
		}
		logged = dl
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case <-hup:
					if err := dl.Reopen(); err != nil {
						log.Error("decision log: reopen failed", "err", err)
					} else {
						log.Info("decision log reopened", "path", o.decisionLog)
					}
				case <-stop:
					return
				}
			}
		}()
		closers = append(closers, func() {
			signal.Stop(hup)
			close(stop)
			if err := dl.Close(); err != nil {
				log.Warn("decision log: close", "err", err)
			}
		})
	}
	switch {
	case shadowEval != nil:
		// The shadow policy answers before the decision log writes, so a
		// differing answer is on the decision's own line.
		observers = append(observers, shadowObserver{eval: shadowEval, next: logged})
	case logged != nil:
		observers = append(observers, logged)
	}
	authz.Observer = observers
	if o.otlpEndpoint != "" {
		tp, err := newTracerProvider(ctx, o.otlpEndpoint)
		if err != nil {
			return nil, err
		}
		authz.Tracer = extauthz.NewTracer(tp)
		closers = append(closers, func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := tp.Shutdown(sctx); err != nil {
				log.Warn("tracing: flushing spans failed", "err", err)
			}
		})
		log.Info("tracing on", "otlp_endpoint", o.otlpEndpoint)
	}
	return func() {
		for _, c := range closers {
			c()
		}
	}, nil
}

// newTracerProvider exports spans in batches over OTLP/gRPC. The exporter
// reads the standard OTEL_EXPORTER_OTLP_* variables (TLS, headers,
// timeout); without OTEL_EXPORTER_OTLP_INSECURE=false or a certificate the
// endpoint is plain gRPC, as collectors in the same pod or node are.
func newTracerProvider(ctx context.Context, endpoint string) (*sdktrace.TracerProvider, error) {
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(endpoint)}
	if os.Getenv("OTEL_EXPORTER_OTLP_INSECURE") != "false" && os.Getenv("OTEL_EXPORTER_OTLP_CERTIFICATE") == "" &&
		os.Getenv("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE") == "" {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", serviceName()), attribute.String("service.version", buildVersion())))
	if err != nil {
		res = resource.Default()
	}
	// ParentBased(AlwaysSample) by default, so Envoy's sampling decision in
	// traceparent is followed; OTEL_TRACES_SAMPLER overrides it.
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

func serviceName() string {
	if n := os.Getenv("OTEL_SERVICE_NAME"); n != "" {
		return n
	}
	return "keygate"
}

// buildVersion is the module version the binary was built from.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// registerBuildInfo exports keygate_build_info{version,revision,go_version}
// 1, made at the first scrape (lazyCollector).
func registerBuildInfo(reg prometheus.Registerer) {
	reg.MustRegister(&lazyCollector{make: buildInfo})
}

func buildInfo() prometheus.Collector {
	version, revision, goVersion := "(devel)", "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "keygate_build_info", Help: "Always 1; the labels say which build runs.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "go_version": goVersion}})
	g.Set(1)
	return g
}

// storeMetrics time the cache's reads from the store (its misses): the
// store lookups, their errors (not-found is an answer, not an error) and
// latency. It wraps the store as the cache's Loader.
type storeMetrics struct {
	keystore.Loader
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
}

func newStoreMetrics(l keystore.Loader) *storeMetrics {
	return &storeMetrics{Loader: l,
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "keygate_store_lookup_duration_seconds",
			Help:    "Time of the store reads behind cache misses, by what was looked up (key, key_id, site).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}}, []string{"kind"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keygate_store_lookup_errors_total",
			Help: "Store reads behind cache misses that failed (store unreachable or broken), by kind."}, []string{"kind"}),
	}
}

func (m *storeMetrics) register(reg prometheus.Registerer) {
	reg.MustRegister(m.duration, m.errors)
	for _, k := range []string{"key", "key_id", "site"} {
		m.errors.WithLabelValues(k)
	}
}

func (m *storeMetrics) observe(kind string, start time.Time, err error) {
	m.duration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, keystore.ErrNotFound) {
		m.errors.WithLabelValues(kind).Inc()
	}
}

func (m *storeMetrics) LookupKey(ctx context.Context, digests []keystore.Digest) (keystore.KeyFacts, error) {
	start := time.Now()
	f, err := m.Loader.LookupKey(ctx, digests)
	m.observe("key", start, err)
	return f, err
}

func (m *storeMetrics) LookupKeyID(ctx context.Context, id string) (keystore.KeyFacts, error) {
	start := time.Now()
	f, err := m.Loader.LookupKeyID(ctx, id)
	m.observe("key_id", start, err)
	return f, err
}

func (m *storeMetrics) LookupSite(ctx context.Context, id string) (keystore.SiteFacts, error) {
	start := time.Now()
	f, err := m.Loader.LookupSite(ctx, id)
	m.observe("site", start, err)
	return f, err
}

// readiness answers /readyz and the gRPC health service: ready when a
// policy is loaded and keygate can decide, i.e. the store answers or the
// cache holds keys it may serve (stale-if-error) while the store is down.
type readiness struct {
	store  interface{ Ping(context.Context) error }
	engine *policies.Engine
	cache  *keystore.Cache
	// served, when set, is closed the first time follow reports SERVING:
	// start-up work that no decision waits for starts then (serve_start.go).
	served chan struct{}
	// onServed, when set, runs just before served is closed.
	onServed func()
	// afterFirst, when set, runs once after the first round, whatever it
	// found (after onServed when that round found keygate ready): serve
	// ends its start-up pause of the collector there, so that neither the
	// collection the pause held off nor the collector's first read of its
	// own metrics (runtime/metrics' set-up, ~1.5 M instructions) comes
	// before the first SERVING, and a store down at start-up does not keep
	// the pause on.
	afterFirst func()
}

func (r readiness) check(ctx context.Context) (bool, map[string]string) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	out := map[string]string{"policy": "loaded", "store": "ok"}
	policyOK := r.engine.Current() != nil
	if !policyOK {
		out["policy"] = "none"
	}
	storeOK := r.store.Ping(ctx) == nil
	if !storeOK {
		out["store"] = "unavailable"
		if hits, _ := r.cache.Stats(); hits > 0 {
			out["cache"] = "warm"
			storeOK = true
		}
	}
	return policyOK && storeOK, out
}

// register adds /livez and /readyz to mux.
func (r readiness) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("content-type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, req *http.Request) {
		ok, body := r.check(req.Context())
		status := http.StatusOK
		body["status"] = "ready"
		if !ok {
			status = http.StatusServiceUnavailable
			body["status"] = "not ready"
		}
		w.Header().Set("content-type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
	})
}

// registerHealth adds srv's services to g with the health service NOT
// SERVING: follow's first round reports SERVING once the policy and the
// store are ready (extauthz's Register alone reports SERVING at once, so a
// health check between Serve and that round saw SERVING with the store
// not yet pinged).
func registerHealth(srv *extauthz.Server, g *grpc.Server) *health.Server {
	hs := srv.Register(g)
	setServing(hs, healthpb.HealthCheckResponse_NOT_SERVING)
	return hs
}

func setServing(hs *health.Server, status healthpb.HealthCheckResponse_ServingStatus) {
	hs.SetServingStatus("", status)
	hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, status)
}

// follow keeps the gRPC health service in step with readiness, so Envoy's
// and Kubernetes' gRPC health checks see what /readyz says.
func (r readiness) follow(ctx context.Context, hs *health.Server, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	last := healthpb.HealthCheckResponse_UNKNOWN // set on the first round
	for {
		ok, _ := r.check(ctx)
		status := healthpb.HealthCheckResponse_SERVING
		if !ok {
			status = healthpb.HealthCheckResponse_NOT_SERVING
		}
		if status != last {
			setServing(hs, status)
			if status == healthpb.HealthCheckResponse_SERVING && r.served != nil {
				if r.onServed != nil {
					r.onServed()
				}
				close(r.served)
				r.served = nil
			}
			last = status
		}
		if r.afterFirst != nil {
			r.afterFirst()
			r.afterFirst = nil
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
