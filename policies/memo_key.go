package policies

import (
	"encoding/binary"
	"slices"
)

// The memo key of an Input, written out field by field: it was encoded by
// reflection, which cost a memo hit more than the map lookup it was for.
//
// The encoding is injective: every value is tagged with its kind, strings
// and collections carry their length, a nil pointer, slice or map has a tag
// of its own, and maps are encoded by sorted key, so two different inputs
// never share a key. It is the encoding a generic reflective walk of the
// struct would give ('{' fields in declaration order '}'), which
// TestMemoKeyMatchesReflection checks on random inputs, and
// TestMemoKeyEncodesEveryField fails when Input gains a field this file
// does not encode.

// appendInput appends the memo key of in to b, with the fields in unread
// encoded as their zero values (a public route's site and account are never
// cleared: unread names the key's).
func appendInput(b []byte, in *Input, unread unreadFields) []byte {
	b = append(b, '{')
	b = appendRequest(b, &in.Request, unread)
	b = append(b, '{')
	b = appendString(b, in.Credential.Status)
	b = appendString(b, in.Credential.Kind)
	b = appendString(b, in.Credential.Scheme)
	b = append(b, '}')
	b = appendKeyFacts(b, in.Key, unread)
	b = appendSite(b, in.Site, unread)
	b = appendAccount(b, in.Account, unread)
	if p := in.Public; p == nil {
		b = append(b, 'n')
	} else {
		b = append(b, 'p', '{')
		b = appendString(b, p.Status)
		b = appendSite(b, p.Site, 0)
		b = appendAccount(b, p.Account, 0)
		b = append(b, '}')
	}
	return append(b, '}')
}

func appendRequest(b []byte, r *Request, unread unreadFields) []byte {
	b = append(b, '{')
	b = appendString(b, unless(unread&unreadMethod, r.Method))
	b = appendString(b, unless(unread&unreadHost, r.Host))
	b = appendString(b, unless(unread&unreadPath, r.Path))
	b = appendString(b, unless(unread&unreadQuery, r.Query))
	b = appendBool(b, r.PathOK)
	if o := r.Origin; o == nil || unread&unreadOrigin != 0 {
		b = append(b, 'n')
	} else {
		b = append(b, 'p', '{')
		b = appendString(b, o.Scheme)
		b = appendString(b, o.Host)
		b = appendString(b, o.Port)
		b = appendBool(b, o.DefaultPort)
		b = append(b, '}')
	}
	b = appendString(b, r.ClientAddress)
	if unread&unreadHeaders != 0 {
		b = appendStringMap(b, nil)
	} else {
		b = appendStringMap(b, r.Headers)
	}
	b = appendStringMap(b, r.Prefixes)
	b = appendString(b, r.ExactPath)
	b = appendStrings(b, r.CaseFolded)
	b = appendStrings(b, r.OwnSitePrefixes)
	return append(b, '}')
}

// unless is s, or "" when the field is unread.
func unless(unread unreadFields, s string) string {
	if unread != 0 {
		return ""
	}
	return s
}

func appendKeyFacts(b []byte, k *Key, unread unreadFields) []byte {
	if k == nil {
		return append(b, 'n')
	}
	b = append(b, 'p', '{')
	b = appendString(b, unless(unread&unreadKeyID, k.ID))
	b = appendString(b, k.Mode)
	b = appendString(b, unless(unread&unreadKeyName, k.Name))
	b = appendBool(b, k.Revoked)
	b = appendBool(b, k.Expired)
	b = appendStrings(b, k.Scopes)
	b = appendStrings(b, k.AllowedCIDRs)
	b = appendStringMap(b, k.Meta)
	b = appendInt64Map(b, k.Limits)
	if k.Remaining == nil {
		b = append(b, 'n')
	} else {
		b = appendInt64(append(b, 'p'), *k.Remaining)
	}
	return append(b, '}')
}

func appendSite(b []byte, s *Site, unread unreadFields) []byte {
	if s == nil {
		return append(b, 'n')
	}
	b = append(b, 'p', '{')
	b = appendString(b, unless(unread&unreadSiteID, s.ID))
	b = appendString(b, unless(unread&unreadSiteAccount, s.Account))
	if unread&unreadSiteDomains != 0 {
		b = appendStrings(b, nil)
	} else {
		b = appendStrings(b, s.Domains)
	}
	b = appendBool(b, s.Active)
	b = appendInt64Map(b, s.Limits)
	return append(b, '}')
}

func appendAccount(b []byte, a *Account, unread unreadFields) []byte {
	if a == nil {
		return append(b, 'n')
	}
	b = append(b, 'p', '{')
	b = appendString(b, unless(unread&unreadAccountID, a.ID))
	b = appendString(b, a.Plan)
	b = appendString(b, a.Status)
	b = appendInt64Map(b, a.Limits)
	return append(b, '}')
}

func appendString(b []byte, s string) []byte {
	b = append(b, 's')
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 'T')
	}
	return append(b, 'F')
}

func appendInt64(b []byte, v int64) []byte {
	return binary.AppendVarint(append(b, 'i'), v)
}

// appendStrings encodes a slice: 'n' when nil, else its length and items.
func appendStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, 'n')
	}
	b = binary.AppendUvarint(append(b, '['), uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

// appendStringMap encodes a map: 'n' when nil (a nil map can be absent from
// the policy's input where an empty one is an empty object, as
// input.request.prefixes is), else its length and its entries by sorted
// key. Small maps sort on the stack.
func appendStringMap(b []byte, m map[string]string) []byte {
	return appendMap(b, m, appendString)
}

func appendInt64Map(b []byte, m map[string]int64) []byte {
	return appendMap(b, m, appendInt64)
}

func appendMap[V any](b []byte, m map[string]V, value func([]byte, V) []byte) []byte {
	if m == nil {
		return append(b, 'n')
	}
	b = binary.AppendUvarint(append(b, 'm'), uint64(len(m)))
	var buf [8]string
	for _, k := range sortedKeys(buf[:0], m) {
		b = appendString(b, k)
		b = value(b, m[k])
	}
	return b
}

func sortedKeys[V any](keys []string, m map[string]V) []string {
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
