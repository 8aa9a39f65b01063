package extauthz

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
)

// fakeFacts knows one key.
type fakeFacts struct {
	digest keystore.Digest
	facts  keystore.KeyFacts
}

func (f fakeFacts) Key(_ context.Context, ds []keystore.Digest) (keystore.KeyFacts, error) {
	for _, d := range ds {
		if d == f.digest {
			return f.facts, nil
		}
	}
	return keystore.KeyFacts{}, keystore.ErrNotFound
}

func (f fakeFacts) KeyID(_ context.Context, id string) (keystore.KeyFacts, error) {
	if id == f.facts.Key.ID {
		return f.facts, nil
	}
	return keystore.KeyFacts{}, keystore.ErrNotFound
}

func (f fakeFacts) Site(context.Context, string) (keystore.SiteFacts, error) {
	return keystore.SiteFacts{}, keystore.ErrNotFound
}

// fakePolicy decides with a func and remembers the input it saw.
type fakePolicy struct {
	decide func(*policies.Input) policies.Decision
	seen   *policies.Input
}

func (p *fakePolicy) Decide(_ context.Context, in *policies.Input) (policies.Decision, error) {
	p.seen = in
	return p.decide(in), nil
}

func (p *fakePolicy) PublicSite(string) (string, bool) { return "", false }

// forwardAuthFixture is a ForwardAuth over fakes, with one valid live key.
type forwardAuthFixture struct {
	handler http.Handler
	policy  *fakePolicy
	key     string
	// authorizer is the fixture's, for tests that observe its decisions.
	authorizer *Authorizer
}

func newForwardAuthFixture(t *testing.T, decide func(*policies.Input) policies.Decision) *forwardAuthFixture {
	t.Helper()
	format, digester, key := newLiveKey(t)
	facts := fakeFacts{digest: digester.Primary(key.Reveal()), facts: keystore.KeyFacts{
		Key:     keystore.Key{ID: "key_1", SiteID: "acme-web", Mode: keystore.ModeLive},
		Site:    keystore.Site{ID: "acme-web", AccountID: "acme", Active: true},
		Account: keystore.Account{ID: "acme", Plan: "pro", Status: keystore.StatusActive},
	}}
	policy := &fakePolicy{decide: decide}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := &Authorizer{Facts: facts, Policy: policy, Format: format, Digester: digester, Log: log}
	fa := &ForwardAuth{Authorizer: a, Log: log}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	})
	return &forwardAuthFixture{handler: fa.Wrap(next), policy: policy, key: key.Reveal(), authorizer: a}
}

func (f *forwardAuthFixture) do(method, target string, headers map[string][]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	req.Host = "keygate:8080"
	for k, vs := range headers {
		for _, v := range vs {
			if k == "Host" {
				req.Host = v // as net/http moves it
				continue
			}
			req.Header.Add(k, v)
		}
	}
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	return rec
}

func allowKeys(in *policies.Input) policies.Decision {
	if in.Credential.Status == policies.CredFound {
		return policies.Decision{Allow: true, Status: 200, Rule: "key_route"}
	}
	return policies.Decision{Status: 401, Code: "MISSING_API_KEY", Message: "No API key", Rule: "credential"}
}

// TestForwardAuthConventions: each endpoint reads the original request from
// its own proxy's headers and no other.
func TestForwardAuthConventions(t *testing.T) {
	type seen struct{ Method, Host, Path, Query string }
	tests := []struct {
		name    string
		method  string
		target  string
		headers map[string][]string
		want    seen
	}{
		{
			name:   "envoy http_service: path after the prefix, original method and host",
			method: "POST", target: "/ext-authz/v1/videos?page=2",
			headers: map[string][]string{"Host": {"api.example.com"}},
			want:    seen{"POST", "api.example.com", "/v1/videos", "page=2"},
		},
		{
			name:   "envoy http_service: raw path is not cleaned or redirected",
			method: "GET", target: "/ext-authz/v1/sites/a/..//b",
			want: seen{"GET", "keygate", "/v1/sites/a/..//b", ""},
		},
		{
			name:   "nginx auth_request: X-Original-*, X-Forwarded-Host",
			method: "GET", target: "/auth-request",
			headers: map[string][]string{
				"X-Original-Method": {"DELETE"}, "X-Original-Uri": {"/v1/sites/acme-web/x?y=1"},
				"X-Forwarded-Host": {"sandbox.example.com"},
				// A client-sent header of another convention is ignored.
				"X-Forwarded-Uri": {"/health"}, "X-Forwarded-Method": {"GET"},
			},
			want: seen{"DELETE", "sandbox.example.com", "/v1/sites/acme-web/x", "y=1"},
		},
		{
			name:   "nginx auth_request: Host when X-Forwarded-Host is absent",
			method: "GET", target: "/auth-request",
			headers: map[string][]string{"X-Original-Method": {"GET"}, "X-Original-Uri": {"/v1/videos"}},
			want:    seen{"GET", "keygate", "/v1/videos", ""},
		},
		{
			name:   "traefik/caddy forward_auth: X-Forwarded-*",
			method: "GET", target: "/forward-auth",
			headers: map[string][]string{
				"X-Forwarded-Method": {"PUT"}, "X-Forwarded-Uri": {"/v1/videos/1"},
				"X-Forwarded-Host": {"api.example.com"}, "X-Forwarded-Proto": {"https"},
				"X-Original-Uri": {"/health"},
			},
			want: seen{"PUT", "api.example.com", "/v1/videos/1", ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newForwardAuthFixture(t, allowKeys)
			rec := f.do(tt.method, tt.target, tt.headers)
			if rec.Code != 401 {
				t.Fatalf("status %d, want the policy's 401; body %s", rec.Code, rec.Body)
			}
			if f.policy.seen == nil {
				t.Fatal("the policy was not asked")
			}
			r := f.policy.seen.Request
			if diff := cmp.Diff(tt.want, seen{r.Method, r.Host, r.Path, r.Query}); diff != "" {
				t.Errorf("original request (-want +got):\n%s", diff)
			}
		})
	}
}

// TestForwardAuthMisconfigured: without the original request keygate cannot
// decide, so it refuses without asking the policy (fail closed).
func TestForwardAuthMisconfigured(t *testing.T) {
	tests := []struct {
		name    string
		target  string
		headers map[string][]string
	}{
		{"nginx without X-Original-URI", "/auth-request", map[string][]string{"X-Original-Method": {"GET"}}},
		{"nginx without X-Original-Method", "/auth-request", map[string][]string{"X-Original-Uri": {"/v1/x"}}},
		{"forward_auth without X-Forwarded-Uri", "/forward-auth", map[string][]string{"X-Forwarded-Method": {"GET"}}},
		{"method sent twice", "/forward-auth", map[string][]string{"X-Forwarded-Method": {"GET", "POST"}, "X-Forwarded-Uri": {"/v1/x"}}},
		{"host sent twice", "/auth-request", map[string][]string{"X-Original-Method": {"GET"}, "X-Original-Uri": {"/v1/x"}, "X-Forwarded-Host": {"a", "b"}}},
		{"uri too long", "/auth-request", map[string][]string{"X-Original-Method": {"GET"}, "X-Original-Uri": {"/" + strings.Repeat("a", maxForwardedURI)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newForwardAuthFixture(t, func(*policies.Input) policies.Decision {
				return policies.Decision{Allow: true, Status: 200}
			})
			rec := f.do("GET", tt.target, tt.headers)
			if rec.Code != 500 || !strings.Contains(rec.Body.String(), "FORWARD_AUTH_MISCONFIGURED") {
				t.Fatalf("got %d %s, want 500 FORWARD_AUTH_MISCONFIGURED", rec.Code, rec.Body)
			}
			if f.policy.seen != nil {
				t.Error("the policy was asked about a request keygate could not read")
			}
		})
	}
}

// TestForwardAuthAllow: 200 with identity headers; Envoy is told which
// request headers to strip.
func TestForwardAuthAllow(t *testing.T) {
	f := newForwardAuthFixture(t, allowKeys)
	rec := f.do("GET", "/ext-authz/v1/videos", map[string][]string{
		"Authorization": {"Bearer " + f.key}, "X-Keygate-Account": {"evil"}, "X-Keygate-Admin": {"1"},
		"X-Keygate-Decision-Id": {"spoofed"},
	})
	if rec.Code != 200 {
		t.Fatalf("status %d, body %s", rec.Code, rec.Body)
	}
	// The decision id is keygate's own (the client's is overwritten, so it
	// is not in the removal list either).
	if id := rec.Header().Get(HeaderDecisionID); !decisionIDs.MatchString(id) || len(id) != 26 {
		t.Errorf("decision id %q is not a ULID", id)
	}
	rec.Header().Del(HeaderDecisionID)
	want := map[string]string{
		"X-Keygate-Account": "acme", "X-Keygate-Site": "acme-web", "X-Keygate-Key-Id": "key_1",
		"X-Keygate-Mode": "live", "X-Keygate-Plan": "pro",
		"X-Envoy-Auth-Headers-To-Remove": "authorization,x-keygate-admin",
		"Cache-Control":                  "no-store",
	}
	got := map[string]string{}
	for k := range rec.Header() {
		got[k] = rec.Header().Get(k)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("allow headers (-want +got):\n%s", diff)
	}

	// nginx and forward_auth strip with their own config, not Envoy's header.
	rec = f.do("GET", "/auth-request", map[string][]string{
		"X-Api-Key": {f.key}, "X-Original-Method": {"GET"}, "X-Original-Uri": {"/v1/videos"},
	})
	if rec.Code != 200 || rec.Header().Get("X-Keygate-Key-Id") != "key_1" || rec.Header().Get(envoyRemoveHeader) != "" {
		t.Errorf("nginx allow: %d %v", rec.Code, rec.Header())
	}
}

// TestForwardAuthDeny: a deny carries the same status, body and headers as
// over gRPC, and on the nginx endpoint also as headers auth_request can read.
func TestForwardAuthDeny(t *testing.T) {
	d := policies.Decision{Status: 429, Code: "RATE_LIMITED", Message: "Trop de requêtes 🚦", Rule: "rate",
		ResponseHeaders: map[string]string{"retry-after": "7"}}
	f := newForwardAuthFixture(t, func(*policies.Input) policies.Decision { return d })
	wantBody := DenyBody(d)
	for _, target := range []string{"/ext-authz/v1/videos", "/auth-request", "/forward-auth"} {
		t.Run(target, func(t *testing.T) {
			rec := f.do("GET", target, map[string][]string{
				"X-Original-Method": {"GET"}, "X-Original-Uri": {"/v1/videos"},
				"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/v1/videos"},
			})
			if rec.Code != 429 {
				t.Fatalf("status %d", rec.Code)
			}
			if diff := cmp.Diff(string(wantBody), rec.Body.String()); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			for k, v := range DenyHeaders(d, false) {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			nginx := target == "/auth-request"
			if got := rec.Header().Get(HeaderDenyStatus); (got == "429") != nginx {
				t.Errorf("%s = %q (nginx endpoint: %v)", HeaderDenyStatus, got, nginx)
			}
			if !nginx {
				return
			}
			hb := rec.Header().Get(HeaderDenyBody)
			for _, c := range []byte(hb) {
				if c < 0x20 || c > 0x7e {
					t.Fatalf("%s has a non-printable byte: %q", HeaderDenyBody, hb)
				}
			}
			var fromHeader, fromBody any
			if err := json.Unmarshal([]byte(hb), &fromHeader); err != nil {
				t.Fatal(err)
			}
			_ = json.Unmarshal(wantBody, &fromBody)
			if diff := cmp.Diff(fromBody, fromHeader); diff != "" {
				t.Errorf("body header means something else (-body +header):\n%s", diff)
			}
		})
	}
}

// TestForwardAuthPassesOtherRequests: everything else reaches the mux.
func TestForwardAuthPassesOtherRequests(t *testing.T) {
	f := newForwardAuthFixture(t, allowKeys)
	for _, target := range []string{"/health", "/auth/api-key", "/ext-authzx", "/auth-request/x", "/metrics"} {
		if rec := f.do("GET", target, nil); rec.Code != http.StatusTeapot {
			t.Errorf("%s: status %d, want the next handler's 418", target, rec.Code)
		}
	}
	if f.policy.seen != nil {
		t.Error("the policy was asked about a non-forward-auth request")
	}
}
