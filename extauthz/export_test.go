package extauthz

import (
	"context"
	"strconv"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
)

// The external tests (ops_test.go, package extauthz_test) may import the
// decision log, which imports this package; they reach the fixture here.

// NewOpsFixture is a whole Server on the embedded default (see fixture)
// and a request of its live key for each of n request ids.
func NewOpsFixture(tb testing.TB, n int) (*Server, []*authv3.CheckRequest, func()) {
	f := newFixture(tb)
	reqs := make([]*authv3.CheckRequest, n)
	for i := range reqs {
		h := typicalHeaders("Bearer " + f.live.Reveal())
		h["x-request-id"] = "req-" + strconv.Itoa(i)
		reqs[i] = envoyCheckRequest("GET", "/v1/videos?limit=10", h)
	}
	return f.server, reqs, f.cache.Wait
}

// CheckAllowed is a benchmark's loop: it sends reqs to s in turn, for as
// long as b loops, and every answer must be an allow.
func CheckAllowed(ctx context.Context, b *testing.B, s *Server, reqs []*authv3.CheckRequest) {
	i := 0
	for b.Loop() {
		i++
		resp, _ := s.Check(ctx, reqs[i%len(reqs)])
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			b.Fatalf("want allow, got %v", resp)
		}
	}
}

// EnvoyContext is a Check's context (with a deadline, as Envoy's are).
func EnvoyContext(tb testing.TB) context.Context { return envoyContext(tb) }

// DecisionIDOf is the decision id an allow hands its upstream ("" for none).
func DecisionIDOf(resp *authv3.CheckResponse) string {
	return headerOf(resp.GetOkResponse().GetHeaders(), HeaderDecisionID)
}
