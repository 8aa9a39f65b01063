package tests

import (
	"encoding/json"
	"fmt"
	"io/fs"
	neturl "net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/policies"
)

// limitsPolicy writes the built-in policy (without its tests, which assert
// the default numbers) to a directory, with the limits section of data.yaml
// replaced by section (indented as in data.yaml, starting "    limits:").
func limitsPolicy(t *testing.T, section string) string {
	t.Helper()
	return policyDirWith(t, func(data string) string { return replaceLimits(t, data, section) })
}

// policyDirWith writes the built-in policy (without its tests) to a
// temporary directory, with data.yaml passed through edit.
func policyDirWith(t *testing.T, edit func(data string) string) string {
	t.Helper()
	dir := t.TempDir()
	err := fs.WalkDir(policies.Default(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, "_test.rego") {
			return err
		}
		b, err := fs.ReadFile(policies.Default(), path)
		if err != nil {
			return err
		}
		if path == "data.yaml" {
			b = []byte(edit(string(b)))
		}
		return os.WriteFile(filepath.Join(dir, path), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// replaceLimits swaps the "    limits:" block (up to the next key of the
// same indentation) for section.
func replaceLimits(t *testing.T, data, section string) string {
	t.Helper()
	start := strings.Index(data, "\n    limits:\n")
	if start < 0 {
		t.Fatal("data.yaml has no limits section")
	}
	rest := data[start+1:]
	end := len(rest)
	lines := strings.SplitAfter(rest, "\n")
	off := len(lines[0])
	for _, l := range lines[1:] {
		if len(l) > 4 && strings.HasPrefix(l, "    ") && l[4] != ' ' && l[4] != '#' {
			end = off
			break
		}
		off += len(l)
	}
	return data[:start+1] + strings.TrimRight(section, "\n") + "\n" + rest[end:]
}

func allowed(resp *authv3.CheckResponse) bool {
	return codes.Code(resp.GetStatus().GetCode()) == codes.OK
}

// clientHeaders are the headers keygate sends to the client: added to the
// upstream's response on allow, or on the denied response.
func clientHeaders(resp *authv3.CheckResponse) map[string]string {
	h := map[string]string{}
	for _, o := range resp.GetOkResponse().GetResponseHeadersToAdd() {
		h[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
	}
	for _, o := range resp.GetDeniedResponse().GetHeaders() {
		h[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
	}
	return h
}

func deniedWith(t *testing.T, resp *authv3.CheckResponse, status int, code string) map[string]any {
	t.Helper()
	d := resp.GetDeniedResponse()
	var body map[string]any
	if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
		t.Fatalf("want a %d %s deny, got %v", status, code, resp)
	}
	if int(d.GetStatus().GetCode()) != status || body["code"] != code {
		t.Fatalf("want %d %s, got %d %s", status, code, d.GetStatus().GetCode(), d.GetBody())
	}
	return body
}

const tinyRate = `    limits:
      plans:
        plus: {rate: 3, period: 1h, quota: 1000}
      costs:
        - {prefix: /v1/audio/generate, methods: [POST], rate: 1, quota: 1}
        - {prefix: /v1/usage, rate: 0}
      default_cost: {rate: 1, quota: 0}
`

func plusSite(env *Env) {
	env.Seed("acme", "plus", "acme-web")
}

func TestRateLimitedThroughTheBinary(t *testing.T) {
	env := NewEnv(t)
	plusSite(env)
	live, test := env.NewKey("acme-web", "live"), env.NewKey("acme-web", "test")
	srv := env.Serve("--policies", limitsPolicy(t, tinyRate))
	auth := map[string]string{"x-api-key": live}

	for i := range 3 {
		resp := srv.Check(t, "GET", "/v1/videos", auth)
		if !allowed(resp) {
			t.Fatalf("request %d refused: %v", i, resp)
		}
		h := clientHeaders(resp)
		if h["ratelimit-limit"] != "3" || h["ratelimit-remaining"] != strconv.Itoa(2-i) || h["ratelimit-policy"] != "3;w=3600" {
			t.Errorf("request %d: RateLimit headers %v", i, h)
		}
	}
	resp := srv.Check(t, "GET", "/v1/videos", auth)
	deniedWith(t, resp, 429, "RATE_LIMITED")
	h := clientHeaders(resp)
	retry, err := strconv.Atoi(h["retry-after"])
	// One request per 20 minutes: the next is due 20 minutes after the first.
	if err != nil || retry < 1100 || retry > 1200 {
		t.Errorf("retry-after %q, want about 1200 s", h["retry-after"])
	}
	if h["ratelimit-limit"] != "3" || h["ratelimit-remaining"] != "0" || h["ratelimit-reset"] == "" {
		t.Errorf("429 RateLimit headers: %v", h)
	}
	// Free routes charge nothing; test keys have their own counter.
	if resp := srv.Check(t, "GET", "/v1/usage", auth); !allowed(resp) {
		t.Errorf("free route refused: %v", resp)
	}
	if resp := srv.Check(t, "GET", "/v1/videos", map[string]string{"x-api-key": test}); !allowed(resp) {
		t.Errorf("test key refused by the live key's counter: %v", resp)
	}
	// A request refused for another reason charges nothing and stays that refusal.
	if resp := srv.Check(t, "GET", "/v1/sites/other/videos", auth); resp.GetDeniedResponse().GetStatus().GetCode() != 403 {
		t.Errorf("site mismatch: %v", resp)
	}
	if got := srv.Metric(t, `keygate_decisions_total{code="RATE_LIMITED"}`); got != 1 {
		t.Errorf("RATE_LIMITED decisions %v, want 1", got)
	}
}

func TestQuotaThroughTheBinary(t *testing.T) {
	env := NewEnv(t)
	plusSite(env)
	live, test := env.NewKey("acme-web", "live"), env.NewKey("acme-web", "test")
	env.CLI("limits", "set", "--site", "acme-web", "--set", "quota=3")
	srv := env.Serve()
	auth := map[string]string{"x-api-key": live}

	for i := range 3 {
		if resp := srv.Check(t, "POST", "/v1/audio/generate", auth); !allowed(resp) {
			t.Fatalf("generation %d refused: %v", i, resp)
		}
	}
	body := deniedWith(t, srv.Check(t, "POST", "/v1/audio/generate", auth), 403, "QUOTA_EXCEEDED")
	now := time.Now().UTC()
	want := time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339)
	if body["reset_at"] != want {
		t.Errorf("reset_at %v, want %s", body["reset_at"], want)
	}
	// Unmetered routes and test keys are not held back by the live quota.
	if resp := srv.Check(t, "GET", "/v1/videos", auth); !allowed(resp) {
		t.Errorf("unmetered route refused: %v", resp)
	}
	if resp := srv.Check(t, "POST", "/v1/audio/generate", map[string]string{"x-api-key": test}); !allowed(resp) {
		t.Errorf("test key refused by the live quota: %v", resp)
	}

	var usage struct {
		Usage []struct {
			Mode        string
			Used, Quota int64
			Remaining   int64
		}
	}
	if err := json.Unmarshal([]byte(env.CLI("usage", "--site", "acme-web", "--json")), &usage); err != nil {
		t.Fatal(err)
	}
	if len(usage.Usage) != 2 || usage.Usage[0].Used != 3 || usage.Usage[0].Quota != 3 || usage.Usage[1].Used != 1 {
		t.Errorf("usage: %+v", usage)
	}
	if out := env.CLI("usage", "--site", "acme-web"); !strings.Contains(out, "live  3     3      0") {
		t.Errorf("usage table:\n%s", out)
	}

	// Raising the site's quota reaches the running server through the change log.
	env.CLI("limits", "set", "--site", "acme-web", "--set", "quota=5")
	Eventually(t, 5*time.Second, "the raised quota", func() bool {
		return allowed(srv.Check(t, "POST", "/v1/audio/generate", auth))
	})
}

func redisURL(t *testing.T) string {
	t.Helper()
	url := os.Getenv("KEYGATE_TEST_REDIS")
	if url == "" {
		t.Skip("KEYGATE_TEST_REDIS not set (e.g. redis://127.0.0.1:6379/0): skipping the Redis test")
	}
	return url
}

// Two replicas sharing one store and one Redis let exactly the limit
// through a concurrent burst split between them.
func TestRateLimitAcrossTwoReplicas(t *testing.T) {
	url := redisURL(t)
	const n = 20
	env := NewEnv(t)
	plusSite(env)
	key := env.NewKey("acme-web", "live")
	dir := limitsPolicy(t, strings.Replace(tinyRate, "rate: 3,", fmt.Sprintf("rate: %d,", n), 1))
	replicas := []*Server{env.Serve("--policies", dir, "--redis", url), env.Serve("--policies", dir, "--redis", url)}

	var ok, limited atomic.Int64
	burst(n+10, func(i int) {
		resp := replicas[i%2].Check(t, "GET", "/v1/videos", map[string]string{"x-api-key": key})
		switch {
		case allowed(resp):
			ok.Add(1)
		case resp.GetDeniedResponse().GetStatus().GetCode() == 429:
			limited.Add(1)
		default:
			t.Errorf("unexpected answer: %v", resp)
		}
	})
	if ok.Load() != n || limited.Load() != 10 {
		t.Fatalf("allowed %d, limited %d; want %d and 10", ok.Load(), limited.Load(), n)
	}
	for i, s := range replicas {
		if got := s.Metric(t, `keygate_limits_fallbacks_total{store="redis"}`); got != 0 {
			t.Errorf("replica %d fell back to in-process counters %v times", i, got)
		}
	}
}

func TestRedisOutage(t *testing.T) {
	url := redisURL(t)
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	dir := limitsPolicy(t, tinyRate)

	t.Run("falls back to in-process counters and back", func(t *testing.T) {
		proxy := startProxy(t, target)
		env := NewEnv(t)
		plusSite(env)
		proxied := *u
		proxied.Host = proxy.addr
		srv := env.Serve("--policies", dir, "--redis", proxied.String())
		key := env.NewKey("acme-web", "live")
		if !allowed(srv.Check(t, "GET", "/v1/videos", map[string]string{"x-api-key": key})) {
			t.Fatal("first request refused")
		}
		proxy.Down()
		// The in-process fallback starts from nothing: three more pass.
		key2 := env.NewKey("acme-web", "live")
		auth := map[string]string{"x-api-key": key2}
		for i := range 3 {
			if resp := srv.Check(t, "GET", "/v1/videos", auth); !allowed(resp) {
				t.Fatalf("fallback request %d refused: %v", i, resp)
			}
		}
		deniedWith(t, srv.Check(t, "GET", "/v1/videos", auth), 429, "RATE_LIMITED")
		if srv.Metric(t, `keygate_limits_fallbacks_total{store="redis"}`) < 4 || srv.Metric(t, "keygate_limits_redis_degraded") != 1 {
			t.Error("fallback not visible in metrics")
		}
		if !strings.Contains(srv.Logs(), "Redis unreachable; rate limits counted in-process") {
			t.Errorf("fallback not logged:\n%s", srv.Logs())
		}
		proxy.Up()
		key3 := env.NewKey("acme-web", "live")
		Eventually(t, 10*time.Second, "rate limits counted in Redis again", func() bool {
			srv.Check(t, "GET", "/v1/videos", map[string]string{"x-api-key": key3})
			return srv.Metric(t, "keygate_limits_redis_degraded") == 0
		})
		if !strings.Contains(srv.Logs(), "rate limits counted in Redis again") {
			t.Error("recovery not logged")
		}
	})

	t.Run("fail closed", func(t *testing.T) {
		closed := closedAddr(t)
		env := NewEnv(t)
		plusSite(env)
		key := env.NewKey("acme-web", "live")
		srv := env.Serve("--policies", dir, "--redis", "redis://"+closed+"/0", "--limits-fail-closed")
		deniedWith(t, srv.Check(t, "GET", "/v1/videos", map[string]string{"x-api-key": key}), 503, "AUTHZ_UNAVAILABLE")
		// Authentication still decides first, and free routes need no counter.
		deniedWith(t, srv.Check(t, "GET", "/v1/videos", nil), 401, "MISSING_API_KEY")
		if resp := srv.Check(t, "GET", "/v1/usage", map[string]string{"x-api-key": key}); !allowed(resp) {
			t.Errorf("free route refused: %v", resp)
		}
	})
}

// TestRateLimitedThroughNginx counts for real behind nginx's auth_request
// (the shipped examples/nginx/keygate.conf): allowed responses carry the
// RateLimit-* headers, and the request over the limit gets keygate's 429
// with Retry-After, never reaching the upstream.
func TestRateLimitedThroughNginx(t *testing.T) {
	nginxBin := findNginx(t)
	env := NewEnv(t)
	plusSite(env)
	key := env.NewKey("acme-web", "live")
	srv := env.Serve("--policies", limitsPolicy(t, tinyRate))
	up := newRecordingUpstream(t)
	proxy := startNginx(t, nginxBin, srv.HTTPAddr, up.addr())
	auth := map[string]string{"X-API-Key": key}
	for i := range 3 {
		forwardAuthCase{
			name: fmt.Sprintf("allow %d", i), path: "/v1/videos", headers: auth, status: 200,
			client:   map[string]string{"ratelimit-limit": "3", "ratelimit-remaining": strconv.Itoa(2 - i), "ratelimit-policy": "3;w=3600"},
			upstream: map[string]string{"x-keygate-site": "acme-web"},
		}.run(t, proxy, up)
	}
	forwardAuthCase{
		name: "429", path: "/v1/videos", headers: auth, status: 429, code: "RATE_LIMITED",
		client: map[string]string{"ratelimit-limit": "3", "ratelimit-remaining": "0"},
	}.run(t, proxy, up)
	// Retry-After is about 20 minutes; its exact second depends on the clock.
	status, header, _ := send(t, "GET", proxy+"/v1/videos", "", map[string]string{"X-API-Key": key})
	if retry, err := strconv.Atoi(header.Get("Retry-After")); status != 429 || err != nil || retry < 1100 || retry > 1200 {
		t.Errorf("status %d, Retry-After %q; want 429 and about 1200", status, header.Get("Retry-After"))
	}
}
