package tests

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// eventData finds the delivered event of type typ about key id and returns
// its data.
func (r *hookReceiver) eventData(typ, id string) map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, g := range r.got {
		if g == typ+" "+id {
			var e struct{ Data map[string]any }
			_ = json.Unmarshal([]byte(r.bodies[i]), &e)
			return e.Data
		}
	}
	return nil
}

func wantEventData(t *testing.T, rcv *hookReceiver, typ, id string, fields map[string]any) {
	t.Helper()
	var data map[string]any
	Eventually(t, 20*time.Second, typ+" about "+id, func() bool { data = rcv.eventData(typ, id); return data != nil })
	for k, v := range fields {
		if data[k] != v {
			t.Fatalf("%s of %s: %s = %v, want %v (data %v)", typ, id, k, data[k], v, data)
		}
	}
}

// Through the keygate binary: a reused refresh token is announced as
// key.revoked with reason reuse (the key keeps working); GitHub reporting
// an access token revokes its live key, reporting a refresh token revokes
// its family only, a forged token is a false positive; each leak is
// announced as key.leaked with the credential.
func TestWebhookTokensReuseAndLeaks(t *testing.T) {
	github := newGitHubSigner(t)
	rcv := newHookReceiver(t)
	env, _ := sqliteWebhookEnv(t, rcv.srv.URL+"/hook", rcv, "key.leaked")
	srv := env.Serve("--allow-http-webhooks", "--refresh-grace", "0", "--github-scanning-keys", github.keysFile)

	// Reuse.
	key, id := newTokenKey(t, env, "web", "live")
	_, refresh1 := srv.MintTokens(t, key)
	_, refresh2 := wantTokenPair(t, srv.RefreshTokens(t, refresh1))
	wantExchangeError(t, "reuse", srv.RefreshTokens(t, refresh1), 401, "INVALID_TOKEN")
	wantEventData(t, rcv, "key.revoked", id, map[string]any{"reason": "reuse", "revoked": "refresh_tokens", "revoked_at": nil})
	wantExchangeError(t, "the family after reuse", srv.RefreshTokens(t, refresh2), 401, "INVALID_TOKEN")
	if got := srv.decideKey(t, key); got != "allow" {
		t.Fatalf("key after refresh reuse: %s", got)
	}

	// Leaks.
	keyA, idA := newTokenKey(t, env, "web", "live")
	keyR, idR := newTokenKey(t, env, "web", "live")
	accessA, _ := srv.MintTokens(t, keyA)
	_, refreshR := srv.MintTokens(t, keyR)
	forged := accessA[:len(accessA)-4] + "AAAA"
	if forged == accessA {
		forged = accessA[:len(accessA)-4] + "BBBB"
	}
	body, _ := json.Marshal([]map[string]string{
		{"token": accessA, "type": "keygate_access_token", "url": "https://github.com/o/r/blob/main/a", "source": "content"},
		{"token": refreshR, "type": "keygate_refresh_token", "url": "https://github.com/o/r/blob/main/r", "source": "content"},
		{"token": forged, "type": "keygate_access_token", "url": "https://github.com/o/r/blob/main/f", "source": "content"},
	})
	status, answer := github.post(t, srv.HTTPAddr, "e2e-key", body, github.sign(t, body))
	var labels []string
	var answers []struct{ Label string }
	_ = json.Unmarshal([]byte(answer), &answers)
	for _, a := range answers {
		labels = append(labels, a.Label)
	}
	if status != 200 || strings.Join(labels, " ") != "true_positive true_positive false_positive" {
		t.Fatalf("report: %d %s", status, answer)
	}
	Eventually(t, 10*time.Second, "the leaked access token refused", func() bool {
		code, _, _ := checkAuth(t, srv, "Bearer "+accessA)
		return code == 401
	})
	wantExchangeError(t, "the leaked refresh token", srv.RefreshTokens(t, refreshR), 401, "INVALID_TOKEN")
	if got := srv.decideKey(t, keyR); got != "allow" {
		t.Fatalf("key of the leaked refresh token: %s", got)
	}
	wantEventData(t, rcv, "key.leaked", idA, map[string]any{"credential": "access_token", "action": "revoked", "source": "https://github.com/o/r/blob/main/a"})
	wantEventData(t, rcv, "key.revoked", idA, map[string]any{"reason": "leaked"})
	wantEventData(t, rcv, "key.leaked", idR, map[string]any{"credential": "refresh_token", "action": "revoked"})
	got, ids, _ := rcv.snapshot()
	if err := inOrder(unique(got, ids), []string{"key.leaked " + idA, "key.revoked " + idA}); err != nil {
		t.Fatal(err)
	}
	for _, b := range rcv.payloads() {
		if strings.Contains(b, "kg_at_") || strings.Contains(b, "kg_rt_") || strings.Contains(b, keyA) {
			t.Fatalf("a credential in a payload: %s", b)
		}
	}
	if logs := srv.Logs(); strings.Contains(logs, accessA) || strings.Contains(logs, refreshR) {
		t.Fatal("a token in the logs")
	}

	// An unknown key id and an oversized body change nothing either.
	keyU, _ := newTokenKey(t, env, "web", "live")
	accessU, _ := srv.MintTokens(t, keyU)
	small, _ := json.Marshal([]map[string]string{{"token": accessU, "type": "keygate_access_token", "url": "https://x"}})
	big := append(append([]byte(nil), small...), bytes.Repeat([]byte(" "), 1<<20)...)
	for _, tc := range []struct {
		name, keyID string
		body        []byte
		status      int
	}{
		{"unknown key id", "gh-unknown", small, 401},
		{"oversized", "e2e-key", big, 413},
	} {
		if status, _ := github.post(t, srv.HTTPAddr, tc.keyID, tc.body, github.sign(t, tc.body)); status != tc.status {
			t.Fatalf("%s: %d, want %d", tc.name, status, tc.status)
		}
	}
	if got := srv.decideKey(t, keyU); got != "allow" {
		t.Fatalf("key after rejected reports: %s", got)
	}
}
