package policies

import "sync/atomic"

// MemoStats counts decisions by how the memo served them.
type MemoStats struct {
	// Hits were answered from the memo, Misses were evaluated and
	// remembered, Bypasses were evaluated without the memo: it is off, the
	// policy is not deterministic, or the input cannot be a key (the policy
	// reads headers that differ per request, or the key is too long).
	Hits, Misses, Bypasses uint64
	// Entries and Bytes are what the current policy's memo holds (Bytes
	// as estimated against its budget), Evictions the entries it dropped
	// for room; all three start again at 0 with a reload's new memo.
	Entries   int
	Bytes     int64
	Evictions uint64
}

type memoCounters struct{ hit, miss, bypass atomic.Uint64 }

func (c *memoCounters) count(hit bool, key *memoScratch) {
	if c == nil {
		return
	}
	switch {
	case hit:
		c.hit.Add(1)
	case key != nil:
		c.miss.Add(1)
	default:
		c.bypass.Add(1)
	}
}

// MemoStats reports how decisions were served since the engine started.
func (e *Engine) MemoStats() MemoStats {
	s := MemoStats{Hits: e.stats.hit.Load(), Misses: e.stats.miss.Load(), Bypasses: e.stats.bypass.Load()}
	if p := e.Current(); p != nil && p.memo != nil {
		s.Entries, s.Bytes, s.Evictions = p.memo.table.stats()
	}
	return s
}

func (c *memoCounters) bypassed() {
	if c != nil {
		c.bypass.Add(1)
	}
}

// ReadsHeaders reports whether p may read input.request.headers: false
// only once p is complete and its analysis proved no rule reaches them
// (the proof the memo relies on to leave headers out of its key), so
// that a caller may leave them out of the input. A policy that is not
// complete yet, or not memoizable, may read them.
func (p *Policy) ReadsHeaders() bool {
	return p.memo == nil || p.unread&unreadHeaders == 0
}
