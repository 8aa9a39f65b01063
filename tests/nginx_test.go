package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// shippedNginxConf is the nginx config users include; the test runs it as is.
const shippedNginxConf = "../examples/nginx/keygate.conf"

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

// findNginx returns the nginx binary, or skips.
func findNginx(t *testing.T) string {
	t.Helper()
	return nginxProxy.find(t)
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
	runProxy(t, cmd, cancel, port, func() string {
		logs, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return "nginx error.log:\n" + string(logs)
	})
	return "http://" + port
}
