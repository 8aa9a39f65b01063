package extauthz

import (
	"context"
	"errors"
	"strings"
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
func (a *Authorizer) lookupToken(ctx context.Context, raw string, in *policies.Input, now time.Time) *keystore.KeyFacts {
	claims, err := a.Tokens.Verify(raw, now)
	switch {
	case errors.Is(err, tokens.ErrExpired):
		in.Credential.Status = policies.CredExpiredToken
		return nil
	case err != nil:
		in.Credential.Status = policies.CredInvalidToken
		return nil
	}
	ctx, span := a.span(ctx, "keygate.lookup")
	facts, err := a.Facts.KeyID(ctx, claims.KeyID)
	endSpan(span)
	// A token whose key is gone, or whose mode disagrees with its key, was
	// signed by us but names nothing that exists: invalid, not "unknown key".
	if errors.Is(err, keystore.ErrNotFound) || (err == nil && string(facts.Key.Mode) != claims.Mode) {
		in.Credential.Status = policies.CredInvalidToken
		return nil
	}
	return a.keyFacts(facts, err, in, now, claims.KeyID)
}

// bareToken accepts an access token sent as the whole Authorization value,
// without a scheme ("Authorization: kg_at_…"), as seed 001's curl example
// does. Only the access-token format qualifies: its prefix and signature
// make it unmistakable, whereas a bare key is refused, keeping long-lived
// keys to the schemes the contract names. It applies only when the
// Authorization header is the only credential header and holds one value.
func (a *Authorizer) bareToken(h map[string]string, cred Credential, status credentialStatus) (Credential, credentialStatus) {
	v, ok := h["authorization"]
	if _, other := h["x-api-key"]; !ok || other || a.Tokens == nil ||
		len(v) > tokens.MaxLen || strings.ContainsAny(v, ", ") || !token68(v) || !a.Tokens.Looks(v) {
		return cred, status
	}
	return Credential{Scheme: "bare", Value: keystore.Secret(v)}, credOK
}
