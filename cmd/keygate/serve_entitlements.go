package main

import "github.com/keygate/keygate/extauthz"

// clientProxies is whose X-Forwarded-For names the client on forward-auth,
// where a key's allowed_cidrs are checked against it: the proxies of
// --trusted-proxies, --trusted-hops deep (validate has parsed them).
// Without --trusted-proxies the TCP peer is the client. gRPC needs none:
// Envoy sends the client's address itself.
func (t *tokenFlags) clientProxies() *extauthz.Proxies {
	trusted, err := t.proxies()
	if err != nil || len(trusted) == 0 {
		return nil
	}
	return &extauthz.Proxies{Trusted: trusted, Hops: t.trustedHops}
}
