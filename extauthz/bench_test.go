package extauthz

import (
	"context"
	"flag"
	"strconv"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/policies"
)

// BenchmarkCheck is the hot path: a known key whose facts are cached, the
// built-in policy, a CheckRequest shaped like Envoy's.
func BenchmarkCheck(b *testing.B) {
	f := newFixture(b)
	// Envoy gives every request its own x-request-id: the requests differ
	// as real ones do, which a decision memo must not mistake for a
	// difference that matters.
	reqs := make([]*authv3.CheckRequest, 1024)
	for i := range reqs {
		h := typicalHeaders("Bearer " + f.live.Reveal())
		h["x-request-id"] = "req-" + strconv.Itoa(i)
		reqs[i] = envoyCheckRequest("GET", "/v1/videos?limit=10", h)
	}
	ctx := envoyContext(b)
	warm, _ := f.server.Check(ctx, reqs[0])
	if codes.Code(warm.GetStatus().GetCode()) != codes.OK {
		b.Fatalf("want allow, got %v", warm)
	}
	f.cache.Wait()
	_, missesBefore := f.cache.Stats()
	allowLoop(ctx, b, f, func(i int) *authv3.CheckRequest { return reqs[i%len(reqs)] })
	if _, misses := f.cache.Stats(); misses != missesBefore {
		b.Fatalf("the cache-hit benchmark read the store %d times", misses-missesBefore)
	}
}

// allowLoop is the benchmark loop: Check the i-th request, which must be
// allowed.
func allowLoop(ctx context.Context, b *testing.B, f *fixture, next func(i int) *authv3.CheckRequest) {
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		resp, _ := f.server.Check(ctx, next(i))
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			b.Fatalf("want allow, got %v", resp)
		}
	}
}

// BenchmarkCheckMiss reads the key's facts from SQLite on every request:
// the cost of the first request of a key, or of one after an invalidation.
func BenchmarkCheckMiss(b *testing.B) {
	f := newFixture(b)
	req := envoyCheckRequest("GET", "/v1/videos?limit=10", typicalHeaders("Bearer "+f.live.Reveal()))
	ctx := envoyContext(b)
	b.ReportAllocs()
	for b.Loop() {
		// Invalidating the key makes the cached entry stale, so the next
		// Check reads through to the store as a cold key would.
		f.cache.Invalidate("key", f.liveKey.ID)
		resp, _ := f.server.Check(ctx, req)
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			b.Fatalf("want allow, got %v", resp)
		}
	}
}

// BenchmarkCheckPolicy gives every request a path of its own (an id the
// decision memo has not seen). The built-in policy decides by route, not by
// id, so these are memo hits; BenchmarkCheckMemoMiss is the cold decision.
// The paths are built before the timer starts, so that what is counted is
// the Check's cost, not the loop's (it was two allocations per request).
func BenchmarkCheckPolicy(b *testing.B) {
	f := newFixture(b)
	f.server.Authorizer.DropUnreadHeaders = !*keepHeaders
	ctx := envoyContext(b)
	req := envoyCheckRequest("GET", "/v1/videos/0", typicalHeaders("Bearer "+f.live.Reveal()))
	f.server.Check(ctx, req) //nolint:errcheck // warms the key cache
	f.cache.Wait()
	settle(ctx, f)
	paths := make([]string, 1<<16)
	for i := range paths {
		paths[i] = "/v1/videos/" + strconv.Itoa(i)
	}
	allowLoop(ctx, b, f, func(i int) *authv3.CheckRequest {
		req.Attributes.Request.Http.Path = paths[i%len(paths)]
		return req
	})
}

// settle waits until the policy's compiled evaluator is planned: planning
// runs in the background once a policy is loaded, and a benchmark that
// started before it ends counts the planner's work and garbage against
// Check (in a run of a few thousand iterations, about as much again as the
// Checks themselves, varying with where the planner was).
func settle(ctx context.Context, f *fixture) {
	f.server.Authorizer.Policy.(*policies.Engine).Current().WaitEvaluator(ctx)
}

// keepHeaders: the memo-hit benchmarks run as serve does by default (no
// decision log, no shadow policy: the built-in policy's input gets no
// headers); -keep-headers measures the input with them, as with a
// decision log.
var keepHeaders = flag.Bool("keep-headers", false, "memo-hit benchmarks: give the policy input the request's headers")

// envoyContext carries a deadline, as every Check from Envoy does (its
// ext_authz timeout travels as grpc-timeout).
func envoyContext(b testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	b.Cleanup(cancel)
	return ctx
}
