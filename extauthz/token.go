package extauthz

import (
	"context"
	"errors"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
	"github.com/keygate/keygate/tokens"
)

// AccessTokens recognises and verifies access tokens offline;
// tokens.Keyring implements it.
type AccessTokens interface {
	Looks(raw string) bool
	Verify(raw string, now time.Time) (tokens.Claims, error)
}

// lookupToken verifies an access token without a store round trip, then
// reads its key's facts through the cache like a key would be: revoking,
// expiring or rotating the key ends its tokens at once, and the policy
// decides on the key's current facts, not on what the token says.
func (a *Authorizer) lookupToken(ctx context.Context, cred Credential, raw string, now time.Time, dst *keystore.KeyFacts) resolution {
	res := resolution{cred: cred, kind: KindToken}
	claims, err := a.Tokens.Verify(raw, now)
	switch {
	case errors.Is(err, tokens.ErrExpired):
		res.status = policies.CredExpiredToken
		return res
	case err != nil:
		res.status = policies.CredInvalidToken
		return res
	}
	ctx, span := a.span(ctx, "keygate.lookup")
	facts, err := a.Facts.KeyID(ctx, claims.KeyID)
	endSpan(span)
	// A token whose key is gone, or whose mode disagrees with its key, was
	// signed by us but names nothing that exists: invalid, not "unknown key".
	if errors.Is(err, keystore.ErrNotFound) || (err == nil && string(facts.Key.Mode) != claims.Mode) {
		res.status = policies.CredInvalidToken
		return res
	}
	return a.found(res, facts, err, claims.KeyID, dst)
}

// bareToken applies the "bare" row of credentialSources: an access token
// sent as the whole Authorization value, without a scheme
// ("Authorization: kg_at_…"), as seed 001's curl example does. Only the
// access-token format qualifies: its prefix and signature make it
// unmistakable, whereas a bare key is refused, keeping long-lived keys to
// the schemes the contract names. It applies only when its header is the
// only credential header and holds one value.
func (a *Authorizer) bareToken(h map[string]string, cred Credential, status CredentialStatus) (Credential, CredentialStatus) {
	src := sourceOf("bare")
	v, ok := h[src.header]
	if !ok || a.Tokens == nil || len(presentCredentialHeaders(h)) != 1 {
		return cred, status
	}
	if tok, ok := src.parse(v); ok && a.Tokens.Looks(tok.Reveal()) {
		return Credential{Scheme: src.scheme, Value: tok}, CredentialOK
	}
	return cred, status
}
