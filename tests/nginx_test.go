package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// shippedNginxConf is the nginx config users include; the test runs it as is.
const shippedNginxConf = "../examples/nginx/keygate.conf"

// TestNginxForwardAuth puts a real nginx (auth_request, with the shipped
// examples/nginx/keygate.conf) in front of an upstream, with keygate in
// forward-auth mode, and checks what the client and the upstream see.
func TestNginxForwardAuth(t *testing.T) {
	nginxBin := findNginx(t)
	env := NewEnv(t)
	env.CLI("accounts", "create", "--id", "acme", "--plan", "pro")
	env.CLI("sites", "create", "--id", "acme-web", "--account", "acme", "--domain", "app.acme.test")
	env.CLI("accounts", "create", "--id", "lapsed", "--plan", "pro", "--status", "trial_expired")
	env.CLI("sites", "create", "--id", "lapsed-site", "--account", "lapsed", "--domain", "app.lapsed.test")
	key := env.NewKey("acme-web", "live")
	srv := env.Serve()
	up := newRecordingUpstream(t)
	proxy := startNginx(t, nginxBin, srv.HTTPAddr, up.addr())

	identity := map[string]string{
		"x-keygate-account": "acme", "x-keygate-site": "acme-web", "x-keygate-mode": "live",
		"x-keygate-plan": "pro", "x-keygate-concurrency": "3",
	}
	spoofed := map[string]string{
		"X-Keygate-Account": "evil", "X-Keygate-Key-Id": "key_forged", "X-Keygate-Mode": "test",
		// nginx sets these for keygate; a client's copy must not win.
		"X-Original-URI": "/health", "X-Original-Method": "GET",
	}
	tests := []forwardAuthCase{
		{
			name: "allow: Bearer key, identity upstream, credential and spoofed identity removed",
			path: "/v1/videos?page=2", headers: merge(spoofed, map[string]string{"Authorization": "Bearer " + key}),
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
		{
			name: "402 TRIAL_EXPIRED on a public route",
			path: "/v1/public/lapsed-site/player", headers: map[string]string{"Origin": "https://app.lapsed.test"},
			status: 402, code: "TRIAL_EXPIRED",
		},
		{
			name: "403 SITE_MISMATCH",
			path: "/v1/sites/other-site/videos", headers: map[string]string{"Authorization": "Bearer " + key},
			status: 403, code: "SITE_MISMATCH",
		},
		{
			name: "403 DOMAIN_NOT_ALLOWED",
			path: "/v1/public/acme-web/player", headers: map[string]string{"Origin": "https://evil.test"},
			status: 403, code: "DOMAIN_NOT_ALLOWED",
		},
		{
			name: "400 INVALID_PATH: the raw URI reaches keygate, not nginx's normalized one",
			path: "/v1/sites/acme-web/../other-site/videos", headers: map[string]string{"Authorization": "Bearer " + key},
			status: 400, code: "INVALID_PATH",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, proxy, up) })
	}
}

// TestNginxForwardAuthStatusesNginxDoesNotPass: auth_request turns 429 (and
// 402, 503, ...) into 500 and drops the body; the shipped config restores the
// status, body and headers. RATE_LIMITED comes from a policy directory here,
// so the test needs no counters.
func TestNginxForwardAuthStatusesNginxDoesNotPass(t *testing.T) {
	nginxBin := findNginx(t)
	dir := t.TempDir()
	policy := `package keygate.authz

import rego.v1

decision := {
	"allow": false,
	"status": 429,
	"code": "RATE_LIMITED",
	"message": "Rate limit exceeded: 60 requests per minute",
	"rule": "test_rate",
	"response_headers": {"retry-after": "7", "ratelimit-remaining": "0"},
}
`
	if err := os.WriteFile(filepath.Join(dir, "authz.rego"), []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	env := NewEnv(t)
	srv := env.Serve("--policies", dir)
	up := newRecordingUpstream(t)
	proxy := startNginx(t, nginxBin, srv.HTTPAddr, up.addr())
	forwardAuthCase{
		name: "429", path: "/v1/videos", status: 429, code: "RATE_LIMITED",
		client: map[string]string{"retry-after": "7", "ratelimit-remaining": "0"},
	}.run(t, proxy, up)
}

// TestNginxForwardAuthKeygateDown: nginx cannot reach keygate, so it denies
// with 503 AUTHZ_UNAVAILABLE and the upstream is never called.
func TestNginxForwardAuthKeygateDown(t *testing.T) {
	nginxBin := findNginx(t)
	up := newRecordingUpstream(t)
	proxy := startNginx(t, nginxBin, closedAddr(t), up.addr())
	forwardAuthCase{name: "down", path: "/health", status: 503, code: "AUTHZ_UNAVAILABLE"}.run(t, proxy, up)
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

// findNginx returns the nginx binary, or skips: CI installs it (.ci/run).
func findNginx(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Skip("nginx is not installed (apt-get install -y nginx; .ci/run does it): skipping the nginx forward-auth test")
	return ""
}

// startNginx runs nginx in the foreground as the current user, on a free
// loopback port, with a temporary prefix and a config that includes the
// shipped one; it is stopped when the test ends. It returns the base URL.
func startNginx(t *testing.T, bin, keygateAddr, upstreamAddr string) string {
	t.Helper()
	dir := t.TempDir()
	shipped, err := filepath.Abs(shippedNginxConf)
	if err != nil {
		t.Fatal(err)
	}
	port := closedAddr(t)
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 64; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    default_type application/octet-stream;
    upstream keygate { server %[2]s; }
    upstream app { server %[3]s; }
    server {
        listen %[4]s;
        server_name localhost;
        include %[5]s;
    }
}
`, dir, keygateAddr, upstreamAddr, port, shipped)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cancel()
		<-exited
		if t.Failed() {
			logs, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx output:\n%s\nnginx error.log:\n%s", out.String(), logs)
		}
	})
	Eventually(t, 30*time.Second, "nginx to listen on "+port, func() bool {
		select {
		case <-exited:
			logs, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited:\n%s\n%s", out.String(), logs)
		default:
		}
		c, err := net.Dial("tcp", port)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return "http://" + port
}

// closedAddr returns a loopback address nothing listens on (just now).
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
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
