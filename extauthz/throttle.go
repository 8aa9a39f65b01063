package extauthz

import (
	"math"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Throttle limits failed attempts per client address, so that the token
// exchange cannot be used to test guessed keys or refresh tokens at speed.
// Each address has a token bucket that only failures drain; while it is
// empty every request from the address is refused, successes included (or
// a guess could still be confirmed). It is in-process: each replica counts
// its own clients.
type Throttle struct {
	// Burst is how many failures an address may make at once (default 10).
	Burst int
	// Every is how often one more failure is allowed (default 6 s).
	Every time.Duration
	// MaxClients bounds the addresses tracked (default 10,000).
	MaxClients int
	// Trusted lists proxies (Envoy) whose X-Forwarded-For names the client.
	// Without it the TCP peer is the client.
	Trusted []netip.Prefix
	// Hops is how many trusted proxies, each appending the address it saw
	// to X-Forwarded-For, stand in front of keygate (default 1: Envoy).
	// The client is the Hops-th entry from the right; entries left of it
	// are the client's own words and never count.
	Hops int
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu      sync.Mutex
	clients map[netip.Addr]*bucket
}

type bucket struct {
	level float64
	at    time.Time
}

func (t *Throttle) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

func (t *Throttle) limits() (burst float64, every time.Duration, max int) {
	burst, every, max = float64(t.Burst), t.Every, t.MaxClients
	if burst <= 0 {
		burst = 10
	}
	if every <= 0 {
		every = 6 * time.Second
	}
	if max <= 0 {
		max = 10_000
	}
	return burst, every, max
}

// level refills b up to now and returns it; nil means a full bucket.
func (t *Throttle) level(b *bucket, now time.Time) float64 {
	burst, every, _ := t.limits()
	if b == nil {
		return burst
	}
	return math.Min(burst, b.level+float64(now.Sub(b.at))/float64(every))
}

// Acquire takes one attempt from client's bucket before the attempt is
// made, so that concurrent requests cannot overrun the burst. It returns 0
// when the attempt may go ahead, else how long to wait. An attempt that
// did not fail is given back with Release.
func (t *Throttle) Acquire(client netip.Addr) time.Duration {
	if t == nil {
		return 0
	}
	burst, every, max := t.limits()
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.clients[client]
	l := t.level(b, now)
	if l < 1 {
		return time.Duration((1 - l) * float64(every))
	}
	if b == nil {
		if t.clients == nil {
			t.clients = map[netip.Addr]*bucket{}
		}
		if len(t.clients) >= max {
			t.evict(now, burst, max)
		}
		b = &bucket{}
		t.clients[client] = b
	}
	b.level, b.at = l-1, now
	return 0
}

// Release gives back an attempt taken by Acquire that did not fail.
func (t *Throttle) Release(client netip.Addr) {
	if t == nil {
		return
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if b := t.clients[client]; b != nil {
		b.level, b.at = t.level(b, now)+1, now
		if burst, _, _ := t.limits(); b.level > burst {
			b.level = burst
		}
	}
}

// evict drops refilled buckets (they mean nothing), and if none has
// refilled, one arbitrary bucket: memory stays bounded, and an attacker
// who can fill the map from 10,000 addresses gains little by it.
func (t *Throttle) evict(now time.Time, burst float64, max int) {
	for addr, b := range t.clients {
		if t.level(b, now) >= burst {
			delete(t.clients, addr)
		}
	}
	for addr := range t.clients {
		if len(t.clients) < max {
			break
		}
		delete(t.clients, addr)
	}
}

// Client is the address a request is throttled under: the client's address
// by the throttle's Trusted and Hops (see Proxies.ClientAddr). IPv6 clients
// are grouped by /64, the block one subscriber usually holds.
func (t *Throttle) Client(r *http.Request) netip.Addr {
	addr := t.proxies().ClientAddr(r)
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.Addr()
	}
	return addr
}

// proxies is whose X-Forwarded-For the throttle believes; nil trusts no one.
func (t *Throttle) proxies() *Proxies {
	if t == nil {
		return nil
	}
	return &Proxies{Trusted: t.Trusted, Hops: t.Hops}
}
