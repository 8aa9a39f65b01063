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
	// digest is the primary digest's text (Digester.AppendAllIn).
	digest [keystore.DigestLen]byte
	// remove backs Result.Remove: the credential headers the request sent
	// (usually one; a second, an ambiguous request's, spills to the heap).
	remove [1]string
	// forged backs the x-keygate-* headers a client sent (usually none;
	// more spill to the heap). One each, not two: the state is then 640
	// bytes (with input.request.own_site_prefixes and the digest's text),
	// a size class of Go's allocator, and checkState 1,264 of 1,280.
	forged [1]string
}

// checkState is the memory of one gRPC Check, allocated at once in
// Server.Check: the request's state, the messages of a templated allow's
// response, and the decision id's text. Three allocations of a memo hit
// became one. The price: a deny, or an allow not rendered from a template,
// carries the unused response messages (~600 bytes), and whatever keeps
// one part alive keeps all of it (an observer that queues the outcome, a
// decision log, holds its Input; the trace gets a copy of the id). Nothing
// in it is reused or written after it was handed out: the Result keeps the
// state's Input, the CheckResponse its messages, and every copy of the id
// its bytes.
type checkState struct {
	req  requestState
	resp allowResponse
	id   [decisionIDLen]byte
}
