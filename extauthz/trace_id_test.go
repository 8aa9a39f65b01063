package extauthz_test

import (
	"testing"
	"unsafe"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/extauthz"
)

// TestSpanKeepsACopyOfTheDecisionID: a gRPC Check writes its decision id
// into the Check's own memory (the response's header is a view of it); the
// span gets a copy, or every span waiting in the exporter's queue would
// keep a whole Check's memory (the request's state and its response)
// alive.
func TestSpanKeepsACopyOfTheDecisionID(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	srv, reqs, _ := extauthz.NewOpsFixture(t, 1)
	srv.Authorizer.Tracer = extauthz.NewTracer(tp)
	resp, _ := srv.Check(extauthz.EnvoyContext(t), reqs[0])
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("want allow, got %v", resp)
	}
	header := extauthz.DecisionIDOf(resp)
	var attr string
	for _, s := range rec.Ended() {
		for _, kv := range s.Attributes() {
			if kv.Key == "keygate.decision_id" {
				attr = kv.Value.AsString()
			}
		}
	}
	switch {
	case header == "" || attr != header:
		t.Fatalf("span's decision id %q, response's %q", attr, header)
	case unsafe.StringData(attr) == unsafe.StringData(header):
		t.Fatal("the span's decision id is the Check's memory, not a copy")
	}
}
