package extauthz

import (
	"context"
	"strconv"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/keystore"
)

// BenchmarkCheckEntitlements is BenchmarkCheck (cached key, built-in
// policy, Envoy-shaped requests each with its own x-request-id) for a key
// without entitlements and for a scoped one (issue 15: within 10%), and
// for one with allowed CIDRs from a few client addresses. Each key is
// stored with its entitlements (SQLite) and read through the real cache.
func BenchmarkCheckEntitlements(b *testing.B) {
	for _, c := range []struct {
		name string
		ent  keystore.Entitlements
	}{
		{"unscoped", keystore.Entitlements{}},
		{"scoped", keystore.Entitlements{Scopes: []string{"audio:read", "videos:read", "videos:write"}}},
		{"cidrs", keystore.Entitlements{AllowedCIDRs: []string{"10.0.0.0/8", "192.168.0.0/16"}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			f := newFixture(b)
			_, secret, err := f.store.CreateKey(context.Background(), keystore.KeySpec{SiteID: "acme-web", Mode: keystore.ModeLive, Entitlements: c.ent})
			if err != nil {
				b.Fatal(err)
			}
			s := f.server
			reqs := make([]*authv3.CheckRequest, 1024)
			for i := range reqs {
				h := typicalHeaders("Bearer " + secret.Reveal())
				h["x-request-id"] = "req-" + strconv.Itoa(i)
				reqs[i] = checkFrom("GET", "/v1/videos?limit=10", "10.0.0."+strconv.Itoa(i%4), h)
			}
			ctx := envoyContext(b)
			if warm, _ := s.Check(ctx, reqs[0]); codes.Code(warm.GetStatus().GetCode()) != codes.OK {
				b.Fatalf("want allow, got %v", warm)
			}
			f.cache.Wait()
			b.ReportAllocs()
			CheckAllowed(ctx, b, s, reqs)
		})
	}
}
