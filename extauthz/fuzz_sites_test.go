package extauthz

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/tokens"
)

// sitesWorld is FuzzCheckSites' deployment: several accounts and sites,
// keys in every state, access tokens, and a host that takes live keys only.
type sitesWorld struct {
	fx   *fixture
	fwd  http.Handler
	cred []string // credentials to choose from (keys and tokens, good and bad)
	// passing maps a credential that passes every key check to its facts.
	passing map[string]keystore.KeyFacts
}

var fuzzHosts = []string{"api.example.com", "API.example.com.", "api.example.com:443", "sandbox.example.com",
	"sandbox.example.com.", "other.test", "", "bad host", "api.example.com..", "[::1]:8080"}

func newSitesWorld(tb testing.TB) *sitesWorld {
	fx := newFixtureWithPrefix(tb, fuzzPrefix)
	ctx := context.Background()
	w := &sitesWorld{fx: fx, passing: map[string]keystore.KeyFacts{}}
	must := func(err error) {
		if err != nil {
			tb.Fatal(err)
		}
	}
	_, err := fx.store.CreateAccount(ctx, keystore.Account{ID: "other", Plan: "max"})
	must(err)
	_, err = fx.store.CreateAccount(ctx, keystore.Account{ID: "lapsed", Plan: "pro", Status: keystore.StatusTrialExpired})
	must(err)
	for _, s := range []keystore.Site{{ID: "other-web", AccountID: "other", Active: true}, {ID: "dead-web", AccountID: "acme"},
		{ID: "lapsed-web", AccountID: "lapsed", Active: true}} {
		_, err = fx.store.CreateSite(ctx, s)
		must(err)
	}
	newKey := func(site string, mode keystore.Mode, exp *time.Time) (keystore.Key, string) {
		k, s, err := fx.store.CreateKey(ctx, keystore.KeySpec{SiteID: site, Mode: mode, ExpiresAt: exp})
		must(err)
		return k, s.Reveal()
	}
	soon := fx.now.Add(time.Minute)
	otherKey, other := newKey("other-web", keystore.ModeLive, nil)
	revokedKey, revoked := newKey("acme-web", keystore.ModeLive, nil)
	_, err = fx.store.RevokeKey(ctx, revokedKey.ID)
	must(err)
	_, expired := newKey("acme-web", keystore.ModeLive, &soon)
	_, dead := newKey("dead-web", keystore.ModeLive, nil)
	_, lapsed := newKey("lapsed-web", keystore.ModeLive, nil)
	fx.now = fx.now.Add(time.Hour) // the expiring key is now past expires_at

	ring := tokens.NewKeyring(tokens.NewFormat(fuzzPrefix))
	must(ring.Set([]tokens.SigningKey{{ID: "sk_fuzz", Secret: []byte(strings.Repeat("k", 32)), NotBefore: fixedNow}}))
	fx.server.Authorizer.Tokens = ring
	mint := func(id, mode string) string {
		tok, _, err := ring.Mint(id, mode, fx.now, time.Hour)
		must(err)
		return tok
	}
	w.cred = []string{fx.live.Reveal(), fx.test.Reveal(), other, revoked, expired, dead, lapsed,
		mint(fx.liveKey.ID, "live"), mint(otherKey.ID, "live"), mint(revokedKey.ID, "live"), "fz_live_unknownunknownunknownunknown00"}
	for _, c := range []string{fx.live.Reveal(), fx.test.Reveal(), other, w.cred[7], w.cred[8]} {
		res := fx.server.Authorizer.Authorize(ctx, Request{Method: "GET", Host: "x", Path: "/", Headers: map[string]string{"x-api-key": c}})
		f, err := fx.cache.KeyID(ctx, res.KeyID)
		must(err)
		w.passing[c] = f
	}
	fa := &ForwardAuth{Authorizer: fx.server.Authorizer, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	w.fwd = fa.Wrap(http.NotFoundHandler())
	return w
}

// verdict is one transport's answer, reduced to what the invariants read.
type verdict struct {
	allow    bool
	status   int
	identity map[string]string
}

func (w *sitesWorld) decide(t *testing.T, via uint8, method, target, host string, h map[string]string) verdict {
	switch via % 4 {
	case 0: // Envoy gRPC
		hh := map[string]string{}
		for k, v := range h {
			hh[k] = v
		}
		resp, err := w.fx.server.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: method, Path: target, Host: host, Headers: hh}}}})
		if err != nil {
			t.Fatalf("gRPC error: %v", err)
		}
		v := verdict{allow: codes.Code(resp.GetStatus().GetCode()) == codes.OK, identity: map[string]string{}}
		for _, o := range resp.GetOkResponse().GetHeaders() {
			v.identity[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
		}
		v.status = int(resp.GetDeniedResponse().GetStatus().GetCode())
		return v
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Host = host
	for k, v := range h {
		r.Header.Set(k, v)
	}
	switch via % 4 {
	case 1: // Envoy http_service
		r.Method, r.RequestURI = method, EnvoyPrefix+target
	case 2: // nginx auth_request
		r.RequestURI = NginxPath
		r.Header.Set("X-Original-Method", method)
		r.Header.Set("X-Original-URI", target)
		r.Header.Set("X-Forwarded-Host", host)
	case 3: // Traefik / Caddy
		r.RequestURI = ForwardAuthPath
		r.Header.Set("X-Forwarded-Method", method)
		r.Header.Set("X-Forwarded-Uri", target)
		r.Header.Set("X-Forwarded-Host", host)
	}
	rec := httptest.NewRecorder()
	w.fwd.ServeHTTP(rec, r)
	v := verdict{allow: rec.Code == 200, status: rec.Code, identity: map[string]string{}}
	for k := range rec.Header() {
		if k := strings.ToLower(k); strings.HasPrefix(k, identityPrefix) && k != HeaderDenyStatus && k != HeaderDenyBody {
			v.identity[k] = rec.Header().Get(k)
		}
	}
	return v
}

// respell writes path another way an upstream router may read as the same
// resource: escaped letters, changed case, doubled slashes, dot segments,
// parameters, double encoding. The query is kept as is.
func respell(path string, seed uint64) string {
	p, q, hasQ := strings.Cut(path, "?")
	r := rand.New(rand.NewPCG(seed, seed>>7|1))
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch n := r.IntN(16); {
		case n == 0 && unreserved(c):
			b.WriteString("%" + strings.ToUpper(string("0123456789abcdef"[c>>4])+string("0123456789abcdef"[c&15])))
		case n == 1 && c >= 'a' && c <= 'z':
			b.WriteByte(c - 32)
		case n == 2 && c == '/':
			b.WriteString([]string{"//", "/./", "/x/../", ";x=1/", "%2F", "/%2e/"}[r.IntN(6)])
		case n == 3 && unreserved(c):
			b.WriteString("%25" + strings.ToUpper(string("0123456789abcdef"[c>>4])+string("0123456789abcdef"[c&15])))
		default:
			b.WriteByte(c)
		}
	}
	if hasQ {
		return b.String() + "?" + q
	}
	return b.String()
}

// upstreamView is how a lenient upstream router reads a path: fully
// percent-decoded, lower-cased, dot segments and empty segments resolved.
func upstreamView(path string) string {
	p, _, _ := strings.Cut(path, "?")
	for range 3 {
		if d, err := url.PathUnescape(p); err == nil {
			p = d
		}
	}
	p = strings.ToLower(strings.ReplaceAll(p, "\\", "/"))
	var out []string
	for _, seg := range strings.Split(p, "/") {
		seg, _, _ = strings.Cut(seg, ";")
		switch seg {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, seg)
		}
	}
	return "/" + strings.Join(out, "/")
}

// FuzzCheckSites decides arbitrary requests of a deployment with several
// sites and accounts, keys revoked, expired, of inactive sites and lapsed
// accounts, test keys, access tokens and varied hosts, over gRPC and every
// forward-auth endpoint. Invariants:
//   - no allow for a path an upstream reads as another site's
//     /v1/sites/{site}/… than the credential's;
//   - an allow's identity headers are exactly the facts of a credential
//     that passed every check and that the request carried;
//   - a re-spelling of the path never gets a more permissive decision
//     than the path itself, nor another identity.
func FuzzCheckSites(f *testing.F) {
	w := newSitesWorld(f)
	f.Add("GET", "/v1/sites/acme-web/videos", uint8(0), uint8(0), uint8(0), uint64(1))
	f.Add("GET", "/v1/sites/other-web/videos", uint8(0), uint8(1), uint8(0), uint64(2))
	f.Add("POST", "/v1/audio/generate", uint8(2), uint8(2), uint8(0), uint64(3))
	f.Add("GET", "/health", uint8(3), uint8(3), uint8(3), uint64(4))
	f.Add("GET", "/v1/public/acme-web/player", uint8(1), uint8(4), uint8(11), uint64(5))
	f.Add("GET", "/v1/%73ites/other-web/videos", uint8(2), uint8(0), uint8(0), uint64(6))
	f.Add("GET", "/V1/SITES/other-web/videos", uint8(3), uint8(0), uint8(0), uint64(7))
	f.Add("GET", "/v1/videos", uint8(0), uint8(1), uint8(1), uint64(8))
	f.Add("GET", "/v1/sites/acme-web/videos", uint8(1), uint8(7), uint8(0), uint64(9))
	f.Add("GET", "/v1/sites/dead-web/x", uint8(2), uint8(5), uint8(5), uint64(10))
	f.Fuzz(func(t *testing.T, method, path string, via, credSel, hostSel uint8, seed uint64) {
		if len(path) > 512 || len(method) > 16 {
			return
		}
		host := fuzzHosts[int(hostSel)%len(fuzzHosts)]
		h := map[string]string{"origin": "https://acme.com"}
		cred := ""
		if int(credSel) < len(w.cred) {
			cred = w.cred[credSel]
			if credSel%2 == 0 {
				h["authorization"] = "Bearer " + cred
			} else {
				h["x-api-key"] = cred
			}
		}
		v := w.decide(t, via, method, path, host, h)
		if v.allow {
			w.checkAllow(t, v, cred, path)
		}
		alt := respell(path, seed)
		va := w.decide(t, via, method, alt, host, h) // same transport: the spelling is the only change
		if va.allow {
			w.checkAllow(t, va, cred, alt)
			if !v.allow {
				t.Fatalf("%s %q refused (%d) but its re-spelling %q allowed", method, path, v.status, alt)
			}
			if va.identity[HeaderKeyID] != v.identity[HeaderKeyID] || va.identity[HeaderSite] != v.identity[HeaderSite] {
				t.Fatalf("%q and its re-spelling %q got different identities: %v vs %v", path, alt, v.identity, va.identity)
			}
		}
	})
}

func (w *sitesWorld) checkAllow(t *testing.T, v verdict, cred, path string) {
	t.Helper()
	if id := v.identity[HeaderKeyID]; id != "" {
		f, ok := w.passing[cred]
		if !ok {
			t.Fatalf("allow with key id %s for a credential that did not pass (%q)", id, cred)
		}
		want := map[string]string{HeaderKeyID: f.Key.ID, HeaderSite: f.Site.ID, HeaderAccount: f.Account.ID,
			HeaderMode: string(f.Key.Mode), HeaderPlan: f.Account.Plan}
		for k, wv := range want {
			if v.identity[k] != wv {
				t.Fatalf("identity %s = %q, want %q (the credential's facts)", k, v.identity[k], wv)
			}
		}
	}
	view := upstreamView(path)
	if rest, ok := strings.CutPrefix(view, "/v1/sites/"); ok {
		site, _, _ := strings.Cut(rest, "/")
		if site != strings.ToLower(v.identity[HeaderSite]) || v.identity[HeaderKeyID] == "" {
			t.Fatalf("allowed %q, which an upstream serves as site %q, to identity %v", path, site, v.identity)
		}
	}
}
