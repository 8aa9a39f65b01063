package policies

import (
	"bytes"
	"maps"
	"slices"
	"sync"
)

// memo remembers the decisions of one compiled policy by the input they
// were made on. It is sound because of what Compile proves about the
// policy before enabling it:
//
//   - the policy calls no non-deterministic builtin (time.now_ns, rand.*,
//     uuid.*, print, …), so its answer is a function of input and data;
//   - data is fixed for the life of a Policy (a reload builds a new Policy,
//     and with it a new, empty memo);
//   - the memo key encodes every field of Input (appendInput, written out
//     by hand; TestMemoKeyEncodesEveryField fails when a field is added to
//     Input that it does not encode), except for the fields in ignorable
//     that no rule can reach: those the policy never references, not as
//     input.request.<field> (input.key.id, …), nor through a shorter ref
//     (input.request, input.key, input) or an import. The policy is
//     evaluated with those fields cleared too, so a decision is a function
//     of its key alone even should the analysis be wrong.
//
// Key facts that change over time reach the policy only as input fields
// (key.revoked, key.expired, site.active, …), so a revocation or an expiry
// changes the key instead of being hidden by it.
//
// The entries live in a table bounded by bytes (memo_table.go): traffic from
// tens of thousands of keys needs tens of thousands of entries, which a
// count sized for the worst entry could not give, and CLOCK eviction keeps
// the keys that come back over those seen once.
type memo struct {
	// unread are the request fields the policy provably never reads: a
	// set of bits, so clearing them calls no func value (through which an
	// input would escape to the heap).
	unread unreadFields
	// scratch pools *memoScratch: a key's buffer, reused so a lookup
	// allocates nothing.
	scratch sync.Pool

	table memoTable
}

// maxMemoKey bounds one key; the table's budget bounds them all.
const maxMemoKey = 2048

// unreadFields is a set of the ignorable fields, one bit each.
type unreadFields uint16

const (
	unreadHeaders unreadFields = 1 << iota
	unreadQuery
	unreadMethod
	unreadOrigin
	unreadHost
	unreadPath
	unreadKeyID
	unreadKeyName
	unreadSiteID
	unreadSiteAccount
	unreadSiteDomains
	unreadAccountID

	// unreadIDs are the fields that name a key rather than describe it
	// (a site's domains matter to its public routes: input.public.site).
	unreadIDs = unreadKeyID | unreadKeyName | unreadSiteID | unreadSiteAccount | unreadSiteDomains | unreadAccountID
)

// ignorable are the input fields that vary per request without usually
// mattering to a decision, each with its bit.
var ignorable = []struct {
	path []string
	bit  unreadFields
}{
	{[]string{"request", "headers"}, unreadHeaders},
	{[]string{"request", "query"}, unreadQuery},
	{[]string{"request", "method"}, unreadMethod},
	{[]string{"request", "origin"}, unreadOrigin},
	{[]string{"request", "host"}, unreadHost},
	// A policy that reads input.request.prefixes and exact_path instead
	// (see pathIndex) is keyed on those: ids in paths then cost nothing.
	{[]string{"request", "path"}, unreadPath},
	// A policy that asks only about a key's facts (mode, plan, state,
	// entitlements) and leaves ids to keygate (counter keys' "{key}",
	// input.request.own_site_prefixes) decides for all keys with the same
	// facts at once: a key's first request is then a memo hit.
	{[]string{"key", "id"}, unreadKeyID},
	{[]string{"key", "name"}, unreadKeyName},
	{[]string{"site", "id"}, unreadSiteID},
	{[]string{"site", "account"}, unreadSiteAccount},
	{[]string{"site", "domains"}, unreadSiteDomains},
	{[]string{"account", "id"}, unreadAccountID},
}

// spareFacts holds the copies of a key's, site's and account's facts that
// clear makes when it zeroes an id: the facts an input points to are the
// key cache's, which nothing may write. DecideMemo's come from a pool
// (classifyScratch).
type spareFacts struct {
	key     Key
	site    Site
	account Account
}

// clear zeroes the fields of in that f holds, copying the facts it changes
// into spare.
func (f unreadFields) clear(in *Input, spare *spareFacts) {
	if f&unreadIDs != 0 {
		f.clearIDs(in, spare)
	}
	r := &in.Request
	if f&unreadHeaders != 0 {
		r.Headers = nil
	}
	if f&unreadQuery != 0 {
		r.Query = ""
	}
	if f&unreadMethod != 0 {
		r.Method = ""
	}
	if f&unreadOrigin != 0 {
		r.Origin = nil
	}
	if f&unreadHost != 0 {
		r.Host = ""
	}
	if f&unreadPath != 0 {
		r.Path = ""
	}
}

func (f unreadFields) clearIDs(in *Input, spare *spareFacts) {
	if k := in.Key; k != nil && f&(unreadKeyID|unreadKeyName) != 0 {
		spare.key = *k
		if f&unreadKeyID != 0 {
			spare.key.ID = ""
		}
		if f&unreadKeyName != 0 {
			spare.key.Name = ""
		}
		in.Key = &spare.key
	}
	if s := in.Site; s != nil && f&(unreadSiteID|unreadSiteAccount|unreadSiteDomains) != 0 {
		spare.site = *s
		if f&unreadSiteID != 0 {
			spare.site.ID = ""
		}
		if f&unreadSiteAccount != 0 {
			spare.site.Account = ""
		}
		if f&unreadSiteDomains != 0 {
			spare.site.Domains = nil
		}
		in.Site = &spare.site
	}
	if a := in.Account; a != nil && f&unreadAccountID != 0 {
		spare.account = *a
		spare.account.ID = ""
		in.Account = &spare.account
	}
}

// unreadFields is the set of fields the memo's policy never reads.
func (m *memo) unreadFields() unreadFields { return m.unread }

type memoScratch struct {
	key []byte
}

// get returns the remembered decision for in, or the key to put a new one
// under (nil when in cannot be memoized). The fields the policy never reads
// are left out of the key whether or not in has them.
func (m *memo) get(in *Input) (Decision, *memoScratch, bool) {
	unread := m.unreadFields()
	if len(in.Request.Headers) > 0 && unread&unreadHeaders == 0 {
		// The policy reads headers, and requests differ in some header
		// (x-request-id) every time: remembering would only evict.
		return Decision{}, nil, false
	}
	s := m.scratch.Get().(*memoScratch)
	s.key = appendInput(s.key[:0], in, unread)
	if len(s.key) > maxMemoKey {
		m.scratch.Put(s)
		return Decision{}, nil, false
	}
	d, hit := m.table.lookup(s.key)
	if hit {
		m.scratch.Put(s)
		return d, nil, true // shared, read-only: see clone
	}
	return Decision{}, s, false
}

// put remembers d under the key get returned, and recycles the scratch.
func (m *memo) put(s *memoScratch, d Decision) {
	m.table.add(s.key, d)
	m.scratch.Put(s)
}

// clone gives the memo a Decision of its own when it remembers one, so the
// caller of that miss shares nothing with later hits. A hit is not cloned:
// every hit of an entry shares its maps, slice and body (three allocations
// saved on the hot path), so callers treat a Decision as read-only and build
// new maps for what they add (rate-limit headers, the decision id);
// TestMemoHitUnchanged (extauthz) fails when one writes through. A field of
// reference type added to Decision must be cloned here; TestDecisionClone
// fails until it is.
func (d Decision) clone() Decision {
	d.Headers = maps.Clone(d.Headers)
	d.ResponseHeaders = maps.Clone(d.ResponseHeaders)
	d.Body = bytes.Clone(d.Body)
	d.Limits = slices.Clone(d.Limits) // Limit holds values only
	return d
}
