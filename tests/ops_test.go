package tests

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// decisionLines reads the decision log: one JSON object per line.
func decisionLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("decision log line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// linesWithID waits for the decision with id to be logged and returns every
// line carrying it.
func linesWithID(t *testing.T, path, id string) []map[string]any {
	t.Helper()
	var got []map[string]any
	Eventually(t, 10*time.Second, "decision "+id+" in the decision log", func() bool {
		got = got[:0]
		for _, l := range decisionLines(t, path) {
			if l["decision_id"] == id {
				got = append(got, l)
			}
		}
		return len(got) > 0
	})
	return got
}

func deniedHeader(resp *authv3.CheckResponse, name string) string {
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

// TestDecisionLogMatchesClient: a deny over gRPC and one through nginx's
// forward-auth each produce exactly one decision-log line, whose
// decision_id is the x-keygate-decision-id the client received.
func TestDecisionLogMatchesClient(t *testing.T) {
	env := tokenEnv(t)
	key := env.NewKey("web", "live")
	logPath := filepath.Join(t.TempDir(), "decisions.log")
	srv := env.Serve("--decision-log", logPath)

	resp := srv.Check(t, "GET", "/v1/sites/other/videos", map[string]string{"authorization": "Bearer " + key})
	if status, code := denied(t, resp); status != 403 || code != "SITE_MISMATCH" {
		t.Fatalf("gRPC: %d %s", status, code)
	}
	id := deniedHeader(resp, "x-keygate-decision-id")
	if len(id) != 26 {
		t.Fatalf("gRPC deny carries decision id %q", id)
	}
	lines := linesWithID(t, logPath, id)
	if len(lines) != 1 {
		t.Fatalf("%d lines for %s", len(lines), id)
	}
	l := lines[0]
	if l["transport"] != "grpc" || l["code"] != "SITE_MISMATCH" || l["status"] != 403.0 || l["allow"] != false ||
		l["path"] != "/v1/sites/other/videos" || l["site"] != "web" || l["account"] != "acme" || l["credential_kind"] != "key" ||
		l["key_id"] == "" || l["input"] == nil || l["memo"] == "" {
		t.Errorf("gRPC line %v", l)
	}

	nginxBin := findNginx(t)
	up := newRecordingUpstream(t)
	proxy := startNginx(t, nginxBin, srv.HTTPAddr, up.addr())
	hr, err := http.Get(proxy + "/v1/videos")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, hr.Body) //nolint:errcheck
	hr.Body.Close()
	nid := hr.Header.Get("X-Keygate-Decision-Id")
	if hr.StatusCode != 401 || len(nid) != 26 || nid == id {
		t.Fatalf("nginx: %d with decision id %q", hr.StatusCode, nid)
	}
	lines = linesWithID(t, logPath, nid)
	if len(lines) != 1 || lines[0]["transport"] != "nginx" || lines[0]["code"] != "MISSING_API_KEY" {
		t.Fatalf("nginx lines %v", lines)
	}
}

// TestNoSecretInLogs drives every flow (each credential form, the token
// exchange with refresh and reuse, admin writes, CLI writes, errors,
// forward-auth) with --log-level debug and the decision log on, then
// searches every byte keygate logged for every secret used: none may
// appear.
func TestNoSecretInLogs(t *testing.T) {
	const pepper = "e2e-pepper-secret-0123456789abcdef"
	const botToken = "e2e-bot-token-abcdefghijklmnop"
	env := tokenEnv(t)
	env.Vars = append(env.Vars, "KEYGATE_PEPPER="+pepper, "KEYGATE_ADMIN_TOKEN="+adminToken, "KEYGATE_ADMIN_TOKENS=bot:"+botToken)
	key, keyID := newTokenKey(t, env, "web", "live")
	testKey := env.NewKey("web", "test")
	logPath := filepath.Join(t.TempDir(), "decisions.log")
	srv := env.Serve("--log-level", "debug", "--decision-log", logPath, "--decision-log-sample", "1")
	secrets := []string{pepper, adminToken, botToken, key, testKey}

	// Every credential form, allowed and denied.
	for _, h := range []map[string]string{
		{"authorization": "Bearer " + key},
		{"authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":"))},
		{"x-api-key": testKey},
		{"authorization": "Bearer " + key, "x-api-key": testKey}, // ambiguous
		{"authorization": "Bearer " + key[:len(key)-1] + "x"},    // bad checksum
		{"authorization": "Token " + key},                        // unknown scheme
	} {
		srv.Check(t, "GET", "/v1/videos", h)
	}
	srv.Check(t, "GET", "/v1/videos?api_key="+key, map[string]string{"authorization": "Bearer " + key})

	// Token exchange: mint, use, refresh, reuse.
	access, refresh := srv.MintTokens(t, key)
	srv.Check(t, "GET", "/v1/videos", map[string]string{"authorization": "Bearer " + access})
	srv.Check(t, "GET", "/v1/videos", map[string]string{"authorization": access})
	access2, refresh2 := wantTokenPair(t, srv.RefreshTokens(t, refresh))
	srv.RefreshTokens(t, refresh) // reuse: the family dies
	srv.ExchangePost(t, "/auth/api-key", "application/json", `{"apiKey":"`+key+`x"}`, nil)
	secrets = append(secrets, access, refresh, access2, refresh2)

	// Admin writes with both tokens, one with a wrong token.
	created := srv.MustAdmin(t, "POST", "/admin/v1/keys", `{"site":"web","mode":"live","name":"api"}`, 201)
	adminKey, _ := created["key"].(string)
	rot, _ := srv.Admin(t, "POST", "/admin/v1/sites/web/rotate-key", `{"mode":"live"}`, "Bearer "+botToken)
	if rot != 200 && rot != 201 {
		t.Fatalf("rotate with the bot token: %d", rot)
	}
	srv.Admin(t, "GET", "/admin/v1/keys?site=web", "", "Bearer "+botToken+"-wrong")
	srv.Admin(t, "GET", "/admin/v1/audit", "")
	secrets = append(secrets, adminKey)

	// CLI writes, and the revoked key used afterwards.
	env.CLI("keys", "revoke", keyID)
	Eventually(t, 10*time.Second, "revocation seen", func() bool {
		_, code, _ := checkAuth(t, srv, "Bearer "+key)
		return code == "API_KEY_REVOKED"
	})

	// Forward-auth, each convention.
	for _, target := range []string{"/ext-authz/v1/videos", "/auth-request", "/forward-auth"} {
		req, _ := http.NewRequest("GET", "http://"+srv.HTTPAddr+target, nil)
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("X-Original-Method", "GET")
		req.Header.Set("X-Original-URI", "/v1/videos?key="+testKey)
		req.Header.Set("X-Forwarded-Method", "GET")
		req.Header.Set("X-Forwarded-Uri", "/v1/videos")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}

	Eventually(t, 10*time.Second, "decisions logged", func() bool { return len(decisionLines(t, logPath)) >= 15 })
	raw, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	logs := srv.Logs() + string(raw)
	if !strings.Contains(logs, "level=DEBUG") {
		t.Log("note: the run logged nothing at debug level")
	}
	for _, s := range secrets {
		if s == "" {
			t.Fatal("a secret of the run is empty")
		}
		if strings.Contains(logs, s) {
			t.Errorf("a secret (%d bytes, starting %.8s…) appears in keygate's logs", len(s), s)
		}
	}
	// The secret parts alone (a key without its prefix) must not leak either.
	for _, s := range []string{key, testKey, adminKey} {
		if body := s[strings.LastIndex(s, "_")+1:]; strings.Contains(logs, body) {
			t.Errorf("the random part of a key appears in keygate's logs")
		}
	}
}

// TestAuditActors: the audit trail names the operator of a CLI revoke and
// the named admin token of an admin-API rotation, through both the CLI
// (keygate audit) and the admin API (GET /admin/v1/audit).
func TestAuditActors(t *testing.T) {
	const botToken = "e2e-deploy-bot-token-0123456789"
	env := tokenEnv(t)
	env.Vars = append(env.Vars, "KEYGATE_ADMIN_TOKEN="+adminToken, "KEYGATE_ADMIN_TOKENS=deploy-bot:"+botToken)
	_, keyID := newTokenKey(t, env, "web", "live")
	env.CLI("keys", "revoke", keyID)
	srv := env.Serve()
	status, rotated := srv.Admin(t, "POST", "/admin/v1/sites/web/rotate-key", `{"mode":"live"}`, "Bearer "+botToken)
	if status != 200 && status != 201 {
		t.Fatalf("rotate: %d %v", status, rotated)
	}
	newID, _ := rotated["id"].(string)

	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	var page struct {
		Entries []struct {
			Actor, Action, Entity, Target string
			Before, After                 map[string]any
		}
	}
	if err := json.Unmarshal([]byte(env.CLI("audit", "--target", keyID, "--json")), &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != 2 {
		t.Fatalf("audit of %s: %+v", keyID, page.Entries)
	}
	revoke := page.Entries[1]
	if revoke.Actor != "cli:"+u.Username+"@"+host || revoke.Action != "revoke key" || revoke.Before["revoked_at"] != nil || revoke.After["revoked_at"] == nil {
		t.Errorf("CLI revoke audited as %+v", revoke)
	}

	_, out := srv.Admin(t, "GET", "/admin/v1/audit?target="+newID, "")
	entries, _ := out["entries"].([]any)
	if len(entries) != 1 {
		t.Fatalf("audit of %s: %v", newID, out)
	}
	if e := entries[0].(map[string]any); e["actor"] != "admin:deploy-bot" || e["action"] != "rotate key" {
		t.Errorf("admin rotate audited as %v", e)
	}
	if text := env.CLI("audit"); !strings.Contains(text, "admin:deploy-bot") || !strings.Contains(text, "cli:"+u.Username) {
		t.Errorf("keygate audit:\n%s", text)
	}
}

// TestDecisionLogReopen: after logrotate moves the decision log away, SIGHUP
// makes keygate write to a new file at the path.
func TestDecisionLogReopen(t *testing.T) {
	env := tokenEnv(t)
	logPath := filepath.Join(t.TempDir(), "decisions.log")
	srv := env.Serve("--decision-log", logPath)
	first := deniedHeader(srv.Check(t, "GET", "/v1/videos", nil), "x-keygate-decision-id")
	linesWithID(t, logPath, first)
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 10*time.Second, "the reopen logged", func() bool { return strings.Contains(srv.Logs(), "decision log reopened") })
	second := deniedHeader(srv.Check(t, "GET", "/v1/videos", nil), "x-keygate-decision-id")
	if lines := linesWithID(t, logPath, second); len(lines) != 1 {
		t.Fatalf("new file: %v", lines)
	}
	for _, l := range decisionLines(t, logPath) {
		if l["decision_id"] == first {
			t.Error("the decision before the rotation is in the new file")
		}
	}
}
