package extauthz

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// usageLog records which keys were marked used.
type usageLog struct{ ids []string }

func (u *usageLog) Record(id string, _ time.Time) { u.ids = append(u.ids, id) }

// TestRefusedCredentialGetsNoIdentity: on routes that need no key, a key
// that would be refused on a key route (revoked, expired, inactive site) is
// ignored: no identity headers, no limit charge, no usage record. A key
// that passed keeps its identity there.
func TestRefusedCredentialGetsNoIdentity(t *testing.T) {
	// A deadline of its own: the 150 ms default budget is about speed,
	// not what this test checks, and a busy machine may exceed it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := newLimitsFixture(t, nil)
	if _, err := f.store.CreateSite(ctx, keystore.Site{ID: "s2", AccountID: "a1", Domains: []string{"s2.example"}, Active: true}); err != nil {
		t.Fatal(err)
	}
	newKey := func(site string, exp *time.Time) (keystore.Key, string) {
		k, s, err := f.store.CreateKey(ctx, keystore.KeySpec{SiteID: site, Mode: keystore.ModeLive, ExpiresAt: exp})
		if err != nil {
			t.Fatal(err)
		}
		return k, s.Reveal()
	}
	good, goodKey := newKey("s1", nil)
	revoked, revokedKey := newKey("s1", nil)
	if _, err := f.store.RevokeKey(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	past := f.now.Add(-time.Hour)
	_, expiredKey := newKey("s1", &past)
	inactive, inactiveKey := newKey("s2", nil)
	off := false
	if _, err := f.store.UpdateSite(ctx, "s2", keystore.SiteUpdate{Active: &off}); err != nil {
		t.Fatal(err)
	}
	_ = inactive
	if _, err := f.store.UpdateSite(ctx, "s1", keystore.SiteUpdate{Domains: &[]string{"s1.example"}}); err != nil {
		t.Fatal(err)
	}

	for _, path := range []string{"/health", "/v1/public/s1/player"} {
		for _, tc := range []struct {
			name, key string
			wantID    string
		}{
			{"revoked", revokedKey, ""},
			{"expired", expiredKey, ""},
			{"inactive site", inactiveKey, ""},
			{"valid", goodKey, good.ID},
		} {
			t.Run(strings.TrimPrefix(path, "/")+"/"+tc.name, func(t *testing.T) {
				c, u := &countingLimiter{}, &usageLog{}
				f.authz.Limits, f.authz.Usage = c, u
				res := f.authz.Authorize(ctx, Request{Method: "GET", Host: "api.example.test", Path: path,
					Headers: map[string]string{"x-api-key": tc.key, "origin": "https://s1.example"}})
				if !res.Decision.Allow {
					t.Fatalf("public route refused: %+v", res.Decision)
				}
				if got := res.Upstream[HeaderKeyID]; got != tc.wantID {
					t.Errorf("x-keygate-key-id = %q, want %q (upstream %v)", got, tc.wantID, res.Upstream)
				}
				if tc.wantID == "" {
					if path == "/health" && res.Upstream[HeaderPlan] != "" {
						t.Errorf("identity of a refused key reached the upstream: %v", res.Upstream)
					}
					if c.calls != 0 || len(u.ids) != 0 {
						t.Errorf("refused key charged %d times, usage %v", c.calls, u.ids)
					}
				}
				if !slices.Contains(res.Remove, "x-api-key") {
					t.Errorf("credential header not stripped: remove %v", res.Remove)
				}
			})
		}
	}
}
