package extauthz

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
)

// UseSpender spends one of a key's remaining uses; *keystore.Store
// implements it. It answers the uses left after the spend and false when
// none was left to spend (another replica took the last one); a key
// without a number of uses spends nothing and is ok.
type UseSpender interface {
	SpendUse(ctx context.Context, keyID string, now time.Time) (remaining int64, ok bool, err error)
}

// denyUsageExhausted is the refusal of a key whose last use another request
// spent between the policy's look at the cached facts and the spend.
const denyUsageExhausted = "USAGE_EXHAUSTED"

// keyValue is a key's facts as the policy sees them, entitlements included.
func keyValue(k *keystore.Key, now time.Time) policies.Key {
	return policies.Key{ID: k.ID, Mode: string(k.Mode), Name: k.Name,
		Revoked: k.Revoked(now), Expired: k.Expired(now),
		Scopes: k.Scopes, AllowedCIDRs: k.AllowedCIDRs, Meta: k.Meta, Limits: k.Limits, Remaining: k.Remaining}
}

// clientAddressFor is input.request.client_address: the client's address,
// only for a key with allowed_cidrs. The decision memo keys on every input
// field, so an address in every input would make every new client a memo
// miss; only the decisions that depend on it carry it. "" when unknown (a
// key with allowed_cidrs is then refused IP_NOT_ALLOWED).
func clientAddressFor(f *keystore.KeyFacts, addr netip.Addr) string {
	if f == nil || len(f.Key.AllowedCIDRs) == 0 || !addr.IsValid() {
		return ""
	}
	return addr.String()
}

// spendUse spends one of the key's uses when an allow that passed its
// limits asks for it (the policy's "spend_use": by default metered routes
// of keys with uses). It runs once per request, after chargeLimits, so a
// request refused for any other reason spends nothing. A key whose uses ran
// out since its facts were cached is refused USAGE_EXHAUSTED; a store that
// cannot answer refuses the request (503), as it does for quotas with
// --limits-fail-closed: uses are a hard bound.
func (a *Authorizer) spendUse(ctx context.Context, pol Decider, d policies.Decision, who *keystore.KeyFacts, now time.Time) policies.Decision {
	if !d.Allow || !d.SpendUse || a.Uses == nil || who == nil || who.Key.Remaining == nil {
		return d
	}
	_, ok, err := a.Uses.SpendUse(ctx, who.Key.ID, now)
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		// The key was deleted since its facts were cached.
		return Deny(pol, denyUsageExhausted, "usage_exhausted")
	case err != nil:
		a.Log.Warn("spending a key's use failed; denying", "err", err, "key_id", who.Key.ID)
		return Deny(pol, denyUnavailable, "uses_unavailable")
	case !ok:
		a.forget(who.Key.ID)
		return Deny(pol, denyUsageExhausted, "usage_exhausted")
	}
	return d
}

// forget drops a key's cached facts (keystore.Cache can), so that the next
// request re-reads them: a key found used up is then refused by the policy
// on metered routes, without waiting for the cache's TTL (spending a use
// writes no change-log row).
func (a *Authorizer) forget(keyID string) {
	if c, ok := a.Facts.(interface {
		Invalidate(keystore.Entity, string)
	}); ok {
		c.Invalidate(keystore.EntityKey, keyID)
	}
}
