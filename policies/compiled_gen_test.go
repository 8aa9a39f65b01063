package policies

import (
	"math/rand/v2"
	"strconv"
	"strings"
)

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

func (g *inputGen) word(rng *rand.Rand, own ...string) string {
	if len(own) > 0 && (len(g.words) == 0 || rng.IntN(3) > 0) {
		return pick(rng, own)
	}
	if len(g.words) == 0 {
		return ""
	}
	return pick(rng, g.words)
}

func (g *inputGen) input(rng *rand.Rand) *Input {
	in := &Input{Request: g.request(rng), Credential: Credential{
		Status: pick(rng, []string{CredMissing, CredAmbiguous, CredMalformed, CredUnknown, CredUnavailable, CredFound, CredFound, CredFound, CredFound, CredInvalidToken, CredExpiredToken}),
		Kind:   pick(rng, []string{"key", "key", "key", "token", ""}),
		Scheme: pick(rng, []string{"bearer", "bearer", "basic", "x-api-key", "bare", "", "other"}),
	}}
	if in.Credential.Status == CredFound || rng.IntN(10) == 0 {
		in.Key = g.key(rng)
		in.Site = g.site(rng)
		in.Account = g.account(rng)
	}
	if rng.IntN(4) == 0 {
		in.Public = &Public{Status: pick(rng, []string{CredFound, CredFound, CredUnknown, CredUnavailable, ""})}
		if in.Public.Status == CredFound {
			in.Public.Site, in.Public.Account = g.site(rng), g.account(rng)
		}
	}
	return in
}

func (g *inputGen) request(rng *rand.Rand) Request {
	r := Request{
		Method: pick(rng, []string{"GET", "GET", "HEAD", "POST", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "get"}),
		Host:   pick(rng, []string{"api.example.test", "acme.example", "www.acme.example", "evil.test", ""}),
		PathOK: rng.IntN(12) > 0,
		Query:  pick(rng, []string{"", "a=1", "site=acme&x=y"}),
	}
	r.Path = g.path(rng)
	if rng.IntN(3) == 0 {
		r.Origin = &Origin{Scheme: pick(rng, []string{"https", "http", "file"}), Host: pick(rng, []string{"acme.example", "www.acme.example", "evil.test", "localhost"}), Port: pick(rng, []string{"", "443", "8080"})}
		r.Origin.DefaultPort = r.Origin.Port == "" || rng.IntN(2) == 0
	}
	r.ClientAddress = pick(rng, []string{"", "", "10.1.2.3", "192.168.1.5", "8.8.8.8", "::1"})
	if rng.IntN(2) == 0 {
		r.Headers = map[string]string{"x-request-id": "req_" + strconv.Itoa(rng.IntN(1000)), "user-agent": "diff"}
		if rng.IntN(3) == 0 {
			r.Headers[g.word(rng, "accept", "x-site", "content-type")] = g.word(rng, "application/json", "*/*")
		}
	}
	return r
}

// path is one of the data's paths, often with a segment after it, in odd
// case or odd form now and then.
func (g *inputGen) path(rng *rand.Rand) string {
	p := "/"
	if len(g.paths) > 0 && rng.IntN(8) > 0 {
		p = pick(rng, g.paths)
	}
	switch rng.IntN(6) {
	case 0:
		p = strings.TrimSuffix(p, "/") + "/" + pick(rng, []string{"vid_1", "acme", "site-a", "x", "generate", ""})
	case 1:
		p += pick(rng, []string{"acme", "site-a/videos", "vid_2/x", "-export", "/"})
	case 2:
		p = pick(rng, []string{strings.ToUpper(p), strings.ToUpper(p[:min(3, len(p))]) + p[min(3, len(p)):]})
	case 3:
		p = pick(rng, []string{"/v1/sites/acme/../b", "//v1/videos", "/v1/videos/", "/unknown", "/v1", "/V1/Sites/acme"})
	}
	return p
}

func (g *inputGen) limitMap(rng *rand.Rand) map[string]int64 {
	if rng.IntN(3) > 0 {
		return nil
	}
	m := map[string]int64{}
	for i := rng.IntN(3); i >= 0; i-- {
		m[pick(rng, g.limits)] = pick(rng, []int64{0, 1, 5, 60, 1000, -1})
	}
	return m
}

func (g *inputGen) key(rng *rand.Rand) *Key {
	k := &Key{
		ID:      "key_" + strconv.Itoa(rng.IntN(50)),
		Mode:    pick(rng, []string{"live", "live", "test", "", "other"}),
		Name:    pick(rng, []string{"", "ci"}),
		Revoked: rng.IntN(8) == 0,
		Expired: rng.IntN(8) == 0,
		Limits:  g.limitMap(rng),
	}
	for i := rng.IntN(3); i > 0; i-- {
		k.Scopes = append(k.Scopes, g.word(rng, "*", "read", "write", "videos:read", "videos:write", "audio", "admin"))
	}
	if rng.IntN(4) == 0 {
		k.AllowedCIDRs = []string{pick(rng, []string{"10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32", "not-a-cidr"})}
	}
	if rng.IntN(4) == 0 {
		k.Meta = map[string]string{g.word(rng, "team", "tier"): g.word(rng, "a", "gold")}
	}
	if rng.IntN(4) == 0 {
		r := pick(rng, []int64{0, 1, 5})
		k.Remaining = &r
	}
	return k
}

func (g *inputGen) site(rng *rand.Rand) *Site {
	if rng.IntN(6) == 0 {
		return nil
	}
	s := &Site{ID: pick(rng, []string{"acme", "site-a", "other"}), Account: pick(rng, []string{"acct", "acct2"}), Active: rng.IntN(6) > 0, Limits: g.limitMap(rng)}
	for i := rng.IntN(3); i > 0; i-- {
		s.Domains = append(s.Domains, pick(rng, []string{"acme.example", "*.acme.example", "localhost", "evil.test"}))
	}
	return s
}

func (g *inputGen) account(rng *rand.Rand) *Account {
	if rng.IntN(6) == 0 {
		return nil
	}
	return &Account{ID: pick(rng, []string{"acct", "acct2"}), Plan: pick(rng, g.plans), Status: pick(rng, []string{"active", "active", "active", "suspended", "closed", ""}), Limits: g.limitMap(rng)}
}
