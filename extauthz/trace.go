package extauthz

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Tracer makes the spans of a decision: one root span per request (a child
// of the W3C traceparent the proxy forwarded) and one per step (credential,
// lookup, policy, limits). A nil *Tracer on the Authorizer means tracing is
// off, and then no span, context or attribute is made at all.
type Tracer struct {
	tracer trace.Tracer
}

// NewTracer traces with the tracers of tp (an OpenTelemetry SDK provider
// with an OTLP exporter, in `keygate serve`).
func NewTracer(tp trace.TracerProvider) *Tracer {
	return &Tracer{tracer: tp.Tracer("github.com/keygate/keygate/extauthz")}
}

// traceContext reads traceparent and tracestate.
var traceContext = propagation.TraceContext{}

// start opens a request's root span under the trace its headers name.
func (t *Tracer) start(ctx context.Context, headers propagation.TextMapCarrier, transport, decisionID string) (context.Context, trace.Span) {
	ctx = traceContext.Extract(ctx, headers)
	return t.tracer.Start(ctx, "keygate.Check", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("keygate.transport", transport), attribute.String("keygate.decision_id", decisionID)))
}

// span opens a step's span when tracing is on; the returned span is nil
// (and ctx unchanged) when it is off. End it with endSpan.
func (a *Authorizer) span(ctx context.Context, name string) (context.Context, trace.Span) {
	if a.Tracer == nil {
		return ctx, nil
	}
	return a.Tracer.tracer.Start(ctx, name)
}

func endSpan(s trace.Span) {
	if s != nil {
		s.End()
	}
}
