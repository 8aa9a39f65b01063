package extauthz

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
)

// BenchmarkCheck is the hot path: a known key whose facts are cached, the
// built-in policy, a CheckRequest shaped like Envoy's.
func BenchmarkCheck(b *testing.B) {
	f := newFixture(b)
	req := checkRequest("GET", "/v1/videos?limit=10", typicalHeaders("Bearer "+f.live.Reveal()))
	ctx := context.Background()
	warm, _ := f.server.Check(ctx, req)
	if codes.Code(warm.GetStatus().GetCode()) != codes.OK {
		b.Fatalf("want allow, got %v", warm)
	}
	f.cache.Wait()
	_, missesBefore := f.cache.Stats()
	b.ReportAllocs()
	for b.Loop() {
		resp, _ := f.server.Check(ctx, req)
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			b.Fatalf("want allow, got %v", resp)
		}
	}
	if _, misses := f.cache.Stats(); misses != missesBefore {
		b.Fatalf("the cache-hit benchmark read the store %d times", misses-missesBefore)
	}
}

// BenchmarkCheckMiss reads the key's facts from SQLite on every request:
// the cost of the first request of a key, or of one after an invalidation.
func BenchmarkCheckMiss(b *testing.B) {
	f := newFixture(b)
	req := checkRequest("GET", "/v1/videos?limit=10", typicalHeaders("Bearer "+f.live.Reveal()))
	ctx := context.Background()
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
