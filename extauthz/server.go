package extauthz

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
)

// Metrics are the authorizer's Prometheus collectors.
type Metrics struct {
	decisions *prometheus.CounterVec
	// allowed is decisions' OK counter, resolved once: most decisions are
	// allows, and resolving a label hashes it on every one.
	allowed  prometheus.Counter
	duration prometheus.Histogram
}

// NewMetrics registers the collectors with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_decisions_total", Help: "Decisions by outcome code (OK for allows).",
		}, []string{"code"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "keygate_check_duration_seconds", Help: "Time to decide one request.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}),
	}
	m.allowed = m.decisions.WithLabelValues("OK")
	reg.MustRegister(m.decisions, m.duration)
	return m
}

func (m *Metrics) observe(r Result, took time.Duration) {
	if m == nil {
		return
	}
	if r.Decision.Allow {
		m.allowed.Inc()
	} else {
		m.decisions.WithLabelValues(r.Decision.Code).Inc()
	}
	m.duration.Observe(took.Seconds())
}

// Server is the envoy.service.auth.v3.Authorization gRPC service.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	Authorizer *Authorizer
	Metrics    *Metrics
	Log        *slog.Logger

	// templates are the allows' shared upstream headers and response
	// messages (response_template.go), made on first use.
	templates atomic.Pointer[allowTemplates]
}

// Check answers Envoy. It never returns an error: Envoy treats gRPC errors
// as "authz failed", which failure_mode_allow would turn into an allow.
//
// Its time is the outcome's (begin to finish): one clock read each end
// serves the metrics, the decision log and the trace.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (resp *authv3.CheckResponse, _ error) {
	defer func() {
		if p := recover(); p != nil {
			s.Log.Error("panic in Check; denying", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			resp = panicResult(s.Authorizer.policy()).CheckResponse()
		}
	}()
	attrs := req.GetAttributes()
	cs := new(checkState)
	ctx, o := s.Authorizer.beginWith(ctx, TransportGRPC, propagation.MapCarrier(attrs.GetRequest().GetHttp().GetHeaders()), &cs.id)
	o.Client = attrs.GetSource().GetAddress().GetSocketAddress().GetAddress()
	res := func() (res Result) {
		defer func() {
			if p := recover(); p != nil {
				s.Log.Error("panic in Check; denying", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				res = panicResult(s.Authorizer.policy())
			}
		}()
		r, ec := envoyRequest(req, s.allowTemplates())
		ec.state = &cs.req
		return s.Authorizer.authorize(ctx, s.Authorizer.policy(), r, &ec, o.Start)
	}()
	s.Authorizer.finish(&o, &res)
	s.Metrics.observe(res, o.Duration)
	return s.checkResponse(res, &cs.resp), nil
}

// panicResult is the deny for a request whose decision panicked, shaped by
// pol's denials table.
func panicResult(pol Decider) Result {
	return Result{Decision: Deny(pol, denyInternal, "panic")}
}

// Register adds the authorization, health and reflection services to g.
// The health service reports SERVING until the caller marks it otherwise.
func (s *Server) Register(g *grpc.Server) *health.Server {
	authv3.RegisterAuthorizationServer(g, s)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	reflection.Register(g)
	return hs
}
