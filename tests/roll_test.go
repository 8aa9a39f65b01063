package tests

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// rolledKey is `keygate keys roll --json`.
type rolledKey struct {
	ID           string    `json:"id"`
	Key          string    `json:"key"`
	OldKeyID     string    `json:"old_key_id"`
	OldExpiresAt time.Time `json:"old_expires_at"`
	Scopes       []string  `json:"scopes"`
}

// TestKeysRoll is issue 15's roll story through the binary: `keys roll`
// gives a new working key, the old one works until the grace ends and then
// answers API_KEY_EXPIRED, and key.rolled reaches a webhook receiver.
func TestKeysRoll(t *testing.T) {
	env := NewEnv(t)
	rcv := newHookReceiver(t)
	rcv.subscribe(env, rcv.srv.URL+"/h", "key.rolled")

	env.CLI("accounts", "create", "--id", "acme", "--plan", "pro")
	env.CLI("sites", "create", "--id", "acme-web", "--account", "acme", "--domain", "acme.com")
	old := createKey(t, env, "acme-web", "live", "--scope", "videos:read", "--meta", "tier=gold")
	env.Vars = append(env.Vars, "KEYGATE_ADMIN_TOKEN="+adminToken)
	srv := env.Serve("--allow-http-webhooks")
	allowedWith(t, srv.Check(t, "GET", "/v1/videos", bearer(old.Key)))

	out := env.CLI("keys", "roll", old.ID, "--grace", "2s", "--json")
	var nu rolledKey
	if err := json.Unmarshal([]byte(out), &nu); err != nil || nu.Key == "" || nu.OldKeyID != old.ID || nu.ID == old.ID {
		t.Fatalf("keys roll --json: %v %s", err, out)
	}
	if strings.Join(nu.Scopes, " ") != "videos:read" {
		t.Errorf("the new key has scopes %v, want the old key's", nu.Scopes)
	}
	allowedWith(t, srv.Check(t, "GET", "/v1/videos", bearer(nu.Key)))
	if time.Now().Before(nu.OldExpiresAt) {
		allowedWith(t, srv.Check(t, "GET", "/v1/videos", bearer(old.Key)))
	} else {
		t.Log("the machine was too slow to check the old key inside its 2 s grace")
	}
	// Ask only once the clock has passed the end of the grace (polling
	// every few ms would run into the plan's rate limit first).
	Eventually(t, 15*time.Second, "the old key to expire after its grace", func() bool {
		if time.Now().Before(nu.OldExpiresAt) {
			return false
		}
		return srv.Check(t, "GET", "/v1/videos", bearer(old.Key)).GetDeniedResponse() != nil
	})
	wantDeny(t, srv.Check(t, "GET", "/v1/videos", bearer(old.Key)), 401, "API_KEY_EXPIRED")
	allowedWith(t, srv.Check(t, "GET", "/v1/videos", bearer(nu.Key)))

	var body string
	Eventually(t, 30*time.Second, "key.rolled at the receiver", func() bool {
		for _, b := range rcv.payloads() {
			if strings.Contains(b, `"type":"key.rolled"`) {
				body = b
				return true
			}
		}
		return false
	})
	var e struct {
		Type string `json:"type"`
		Data struct {
			Old          string    `json:"old_key_id"`
			New          string    `json:"new_key_id"`
			Site         string    `json:"site"`
			OldPrefix    string    `json:"old_prefix"`
			NewPrefix    string    `json:"new_prefix"`
			OldExpiresAt time.Time `json:"old_expires_at"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatal(err)
	}
	if e.Data.Old != old.ID || e.Data.New != nu.ID || e.Data.Site != "acme-web" || !e.Data.OldExpiresAt.Equal(nu.OldExpiresAt) ||
		!strings.HasPrefix(old.Key, e.Data.OldPrefix) || !strings.HasPrefix(nu.Key, e.Data.NewPrefix) || e.Data.NewPrefix == "" {
		t.Errorf("key.rolled data %s", body)
	}
	if strings.Contains(body, old.Key) || strings.Contains(body, nu.Key) {
		t.Error("key.rolled carries a key")
	}
	// A roll of an expired key is refused with a clear message.
	if _, errOut, err := env.TryCLI("keys", "roll", old.ID); err == nil || !strings.Contains(errOut, "expired") {
		t.Errorf("rolling the expired key: %v %s", err, errOut)
	}

	// The admin API on the running server: a roll without grace ends the
	// rolled key at once; PATCH changes what GET shows.
	third := srv.MustAdmin(t, "POST", "/admin/v1/keys/"+nu.ID+"/roll", `{"grace":"0s"}`, 201)
	thirdKey, _ := third["key"].(string)
	if third["old_key_id"] != nu.ID || thirdKey == "" {
		t.Fatalf("admin roll: %v", third["old_key_id"])
	}
	Eventually(t, 5*time.Second, "the key rolled with no grace to be refused", func() bool {
		return srv.Check(t, "GET", "/v1/videos", bearer(nu.Key)).GetDeniedResponse() != nil
	})
	wantDeny(t, srv.Check(t, "GET", "/v1/videos", bearer(nu.Key)), 401, "API_KEY_EXPIRED")
	allowedWith(t, srv.Check(t, "GET", "/v1/videos", bearer(thirdKey)))
	thirdID := third["id"].(string)
	srv.MustAdmin(t, "PATCH", "/admin/v1/keys/"+thirdID, `{"meta":{"tier":"silver"},"scopes":["videos:*"]}`, 200)
	got := srv.MustAdmin(t, "GET", "/admin/v1/keys/"+thirdID, "", 200)
	if meta, _ := got["meta"].(map[string]any); meta["tier"] != "silver" || got["key"] != nil {
		t.Errorf("GET after PATCH: %v", got)
	}
	if out := env.CLI("keys", "show", thirdID); !strings.Contains(out, "videos:*") {
		t.Errorf("keys show after PATCH:\n%s", out)
	}
}
