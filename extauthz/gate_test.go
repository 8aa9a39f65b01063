package extauthz

import (
	"context"
	"strings"
	"testing"
)

// recordingGate is a Gate that is not an *Authorizer: it passes every call
// to one and records the decisions asked and the requests finished.
type recordingGate struct {
	Gate
	paths    []string
	finished []string
}

func (g *recordingGate) DecideWith(ctx context.Context, pol Decider, r Request) Result {
	g.paths = append(g.paths, r.Path)
	return g.Gate.DecideWith(ctx, pol, r)
}

func (g *recordingGate) Finish(o *Outcome, res *Result) {
	g.Gate.Finish(o, res)
	g.finished = append(g.finished, o.Transport+" "+res.DecisionID)
}

// TestExchangeUsesOnlyItsGate: the token exchange works through any Gate,
// asks it exactly one decision per mint and per refresh (on the declared
// mint route), and finishes every request through it once, denials
// included.
func TestExchangeUsesOnlyItsGate(t *testing.T) {
	f := newTokenFixture(t)
	g := &recordingGate{Gate: f.authz}
	f.exchange.Gate = g
	refresh := refreshTokenOf(t, mintLive(t, f))
	if w := exchangePost(t, f.exchange, "/auth/refresh", `{"refreshToken":"`+refresh+`"}`); w.Code != 200 {
		t.Fatalf("refresh: %d %s", w.Code, w.Body)
	}
	if w := exchangePost(t, f.exchange, "/auth/refresh", `{}`); w.Code != 400 {
		t.Fatalf("empty refresh: %d %s", w.Code, w.Body)
	}
	if len(g.paths) != 2 || g.paths[0] != "/" || g.paths[1] != "/" {
		t.Errorf("decisions asked on %q, want one per mint and refresh, on the mint route /", g.paths)
	}
	if len(g.finished) != 3 {
		t.Fatalf("finished %q, want the three requests", g.finished)
	}
	for i, want := range []string{TransportTokenAPIKey, TransportTokenRefresh, TransportTokenRefresh} {
		if !strings.HasPrefix(g.finished[i], want+" ") || g.finished[i] == want+" " {
			t.Errorf("request %d finished as %q, want transport %s with a decision id", i, g.finished[i], want)
		}
	}
}
