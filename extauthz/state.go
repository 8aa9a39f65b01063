package extauthz

import (
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
)

// requestState is the memory one request's decision is built in, allocated
// once per request instead of piece by piece (a memo-hit Check is mostly
// allocation): the policy input with the key, site and account it points
// to, and the key's digests. (The key's facts are on authorize's stack.) It is never reused: the
// Result keeps Input for the decision log and observers.
type requestState struct {
	in      policies.Input
	key     policies.Key
	site    policies.Site
	account policies.Account
	// digests backs the key's digests, one per pepper (two during a
	// pepper rotation; more spill to the heap).
	digests [2]keystore.Digest
	// remove backs Result.Remove: the credential headers the request sent
	// (usually one; a second, an ambiguous request's, spills to the heap).
	remove [1]string
	// forged backs the x-keygate-* headers a client sent (usually none;
	// more spill to the heap). One each, not two: the state is then 576
	// bytes (with input.request.own_site_prefixes), which Go allocates as
	// 576 where 584 took 640.
	forged [1]string
}
