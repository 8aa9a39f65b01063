package extauthz

import (
	"context"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/policies"
)

// watchedPolicy hands out the policy's decisions, which on a memo hit share
// their maps, limits and body with the memo entry (policies/memo.go does not
// copy them), and keeps a private copy of each to compare with later.
type watchedPolicy struct {
	pol  *policies.Policy
	mu   sync.Mutex
	seen []watchedDecision
}

type watchedDecision struct{ handed, copied policies.Decision }

func (w *watchedPolicy) DecideMemo(ctx context.Context, in *policies.Input) (policies.Decision, policies.MemoResult, error) {
	d, memo, err := w.pol.DecideMemo(ctx, in)
	w.mu.Lock()
	w.seen = append(w.seen, watchedDecision{d, copyDecision(d)})
	w.mu.Unlock()
	return d, memo, err
}

func (w *watchedPolicy) PublicSite(path string) (string, bool) { return w.pol.PublicSite(path) }

func (w *watchedPolicy) Denial(name string) (policies.Decision, bool) { return w.pol.Denial(name) }

func (w *watchedPolicy) MintRoute() (string, bool) { return w.pol.MintRoute() }

func (w *watchedPolicy) Decide(ctx context.Context, in *policies.Input) (policies.Decision, error) {
	d, _, err := w.DecideMemo(ctx, in)
	return d, err
}

// unchanged fails the test when anything wrote through a decision it was
// handed: the memo would give the next request the edited one.
func (w *watchedPolicy) unchanged(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.seen) == 0 {
		t.Fatal("no decisions watched")
	}
	for _, s := range w.seen {
		if diff := cmp.Diff(s.copied, s.handed); diff != "" {
			t.Fatalf("a caller changed a remembered decision (-as decided +now):\n%s", diff)
		}
	}
}

func copyDecision(d policies.Decision) policies.Decision {
	d.Headers, d.ResponseHeaders = maps.Clone(d.Headers), maps.Clone(d.ResponseHeaders)
	d.Body, d.Limits = slices.Clone(d.Body), slices.Clone(d.Limits)
	return d
}

// TestMemoHitUnchanged: no part of a Check writes through the decision the
// policy handed it (allows with identity and decision-id headers, forged
// identity headers, denies, rate-limit headers added to an allow, a rate
// refusal), so memo hits can share one Decision without copying it.
func TestMemoHitUnchanged(t *testing.T) {
	f := newFixture(t)
	engine := f.server.Authorizer.Policy.(*policies.Engine)
	w := &watchedPolicy{pol: engine.Snapshot()}
	f.server.Authorizer.Policy = w
	ctx := envoyContext(t)
	live := f.live.Reveal()
	requests := []struct {
		path    string
		headers map[string]string
	}{
		{"/v1/videos?limit=10", map[string]string{"authorization": "Bearer " + live}},
		{"/v1/sites/acme-web/videos", map[string]string{"x-api-key": live, "x-keygate-account": "evil", "x-keygate-decision-id": "forged"}},
		{"/health", map[string]string{"x-keygate-account": "evil"}},
		{"/v1/videos", nil},
		{"/v1/sites/other/videos", map[string]string{"authorization": "Bearer " + live}},
	}
	for range 3 { // the first round fills the memo, the others hit it
		for _, r := range requests {
			f.server.Check(ctx, envoyCheckRequest("GET", r.path, r.headers)) //nolint:errcheck // never fails
		}
	}
	if s := engine.MemoStats(); s.Hits == 0 {
		t.Fatalf("no memo hits: %+v", s)
	}
	w.unchanged(t)

	lf := newLimitsFixture(t, keystore.Limits{"rate": 2})
	lw := &watchedPolicy{pol: lf.authz.Policy.(*policies.Engine).Snapshot()}
	lf.authz.Policy = lw
	lf.withLimiter(t, limits.Config{})
	for range 4 { // two allows with RateLimit-* headers, then refusals
		lf.check("GET", "/v1/videos")
	}
	lw.unchanged(t)
}
