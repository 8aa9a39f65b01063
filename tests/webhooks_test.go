package tests

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Two replicas on PostgreSQL; the receiver registered through A's admin
// API; keys created and revoked by the CLI (a third process). Every event
// arrives, signed, in order per key, through an outage of the receiver and
// the death of the replica that was delivering.
func TestWebhooksPostgres(t *testing.T) {
	env := webhookPostgresEnv(t)
	github := newGitHubSigner(t)
	a := env.Serve("--allow-http-webhooks", "--github-scanning-keys", github.keysFile)
	b := env.Serve("--allow-http-webhooks", "--github-scanning-keys", github.keysFile)
	rcv := newHookReceiver(t)

	// Production rules refuse the loopback receiver.
	prod := env.Serve()
	if status, body := prod.Admin(t, "POST", "/admin/v1/webhooks", `{"url":"`+rcv.srv.URL+`","events":["key.created"]}`); status != 400 {
		t.Fatalf("loopback receiver without --allow-http-webhooks: %d %v", status, body)
	}
	// Gone before the outage below: a replica that refuses loopback
	// receivers must not be the one that takes the delivery worker over.
	if err := prod.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}

	created := a.MustAdmin(t, "POST", "/admin/v1/webhooks", `{"url":"`+rcv.srv.URL+`/hook","events":["key.created","key.revoked","key.leaked"]}`, 201)
	wh, err := standardwebhooks.NewWebhook(created["secret"].(string))
	if err != nil {
		t.Fatal(err)
	}
	rcv.set(func(r *hookReceiver) { r.wh = wh })
	hook := created["id"].(string)

	env.Seed("acme", "pro", "web")
	keyID := func() string {
		var k struct{ ID string }
		if err := json.Unmarshal([]byte(env.CLI("keys", "create", "--site", "web", "--mode", "live", "--json")), &k); err != nil {
			t.Fatal(err)
		}
		return k.ID
	}

	t.Run("created then revoked", func(t *testing.T) {
		id := keyID()
		env.CLI("keys", "revoke", id)
		want := []string{"key.created " + id, "key.revoked " + id}
		Eventually(t, 30*time.Second, "both events at the receiver", func() bool {
			got, ids, _ := rcv.snapshot()
			return inOrder(unique(got, ids), want) == nil
		})
		if workerActive(a) == workerActive(b) {
			t.Fatalf("delivery worker active on A: %v, on B: %v; want exactly one", workerActive(a), workerActive(b))
		}
	})

	// GitHub reports a live key found in public, to A: B refuses it at once
	// and the owners hear key.leaked then key.revoked.
	t.Run("leaked key", func(t *testing.T) {
		out := env.CLI("keys", "create", "--site", "web", "--mode", "live", "--json")
		var k struct{ ID, Key string }
		if err := json.Unmarshal([]byte(out), &k); err != nil {
			t.Fatal(err)
		}
		if got := b.decideKey(t, k.Key); got != "allow" {
			t.Fatalf("B before the leak: %s", got)
		}
		body := []byte(`[{"token":"` + k.Key + `","type":"keygate_live_key","url":"https://github.com/o/r/blob/main/.env","source":"content"}]`)
		status, answer := github.post(t, a.HTTPAddr, "e2e-key", body, github.sign(t, body))
		if status != 200 || !strings.Contains(answer, `"label":"true_positive"`) {
			t.Fatalf("report: %d %s", status, answer)
		}
		Eventually(t, 10*time.Second, "B to refuse the leaked key", func() bool { return b.decideKey(t, k.Key) == "401 API_KEY_REVOKED" })
		want := []string{"key.created " + k.ID, "key.leaked " + k.ID, "key.revoked " + k.ID}
		Eventually(t, 30*time.Second, "key.leaked and key.revoked at the receiver", func() bool {
			got, ids, _ := rcv.snapshot()
			return inOrder(unique(got, ids), want) == nil
		})
		// A bad signature: 401 and nothing happens (a fresh key stays good).
		k2 := env.NewKey("web", "live")
		bad := []byte(`[{"token":"` + k2 + `","type":"keygate_live_key","url":"https://x","source":"content"}]`)
		if status, _ := github.post(t, b.HTTPAddr, "e2e-key", bad, github.sign(t, body)); status != 401 {
			t.Fatalf("bad signature: %d", status)
		}
		if got := a.decideKey(t, k2); got != "allow" {
			t.Fatalf("key after a rejected report: %s", got)
		}
		// A replay: the same answer, no new event.
		before, _, _ := rcv.snapshot()
		if status, again := github.post(t, b.HTTPAddr, "e2e-key", body, github.sign(t, body)); status != 200 || again != answer {
			t.Fatalf("replay: %d %s", status, again)
		}
		ds := a.MustAdmin(t, "GET", "/admin/v1/webhooks/"+hook+"/deliveries", "", 200)["deliveries"].([]any)
		leaked := 0
		for _, d := range ds {
			if d.(map[string]any)["type"] == "key.leaked" {
				leaked++
			}
		}
		if leaked != 1 {
			t.Fatalf("%d key.leaked deliveries after a replay, want 1 (receiver had %d events)", leaked, len(before))
		}
	})

	t.Run("receiver down, then the delivering replica killed, then up", func(t *testing.T) {
		rcv.set(func(r *hookReceiver) { r.down = true })
		var want [][]string
		for range 3 {
			id := keyID()
			env.CLI("keys", "revoke", id)
			want = append(want, []string{"key.created " + id, "key.revoked " + id})
		}
		Eventually(t, 60*time.Second, "the receiver to refuse two attempts", func() bool {
			_, _, refused := rcv.snapshot()
			return refused >= 2
		})
		// Kill the replica holding the worker lock, mid-retry.
		active, other := a, b
		if workerActive(b) {
			active, other = b, a
		}
		if err := active.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		rcv.set(func(r *hookReceiver) { r.down = false })
		Eventually(t, 90*time.Second, "every event after the outage", func() bool {
			got, ids, _ := rcv.snapshot()
			u := unique(got, ids)
			for _, w := range want {
				if inOrder(u, w) != nil {
					return false
				}
			}
			return true
		})
		got, ids, refused := rcv.snapshot()
		for _, w := range want {
			if err := inOrder(unique(got, ids), w); err != nil {
				t.Fatal(err)
			}
		}
		if !workerActive(other) {
			t.Fatal("the surviving replica never took over delivery")
		}
		t.Logf("%d deliveries received (%d unique), %d refused while down", len(got), len(unique(got, ids)), refused)
		ds := other.MustAdmin(t, "GET", "/admin/v1/webhooks/"+hook+"/deliveries", "", 200)["deliveries"].([]any)
		if len(ds) != 8+4 { // 2 + 3×2 here, 4 in "leaked key"
			t.Fatalf("%d deliveries listed, want 12", len(ds))
		}
		for _, d := range ds {
			if d.(map[string]any)["status"] != "delivered" {
				t.Fatalf("delivery %v", d)
			}
		}
	})
}

// The CLI manages endpoints on the store directly (SQLite here): create
// shows the secret once, deliveries lists what the server sent, retry sends
// it again under the same webhook-id, delete stops it.
func TestWebhooksCLI(t *testing.T) {
	env := NewEnv(t)
	rcv := newHookReceiver(t)
	if _, errOut, err := env.TryCLI("webhooks", "create", "--url", rcv.srv.URL, "--event", "key.created"); err == nil || !strings.Contains(errOut, "https") {
		t.Fatalf("http receiver without --allow-http-webhooks: %v %s", err, errOut)
	}
	if _, _, err := env.TryCLI("webhooks", "create", "--url", "https://hooks.example.com", "--event", "key.nope"); err == nil {
		t.Fatal("unknown event type accepted")
	}
	ep := rcv.subscribe(env, rcv.srv.URL+"/h", "key.created", "key.revoked")
	if !strings.HasPrefix(ep.Secret, "whsec_") {
		t.Fatalf("create: secret %q", ep.Secret)
	}
	if list := env.CLI("webhooks", "list"); !strings.Contains(list, ep.ID) || strings.Contains(list, ep.Secret) {
		t.Fatalf("list: %s", list)
	}
	env.Serve("--allow-http-webhooks")
	env.Seed("acme", "pro", "web")
	env.NewKey("web", "live")
	Eventually(t, 30*time.Second, "key.created at the receiver", func() bool {
		got, _, _ := rcv.snapshot()
		return len(got) == 1
	})
	var ds struct {
		Deliveries []struct {
			ID, Status string
			EventID    string `json:"event_id"`
		} `json:"deliveries"`
	}
	Eventually(t, 10*time.Second, "the delivery recorded as delivered", func() bool {
		_ = json.Unmarshal([]byte(env.CLI("webhooks", "deliveries", ep.ID, "--json")), &ds)
		return len(ds.Deliveries) == 1 && ds.Deliveries[0].Status == "delivered"
	})
	env.CLI("webhooks", "retry", ep.ID, ds.Deliveries[0].ID)
	Eventually(t, 30*time.Second, "the retried delivery", func() bool {
		got, _, _ := rcv.snapshot()
		return len(got) == 2
	})
	_, ids, _ := rcv.snapshot()
	if ids[0] != ids[1] || ids[0] != ds.Deliveries[0].EventID {
		t.Fatalf("retry webhook-ids %v, event %s", ids, ds.Deliveries[0].EventID)
	}
	if _, _, err := env.TryCLI("webhooks", "retry", ep.ID); err == nil {
		t.Fatal("retry without a delivery id accepted")
	}
	env.CLI("webhooks", "delete", ep.ID)
	if _, errOut, err := env.TryCLI("webhooks", "deliveries", ep.ID); err == nil || !strings.Contains(errOut, "not found") {
		t.Fatalf("deliveries of a deleted endpoint: %v %s", err, errOut)
	}
}

// Two replicas on PostgreSQL charge one site's monthly quota at once:
// quota.threshold arrives once at 80% and once at 100%.
func TestQuotaThresholdPostgres(t *testing.T) {
	env := webhookPostgresEnv(t)
	rcv := newHookReceiver(t)
	plusSite(env)
	live := env.NewKey("acme-web", "live")
	env.CLI("limits", "set", "--site", "acme-web", "--set", "quota=10")
	ep := rcv.subscribe(env, rcv.srv.URL, "quota.threshold")
	replicas := []*Server{env.Serve("--allow-http-webhooks"), env.Serve("--allow-http-webhooks")}

	allowedN := make([]int, 2)
	burst(len(replicas), func(i int) {
		for range 8 { // 16 attempts for a quota of 10
			if allowed(replicas[i].Check(t, "POST", "/v1/audio/generate", map[string]string{"x-api-key": live})) {
				allowedN[i]++
			}
		}
	})
	if allowedN[0]+allowedN[1] != 10 {
		t.Fatalf("%v requests allowed, want 10 in all", allowedN)
	}
	Eventually(t, 90*time.Second, "quota.threshold at 80% and 100%", func() bool {
		got, ids, _ := rcv.snapshot()
		return len(unique(got, ids)) >= 2
	})
	got, ids, _ := rcv.snapshot()
	if u := unique(got, ids); len(u) != 2 || u[0] != "quota.threshold 80" || u[1] != "quota.threshold 100" {
		t.Fatalf("events %q", u)
	}
	var ds struct {
		Deliveries []struct{ Type string } `json:"deliveries"`
	}
	if err := json.Unmarshal([]byte(env.CLI("webhooks", "deliveries", ep.ID, "--json")), &ds); err != nil || len(ds.Deliveries) != 2 {
		t.Fatalf("deliveries %+v, %v", ds, err)
	}
}

// webhookPostgresEnv is a PostgreSQL env whose processes share the secret
// that seals webhook signing secrets (it is never in the database).
func webhookPostgresEnv(t *testing.T) *Env {
	t.Helper()
	env := postgresEnv(t)
	env.Vars = append(env.Vars, "KEYGATE_TOKEN_SECRET=replicas-share-this-webhook-secret")
	return env
}
