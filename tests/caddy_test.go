package tests

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCaddyForwardAuth runs the README's Caddy snippet unchanged (only its
// three addresses are replaced) in a real Caddy in front of an upstream,
// with keygate in forward-auth mode, and checks what the client and the
// upstream see: allow with identity headers and the credential removed,
// and 401, 402, 403 with their JSON bodies.
func TestCaddyForwardAuth(t *testing.T) {
	caddyBin := findCaddy(t)
	env := NewEnv(t)
	env.CLI("accounts", "create", "--id", "acme", "--plan", "pro")
	env.CLI("sites", "create", "--id", "acme-web", "--account", "acme", "--domain", "app.acme.test")
	env.CLI("accounts", "create", "--id", "lapsed", "--plan", "pro", "--status", "trial_expired")
	env.CLI("sites", "create", "--id", "lapsed-site", "--account", "lapsed", "--domain", "app.lapsed.test")
	key := env.NewKey("acme-web", "live")
	srv := env.Serve()
	up := newRecordingUpstream(t)
	proxy := startCaddy(t, caddyBin, srv.HTTPAddr, up.addr())

	identity := map[string]string{
		"x-keygate-account": "acme", "x-keygate-site": "acme-web", "x-keygate-mode": "live",
		"x-keygate-plan": "pro", "x-keygate-concurrency": "3",
	}
	spoofed := map[string]string{"X-Keygate-Account": "evil", "X-Keygate-Key-Id": "key_forged", "X-Keygate-Mode": "test",
		// Caddy sets these for keygate; a client's copy must not win.
		"X-Forwarded-Uri": "/health", "X-Forwarded-Method": "GET"}
	for _, tt := range []forwardAuthCase{
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
			name: "allow: public route, spoofed identity removed",
			path: "/health", headers: spoofed,
			status: 200, upstreamAbsent: []string{"x-keygate-account", "x-keygate-key-id", "x-keygate-mode", "x-keygate-site"},
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
	} {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, proxy, up) })
	}
}

// TestCaddyForwardAuthRateLimited: a 429 reaches the client through Caddy
// with its body, Retry-After and RateLimit-* headers. The plan's rate is
// one request a minute here, so the second request is refused.
func TestCaddyForwardAuthRateLimited(t *testing.T) {
	caddyBin := findCaddy(t)
	env := NewEnv(t)
	env.CLI("accounts", "create", "--id", "acme", "--plan", "pro")
	env.CLI("sites", "create", "--id", "acme-web", "--account", "acme")
	env.CLI("limits", "set", "--site", "acme-web", "--set", "rate=1", "--set", "burst=1")
	key := env.NewKey("acme-web", "live")
	srv := env.Serve()
	up := newRecordingUpstream(t)
	proxy := startCaddy(t, caddyBin, srv.HTTPAddr, up.addr())
	auth := map[string]string{"Authorization": "Bearer " + key}
	forwardAuthCase{name: "first", path: "/v1/videos", headers: auth, status: 200, upstream: map[string]string{"x-keygate-site": "acme-web"}}.run(t, proxy, up)
	forwardAuthCase{name: "429", path: "/v1/videos", headers: auth, status: 429, code: "RATE_LIMITED",
		clientPresent: []string{"retry-after", "ratelimit-limit", "ratelimit-remaining"}}.run(t, proxy, up)
}

// caddySnippet is the Caddyfile the README shows under **Caddy**.
func caddySnippet(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "**Caddy**")
	if !ok {
		t.Fatal("README has no **Caddy** section")
	}
	_, rest, _ = strings.Cut(rest, "```\n")
	block, _, ok := strings.Cut(rest, "```")
	if !ok || !strings.Contains(block, "forward_auth") {
		t.Fatalf("README's Caddy snippet not found: %q", block)
	}
	return block
}

// findCaddy returns the caddy binary, or skips: CI installs it (.ci/run).
func findCaddy(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"caddy", "/usr/bin/caddy"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Skip("caddy is not installed (apt-get install -y caddy; .ci/run does it): skipping the Caddy forward-auth test")
	return ""
}

// startCaddy runs the README's snippet as the current user on a free
// loopback port, with its admin endpoint and automatic HTTPS off and its
// state in a temporary directory; it is stopped when the test ends. It
// returns the base URL.
func startCaddy(t *testing.T, bin, keygateAddr, upstreamAddr string) string {
	t.Helper()
	dir := t.TempDir()
	port := closedAddr(t)
	site := strings.NewReplacer("api.example.com", "http://"+port, "keygate:8080", keygateAddr, "app:9000", upstreamAddr).
		Replace(caddySnippet(t))
	conf := "{\n\tadmin off\n\tauto_https off\n}\n\n" + site
	confPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "run", "--config", confPath, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir)
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
			t.Logf("Caddyfile:\n%s\ncaddy output:\n%s", conf, out.String())
		}
	})
	Eventually(t, 30*time.Second, "caddy to listen on "+port, func() bool {
		select {
		case <-exited:
			t.Fatalf("caddy exited:\n%s\n%s", conf, out.String())
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
