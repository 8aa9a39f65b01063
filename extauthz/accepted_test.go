package extauthz

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/policytest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
)

// hostModesEngine is the built-in policy with one host that takes test
// keys only.
func hostModesEngine(t *testing.T) *policies.Engine {
	t.Helper()
	return policies.NewEngine(policytest.Compile(t, policies.BuiltIn, func(config map[string]any) {
		config["host_modes"] = map[string]any{"sandbox.example.test": "test"}
	}))
}

// TestIdentityOnlyFromAcceptedCredential: on routes that need no key, a key
// gives the request an identity (upstream headers, limit charges, a usage
// record) only when the policy would accept it for this request: the
// reviewer's findings that (a) site A's key on site B's public route got
// A's identity and usage, and (b) a key the policy refuses on this host (a
// plan without API access, a mode the host does not take) still got its
// identity on /health.
func TestIdentityOnlyFromAcceptedCredential(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := newLimitsFixture(t, nil)
	f.authz.Policy = hostModesEngine(t)
	mustSite := func(id, account string, domains ...string) {
		if _, err := f.store.CreateSite(ctx, keystore.Site{ID: id, AccountID: account, Domains: domains, Active: true}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.store.CreateAccount(ctx, keystore.Account{ID: "free", Plan: "free"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.CreateAccount(ctx, keystore.Account{ID: "b", Plan: "pro"}); err != nil {
		t.Fatal(err)
	}
	mustSite("sa", "a1", "a.example")
	mustSite("sb", "b", "b.example")
	mustSite("sfree", "free", "free.example")
	newKey := func(site string, mode keystore.Mode) (keystore.Key, string) {
		k, s, err := f.store.CreateKey(ctx, keystore.KeySpec{SiteID: site, Mode: mode})
		if err != nil {
			t.Fatal(err)
		}
		return k, s.Reveal()
	}
	keyA, rawA := newKey("sa", keystore.ModeLive)
	keyB, rawB := newKey("sb", keystore.ModeLive)
	_, rawFree := newKey("sfree", keystore.ModeLive)
	testA, rawTestA := newKey("sa", keystore.ModeTest)

	for _, tc := range []struct {
		name, host, path, origin, key string
		wantKeyID, wantSite           string
	}{
		{"A's key on B's public route", "api.example.test", "/v1/public/sb/player", "https://b.example", rawA, "", "sb"},
		{"B's key on B's public route", "api.example.test", "/v1/public/sb/player", "https://b.example", rawB, keyB.ID, "sb"},
		{"free plan key on /health", "api.example.test", "/health", "", rawFree, "", ""},
		{"free plan key on a public route", "api.example.test", "/v1/public/sb/player", "https://b.example", rawFree, "", "sb"},
		{"live key on a test-only host", "sandbox.example.test", "/health", "", rawA, "", ""},
		{"test key on a test-only host", "sandbox.example.test", "/health", "", rawTestA, testA.ID, "sa"},
		{"live key on /health", "api.example.test", "/health", "", rawA, keyA.ID, "sa"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, u := &countingLimiter{}, &usageLog{}
			f.authz.Limits, f.authz.Usage = c, u
			h := map[string]string{"authorization": "Bearer " + tc.key}
			if tc.origin != "" {
				h["origin"] = tc.origin
			}
			res := f.authz.Authorize(ctx, Request{Method: "GET", Host: tc.host, Path: tc.path, Headers: h})
			if !res.Decision.Allow {
				t.Fatalf("route that needs no key refused: %+v", res.Decision)
			}
			if got := res.Upstream[HeaderKeyID]; got != tc.wantKeyID {
				t.Errorf("x-keygate-key-id = %q, want %q (upstream %v)", got, tc.wantKeyID, res.Upstream)
			}
			if got := res.Upstream[HeaderSite]; got != tc.wantSite {
				t.Errorf("x-keygate-site = %q, want %q (upstream %v)", got, tc.wantSite, res.Upstream)
			}
			if res.KeyID != tc.wantKeyID {
				t.Errorf("result key id (logs, Envoy metadata) = %q, want %q", res.KeyID, tc.wantKeyID)
			}
			if tc.wantKeyID == "" && len(u.ids) != 0 {
				t.Errorf("usage recorded for a key the policy did not accept: %v", u.ids)
			}
			if tc.wantKeyID != "" && (len(u.ids) != 1 || u.ids[0] != tc.wantKeyID) {
				t.Errorf("usage = %v, want [%s]", u.ids, tc.wantKeyID)
			}
		})
	}
}

// mintingDecider is a fakeDecider that declares a mint route.
type mintingDecider struct {
	fakeDecider
	route string
}

func (d mintingDecider) MintRoute() (string, bool) { return d.route, d.route != "" }

// TestAcceptedOwnPolicies: a whole policy of the operator's own, whose rule
// names keygate does not know. Its key routes' allows are told apart by a
// decision without the credential (a deny: the allow was the key's); on
// its open routes a key is accepted only if the policy allows it on the
// declared mint route, and never without one; a policy error gives no
// identity.
func TestAcceptedOwnPolicies(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	facts := &keystore.KeyFacts{Key: keystore.Key{ID: "key_1", Mode: keystore.ModeLive}, Site: keystore.Site{ID: "s1", Active: true},
		Account: keystore.Account{ID: "a1", Plan: "gold", Status: keystore.StatusActive}}
	keyed := &policies.Input{Request: policies.Request{Method: "GET", Host: "api.test", PathOK: true},
		Credential: policies.Credential{Status: policies.CredFound, Kind: "key", Scheme: "bearer"},
		Key:        &policies.Key{ID: "key_1", Mode: "live"}, Account: &policies.Account{ID: "a1", Plan: "gold"}}
	// open answers every path under /open/ and allows keys on /api/ only
	// for plan gold on host api.test.
	open := func(keyOK bool, fail error) fakeDecider {
		return fakeDecider{decide: func(_ context.Context, in *policies.Input) (policies.Decision, error) {
			if fail != nil && in.Credential.Status == policies.CredMissing {
				return policies.Decision{}, fail
			}
			switch {
			case strings.HasPrefix(in.Request.Path, "/open/"):
				return policies.Decision{Allow: true, Status: 200, Rule: "anyone"}, nil
			case in.Credential.Status == policies.CredFound && keyOK:
				return policies.Decision{Allow: true, Status: 200, Rule: "customer_key"}, nil
			}
			return policies.Decision{Status: 401, Code: "NO", Rule: "nope"}, nil
		}}
	}
	allow := func(pol Decider, path string) bool {
		in := *keyed
		in.Request.Path = path
		d, err := pol.Decide(ctx, &in)
		if err != nil || !d.Allow {
			t.Fatalf("%s: the request itself must be allowed: %+v %v", path, d, err)
		}
		return accepted(ctx, pol, &in, d, facts, now)
	}
	for _, tc := range []struct {
		name string
		pol  Decider
		path string
		want bool
	}{
		{"key route of its own naming", mintingDecider{open(true, nil), "/api/"}, "/api/videos", true},
		{"key route, no mint route needed", open(true, nil), "/api/videos", true},
		{"open route, key accepted on the mint route", mintingDecider{open(true, nil), "/api/"}, "/open/x", true},
		{"open route, key refused on the mint route", mintingDecider{open(false, nil), "/api/"}, "/open/x", false},
		{"open route, no mint route declared", open(true, nil), "/open/x", false},
		{"open route, policy error", mintingDecider{open(true, errors.New("boom")), "/api/"}, "/open/x", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := allow(tc.pol, tc.path); got != tc.want {
				t.Errorf("accepted = %v, want %v", got, tc.want)
			}
		})
	}
	expired := *facts
	past := now.Add(-time.Hour)
	expired.Key.ExpiresAt = &past
	if accepted(ctx, open(true, nil), keyed, policies.Decision{Allow: true, Rule: keyRouteRule}, &expired, now) {
		t.Error("an expired key was accepted on a key_route allow")
	}
	if accepted(ctx, open(true, nil), keyed, policies.Decision{Status: 403}, facts, now) {
		t.Error("a deny accepted the key")
	}
}
