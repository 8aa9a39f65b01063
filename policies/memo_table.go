package policies

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// defaultMemoBudget bounds the heap of one memo's entries and interned
// parts. An entry of the built-in policy costs ~460 bytes
// (BenchmarkMemoKeys), so 64 MiB hold ~140,000 decisions: those of ~70,000
// active keys under the load tool's realistic traffic (a key is decided
// apart per route class and credential form, ~2 entries a key).
const defaultMemoBudget = 64 << 20

// memoTable holds a memo's entries within a budget of bytes, evicting by
// CLOCK: a hit marks its entry, and the hand sweeping for a victim spares
// (and unmarks) marked entries, so the keys that come back stay while those
// seen once go first. A hit only sets a bit under the read lock: lookups do
// not serialize on the hot path as an LRU list's reordering would.
type memoTable struct {
	mu     sync.RWMutex
	index  map[string]int32 // key → slot
	slots  []memoSlot
	free   []int32 // evicted slots, reused before the table grows
	hand   int
	bytes  int64 // the entries' estimated heap, interned parts included
	budget int64 // 0: defaultMemoBudget
	intern memoIntern

	evictions atomic.Uint64
}

// memoSlot is one entry; size 0 marks a free slot. Its decision is its
// shape, which entries share, and its limits, which name its key.
type memoSlot struct {
	key    string
	shape  *Decision
	limits []Limit
	size   int64
	used   atomic.Bool // hit since the hand last passed
}

// Per-entry overhead besides the key's bytes and the decision's own heap:
// the slot with the slack of a slice grown by appending, and the index's
// string header and slot number with its table's load. With it the
// estimate is within ~10% of the heap BenchmarkMemoKeys measures.
const memoEntryOverhead = int64(unsafe.Sizeof(memoSlot{}))*5/4 + 2*(stringHeader+4)

// lookup returns the decision remembered under key, marking it used.
func (t *memoTable) lookup(key []byte) (Decision, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	i, ok := t.index[string(key)]
	if !ok {
		return Decision{}, false
	}
	s := &t.slots[i]
	if !s.used.Load() { // a store only when it changes: hits share the line
		s.used.Store(true)
	}
	d := *s.shape
	d.Limits = s.limits
	return d, true
}

// add remembers d under key, evicting until the budget has room; an entry
// that would not fit in the whole budget is not remembered.
func (t *memoTable) add(key []byte, d Decision) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.index[string(key)]; ok {
		return // another miss on the same key remembered it first
	}
	if t.budget == 0 {
		t.budget = defaultMemoBudget
	}
	if t.index == nil {
		t.index = make(map[string]int32)
		// Interned parts are few for most policies; the budget for them
		// keeps one that makes them per key from taking the table's room.
		t.intern.budget = t.budget / 8
	}
	internedBefore := t.intern.bytes
	shape, limits, own := t.intern.decision(d)
	size := int64(len(key)) + memoEntryOverhead + own
	t.bytes += t.intern.bytes - internedBefore
	if t.intern.bytes+size > t.budget {
		return // it would not fit in the emptied table: evict nothing for it
	}
	for t.bytes+size > t.budget {
		t.evict()
	}
	k := string(key)
	i := t.slot()
	t.slots[i] = memoSlot{key: k, shape: shape, limits: limits, size: size}
	t.index[k] = i
	t.bytes += size
}

// slot is a free slot's number, the table grown by one when none is.
func (t *memoTable) slot() int32 {
	if n := len(t.free); n > 0 {
		i := t.free[n-1]
		t.free = t.free[:n-1]
		return i
	}
	t.slots = append(t.slots, memoSlot{})
	return int32(len(t.slots) - 1)
}

// sweepBound bounds the marked entries one eviction spares: past it, the
// hand evicts the entry it is at, marked or not. An eviction runs under the
// write lock every lookup waits for; unbounded, the first one in a table
// every entry of which was hit since the hand passed swept the whole table
// (~40 ns an entry: 5 ms at the default budget's ~140,000). An entry the
// hand spared is unmarked, so one not hit again goes on the hand's next
// turn; only a run of sweepBound hot entries costs one of them its place.
const sweepBound = 64

// evict removes one entry: the first unmarked one from the hand on,
// unmarking those it passes, or the first past sweepBound marked ones.
func (t *memoTable) evict() {
	spared := 0
	for {
		if t.hand >= len(t.slots) {
			t.hand = 0
		}
		i := t.hand
		t.hand++
		s := &t.slots[i]
		switch {
		case s.size == 0:
		case s.used.Load() && spared < sweepBound:
			s.used.Store(false)
			spared++
		default:
			delete(t.index, s.key)
			t.bytes -= s.size
			t.slots[i] = memoSlot{}
			t.free = append(t.free, int32(i))
			t.evictions.Add(1)
			return
		}
	}
}

// stats are the table's entries and estimated bytes, and its evictions.
func (t *memoTable) stats() (entries int, bytes int64, evictions uint64) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.index), t.bytes, t.evictions.Load()
}
