package keystore

import (
	"reflect"
	"runtime"
	"weak"
)

// fresh reports whether no invalidation touched the entry's key, site or
// account since its store read began.
func (c *Cache) fresh(e entry) bool {
	if e.facts == nil {
		return e.gen >= c.negMark.Load()
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if len(c.marks) == 0 {
		return true
	}
	if id := e.keyID(); id != "" && c.marked(EntityKey, id, e.gen) {
		return false
	}
	return !c.marked(EntitySite, e.facts.Site.ID, e.gen) && !c.marked(EntityAccount, e.facts.Account.ID, e.gen)
}

func (c *Cache) marked(entity Entity, id string, gen uint64) bool {
	m, ok := c.marks[entityRef{entity, id}]
	return ok && m.gen > gen
}

// Invalidate makes every cached fact about the entity stale at once.
func (c *Cache) Invalidate(entity Entity, id string) {
	gen := c.gen.Add(1)
	now := c.now()
	c.mu.Lock()
	// Concurrent invalidations may get here out of order: a mark only rises.
	if old := c.marks[entityRef{entity, id}]; old.gen < gen {
		c.marks[entityRef{entity, id}] = mark{gen: gen, at: now}
	}
	// A mark can be dropped once no entry it concerns can still exist: an
	// entry filled before the mark lives at most ttl+stale from its Set,
	// which may come a store read after the mark; one more ttl covers that
	// read with room to spare. Pruning only when the map has doubled keeps
	// bulk invalidations linear.
	if len(c.marks) > c.pruneAt {
		keep := 2*c.ttl + c.stale
		for ref, m := range c.marks {
			if now.Sub(m.at) > keep {
				delete(c.marks, ref)
			}
		}
		c.pruneAt = max(minPruneAt, 2*len(c.marks))
	}
	c.mu.Unlock()
	switch entity {
	case EntityKey:
		c.raiseNegMark(gen)
		c.remove("k:" + id)
		c.byID.dropID(id)
	case EntitySite:
		// A negative "no such site" fill may be in flight while the site is
		// created; like a key write, a site write retires negative entries.
		c.raiseNegMark(gen)
		c.remove("s:" + id)
	}
}

// raiseNegMark moves negMark up to gen, never down, whatever order
// concurrent invalidations arrive in.
func (c *Cache) raiseNegMark(gen uint64) {
	for {
		old := c.negMark.Load()
		if old >= gen || c.negMark.CompareAndSwap(old, gen) {
			return
		}
	}
}

// share returns the one copy of f that cached entries hold: the copy already
// shared for its site if it is equal in every field, else f itself, which
// becomes the shared copy. Entries never change what they point to, so a
// site write simply leaves the old copy to the entries it made stale.
func (c *Cache) share(f SiteFacts) *SiteFacts {
	id := f.Site.ID
	c.sharedMu.Lock()
	defer c.sharedMu.Unlock()
	if p := c.shared[id].Value(); p != nil && reflect.DeepEqual(*p, f) {
		return p
	}
	p := &f
	c.shared[id] = weak.Make(p)
	runtime.AddCleanup(p, c.unshare, id)
	return p
}

// unshare forgets a site once its shared copy is gone (unless a newer copy
// took its place).
func (c *Cache) unshare(id string) {
	c.sharedMu.Lock()
	defer c.sharedMu.Unlock()
	if c.shared[id].Value() == nil {
		delete(c.shared, id)
	}
}
