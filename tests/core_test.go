package tests

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"regexp"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/keygate/keygate/keystore"
)

// createdKey is `keygate keys create --json`.
type createdKey struct {
	ID   string `json:"id"`
	Key  string `json:"key"`
	Mode string `json:"mode"`
}

func createKey(t *testing.T, env *Env, site, mode string, extra ...string) createdKey {
	t.Helper()
	out := env.CLI(append([]string{"keys", "create", "--site", site, "--mode", mode, "--json"}, extra...)...)
	var k createdKey
	if err := json.Unmarshal([]byte(out), &k); err != nil || k.ID == "" || k.Key == "" {
		t.Fatalf("keys create --json: %v: %s", err, out)
	}
	return k
}

// allowedWith returns the upstream headers an allow sets, failing on a deny.
func allowedWith(t *testing.T, resp *authv3.CheckResponse) (set map[string]string, removed []string) {
	t.Helper()
	ok := resp.GetOkResponse()
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK || ok == nil {
		t.Fatalf("want allow, got %v", resp)
	}
	set = map[string]string{}
	for _, h := range ok.GetHeaders() {
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("header %s is not overwritten: %v", h.GetHeader().GetKey(), h.GetAppendAction())
		}
		set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return set, ok.GetHeadersToRemove()
}

// denied returns the HTTP status and the body's code, failing on an allow.
func denied(t *testing.T, resp *authv3.CheckResponse) (int, string) {
	t.Helper()
	d := resp.GetDeniedResponse()
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK || d == nil {
		t.Fatalf("want deny, got %v", resp)
	}
	var body struct{ Code, Message string }
	if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
		t.Fatalf("deny body %q: %v", d.GetBody(), err)
	}
	ct := ""
	for _, h := range d.GetHeaders() {
		if h.GetHeader().GetKey() == "content-type" {
			ct = h.GetHeader().GetValue()
		}
	}
	if ct != "application/json" {
		t.Errorf("deny content-type = %q", ct)
	}
	return int(d.GetStatus().GetCode()), body.Code
}

func wantDeny(t *testing.T, resp *authv3.CheckResponse, status int, code string) {
	t.Helper()
	if gotStatus, gotCode := denied(t, resp); gotStatus != status || gotCode != code {
		t.Fatalf("denied %d %s, want %d %s", gotStatus, gotCode, status, code)
	}
}

// TestCore is issue 2's end-to-end story: keys made by the CLI, decided by
// a running keygate over real gRPC.
func TestCore(t *testing.T) {
	env := NewEnv(t)
	env.CLI("accounts", "create", "--id", "acme", "--plan", "pro")
	env.CLI("sites", "create", "--id", "acme-web", "--account", "acme", "--domain", "acme.com")
	live := createKey(t, env, "acme-web", "live")
	test := createKey(t, env, "acme-web", "test")
	srv := env.Serve()

	t.Run("allow for each scheme with identity headers", func(t *testing.T) {
		tests := []struct {
			name    string
			key     createdKey
			headers map[string]string
			removed []string
		}{
			{"bearer live", live, bearer(live.Key), []string{"authorization"}},
			{"bearer test", test, map[string]string{"authorization": "bearer " + test.Key}, []string{"authorization"}},
			{"basic live", live, map[string]string{"authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(live.Key+":"))}, []string{"authorization"}},
			{"x-api-key test", test, map[string]string{"x-api-key": test.Key}, []string{"x-api-key"}},
			{"x-api-key live", live, map[string]string{"X-API-Key": live.Key}, []string{"x-api-key"}},
			{"same key twice", live, map[string]string{"authorization": "Bearer " + live.Key, "x-api-key": live.Key}, []string{"authorization", "x-api-key"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				set, removed := allowedWith(t, srv.Check(t, "GET", "/v1/videos", tt.headers))
				// The decision id is the upstream's too (decision log, support).
				if id := set["x-keygate-decision-id"]; len(id) != 26 {
					t.Errorf("upstream decision id %q", id)
				}
				delete(set, "x-keygate-decision-id")
				want := map[string]string{
					"x-keygate-account": "acme", "x-keygate-site": "acme-web", "x-keygate-key-id": tt.key.ID,
					"x-keygate-mode": tt.key.Mode, "x-keygate-plan": "pro", "x-keygate-concurrency": "3",
				}
				if diff := cmp.Diff(want, set); diff != "" {
					t.Errorf("identity headers (-want +got):\n%s", diff)
				}
				slices.Sort(removed)
				if diff := cmp.Diff(tt.removed, removed); diff != "" {
					t.Errorf("removed headers (-want +got):\n%s", diff)
				}
			})
		}
	})

	t.Run("denials", func(t *testing.T) {
		badChecksum := live.Key[:len(live.Key)-1] + flip(live.Key[len(live.Key)-1])
		// Well-formed (valid checksum) but never stored.
		unknown, err := keystore.Format{Prefix: "kg"}.Generate(keystore.ModeLive)
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name    string
			headers map[string]string
			status  int
			code    string
		}{
			{"no credential", nil, 401, "MISSING_API_KEY"},
			{"garbage", bearer("garbage"), 401, "INVALID_API_KEY"},
			{"bad checksum", map[string]string{"x-api-key": badChecksum}, 401, "INVALID_API_KEY"},
			{"unknown well-formed key", bearer(unknown.Reveal()), 401, "INVALID_API_KEY"},
			{"two different keys", map[string]string{"authorization": "Bearer " + live.Key, "x-api-key": test.Key}, 400, "AMBIGUOUS_CREDENTIALS"},
			{"two authorization values", map[string]string{"authorization": "Bearer " + live.Key + ",Bearer " + test.Key}, 400, "AMBIGUOUS_CREDENTIALS"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				wantDeny(t, srv.Check(t, "GET", "/v1/videos", tt.headers), tt.status, tt.code)
			})
		}
	})

	t.Run("malformed keys never reach the store", func(t *testing.T) {
		before := srv.Metric(t, "keygate_store_lookups_total")
		bad := live.Key[:len(live.Key)-1] + flip(live.Key[len(live.Key)-1])
		for _, h := range []map[string]string{bearer(bad), bearer("garbage"), {"x-api-key": live.Key + "x"}, {"x-api-key": live.Key[:20]}} {
			wantDeny(t, srv.Check(t, "GET", "/v1/videos", h), 401, "INVALID_API_KEY")
		}
		if after := srv.Metric(t, "keygate_store_lookups_total"); after != before {
			t.Fatalf("store lookups went from %v to %v for keys that fail the offline checks", before, after)
		}
	})

	t.Run("spoofed identity headers are overwritten or removed", func(t *testing.T) {
		h := map[string]string{"x-api-key": test.Key, "x-keygate-mode": "live", "x-keygate-account": "evil", "x-keygate-role": "admin"}
		set, removed := allowedWith(t, srv.Check(t, "GET", "/v1/videos", h))
		if set["x-keygate-mode"] != "test" || set["x-keygate-account"] != "acme" {
			t.Errorf("identity headers = %v", set)
		}
		if !slices.Contains(removed, "x-keygate-role") {
			t.Errorf("client-sent x-keygate-role not removed: %v", removed)
		}
		// On a public route nothing is set, so every x-keygate-* goes.
		set, removed = allowedWith(t, srv.Check(t, "GET", "/health", map[string]string{"x-keygate-account": "evil"}))
		if _, ok := set["x-keygate-account"]; ok || !slices.Contains(removed, "x-keygate-account") {
			t.Errorf("public route: set %v, removed %v", set, removed)
		}
	})

	t.Run("health route needs no key", func(t *testing.T) {
		allowedWith(t, srv.Check(t, "GET", "/health", nil))
		wantDeny(t, srv.Check(t, "GET", "/health/../v1/videos", nil), 400, "INVALID_PATH")
	})

	t.Run("grpc health service", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, service := range []string{"", "envoy.service.auth.v3.Authorization"} {
			resp, err := healthpb.NewHealthClient(srv.Conn()).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("health %q: %v, %v", service, resp, err)
			}
		}
	})

	t.Run("expired key", func(t *testing.T) {
		expiresAt := time.Now().Add(5 * time.Second).UTC().Truncate(time.Second)
		expiring := createKey(t, env, "acme-web", "live", "--expires-at", expiresAt.Format(time.RFC3339))
		allowedWith(t, srv.Check(t, "GET", "/v1/videos", bearer(expiring.Key)))
		// Ask only once the clock has passed expires_at: polling the key
		// every 10 ms would run into the plan's rate limit first.
		Eventually(t, 15*time.Second, "the key to expire", func() bool {
			if time.Now().Before(expiresAt) {
				return false
			}
			return srv.Check(t, "GET", "/v1/videos", bearer(expiring.Key)).GetDeniedResponse() != nil
		})
		wantDeny(t, srv.Check(t, "GET", "/v1/videos", bearer(expiring.Key)), 401, "API_KEY_EXPIRED")
	})

	// Last: it revokes the live key.
	t.Run("revocation in another process reaches a cached key", func(t *testing.T) {
		allowedWith(t, srv.Check(t, "GET", "/v1/videos", bearer(live.Key)))
		before := srv.Metric(t, "keygate_store_lookups_total")
		for range 50 {
			allowedWith(t, srv.Check(t, "GET", "/v1/videos", bearer(live.Key)))
		}
		if after := srv.Metric(t, "keygate_store_lookups_total"); after != before {
			t.Fatalf("50 checks of a cached key read the store %v times", after-before)
		}

		env.CLI("keys", "revoke", live.ID)
		revokedAt := time.Now()
		Eventually(t, time.Second, "API_KEY_REVOKED after `keygate keys revoke`", func() bool {
			return srv.Check(t, "GET", "/v1/videos", bearer(live.Key)).GetDeniedResponse() != nil
		})
		t.Logf("revocation reached the server %v after the CLI returned", time.Since(revokedAt).Round(time.Millisecond))
		for range 50 {
			wantDeny(t, srv.Check(t, "GET", "/v1/videos", bearer(live.Key)), 401, "API_KEY_REVOKED")
		}
		// One read of the revoked facts, then the cache again.
		if after := srv.Metric(t, "keygate_store_lookups_total"); after != before+1 {
			t.Fatalf("store lookups went from %v to %v; want one reload after the revocation", before, after)
		}
		// The other key of the site is untouched.
		allowedWith(t, srv.Check(t, "GET", "/v1/videos", bearer(test.Key)))
	})
}

// TestDemo: `keygate serve --demo` prints a live and a test key that work.
func TestDemo(t *testing.T) {
	env := NewEnv(t)
	srv := env.Serve("--demo")
	for mode, key := range srv.demoKeys(t) {
		set, _ := allowedWith(t, srv.Check(t, "GET", "/v1/videos", bearer(key)))
		if set["x-keygate-mode"] != mode || set["x-keygate-site"] != "demo-site" || set["x-keygate-account"] != "demo" {
			t.Errorf("demo %s key: identity %v", mode, set)
		}
	}
}

var demoKeyLine = regexp.MustCompile(`(?m)^\s+(live|test)\s+(kg_(?:live|test)_[0-9A-Za-z]{36})\s`)

// demoKeys waits for the live and the test key that `serve --demo`
// prints, and returns them by mode.
func (s *Server) demoKeys(t *testing.T) map[string]string {
	t.Helper()
	keys := map[string]string{}
	Eventually(t, 10*time.Second, "the demo keys on stdout", func() bool {
		for _, k := range demoKeyLine.FindAllStringSubmatch(s.Logs(), -1) {
			keys[k[1]] = k[2]
		}
		return len(keys) == 2
	})
	return keys
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}
