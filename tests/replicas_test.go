package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/internal/pgtest"
)

const adminToken = "e2e-admin-token-0123456789"

// Admin calls the server's admin API with the test token (or auth, when
// given) and returns the status and the decoded JSON object.
func (s *Server) Admin(t *testing.T, method, path, body string, auth ...string) (int, map[string]any) {
	t.Helper()
	if s.AdminAddr == "" {
		t.Fatal("admin API is off (no admin= in the serving line)")
	}
	authorization := "Bearer " + adminToken
	if len(auth) > 0 {
		authorization = auth[0]
	}
	status, _, raw := send(t, method, "http://"+s.AdminAddr+path, body, map[string]string{"Authorization": authorization})
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: not JSON: %q", method, path, raw)
	}
	return status, out
}

// MustAdmin is Admin that fails the test on an unexpected status.
func (s *Server) MustAdmin(t *testing.T, method, path, body string, status int) map[string]any {
	t.Helper()
	got, out := s.Admin(t, method, path, body)
	if got != status {
		t.Fatalf("%s %s %s: status %d, want %d: %v", method, path, body, got, status, out)
	}
	return out
}

// decision summarizes a CheckResponse: "allow" or "<status> <code>".
func decision(t *testing.T, resp *authv3.CheckResponse) string {
	t.Helper()
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		return "allow"
	}
	var body struct{ Code string }
	_ = json.Unmarshal([]byte(resp.GetDeniedResponse().GetBody()), &body)
	return fmt.Sprintf("%d %s", resp.GetDeniedResponse().GetStatus().GetCode(), body.Code)
}

// decideKey sends a Bearer key to a key route and returns "allow" or "STATUS CODE".
func (s *Server) decideKey(t *testing.T, key string) string {
	t.Helper()
	return decision(t, s.Check(t, "GET", "/v1/videos", map[string]string{"authorization": "Bearer " + key}))
}

// postgresEnv is an Env on a fresh PostgreSQL database with the admin API on.
func postgresEnv(t *testing.T) *Env {
	t.Helper()
	env := NewEnv(t)
	env.Store = pgtest.NewDatabase(t, os.Getenv)
	env.Vars = append(env.Vars, "KEYGATE_ADMIN_TOKEN="+adminToken)
	return env
}

// postgresOutageEnv is a postgresEnv whose processes reach the database
// through a proxy the test can cut (p.Down) and restore (p.Up).
func postgresOutageEnv(t *testing.T) (*Env, *proxy) {
	t.Helper()
	env := postgresEnv(t)
	u, err := url.Parse(env.Store)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, u.Host)
	env.Store = pgtest.WithHost(t, env.Store, p.addr)
	return env, p
}

// Two replicas on one PostgreSQL: what one writes through its admin API, the
// other decides by, and revocations reach it through NOTIFY. Replica B polls
// the log only once a minute, so nothing but NOTIFY can explain a fast
// propagation to it.
func TestReplicasPostgres(t *testing.T) {
	env := postgresEnv(t)
	a := env.Serve()
	b := env.Serve("--change-poll", "1m")

	a.MustAdmin(t, "POST", "/admin/v1/accounts", `{"id":"acme","plan":"pro"}`, 201)
	a.MustAdmin(t, "POST", "/admin/v1/sites", `{"id":"web","account":"acme"}`, 201)
	created := a.MustAdmin(t, "POST", "/admin/v1/keys", `{"site":"web","mode":"live","name":"first"}`, 201)
	key := created["key"].(string)
	if got := b.decideKey(t, key); got != "allow" {
		t.Fatalf("key created on A: B says %s", got)
	}

	t.Run("revoke", func(t *testing.T) {
		a.MustAdmin(t, "POST", "/admin/v1/keys/"+created["id"].(string)+"/revoke", "", 200)
		Eventually(t, 10*time.Second, "B to deny the revoked key", func() bool { return b.decideKey(t, key) == "401 API_KEY_REVOKED" })
	})

	t.Run("rotate", func(t *testing.T) {
		old := a.MustAdmin(t, "POST", "/admin/v1/keys", `{"site":"web","mode":"live"}`, 201)["key"].(string)
		if got := b.decideKey(t, old); got != "allow" {
			t.Fatalf("B before rotation: %s", got)
		}
		rotated := a.MustAdmin(t, "POST", "/admin/v1/sites/web/rotate-key", "", 201)
		Eventually(t, 10*time.Second, "B to deny the rotated-away key", func() bool { return b.decideKey(t, old) == "401 API_KEY_REVOKED" })
		if got := b.decideKey(t, rotated["key"].(string)); got != "allow" {
			t.Errorf("new key after rotation: B says %s", got)
		}
	})

	t.Run("rotate with grace", func(t *testing.T) {
		old := a.MustAdmin(t, "POST", "/admin/v1/keys", `{"site":"web","mode":"live"}`, 201)["key"].(string)
		b.decideKey(t, old)
		a.MustAdmin(t, "POST", "/admin/v1/sites/web/rotate-key", `{"grace":"1h"}`, 201)
		// Give B every chance to apply the rotation, then check the old key
		// still works: the grace window, not a lost update.
		marker := a.MustAdmin(t, "POST", "/admin/v1/keys", `{"site":"web","mode":"test"}`, 201)
		a.MustAdmin(t, "POST", "/admin/v1/keys/"+marker["id"].(string)+"/revoke", "", 200)
		b.decideKey(t, marker["key"].(string))
		Eventually(t, 10*time.Second, "B to apply the marker revocation", func() bool { return b.decideKey(t, marker["key"].(string)) == "401 API_KEY_REVOKED" })
		if got := b.decideKey(t, old); got != "allow" {
			t.Errorf("old key inside its grace window: B says %s", got)
		}
	})

	t.Run("propagation", func(t *testing.T) {
		const n = 100
		keys := make([]map[string]any, n)
		for i := range keys {
			keys[i] = a.MustAdmin(t, "POST", "/admin/v1/keys", `{"site":"web","mode":"live"}`, 201)
			if got := b.decideKey(t, keys[i]["key"].(string)); got != "allow" { // now cached on B
				t.Fatalf("key %d on B: %s", i, got)
			}
		}
		lags := make([]time.Duration, 0, n)
		for _, k := range keys {
			start := time.Now()
			a.MustAdmin(t, "POST", "/admin/v1/keys/"+k["id"].(string)+"/revoke", "", 200)
			deadline := start.Add(10 * time.Second)
			for b.decideKey(t, k["key"].(string)) != "401 API_KEY_REVOKED" {
				if time.Now().After(deadline) {
					t.Fatalf("revocation of %s not seen by B within 10s", k["id"])
				}
				time.Sleep(time.Millisecond)
			}
			lags = append(lags, time.Since(start))
		}
		sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
		t.Logf("revocation propagation A→B over %d revocations (admin call + NOTIFY + B's next Check): p50 %v, p99 %v, max %v",
			n, lags[n/2], lags[n*99/100-1], lags[n-1])
		count, sum := b.Metric(t, "keygate_change_propagation_seconds_count"), b.Metric(t, "keygate_change_propagation_seconds_sum")
		if count < n {
			t.Errorf("B's propagation histogram counted %v changes, want at least %d", count, n)
		}
		t.Logf("B's keygate_change_propagation_seconds: %v changes, mean %.1fms", count, 1000*sum/count)
	})
}

// While PostgreSQL is unreachable, cached keys are decided for the
// stale-if-error window, unknown keys get 503, and keygate recovers when the
// database is back, without a restart.
func TestStoreOutagePostgres(t *testing.T) {
	env, p := postgresOutageEnv(t)
	env.Seed("acme", "pro", "web")
	cached := env.NewKey("web", "live")
	uncached := env.NewKey("web", "live")
	const window = 10 * time.Second
	srv := env.Serve("--stale-if-error", window.String())
	if got := srv.decideKey(t, cached); got != "allow" {
		t.Fatalf("before the outage: %s", got)
	}

	p.Down()
	cut := time.Now()
	if got := srv.decideKey(t, cached); got != "allow" {
		t.Errorf("cached key %v into the outage (window %v): %s", time.Since(cut), window, got)
	}
	if got := srv.decideKey(t, uncached); got != "503 AUTHZ_UNAVAILABLE" {
		t.Errorf("uncached key during the outage: %s", got)
	}
	if got := srv.decideKey(t, "kg_live_garbage"); got != "401 INVALID_API_KEY" {
		t.Errorf("malformed key during the outage: %s (decided offline, never 503)", got)
	}
	Eventually(t, 3*window, "the cached key to stop being trusted past the window", func() bool {
		return srv.decideKey(t, cached) == "503 AUTHZ_UNAVAILABLE"
	})
	t.Logf("cached key trusted for %v of outage (window %v)", time.Since(cut).Round(100*time.Millisecond), window)

	p.Up()
	Eventually(t, 30*time.Second, "keygate to recover", func() bool {
		return srv.decideKey(t, cached) == "allow" && srv.decideKey(t, uncached) == "allow"
	})
	// And it follows the log again: a revocation made now is applied.
	env.CLI("keys", "revoke", keyID(t, env, "web", cached))
	Eventually(t, 10*time.Second, "a revocation after recovery", func() bool { return srv.decideKey(t, cached) == "401 API_KEY_REVOKED" })
}

// keyID finds a key's id by its display prefix in `keys list --json`.
func keyID(t *testing.T, env *Env, site, key string) string {
	t.Helper()
	var list struct {
		Keys []struct{ ID, Prefix string }
	}
	if err := json.Unmarshal([]byte(env.CLI("keys", "list", "--site", site, "--json")), &list); err != nil {
		t.Fatal(err)
	}
	for _, k := range list.Keys {
		if strings.HasPrefix(key, k.Prefix) {
			return k.ID
		}
	}
	t.Fatalf("no key with the prefix of %s", key[:12])
	return ""
}

// CLIStdin runs a keygate command with stdin.
func (e *Env) CLIStdin(stdin string, args ...string) (string, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := e.command(ctx, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
