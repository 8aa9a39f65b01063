package extauthz

import (
	"bytes"
	"context"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/encoding/prototext"

	"github.com/keygate/keygate/internal/policytest"
	"github.com/keygate/keygate/policies"
)

func TestCanonicalPath(t *testing.T) {
	tests := []struct {
		path string
		ok   bool
	}{
		{"/", true},
		{"/health", true},
		{"/v1/sites/acme/videos", true},
		{"/v1/sites/acme/videos/", true},
		{"/v1/videos/%20x", true},
		{"/v1/a-b_c.d~e", true},
		{"/v1/..foo", true},
		{"", false},
		{"v1/videos", false},
		{"/v1/sites/acme/../other", false},
		{"/v1/sites/acme/..", false},
		{"/v1/./videos", false},
		{"/.", false},
		{"/..", false},
		{"//v1/videos", false},
		{"/v1//videos", false},
		{"/v1/videos//", false},
		{"/v1/sites/acme%2F..%2Fother", false},
		{"/v1/sites/acme%2f..%2fother", false},
		{"/v1/sites/%2e%2e/other", false},
		{"/v1/sites/%2E%2E/other", false},
		{"/v1/sites/acme%5c..%5cother", false},
		{"/v1/%00", false},
		{"/v1/%25", false},
		{"/v1/%3b", false},
		{"/v1/%23", false},
		{"/v1/%2", false},
		{"/v1/%", false},
		{"/v1/sites/acme;x=1/videos", false},
		{"/v1/sites/acme#frag", false},
		{"/v1\\sites", false},
		{"/v1/\x00", false},
		{"/v1/\t", false},
		{"/v1/ videos", false},
		{"/v1/\x7f", false},
		{"/v1/\x80", false},
		{"/v1/é", false},
		{"/" + strings.Repeat("a", 9<<10), false},
	}
	for _, tt := range tests {
		if got := CanonicalPath(tt.path); got != tt.ok {
			t.Errorf("CanonicalPath(%q) = %t, want %t", tt.path, got, tt.ok)
		}
	}
}

func TestRequestOrigin(t *testing.T) {
	tests := []struct {
		name    string
		headers map[string]string
		want    *policies.Origin
	}{
		{"none", nil, nil},
		{"https origin", map[string]string{"origin": "https://App.Example.com"},
			&policies.Origin{Scheme: "https", Host: "app.example.com", Port: "443", DefaultPort: true}},
		{"http origin with port", map[string]string{"origin": "http://localhost:3000"},
			&policies.Origin{Scheme: "http", Host: "localhost", Port: "3000"}},
		{"explicit default port", map[string]string{"origin": "https://example.com:443"},
			&policies.Origin{Scheme: "https", Host: "example.com", Port: "443", DefaultPort: true}},
		{"referer fallback", map[string]string{"referer": "https://example.com/page?x=1"},
			&policies.Origin{Scheme: "https", Host: "example.com", Port: "443", DefaultPort: true}},
		{"empty origin uses referer", map[string]string{"origin": "", "referer": "https://example.com/"},
			&policies.Origin{Scheme: "https", Host: "example.com", Port: "443", DefaultPort: true}},
		{"origin wins over referer", map[string]string{"origin": "https://a.com", "referer": "https://b.com/"},
			&policies.Origin{Scheme: "https", Host: "a.com", Port: "443", DefaultPort: true}},
		{"opaque null origin", map[string]string{"origin": "null", "referer": "https://b.com/"}, nil},
		{"two origins joined", map[string]string{"origin": "https://a.com,https://b.com"}, nil},
		{"userinfo", map[string]string{"origin": "https://user@a.com"}, nil},
		{"no host", map[string]string{"origin": "https://"}, nil},
		{"not a URL", map[string]string{"origin": "a.com"}, nil},
		{"opaque", map[string]string{"origin": "mailto:x@a.com"}, nil},
		{"too long", map[string]string{"origin": "https://" + strings.Repeat("a", 3000) + ".com"}, nil},
		{"control byte", map[string]string{"origin": "https://a.com\x00.evil.com"}, nil},
		{"Kelvin sign is not k", map[string]string{"origin": "https://\u212A.example.com"}, nil},
		{"percent-encoded Kelvin sign", map[string]string{"origin": "https://%E2%84%AA.example.com"}, nil},
		{"unknown scheme keeps its port", map[string]string{"origin": "ftp://a.com"},
			&policies.Origin{Scheme: "ftp", Host: "a.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, requestOrigin(tt.headers)); diff != "" {
				t.Fatalf("requestOrigin (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFromCheckRequest(t *testing.T) {
	tests := []struct {
		name string
		http *authv3.AttributeContext_HttpRequest
		want Request
	}{
		{
			name: "headers",
			http: &authv3.AttributeContext_HttpRequest{Method: "GET", Host: "api.example.com", Path: "/v1/x?y=1",
				Headers: map[string]string{"authorization": "Bearer k", "X-Mixed-Case": "v"}},
			want: Request{Method: "GET", Host: "api.example.com", Path: "/v1/x?y=1",
				Headers: map[string]string{"authorization": "Bearer k", "x-mixed-case": "v"}},
		},
		{
			name: "header_map with raw values (encode_raw_headers)",
			http: &authv3.AttributeContext_HttpRequest{HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: ":authority", RawValue: []byte("api.example.com")},
				{Key: ":method", RawValue: []byte("POST")},
				{Key: ":path", RawValue: []byte("/v1/y")},
				{Key: "x-api-key", RawValue: []byte("k\xff")},
				{Key: "accept", Value: "text/plain"},
			}}},
			want: Request{Method: "POST", Host: "api.example.com", Path: "/v1/y", Headers: map[string]string{
				":authority": "api.example.com", ":method": "POST", ":path": "/v1/y", "x-api-key": "k\xff", "accept": "text/plain"}},
		},
		{
			name: "both: a second credential in header_map is not lost",
			http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/", Headers: map[string]string{"x-api-key": "a"},
				HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "x-api-key", RawValue: []byte("b")}, {Key: "X-Api-Key", RawValue: []byte("a")}}}},
			want: Request{Method: "GET", Path: "/", Headers: map[string]string{"x-api-key": "a,b,a"}},
		},
		{
			name: "repeated header_map entries are comma-joined",
			http: &authv3.AttributeContext_HttpRequest{HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: "authorization", RawValue: []byte("Bearer a")}, {Key: "authorization", RawValue: []byte("Bearer b")}}}},
			want: Request{Headers: map[string]string{"authorization": "Bearer a,Bearer b"}},
		},
		{
			name: "only ASCII letters are lower-cased: a Kelvin sign is not a k",
			http: &authv3.AttributeContext_HttpRequest{Headers: map[string]string{"X-API-\u212Aey": "a"},
				HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "X-Api-\u212Aey", RawValue: []byte("b")}}}},
			want: Request{Headers: map[string]string{"x-api-\u212Aey": "a,b"}},
		},
		{name: "empty", http: nil, want: Request{Headers: map[string]string{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: tt.http}}}
			if diff := cmp.Diff(tt.want, FromCheckRequest(req), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Fatalf("FromCheckRequest (-want +got):\n%s", diff)
			}
		})
	}
	if diff := cmp.Diff(Request{Headers: map[string]string{}}, FromCheckRequest(nil), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Fatalf("FromCheckRequest(nil) (-want +got):\n%s", diff)
	}
}

func TestPolicyRequestDropsCredentialsAndBoundsHeaders(t *testing.T) {
	h := map[string]string{"authorization": "Bearer k", "x-api-key": "k", "cookie": "s=1", "proxy-authorization": "p",
		":path": "/x", "big": strings.Repeat("v", maxInputHeaderSize+1), "accept": "*/*"}
	for i := range 300 {
		h["x-filler-"+strings.Repeat("f", i)] = "v"
	}
	got := policyRequest(Request{Method: "GET", Host: "API.Example.com:8443", Path: "/v1/x?a=b", Headers: h})
	for _, k := range []string{"authorization", "x-api-key", "cookie", "proxy-authorization", ":path", "big"} {
		if _, ok := got.Headers[k]; ok {
			t.Errorf("header %q reached the policy input", k)
		}
	}
	if len(got.Headers) > maxInputHeaders {
		t.Errorf("%d headers in the input, at most %d", len(got.Headers), maxInputHeaders)
	}
	if got.Host != "api.example.com" || got.Path != "/v1/x" || got.Query != "a=b" || !got.PathOK {
		t.Errorf("request = %+v", got)
	}
}

// TestScanRequestFindsEveryForgery: a forged identity header is found
// however many headers come with it, past the policy input's bound too.
func TestScanRequestFindsEveryForgery(t *testing.T) {
	h := map[string]string{"x-keygate-plan": "enterprise", "x-keygate-site": "other"}
	for i := range maxInputHeaders + 50 {
		h["x-filler-"+strconv.Itoa(i)] = "v"
	}
	var forged []string
	for range 20 { // map order is random: a scan that stopped early would miss one soon
		req, found, _ := scanRequest(Request{Path: "/", Headers: h}, nil, false, true)
		slices.Sort(found)
		if !slices.Equal(found, []string{"x-keygate-plan", "x-keygate-site"}) {
			t.Fatalf("forged = %v", found)
		}
		if len(req.Headers) != maxInputHeaders {
			t.Fatalf("%d headers reached the policy input, bound is %d", len(req.Headers), maxInputHeaders)
		}
		forged = found
	}
	got := clientIdentityHeaders(forged, map[string]string{"x-keygate-site": "mine"})
	if !slices.Equal(got, []string{"x-keygate-plan"}) {
		t.Errorf("removed %v, want the forged plan only (keygate sets the site)", got)
	}
}

// TestHasUpper: the eight-bytes-at-a-time check agrees with a byte-by-byte
// one for every byte value at every position of names up to 17 bytes.
func TestHasUpper(t *testing.T) {
	naive := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if s[i] >= 'A' && s[i] <= 'Z' {
				return true
			}
		}
		return false
	}
	for n := 1; n <= 17; n++ {
		for pos := range n {
			for c := range 256 {
				for _, fill := range []byte{'a', 0xff, '@', '['} {
					b := bytes.Repeat([]byte{fill}, n)
					b[pos] = byte(c)
					if s := string(b); hasUpper(s) != naive(s) {
						t.Fatalf("hasUpper(%q) = %v", s, hasUpper(s))
					}
				}
			}
		}
	}
}

// TestCheckUpperCaseNames: Check reads Envoy's header map without first
// checking its names (scanRequest does); a map with upper-case names is
// decided as its lower-cased translation (FromCheckRequest) is: repeated
// names joined, forged identity headers removed, credentials found.
func TestCheckUpperCaseNames(t *testing.T) {
	f := newFixture(t)
	live, test := f.live.Reveal(), f.test.Reveal()
	ulid := regexp.MustCompile(`[0-9A-HJKMNP-TV-Z]{26}`)
	for i, h := range []map[string]string{
		{"Authorization": "Bearer " + live},
		{"X-Api-Key": live, "X-Keygate-Account": "evil", "accept": "application/json"},
		{"authorization": "Bearer " + live, "Authorization": "Bearer " + test},
		{"X-KEYGATE-MODE": "test", "x-api-key": test},
	} {
		upper := envoyCheckRequest("GET", "/v1/videos", h)
		lower := envoyCheckRequest("GET", "/v1/videos", FromCheckRequest(upper).Headers)
		var got [2]string
		for j, req := range []*authv3.CheckRequest{upper, lower} {
			resp, _ := f.server.Check(context.Background(), req)
			got[j] = ulid.ReplaceAllString(prototext.Format(resp), "DECISION_ID")
		}
		if got[0] != got[1] { // keys appear in neither: the upstream never sees them
			t.Errorf("headers %d (names %v):\n got %s\nwant %s", i, slices.Collect(maps.Keys(h)), got[0], got[1])
		}
	}
}

// TestDropUnreadHeaders: with DropUnreadHeaders, a policy that provably
// never reads headers gets none in its input, and decides alike; one that
// reads them (deny bodies echoing x-request-id) still gets them, and off
// (the default) every policy does.
func TestDropUnreadHeaders(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.server.Authorizer
	r := Request{Method: "GET", Host: "api.example.com", Path: "/v1/videos",
		Headers: map[string]string{"x-api-key": f.live.Reveal(), "x-custom": "v", "x-request-id": "req-1"}}
	missing := Request{Method: "GET", Host: "api.example.com", Path: "/v1/videos", Headers: map[string]string{"x-request-id": "req-1"}}

	kept := a.Authorize(ctx, r)
	if kept.Input.Request.Headers["x-custom"] != "v" {
		t.Fatalf("default: input headers %v, want x-custom", kept.Input.Request.Headers)
	}
	a.DropUnreadHeaders = true
	dropped := a.Authorize(ctx, r)
	if dropped.Input.Request.Headers != nil {
		t.Fatalf("built-in policy, headers dropped: input headers %v, want none", dropped.Input.Request.Headers)
	}
	if !cmp.Equal(dropped.Decision, kept.Decision) || !cmp.Equal(dropped.Upstream, kept.Upstream, cmpopts.IgnoreMapEntries(func(k, _ string) bool { return k == HeaderDecisionID })) {
		t.Fatalf("decided differently without headers:\n%+v\n%+v", dropped.Decision, kept.Decision)
	}

	a.Policy = policies.NewEngine(policytest.Compile(t, policies.BuiltIn, func(c map[string]any) { c["body_shape"] = "error_object" }))
	if res := a.Authorize(ctx, missing); res.Input.Request.Headers["x-request-id"] != "req-1" || !strings.Contains(string(res.Decision.Body), "req-1") {
		t.Fatalf("a policy reading x-request-id: input headers %v, body %s", res.Input.Request.Headers, res.Decision.Body)
	}
}
