package extauthz

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keygate/keygate/internal/policytest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/policies"
)

// stubDecide is a real profile's policy whose decision rule is replaced by
// decide: its denial table (and so its shape) is the profile's own.
type stubDecide struct {
	*policies.Policy
	decide func(context.Context, *policies.Input) (policies.Decision, error)
}

func (s stubDecide) Decide(ctx context.Context, in *policies.Input) (policies.Decision, error) {
	return s.decide(ctx, in)
}

// DecideMemo hides the embedded policy's, so the stub decides.
func (s stubDecide) DecideMemo(ctx context.Context, in *policies.Input) (policies.Decision, policies.MemoResult, error) {
	d, err := s.decide(ctx, in)
	return d, policies.MemoOff, err
}

// downLimiter is a limit store that cannot be reached.
type downLimiter struct{}

func (downLimiter) Charge(context.Context, time.Time, []limits.Counter) (limits.Outcome, error) {
	return limits.Outcome{}, limits.ErrUnavailable
}

// shownDeny is what a client sees of a deny: status, media type and body.
type shownDeny struct {
	Status      int    `json:"status"`
	ContentType string `json:"content_type"`
	Body        any    `json:"body"`
}

// TestDenialsFollowTheProfile renders every deny keygate makes itself —
// timeout, panic, store down, limit store down, policy error and the token
// exchange's errors — under each deployment profile in policies/examples,
// and compares them with testdata/denials/<profile>.golden. Each must take
// the profile's body shape and content type (api.video: RFC 9457 problem
// details as application/problem+json; VideoGen: {"message"}).
func TestDenialsFollowTheProfile(t *testing.T) {
	dirs, err := filepath.Glob("../policies/examples/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no profiles: %v", err)
	}
	for _, dir := range append(dirs, "built-in") {
		if fi, err := os.Stat(dir); dir != "built-in" && (err != nil || !fi.IsDir()) {
			continue
		}
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			got := profileDenials(t, dir)
			file := filepath.Join("testdata", "denials", name+".golden")
			if *update {
				b, _ := json.MarshalIndent(got, "", "  ")
				if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, append(b, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			var want map[string]shownDeny
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("denials differ from %s (-want +got):\n%s", file, diff)
			}
		})
	}
}

func profilePolicy(t *testing.T, dir string) *policies.Policy {
	t.Helper()
	return policytest.Compile(t, dir, nil)
}

func profileDenials(t *testing.T, dir string) map[string]shownDeny {
	f := newTokenFixture(t)
	p := profilePolicy(t, dir)
	// The account gets a plan with API access: enterprise where the profile
	// has it (voicgen takes no other), else max.
	plan := "max"
	cfg := p.Bundle.Documents["keygate"].(map[string]any)["config"].(map[string]any)
	if _, ok := cfg["plans"].(map[string]any)["enterprise"]; ok {
		plan = "enterprise"
	}
	if _, err := f.store.UpdateAccount(context.Background(), "acme", keystore.AccountUpdate{Plan: &plan}); err != nil {
		t.Fatal(err)
	}
	out := map[string]shownDeny{}
	// The credential this profile takes on its API routes (so that only
	// the failure under test decides).
	access := f.mint(t, f.liveKey.ID, "live", time.Hour)
	var cred map[string]string
	for _, h := range []map[string]string{
		{"authorization": "Bearer " + f.live.Reveal()}, {"authorization": basic(f.live.Reveal() + ":")},
		{"x-api-key": f.live.Reveal()}, {"authorization": "Bearer " + access},
	} {
		a := *f.authz
		a.Policy = p
		if a.Authorize(context.Background(), Request{Method: "GET", Host: "api.example.com", Path: "/videos", Headers: h}).Decision.Allow {
			cred = h
			break
		}
	}
	if cred == nil {
		t.Fatal("the profile takes none of the credentials tried")
	}
	check := func(name string, pol Decider, facts KeyFacts, lim Limiter) {
		a := *f.authz
		a.Policy = pol
		if facts != nil {
			a.Facts = facts
		}
		a.Limits = lim
		s := &Server{Authorizer: &a, Log: a.Log}
		resp, err := s.Check(context.Background(), envoyCheckRequest("GET", "/videos", cred))
		if err != nil {
			t.Fatalf("%s: gRPC error %v", name, err)
		}
		d := resp.GetDeniedResponse()
		if d == nil {
			t.Fatalf("%s: not denied: %v", name, resp)
		}
		var ct string
		for _, h := range d.GetHeaders() {
			if h.GetHeader().GetKey() == "content-type" {
				ct = h.GetHeader().GetValue()
			}
		}
		out[name] = shownDeny{Status: int(d.GetStatus().GetCode()), ContentType: ct, Body: decoded(t, []byte(d.GetBody()))}
	}
	stub := func(decide func(context.Context, *policies.Input) (policies.Decision, error)) Decider {
		return stubDecide{Policy: p, decide: decide}
	}
	check("timeout", stub(func(context.Context, *policies.Input) (policies.Decision, error) {
		return policies.Decision{}, context.DeadlineExceeded
	}), nil, nil)
	check("panic", stub(func(context.Context, *policies.Input) (policies.Decision, error) { panic("boom") }), nil, nil)
	check("policy_error", stub(func(context.Context, *policies.Input) (policies.Decision, error) {
		return policies.Decision{}, policies.ErrPolicy
	}), nil, nil)
	check("store_down", p, downFacts{err: keystore.ErrUnavailable}, nil)
	check("limit_store_down", stub(func(context.Context, *policies.Input) (policies.Decision, error) {
		return policies.Decision{Allow: true, Status: 200, Limits: []policies.Limit{{Kind: "rate", Key: "k", Limit: 1, Period: time.Minute, Cost: 1}}}, nil
	}), nil, downLimiter{})
	// A key's last use spent by another replica, and a store that cannot
	// spend one.
	one := int64(1)
	spendingAllow := stub(func(context.Context, *policies.Input) (policies.Decision, error) {
		return policies.Decision{Allow: true, Status: 200, SpendUse: true}, nil
	})
	usesFacts := &entitled{KeyFacts: f.authz.Facts, ent: keystore.Entitlements{Remaining: &one}}
	for name, sp := range map[string]*spender{"usage_exhausted": {}, "uses_store_down": {err: keystore.ErrUnavailable}} {
		f.authz.Uses = sp
		check(name, spendingAllow, usesFacts, nil)
	}
	f.authz.Uses = nil

	// The token exchange, answering over HTTP.
	a := *f.authz
	a.Policy = policies.NewEngine(p)
	fx := f.exchange
	x := Exchange{Gate: &a, Tokens: fx.Tokens, Refresh: fx.Refresh, TTL: fx.TTL, RefreshTTL: fx.RefreshTTL,
		Metrics: fx.Metrics, Grace: fx.Grace}
	refresh, _ := f.ring.Format().NewRefresh()
	for _, c := range []struct{ name, method, path, ctype, body string }{
		{"exchange_method", "GET", "/auth/api-key", "", ""},
		{"exchange_bad_body", "POST", "/auth/api-key", "application/json", `{"apiKey": 7}`},
		{"exchange_wrong_content_type", "POST", "/auth/refresh", "text/plain", `{"refreshToken":"x"}`},
		{"exchange_token_for_key", "POST", "/auth/api-key", "application/json", `{"apiKey":"` + access + `"}`},
		{"exchange_refresh_invalid", "POST", "/auth/refresh", "application/json", `{"refreshToken":"` + refresh + `"}`},
		{"exchange_throttled", "POST", "/auth/refresh", "application/json", `{"refreshToken":"` + refresh + `"}`},
	} {
		if c.name == "exchange_throttled" {
			// One failure allowed; this request is the second.
			x.Throttle = &Throttle{Burst: 1, Now: f.clock.Now}
			exchangePost(t, &x, c.path, c.body)
		}
		mux := http.NewServeMux()
		x.Register(mux)
		req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
		if c.ctype != "" {
			req.Header.Set("content-type", c.ctype)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		out[c.name] = shownDeny{Status: w.Code, ContentType: w.Header().Get("content-type"), Body: decoded(t, w.Body.Bytes())}
	}
	x.Refresh = failingRefresh{}
	x.Throttle = nil
	w := exchangePost(t, &x, "/auth/refresh", `{"refreshToken":"`+refresh+`"}`)
	out["exchange_store_down"] = shownDeny{Status: w.Code, ContentType: w.Header().Get("content-type"), Body: decoded(t, w.Body.Bytes())}
	return out
}

// TestEveryDenialHasARow: every name keygate denies with by itself is a
// row of the built-in policy's config.errors, so Deny never needs its
// last-resort answer.
func TestEveryDenialHasARow(t *testing.T) {
	for _, name := range []string{denyUnavailable, denyInternal, denyPolicyError, denyForwardAuth, denyMissingKey,
		denyInvalidRequest, denyMethod, denyThrottled, denyTokenNotKey, denyRefreshInvalid, denyRefreshExpired,
		denyRateLimited, denyQuotaExceeded, denyUsageExhausted} {
		if _, ok := policies.BuiltinDenial(name); !ok {
			t.Errorf("%s has no row in policies/default/data.yaml config.errors", name)
		}
	}
	if d := Deny(nil, "NO_SUCH_ROW", "x"); d.Status != 500 || d.Code != "INTERNAL_ERROR" {
		t.Errorf("unknown name: %+v", d)
	}
}

func decoded(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("deny body is not JSON: %s", b)
	}
	return v
}
