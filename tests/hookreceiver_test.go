package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// hookReceiver is a local receiver that checks every delivery with the
// published Standard Webhooks library, and can be "down" (503).
type hookReceiver struct {
	t    *testing.T
	srv  *httptest.Server
	mu   sync.Mutex
	wh   *standardwebhooks.Webhook
	down bool
	// refused counts deliveries answered 503.
	refused int
	// got is every verified event in arrival order, "type keyID"; ids is
	// its webhook-id.
	got []string
	ids []string
	// bodies are the verified payloads, in arrival order.
	bodies []string
}

func newHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{t: t}
	r.srv = httptest.NewServer(r)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *hookReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		r.refused++
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if r.wh == nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if err := r.wh.Verify(body, req.Header); err != nil {
		r.t.Errorf("delivery %s fails Standard Webhooks verification: %v", req.Header.Get("webhook-id"), err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var e hookEvent
	if err := json.Unmarshal(body, &e); err != nil {
		r.t.Errorf("delivery body: %v", err)
	}
	subject := e.Data.ID
	if e.Data.Threshold > 0 {
		subject = fmt.Sprint(e.Data.Threshold)
	}
	r.got = append(r.got, e.Type+" "+subject)
	r.ids = append(r.ids, req.Header.Get("webhook-id"))
	r.bodies = append(r.bodies, string(body))
	w.WriteHeader(http.StatusNoContent)
}

func (r *hookReceiver) set(fn func(r *hookReceiver)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(r)
}

// payloads are the verified bodies so far, in arrival order.
func (r *hookReceiver) payloads() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...)
}

// endpoint is `keygate webhooks create --json`: the secret is shown once.
type endpoint struct{ ID, Secret string }

// subscribe registers url (plain http, as local receivers are) for events
// with the CLI, and has r verify deliveries with the endpoint's secret.
func (r *hookReceiver) subscribe(env *Env, url string, events ...string) endpoint {
	env.t.Helper()
	args := []string{"webhooks", "create", "--url", url, "--allow-http-webhooks", "--json"}
	for _, e := range events {
		args = append(args, "--event", e)
	}
	out := env.CLI(args...)
	var ep endpoint
	if err := json.Unmarshal([]byte(out), &ep); err != nil {
		env.t.Fatalf("webhooks create: %v %s", err, out)
	}
	wh, err := standardwebhooks.NewWebhook(ep.Secret)
	if err != nil {
		env.t.Fatal(err)
	}
	r.set(func(r *hookReceiver) { r.wh = wh })
	return ep
}

func (r *hookReceiver) snapshot() (got, ids []string, refused int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...), append([]string(nil), r.ids...), r.refused
}

// unique drops at-least-once repeats (same webhook-id) and returns the
// events in first-arrival order.
func unique(got, ids []string) []string {
	seen := map[string]bool{}
	var out []string
	for i, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, got[i])
		}
	}
	return out
}

// contains reports whether every event of want arrived, in want's order.
func inOrder(got, want []string) error {
	pos := map[string]int{}
	for i, g := range got {
		if _, dup := pos[g]; dup {
			return fmt.Errorf("%q arrived twice under different ids", g)
		}
		pos[g] = i
	}
	last := -1
	for _, w := range want {
		i, ok := pos[w]
		if !ok {
			return fmt.Errorf("%q never arrived", w)
		}
		if i < last {
			return fmt.Errorf("%q arrived out of order", w)
		}
		last = i
	}
	return nil
}

func workerActive(s *Server) bool {
	return strings.Contains(s.Logs(), "webhook delivery worker active")
}

// hookEvent is one delivered event as the receiver verified it.
type hookEvent struct {
	Type string `json:"type"`
	Data struct {
		ID            string   `json:"id"`
		Site          string   `json:"site"`
		Account       string   `json:"account"`
		Reason        string   `json:"reason"`
		NewKeyID      string   `json:"new_key_id"`
		RevokedKeyIDs []string `json:"revoked_key_ids"`
		Threshold     int      `json:"threshold"`
	} `json:"data"`
}

// events are the receiver's verified deliveries, at-least-once repeats
// (same webhook-id) dropped.
func (r *hookReceiver) events(t *testing.T) []hookEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	var out []hookEvent
	for i, id := range r.ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		var e hookEvent
		if err := json.Unmarshal([]byte(r.bodies[i]), &e); err != nil {
			t.Errorf("delivery %s: %v", id, err)
		}
		out = append(out, e)
	}
	return out
}
