package extauthz

import (
	"time"

	"github.com/keygate/keygate/keystore"
)

// passed reports whether a resolved credential passed every check of
// keygate's own facts: the key (or the key behind a token) exists, is not
// revoked or expired, its site is active and its account paying. Only such
// a credential gives a request an identity: upstream identity headers,
// limit charges and a usage record. A refused credential on a route that
// needs none (/health, /v1/public/{site}/…) is ignored as if absent, so it
// cannot borrow an identity there, be charged, or move last_used_at.
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
// resolved facts when they passed, else none.
func identityFacts(f *keystore.KeyFacts, now time.Time) *keystore.KeyFacts {
	if passed(f, now) {
		return f
	}
	return nil
}
