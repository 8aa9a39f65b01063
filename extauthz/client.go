package extauthz

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Proxies says whose word about the client's address keygate takes on its
// HTTP endpoints (forward-auth, token exchange): the proxies whose
// X-Forwarded-For names the client (serve --trusted-proxies) and how many
// of them stand in front of keygate (--trusted-hops). A nil *Proxies trusts
// no one: the TCP peer is the client.
type Proxies struct {
	Trusted []netip.Prefix
	// Hops is how many trusted proxies, each appending the address it saw
	// to X-Forwarded-For, stand in front of keygate (default 1).
	Hops int
}

// ClientAddr is the client's address: the TCP peer, or, when the peer is a
// trusted proxy, the X-Forwarded-For entry Hops from the right (what the
// outermost trusted proxy saw). Counting hops, rather than skipping every
// trusted address, keeps a client inside the trusted ranges from choosing
// its own address with a forged header. The zero Addr when unknown.
func (p *Proxies) ClientAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	addr = addr.Unmap().WithZone("")
	if p != nil && p.trusted(addr) {
		// A trusted proxy speaks for the client: when it names none (no
		// X-Forwarded-For, fewer hops than configured, or an entry that
		// is not an address), the client is unknown, never the proxy
		// itself, which an allowlist of internal ranges would admit.
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		n := max(p.Hops, 1)
		if len(hops) < n {
			return netip.Addr{}
		}
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[len(hops)-n]))
		if err != nil {
			return netip.Addr{}
		}
		return hop.Unmap().WithZone("")
	}
	return addr
}

func (p *Proxies) trusted(a netip.Addr) bool {
	for _, t := range p.Trusted {
		if t.Contains(a) {
			return true
		}
	}
	return false
}

// sourceAddr parses Envoy's source address (attributes.source.address.
// socket_address.address); the zero Addr when it is missing or not an IP.
func sourceAddr(s string) netip.Addr {
	if s == "" {
		return netip.Addr{} // no address: skip the parse error's allocation
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return addr.Unmap().WithZone("")
}
