package webhooks

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrDestination is returned for a webhook URL or address keygate must not
// send to.
var ErrDestination = errors.New("webhooks: destination not allowed")

// Destinations says where deliveries may go. The zero value is the
// production rule: https only, public addresses only.
type Destinations struct {
	// AllowHTTP allows http:// URLs and loopback, private and link-local
	// addresses (--allow-http-webhooks, for local development).
	AllowHTTP bool
}

// maxURLLen bounds an endpoint URL.
const maxURLLen = 2048

// CheckURL validates an endpoint URL when it is registered. A literal
// address is checked here; a host name is checked again at every dial
// (Client), after DNS, so a name that later resolves inward is refused.
func (d Destinations) CheckURL(raw string) error {
	if len(raw) > maxURLLen {
		return fmt.Errorf("%w: URL longer than %d bytes", ErrDestination, maxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("%w: want an absolute URL such as https://example.com/hooks", ErrDestination)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && d.AllowHTTP:
	default:
		return fmt.Errorf("%w: only https:// URLs (http:// needs --allow-http-webhooks)", ErrDestination)
	}
	if u.User != nil {
		return fmt.Errorf("%w: no credentials in the URL; verify the signature instead", ErrDestination)
	}
	if u.Fragment != "" {
		return fmt.Errorf("%w: no fragment in the URL", ErrDestination)
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "" {
		return fmt.Errorf("%w: no host", ErrDestination)
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		return d.checkAddr(addr)
	}
	if !d.AllowHTTP && (host == "localhost" || strings.HasSuffix(host, ".localhost")) {
		return fmt.Errorf("%w: %s is a loopback name", ErrDestination, host)
	}
	return nil
}

// checkAddr refuses every address that is not a public unicast one, unless
// local development allows it.
func (d Destinations) checkAddr(addr netip.Addr) error {
	addr = addr.Unmap()
	if d.AllowHTTP {
		// Even in development, never the unspecified or multicast ones:
		// they are not a receiver anyone runs.
		if addr.IsUnspecified() || addr.IsMulticast() {
			return fmt.Errorf("%w: %s", ErrDestination, addr)
		}
		return nil
	}
	if !addr.IsGlobalUnicast() || addr.IsPrivate() || addr.IsLoopback() || addr.IsLinkLocalUnicast() || nonPublic(addr) {
		return fmt.Errorf("%w: %s is not a public address", ErrDestination, addr)
	}
	return nil
}

// nonPublicPrefixes are ranges IsPrivate does not name but that reach no
// public host: carrier-grade NAT (often a cloud's internal network),
// benchmarking, documentation, 6to4/NAT64 wrappers that could carry an
// inner private address, and the IPv4 "this network" block.
var nonPublicPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("2002::/16"),
}

func nonPublic(addr netip.Addr) bool {
	for _, p := range nonPublicPrefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// control runs after DNS, on the address the socket is about to connect to:
// this is what defeats DNS rebinding (a name that resolved to a public
// address when checked and to 127.0.0.1 when dialled).
func (d Destinations) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrDestination, address)
	}
	return d.checkAddr(ap.Addr())
}

// Client is the HTTP client deliveries use: every connection it opens is
// checked by d, it follows no redirects (a 3xx could point anywhere, and a
// receiver that moved should be re-registered), ignores proxies from the
// environment (they would dial for us, unchecked), and gives up after
// timeout.
func (d Destinations) Client(timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: min(timeout, 10*time.Second), Control: d.control}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
