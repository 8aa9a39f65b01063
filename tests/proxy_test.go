package tests

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// forwardAuthProxy is a real reverse proxy that asks keygate in
// forward-auth mode (nginx's auth_request, Caddy's forward_auth) with the
// configuration keygate ships or documents for it.
type forwardAuthProxy struct {
	name string
	// bins are where its binary may be (CI installs it: .ci/run).
	bins []string
	// start runs it in front of upstream, asking keygate; it returns the
	// base URL and is stopped when the test ends.
	start func(t *testing.T, bin, keygateAddr, upstreamAddr string) string
	// forwarded are the request headers the proxy sets for keygate, with
	// values a client might forge: a client's copy must not win.
	forwarded map[string]string
}

var (
	nginxProxy = forwardAuthProxy{name: "nginx", bins: []string{"nginx", "/usr/sbin/nginx"}, start: startNginx,
		forwarded: map[string]string{"X-Original-URI": "/health", "X-Original-Method": "GET"}}
	caddyProxy = forwardAuthProxy{name: "caddy", bins: []string{"caddy", "/usr/bin/caddy"}, start: startCaddy,
		forwarded: map[string]string{"X-Forwarded-Uri": "/health", "X-Forwarded-Method": "GET"}}
	forwardAuthProxies = []forwardAuthProxy{nginxProxy, caddyProxy}
)

// find returns the proxy's binary, or skips the test.
func (p forwardAuthProxy) find(t *testing.T) string {
	t.Helper()
	for _, b := range p.bins {
		if path, err := exec.LookPath(b); err == nil {
			return path
		}
	}
	t.Skipf("%s is not installed (apt-get install -y %[1]s; .ci/run does it): skipping its forward-auth test", p.name)
	return ""
}

// TestForwardAuthProxies runs one table of requests through each real proxy
// (nginx with examples/nginx/keygate.conf, Caddy with the README's snippet)
// in front of an upstream, with keygate in forward-auth mode, and checks
// what the client and the upstream see: allows with identity headers and
// the credential removed, and each deny with its status, JSON body and
// headers.
func TestForwardAuthProxies(t *testing.T) {
	eachProxy(t, func(env *Env) string {
		env.CLI("accounts", "create", "--id", "acme", "--plan", "pro")
		env.CLI("sites", "create", "--id", "acme-web", "--account", "acme", "--domain", "app.acme.test")
		env.CLI("accounts", "create", "--id", "lapsed", "--plan", "pro", "--status", "trial_expired")
		env.CLI("sites", "create", "--id", "lapsed-site", "--account", "lapsed", "--domain", "app.lapsed.test")
		return env.NewKey("acme-web", "live")
	}, forwardAuthCases)
}

// eachProxy runs, for each real proxy, setup (the store's data; it returns
// the key the cases use), keygate serve, a recording upstream and the
// proxy in front of both, then the cases in order.
func eachProxy(t *testing.T, setup func(env *Env) string, cases func(key string, p forwardAuthProxy) []forwardAuthCase) {
	for _, p := range forwardAuthProxies {
		t.Run(p.name, func(t *testing.T) {
			bin := p.find(t)
			env := NewEnv(t)
			key := setup(env)
			srv := env.Serve()
			up := newRecordingUpstream(t)
			proxy := p.start(t, bin, srv.HTTPAddr, up.addr())
			for _, tt := range cases(key, p) {
				t.Run(tt.name, func(t *testing.T) { tt.run(t, proxy, up) })
			}
		})
	}
}

// forwardAuthCases is the table every proxy must pass; the proxy's own
// forwarded headers are forged by the client.
func forwardAuthCases(key string, p forwardAuthProxy) []forwardAuthCase {
	identity := map[string]string{
		"x-keygate-account": "acme", "x-keygate-site": "acme-web", "x-keygate-mode": "live",
		"x-keygate-plan": "pro", "x-keygate-concurrency": "3",
	}
	spoofed := merge(p.forwarded, map[string]string{"X-Keygate-Account": "evil", "X-Keygate-Key-Id": "key_forged", "X-Keygate-Mode": "test"})
	bearer := map[string]string{"Authorization": "Bearer " + key}
	return []forwardAuthCase{
		{
			name: "allow: Bearer key, identity upstream, credential and spoofed identity removed",
			path: "/v1/videos?page=2", headers: merge(spoofed, bearer),
			status: 200, upstream: identity, upstreamPath: "/v1/videos?page=2",
			upstreamAbsent: []string{"authorization"}, keyIDSet: true,
		},
		{
			name: "allow: X-API-Key, removed before the upstream",
			path: "/v1/videos", headers: map[string]string{"X-API-Key": key},
			status: 200, upstream: identity, upstreamAbsent: []string{"x-api-key"}, keyIDSet: true,
		},
		{
			name: "allow: public route, no identity, spoofed identity removed",
			path: "/health", headers: spoofed,
			status: 200, upstreamAbsent: []string{"x-keygate-account", "x-keygate-key-id", "x-keygate-mode", "x-keygate-site"},
		},
		{
			name: "allow: public site route from an allowed origin",
			path: "/v1/public/acme-web/player", headers: map[string]string{"Origin": "https://app.acme.test"},
			status: 200, upstream: map[string]string{"x-keygate-site": "acme-web", "x-keygate-account": "acme"},
			upstreamAbsent: []string{"x-keygate-key-id"},
		},
		{
			name: "401 MISSING_API_KEY with its challenge",
			path: "/v1/videos", headers: map[string]string{"X-Keygate-Account": "evil"},
			status: 401, code: "MISSING_API_KEY",
			client: map[string]string{"www-authenticate": `Bearer realm="keygate"`},
		},
		{
			name: "401 INVALID_API_KEY",
			path: "/v1/videos", headers: map[string]string{"Authorization": "Bearer kg_live_000000000000000000000000000000AAAAAA"},
			status: 401, code: "INVALID_API_KEY",
			client: map[string]string{"www-authenticate": `Bearer realm="keygate", error="invalid_token"`},
		},
		deny("402 TRIAL_EXPIRED on a public route", "/v1/public/lapsed-site/player", origin("https://app.lapsed.test"), 402, "TRIAL_EXPIRED"),
		deny("403 SITE_MISMATCH", "/v1/sites/other-site/videos", bearer, 403, "SITE_MISMATCH"),
		deny("403 DOMAIN_NOT_ALLOWED", "/v1/public/acme-web/player", origin("https://evil.test"), 403, "DOMAIN_NOT_ALLOWED"),
		deny("400 INVALID_PATH: the raw URI reaches keygate, not the proxy's normalized one",
			"/v1/sites/acme-web/../other-site/videos", bearer, 400, "INVALID_PATH"),
	}
}

// deny is a case the proxy must deny with status and code, the upstream
// never called.
func deny(name, path string, headers map[string]string, status int, code string) forwardAuthCase {
	return forwardAuthCase{name: name, path: path, headers: headers, status: status, code: code}
}

func origin(o string) map[string]string { return map[string]string{"Origin": o} }

// TestForwardAuthProxiesRateLimited: a 429 from a real counter reaches the
// client through each proxy with its body, Retry-After and RateLimit-*
// headers (nginx's auth_request alone would turn it into a bodiless 500).
// The plan's rate is one request a minute here, so the second request is
// refused.
func TestForwardAuthProxiesRateLimited(t *testing.T) {
	eachProxy(t, func(env *Env) string {
		env.Seed("acme", "pro", "acme-web")
		env.CLI("limits", "set", "--site", "acme-web", "--set", "rate=1", "--set", "burst=1")
		return env.NewKey("acme-web", "live")
	}, func(key string, _ forwardAuthProxy) []forwardAuthCase {
		auth := map[string]string{"Authorization": "Bearer " + key}
		return []forwardAuthCase{
			{name: "first", path: "/v1/videos", headers: auth, status: 200, upstream: map[string]string{"x-keygate-site": "acme-web"}},
			{name: "429", path: "/v1/videos", headers: auth, status: 429, code: "RATE_LIMITED",
				clientPresent: []string{"retry-after", "ratelimit-limit", "ratelimit-remaining"}},
		}
	})
}

// runProxy starts cmd (a proxy in the foreground), stops it with SIGINT
// when the test ends and waits until it listens on addr. logs adds what the
// proxy wrote elsewhere (its error log) to the failure output.
func runProxy(t *testing.T, cmd *exec.Cmd, cancel context.CancelFunc, addr string, logs func() string) {
	t.Helper()
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	name := cmd.Path
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cancel()
		<-exited
		if t.Failed() {
			t.Logf("%s output:\n%s\n%s", name, out.String(), logs())
		}
	})
	Eventually(t, 30*time.Second, name+" to listen on "+addr, func() bool {
		select {
		case <-exited:
			t.Fatalf("%s exited:\n%s\n%s", name, out.String(), logs())
		default:
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

type forwardAuthCase struct {
	name    string
	path    string
	headers map[string]string
	status  int
	// code is the deny body's code (denials only).
	code string
	// client headers the response must carry, and carry with any value.
	client        map[string]string
	clientPresent []string
	// upstream headers the upstream must have received (allows only), and
	// headers it must not have.
	upstream       map[string]string
	upstreamAbsent []string
	upstreamPath   string
	keyIDSet       bool
}

func (tt forwardAuthCase) run(t *testing.T, proxy string, up *recordingUpstream) {
	t.Helper()
	before := up.hits.Load()
	req, err := http.NewRequest("GET", proxy+tt.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Send the path as written, dot segments included.
	req.URL.Opaque, _, _ = strings.Cut(tt.path, "?")
	for k, v := range tt.headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != tt.status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.status, body)
	}
	for k, v := range tt.client {
		if got := resp.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("client header %s = %q, want exactly %q", k, got, v)
		}
	}
	for _, k := range tt.clientPresent {
		if resp.Header.Get(k) == "" {
			t.Errorf("client header %s missing", k)
		}
	}
	if tt.status != 200 {
		if up.hits.Load() != before {
			t.Error("a denied request reached the upstream")
		}
		if ct := resp.Header.Get("content-type"); ct != "application/json" {
			t.Errorf("content-type %q, want application/json", ct)
		}
		var deny struct{ Code, Message string }
		if err := json.Unmarshal(body, &deny); err != nil || deny.Code != tt.code || deny.Message == "" {
			t.Errorf("body %s (%v), want {\"code\":%q,\"message\":…}", body, err, tt.code)
		}
		return
	}
	var seen upstreamRequest
	if err := json.Unmarshal(body, &seen); err != nil {
		t.Fatalf("upstream answer %s: %v", body, err)
	}
	for k, v := range tt.upstream {
		if got := seen.Headers[k]; got != v {
			t.Errorf("upstream header %s = %q, want %q", k, got, v)
		}
	}
	for _, k := range tt.upstreamAbsent {
		if got, ok := seen.Headers[k]; ok {
			t.Errorf("upstream received %s: %q", k, got)
		}
	}
	if id := seen.Headers["x-keygate-key-id"]; tt.keyIDSet && (!strings.HasPrefix(id, "key_") || id == "key_forged") {
		t.Errorf("upstream x-keygate-key-id = %q, want keygate's key id", id)
	}
	if tt.upstreamPath != "" && seen.Path != tt.upstreamPath {
		t.Errorf("upstream path %q, want %q", seen.Path, tt.upstreamPath)
	}
}

// upstreamRequest is what the recording upstream answers: the request it got.
type upstreamRequest struct {
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers"`
}

type recordingUpstream struct {
	srv  *httptest.Server
	hits atomic.Int64
}

func newRecordingUpstream(t *testing.T) *recordingUpstream {
	u := &recordingUpstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		seen := upstreamRequest{Path: r.RequestURI, Headers: map[string]string{}}
		for k, vs := range r.Header {
			seen.Headers[strings.ToLower(k)] = strings.Join(vs, ", ")
		}
		w.Header().Set("content-type", "application/json")
		_ = json.NewEncoder(w).Encode(seen)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *recordingUpstream) addr() string { return strings.TrimPrefix(u.srv.URL, "http://") }

// closedAddr returns a loopback address nothing listens on (just now).
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	return l.Addr().String()
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}
