// Package extauthz is keygate's Envoy external authorizer: it turns a
// request into a credential, the credential into key facts, the facts into a
// policy input, and the policy's decision into what the proxy must do.
//
// Every path ends in a decision: an internal failure is a deny (fail closed),
// never a gRPC error and never an allow.
package extauthz

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
)

// KeyFacts resolves credentials to facts; keystore.Cache implements it.
type KeyFacts interface {
	Key(ctx context.Context, digests []keystore.Digest) (keystore.KeyFacts, error)
	KeyID(ctx context.Context, id string) (keystore.KeyFacts, error)
	Site(ctx context.Context, id string) (keystore.SiteFacts, error)
}

// Decider evaluates the policy; policies.Engine and policies.Policy (one
// snapshot) implement it.
type Decider interface {
	Decide(ctx context.Context, in *policies.Input) (policies.Decision, error)
	PublicSite(path string) (string, bool)
}

// UsageRecorder notes that a key was used; keystore.Usage implements it.
type UsageRecorder interface {
	Record(id string, at time.Time)
}

// Authorizer decides requests. Its fields are required unless noted.
type Authorizer struct {
	Facts    KeyFacts
	Policy   Decider
	Format   keystore.Format
	Digester *keystore.Digester
	Log      *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Usage is optional.
	Usage UsageRecorder
	// Tokens verifies access tokens; without it they are refused as malformed.
	Tokens AccessTokens
	// Budget bounds a decision when the caller set no deadline (default 150 ms,
	// under Envoy's 200 ms default timeout).
	Budget time.Duration
	// Limits charges rate limits and quotas; optional (nil: none counted).
	Limits Limiter
	// ImportedKeys makes credentials that are not keygate keys candidates
	// for imported keys (keystore.LooksImported). Off by default.
	ImportedKeys bool
	// Observer sees every final decision (decision log, metrics); optional.
	Observer Observer
	// Tracer makes spans; nil (the default) means tracing is off.
	Tracer *Tracer
	// Uses spends keys' remaining uses; optional (nil: none spent, as in
	// `keygate check`).
	Uses UseSpender
	// DropUnreadHeaders leaves the request's headers out of the policy
	// input when the policy deciding provably never reads them
	// (policies.Policy.ReadsHeaders): building that map was ~8% of a
	// memo-hit Check. Off by default, since Result.Input shows them (the
	// decision log, a shadow policy, `keygate check`); serve turns it on
	// when neither a decision log nor a shadow policy is configured.
	DropUnreadHeaders bool
}

// inputHeaders reports whether pol's input gets the request's headers.
// pol is the snapshot that decides the request, so a reload to a policy
// that reads headers never sees an input made for one that does not.
func (a *Authorizer) inputHeaders(pol Decider) bool {
	if !a.DropUnreadHeaders {
		return true
	}
	r, ok := pol.(interface{ ReadsHeaders() bool })
	return !ok || r.ReadsHeaders()
}

// Result is a decision with everything a transport needs to answer.
type Result struct {
	Decision policies.Decision
	// Upstream holds the headers to set on the upstream request (allow
	// only), with the decision id (Authorizer.finish adds it). An allow
	// rendered from a template (the gRPC transport's) shares its
	// template's map, read-only, which holds no decision id: DecisionID
	// is it, and UpstreamHeaders gives the two together.
	Upstream map[string]string
	// Remove lists request headers to strip before the upstream sees them.
	Remove []string
	// KeyID, Mode and Site identify the caller for logs and metadata.
	KeyID, Mode, Site string
	// Input is kept for `keygate check` and the decision log.
	Input *policies.Input
	// DecisionID is set by the transport (see Authorizer.finish); it goes
	// to the client on deny and to the upstream on allow.
	DecisionID string
	// Memo says whether the policy's memo answered (hit, miss, off).
	Memo string

	// template renders an allow's shared parts (response_template.go);
	// Upstream is then its map (see Upstream).
	template *allowTemplate
}

// shared reports whether Upstream is a template's map, never written.
func (r *Result) shared() bool { return r.template != nil }

// UpstreamHeaders are the headers to set on the upstream request, the
// decision id's included: Upstream, or for a shared map (see Upstream) a
// copy of it with the id.
func (r *Result) UpstreamHeaders() map[string]string {
	if !r.shared() || r.DecisionID == "" {
		return r.Upstream
	}
	h := make(map[string]string, len(r.Upstream)+1)
	for k, v := range r.Upstream {
		h[k] = v
	}
	h[HeaderDecisionID] = r.DecisionID
	return h
}

// Identity headers keygate sets from its own facts; a policy cannot override
// them and a client cannot send them.
const (
	HeaderAccount     = "x-keygate-account"
	HeaderSite        = "x-keygate-site"
	HeaderKeyID       = "x-keygate-key-id"
	HeaderMode        = "x-keygate-mode"
	HeaderPlan        = "x-keygate-plan"
	HeaderConcurrency = "x-keygate-concurrency"
	identityPrefix    = "x-keygate-"
)

// Authorize decides one request. It never fails: every internal problem is a
// deny with the matching status.
//
// It reads as the request flow: one policy for the whole request, the
// credential resolved to facts, the input assembled once from those values,
// the decision, the limits it asks for, and the answer.
func (a *Authorizer) Authorize(ctx context.Context, r Request) Result {
	return a.authorize(ctx, a.policy(), r, nil, time.Time{})
}

// authorize decides r with pol, the one policy of this request; ec is set
// when r came to the gRPC server (an allow's upstream headers then come
// from a template). start is when the request began (Outcome.Start), the
// one clock read a Check needs before its end (each costs ~100 ns on a VM's
// clock); zero means now.
func (a *Authorizer) authorize(ctx context.Context, pol Decider, r Request, ec *envoyCheck, start time.Time) Result {
	if start.IsZero() {
		start = time.Now()
	}
	if b := a.bound(ctx, start); b != nil {
		ctx = b
		defer b.cancel()
	}
	now := a.clock(start)
	st := ec.requestState()
	r, req, forged := scanned(r, ec.uncheckedRequest(), st.forged[:0], a.inputHeaders(pol))
	credCtx, span := a.span(ctx, "keygate.credential")
	var facts keystore.KeyFacts // on the stack: see resolve
	cred := a.resolve(credCtx, r, now, st, &facts)
	endSpan(span)
	var f *keystore.KeyFacts // the credential's facts, when it has some
	if cred.found {
		f = &facts
	}
	var pub *policies.Public
	if site, ok := pol.PublicSite(req.Path); ok && req.PathOK {
		pub = a.publicSite(ctx, site)
	}
	in := newInput(req, cred, f, pub, now, st)
	in.Request.ClientAddress = clientAddressFor(f, r.ClientAddress)

	policyCtx, span := a.span(ctx, "keygate.policy")
	d, memo, err := decide(policyCtx, pol, in)
	endSpan(span)
	if err != nil {
		a.Log.Error("policy gave no valid decision; denying", "err", err, "path", in.Request.Path)
		d = policyError(ctx, pol, err)
	}
	// From here on only a credential the policy accepted for this request
	// identifies it (passed.go): one it did not is ignored as if absent.
	if d.Allow && f != nil && !accepted(ctx, pol, in, d, f, now) {
		d.Limits = nil // a refused credential's counters are not charged
		f = nil        // nor does it give identity headers, usage or metadata
	}
	if d.Allow {
		limitsCtx, span := a.span(ctx, "keygate.limits")
		d = a.chargeLimits(limitsCtx, pol, in, d, now)
		d = a.spendUse(limitsCtx, pol, d, identityFacts(f, now), now)
		endSpan(span)
	}
	res := a.result(r, in, f, d, now, forged, st, ec.allowTemplates())
	res.Memo = memo
	return res
}

// bound gives a request without a deadline the Authorizer's budget from
// start (the real clock's reading, whatever a.Now says); its timer starts
// only if the decision waits on something (budget.go). It is nil when ctx
// has a deadline, which then stands (Envoy's ext_authz timeout: the usual
// case, which allocates nothing here).
func (a *Authorizer) bound(ctx context.Context, start time.Time) *budgetCtx {
	if _, ok := ctx.Deadline(); ok {
		return nil
	}
	budget := a.Budget
	if budget <= 0 {
		budget = 150 * time.Millisecond
	}
	return &budgetCtx{Context: ctx, deadline: start.Add(budget)}
}

// result is what the transports send: on allow, the identity headers set
// and the client's forgeries and credentials removed. Only a credential
// that passed (see identityFacts) gives the request an identity and a
// usage record.
func (a *Authorizer) result(r Request, in *policies.Input, facts *keystore.KeyFacts, d policies.Decision, now time.Time, forged []string, st *requestState, tt *allowTemplates) Result {
	res := Result{Decision: d, Input: in}
	if facts != nil {
		res.KeyID, res.Mode, res.Site = facts.Key.ID, string(facts.Key.Mode), facts.Site.ID
	}
	who := identityFacts(facts, now)
	if !d.Allow {
		return res
	}
	res.Upstream, res.template = tt.upstream(&res, callerOf(who, in.Public), d)
	res.Remove = clientIdentityHeaders(forged, res.Upstream)
	// Whatever credential headers came, resolved or not (ambiguous and
	// malformed ones reach public routes too), the upstream does not see them.
	if !d.KeepCredentials {
		if len(res.Remove) == 0 { // usually no forgeries: no slice of its own
			res.Remove = appendCredentialHeaders(st.remove[:0], r.Headers)
		} else {
			res.Remove = appendCredentialHeaders(res.Remove, r.Headers)
		}
	}
	if who != nil && a.Usage != nil {
		a.Usage.Record(who.Key.ID, now)
	}
	return res
}

// memoDecider is a Decider that says whether its memo answered;
// policies.Policy and policies.Engine are.
type memoDecider interface {
	DecideMemo(ctx context.Context, in *policies.Input) (policies.Decision, policies.MemoResult, error)
}

func decide(ctx context.Context, pol Decider, in *policies.Input) (policies.Decision, string, error) {
	if m, ok := pol.(memoDecider); ok {
		d, memo, err := m.DecideMemo(ctx, in)
		return d, string(memo), err
	}
	d, err := pol.Decide(ctx, in)
	return d, string(policies.MemoOff), err
}

func (a *Authorizer) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// clock is the time a decision is made at: a.Now's, else real, read at
// start.
func (a *Authorizer) clock(start time.Time) time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return start
}

// newInput assembles the policy input, in one place, from the values the
// steps before produced, in the request's state.
func newInput(req policies.Request, cred resolution, f *keystore.KeyFacts, pub *policies.Public, now time.Time, st *requestState) *policies.Input {
	in := &st.in
	*in = policies.Input{Request: req, Public: pub,
		Credential: policies.Credential{Status: cred.status, Kind: string(cred.kind), Scheme: cred.cred.Scheme}}
	if f != nil {
		st.key, st.site, st.account = keyValue(&f.Key, now), siteValue(&f.Site), accountValue(&f.Account)
		in.Key, in.Site, in.Account = &st.key, &st.site, &st.account
	}
	return in
}

func siteInput(s *keystore.Site) *policies.Site {
	v := siteValue(s)
	return &v
}

func siteValue(s *keystore.Site) policies.Site {
	return policies.Site{ID: s.ID, Account: s.AccountID, Domains: s.Domains, Active: s.Active, Limits: s.Limits}
}

func accountInput(a *keystore.Account) *policies.Account {
	v := accountValue(a)
	return &v
}

func accountValue(a *keystore.Account) policies.Account {
	return policies.Account{ID: a.ID, Plan: a.Plan, Status: string(a.Status), Limits: a.Limits}
}

func (a *Authorizer) publicSite(ctx context.Context, id string) *policies.Public {
	ctx, span := a.span(ctx, "keygate.lookup")
	f, err := a.Facts.Site(ctx, id)
	endSpan(span)
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		return &policies.Public{Status: policies.CredUnknown}
	case err != nil:
		a.Log.Warn("site lookup failed", "site", id, "err", err)
		return &policies.Public{Status: policies.CredUnavailable}
	}
	return &policies.Public{Status: policies.CredFound, Site: siteInput(&f.Site), Account: accountInput(&f.Account)}
}

// caller is who an allow's identity headers name: the key's facts, or the
// site of a public route; the zero caller has none.
type caller struct {
	// key: a key's identity (with its id); public: a public site's.
	key, public                      bool
	account, site, keyID, mode, plan string
}

// callerOf is f's caller, else pub's site's.
func callerOf(f *keystore.KeyFacts, pub *policies.Public) caller {
	switch {
	case f != nil:
		return caller{key: true, account: f.Account.ID, site: f.Site.ID, keyID: f.Key.ID, mode: string(f.Key.Mode), plan: f.Account.Plan}
	case pub != nil && pub.Site != nil:
		return caller{public: true, account: pub.Account.ID, site: pub.Site.ID, mode: string(keystore.ModeLive), plan: pub.Account.Plan}
	}
	return caller{}
}

// identity builds the upstream headers of an allow: the policy's, then the
// identity of c on top so that no policy or client can forge them.
func identity(c caller, fromPolicy map[string]string) map[string]string {
	out := make(map[string]string, len(fromPolicy)+6)
	for k, v := range fromPolicy {
		out[k] = v
	}
	if c.key {
		out[HeaderKeyID] = c.keyID
	}
	if c.key || c.public {
		out[HeaderAccount] = c.account
		out[HeaderSite] = c.site
		out[HeaderMode] = c.mode
		out[HeaderPlan] = c.plan
	}
	return out
}

// clientIdentityHeaders lists the x-keygate-* headers the client sent
// (forged, found by scanRequest) that keygate does not overwrite, so that
// none reaches the upstream. (Envoy applies removals after sets, so a header
// keygate sets must not be listed.)
func clientIdentityHeaders(forged []string, set map[string]string) []string {
	var out []string
	for _, k := range forged {
		if _, ours := set[k]; !ours {
			out = append(out, k)
		}
	}
	slices.Sort(out) // map order is random; responses should not be
	return out
}

// policyError is the decision when the policy could not decide: 503 when the
// request ran out of time, 500 otherwise.
func policyError(ctx context.Context, pol Decider, err error) policies.Decision {
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		return Deny(pol, denyUnavailable, "timeout")
	}
	return Deny(pol, denyPolicyError, "policy_error")
}

// policy is the one policy this request is decided with (see
// policies.Engine.Snapshot); a Decider that cannot pin one is used as is.
func (a *Authorizer) policy() Decider {
	if e, ok := a.Policy.(interface{ Snapshot() *policies.Policy }); ok {
		return e.Snapshot()
	}
	return a.Policy
}
