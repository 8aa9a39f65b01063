package extauthz

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/keygate/keygate/keystore"
)

// Gate is the Authorizer as a transport outside Check sees it (the token
// exchange), and all such a transport may ask of it: one policy snapshot per
// request, a decision under that snapshot, the bracket every final decision
// goes through, the clock, the digests secrets are stored under and the log.
// *Authorizer is the Gate; the exchange reads none of its fields.
type Gate interface {
	// Snapshot is the one policy a request is decided with (every deny of
	// that request is shaped by it too).
	Snapshot() Decider
	// DecideWith decides r with pol exactly as Check would.
	DecideWith(ctx context.Context, pol Decider, r Request) Result
	// Begin opens a request's decision (its id, clock and trace span);
	// Finish closes it: the id into res, the trace, metrics and decision log.
	Begin(ctx context.Context, transport string, headers propagation.TextMapCarrier) (context.Context, Outcome)
	Finish(o *Outcome, res *Result)
	// Clock is the time decisions are made at.
	Clock() time.Time
	// Digests are the digests a secret is stored under, the primary first.
	Digests(raw string) []keystore.Digest
	// Logger is where the transport logs (never a secret).
	Logger() *slog.Logger
}

var _ Gate = (*Authorizer)(nil)

// Snapshot implements Gate.
func (a *Authorizer) Snapshot() Decider { return a.policy() }

// DecideWith implements Gate.
func (a *Authorizer) DecideWith(ctx context.Context, pol Decider, r Request) Result {
	return a.authorize(ctx, pol, r, nil, time.Time{})
}

// Begin implements Gate.
func (a *Authorizer) Begin(ctx context.Context, transport string, headers propagation.TextMapCarrier) (context.Context, Outcome) {
	return a.begin(ctx, transport, headers)
}

// Finish implements Gate.
func (a *Authorizer) Finish(o *Outcome, res *Result) { a.finish(o, res) }

// Clock implements Gate.
func (a *Authorizer) Clock() time.Time { return a.now() }

// Digests implements Gate.
func (a *Authorizer) Digests(raw string) []keystore.Digest { return a.Digester.All(raw) }

// Logger implements Gate.
func (a *Authorizer) Logger() *slog.Logger { return a.Log }
