package extauthz

import (
	"crypto/subtle"
	"encoding/base64"
	"strings"

	"github.com/keygate/keygate/keystore"
)

// Credential is what a request presented, once its headers agree on one.
type Credential struct {
	// Scheme is how it arrived: "bearer", "basic" or "x-api-key".
	Scheme string
	// Value is the key or token itself.
	Value keystore.Secret
}

// credentialStatus is the outcome of extraction before any lookup.
type credentialStatus int

const (
	credOK credentialStatus = iota
	credMissing
	credMalformed
	credAmbiguous
)

// maxCredentialHeader bounds the Authorization and X-API-Key values keygate
// parses; a key is under 64 bytes and an access token under 1 KiB.
const maxCredentialHeader = 4096

// ExtractCredential finds the one credential in a request's headers (lower
// case names, duplicates comma-joined as Envoy sends them):
//
//	Authorization: Bearer <key or token>     (scheme in any case)
//	Authorization: Basic base64(<key>:)      (key as username, empty password)
//	X-API-Key: <key>
//
// The same credential sent more than once is fine; two different ones are
// ambiguous; anything unparsable is malformed. It is pure and bounded, and
// never looks a credential up.
func ExtractCredential(headers map[string]string) (Credential, credentialStatus) {
	var set credentialSet
	if v, ok := headers["authorization"]; ok {
		if len(v) > maxCredentialHeader {
			return Credential{}, credMalformed
		}
		for rest, more := v, true; more; {
			var part string
			part, rest, more = strings.Cut(rest, ",")
			c, ok := parseAuthorization(strings.Trim(part, " "))
			set.add(c, ok)
		}
	}
	if v, ok := headers["x-api-key"]; ok {
		if len(v) > maxCredentialHeader {
			return Credential{}, credMalformed
		}
		for rest, more := v, true; more; {
			var part string
			part, rest, more = strings.Cut(rest, ",")
			part = strings.Trim(part, " ")
			set.add(Credential{Scheme: "x-api-key", Value: keystore.Secret(part)}, visible(part))
		}
	}
	switch {
	case set.ambiguous:
		return Credential{}, credAmbiguous
	case set.malformed:
		return Credential{}, credMalformed
	case set.n == 0:
		return Credential{}, credMissing
	}
	return set.first, credOK
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

// parseAuthorization reads one "scheme credentials" value (RFC 9110 §11.4).
func parseAuthorization(v string) (Credential, bool) {
	scheme, rest, ok := strings.Cut(v, " ")
	if !ok {
		return Credential{}, false
	}
	rest = strings.TrimLeft(rest, " ")
	switch {
	case strings.EqualFold(scheme, "bearer"):
		if !token68(rest) {
			return Credential{}, false
		}
		return Credential{Scheme: "bearer", Value: keystore.Secret(rest)}, true
	case strings.EqualFold(scheme, "basic"):
		raw, err := base64.StdEncoding.Strict().DecodeString(rest)
		if err != nil {
			return Credential{}, false
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		// The key is the username and the password is empty (curl -u key:).
		if !ok || pass != "" || !visible(user) {
			return Credential{}, false
		}
		return Credential{Scheme: "basic", Value: keystore.Secret(user)}, true
	}
	return Credential{}, false
}

// token68 is RFC 9110's token68: the Bearer credential syntax.
func token68(s string) bool {
	if s == "" {
		return false
	}
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/", c) >= 0) {
			break
		}
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
