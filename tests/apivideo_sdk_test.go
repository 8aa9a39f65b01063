package tests

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestAPIVideoSDK runs api.video's published Node.js client
// (@api.video/nodejs-client from npm, testdata/apivideo-sdk) against
// keygate's apivideo-tokens profile, behind a small stand-in for Envoy:
// /auth/* goes to keygate's token exchange, every other request is checked
// with keygate's ext_authz Check and answered by a fake api.video upstream.
// The client mints an access token, lists videos, waits until the token has
// expired, and lists again: keygate's 401 must make it mint a new token and
// succeed, as it does against api.video itself.
func TestAPIVideoSDK(t *testing.T) {
	if testing.Short() {
		t.Skip("installs an npm package")
	}
	node, errNode := exec.LookPath("node")
	npm, errNpm := exec.LookPath("npm")
	if errNode != nil || errNpm != nil {
		t.Skip("node and npm are needed to run api.video's Node.js client; install Node.js 18+ to run this test")
	}
	dir := installSDK(t, npm)

	env := profileEnv(t, "av")
	env.Seed("acme", "pro", "acme-project")
	live, sandbox := env.NewKey("acme-project", "live"), env.NewKey("acme-project", "test")
	srv := env.Serve("--policies", profileDir("apivideo-tokens"), "--token-ttl", "1s", "--refresh-ttl", "1h")

	front := newAPIVideoFront(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The token lives 1 s; the client waits 2.5 s between its two calls.
	cmd := exec.CommandContext(ctx, node, "client.mjs", front.URL, live, "2500", sandbox)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client.mjs: %v\n%s", err, out)
	}
	var calls []sdkCall
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var c sdkCall
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatalf("client output %q: %v", line, err)
		}
		calls = append(calls, c)
	}
	if len(calls) != 3 {
		t.Fatalf("want three calls from the client, got:\n%s", out)
	}
	for _, c := range calls[:2] {
		if !c.OK || len(c.Videos) != 1 || c.Videos[0] != "vi_keygate" {
			t.Errorf("%s: the client did not list the videos: %+v", c.Call, c)
		}
	}
	// The client reads a refusal as api.video's own (an ApiVideoError
	// carrying the problem details) only when it is application/problem+json.
	if c := calls[2]; c.OK || !c.APIVideoError || c.Status != 403 || !strings.Contains(c.Details, "sandbox") || !strings.Contains(c.Details, `"status":403`) {
		t.Errorf("%s: want an ApiVideoError 403 with problem details naming the sandbox host, got %+v", c.Call, c)
	}

	seen := front.log()
	mints, expired := 0, 0
	seen = seen[:len(seen)-2] // the sandbox client's mint and refusal
	for _, s := range seen {
		if s.path == "/auth/api-key" && s.status == 200 {
			mints++
		}
		if s.path == "/videos" && s.status == 401 {
			expired++
			if s.contentType != "application/problem+json" {
				t.Errorf("the 401 for an expired token is %q, not application/problem+json", s.contentType)
			}
			if !strings.Contains(s.body, `"status":401`) || !strings.Contains(s.body, `"title"`) {
				t.Errorf("the 401 is not RFC 9457 problem details: %s", s.body)
			}
		}
		if strings.Contains(s.authorization, live) {
			t.Errorf("the client sent its API key to %s; it should send access tokens", s.path)
		}
	}
	if mints != 2 || expired != 1 {
		t.Errorf("want two mints around one expired-token 401, saw %d mints and %d 401s: %+v", mints, expired, seen)
	}
}

// sdkCall is one line of client.mjs's output.
type sdkCall struct {
	Call          string   `json:"call"`
	OK            bool     `json:"ok"`
	APIVideoError bool     `json:"apiVideoError"`
	Status        int      `json:"status"`
	Error         string   `json:"error"`
	Details       string   `json:"details"`
	Videos        []string `json:"videos"`
}

// installSDK installs testdata/apivideo-sdk with `npm ci` into a directory
// kept between runs (keyed by the lock file), and returns it.
func installSDK(t *testing.T, npm string) string {
	t.Helper()
	src := filepath.Join("testdata", "apivideo-sdk")
	lock, err := os.ReadFile(filepath.Join(src, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(lock)
	dir := filepath.Join(os.TempDir(), "keygate-apivideo-sdk-"+hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"package.json", "package-lock.json", "client.mjs"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@api.video", "nodejs-client", "package.json")); err == nil {
		return dir
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci (from the npm registry): %v\n%s", err, out)
	}
	return dir
}

// apiVideoFront stands in for Envoy in front of keygate and api.video.
type apiVideoFront struct {
	*httptest.Server
	mu   sync.Mutex
	seen []frontCall
}

type frontCall struct {
	path, authorization, contentType, body string
	status                                 int
}

func (f *apiVideoFront) log() []frontCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]frontCall(nil), f.seen...)
}

func newAPIVideoFront(t *testing.T, srv *Server) *apiVideoFront {
	t.Helper()
	exchange := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: srv.HTTPAddr})
	f := &apiVideoFront{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		if strings.HasPrefix(r.URL.Path, "/auth/") {
			exchange.ServeHTTP(rec, r)
		} else {
			f.authorize(t, srv, rec, r)
		}
		f.mu.Lock()
		f.seen = append(f.seen, frontCall{path: r.URL.Path, authorization: r.Header.Get("authorization"),
			contentType: rec.Header().Get("content-type"), body: rec.Body.String(), status: rec.Code})
		f.mu.Unlock()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(f.Close)
	return f
}

// authorize asks keygate, as Envoy's ext_authz filter does, and answers
// with keygate's deny or with the upstream's video list.
func (f *apiVideoFront) authorize(t *testing.T, srv *Server, w http.ResponseWriter, r *http.Request) {
	headers := map[string]string{"host": "ws.api.video"}
	for k := range r.Header {
		headers[strings.ToLower(k)] = strings.Join(r.Header.Values(k), ",")
	}
	resp := srv.Check(t, r.Method, r.URL.RequestURI(), headers)
	if d := resp.GetDeniedResponse(); d != nil {
		for _, h := range d.GetHeaders() {
			w.Header().Set(h.GetHeader().GetKey(), h.GetHeader().GetValue())
		}
		w.WriteHeader(int(d.GetStatus().GetCode()))
		_, _ = w.Write([]byte(d.GetBody()))
		return
	}
	if r.URL.Path != "/videos" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("content-type", "application/json")
	_, _ = w.Write([]byte(`{"data":[{"videoId":"vi_keygate","title":"through keygate","public":true,"panoramic":false,"mp4Support":true}],` +
		`"pagination":{"currentPage":1,"pageSize":25,"pagesTotal":1,"itemsTotal":1,"currentPageItems":1,"links":[]}}`))
}
