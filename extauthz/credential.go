package extauthz

import (
	"crypto/subtle"
	"encoding/base64"
	"strings"

	"github.com/keygate/keygate/internal/ascii"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/tokens"
)

// Credential is what a request presented, once its headers agree on one.
type Credential struct {
	// Scheme is how it arrived: a credentialSource's scheme ("bearer",
	// "basic", "x-api-key", "bare" or "body").
	Scheme string
	// Value is the key or token itself.
	Value keystore.Secret
}

// CredentialStatus is the outcome of extraction before any lookup.
type CredentialStatus int

// The outcomes of ExtractCredential.
const (
	CredentialOK CredentialStatus = iota
	CredentialMissing
	CredentialMalformed
	CredentialAmbiguous
)

// credentialSource is one way a request carries a credential: the scheme
// the policy sees (input.credential.scheme, config.credentials), where it
// is placed, the Authorization auth-scheme that announces it (empty: the
// header's whole value), and how its value is parsed.
type credentialSource struct {
	scheme string
	// header is the (lower-case) request header it arrives in; "" for a
	// source that is not a header (the token exchange's JSON body).
	header string
	// authScheme is the Authorization auth-scheme, matched in any case.
	authScheme string
	parse      func(string) (keystore.Secret, bool)
	// bare marks the fallback of an Authorization header that matched no
	// auth-scheme: only an access token qualifies, and only when it is the
	// request's one credential header (see Authorizer.bareToken).
	bare bool
}

// credentialSources is every way keygate takes a credential. Extraction,
// the headers hidden from the policy, the headers stripped before the
// upstream, the token exchange's mint and the bare-token rule all read this
// table: a new source is one row (and, if it is new syntax, its parser).
var credentialSources = [...]credentialSource{
	{scheme: "bearer", header: "authorization", authScheme: "bearer", parse: parseToken68},
	{scheme: "basic", header: "authorization", authScheme: "basic", parse: parseBasicUser},
	{scheme: "x-api-key", header: "x-api-key", parse: parseVisible},
	{scheme: "bare", header: "authorization", parse: parseBareToken, bare: true},
	{scheme: "body", parse: parseVisible}, // POST /auth/api-key {"apiKey"}; see withBodyKey
}

// credentialHeaderNames are the distinct headers of credentialSources, in
// table order (so Authorization wins the scheme of a same-key pair).
var credentialHeaderNames = func() []string {
	var out []string
	for _, s := range credentialSources {
		if s.header != "" && !contains(out, s.header) {
			out = append(out, s.header)
		}
	}
	return out
}()

// secretHeaderNames never reach the policy input, logs or the upstream
// unless the policy keeps them: the credential headers, and the secrets a
// browser or proxy sends that keygate does not read.
var secretHeaderNames = append([]string{"cookie", "proxy-authorization"}, credentialHeaderNames...)

// secretHeader reports whether k is one of secretHeaderNames. A handful of
// comparisons, most ending at the length, cost less than hashing k, and
// every header of every request is asked about.
func secretHeader(k string) bool {
	return contains(secretHeaderNames, k)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// maxCredentialHeader bounds the credential header values keygate parses;
// a key is under 64 bytes and an access token under 1 KiB.
const maxCredentialHeader = 4096

// ExtractCredential finds the one credential in a request's headers (lower
// case names, duplicates comma-joined as Envoy sends them), by the header
// rows of credentialSources:
//
//	Authorization: Bearer <key or token>     (scheme in any case)
//	Authorization: Basic base64(<key>:)      (key as username, empty password)
//	X-API-Key: <key>
//
// The same credential sent more than once is fine; two different ones are
// ambiguous; anything unparsable is malformed. It is pure and bounded, and
// never looks a credential up. (The bare-token row needs the token format;
// Authorizer.bareToken applies it.)
func ExtractCredential(headers map[string]string) (Credential, CredentialStatus) {
	var set credentialSet
	for _, name := range credentialHeaderNames {
		v, ok := headers[name]
		if !ok {
			continue
		}
		if len(v) > maxCredentialHeader {
			return Credential{}, CredentialMalformed
		}
		for rest, more := v, true; more; {
			var part string
			part, rest, more = strings.Cut(rest, ",")
			set.add(parseHeaderValue(name, strings.Trim(part, " ")))
		}
	}
	switch {
	case set.ambiguous:
		return Credential{}, CredentialAmbiguous
	case set.malformed:
		return Credential{}, CredentialMalformed
	case set.n == 0:
		return Credential{}, CredentialMissing
	}
	return set.first, CredentialOK
}

// parseHeaderValue reads one value of a credential header by the first row
// that takes it: a row with an auth-scheme takes "scheme credentials" (RFC
// 9110 §11.4) of that scheme, a row without one the whole value.
func parseHeaderValue(header, v string) (Credential, bool) {
	scheme, rest, hasScheme := strings.Cut(v, " ")
	for i := range credentialSources {
		s := &credentialSources[i]
		if s.header != header || s.bare {
			continue
		}
		if s.authScheme == "" {
			val, ok := s.parse(v)
			return Credential{Scheme: s.scheme, Value: val}, ok
		}
		if hasScheme && ascii.EqualFold(scheme, s.authScheme) {
			val, ok := s.parse(strings.TrimLeft(rest, " "))
			return Credential{Scheme: s.scheme, Value: val}, ok
		}
	}
	return Credential{}, false
}

// credentialSet collects the credentials of a request without allocating:
// the first one, and whether any other differs from it or failed to parse.
type credentialSet struct {
	first                Credential
	n                    int
	ambiguous, malformed bool
}

func (s *credentialSet) add(c Credential, ok bool) {
	switch {
	case !ok:
		s.malformed = true
	case s.n == 0:
		s.first = c
	case !sameSecret(c.Value, s.first.Value):
		s.ambiguous = true
	}
	if ok {
		s.n++
	}
}

// parseToken68 reads a Bearer credential.
func parseToken68(v string) (keystore.Secret, bool) {
	if !token68(v) {
		return "", false
	}
	return keystore.Secret(v), true
}

// parseBasicUser reads Basic credentials whose username is the key and
// whose password is empty (curl -u key:).
func parseBasicUser(v string) (keystore.Secret, bool) {
	raw, err := base64.StdEncoding.Strict().DecodeString(v)
	if err != nil {
		return "", false
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || pass != "" || !visible(user) {
		return "", false
	}
	return keystore.Secret(user), true
}

// parseVisible reads a key sent as is.
func parseVisible(v string) (keystore.Secret, bool) {
	if !visible(v) {
		return "", false
	}
	return keystore.Secret(v), true
}

// parseBareToken reads a whole Authorization value as a candidate access
// token (one value, token68, within the token bound).
func parseBareToken(v string) (keystore.Secret, bool) {
	if len(v) > tokens.MaxLen || strings.ContainsAny(v, ", ") || !token68(v) {
		return "", false
	}
	return keystore.Secret(v), true
}

// token68 is RFC 9110's token68: the Bearer credential syntax.
func token68(s string) bool {
	if s == "" {
		return false
	}
	i := 0
	for i < len(s) && token68Chars[s[i]] {
		i++
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// token68Chars are the characters of token68 before its '=' padding: one
// table lookup a character, where the range tests and a search of
// "-._~+/" took several (every key's '_' reached the search).
var token68Chars = func() (t [256]bool) {
	for c := range t {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", byte(c)) >= 0
	}
	return t
}()

// visible accepts non-empty printable ASCII without spaces or commas.
func visible(s string) bool {
	if s == "" || len(s) > keystore.MaxKeyLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f || s[i] == ',' {
			return false
		}
	}
	return true
}

func sameSecret(a, b keystore.Secret) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// sourceOf is the row of a scheme.
func sourceOf(scheme string) *credentialSource {
	for i := range credentialSources {
		if credentialSources[i].scheme == scheme {
			return &credentialSources[i]
		}
	}
	return nil
}

// presentCredentialHeaders lists the credential headers present. A request
// may carry the same key in several (that is not ambiguous), and no copy may
// reach the upstream.
func presentCredentialHeaders(h map[string]string) []string {
	return appendCredentialHeaders(nil, h)
}

// appendCredentialHeaders is presentCredentialHeaders appended to out.
func appendCredentialHeaders(out []string, h map[string]string) []string {
	for _, k := range credentialHeaderNames {
		if _, ok := h[k]; ok {
			out = append(out, k)
		}
	}
	return out
}
