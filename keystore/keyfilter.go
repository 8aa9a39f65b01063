package keystore

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// KeyFilter keeps unknown keys away from the store. Key checksums are
// public (CRC32), so anyone can make well-formed keys at will; without a
// filter each distinct one costs a store read. KeyFilter is a Bloom filter
// of every stored key digest: a lookup whose digests are all absent is
// answered "no such key" without a store read once the small unknown-key
// budget (UnknownBurst, UnknownRate) is spent. A flood of N distinct
// unknown keys over t seconds thus costs at most UnknownBurst +
// UnknownRate·t reads, plus false positives (1 in 1,000 by default).
//
// It is kept current by the change log: the Follower hands it every key
// change before the cache sees it (Apply), so a key created on any replica
// passes the filter before any negative cache entry could hide it. Keys
// are never removed (a revoked key must still be found, to say so).
//
// KeyFilter sits between the cache and the store (it is the cache's
// Loader) and counts the reads that reach the store.
type KeyFilter struct {
	store  *Store
	fpRate float64

	mu sync.RWMutex
	bf *bloom // nil until Load has read the store
	// pending holds digests learned before the first Load finished
	// (change log, store reads), for Load to add to what it read.
	pending []Digest
	// ready is closed when the first Load has finished.
	ready chan struct{}

	// Keys the filter has not learned yet (created a moment ago, on this
	// replica or another, before the change log reached the filter) still
	// get a store read while the unknown-key budget lasts: a token bucket
	// of UnknownBurst reads refilled at UnknownRate per second. A flood
	// empties it; new keys then wait for the change log (see README).
	now    func() time.Time
	budget struct {
		sync.Mutex
		level float64
		at    time.Time
	}

	lookups, filtered atomic.Uint64
}

// The unknown-key budget: what a flood of well-formed unknown keys may cost
// in store reads, per replica.
const (
	UnknownBurst = 20
	UnknownRate  = 5 // reads per second
)

// spend takes one read from the unknown-key budget, if any is left.
func (f *KeyFilter) spend() bool {
	f.budget.Lock()
	defer f.budget.Unlock()
	now := f.now()
	f.budget.level = min(UnknownBurst, f.budget.level+now.Sub(f.budget.at).Seconds()*UnknownRate)
	f.budget.at = now
	if f.budget.level < 1 {
		return false
	}
	f.budget.level--
	return true
}

// DefaultFilterFalsePositives is the default false-positive rate.
const DefaultFilterFalsePositives = 0.001

// minFilterCapacity sizes the filter of a small store (about 180 KiB at
// the default rate): room to grow before the first rebuild.
const minFilterCapacity = 1 << 17

// NewUnloadedKeyFilter is a key filter that has not read the store yet, so
// that a server can answer before reading every digest (see Load). fpRate
// ≤ 0 means the default. Load it after Follower.Start, so that keys created
// meanwhile reach the filter through the change log.
func NewUnloadedKeyFilter(store *Store, fpRate float64) *KeyFilter {
	if fpRate <= 0 || fpRate >= 1 {
		fpRate = DefaultFilterFalsePositives
	}
	f := &KeyFilter{store: store, fpRate: fpRate, now: store.now, ready: make(chan struct{})}
	f.budget.level, f.budget.at = UnknownBurst, f.now()
	return f
}

// Load reads every stored digest. Until it has, the filter rules nothing
// out, and a key lookup it cannot vouch for spends the unknown-key budget
// (a key found gives it back); past the budget the lookup waits for the
// load and is then answered by the filter, or is refused as unavailable
// when its context ends first. So a flood during the load costs no more
// store reads than after it, and cannot make known keys fail. A failed
// Load leaves it so; call Load again.
func (f *KeyFilter) Load(ctx context.Context) error { return f.rebuild(ctx) }

// Loaded reports whether Load has finished.
func (f *KeyFilter) Loaded() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.bf != nil
}

// rebuild reads every digest into a new filter sized for twice their number.
// Rebuilds run on the follower's goroutine, which is also the one that
// runs Apply, or (Load) while Apply keeps what it learns in pending: no
// digest is lost meanwhile.
func (f *KeyFilter) rebuild(ctx context.Context) error {
	var n int
	if err := f.store.db.QueryRowContext(ctx, `SELECT count(*) FROM keys`).Scan(&n); err != nil {
		return fmt.Errorf("keystore: key filter: %w: %w", ErrUnavailable, err)
	}
	bf := newBloom(max(2*n, minFilterCapacity), f.fpRate)
	rows, err := f.store.db.QueryContext(ctx, `SELECT digest FROM keys`)
	if err != nil {
		return fmt.Errorf("keystore: key filter: %w: %w", ErrUnavailable, err)
	}
	defer rows.Close()
	for i := 0; rows.Next(); i++ {
		if i%1024 == 1023 {
			// A load of many keys runs beside requests on a server that
			// may have one core: let them have it between batches.
			runtime.Gosched()
		}
		// RawBytes: the digest is hashed in place, not kept.
		var d sql.RawBytes
		if err := rows.Scan(&d); err != nil {
			return fmt.Errorf("keystore: key filter: %w", err)
		}
		bf.addBytes(d)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("keystore: key filter: %w: %w", ErrUnavailable, err)
	}
	f.mu.Lock()
	for _, d := range f.pending {
		bf.add(d)
	}
	first := f.bf == nil
	f.bf, f.pending = bf, nil
	f.mu.Unlock()
	if first {
		close(f.ready)
	}
	return nil
}

// Apply adds the digest of a key that was written (created, imported,
// rolled). Other changes are ignored.
func (f *KeyFilter) Apply(ctx context.Context, c Change) error {
	if c.Entity != EntityKey {
		return nil
	}
	var d string
	err := f.store.db.QueryRowContext(ctx, `SELECT digest FROM keys WHERE id = $1`, c.ID).Scan(&d)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil // deleted since
	case err != nil:
		return fmt.Errorf("keystore: key filter: %w: %w", ErrUnavailable, err)
	}
	if f.learn(Digest(d)) {
		return f.rebuild(ctx)
	}
	return nil
}

// learn adds digests and reports whether the filter is past its capacity.
// Before the first load they wait in pending.
func (f *KeyFilter) learn(digests ...Digest) (full bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.bf == nil {
		f.pending = append(f.pending, digests...)
		return false
	}
	for _, d := range digests {
		full = f.bf.add(d) || full
	}
	return full
}

// mayContain reports whether any of the digests may be a stored key, and
// whether the filter is loaded at all.
func (f *KeyFilter) mayContain(digests []Digest) (may, loaded bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.bf == nil {
		return false, false
	}
	for _, d := range digests {
		if f.bf.has(d) {
			return true, true
		}
	}
	return false, true
}

// LookupKey answers "no such key" for digests the filter rules out, and
// asks the store otherwise.
func (f *KeyFilter) LookupKey(ctx context.Context, digests []Digest) (KeyFacts, error) {
	may, loaded := f.mayContain(digests)
	if may {
		f.lookups.Add(1)
		return f.store.LookupKey(ctx, digests)
	}
	if !f.spend() {
		if !loaded {
			// Not loaded yet, so any key may be known: wait for the load
			// rather than refuse a known key because a flood spent the
			// budget. A lookup whose context ends first gets a 503 (not
			// cached), never "no such key".
			select {
			case <-f.ready:
				return f.LookupKey(ctx, digests)
			case <-ctx.Done():
				f.filtered.Add(1)
				return KeyFacts{}, fmt.Errorf("keystore: key filter: %w: loading: %w", ErrUnavailable, ctx.Err())
			}
		}
		f.filtered.Add(1)
		return KeyFacts{}, ErrNotFound
	}
	f.lookups.Add(1)
	facts, err := f.store.LookupKey(ctx, digests)
	if err == nil {
		// A key newer than the filter (or read before it was loaded):
		// learn it now, and give the read back, so that only unknown
		// keys spend the budget.
		f.learn(digests...)
		f.refund()
	}
	return facts, err
}

// refund returns one read to the unknown-key budget.
func (f *KeyFilter) refund() {
	f.budget.Lock()
	f.budget.level = min(UnknownBurst, f.budget.level+1)
	f.budget.Unlock()
}

// LookupKeyID reads through to the store.
func (f *KeyFilter) LookupKeyID(ctx context.Context, id string) (KeyFacts, error) {
	f.lookups.Add(1)
	return f.store.LookupKeyID(ctx, id)
}

// LookupSite reads through to the store.
func (f *KeyFilter) LookupSite(ctx context.Context, id string) (SiteFacts, error) {
	f.lookups.Add(1)
	return f.store.LookupSite(ctx, id)
}

// Stats reports the lookups that reached the store and the key lookups
// the filter answered alone.
func (f *KeyFilter) Stats() (lookups, filtered uint64) { return f.lookups.Load(), f.filtered.Load() }

// bloom is a Bloom filter over digests. Digests are HMAC-SHA256 outputs,
// uniformly random, so their bytes serve as the hashes (double hashing).
type bloom struct {
	bits     []uint64
	m        uint64
	k        int
	n, limit int
}

func newBloom(capacity int, p float64) *bloom {
	m := uint64(math.Ceil(-float64(capacity) * math.Log(p) / (math.Ln2 * math.Ln2)))
	m = (m + 63) &^ 63
	k := max(1, int(math.Round(float64(m)/float64(capacity)*math.Ln2)))
	return &bloom{bits: make([]uint64, m/64), m: m, k: k, limit: capacity}
}

func digestHashes(d Digest) (uint64, uint64, bool) {
	if len(d) < 32 {
		return 0, 0, false
	}
	var h [32]byte
	copy(h[:], d[:32])
	return hashBytes(h[:])
}

// hashBytes is digestHashes of a hex digest held as bytes.
func hashBytes(d []byte) (uint64, uint64, bool) {
	var b [16]byte
	if len(d) < 32 {
		return 0, 0, false
	}
	if _, err := hex.Decode(b[:], d[:32]); err != nil {
		return 0, 0, false
	}
	h1 := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 | uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
	h2 := uint64(b[8]) | uint64(b[9])<<8 | uint64(b[10])<<16 | uint64(b[11])<<24 | uint64(b[12])<<32 | uint64(b[13])<<40 | uint64(b[14])<<48 | uint64(b[15])<<56
	return h1, h2 | 1, true
}

// add sets d's bits and reports whether the filter is past its capacity.
func (b *bloom) add(d Digest) bool {
	h1, h2, ok := digestHashes(d)
	return b.addHashes(h1, h2, ok)
}

// addBytes is add for a digest read as bytes.
func (b *bloom) addBytes(d []byte) bool {
	h1, h2, ok := hashBytes(d)
	return b.addHashes(h1, h2, ok)
}

func (b *bloom) addHashes(h1, h2 uint64, ok bool) bool {
	if !ok {
		return false
	}
	for i := range b.k {
		w, mask := b.bit(h1, h2, i)
		b.bits[w] |= mask
	}
	b.n++
	return b.n > b.limit
}

// has reports whether d may have been added. A digest that is not a
// well-formed hex digest "may" always: the filter only rules out.
func (b *bloom) has(d Digest) bool {
	h1, h2, ok := digestHashes(d)
	if !ok {
		return true
	}
	for i := range b.k {
		if w, mask := b.bit(h1, h2, i); b.bits[w]&mask == 0 {
			return false
		}
	}
	return true
}

// bit is the word and mask of the i-th of a digest's k bits.
func (b *bloom) bit(h1, h2 uint64, i int) (int, uint64) {
	bit := (h1 + uint64(i)*h2) % b.m
	return int(bit / 64), 1 << (bit % 64)
}
