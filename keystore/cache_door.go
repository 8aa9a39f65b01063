package keystore

import "sync/atomic"

// door keeps a nearly full cache from taking a key the first time it is
// filled: a key read once (a flood of keys seen once, unknown or not)
// would otherwise grow a bucket, and ristretto, which counts reads by
// bucket, not by key, admits the grown bucket of a place that other keys
// made hot and evicts another bucket whole, hot keys and all. A key filled
// again while the door still remembers it is taken, as are all keys until
// the cache first ran out of room (ristretto evicted or refused a bucket)
// and while it has more than a sixteenth free. The door is a bitset,
// doorBitsPerKey bits per cached key and one bit marked per key (a bit set
// by another key only takes a key early), forgotten whole once it has
// marked as many keys as the cache holds.
type door struct {
	words []atomic.Uint64
	mask  uint64
	marks atomic.Int64
	limit int64
}

// doorBitsPerKey sizes the door: at its fullest (limit keys marked) one
// key in ~8 not marked finds its bit set by others.
const doorBitsPerKey = 8

func newDoor(maxEntries int64) *door {
	n := uint64(1)
	for int64(n)*64 < maxEntries*doorBitsPerKey {
		n <<= 1
	}
	return &door{words: make([]atomic.Uint64, n), mask: n - 1, limit: max(maxEntries, 1)}
}

// seen reports whether h was marked since the door last forgot, and marks
// it.
func (d *door) seen(h cacheHash) bool {
	w, bit := &d.words[(h.h2>>6)&d.mask], uint64(1)<<(h.h2&63)
	if w.Load()&bit != 0 {
		return true
	}
	w.Or(bit)
	if d.marks.Add(1) >= d.limit {
		d.marks.Store(0)
		for i := range d.words {
			d.words[i].Store(0)
		}
	}
	return false
}
