package extauthz

import (
	"net/netip"
	"strings"
	"unicode/utf8"

	"github.com/keygate/keygate/internal/ascii"
)

// Canonical is the one spelling of a request's path and host that every
// part of a decision reads (route matching, site scoping, host modes, costs,
// metering). Canonicalize computes it once per request, the same way for
// Envoy's gRPC Check and for every forward-auth endpoint.
//
// The principle: any spelling an upstream router may treat as the same
// resource gets the same decision as the canonical spelling, or is refused
// (400 INVALID_PATH). The rules, per case:
//
//   - "%XX" of an unreserved character (A-Z a-z 0-9 - . _ ~) is decoded:
//     "/v1/%73ites" is "/v1/sites". Upstream routers decode these.
//   - "%XX" of '/', '\', ';', '?', '#', '%' (double encoding, "%2573"), a
//     control byte or DEL is refused, as is a malformed escape.
//   - Escaped UTF-8 of a letter that Unicode case mapping turns into ASCII
//     letters is refused: "/v1/%C5%BFites" (U+017F LONG S) is "/v1/sites" to
//     an upstream that decodes and compares case-insensitively (Java's
//     equalsIgnoreCase, a JavaScript /iu pattern). The letters are U+0130,
//     U+0131, U+017F and U+212A (simple case mapping) and U+00DF, U+1E9E and
//     U+FB00–U+FB06 (full case mapping and folding: "ß" to "SS", "ẞ" to
//     "ss", "ﬅ" to "ST"). So are escaped bytes that UTF-8 never uses
//     (0xC0, 0xC1, 0xF5–0xFF): a lenient decoder reads "%C1%B3" as 's'.
//   - Any other escape (space, ':', '@', other UTF-8, …) is kept, with upper
//     case hex, since no route prefix can contain it.
//   - Dot segments ("/./", "/../", also spelled "%2e"), empty segments
//     ("//"), ';' parameters, '#', '\', control, space and non-ASCII bytes
//     are refused. One trailing '/' is kept as sent.
//   - Letter case is kept: routes are case-sensitive. A path that would
//     match a route prefix only if case were ignored ("/V1/SITES/x") is
//     refused by the policy's invalid_path rule (policies/default/authz.rego),
//     because case-insensitive upstreams would serve it as that route.
//   - Host: lower-cased, port dropped, one trailing dot dropped
//     ("API.example.com.:443" is "api.example.com"); anything that is not a
//     DNS name or an IP literal is refused. An absent host stays empty.
type Canonical struct {
	Path  string
	Query string
	Host  string
	// OK is false when the path or host cannot be canonicalised safely;
	// Path and Host then hold what was sent, for logs only.
	OK bool
}

// Canonicalize returns the canonical form of r's request target and host.
func Canonicalize(r Request) Canonical {
	path, query, _ := strings.Cut(r.Path, "?")
	cp, pathOK := canonicalPath(path)
	host, hostOK := canonicalHost(r.Host)
	if !hostOK {
		host = ascii.Lower(r.Host)
	}
	if !pathOK || !hostOK {
		return Canonical{Path: path, Query: query, Host: host}
	}
	return Canonical{Path: cp, Query: query, Host: host, OK: true}
}

// CanonicalPath reports whether p (a path without query) can be
// canonicalised; see Canonical for the rules.
func CanonicalPath(p string) bool {
	_, ok := canonicalPath(p)
	return ok
}

func canonicalPath(p string) (string, bool) {
	if p == "" || p[0] != '/' || len(p) > maxPath {
		return "", false
	}
	// The common case: nothing to decode, nothing to refuse but segments.
	var b *strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c < 0x21 || c >= 0x7f || c == '\\' || c == ';' || c == '#':
			return "", false
		case c != '%':
			if b != nil {
				b.WriteByte(c)
			}
			continue
		}
		if i+2 >= len(p) {
			return "", false
		}
		hi, ok1 := unhex(p[i+1])
		lo, ok2 := unhex(p[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		d := hi<<4 | lo
		if b == nil {
			b = &strings.Builder{}
			b.Grow(len(p))
			b.WriteString(p[:i])
		}
		switch {
		case unreserved(d):
			b.WriteByte(d)
		case d < 0x20 || d == 0x7f || strings.IndexByte(`/\;?#%`, d) >= 0:
			return "", false
		case d == 0xc0 || d == 0xc1 || d >= 0xf5:
			// Never in UTF-8: a lenient decoder reads the overlong
			// "%C1%B3" as 's'.
			return "", false
		case d >= 0xc2 && foldsToASCII(escapedRune(p[i:])):
			return "", false
		default:
			const hexUpper = "0123456789ABCDEF"
			b.WriteByte('%')
			b.WriteByte(hexUpper[d>>4])
			b.WriteByte(hexUpper[d&0xf])
		}
		i += 2
	}
	if b != nil {
		p = b.String()
	}
	if p == "/" {
		return p, true
	}
	// One trailing slash ("/v1/x/") is fine; every other segment must be a
	// real name.
	for rest, more := strings.TrimSuffix(p[1:], "/"), true; more; {
		var seg string
		seg, rest, more = strings.Cut(rest, "/")
		if seg == "" || seg == "." || seg == ".." {
			return "", false
		}
	}
	return p, true
}

// escapedRune decodes the rune whose UTF-8 bytes are spelled as "%XX"
// escapes at the start of s; utf8.RuneError when they are not one.
func escapedRune(s string) rune {
	var buf [utf8.UTFMax]byte
	n := 0
	for ; n < len(buf) && len(s) >= 3 && s[0] == '%'; n++ {
		hi, ok1 := unhex(s[1])
		lo, ok2 := unhex(s[2])
		if !ok1 || !ok2 {
			break
		}
		buf[n] = hi<<4 | lo
		s = s[3:]
	}
	r, _ := utf8.DecodeRune(buf[:n])
	return r
}

// foldsToASCII reports whether Unicode case mapping turns r, a non-ASCII
// letter, into ASCII letters (TestFoldsToASCII checks the list against
// Go's Unicode tables).
func foldsToASCII(r rune) bool {
	switch r {
	case '\u0130', '\u0131', '\u017F', '\u212A', // simple: İ→i, ı→I, ſ→S, K→k
		'\u00DF', '\u1E9E', '\uFB00', '\uFB01', '\uFB02', '\uFB03', '\uFB04', '\uFB05', '\uFB06': // full: ß→SS, ẞ→ss (folding), ﬀ→FF … ﬆ→ST
		return true
	}
	return false
}

func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// maxHost bounds a Host value (a DNS name is at most 253 bytes).
const maxHost = 255 + len("[]:65535")

// canonicalHost lower-cases h, drops its port and one trailing dot, and
// refuses what is neither a DNS name nor an IP literal.
func canonicalHost(h string) (string, bool) {
	if h == "" {
		return "", true
	}
	if len(h) > maxHost {
		return "", false
	}
	h = ascii.Lower(h)
	if h[0] == '[' {
		end := strings.IndexByte(h, ']')
		if end < 0 || !validPort(h[end+1:]) {
			return "", false
		}
		a, err := netip.ParseAddr(h[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", false
		}
		return a.String(), true
	}
	if i := strings.IndexByte(h, ':'); i >= 0 {
		if !validPort(h[i:]) {
			return "", false
		}
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return "", false
	}
	for rest, more := h, true; more; {
		var label string
		label, rest, more = strings.Cut(rest, ".")
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", false
			}
		}
	}
	return h, true
}

// validPort accepts "" or ":" followed by 1 to 5 digits.
func validPort(s string) bool {
	if s == "" {
		return true
	}
	if s[0] != ':' || len(s) < 2 || len(s) > 6 {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
