package extauthz

import (
	"context"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
)

// passed reports whether a resolved credential passed every check of
// keygate's own facts: the key (or the key behind a token) exists, is not
// revoked or expired, its site is active and its account paying. It is the
// first half of accepted; identityFacts applies it where the policy's
// half has already been settled.
func passed(f *keystore.KeyFacts, now time.Time) bool {
	if f == nil || f.Key.Revoked(now) || f.Key.Expired(now) || !f.Site.Active {
		return false
	}
	switch f.Account.Status {
	case keystore.StatusActive, keystore.StatusTrialing:
		return true
	}
	return false
}

// identityFacts is the credential a request may be identified by: the
// resolved facts when they passed, else none. authorize has already
// dropped facts the policy did not accept (see accepted).
func identityFacts(f *keystore.KeyFacts, now time.Time) *keystore.KeyFacts {
	if passed(f, now) {
		return f
	}
	return nil
}

// keyRouteRule is the rule by which the built-in policy (and every profile
// layered on it) allows a key route: an allow the policy reached by
// judging the credential itself.
const keyRouteRule = "key_route"

// accepted reports whether the allow d identifies the request by the
// credential behind f: only then does the request get identity headers,
// limit charges, a usage record and the key in logs and Envoy's metadata.
// A credential that is not accepted is ignored as if absent.
//
// On a key route the allow is the policy's acceptance. On a route that
// needs no credential (/health, /v1/public/{site}/…) the policy never
// judged it, so it is accepted only when
//   - it passed keygate's own checks (passed);
//   - on a public site route, it is a key of that very site: site A's key
//     does not identify a browser request to site B;
//   - the policy would allow it on the declared mint route
//     (config.routes.mint_route) from this host: the question the token
//     exchange asks, so a plan without API access, a mode the host does
//     not take or a scheme the deployment refuses gives no identity.
//
// Which kind of route it was is learnt from the decision's rule for the
// built-in rule, else by deciding the request once more without the
// credential: an allow then means the route needs none. Any error means
// not accepted (no identity; the route stays open as it needs no key).
func accepted(ctx context.Context, pol Decider, in *policies.Input, d policies.Decision, f *keystore.KeyFacts, now time.Time) bool {
	if !d.Allow || !passed(f, now) {
		return false
	}
	if d.Rule == keyRouteRule {
		return true
	}
	anonymous := *in
	anonymous.Credential = policies.Credential{Status: policies.CredMissing}
	anonymous.Key, anonymous.Site, anonymous.Account = nil, nil, nil
	without, err := pol.Decide(ctx, &anonymous)
	if err != nil {
		return false
	}
	if !without.Allow {
		return true // the allow was the credential's
	}
	if in.Public != nil && (in.Public.Site == nil || in.Public.Site.ID != f.Site.ID) {
		return false
	}
	route, ok := mintRoute(pol)
	if !ok {
		return false
	}
	keyed := *in
	keyed.Public = nil
	keyed.Request.Path, keyed.Request.PathOK = route, true
	keyed.Request.Prefixes, keyed.Request.ExactPath, keyed.Request.CaseFolded = nil, "", nil
	onKeyRoute, err := pol.Decide(ctx, &keyed)
	return err == nil && onKeyRoute.Allow
}
