package extauthz

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/keygate/keygate/policies"
)

// HeaderDecisionID carries a decision's id: to the client on a deny, to the
// upstream on an allow. The same id is in the decision log and the trace,
// so support staff can find the one line behind a refusal a customer saw.
const HeaderDecisionID = "x-keygate-decision-id"

// Transports name where a decision was asked for, in logs and metrics.
const (
	TransportGRPC         = "grpc"
	TransportEnvoyHTTP    = "envoy_http"
	TransportNginx        = "nginx"
	TransportForwardAuth  = "forward_auth"
	TransportTokenAPIKey  = "token_api_key"
	TransportTokenRefresh = "token_refresh"
)

// Outcome is one final decision as a transport answered it: what the
// decision log writes and the metrics count. Every transport produces
// exactly one per request, through Authorizer.begin and Authorizer.finish.
type Outcome struct {
	// ID is the decision id (a ULID), also sent as HeaderDecisionID.
	ID        string
	Transport string
	// Client is the address of the client the transport saw.
	Client   string
	Start    time.Time
	Duration time.Duration
	// Result is the final decision. Its Input is nil when the request never
	// reached the policy (a malformed forward-auth call, a bad exchange body).
	Result Result
	// TraceID is the trace the decision belongs to ("" without tracing).
	TraceID string
	// Shadow is what the shadow policy (serve --shadow-policies) would have
	// answered, set only when that differs from the live answer.
	Shadow *ShadowAnswer

	span trace.Span
}

// ShadowAnswer is a shadow policy's answer as the decision log shows it:
// its code (OK for an allow, ERROR when it gave no valid decision), status
// and deciding rule.
type ShadowAnswer struct {
	Code   string `json:"code"`
	Status int    `json:"status"`
	Rule   string `json:"rule,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Observer sees every final decision once, after the transport chose its
// answer. It must not block: the decision log buffers and drops. The
// outcome comes by value so that a decision nobody keeps costs no
// allocation; an observer that keeps it copies it (its maps and Input are
// shared and read-only).
type Observer interface {
	Observe(o Outcome)
}

// Observers calls each observer in turn.
type Observers []Observer

// Observe implements Observer.
func (obs Observers) Observe(o Outcome) {
	for _, ob := range obs {
		ob.Observe(o)
	}
}

// begin starts one request's decision: its id, its clock and, with tracing
// on, its root span (a child of the traceparent the request carried).
func (a *Authorizer) begin(ctx context.Context, transport string, headers propagation.TextMapCarrier) (context.Context, Outcome) {
	return a.beginWith(ctx, transport, headers, nil)
}

// beginWith is begin with the decision id's text written into id (memory
// the caller allocated for the request anyway), nil for an id of its own.
func (a *Authorizer) beginWith(ctx context.Context, transport string, headers propagation.TextMapCarrier, id *[decisionIDLen]byte) (context.Context, Outcome) {
	now := time.Now()
	o := Outcome{Transport: transport, Start: now}
	if id == nil {
		o.ID = NewDecisionID(now)
	} else {
		o.ID = decisionIDIn(id, now)
	}
	if a.Tracer != nil {
		// The span gets a copy: an id written into the request's memory
		// would keep all of that memory alive for as long as the span
		// waits in the exporter's queue.
		ctx, o.span = a.Tracer.start(ctx, headers, transport, strings.Clone(o.ID))
		o.TraceID = o.span.SpanContext().TraceID().String()
	}
	return ctx, o
}

// finish is the one place a final decision goes: into the result (its id),
// the trace, the metrics and every observer (the decision log).
func (a *Authorizer) finish(o *Outcome, res *Result) {
	o.Duration = time.Since(o.Start)
	res.DecisionID = o.ID
	if res.Decision.Allow && res.Upstream != nil {
		// Upstream is this request's own map unless it is a template's,
		// which is never written (the response adds the id); Remove must
		// not list the header (Envoy removes after it sets), though a
		// client sent it.
		if !res.shared() {
			res.Upstream[HeaderDecisionID] = o.ID
		}
		res.Remove = slices.DeleteFunc(res.Remove, func(h string) bool { return h == HeaderDecisionID })
	}
	if o.span != nil {
		d := res.Decision
		o.span.SetAttributes(attribute.Bool("keygate.allow", d.Allow), attribute.Int("http.response.status_code", statusOf(d)),
			attribute.String("keygate.code", codeOf(res)), attribute.String("keygate.rule", d.Rule))
		if !d.Allow && d.Status >= 500 {
			o.span.SetStatus(codes.Error, d.Code)
		}
		o.span.End()
	}
	if a.Observer != nil {
		o.Result = *res
		a.Observer.Observe(*o)
	}
}

// statusOf is the HTTP status the client gets (200 for allows).
func statusOf(d policies.Decision) int {
	if d.Allow {
		return 200
	}
	return d.Status
}

// codeOf is the outcome code of a result: OK for allows.
func codeOf(r *Result) string {
	if r.Decision.Allow {
		return "OK"
	}
	return r.Decision.Code
}

// OpsMetrics count decisions by what operators ask about: transport, code
// and rule; and where the decision came from (the memo or an evaluation).
type OpsMetrics struct {
	decisions *prometheus.CounterVec
	memo      *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	// resolved holds the series above once resolved, so that a decision
	// hashes no label values (observe_metrics.go).
	resolved resolvedSeries
}

// NewOpsMetrics registers the collectors with reg.
func NewOpsMetrics(reg prometheus.Registerer) *OpsMetrics {
	m := &OpsMetrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_authz_decisions_total",
			Help: "Final decisions by transport, outcome code (OK for allows) and the policy rule that decided.",
		}, []string{"transport", "code", "rule"}),
		memo: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_policy_memo_total", Help: "Policy decisions by source: hit (the decision memo), miss (evaluated), off (memo not used).",
		}, []string{"result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "keygate_authz_decision_duration_seconds", Help: "Time from a request's arrival to its final decision, by transport.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"transport"}),
	}
	reg.MustRegister(m.decisions, m.memo, m.duration)
	m.resolveMemoSeries() // present from the start, so ratios are defined
	return m
}

// Observe implements Observer.
func (m *OpsMetrics) Observe(o Outcome) {
	res := &o.Result
	m.decided(o.Transport, codeOf(res), res.Decision.Rule).Inc()
	if res.Memo != "" {
		m.memoResult(res.Memo).Inc()
	}
	m.took(o.Transport).Observe(o.Duration.Seconds())
}

// crockford is the ULID alphabet (no I, L, O, U).
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewDecisionID makes a ULID: 48 bits of milliseconds and 80 random bits,
// 26 characters that sort by time. The randomness needs to be unique, not
// secret (an id grants nothing), so the runtime's fast generator serves.
func NewDecisionID(now time.Time) string {
	var b [decisionIDLen]byte
	writeDecisionID(&b, now)
	return string(b[:])
}

// decisionIDLen is a decision id's length.
const decisionIDLen = 26

// decisionIDIn is NewDecisionID written into b, whose memory the string
// then is: b must never be written again (checkState's is not).
func decisionIDIn(b *[decisionIDLen]byte, now time.Time) string {
	writeDecisionID(b, now)
	return unsafe.String(&b[0], len(b))
}

// writeDecisionID writes a new decision id (see NewDecisionID) into b.
func writeDecisionID(b *[decisionIDLen]byte, now time.Time) {
	ms := uint64(now.UnixMilli())
	for i := 9; i >= 0; i-- { // 10 chars × 5 bits = 50 bits ≥ 48
		b[i] = crockford[ms&31]
		ms >>= 5
	}
	hi, lo := rand.Uint64(), rand.Uint64()
	for i := 25; i >= 10; i-- { // 16 chars × 5 bits = 80 bits
		b[i] = crockford[lo&31]
		lo = lo>>5 | (hi&31)<<59
		hi >>= 5
	}
}
