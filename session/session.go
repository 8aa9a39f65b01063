// Package session verifies the JWTs that a platform's identity provider
// issues to its dashboard users (OIDC access or ID tokens), so that keygate
// can let those users manage their own account's keys.
//
// A token is accepted only if it is a compact JWS signed with RS256, ES256
// or EdDSA by a key of the configured JWKS (chosen by the token's kid, with
// the algorithm fixed by the key's type, never by the token alone), its
// iss and aud are the configured ones, and exp (required) and nbf hold
// within a small leeway. "alg": "none", HMAC algorithms (which would let a
// public key serve as a shared secret) and JWKS entries that are not
// public signature keys of those three kinds are refused.
package session

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/keygate/keygate/internal/ascii"
)

// Errors of Verify; match them with errors.Is.
var (
	// ErrInvalid is any token that is not accepted: malformed, badly
	// signed, from an unknown key, expired, for another issuer or audience,
	// or without the account claim. Callers answer 401 without saying which.
	ErrInvalid = errors.New("session: invalid token")
	// ErrUnavailable is a token whose key could not be looked up because
	// the JWKS was unreachable and no cached copy holds it.
	ErrUnavailable = errors.New("session: key set unavailable")
)

// MaxTokenBytes bounds the token before any decoding. OIDC tokens are a
// few KiB at most.
const MaxTokenBytes = 8 << 10

// maxClaimLen bounds the subject, account and role claims.
const maxClaimLen = 256

// Role says what a session may do.
type Role string

// Roles. See RoleOf for how a role claim maps to them.
const (
	// RoleViewer may only read: list keys and usage.
	RoleViewer Role = "viewer"
	// RoleEditor may also create, revoke and rotate keys.
	RoleEditor Role = "editor"
)

// writeRoles are the role-claim values that grant RoleEditor. Every other
// value, and a missing claim, is RoleViewer: an unknown role fails closed.
var writeRoles = map[string]bool{"owner": true, "admin": true, "editor": true, "developer": true, "member": true}

// RoleOf maps a role claim to a Role. configured is whether a role claim
// is configured at all: without one every session is RoleEditor (the
// identity provider's tokens carry no roles to respect). With one, the
// claim may be a string or an array of strings; any of owner, admin,
// editor, developer or member grants RoleEditor, and anything else
// (viewer, an unknown value, no claim) is RoleViewer.
func RoleOf(configured bool, claim any) Role {
	if !configured {
		return RoleEditor
	}
	switch v := claim.(type) {
	case string:
		if writeRoles[ascii.Lower(v)] {
			return RoleEditor
		}
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok && writeRoles[ascii.Lower(s)] {
				return RoleEditor
			}
		}
	}
	return RoleViewer
}

// Session is a verified token: who (Subject) acts for which account.
type Session struct {
	Subject string
	Account string
	Role    Role
	Expires time.Time
}

// CanWrite reports whether the session may change keys.
func (s Session) CanWrite() bool { return s.Role == RoleEditor }

// Actor names the session in audit records: "session:<sub>".
func (s Session) Actor() string { return "session:" + s.Subject }

// Config is what Verifier checks. Issuer, Audience and Keys are required.
type Config struct {
	Issuer   string
	Audience string
	// AccountClaim names the claim that holds the account id (default
	// "account").
	AccountClaim string
	// RoleClaim names an optional claim that can make a session read-only
	// ("": every session may write). See RoleOf.
	RoleClaim string
	// Leeway is the clock skew allowed on exp and nbf (default 30 s).
	Leeway time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Verifier checks session tokens against a key set.
type Verifier struct {
	cfg  Config
	keys *KeySet
}

// NewVerifier checks cfg and returns a Verifier over keys.
func NewVerifier(cfg Config, keys *KeySet) (*Verifier, error) {
	switch {
	case cfg.Issuer == "":
		return nil, errors.New("session: an issuer is required")
	case cfg.Audience == "":
		return nil, errors.New("session: an audience is required")
	case keys == nil:
		return nil, errors.New("session: a key set is required")
	case cfg.Leeway < 0 || cfg.Leeway > 5*time.Minute:
		return nil, errors.New("session: leeway must be between 0 and 5m")
	}
	if cfg.AccountClaim == "" {
		cfg.AccountClaim = "account"
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Verifier{cfg: cfg, keys: keys}, nil
}

// header is the part of the JOSE header read before the library sees the
// token: the algorithm and key id decide which key may verify it.
type header struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Crit json.RawMessage `json:"crit"`
}

// Verify checks raw (the bearer token) and returns its session. Every
// refusal wraps ErrInvalid, except an unreachable key set (ErrUnavailable).
func (v *Verifier) Verify(ctx context.Context, raw string) (Session, error) {
	h, err := parseHeader(raw)
	if err != nil {
		return Session{}, err
	}
	key, err := v.keys.lookup(ctx, h.Kid)
	if err != nil {
		return Session{}, err
	}
	// The key's type fixes the one algorithm it verifies; a token naming
	// another (HS256 with the public key as secret, none, RS256 on an EC
	// key) is refused here, and the library is only ever given that pair.
	if h.Alg != key.alg.String() {
		return Session{}, fmt.Errorf("%w: algorithm %q does not match key %q", ErrInvalid, clip(h.Alg), clip(h.Kid))
	}
	tok, err := jwt.ParseString(raw,
		jwt.WithKey(key.alg, key.public),
		jwt.WithValidate(true),
		jwt.WithIssuer(v.cfg.Issuer),
		jwt.WithAudience(v.cfg.Audience),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
		jwt.WithRequiredClaim(jwt.SubjectKey),
		jwt.WithAcceptableSkew(v.cfg.Leeway),
		jwt.WithClock(jwt.ClockFunc(v.cfg.Now)),
	)
	if err != nil {
		return Session{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return v.session(tok)
}

func (v *Verifier) session(tok jwt.Token) (Session, error) {
	var s Session
	sub, _ := tok.Subject()
	s.Expires, _ = tok.Expiration()
	var account any
	if err := tok.Get(v.cfg.AccountClaim, &account); err != nil {
		return Session{}, fmt.Errorf("%w: no %q claim", ErrInvalid, v.cfg.AccountClaim)
	}
	acc, ok := account.(string)
	if !ok || !boundedText(acc) || !boundedText(sub) {
		return Session{}, fmt.Errorf("%w: subject or %q claim is not a short string", ErrInvalid, v.cfg.AccountClaim)
	}
	s.Subject, s.Account = sub, acc
	var role any
	if v.cfg.RoleClaim != "" {
		_ = tok.Get(v.cfg.RoleClaim, &role) // absent: viewer
	}
	s.Role = RoleOf(v.cfg.RoleClaim != "", role)
	return s, nil
}

// parseHeader bounds the token, insists on the compact serialization (three
// segments, a signature present) and reads its header.
func parseHeader(raw string) (header, error) {
	var h header
	if len(raw) == 0 || len(raw) > MaxTokenBytes {
		return h, fmt.Errorf("%w: token length %d", ErrInvalid, len(raw))
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return h, fmt.Errorf("%w: not a signed compact JWT", ErrInvalid)
	}
	js, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return h, fmt.Errorf("%w: header is not base64url", ErrInvalid)
	}
	if err := json.Unmarshal(js, &h); err != nil {
		return h, fmt.Errorf("%w: header is not a JSON object", ErrInvalid)
	}
	switch {
	case h.Crit != nil:
		// No critical extension is understood, so none may be required.
		return h, fmt.Errorf("%w: crit header", ErrInvalid)
	case h.Kid == "" || len(h.Kid) > maxClaimLen:
		return h, fmt.Errorf("%w: no usable kid", ErrInvalid)
	}
	return h, nil
}

func boundedText(s string) bool {
	if s == "" || len(s) > maxClaimLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// clip keeps an attacker-chosen value short enough for an error message.
func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}
