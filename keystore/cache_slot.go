package keystore

import (
	"encoding/binary"
	"math/bits"
	"time"
	"unsafe"
)

// A cached answer is stored in ristretto as one allocation, its "slot": the
// one pointer it needs (to the shared site and account facts) followed by
// its bytes: kind, generation, read time and, for a key, its packed record
// (cache_record.go). A million cached keys then cost a million slots of
// 64 bytes or so, with no entry struct and no separate record string, and
// ristretto's per-item record stays the size of a pointer.
//
// Go has no variable-length structs, so a slot is allocated as one of the
// fixed-size types below (one per allocator size class up to 256 bytes)
// and handled through its first field; its bytes are read in place, as a
// string that points into the slot (so a cache hit copies nothing). A slot
// is never written after it is made: readers need no lock.
type slotHead struct {
	// ref is a *SiteFacts, or for a slotWhole slot a *wholeKey; nil for a
	// negative slot.
	ref unsafe.Pointer
}

// wholeKey is what a slot points to when it holds a key's Entitlements, or
// the whole key when it could not be packed (rare, so a second allocation).
type wholeKey struct {
	facts *SiteFacts
	key   *Key
}

// Slot kinds (the first byte after the length).
const (
	slotNegative byte = 1 << iota // "no such key or site"
	slotKey                       // a key: its record follows the header
	slotWhole                     // ref is a *wholeKey
)

// sized is a slot with room for an array A of bytes after its pointer.
type sized[A any] struct {
	h slotHead
	b A
}

// newSized allocates a slot of one size.
func newSized[A any]() (*slotHead, []byte) {
	s := new(sized[A])
	return &s.h, unsafe.Slice((*byte)(unsafe.Pointer(&s.b)), unsafe.Sizeof(s.b))
}

// slotSizes lists the slot sizes, smallest first: each fills an allocator
// size class (32, 48, 64, 80, 96, 128, 160, 192 and 256 bytes).
var slotSizes = [...]struct {
	room int
	make func() (*slotHead, []byte)
}{
	{24, newSized[[24]byte]}, {40, newSized[[40]byte]}, {56, newSized[[56]byte]},
	{72, newSized[[72]byte]}, {88, newSized[[88]byte]}, {120, newSized[[120]byte]},
	{152, newSized[[152]byte]}, {184, newSized[[184]byte]}, {maxSlotBytes, newSized[[maxSlotBytes]byte]},
}

// maxSlotBytes is the most a slot holds after its pointer: one length byte
// and up to 247 bytes (a longer key is kept whole).
const maxSlotBytes = 248

// newSlot allocates the smallest slot with room for n (<= maxSlotBytes)
// bytes after its pointer.
func newSlot(n int) (*slotHead, []byte) {
	for _, s := range slotSizes {
		if n <= s.room {
			return s.make()
		}
	}
	return slotSizes[len(slotSizes)-1].make()
}

// seal stores e in a new slot. Its read time is kept relative to the
// cache's epoch, so that it takes a few bytes yet stays exact. A packed
// key's optional times follow the string, 8-byte aligned, as time.Time
// values. ok is false for an entry that cannot be stored (not cached then).
func (c *Cache) seal(e entry) (_ *slotHead, ok bool) {
	kind := byte(0)
	switch {
	case e.facts == nil:
		kind, e.rec, e.extra, e.opt = slotNegative, "", nil, nil
	case e.extra != nil:
		kind = slotKey | slotWhole
	case e.rec != "":
		kind = slotKey
	}
	var hdr [1 + 2*binary.MaxVarintLen64]byte
	b := append(hdr[:0], kind)
	b = binary.AppendUvarint(b, e.gen)
	b = binary.AppendVarint(b, e.at-c.epoch)
	if timesAt(1+len(b)+len(e.rec))+timeSize*len(e.opt) > maxSlotBytes {
		// Too long to pack: keep the key whole.
		k, ok := unpackKey(e.rec, e.facts.Site.ID, e.opt)
		if !ok {
			return nil, false
		}
		if e.extra != nil {
			k.Entitlements = e.extra.Entitlements
		}
		e.extra, e.rec, e.opt = &k, "", nil
		b[0] = slotKey | slotWhole
	}
	n := 1 + len(b) + len(e.rec)
	h, buf := newSlot(timesAt(n) + timeSize*len(e.opt))
	buf[0] = byte(n - 1)
	copy(buf[1+copy(buf[1:], b):], e.rec)
	for i, t := range e.opt {
		// exactTime (packKey) made sure t holds no *Location: the slot's
		// bytes are not scanned for pointers.
		*(*time.Time)(unsafe.Pointer(&buf[timesAt(n)+i*timeSize])) = t
	}
	switch {
	case e.extra != nil:
		h.ref = unsafe.Pointer(&wholeKey{facts: e.facts, key: e.extra})
	case e.facts != nil:
		h.ref = unsafe.Pointer(e.facts)
	}
	return h, true
}

const timeSize = int(unsafe.Sizeof(time.Time{}))

// timesAt is where, after n bytes, a slot's times start: 8-byte aligned,
// as slots and their bytes (after one pointer) are.
func timesAt(n int) int { return (n + 7) &^ 7 }

// open reads the entry a slot holds, without copying; ok is false for a
// slot seal did not make (a bug), which the caller treats as a miss.
func (c *Cache) open(h *slotHead) (e entry, ok bool) {
	if h == nil {
		return entry{}, false
	}
	p := unsafe.Add(unsafe.Pointer(h), unsafe.Sizeof(slotHead{}))
	n := *(*byte)(p)
	if n == 0 {
		return entry{}, false
	}
	s := unsafe.String((*byte)(unsafe.Add(p, 1)), int(n))
	r := recReader{rec: s, off: 1, ok: true}
	kind := s[0]
	e.gen = r.uvarint()
	e.at = c.epoch + r.varint()
	switch {
	case kind&slotWhole != 0:
		w := (*wholeKey)(h.ref)
		e.facts, e.extra = w.facts, w.key
	case kind&slotNegative == 0:
		e.facts = (*SiteFacts)(h.ref)
	}
	if kind&slotKey != 0 && r.off < len(s) {
		e.rec = s[r.off:]
		if times := bits.OnesCount8(e.rec[0] & (recLastUsed | recExpires | recRevoked)); times > 0 {
			e.opt = unsafe.Slice((*time.Time)(unsafe.Add(p, timesAt(1+int(n)))), times)
		}
	}
	return e, r.ok
}

// slotKeyID is the id of the key a slot holds ("" for other slots).
func (c *Cache) slotKeyID(h *slotHead) string {
	e, ok := c.open(h)
	if !ok {
		return ""
	}
	return e.keyID()
}
