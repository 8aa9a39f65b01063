package keystore

import (
	"fmt"
	"strings"
	"time"
)

// entry is one cached answer as get and fill handle it; ristretto holds it
// sealed in a slot (cache_slot.go). A key entry points to its site and
// account, which every cached key of that site shares (see share): a
// million keys over a few thousand sites cost a million slots, not a
// million copies of their site and account.
type entry struct {
	gen uint64
	at  int64 // when the store read began, Unix nanoseconds
	// facts is nil for a negative ("no such key or site") entry.
	facts *SiteFacts
	// rec is a key entry's packed key; extra holds its Entitlements when
	// it has any, or the whole key when it could not be packed (rec "").
	// Both are unset for a site entry.
	rec   string
	extra *Key
	// opt is a packed key's optional times, which its Key points to.
	opt []time.Time
}

// errCachedNotFound answers from a negative entry.
var errCachedNotFound = fmt.Errorf("keystore: lookup: %w (cached)", ErrNotFound)

// keyID is the id of a key entry's key ("" for other entries).
func (e *entry) keyID() string {
	if e.rec == "" && e.extra != nil {
		return e.extra.ID
	}
	return recordID(e.rec)
}

// newKeyEntry packs f into an entry whose site and account are shared.
func (c *Cache) newKeyEntry(f KeyFacts) (entry, error) {
	e := entry{facts: c.share(SiteFacts{Site: f.Site, Account: f.Account})}
	rec, opt, ok := packKey(f.Key, e.facts.Site.ID)
	switch {
	case !ok:
		k := f.Key
		e.extra = &k
	case hasEntitlements(&f.Key.Entitlements):
		e.rec, e.opt, e.extra = rec, opt, &Key{Entitlements: f.Key.Entitlements}
	default:
		e.rec, e.opt = rec, opt
	}
	return e, nil
}

// keyFactsOf rebuilds the facts a key entry holds.
func keyFactsOf(e entry) (KeyFacts, error) {
	if e.facts == nil {
		return KeyFacts{}, errCachedNotFound
	}
	var k Key
	switch {
	case e.rec == "" && e.extra != nil:
		k = *e.extra
	default:
		var ok bool
		if k, ok = unpackKey(e.rec, e.facts.Site.ID, e.opt); !ok {
			return KeyFacts{}, fmt.Errorf("keystore: lookup: %w: corrupt cache record", ErrUnavailable)
		}
		if e.extra != nil {
			k.Entitlements = e.extra.Entitlements
		}
	}
	return KeyFacts{Key: k, Site: e.facts.Site, Account: e.facts.Account}, nil
}

// digestKey is the cache key of a digest: the digest itself, as hex holds
// no ':' (which every other cache key has second), so a hit builds no
// string; a digest with a ':' (never made by a Digester) gets a "d:".
func digestKey(d Digest) string {
	if strings.IndexByte(string(d), ':') < 0 {
		return string(d)
	}
	return "d:" + string(d)
}

// isDigestKey reports whether a cache key is a digest's.
func isDigestKey(ck string) bool { return len(ck) < 2 || ck[1] != ':' || ck[0] == 'd' }
