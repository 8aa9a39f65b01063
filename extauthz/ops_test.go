package extauthz_test

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/decisionlog"
	"github.com/keygate/keygate/extauthz"
)

// receiver is an in-process OTLP collector: it keeps the spans exported to it.
type receiver struct {
	coltrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (r *receiver) Export(_ context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			r.spans = append(r.spans, ss.GetSpans()...)
		}
	}
	return &coltrace.ExportTraceServiceResponse{}, nil
}

func startReceiver(t *testing.T) (*receiver, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{}
	g := grpc.NewServer()
	coltrace.RegisterTraceServiceServer(g, r)
	go g.Serve(lis) //nolint:errcheck // ends with Stop
	t.Cleanup(g.Stop)
	return r, lis.Addr().String()
}

// TestTraceparentOTLP: one Check carrying a W3C traceparent is exported
// over OTLP as a server span that is the child of that parent, with the
// decision id the client saw, and child spans for each step.
func TestTraceparentOTLP(t *testing.T) {
	recv, addr := startReceiver(t)
	ctx := context.Background()
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(addr), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
	t.Cleanup(func() { _ = tp.Shutdown(ctx) })

	srv, reqs, _ := extauthz.NewOpsFixture(t, 1)
	srv.Authorizer.Tracer = extauthz.NewTracer(tp)
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req := reqs[0]
	req.Attributes.Request.Http.Headers["traceparent"] = "00-" + traceID + "-" + parentID + "-01"
	resp, _ := srv.Check(extauthz.EnvoyContext(t), req)
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("want allow, got %v", resp)
	}
	decisionID := extauthz.DecisionIDOf(resp)
	if err := tp.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}

	recv.mu.Lock()
	defer recv.mu.Unlock()
	byName := map[string]*tracepb.Span{}
	for _, s := range recv.spans {
		byName[s.GetName()] = s
		if got := hexID(s.GetTraceId()); got != traceID {
			t.Errorf("span %s in trace %s, want %s", s.GetName(), got, traceID)
		}
	}
	root := byName["keygate.Check"]
	if root == nil {
		t.Fatalf("no keygate.Check span among %d spans", len(recv.spans))
	}
	if got := hexID(root.GetParentSpanId()); got != parentID {
		t.Errorf("root span's parent %s, want %s (from traceparent)", got, parentID)
	}
	if root.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("root span kind %v", root.GetKind())
	}
	attrs := map[string]string{}
	for _, kv := range root.GetAttributes() {
		attrs[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	if decisionID == "" || attrs["keygate.decision_id"] != decisionID || attrs["keygate.code"] != "OK" {
		t.Errorf("root attributes %v, decision id %q", attrs, decisionID)
	}
	for _, name := range []string{"keygate.credential", "keygate.lookup", "keygate.policy"} {
		s := byName[name]
		if s == nil {
			t.Errorf("no %s span", name)
			continue
		}
		if string(s.GetParentSpanId()) == "" {
			t.Errorf("%s has no parent", name)
		}
	}
	if p := byName["keygate.policy"]; p != nil && string(p.GetParentSpanId()) != string(root.GetSpanId()) {
		t.Errorf("policy span is not the Check span's child")
	}
}

// processCPU is the user and system CPU time the process has used, in ns.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func hexID(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// BenchmarkCheckOps is BenchmarkCheck (a cache-hit allow) with the
// operations features: off (no decision log, tracing off), the decision log
// on with 10% of allows sampled (denies are always written), and every
// allow logged; tracing on (spans made, not exported) for comparison.
func BenchmarkCheckOps(b *testing.B) {
	for _, c := range []struct {
		name   string
		sample float64
		trace  bool
	}{
		{"off", -1, false},
		{"decision_log_sampled_10pct", 0.1, false},
		{"decision_log_all", 1, false},
		{"tracing", -1, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			srv, reqs, wait := extauthz.NewOpsFixture(b, 1024)
			drain := func() {}
			if c.sample >= 0 {
				dl, err := decisionlog.New(decisionlog.Config{Path: filepath.Join(b.TempDir(), "d.log"), SampleAllows: c.sample, Buffer: 1 << 16}, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { dl.Close() })
				srv.Authorizer.Observer = dl
				drain = func() { dl.Close() }
			}
			if c.trace {
				tp := sdktrace.NewTracerProvider()
				b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
				srv.Authorizer.Tracer = extauthz.NewTracer(tp)
			}
			ctx := extauthz.EnvoyContext(b)
			srv.Check(ctx, reqs[0]) //nolint:errcheck // warms the cache
			wait()
			b.ReportAllocs()
			cpu := processCPU()
			extauthz.CheckAllowed(ctx, b, srv, reqs)
			// The decision log's writer works beside Check: its lines are
			// written (and its CPU counted) before the clock stops.
			drain()
			// CPU time of the whole process per Check, writer included: on
			// a shared machine it moves far less than wall time does.
			b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}
