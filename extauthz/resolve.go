package extauthz

import (
	"context"
	"errors"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
)

// Credential resolution: what a request's credential turned out to be and
// the key facts it resolved to. authorize.go assembles the input from it.

// CredentialKind is what a credential turned out to be.
type CredentialKind string

// The kinds the policy sees in input.credential.kind.
const (
	KindNone  CredentialKind = ""
	KindKey   CredentialKind = "key"   // an API key, keygate's or imported
	KindToken CredentialKind = "token" // an access token from the token exchange
)

// resolution is what a request's credential resolved to: how it came, its
// kind, the status the policy sees, and whether the key's facts were found
// (into resolve's dst). It holds no pointer to them: the credential's
// strings go into the heap-allocated input, and Go's escape analysis,
// which does not tell a struct's fields apart, would move the facts to
// the heap with them.
type resolution struct {
	cred   Credential
	kind   CredentialKind
	status string // a policies.Cred* status
	found  bool
}

// extractionStatus is the policy's status for an extraction that found no
// one credential.
var extractionStatus = [...]string{
	CredentialMissing:   policies.CredMissing,
	CredentialAmbiguous: policies.CredAmbiguous,
	CredentialMalformed: policies.CredMalformed,
}

// resolve turns the request's credential into facts. Format and checksum
// are checked before cache or store are touched.
// The facts found are kept in dst, which the caller may keep on its stack:
// no resolution outlives the request, and a Result holds none of the
// facts' memory but strings and slices the cache shares (432 bytes a
// Check, ~18% of what a memo hit allocated, no longer go to the heap).
func (a *Authorizer) resolve(ctx context.Context, r Request, now time.Time, st *requestState, dst *keystore.KeyFacts) resolution {
	cred, status := ExtractCredential(r.Headers)
	if status == CredentialMalformed {
		cred, status = a.bareToken(r.Headers, cred, status)
	}
	if r.BodyKey != "" {
		cred, status = withBodyKey(cred, status, r.BodyKey)
	}
	if status != CredentialOK {
		return resolution{cred: cred, status: extractionStatus[status]}
	}
	raw := cred.Value.Reveal()
	// Classify by shape before any lookup: a credential that is none of the
	// shapes keygate issues or imported costs nothing but this switch.
	switch {
	case a.Format.Looks(raw):
		if _, err := a.Format.Parse(raw); err != nil {
			return resolution{cred: cred, kind: KindKey, status: policies.CredMalformed}
		}
		return a.lookupKey(ctx, cred, raw, st, dst)
	case a.Tokens != nil && a.Tokens.Looks(raw):
		return a.lookupToken(ctx, cred, raw, now, dst)
	case a.ImportedKeys && keystore.LooksImported(raw):
		// Imported keys have no shape to check offline, so with the flag on
		// any plausible string costs a cache lookup and, once per digest per
		// negative TTL, a store read. Off (the default), garbage never
		// touches cache or store.
		return a.lookupKey(ctx, cred, raw, st, dst)
	default:
		return resolution{cred: cred, status: policies.CredMalformed}
	}
}

// withBodyKey adds the token exchange's body key to what the headers
// carried: alone it is the credential (the "body" source); with the same
// key in a header it changes nothing; with a different one it is ambiguous.
func withBodyKey(cred Credential, status CredentialStatus, key keystore.Secret) (Credential, CredentialStatus) {
	src := sourceOf("body")
	v, ok := src.parse(key.Reveal())
	switch {
	case !ok:
		return Credential{}, CredentialMalformed
	case status == CredentialMissing:
		return Credential{Scheme: src.scheme, Value: v}, CredentialOK
	case status == CredentialOK && !sameSecret(cred.Value, v):
		return Credential{}, CredentialAmbiguous
	}
	return cred, status
}

// lookupKey resolves a key through the cache by its digests.
func (a *Authorizer) lookupKey(ctx context.Context, cred Credential, raw string, st *requestState, dst *keystore.KeyFacts) resolution {
	digests := a.Digester.AppendAllIn(st.digests[:0], &st.digest, raw)
	ctx, span := a.span(ctx, "keygate.lookup")
	facts, err := a.Facts.Key(ctx, digests)
	endSpan(span)
	return a.found(resolution{cred: cred, kind: KindKey}, facts, err, digests[0].Short(), dst)
}

// found completes a resolution with the outcome of a key lookup; the facts
// found are kept in dst.
func (a *Authorizer) found(res resolution, facts keystore.KeyFacts, err error, logRef string, dst *keystore.KeyFacts) resolution {
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		res.status = policies.CredUnknown
	case err != nil:
		a.Log.Warn("key lookup failed", "err", err, "ref", logRef)
		res.status = policies.CredUnavailable
	default:
		*dst = facts
		res.status, res.found = policies.CredFound, true
	}
	return res
}
