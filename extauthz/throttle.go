package extauthz

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
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

// Wait is how long client must wait before its next attempt; 0 means go.
func (t *Throttle) Wait(client netip.Addr) time.Duration {
	if t == nil {
		return 0
	}
	_, every, _ := t.limits()
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.level(t.clients[client], now)
	if l >= 1 {
		return 0
	}
	return time.Duration((1 - l) * float64(every))
}

// Fail records one failed attempt by client.
func (t *Throttle) Fail(client netip.Addr) {
	if t == nil {
		return
	}
	burst, _, max := t.limits()
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.clients == nil {
		t.clients = map[netip.Addr]*bucket{}
	}
	b := t.clients[client]
	if b == nil {
		if len(t.clients) >= max {
			t.evict(now, burst, max)
		}
		b = &bucket{}
		t.clients[client] = b
	}
	b.level, b.at = t.level(b, now)-1, now
	if b.level < 0 {
		b.level = 0
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

// Client is the address a request is throttled under: the TCP peer, or,
// when the peer is a trusted proxy, the right-most X-Forwarded-For entry
// that is not a trusted proxy. IPv6 clients are grouped by /64, the block
// one subscriber usually holds.
func (t *Throttle) Client(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	addr = addr.Unmap()
	if t != nil && t.trusted(addr) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break
			}
			addr = hop.Unmap()
			if !t.trusted(addr) {
				break
			}
		}
	}
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.Addr()
	}
	return addr
}

func (t *Throttle) trusted(a netip.Addr) bool {
	for _, p := range t.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
