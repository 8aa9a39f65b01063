package tests

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// sqliteWebhookEnv is a SQLite env with an endpoint for key.created,
// key.revoked and the more event types registered by the CLI, verified by rcv, plus account acme and
// site web.
func sqliteWebhookEnv(t *testing.T, url string, rcv *hookReceiver, more ...string) (*Env, string) {
	t.Helper()
	return withWebhook(t, NewEnv(t), url, rcv, more...)
}

// withWebhook registers the endpoint and creates acme and web in env.
func withWebhook(t *testing.T, env *Env, url string, rcv *hookReceiver, more ...string) (*Env, string) {
	t.Helper()
	ep := rcv.subscribe(env, url, append([]string{"key.created", "key.revoked"}, more...)...)
	env.Seed("acme", "pro", "web")
	return env, ep.ID
}

func (e *Env) keyID(t *testing.T) string {
	t.Helper()
	var k struct{ ID string }
	if err := json.Unmarshal([]byte(e.CLI("keys", "create", "--site", "web", "--mode", "live", "--json")), &k); err != nil {
		t.Fatal(err)
	}
	return k.ID
}

type listedDelivery struct {
	ID, Status string
	EventID    string `json:"event_id"`
	Attempts   int
}

func (e *Env) deliveries(t *testing.T, hook string) []listedDelivery {
	t.Helper()
	var ds struct{ Deliveries []listedDelivery }
	if err := json.Unmarshal([]byte(e.CLI("webhooks", "deliveries", hook, "--json")), &ds); err != nil {
		t.Fatal(err)
	}
	return ds.Deliveries
}

// Two `keygate serve` processes on one SQLite file: exactly one delivers
// (a lease row, not an advisory lock), every event arrives exactly once
// (nothing failed, so at-least-once sends nothing twice), and when the
// delivering one stops the other takes over.
func TestWebhooksTwoServesOneSQLiteFile(t *testing.T) {
	rcv := newHookReceiver(t)
	env, hook := sqliteWebhookEnv(t, rcv.srv.URL+"/hook", rcv)
	a := env.Serve("--allow-http-webhooks")
	b := env.Serve("--allow-http-webhooks")
	var want []string
	for range 4 {
		id := env.keyID(t)
		env.CLI("keys", "revoke", id)
		want = append(want, "key.created "+id, "key.revoked "+id)
	}
	Eventually(t, 20*time.Second, "every event at the receiver", func() bool {
		got, ids, _ := rcv.snapshot()
		return len(unique(got, ids)) >= len(want)
	})
	if workerActive(a) == workerActive(b) {
		t.Fatalf("delivery worker active on A: %v, on B: %v; want exactly one", workerActive(a), workerActive(b))
	}
	// Nothing failed, so one worker sent each event once: a second one
	// would have sent them again (same webhook-ids) by the time all are
	// recorded as delivered.
	Eventually(t, 10*time.Second, "every delivery recorded", func() bool {
		for _, d := range env.deliveries(t, hook) {
			if d.Status != "delivered" {
				return false
			}
		}
		return true
	})
	if got, _, _ := rcv.snapshot(); len(got) != len(want) {
		t.Fatalf("%d deliveries for %d events (a second worker sent them again): %q", len(got), len(want), got)
	}
	active, other := a, b
	if workerActive(b) {
		active, other = b, a
	}
	// A clean stop hands the lease over at once.
	if err := active.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 15*time.Second, "the other serve to take delivery over", func() bool { return workerActive(other) })
	id := env.keyID(t)
	want = append(want, "key.created "+id)
	Eventually(t, 15*time.Second, "the event after the handover", func() bool {
		got, ids, _ := rcv.snapshot()
		return len(unique(got, ids)) >= len(want)
	})
	// A delivery the stopped serve had sent but not yet seen answered is
	// sent again by the other, under the same webhook-id (at least once).
	got, ids, _ := rcv.snapshot()
	if err := inOrder(unique(got, ids), want); err != nil {
		t.Fatal(err)
	}
	if len(got) > len(want)+1 {
		t.Fatalf("%d deliveries for %d events: %q", len(got), len(want), got)
	}
	Eventually(t, 10*time.Second, "every delivery recorded", func() bool {
		for _, d := range env.deliveries(t, hook) {
			if d.Status != "delivered" {
				return false
			}
		}
		return true
	})
}

// holdingReceiver holds the first delivery (accepts the connection, reads
// the request, never answers) and hands every later one to rcv.
type holdingReceiver struct {
	rcv    *hookReceiver
	mu     sync.Mutex
	heldID string
	held   chan struct{} // closed when the first delivery arrived
	gone   chan struct{} // closed when its connection went away
}

func (h *holdingReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	h.mu.Lock()
	first := h.heldID == ""
	if first {
		h.heldID = req.Header.Get("webhook-id")
	}
	h.mu.Unlock()
	if !first {
		h.rcv.ServeHTTP(w, req)
		return
	}
	// Read the body to its end: only then does the server notice the
	// connection closing (and end the request's context).
	_, _ = io.Copy(io.Discard, req.Body)
	close(h.held)
	select {
	case <-req.Context().Done(): // the sender died: its connection closed
		close(h.gone)
	case <-time.After(30 * time.Second): // never answered; the test has failed
	}
}

// keygate is killed (SIGKILL) while a receiver holds its delivery: nothing
// recorded it as sent, so the restarted keygate sends it again under the
// same webhook-id (on SQLite once the dead process's lease expired, on
// PostgreSQL as soon as its lock's connection dropped).
func TestWebhookKilledMidDelivery(t *testing.T) {
	for _, store := range []string{"sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			env := NewEnv(t)
			if store == "postgres" {
				env = webhookPostgresEnv(t)
			}
			killedMidDelivery(t, env)
		})
	}
}

func killedMidDelivery(t *testing.T, env *Env) {
	rcv := newHookReceiver(t)
	h := &holdingReceiver{rcv: rcv, held: make(chan struct{}), gone: make(chan struct{})}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	env, hook := withWebhook(t, env, srv.URL+"/hook", rcv)
	first := env.Serve("--allow-http-webhooks")
	id := env.keyID(t)
	select {
	case <-h.held:
	case <-time.After(20 * time.Second):
		t.Fatal("the delivery never reached the receiver")
	}
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the killed keygate's connection stayed open")
	}
	ds := env.deliveries(t, hook)
	if len(ds) != 1 || ds[0].Status != "pending" || ds[0].EventID != h.heldID {
		t.Fatalf("after the kill: %+v (held %s)", ds, h.heldID)
	}
	second := env.Serve("--allow-http-webhooks")
	Eventually(t, 20*time.Second, "the held event after the restart", func() bool {
		got, _, _ := rcv.snapshot()
		return len(got) >= 1
	})
	got, ids, _ := rcv.snapshot()
	if len(got) != 1 || got[0] != "key.created "+id || ids[0] != h.heldID {
		t.Fatalf("after the restart: %q under %q, want key.created %s under %s", got, ids, id, h.heldID)
	}
	if !workerActive(second) {
		t.Fatal("the restarted keygate did not take delivery over")
	}
	Eventually(t, 10*time.Second, "the delivery recorded", func() bool {
		ds := env.deliveries(t, hook)
		return len(ds) == 1 && ds[0].Status == "delivered"
	})
	if strings.Contains(second.Logs(), "kg_live_") {
		t.Fatal("a key in the logs")
	}
}
