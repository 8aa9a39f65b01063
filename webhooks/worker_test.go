package webhooks

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/keygate/keygate/internal/storetest"
	"github.com/keygate/keygate/internal/testclock"
	"github.com/keygate/keygate/keystore"
)

// receiver records verified deliveries; it answers 503 while down.
type receiver struct {
	t      *testing.T
	wh     *standardwebhooks.Webhook
	mu     sync.Mutex
	down   bool
	hits   int
	events []string // "type key-id" in arrival order
	ids    []string
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hits++
	if r.down {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	// The clock of these tests is fixed in 2030, so timestamps are
	// checked by the worker's own test, not the library's tolerance.
	if err := r.wh.VerifyIgnoringTimestamp(body, req.Header); err != nil {
		r.t.Errorf("signature: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var e struct {
		Type string `json:"type"`
		Data struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		r.t.Errorf("body: %v", err)
	}
	r.events = append(r.events, e.Type+" "+e.Data.ID)
	r.ids = append(r.ids, req.Header.Get(HeaderID))
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) setDown(down bool) { r.mu.Lock(); r.down = down; r.mu.Unlock() }

type fixture struct {
	store *keystore.Store
	clock *testclock.Clock
	rcv   *receiver
	srv   *httptest.Server
	ep    keystore.WebhookEndpoint
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	c := testclock.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	st, _ := storetest.Open(t, c.Now)
	secret, _ := NewSecret()
	wh, _ := standardwebhooks.NewWebhook(secret)
	rcv := &receiver{t: t, wh: wh}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	ep, err := st.CreateWebhook(context.Background(), keystore.WebhookEndpoint{URL: srv.URL + "/hook", Events: keystore.EventTypes}, secret)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := st.CreateAccount(ctx, keystore.Account{ID: "acct", Plan: "pro"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateSite(ctx, keystore.Site{ID: "site1", AccountID: "acct", Active: true}); err != nil {
		t.Fatal(err)
	}
	return &fixture{store: st, clock: c, rcv: rcv, srv: srv, ep: ep}
}

func (fx *fixture) worker(d Destinations) *Worker {
	return &Worker{Outbox: fx.store, Destinations: d, Now: fx.clock.Now, RetryFor: time.Hour, MinBackoff: time.Second, MaxBackoff: time.Minute}
}

func TestWorkerDeliversInOrderThroughAnOutage(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	w := fx.worker(Destinations{AllowHTTP: true})
	var want []string
	fx.rcv.setDown(true)
	for range 3 {
		k, _, err := fx.store.CreateKey(ctx, keystore.KeySpec{SiteID: "site1", Mode: keystore.ModeLive})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fx.store.RevokeKey(ctx, k.ID); err != nil {
			t.Fatal(err)
		}
		want = append(want, "key.created "+k.ID, "key.revoked "+k.ID)
	}
	// Down: only the head is tried, again after each backoff (≤ 1 s, then
	// ≤ 2 s), while the newer ones wait behind it.
	for range 12 {
		if _, err := w.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		fx.clock.Add(time.Second / 4)
	}
	ds, _ := fx.store.WebhookDeliveries(ctx, fx.ep.ID, 0)
	if fx.rcv.hits < 2 || len(ds) != len(want) {
		t.Fatalf("hits %d, deliveries %d", fx.rcv.hits, len(ds))
	}
	head := ds[len(ds)-1]
	if head.Status != keystore.DeliveryPending || head.Attempts < 2 || head.LastStatus != 503 {
		t.Fatalf("head after outage = %+v", head)
	}
	for _, d := range ds[:len(ds)-1] {
		if d.Attempts != 0 {
			t.Fatalf("%s attempted while the head waits", d.ID)
		}
	}
	fx.rcv.setDown(false)
	fx.clock.Add(time.Minute)
	if _, err := w.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(fx.rcv.events, "\n"); got != strings.Join(want, "\n") {
		t.Fatalf("received:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	ds, _ = fx.store.WebhookDeliveries(ctx, fx.ep.ID, 0)
	for _, d := range ds {
		if d.Status != keystore.DeliveryDelivered {
			t.Fatalf("delivery %+v", d)
		}
	}
	if n, _ := w.RunOnce(ctx); n != 0 {
		t.Fatalf("%d more attempts after everything was delivered", n)
	}
}

func TestWorkerGivesUpAfterRetryFor(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	w := fx.worker(Destinations{AllowHTTP: true})
	fx.rcv.setDown(true)
	if _, _, err := fx.store.CreateKey(ctx, keystore.KeySpec{SiteID: "site1", Mode: keystore.ModeLive}); err != nil {
		t.Fatal(err)
	}
	attempts := 0
	for i := 0; i < 200; i++ {
		n, err := w.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		attempts += n
		ds, _ := fx.store.WebhookDeliveries(ctx, fx.ep.ID, 0)
		if ds[0].Status == keystore.DeliveryFailed {
			break
		}
		if ds[0].NextAttemptAt.After(ds[0].CreatedAt.Add(time.Hour)) {
			t.Fatalf("next attempt %v is past the retry window", ds[0].NextAttemptAt)
		}
		fx.clock.Add(time.Minute)
	}
	ds, _ := fx.store.WebhookDeliveries(ctx, fx.ep.ID, 0)
	if ds[0].Status != keystore.DeliveryFailed {
		t.Fatalf("still %s after the window", ds[0].Status)
	}
	// An hour at most a minute apart, doubling from a second: ~60 + 6.
	if attempts < 50 || attempts > 80 {
		t.Fatalf("%d attempts in an hour", attempts)
	}
	// Retried by hand, it goes again and arrives.
	fx.rcv.setDown(false)
	if _, err := fx.store.RetryDelivery(ctx, fx.ep.ID, ds[0].ID); err != nil {
		t.Fatal(err)
	}
	if n, err := w.RunOnce(ctx); err != nil || n != 1 || len(fx.rcv.events) != 1 {
		t.Fatalf("after retry: %d attempts, %v, events %v", n, err, fx.rcv.events)
	}
}

// The production rules refuse the loopback receiver at dial time: the
// attempt fails without reaching it.
func TestWorkerRefusesPrivateDestinations(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	w := fx.worker(Destinations{})
	if _, _, err := fx.store.CreateKey(ctx, keystore.KeySpec{SiteID: "site1", Mode: keystore.ModeLive}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	ds, _ := fx.store.WebhookDeliveries(ctx, fx.ep.ID, 0)
	if fx.rcv.hits != 0 || ds[0].Status != keystore.DeliveryPending || !strings.Contains(ds[0].LastError, "not allowed") {
		t.Fatalf("hits %d, delivery %+v", fx.rcv.hits, ds[0])
	}
}

func TestBackoff(t *testing.T) {
	w := &Worker{MinBackoff: time.Second, MaxBackoff: time.Minute}
	w.init()
	for n, full := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 7: time.Minute, 50: time.Minute} {
		for range 100 {
			if d := w.backoff(n); d < full/2 || d > full {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, d, full/2, full)
			}
		}
	}
}

// Each delivery's signature uses the time it is sent, which the library
// checks against its own clock within five minutes.
func TestWorkerSignsWithSendTime(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	fx.clock.Set(time.Now())
	secret, _ := NewSecret()
	wh, _ := standardwebhooks.NewWebhook(secret)
	var verr error
	got := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		verr = wh.Verify(body, r.Header)
		got++
	}))
	defer srv.Close()
	if _, err := fx.store.CreateWebhook(ctx, keystore.WebhookEndpoint{URL: srv.URL, Events: []string{keystore.EventKeyCreated}}, secret); err != nil {
		t.Fatal(err)
	}
	if _, _, err := fx.store.CreateKey(ctx, keystore.KeySpec{SiteID: "site1", Mode: keystore.ModeLive}); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.worker(Destinations{AllowHTTP: true}).RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got != 1 || verr != nil {
		t.Fatalf("received %d, verify: %v", got, verr)
	}
}

// Run calls Scan on the delivering replica before it sends.
func TestWorkerRunScans(t *testing.T) {
	fx := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	scans := 0
	w := fx.worker(Destinations{AllowHTTP: true})
	w.Scan = func(_ context.Context, now time.Time) error {
		scans++
		if !now.Equal(fx.clock.Now()) {
			t.Errorf("scan at %v, clock %v", now, fx.clock.Now())
		}
		cancel()
		return nil
	}
	if err := w.Run(ctx); err != context.Canceled {
		t.Fatalf("Run = %v", err)
	}
	if scans != 1 {
		t.Fatalf("%d scans", scans)
	}
}
