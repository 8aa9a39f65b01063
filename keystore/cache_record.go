package keystore

import (
	"encoding/binary"
	"reflect"
	"time"
)

// A cached key is packed into one string (its "record"): a million cached
// keys then cost a million small strings instead of a million Key structs
// with a string header per field and a 24-byte time.Time per timestamp.
// The record holds, in order:
//
//	flags byte (recSiteID, recLastUsed, recExpires, recRevoked, recLive,
//	recTest)
//	ID, Name, Prefix, Mode (unless recLive or recTest names it) and, with
//	recSiteID, SiteID: each a uvarint length and the bytes
//	CreatedAt: a varint of Unix seconds and a uvarint of nanoseconds
//
// The optional LastUsedAt, ExpiresAt and RevokedAt (those the flags name)
// are not in the record but returned beside it, as time.Time values that
// the cache stores in the slot after the record (cache_slot.go): a cache
// hit then points the Key's time pointers at them instead of allocating.
//
// SiteID is left out when it is the shared site's id (always, for a store
// that keeps its foreign keys). Times are restored in UTC without a
// monotonic reading, as the store reads them; a key whose times are not
// like that (a test loader's time.Now, say) is kept whole instead (see
// entry.extra), as are its Entitlements when it has any.
const (
	recSiteID byte = 1 << iota
	recLastUsed
	recExpires
	recRevoked
	recLive // Mode is ModeLive, not stored
	recTest // Mode is ModeTest, not stored
)

// packKey returns k's record and optional times, or ok false when k cannot
// be packed without loss (a time with a zone or monotonic reading). siteID
// is the id of the shared site the entry points to.
func packKey(k Key, siteID string) (rec string, opt []time.Time, ok bool) {
	var flags byte
	if k.SiteID != siteID {
		flags |= recSiteID
	}
	switch k.Mode {
	case ModeLive:
		flags |= recLive
	case ModeTest:
		flags |= recTest
	}
	times := [3]*time.Time{k.LastUsedAt, k.ExpiresAt, k.RevokedAt}
	for i, t := range times {
		if t != nil {
			flags |= recLastUsed << i
		}
	}
	n := 1 + 5*binary.MaxVarintLen64 + len(k.ID) + len(k.Name) + len(k.Prefix) + len(k.Mode) + len(k.SiteID) + 2*binary.MaxVarintLen64
	b := make([]byte, 1, n)
	b[0] = flags
	for _, s := range []string{k.ID, k.Name, k.Prefix} {
		b = appendString(b, s)
	}
	if flags&(recLive|recTest) == 0 {
		b = appendString(b, string(k.Mode))
	}
	if flags&recSiteID != 0 {
		b = appendString(b, k.SiteID)
	}
	if b, ok = appendTime(b, k.CreatedAt); !ok {
		return "", nil, false
	}
	for _, t := range times {
		if t == nil {
			continue
		}
		if !exactTime(*t) {
			return "", nil, false
		}
		opt = append(opt, *t)
	}
	return string(b), opt, true
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// exactTime reports whether t is a UTC time without a monotonic reading
// (which also means it holds no *Location): what the store reads, and what
// the record and the slot keep exactly.
func exactTime(t time.Time) bool { return t == time.Unix(t.Unix(), int64(t.Nanosecond())).UTC() }

// appendTime encodes t if decoding gives back an identical time.Time.
func appendTime(b []byte, t time.Time) ([]byte, bool) {
	if !exactTime(t) {
		return b, false
	}
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond())), true
}

// recReader decodes a record; a record is only ever made by packKey, so a
// short read is a bug, reported as ok false rather than a panic.
type recReader struct {
	rec string
	off int
	ok  bool
}

func (r *recReader) uvarint() uint64 {
	var v uint64
	for shift := uint(0); shift < 64 && r.off < len(r.rec); shift += 7 {
		c := r.rec[r.off]
		r.off++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v
		}
	}
	r.ok, r.off = false, len(r.rec)
	return 0
}

func (r *recReader) varint() int64 {
	u := r.uvarint()
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

// str returns a substring of the record: no copy.
func (r *recReader) str() string {
	n := r.uvarint()
	if n > uint64(len(r.rec)-r.off) {
		r.ok, r.off = false, len(r.rec)
		return ""
	}
	s := r.rec[r.off : r.off+int(n)]
	r.off += int(n)
	return s
}

func (r *recReader) time() time.Time {
	s := r.varint()
	ns := r.uvarint()
	if ns >= 1e9 {
		r.ok = false
		return time.Time{}
	}
	return time.Unix(s, int64(ns)).UTC()
}

// recordID is the key id a record holds, without decoding the rest.
func recordID(rec string) string {
	if rec == "" {
		return ""
	}
	r := recReader{rec: rec, off: 1, ok: true}
	return r.str()
}

// unpackKey rebuilds the Key packKey packed; siteID fills SiteID when the
// record does not carry its own, and the Key's optional times point into
// opt (which it must not change). No allocation.
func unpackKey(rec, siteID string, opt []time.Time) (Key, bool) {
	if rec == "" {
		return Key{}, false
	}
	r := recReader{rec: rec, off: 1, ok: true}
	flags := rec[0]
	k := Key{ID: r.str(), Name: r.str(), Prefix: r.str(), SiteID: siteID}
	switch {
	case flags&recLive != 0:
		k.Mode = ModeLive
	case flags&recTest != 0:
		k.Mode = ModeTest
	default:
		k.Mode = Mode(r.str())
	}
	if flags&recSiteID != 0 {
		k.SiteID = r.str()
	}
	k.CreatedAt = r.time()
	j := 0
	for i, p := range [3]**time.Time{&k.LastUsedAt, &k.ExpiresAt, &k.RevokedAt} {
		if flags&(recLastUsed<<i) == 0 {
			continue
		}
		if j == len(opt) {
			return Key{}, false
		}
		*p = &opt[j]
		j++
	}
	return k, r.ok && r.off == len(rec) && j == len(opt)
}

// hasEntitlements reports whether e restricts anything (any field set,
// whatever fields Entitlements grows).
func hasEntitlements(e *Entitlements) bool { return !reflect.ValueOf(e).Elem().IsZero() }
