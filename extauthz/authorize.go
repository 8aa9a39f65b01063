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
	"strings"
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

// Decider evaluates the policy; policies.Engine implements it.
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
	// for imported keys (see imported.go). Off by default.
	ImportedKeys bool
	// Observer sees every final decision (decision log, metrics); optional.
	Observer Observer
	// Tracer makes spans; nil (the default) means tracing is off.
	Tracer *Tracer
}

// Result is a decision with everything a transport needs to answer.
type Result struct {
	Decision policies.Decision
	// Upstream holds the headers to set on the upstream request (allow only).
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
func (a *Authorizer) Authorize(ctx context.Context, r Request) Result {
	if _, ok := ctx.Deadline(); !ok {
		budget := a.Budget
		if budget <= 0 {
			budget = 150 * time.Millisecond
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, budget)
		defer cancel()
	}
	now := a.now()
	in := &policies.Input{Request: policyRequest(r)}
	credCtx, span := a.span(ctx, "keygate.credential")
	_, facts := a.resolveCredential(credCtx, r, in, now)
	endSpan(span)
	if site, ok := a.Policy.PublicSite(in.Request.Path); ok && in.Request.PathOK {
		in.Public = a.publicSite(ctx, site)
	}

	policyCtx, span := a.span(ctx, "keygate.policy")
	d, memo, err := a.decide(policyCtx, in)
	endSpan(span)
	if err != nil {
		a.Log.Error("policy gave no valid decision; denying", "err", err, "path", in.Request.Path)
		d = policyError(ctx, err)
	}
	res := Result{Decision: d, Input: in, Memo: memo}
	if facts != nil {
		res.KeyID, res.Mode, res.Site = facts.Key.ID, string(facts.Key.Mode), facts.Site.ID
	}
	// From here on only a credential that passed identifies the request.
	who := identityFacts(facts, now)
	if d.Allow && facts != nil && who == nil {
		d.Limits = nil // a refused credential's counters are not charged
	}
	if d.Allow {
		limitsCtx, span := a.span(ctx, "keygate.limits")
		res.Decision = a.chargeLimits(limitsCtx, d, now)
		endSpan(span)
	}
	if !res.Decision.Allow {
		return res
	}
	res.Upstream = identity(who, in.Public, d.Headers)
	res.Remove = clientIdentityHeaders(r.Headers, res.Upstream)
	// Whatever credential headers came, resolved or not (ambiguous and
	// malformed ones reach public routes too), the upstream does not see them.
	if !d.KeepCredentials {
		res.Remove = append(res.Remove, presentCredentialHeaders(r.Headers)...)
	}
	if who != nil && a.Usage != nil {
		a.Usage.Record(who.Key.ID, now)
	}
	return res
}

// memoDecider is a Decider that says whether its memo answered;
// policies.Engine is one.
type memoDecider interface {
	DecideMemo(ctx context.Context, in *policies.Input) (policies.Decision, policies.MemoResult, error)
}

func (a *Authorizer) decide(ctx context.Context, in *policies.Input) (policies.Decision, string, error) {
	if m, ok := a.Policy.(memoDecider); ok {
		d, memo, err := m.DecideMemo(ctx, in)
		return d, string(memo), err
	}
	d, err := a.Policy.Decide(ctx, in)
	return d, string(policies.MemoOff), err
}

func (a *Authorizer) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// resolveCredential fills in.Credential (and key facts when found). Format
// and checksum are checked before cache or store are touched.
func (a *Authorizer) resolveCredential(ctx context.Context, r Request, in *policies.Input, now time.Time) (Credential, *keystore.KeyFacts) {
	cred, status := ExtractCredential(r.Headers)
	if status == credMalformed {
		cred, status = a.bareToken(r.Headers, cred, status)
	}
	if r.BodyKey != "" {
		cred, status = withBodyKey(cred, status, r.BodyKey)
	}
	in.Credential.Scheme = cred.Scheme
	switch status {
	case credMissing:
		in.Credential.Status = policies.CredMissing
		return cred, nil
	case credAmbiguous:
		in.Credential.Status = policies.CredAmbiguous
		return cred, nil
	case credMalformed:
		in.Credential.Status = policies.CredMalformed
		return cred, nil
	}
	raw := cred.Value.Reveal()
	// Classify by shape before any lookup: a credential that is none of the
	// shapes keygate issues or imported costs nothing but this switch.
	switch {
	case a.Format.Looks(raw):
		in.Credential.Kind = "key"
		if _, err := a.Format.Parse(raw); err != nil {
			in.Credential.Status = policies.CredMalformed
			return cred, nil
		}
		return cred, a.lookupKey(ctx, raw, in, now)
	case a.Tokens != nil && a.Tokens.Looks(raw):
		in.Credential.Kind = "token"
		return cred, a.lookupToken(ctx, raw, in, now)
	case a.ImportedKeys && keystore.LooksImported(raw):
		// Imported keys have no shape to check offline, so with the flag on
		// any plausible string costs a cache lookup and, once per digest per
		// negative TTL, a store read. Off (the default), garbage never
		// touches cache or store.
		in.Credential.Kind = "key"
		return cred, a.lookupKey(ctx, raw, in, now)
	default:
		in.Credential.Status = policies.CredMalformed
		return cred, nil
	}
}

// withBodyKey adds the token exchange's body key to what the headers
// carried: alone it is the credential (scheme "body"); with the same key in
// a header it changes nothing; with a different one it is ambiguous.
func withBodyKey(cred Credential, status credentialStatus, key keystore.Secret) (Credential, credentialStatus) {
	switch status {
	case credMissing:
		return Credential{Scheme: "body", Value: key}, credOK
	case credOK:
		if !sameSecret(cred.Value, key) {
			return Credential{}, credAmbiguous
		}
	}
	return cred, status
}

// lookupKey resolves a key through the cache by its digests.
func (a *Authorizer) lookupKey(ctx context.Context, raw string, in *policies.Input, now time.Time) *keystore.KeyFacts {
	digests := a.Digester.All(raw)
	ctx, span := a.span(ctx, "keygate.lookup")
	facts, err := a.Facts.Key(ctx, digests)
	endSpan(span)
	return a.keyFacts(facts, err, in, now, digests[0].Short())
}

// keyFacts records the outcome of a key lookup in the input.
func (a *Authorizer) keyFacts(facts keystore.KeyFacts, err error, in *policies.Input, now time.Time, logRef string) *keystore.KeyFacts {
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		in.Credential.Status = policies.CredUnknown
		return nil
	case err != nil:
		a.Log.Warn("key lookup failed", "err", err, "ref", logRef)
		in.Credential.Status = policies.CredUnavailable
		return nil
	}
	in.Credential.Status = policies.CredFound
	setKeyFacts(in, &facts, now)
	return &facts
}

func setKeyFacts(in *policies.Input, f *keystore.KeyFacts, now time.Time) {
	// One allocation for the three parts of every key decision.
	facts := &struct {
		key     policies.Key
		site    policies.Site
		account policies.Account
	}{
		key: policies.Key{ID: f.Key.ID, Mode: string(f.Key.Mode), Name: f.Key.Name,
			Revoked: f.Key.Revoked(now), Expired: f.Key.Expired(now)},
		site:    siteValue(&f.Site),
		account: accountValue(&f.Account),
	}
	in.Key, in.Site, in.Account = &facts.key, &facts.site, &facts.account
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

// identity builds the upstream headers of an allow: the policy's, then the
// identity facts on top so that no policy or client can forge them.
func identity(f *keystore.KeyFacts, pub *policies.Public, fromPolicy map[string]string) map[string]string {
	out := make(map[string]string, len(fromPolicy)+6)
	for k, v := range fromPolicy {
		out[k] = v
	}
	switch {
	case f != nil:
		out[HeaderAccount] = f.Account.ID
		out[HeaderSite] = f.Site.ID
		out[HeaderKeyID] = f.Key.ID
		out[HeaderMode] = string(f.Key.Mode)
		out[HeaderPlan] = f.Account.Plan
	case pub != nil && pub.Site != nil:
		out[HeaderAccount] = pub.Account.ID
		out[HeaderSite] = pub.Site.ID
		out[HeaderMode] = string(keystore.ModeLive)
		out[HeaderPlan] = pub.Account.Plan
	}
	return out
}

// clientIdentityHeaders lists the x-keygate-* headers the client sent that
// keygate does not overwrite, so that none reaches the upstream. (Envoy
// applies removals after sets, so a header keygate sets must not be listed.)
func clientIdentityHeaders(h map[string]string, set map[string]string) []string {
	var out []string
	for k := range h {
		if _, ours := set[k]; !ours && strings.HasPrefix(k, identityPrefix) {
			out = append(out, k)
		}
	}
	slices.Sort(out) // map order is random; responses should not be
	return out
}

// presentCredentialHeaders lists the credential headers present. A request may
// carry the same key in both (that is not ambiguous), and neither copy may
// reach the upstream.
func presentCredentialHeaders(h map[string]string) []string {
	var out []string
	for _, k := range [...]string{"authorization", "x-api-key"} {
		if _, ok := h[k]; ok {
			out = append(out, k)
		}
	}
	return out
}

// policyError is the decision when the policy could not decide: 503 when the
// request ran out of time, 500 otherwise.
func policyError(ctx context.Context, err error) policies.Decision {
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		return policies.Decision{Status: 503, Code: "AUTHZ_UNAVAILABLE", Message: "Authorization timed out", Rule: "timeout"}
	}
	return policies.Decision{Status: 500, Code: "POLICY_ERROR", Message: "Authorization policy error", Rule: "policy_error"}
}
