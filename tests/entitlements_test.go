package tests

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// entitledKey creates a key of site "web" with the CLI's entitlement flags
// and returns its id and secret.
func entitledKey(t *testing.T, env *Env, flags ...string) (id, key string) {
	t.Helper()
	out := env.CLI(append([]string{"keys", "create", "--site", "web", "--mode", "live", "--json"}, flags...)...)
	var created struct{ ID, Key string }
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.ID == "" || created.Key == "" {
		t.Fatalf("keys create --json: %q: %v", out, err)
	}
	return created.ID, created.Key
}

// checkFrom is Check from a client address, as Envoy sends it.
func (s *Server) checkFrom(t *testing.T, method, path, source string, headers map[string]string) *authv3.CheckResponse {
	t.Helper()
	req := CheckRequest(method, path, headers)
	req.Attributes.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
		SocketAddress: &corev3.SocketAddress{Address: source, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 50000}}}}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := s.client.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check: gRPC error %v", err)
	}
	return resp
}

// forwardAuth asks the Traefik/Caddy endpoint about a request; xff, when
// set, is the X-Forwarded-For the proxy sends. It returns the status, the
// decoded JSON body of a deny and the response headers.
func (s *Server) forwardAuth(t *testing.T, method, uri, key, xff string, extra map[string]string) (int, map[string]any, http.Header) {
	t.Helper()
	forwarded := map[string]string{
		"X-Forwarded-Method": method,
		"X-Forwarded-Uri":    uri,
		"X-Forwarded-Host":   "api.example.test",
		"Authorization":      "Bearer " + key,
	}
	if xff != "" {
		forwarded["X-Forwarded-For"] = xff
	}
	status, header, raw := send(t, "GET", "http://"+s.HTTPAddr+"/forward-auth", "", forwarded, extra)
	var body map[string]any
	if status != 200 {
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Fatalf("forward-auth %d: body not JSON: %v", status, err)
		}
	}
	return status, body, header
}

func upstreamHeaders(resp *authv3.CheckResponse) map[string]string {
	h := map[string]string{}
	for _, o := range resp.GetOkResponse().GetHeaders() {
		h[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
	}
	return h
}

func entitlementsEnv(t *testing.T) *Env {
	t.Helper()
	env := NewEnv(t)
	env.Seed("acme", "pro", "web")
	return env
}

// TestEntitlementsThroughTheBinary: scopes, allowed CIDRs and metadata set
// with the CLI decide over gRPC and forward-auth; keygate check explains a
// scope refusal; a scope change reaches the running server.
func TestEntitlementsThroughTheBinary(t *testing.T) {
	env := entitlementsEnv(t)
	scopedID, scoped := entitledKey(t, env, "--scope", "videos:read")
	_, cidr := entitledKey(t, env, "--allow-cidr", "10.0.0.0/8")
	_, meta := entitledKey(t, env, "--meta", "tier=gold")
	_, plain := entitledKey(t, env)
	srv := env.Serve("--trusted-proxies", "127.0.0.0/8", "--change-poll", "200ms")
	bearer := func(k string) map[string]string { return map[string]string{"authorization": "Bearer " + k} }

	t.Run("scopes over gRPC", func(t *testing.T) {
		if got := decision(t, srv.Check(t, "GET", "/v1/videos/1", bearer(scoped))); got != "allow" {
			t.Fatalf("GET /v1/videos/1 with videos:read: %s", got)
		}
		body := deniedWith(t, srv.Check(t, "POST", "/v1/videos", bearer(scoped)), 403, "INSUFFICIENT_SCOPE")
		if body["required_scope"] != "videos:write" {
			t.Fatalf("body %v", body)
		}
	})
	t.Run("scopes over forward-auth", func(t *testing.T) {
		if status, body, _ := srv.forwardAuth(t, "GET", "/v1/videos/1", scoped, "", nil); status != 200 {
			t.Fatalf("GET: %d %v", status, body)
		}
		status, body, _ := srv.forwardAuth(t, "POST", "/v1/videos", scoped, "", nil)
		if status != 403 || body["code"] != "INSUFFICIENT_SCOPE" || body["required_scope"] != "videos:write" {
			t.Fatalf("POST: %d %v", status, body)
		}
	})
	t.Run("scope re-spellings on both transports", func(t *testing.T) {
		// Every spelling an upstream may take for a write to /v1/videos is
		// refused for a videos:read key, whatever the refusal's code.
		for _, w := range [][2]string{
			{"POST", "/v1/%76ideos"}, {"POST", "/V1/videos"}, {"POST", "/v1/Videos"}, {"POST", "/v1//videos"},
			{"POST", "/v1/./videos"}, {"POST", "/v1/videos/"}, {"POST", "/v1/videos%2Fx"}, {"post", "/v1/videos"},
		} {
			if got := decision(t, srv.Check(t, w[0], w[1], bearer(scoped))); got == "allow" {
				t.Errorf("gRPC %s %s with videos:read: allowed", w[0], w[1])
			}
			if status, _, _ := srv.forwardAuth(t, w[0], w[1], scoped, "", nil); status == 200 {
				t.Errorf("forward-auth %s %s with videos:read: allowed", w[0], w[1])
			}
		}
		// A read spelled with an encoded letter is the same read.
		if got := decision(t, srv.Check(t, "GET", "/v1/%76ideos/1", bearer(scoped))); got != "allow" {
			t.Errorf("gRPC GET /v1/%%76ideos/1: %s", got)
		}
	})
	t.Run("allowed CIDRs over gRPC", func(t *testing.T) {
		deniedWith(t, srv.checkFrom(t, "GET", "/v1/videos", "192.0.2.1", bearer(cidr)), 403, "IP_NOT_ALLOWED")
		deniedWith(t, srv.Check(t, "GET", "/v1/videos", bearer(cidr)), 403, "IP_NOT_ALLOWED") // no address: refused
		if got := decision(t, srv.checkFrom(t, "GET", "/v1/videos", "10.20.30.40", bearer(cidr))); got != "allow" {
			t.Fatalf("from inside: %s", got)
		}
	})
	t.Run("allowed CIDRs over forward-auth", func(t *testing.T) {
		// keygate's peer is 127.0.0.1, a trusted proxy: the client is the
		// last X-Forwarded-For entry.
		if status, body, _ := srv.forwardAuth(t, "GET", "/v1/videos", cidr, "10.1.2.3", nil); status != 200 {
			t.Fatalf("from 10.1.2.3: %d %v", status, body)
		}
		if status, body, _ := srv.forwardAuth(t, "GET", "/v1/videos", cidr, "10.1.2.3, 198.51.100.7", nil); status != 403 || body["code"] != "IP_NOT_ALLOWED" {
			t.Fatalf("from 198.51.100.7 claiming 10.1.2.3: %d %v", status, body)
		}
	})
	t.Run("meta", func(t *testing.T) {
		h := bearer(meta)
		h["x-keygate-meta-tier"] = "platinum"
		resp := srv.Check(t, "GET", "/v1/videos", h)
		if got := upstreamHeaders(resp)["x-keygate-meta-tier"]; got != "gold" {
			t.Fatalf("x-keygate-meta-tier upstream = %q, want gold", got)
		}
		h = bearer(plain)
		h["x-keygate-meta-tier"] = "gold"
		resp = srv.Check(t, "GET", "/v1/videos", h)
		if _, ok := upstreamHeaders(resp)["x-keygate-meta-tier"]; ok || !contains(resp.GetOkResponse().GetHeadersToRemove(), "x-keygate-meta-tier") {
			t.Fatalf("client-sent x-keygate-meta-tier: set %v, removed %v", upstreamHeaders(resp), resp.GetOkResponse().GetHeadersToRemove())
		}
		_, _, hdr := srv.forwardAuth(t, "GET", "/v1/videos", meta, "", map[string]string{"X-Keygate-Meta-Tier": "platinum"})
		if hdr.Get("x-keygate-meta-tier") != "gold" {
			t.Fatalf("forward-auth: x-keygate-meta-tier %q", hdr.Get("x-keygate-meta-tier"))
		}
	})
	t.Run("check explains", func(t *testing.T) {
		out, _, err := env.TryCLI("check", "--method", "POST", "--path", "/v1/videos", "-H", "Authorization: Bearer "+scoped)
		if exitCode(err) != 3 {
			t.Fatalf("check: %v, want exit 3", err)
		}
		var x struct {
			Code, Rule string
			Why        struct{ Title, Description string }
			Body       map[string]any
		}
		if err := json.Unmarshal([]byte(out), &x); err != nil {
			t.Fatalf("check output: %v\n%s", err, out)
		}
		if x.Code != "INSUFFICIENT_SCOPE" || x.Rule != "insufficient_scope" || x.Body["required_scope"] != "videos:write" ||
			!strings.Contains(x.Why.Description, "required_scope") {
			t.Fatalf("check: %+v", x)
		}
		out, _, err = env.TryCLI("check", "--path", "/v1/videos", "--client-address", "10.0.0.1", "-H", "Authorization: Bearer "+cidr)
		if err != nil || !strings.Contains(out, `"client_address": "10.0.0.1"`) {
			t.Fatalf("check --client-address: %v\n%s", err, out)
		}
	})
	t.Run("scope change on a running server", func(t *testing.T) {
		env.CLI("keys", "update", scopedID, "--scope", "videos:write")
		start := time.Now()
		Eventually(t, 10*time.Second, "the new scopes to apply", func() bool {
			return decision(t, srv.Check(t, "POST", "/v1/videos", bearer(scoped))) == "allow"
		})
		t.Logf("scope change applied after %v", time.Since(start))
		deniedWith(t, srv.Check(t, "GET", "/v1/videos/1", bearer(scoped)), 403, "INSUFFICIENT_SCOPE")
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestKeyRateThroughTheBinary: a key's own rate replaces its plan's.
func TestKeyRateThroughTheBinary(t *testing.T) {
	env := entitlementsEnv(t)
	_, limited := entitledKey(t, env, "--rate", "2")
	_, plain := entitledKey(t, env)
	srv := env.Serve()
	auth := map[string]string{"authorization": "Bearer " + limited}
	for i := range 2 {
		resp := srv.Check(t, "GET", "/v1/videos", auth)
		if !allowed(resp) || clientHeaders(resp)["ratelimit-limit"] != "2" {
			t.Fatalf("request %d: %s %v", i, decision(t, resp), clientHeaders(resp))
		}
	}
	deniedWith(t, srv.Check(t, "GET", "/v1/videos", auth), 429, "RATE_LIMITED")
	resp := srv.Check(t, "GET", "/v1/videos", map[string]string{"authorization": "Bearer " + plain})
	if !allowed(resp) || clientHeaders(resp)["ratelimit-limit"] != "300" {
		t.Fatalf("a key without its own rate: %s %v", decision(t, resp), clientHeaders(resp))
	}
}

// TestKeyUsesAcrossReplicasPostgres: a key with 3 uses allows exactly 3
// metered requests, sent at once to two replicas on one PostgreSQL, then
// refuses USAGE_EXHAUSTED on both; unmetered requests spend nothing.
func TestKeyUsesAcrossReplicasPostgres(t *testing.T) {
	env := postgresEnv(t)
	a := env.Serve()
	b := env.Serve()
	env.Seed("acme", "pro", "web")
	_, key := entitledKey(t, env, "--uses", "3")
	auth := map[string]string{"authorization": "Bearer " + key}
	for _, s := range []*Server{a, b} { // unmetered: free, and caches the key on both
		if got := decision(t, s.Check(t, "GET", "/v1/videos", auth)); got != "allow" {
			t.Fatalf("unmetered: %s", got)
		}
	}
	var ok, exhausted atomic.Int32
	burst(10, func(i int) {
		s := []*Server{a, b}[i%2]
		switch got := decision(t, s.Check(t, "POST", "/v1/audio/generate", auth)); got {
		case "allow":
			ok.Add(1)
		case "403 USAGE_EXHAUSTED":
			exhausted.Add(1)
		default:
			t.Errorf("metered request: %s", got)
		}
	})
	if ok.Load() != 3 || exhausted.Load() != 7 {
		t.Fatalf("allowed %d, exhausted %d: want exactly 3 and 7", ok.Load(), exhausted.Load())
	}
	for _, s := range []*Server{a, b} {
		deniedWith(t, s.Check(t, "POST", "/v1/audio/generate", auth), 403, "USAGE_EXHAUSTED")
	}
	// Routes that spend no use still answer for the spent key.
	for _, s := range []*Server{a, b} {
		if got := decision(t, s.Check(t, "GET", "/v1/videos", auth)); got != "allow" {
			t.Fatalf("unmetered after the last use: %s", got)
		}
	}
}
