package secretscan_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/storetest"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/secretscan"
)

type signer struct {
	id  string
	key *ecdsa.PrivateKey
}

func newSigner(t testing.TB, id string) signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{id: id, key: k}
}

func (s signer) pem(t testing.TB) string {
	der, err := x509.MarshalPKIXPublicKey(&s.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func (s signer) sign(t testing.TB, body []byte) string {
	sum := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, s.key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// keysFile writes GitHub's public keys document listing signers.
func keysFile(t testing.TB, signers ...signer) string {
	var doc struct {
		PublicKeys []map[string]any `json:"public_keys"`
	}
	for i, s := range signers {
		doc.PublicKeys = append(doc.PublicKeys, map[string]any{"key_identifier": s.id, "key": s.pem(t), "is_current": i == 0})
	}
	raw, _ := json.Marshal(doc)
	path := filepath.Join(t.TempDir(), "github-keys.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type fixture struct {
	t      *testing.T
	store  *keystore.Store
	srv    *httptest.Server
	github signer
	h      *secretscan.Handler
}

func newFixture(t *testing.T, action string) *fixture {
	f, _ := keystore.NewFormat("kg")
	st, d := storetest.Open(t, nil)
	gh := newSigner(t, "gh-current")
	keys, err := secretscan.LoadPublicKeys(keysFile(t, gh, newSigner(t, "gh-old")))
	if err != nil {
		t.Fatal(err)
	}
	h := &secretscan.Handler{Keys: keys, Store: st, Format: f, Digester: d, Action: action, Log: slog.New(slog.DiscardHandler)}
	mux := http.NewServeMux()
	mux.Handle("POST "+secretscan.GitHubPath, h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	ctx := context.Background()
	if _, err := st.CreateAccount(ctx, keystore.Account{ID: "acct", Plan: "pro"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateSite(ctx, keystore.Site{ID: "site1", AccountID: "acct", Active: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateWebhook(ctx, keystore.WebhookEndpoint{URL: "https://hooks.example.com", Events: []string{keystore.EventKeyLeaked, keystore.EventKeyRevoked}}, "whsec_x"); err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, store: st, srv: srv, github: gh, h: h}
}

func (fx *fixture) key(mode keystore.Mode) (keystore.Key, string) {
	k, s, err := fx.store.CreateKey(context.Background(), keystore.KeySpec{SiteID: "site1", Mode: mode})
	if err != nil {
		fx.t.Fatal(err)
	}
	return k, s.Reveal()
}

func (fx *fixture) post(body []byte, headers map[string]string) (int, string) {
	req, _ := http.NewRequest("POST", fx.srv.URL+secretscan.GitHubPath, bytes.NewReader(body))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fx.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

func (fx *fixture) signed(body []byte) map[string]string {
	return map[string]string{secretscan.HeaderKeyID: fx.github.id, secretscan.HeaderSignature: fx.github.sign(fx.t, body)}
}

func reportBody(tokens ...string) []byte {
	var rs []secretscan.Report
	for i, tok := range tokens {
		rs = append(rs, secretscan.Report{Token: tok, Type: "keygate_api_key", URL: "https://github.com/o/r/blob/main/f" + string(rune('a'+i)), Source: "content"})
	}
	b, _ := json.Marshal(rs)
	return b
}

func TestGitHubReports(t *testing.T) {
	fx := newFixture(t, secretscan.ActionDefault)
	ctx := context.Background()
	live, liveKey := fx.key(keystore.ModeLive)
	test, testKey := fx.key(keystore.ModeTest)
	revoked, revokedKey := fx.key(keystore.ModeLive)
	if _, err := fx.store.RevokeKey(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	unknown := liveKey[:len("kg_live_")] + strings.Repeat("A", 10) + liveKey[len("kg_live_")+10:] // checksum off
	f, _ := keystore.NewFormat("kg")
	stranger, _ := f.Generate(keystore.ModeLive) // well formed, not ours
	body := reportBody(liveKey, testKey, revokedKey, unknown, "not-a-key", stranger.Reveal())
	status, raw := fx.post(body, fx.signed(body))
	if status != 200 {
		t.Fatalf("status %d: %s", status, raw)
	}
	answers, got := labels(t, raw)
	if got != "true_positive true_positive true_positive false_positive false_positive false_positive" {
		t.Fatalf("labels %s", got)
	}
	if answers[0].TokenRaw != liveKey || answers[0].TokenType != "keygate_api_key" {
		t.Fatalf("answer %+v", answers[0])
	}
	// The live key is revoked, the test key is not.
	k, _ := fx.store.Key(ctx, live.ID)
	if k.RevokedAt == nil {
		t.Fatal("leaked live key not revoked")
	}
	if k, _ := fx.store.Key(ctx, test.ID); k.RevokedAt != nil {
		t.Fatal("leaked test key revoked by default")
	}
	events := pending(t, fx.store)
	want := []string{
		"key.revoked " + revoked.ID + " revoked",
		"key.leaked " + live.ID + " revoked", "key.revoked " + live.ID + " leaked",
		"key.leaked " + test.ID + " notified",
		"key.leaked " + revoked.ID + " already_revoked",
	}
	wantLines(t, "events", events, want)

	// A replay of the same signed report answers the same and does nothing.
	status, raw2 := fx.post(body, fx.signed(body))
	if status != 200 || raw2 != raw {
		t.Fatalf("replay: %d %s", status, raw2)
	}
	if again := pending(t, fx.store); len(again) != len(events) {
		t.Fatalf("replay added events: %v", again)
	}
}

// outboxEvent is one event waiting in the store's webhook outbox.
type outboxEvent struct {
	Type string
	Data struct {
		keystore.KeyEvent
		Family string     `json:"refresh_family"`
		Exp    *time.Time `json:"token_expires_at"`
	}
}

// what is the action a key.leaked event reports, or the reason a key was
// revoked.
func (e outboxEvent) what() string {
	if e.Type == keystore.EventKeyRevoked {
		return e.Data.Reason
	}
	return e.Data.Action
}

// outbox reads the store's webhook outbox in order; no event may carry a
// token that was reported.
func outbox(t *testing.T, st *keystore.Store) []outboxEvent {
	t.Helper()
	rows, err := st.DB().Query(`SELECT payload FROM webhook_events ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []outboxEvent
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			t.Fatal(err)
		}
		var e outboxEvent
		if err := json.Unmarshal([]byte(p), &e); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(p, "kg_at_") || strings.Contains(p, "kg_rt_") {
			t.Errorf("a token in an event: %s", p)
		}
		out = append(out, e)
	}
	return out
}

// pending lists the outbox in order as "type key-id action-or-reason".
func pending(t *testing.T, st *keystore.Store) []string {
	t.Helper()
	var out []string
	for _, e := range outbox(t, st) {
		if e.Type == keystore.EventKeyLeaked && !strings.HasPrefix(e.Data.Source, "https://github.com/o/r/") {
			t.Errorf("key.leaked source %q", e.Data.Source)
		}
		out = append(out, e.Type+" "+e.Data.ID+" "+e.what())
	}
	return out
}

// wantLines fails the test unless got and want are the same lines.
func wantLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\n%s\nwant:\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// labels decodes a report's answers and lists their labels in order.
func labels(t *testing.T, raw string) ([]secretscan.Answer, string) {
	t.Helper()
	var answers []secretscan.Answer
	if err := json.Unmarshal([]byte(raw), &answers); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	out := make([]string, len(answers))
	for i, a := range answers {
		out[i] = a.Label
	}
	return answers, strings.Join(out, " ")
}

func TestGitHubRejects(t *testing.T) {
	fx := newFixture(t, secretscan.ActionRevoke)
	live, liveKey := fx.key(keystore.ModeLive)
	body := reportBody(liveKey)
	stranger := newSigner(t, fx.github.id)
	for _, tc := range []struct {
		name    string
		body    []byte
		headers map[string]string
		status  int
	}{
		{"no headers", body, nil, 401},
		{"no signature", body, map[string]string{secretscan.HeaderKeyID: fx.github.id}, 401},
		{"unknown key id", body, map[string]string{secretscan.HeaderKeyID: "gh-nope", secretscan.HeaderSignature: fx.github.sign(t, body)}, 401},
		{"signed by a stranger", body, map[string]string{secretscan.HeaderKeyID: fx.github.id, secretscan.HeaderSignature: stranger.sign(t, body)}, 401},
		{"signature of another body", body, map[string]string{secretscan.HeaderKeyID: fx.github.id, secretscan.HeaderSignature: fx.github.sign(t, reportBody("x"))}, 401},
		{"signature not base64", body, map[string]string{secretscan.HeaderKeyID: fx.github.id, secretscan.HeaderSignature: "%%%"}, 401},
		{"oversized", append(body, bytes.Repeat([]byte(" "), secretscan.MaxBody)...), fx.signed(body), 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if status, raw := fx.post(tc.body, tc.headers); status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, raw)
			}
		})
	}
	if k, _ := fx.store.Key(context.Background(), live.ID); k.RevokedAt != nil {
		t.Fatal("a rejected report revoked the key")
	}
	if ev := pending(t, fx.store); len(ev) != 0 {
		t.Fatalf("a rejected report made events: %v", ev)
	}
	for _, bad := range [][]byte{[]byte(`{}`), []byte(`[]`), []byte(`[{"token":""}]`), []byte(`not json`)} {
		if status, raw := fx.post(bad, fx.signed(bad)); status != 400 {
			t.Errorf("signed %s: %d %s", bad, status, raw)
		}
	}
	// --leaked-keys revoke revokes test keys too.
	test, testKey := fx.key(keystore.ModeTest)
	b := reportBody(testKey)
	if status, _ := fx.post(b, fx.signed(b)); status != 200 {
		t.Fatal(status)
	}
	if k, _ := fx.store.Key(context.Background(), test.ID); k.RevokedAt == nil {
		t.Fatal("--leaked-keys revoke left a test key live")
	}
}

func TestNotifyNeverRevokes(t *testing.T) {
	fx := newFixture(t, secretscan.ActionNotify)
	live, liveKey := fx.key(keystore.ModeLive)
	b := reportBody(liveKey)
	if status, _ := fx.post(b, fx.signed(b)); status != 200 {
		t.Fatal(status)
	}
	if k, _ := fx.store.Key(context.Background(), live.ID); k.RevokedAt != nil {
		t.Fatal("--leaked-keys notify revoked a key")
	}
	if ev := pending(t, fx.store); len(ev) != 1 || ev[0] != "key.leaked "+live.ID+" notified" {
		t.Fatalf("events %v", ev)
	}
}

func TestParsePublicKeys(t *testing.T) {
	s := newSigner(t, "k1")
	rsaPEM := "-----BEGIN PUBLIC KEY-----\nMFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAL0=\n-----END PUBLIC KEY-----\n"
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&p384.PublicKey)
	p384PEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	for _, bad := range []string{
		``, `{}`, `{"public_keys":[]}`,
		`{"public_keys":[{"key_identifier":"","key":` + jsonString(s.pem(t)) + `}]}`,
		`{"public_keys":[{"key_identifier":"x","key":"not pem"}]}`,
		`{"public_keys":[{"key_identifier":"x","key":` + jsonString(rsaPEM) + `}]}`,
		`{"public_keys":[{"key_identifier":"x","key":` + jsonString(p384PEM) + `}]}`,
	} {
		if _, err := secretscan.ParsePublicKeys([]byte(bad)); err == nil {
			t.Errorf("ParsePublicKeys(%.60q) accepted", bad)
		}
	}
	keys, err := secretscan.ParsePublicKeys([]byte(`{"public_keys":[{"key_identifier":"k1","key":` + jsonString(s.pem(t)) + `,"is_current":true}]}`))
	if err != nil || len(keys) != 1 {
		t.Fatalf("%v %v", keys, err)
	}
	body := []byte(`[{"token":"x"}]`)
	if err := keys.Verify("k1", s.sign(t, body), body); err != nil {
		t.Fatal(err)
	}
}

func jsonString(s string) string { b, _ := json.Marshal(s); return string(b) }
