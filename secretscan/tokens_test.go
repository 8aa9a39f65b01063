package secretscan_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/secretscan"
	"github.com/keygate/keygate/tokens"
)

// tokenFixture adds the token exchange's pieces to a fixture: a keyring
// that verifies access tokens, and a clock.
type tokenFixture struct {
	*fixture
	ring *tokens.Keyring
	now  time.Time
	dig  *keystore.Digester
}

func newTokenFixture(t *testing.T, action string) *tokenFixture {
	fx := newFixture(t, action)
	ring := tokens.NewKeyring(tokens.NewFormat("kg"))
	now := time.Now()
	if err := ring.Set([]tokens.SigningKey{{ID: "sk_1", Secret: []byte("0123456789abcdef0123456789abcdef"), NotBefore: now.Add(-24 * time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	fx.h.Tokens = ring
	fx.h.Now = func() time.Time { return now }
	return &tokenFixture{fixture: fx, ring: ring, now: now, dig: fx.h.Digester}
}

func (fx *tokenFixture) access(k keystore.Key, issued time.Time) string {
	raw, _, err := fx.ring.Mint(k.ID, string(k.Mode), issued, time.Hour)
	if err != nil {
		fx.t.Fatal(err)
	}
	return raw
}

func (fx *tokenFixture) refresh(k keystore.Key) string {
	raw, err := tokens.NewFormat("kg").NewRefresh()
	if err != nil {
		fx.t.Fatal(err)
	}
	if err := fx.store.IssueRefreshToken(context.Background(), k.ID, fx.dig.Primary(raw), fx.now.Add(time.Hour)); err != nil {
		fx.t.Fatal(err)
	}
	return raw
}

// leakEvents lists the outbox as "type key-id credential action-or-reason",
// and whether the event names the token's family and expiry.
func leakEvents(t *testing.T, st *keystore.Store) []string {
	t.Helper()
	var out []string
	for _, e := range outbox(t, st) {
		line := e.Type + " " + e.Data.ID + " " + e.Data.Credential + " " + e.what()
		if e.Data.Family != "" {
			line += " family"
		}
		if e.Data.Exp != nil {
			line += " expiry"
		}
		out = append(out, strings.TrimSpace(strings.ReplaceAll(line, "  ", " ")))
	}
	return out
}

// Reported access and refresh tokens: ours (whatever their state) are true
// positives and acted on by the --leaked-keys rule of their key's mode;
// forged, foreign and unknown ones are false positives; a replay changes
// nothing.
func TestGitHubReportsTokens(t *testing.T) {
	fx := newTokenFixture(t, secretscan.ActionDefault)
	ctx := context.Background()
	liveA, _ := fx.key(keystore.ModeLive) // its access token leaks
	liveR, _ := fx.key(keystore.ModeLive) // its refresh token leaks
	test, _ := fx.key(keystore.ModeTest)  // its access and refresh tokens leak
	old, _ := fx.key(keystore.ModeLive)   // an expired access token of it leaks

	accessLive := fx.access(liveA, fx.now)
	refreshLive := fx.refresh(liveR)
	accessTest, refreshTest := fx.access(test, fx.now), fx.refresh(test)
	expired := fx.access(old, fx.now.Add(-2*time.Hour))
	forged := accessLive[:len(accessLive)-3] + "AAA"
	otherRing := tokens.NewKeyring(tokens.NewFormat("kg"))
	_ = otherRing.Set([]tokens.SigningKey{{ID: "sk_1", Secret: []byte("another-deployment-secret-0123456"), NotBefore: fx.now.Add(-time.Hour)}})
	foreign, _, _ := otherRing.Mint(liveA.ID, "live", fx.now, time.Hour)
	unknownRefresh, _ := tokens.NewFormat("kg").NewRefresh()

	body := reportBody(accessLive, refreshLive, accessTest, refreshTest, expired, forged, foreign, unknownRefresh, "kg_rt_short", "kg_at_x.y")
	status, raw := fx.post(body, fx.signed(body))
	if status != 200 {
		t.Fatalf("status %d: %s", status, raw)
	}
	want := "true_positive true_positive true_positive true_positive true_positive false_positive false_positive false_positive false_positive false_positive"
	if _, got := labels(t, raw); got != want {
		t.Fatalf("labels\n%s\nwant\n%s", got, want)
	}

	// The live access token's key is revoked (the only way to end the
	// token); the live refresh token's family is, its key is not.
	if k, _ := fx.store.Key(ctx, liveA.ID); k.RevokedAt == nil {
		t.Fatal("key of a leaked live access token not revoked")
	}
	if k, _ := fx.store.Key(ctx, liveR.ID); k.RevokedAt != nil {
		t.Fatal("a leaked refresh token revoked its key")
	}
	if _, live, err := fx.store.PeekRefreshToken(ctx, fx.dig.All(refreshLive), fx.now); err != nil || live {
		t.Fatalf("leaked live refresh token still redeemable: live=%v %v", live, err)
	}
	if _, live, err := fx.store.PeekRefreshToken(ctx, fx.dig.All(refreshTest), fx.now); err != nil || !live {
		t.Fatalf("a test key's refresh token revoked by default: live=%v %v", live, err)
	}
	for _, k := range []keystore.Key{test, old} {
		if got, _ := fx.store.Key(ctx, k.ID); got.RevokedAt != nil {
			t.Fatalf("key %s revoked", k.ID)
		}
	}
	events := leakEvents(t, fx.store)
	wantEvents := []string{
		"key.leaked " + liveA.ID + " access_token revoked expiry", "key.revoked " + liveA.ID + " leaked",
		"key.leaked " + liveR.ID + " refresh_token revoked family",
		"key.leaked " + test.ID + " access_token notified expiry",
		"key.leaked " + test.ID + " refresh_token notified family",
		"key.leaked " + old.ID + " access_token expired expiry",
	}
	wantLines(t, "events", events, wantEvents)
	// The audit trail records every leak.
	for _, k := range []keystore.Key{liveA, liveR, test, old} {
		entries, err := fx.store.Audit(ctx, k.ID, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range entries {
			found = found || strings.HasPrefix(e.Action, "leak reported (")
		}
		if !found {
			t.Errorf("no audit entry for the leak of %s: %+v", k.ID, entries)
		}
	}

	// A replay answers the same and changes nothing.
	status, again := fx.post(body, fx.signed(body))
	if status != 200 || again != raw {
		t.Fatalf("replay: %d %s", status, again)
	}
	if got := leakEvents(t, fx.store); len(got) != len(events) {
		t.Fatalf("replay added events: %v", got)
	}
	// The leaked refresh token is dead: presenting it is reuse.
	next, _ := tokens.NewFormat("kg").NewRefresh()
	if _, err := fx.store.RedeemRefreshToken(ctx, fx.dig.All(refreshLive), fx.dig.Primary(next), fx.now.Add(time.Hour)); !errors.Is(err, keystore.ErrRefreshReused) {
		t.Fatalf("redeeming the leaked refresh token: %v", err)
	}
}

// Without the token exchange (no keyring) access tokens cannot be checked
// and are false positives; refresh tokens still are recognised.
func TestGitHubReportsTokensExchangeOff(t *testing.T) {
	fx := newTokenFixture(t, secretscan.ActionRevoke)
	live, _ := fx.key(keystore.ModeLive)
	access, refresh := fx.access(live, fx.now), fx.refresh(live)
	fx.h.Tokens = nil
	body := reportBody(access, refresh)
	status, raw := fx.post(body, fx.signed(body))
	if _, got := labels(t, raw); status != 200 || got != "false_positive true_positive" {
		t.Fatalf("%d %s", status, raw)
	}
	if k, _ := fx.store.Key(context.Background(), live.ID); k.RevokedAt != nil {
		t.Fatal("key revoked")
	}
}
