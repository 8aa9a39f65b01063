package extauthz

import (
	"context"
	"strconv"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/policies"
)

// BenchmarkCheckMemoMiss is a cache-hit Check whose decision is evaluated
// every time (the memo is off): what a memo miss of the built-in policy
// costs end to end.
func BenchmarkCheckMemoMiss(b *testing.B) {
	f := newFixture(b)
	f.server.Authorizer.Policy.(*policies.Engine).SetMemo(false)
	ctx := envoyContext(b)
	req := envoyCheckRequest("GET", "/v1/videos/vid_0", typicalHeaders("Bearer "+f.live.Reveal()))
	f.server.Check(ctx, req) //nolint:errcheck // warms the key cache
	f.cache.Wait()
	settle(ctx, f) // the compiled evaluator, as serve decides once it is ready
	allowLoop(ctx, b, f, func(int) *authv3.CheckRequest { return req })
}

// BenchmarkCheckDistinctIDs is real API traffic's shape: every request has
// its own resource id in the path and its own x-request-id. The built-in
// policy asks only which route the path is on, so after the first request
// every decision is a memo hit.
func BenchmarkCheckDistinctIDs(b *testing.B) {
	f := newFixture(b)
	f.server.Authorizer.DropUnreadHeaders = !*keepHeaders
	ctx := envoyContext(b)
	reqs := make([]*authv3.CheckRequest, 4096)
	for i := range reqs {
		h := typicalHeaders("Bearer " + f.live.Reveal())
		h["x-request-id"] = "req-" + strconv.Itoa(i)
		reqs[i] = envoyCheckRequest("GET", "/v1/videos/vid_"+strconv.Itoa(i), h)
	}
	f.server.Check(ctx, reqs[0]) //nolint:errcheck // warms the key cache
	f.cache.Wait()
	settle(ctx, f)
	engine := f.server.Authorizer.Policy.(*policies.Engine)
	before := engine.MemoStats()
	allowLoop(ctx, b, f, func(i int) *authv3.CheckRequest { return reqs[i%len(reqs)] })
	if s := engine.MemoStats(); s.Misses != before.Misses {
		b.Fatalf("%d memo misses on paths that differ only in ids", s.Misses-before.Misses)
	}
}

// BenchmarkCheckNoDeadline is BenchmarkCheckDistinctIDs from a caller that
// sets no deadline (keygate-bench; an Envoy without a timeout): each Check
// then runs under the Authorizer's budget (here a long one: under
// valgrind a Check can take longer than the default).
func BenchmarkCheckNoDeadline(b *testing.B) {
	f := newFixture(b)
	f.server.Authorizer.Budget = time.Minute
	f.server.Authorizer.DropUnreadHeaders = !*keepHeaders
	reqs := make([]*authv3.CheckRequest, 4096)
	for i := range reqs {
		h := typicalHeaders("Bearer " + f.live.Reveal())
		h["x-request-id"] = "req-" + strconv.Itoa(i)
		reqs[i] = envoyCheckRequest("GET", "/v1/videos/vid_"+strconv.Itoa(i), h)
	}
	ctx := context.Background()
	f.server.Check(ctx, reqs[0]) //nolint:errcheck // warms the key cache
	f.cache.Wait()
	settle(envoyContext(b), f)
	allowLoop(ctx, b, f, func(i int) *authv3.CheckRequest { return reqs[i%len(reqs)] })
}
