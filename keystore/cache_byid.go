package keystore

import (
	"hash/maphash"
	"sync"
)

// idIndex finds, by key id, the slot a digest read cached: an access token
// (which names the key's id) of a key read by digest then needs no store
// read, also while the store is down, without a second ristretto entry per
// key. It is an open-addressing table of slot pointers (linear probing,
// at most 3/4 full: 8 to 16 bytes per key, against ~38 for a Go map of
// hashes), each slot verified against the id it holds, and follows
// ristretto: a slot leaves the index when ristretto evicts, rejects or
// deletes its bucket or a fill replaces it (exit and change,
// cache_bucket.go), so the index never holds more keys than the cache.
type idIndex struct {
	id   func(*slotHead) string
	seed maphash.Seed
	mu   sync.RWMutex
	// slots has a power-of-two length (or none); n of them are in use.
	slots []*slotHead
	n     int
}

func newIDIndex(id func(*slotHead) string) *idIndex {
	return &idIndex{id: id, seed: maphash.MakeSeed()}
}

// minIndexSlots is the table's first size.
const minIndexSlots = 1024

func (x *idIndex) home(id string) int {
	return int(maphash.String(x.seed, id) & uint64(len(x.slots)-1))
}

// find returns where id's slot is, or the free place where it would go;
// the table always has one, as it is never full.
func (x *idIndex) find(id string) (int, bool) {
	if len(x.slots) == 0 {
		return -1, false
	}
	mask := len(x.slots) - 1
	for i := x.home(id); ; i = (i + 1) & mask {
		h := x.slots[i]
		if h == nil {
			return i, false
		}
		if x.id(h) == id {
			return i, true
		}
	}
}

// put indexes a key slot under its id (replacing what the id had).
func (x *idIndex) put(h *slotHead) {
	id := x.id(h)
	if id == "" {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if 4*(x.n+1) > 3*len(x.slots) {
		x.grow()
	}
	i, found := x.find(id)
	x.slots[i] = h
	if !found {
		x.n++
	}
}

// grow doubles the table (which rehashes every slot).
func (x *idIndex) grow() {
	old := x.slots
	x.slots = make([]*slotHead, max(minIndexSlots, 2*len(old)))
	for _, h := range old {
		if h != nil {
			i, _ := x.find(x.id(h))
			x.slots[i] = h
		}
	}
}

// get returns the slot indexed for id.
func (x *idIndex) get(id string) (*slotHead, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	i, found := x.find(id)
	if !found {
		return nil, false
	}
	return x.slots[i], true
}

// drop forgets h if the index still holds it (a newer slot for its id
// stays).
func (x *idIndex) drop(h *slotHead) {
	if h == nil {
		return
	}
	id := x.id(h)
	if id == "" {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if i, found := x.find(id); found && x.slots[i] == h {
		x.remove(i)
	}
}

// dropID forgets whatever slot id has.
func (x *idIndex) dropID(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if i, found := x.find(id); found {
		x.remove(i)
	}
}

// remove empties place i and moves back the slots after it that probing
// would no longer reach (no tombstones, so lookups stay short).
func (x *idIndex) remove(i int) {
	mask := len(x.slots) - 1
	x.slots[i] = nil
	x.n--
	for j := (i + 1) & mask; x.slots[j] != nil; j = (j + 1) & mask {
		k := x.home(x.id(x.slots[j]))
		// The slot at j may fill the hole at i unless its home lies
		// cyclically in (i, j].
		if (j > i && (k <= i || k > j)) || (j < i && k <= i && k > j) {
			x.slots[i], x.slots[j] = x.slots[j], nil
			i = j
		}
	}
}

func (x *idIndex) len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.n
}
