package keystore

import (
	"hash/maphash"
	"sync"
)

// idIndex finds, by key id, the entry a digest read cached: an access token
// (which names the key's id) of a key read by digest then needs no store
// read, also while the store is down, without a second ristretto entry per
// key. It maps a hash of the id to the entry (~26 bytes per key, against
// ~120 for a ristretto entry) and follows ristretto: an entry leaves the
// index when ristretto evicts, rejects, replaces or deletes it (OnExit), so
// the index never holds more entries than the cache.
type idIndex struct {
	id   func(*slotHead) string
	seed maphash.Seed
	mu   sync.RWMutex
	m    map[uint64]*slotHead
}

func newIDIndex(id func(*slotHead) string) *idIndex {
	return &idIndex{id: id, seed: maphash.MakeSeed(), m: map[uint64]*slotHead{}}
}

func (x *idIndex) hash(id string) uint64 { return maphash.String(x.seed, id) }

// put indexes a key entry under its id (replacing what the id, or another
// id with the same hash, had).
func (x *idIndex) put(e *slotHead) {
	id := x.id(e)
	if id == "" {
		return
	}
	h := x.hash(id)
	x.mu.Lock()
	x.m[h] = e
	x.mu.Unlock()
}

// get returns the entry indexed for id; a hash shared with another id is a
// miss, never that other key's entry.
func (x *idIndex) get(id string) (*slotHead, bool) {
	h := x.hash(id)
	x.mu.RLock()
	e := x.m[h]
	x.mu.RUnlock()
	if e == nil || x.id(e) != id {
		return nil, false
	}
	return e, true
}

// drop forgets e if the index still holds it (a newer entry for its id
// stays).
func (x *idIndex) drop(e *slotHead) {
	if e == nil {
		return
	}
	id := x.id(e)
	if id == "" {
		return
	}
	h := x.hash(id)
	x.mu.Lock()
	if x.m[h] == e {
		delete(x.m, h)
	}
	x.mu.Unlock()
}

// dropID forgets whatever entry id has.
func (x *idIndex) dropID(id string) {
	h := x.hash(id)
	x.mu.Lock()
	if e := x.m[h]; e != nil && x.id(e) == id {
		delete(x.m, h)
	}
	x.mu.Unlock()
}

func (x *idIndex) len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.m)
}
