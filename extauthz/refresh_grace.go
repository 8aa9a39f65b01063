package extauthz

import (
	"sync"
	"time"

	"github.com/keygate/keygate/keystore"
)

// DefaultRefreshGrace is how long (by default; Exchange.Grace) a refresh token that was just redeemed may be
// presented again to get the very same pair back: a client whose response
// was lost (timeout, dropped connection) retries with the token it still
// holds, and that retry must not count as reuse and kill the family.
// Past the grace, presenting it again is reuse (RFC 9700 §4.14.2). The
// memory is per replica: a retry that reaches another replica is reuse.
const DefaultRefreshGrace = 10 * time.Second

// maxGraceEntries bounds the pairs remembered (one per refresh in the last
// RefreshGrace); past it, new pairs are not remembered and a retry is reuse.
const maxGraceEntries = 10_000

// refreshGrace remembers, for the grace, the pair each redeemed refresh
// token (by digest) was answered with. The zero value is ready.
type refreshGrace struct {
	mu      sync.Mutex
	entries map[keystore.Digest]graceEntry
}

type graceEntry struct {
	pair  tokenPair
	until time.Time
}

// remember notes that the token with digest d was answered with pair.
func (g *refreshGrace) remember(d keystore.Digest, pair tokenPair, now time.Time, grace time.Duration) {
	if grace <= 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.entries == nil {
		g.entries = map[keystore.Digest]graceEntry{}
	}
	if len(g.entries) >= maxGraceEntries {
		for k, e := range g.entries {
			if !now.Before(e.until) {
				delete(g.entries, k)
			}
		}
		if len(g.entries) >= maxGraceEntries {
			return
		}
	}
	g.entries[d] = graceEntry{pair: pair, until: now.Add(grace)}
}

// replay returns the pair the token with digest d was answered with, when
// that was less than the grace ago.
func (g *refreshGrace) replay(d keystore.Digest, now time.Time) (tokenPair, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.entries[d]
	if !ok {
		return tokenPair{}, false
	}
	if !now.Before(e.until) {
		delete(g.entries, d)
		return tokenPair{}, false
	}
	return e.pair, true
}
