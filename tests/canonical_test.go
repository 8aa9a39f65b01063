package tests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// outcome is what a transport made of one request: the status the client
// got, the deny code, the identity the upstream received and the rate
// budget left (RateLimit-Remaining; -1 when absent).
type outcome struct {
	status    int
	code      string
	keyID     string
	remaining int
}

// transport sends one request line (method, raw target, Host) with headers
// through one of keygate's front doors.
type transport struct {
	name string
	send func(t *testing.T, method, target, host string, headers map[string]string) outcome
}

// grpcTransport is Envoy's ext_authz gRPC Check, with the target as sent.
func grpcTransport(srv *Server) transport {
	return transport{name: "grpc", send: func(t *testing.T, method, target, host string, headers map[string]string) outcome {
		h := map[string]string{"host": host}
		for k, v := range headers {
			h[k] = v
		}
		resp := srv.Check(t, method, target, h)
		out := outcome{status: 200, remaining: -1}
		if !allowed(resp) {
			d := resp.GetDeniedResponse()
			out.status = int(d.GetStatus().GetCode())
			var body struct{ Code string }
			_ = json.Unmarshal([]byte(d.GetBody()), &body)
			out.code = body.Code
		}
		for _, o := range resp.GetOkResponse().GetHeaders() {
			if o.GetHeader().GetKey() == "x-keygate-key-id" {
				out.keyID = o.GetHeader().GetValue()
			}
		}
		if v, ok := clientHeaders(resp)["ratelimit-remaining"]; ok {
			out.remaining, _ = strconv.Atoi(v)
		}
		return out
	}}
}

// nginxTransport is the shipped nginx auth_request config in front of a
// recording upstream. The request line is written raw on a TCP connection
// so that no client library cleans the target.
func nginxTransport(proxy string) transport {
	addr := strings.TrimPrefix(proxy, "http://")
	return transport{name: "nginx", send: func(t *testing.T, method, target, host string, headers map[string]string) outcome {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, host)
		for k, v := range headers {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
		if method == "POST" {
			b.WriteString("Content-Length: 0\r\n")
		}
		b.WriteString("\r\n")
		if _, err := io.WriteString(conn, b.String()); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		out := outcome{status: resp.StatusCode, remaining: -1}
		if v := resp.Header.Get("ratelimit-remaining"); v != "" {
			out.remaining, _ = strconv.Atoi(v)
		}
		if resp.StatusCode != 200 {
			var deny struct{ Code string }
			_ = json.Unmarshal(body, &deny)
			out.code = deny.Code
			return out
		}
		var seen upstreamRequest
		if err := json.Unmarshal(body, &seen); err != nil {
			t.Fatalf("upstream answer %s: %v", body, err)
		}
		out.keyID = seen.Headers["x-keygate-key-id"]
		return out
	}}
}

// hostModesPolicy is the built-in policy with api.example.com live-only and
// sandbox.example.com test-only.
func hostModesPolicy(t *testing.T) string {
	t.Helper()
	return policyDirWith(t, func(data string) string {
		out := strings.Replace(data, "    host_modes: {}\n",
			"    host_modes:\n      api.example.com: live\n      sandbox.example.com: test\n", 1)
		if out == data {
			t.Fatal("data.yaml has no host_modes: {} line to replace")
		}
		return out
	})
}

// spellingCase is one request line. want is what its canonical spelling
// gets (or the refusal); rate and quota are the counters it must charge.
type spellingCase struct {
	name         string
	method, path string
	host         string // default api.example.com
	testKey      bool   // send a test key instead of a live one
	status       int
	code         string
	rate, quota  int
}

// TestCanonicalRequestBothTransports: request-line and host tricks through
// the built binary over gRPC and through the real nginx forward-auth
// config. Each is refused or decided exactly as its canonical spelling,
// with the same rate tokens and quota units charged (measured by a probe
// with the same key after it, and by the site's usage).
func TestCanonicalRequestBothTransports(t *testing.T) {
	nginxBin := findNginx(t)
	env := NewEnv(t)
	env.Seed("acme", "pro", "blog")
	env.Seed("other", "pro", "victim")

	const (
		ok      = 200
		refused = 400
		invalid = "INVALID_PATH"
	)
	cases := []spellingCase{
		{name: "canonical site path", method: "GET", path: "/v1/sites/blog/videos", status: ok, rate: 1},
		{name: "encoded letter, own site", method: "GET", path: "/v1/%73ites/blog/videos", status: ok, rate: 1},
		{name: "encoded letter, other site", method: "GET", path: "/v1/%73ites/victim/videos", status: 403, code: "SITE_MISMATCH"},
		{name: "encoded letters in every segment", method: "GET", path: "/%76%31/%73%69%74%65%73/%76%69%63%74%69%6d/%76ideos", status: 403, code: "SITE_MISMATCH"},
		{name: "encoded site id", method: "GET", path: "/v1/sites/%76ictim/videos", status: 403, code: "SITE_MISMATCH"},
		{name: "lower-case hex", method: "GET", path: "/v1/sites/%62%6c%6f%67/videos", status: ok, rate: 1},
		{name: "upper case route", method: "GET", path: "/V1/SITES/victim/videos", status: refused, code: invalid},
		{name: "mixed case route", method: "GET", path: "/v1/Sites/victim/videos", status: refused, code: invalid},
		{name: "upper case outside routes kept", method: "GET", path: "/v1/videos/AbC", status: ok, rate: 1},
		{name: "metered route, canonical", method: "POST", path: "/v1/audio/generate", status: ok, rate: 5, quota: 1},
		{name: "metered route, encoded letter", method: "POST", path: "/v1/audio/%67enerate", status: ok, rate: 5, quota: 1},
		{name: "metered route, encoded first letter", method: "POST", path: "/v1/%61udio/generate", status: ok, rate: 5, quota: 1},
		{name: "metered route, upper case", method: "POST", path: "/v1/audio/GENERATE", status: refused, code: invalid},
		{name: "escaped long s (U+017F)", method: "GET", path: "/v1/%C5%BFites/victim/videos", status: refused, code: invalid},
		{name: "escaped Kelvin sign", method: "GET", path: "/v1/%E2%84%AAeys", status: refused, code: invalid},
		{name: "escaped other UTF-8 in an id", method: "GET", path: "/v1/videos/caf%C3%A9", status: ok, rate: 1},
		{name: "double encoding", method: "GET", path: "/v1/%2573ites/victim/videos", status: refused, code: invalid},
		{name: "double slash", method: "GET", path: "/v1//sites/victim/videos", status: refused, code: invalid},
		{name: "dot segment", method: "GET", path: "/v1/./sites/victim/videos", status: refused, code: invalid},
		{name: "dot-dot segment", method: "GET", path: "/v1/sites/blog/../victim/videos", status: refused, code: invalid},
		{name: "encoded dot-dot", method: "GET", path: "/v1/sites/blog/%2e%2e/victim/videos", status: refused, code: invalid},
		{name: "encoded slash", method: "GET", path: "/v1/sites/blog%2F..%2Fvictim/videos", status: refused, code: invalid},
		{name: "semicolon parameter", method: "GET", path: "/v1/sites/victim;x=1/videos", status: refused, code: invalid},
		{name: "semicolon on own site", method: "GET", path: "/v1/sites/blog;x=1/videos", status: refused, code: invalid},
		{name: "encoded NUL", method: "GET", path: "/v1/sites/blog/videos%00", status: refused, code: invalid},
		{name: "trailing slash", method: "GET", path: "/v1/sites/blog/videos/", status: ok, rate: 1},
		{name: "trailing slash, other site", method: "GET", path: "/v1/sites/victim/", status: 403, code: "SITE_MISMATCH"},
		{name: "query does not count", method: "GET", path: "/v1/sites/blog/videos?site=victim", status: ok, rate: 1},
		{name: "test key on live host", method: "GET", path: "/v1/videos", testKey: true, status: 403, code: "MODE_MISMATCH"},
		{name: "test key, host with trailing dot", method: "GET", path: "/v1/videos", host: "api.example.com.", testKey: true, status: 403, code: "MODE_MISMATCH"},
		{name: "test key, host upper case", method: "GET", path: "/v1/videos", host: "API.Example.COM", testKey: true, status: 403, code: "MODE_MISMATCH"},
		{name: "test key, host with port", method: "GET", path: "/v1/videos", host: "api.example.com:443", testKey: true, status: 403, code: "MODE_MISMATCH"},
		{name: "test key, dot and port", method: "GET", path: "/v1/videos", host: "api.example.com.:8443", testKey: true, status: 403, code: "MODE_MISMATCH"},
		{name: "live key, host with trailing dot", method: "GET", path: "/v1/videos", host: "api.example.com.", status: ok, rate: 1},
		{name: "test key on sandbox host", method: "GET", path: "/v1/videos", host: "sandbox.example.com", testKey: true, status: ok, rate: 1},
	}

	type keyPair struct{ live, test string }
	keys := map[string]keyPair{}
	for _, tr := range []string{"grpc", "nginx"} {
		for _, c := range cases {
			kp := keyPair{}
			if c.testKey {
				kp.test = env.NewKey("blog", "test")
			} else {
				kp.live = env.NewKey("blog", "live")
			}
			keys[tr+"/"+c.name] = kp
		}
	}
	srv := env.Serve("--policies", hostModesPolicy(t))
	up := newRecordingUpstream(t)
	proxy := startNginx(t, nginxBin, srv.HTTPAddr, up.addr())

	usage := func(mode string) int {
		var u struct {
			Usage []struct {
				Mode string
				Used int
			}
		}
		if err := json.Unmarshal([]byte(env.CLI("usage", "--site", "blog", "--json")), &u); err != nil {
			t.Fatal(err)
		}
		for _, x := range u.Usage {
			if x.Mode == mode {
				return x.Used
			}
		}
		return 0
	}

	for _, tr := range []transport{grpcTransport(srv), nginxTransport(proxy)} {
		t.Run(tr.name, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					kp := keys[tr.name+"/"+c.name]
					key, host, probeHost, mode := kp.live, c.host, "api.example.com", "live"
					if c.testKey {
						key, probeHost, mode = kp.test, "sandbox.example.com", "test"
					}
					if host == "" {
						host = "api.example.com"
					}
					quotaBefore := usage(mode)
					got := tr.send(t, c.method, c.path, host, map[string]string{"X-API-Key": key})
					// nginx refuses some requests itself (a NUL in the
					// path) with a 400 of its own: refused all the same.
					proxyRefused := tr.name == "nginx" && c.code == invalid && got.status == refused && got.code == ""
					if !proxyRefused && (got.status != c.status || got.code != c.code) {
						t.Fatalf("%s %s (host %s): %d %s, want %d %s", c.method, c.path, host, got.status, got.code, c.status, c.code)
					}
					if c.status == ok && !strings.HasPrefix(got.keyID, "key_") {
						t.Errorf("allowed without the key's identity upstream: %q", got.keyID)
					}
					// Rate: the probe (cost 1) sees what the case charged.
					probe := tr.send(t, "GET", "/v1/videos", probeHost, map[string]string{"X-API-Key": key})
					if probe.status != ok || probe.remaining < 0 {
						t.Fatalf("probe: %+v", probe)
					}
					const proRate = 300
					if charged := proRate - 1 - probe.remaining; charged != c.rate {
						t.Errorf("rate tokens charged %d, want %d", charged, c.rate)
					}
					if charged := usage(mode) - quotaBefore; charged != c.quota {
						t.Errorf("quota units charged %d, want %d", charged, c.quota)
					}
				})
			}
		})
	}
}

// TestRefusedKeyOnPublicRouteBothTransports: a revoked key on /health is
// ignored on both transports: no identity upstream, no charge.
func TestRefusedKeyOnPublicRouteBothTransports(t *testing.T) {
	nginxBin := findNginx(t)
	env := NewEnv(t)
	env.Seed("acme", "pro", "blog")
	var created struct{ ID, Key string }
	if err := json.Unmarshal([]byte(env.CLI("keys", "create", "--site", "blog", "--mode", "live", "--json")), &created); err != nil {
		t.Fatal(err)
	}
	env.CLI("keys", "revoke", created.ID)
	srv := env.Serve()
	up := newRecordingUpstream(t)
	proxy := startNginx(t, nginxBin, srv.HTTPAddr, up.addr())
	for _, tr := range []transport{grpcTransport(srv), nginxTransport(proxy)} {
		got := tr.send(t, "GET", "/health", "api.example.com", map[string]string{"Authorization": "Bearer " + created.Key})
		if got.status != 200 || got.keyID != "" || got.remaining != -1 {
			t.Errorf("%s: revoked key on /health: %+v, want an anonymous allow", tr.name, got)
		}
		if got := tr.send(t, "GET", "/v1/videos", "api.example.com", map[string]string{"Authorization": "Bearer " + created.Key}); got.code != "API_KEY_REVOKED" {
			t.Errorf("%s: revoked key on a key route: %+v", tr.name, got)
		}
	}
}

// TestUnknownKeyFloodAndNewKey: 2,000 distinct well-formed unknown keys
// cost at most the key filter's budget of store reads
// (keygate_store_lookups_total), and a key created while serving is
// accepted once the change log reaches the server.
func TestUnknownKeyFloodAndNewKey(t *testing.T) {
	env := NewEnv(t)
	env.Seed("acme", "pro", "blog")
	known := env.NewKey("blog", "live")
	srv := env.Serve()
	if resp := srv.Check(t, "GET", "/v1/videos", map[string]string{"x-api-key": known}); !allowed(resp) {
		t.Fatalf("known key refused: %v", resp)
	}
	// The filter is read after the first SERVING; until then the budget
	// alone bounds the reads, and keys past it are refused with 503.
	Eventually(t, 10*time.Second, "the key filter to load", func() bool {
		return srv.Metric(t, "keygate_key_filter_loaded") == 1
	})
	before, start := srv.Metric(t, "keygate_store_lookups_total"), time.Now()
	for range 2000 {
		k, err := keystore.Format{Prefix: "kg"}.Generate(keystore.ModeLive)
		if err != nil {
			t.Fatal(err)
		}
		deniedWith(t, srv.Check(t, "GET", "/v1/videos", map[string]string{"x-api-key": k.Reveal()}), 401, "INVALID_API_KEY")
	}
	// The unknown-key budget (burst plus refill over the flood's duration)
	// and false positives (1 in 1,000 predicts 2).
	budget := float64(keystore.UnknownBurst) + keystore.UnknownRate*time.Since(start).Seconds() + 10
	reads := srv.Metric(t, "keygate_store_lookups_total") - before
	t.Logf("2000 distinct unknown keys in %s: %.0f store reads, %.0f answered by the key filter", time.Since(start).Round(time.Millisecond), reads, srv.Metric(t, "keygate_key_filter_rejections_total"))
	if reads > budget {
		t.Fatalf("2000 unknown keys cost %.0f store reads, budget %.0f", reads, budget)
	}

	fresh := env.NewKey("blog", "live")
	Eventually(t, 5*time.Second, "a key created while serving", func() bool {
		return allowed(srv.Check(t, "GET", "/v1/videos", map[string]string{"x-api-key": fresh}))
	})
}
