package extauthz

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

// A trusted proxy that names no client leaves the client unknown: never the
// proxy's own address, which an allowlist of internal ranges would admit.
func TestClientAddrTrustedProxyNamesNoClient(t *testing.T) {
	p := &Proxies{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Hops: 1}
	for _, tc := range []struct {
		name, peer string
		xff        []string
		want       string // "" is the zero Addr
	}{
		{"untrusted peer, forged header ignored", "203.0.113.9:4000", []string{"10.1.1.1"}, "203.0.113.9"},
		{"trusted peer names the client", "10.0.0.2:4000", []string{"198.51.100.7"}, "198.51.100.7"},
		{"rightmost hop counts", "10.0.0.2:4000", []string{"10.9.9.9, 198.51.100.7"}, "198.51.100.7"},
		{"trusted peer, no header", "10.0.0.2:4000", nil, ""},
		{"trusted peer, address with port", "10.0.0.2:4000", []string{"198.51.100.7:5678"}, ""},
		{"trusted peer, garbage", "10.0.0.2:4000", []string{"not-an-ip"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/auth", nil)
			r.RemoteAddr = tc.peer
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			got := p.ClientAddr(r)
			if tc.want == "" {
				if got.IsValid() {
					t.Fatalf("ClientAddr = %v, want unknown", got)
				}
				return
			}
			if got != netip.MustParseAddr(tc.want) {
				t.Fatalf("ClientAddr = %v, want %s", got, tc.want)
			}
		})
	}
	hops2 := &Proxies{Trusted: p.Trusted, Hops: 2}
	r := httptest.NewRequest("GET", "/auth", nil)
	r.RemoteAddr = "10.0.0.2:4000"
	r.Header.Set("X-Forwarded-For", "198.51.100.7")
	if got := hops2.ClientAddr(r); got.IsValid() {
		t.Fatalf("two hops configured, one named: ClientAddr = %v, want unknown", got)
	}
}
