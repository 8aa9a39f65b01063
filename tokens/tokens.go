// Package tokens mints and verifies keygate's short-lived access tokens and
// generates refresh tokens: the cryptography and the wire formats of the
// token exchange, nothing else.
//
// An access token is "<prefix>_at_<payload>.<signature>", both parts
// unpadded base64url. The payload names the key it was minted from (its id
// and mode), when it was issued and when it expires, and the id of the
// signing key (kid). The signature is HMAC-SHA256 over everything before
// the dot, under the signing key named by kid.
//
// HMAC-SHA256 rather than Ed25519: only keygate replicas verify tokens, and
// they all read the same store, so a public key buys nothing; and an HMAC
// costs about a microsecond where an Ed25519 verification costs ~50 µs,
// which would make a token Check several times dearer than a key Check.
//
// tokens imports no other package of the project.
package tokens

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Errors Verify returns; match them with errors.Is.
var (
	// ErrInvalid covers every token that is not one keygate signed with a
	// signing key it still accepts: malformed, tampered, unknown kid.
	ErrInvalid = errors.New("tokens: invalid token")
	// ErrExpired is a genuine token past its expiry.
	ErrExpired = errors.New("tokens: token expired")
	// ErrNoSigningKey means the keyring holds no key that may sign yet.
	ErrNoSigningKey = errors.New("tokens: no active signing key")
)

const (
	version = 1
	// MaxLen bounds an access token; longer credentials are refused before
	// any decoding.
	MaxLen = 256
	// maxID bounds the key id and kid carried in a payload.
	maxID   = 64
	sigLen  = sha256.Size
	sigText = 43 // base64url (unpadded) length of a 32-byte signature
	// refreshBytes of randomness in a refresh token: 256 bits.
	refreshBytes = 32
	refreshText  = 43
)

var b64 = base64.RawURLEncoding.Strict()

// Format names the token prefixes of one deployment: the key prefix
// followed by "_at_" (access) or "_rt_" (refresh), so tokens are told from
// keys ("<prefix>_live_…") by their first characters.
type Format struct {
	access, refresh string
}

// NewFormat derives the token prefixes from a key prefix (already
// validated by keystore.NewFormat).
func NewFormat(keyPrefix string) Format {
	return Format{access: keyPrefix + "_at_", refresh: keyPrefix + "_rt_"}
}

// Looks reports whether raw claims to be an access token of this format.
func (f Format) Looks(raw string) bool { return strings.HasPrefix(raw, f.access) }

// LooksRefresh reports whether raw has the exact shape of a refresh token:
// prefix, length and alphabet. Anything else is refused without a lookup.
func (f Format) LooksRefresh(raw string) bool {
	body, ok := strings.CutPrefix(raw, f.refresh)
	if !ok || len(body) != refreshText {
		return false
	}
	_, err := b64.DecodeString(body)
	return err == nil
}

// NewRefresh returns a fresh random refresh token.
func (f Format) NewRefresh() (string, error) {
	var b [refreshBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("tokens: refresh token: %w", err)
	}
	return f.refresh + b64.EncodeToString(b[:]), nil
}

// Claims are what an access token asserts.
type Claims struct {
	KeyID string
	// Mode is the key's mode, "live" or "test".
	Mode      string
	IssuedAt  time.Time
	ExpiresAt time.Time
	// KID names the signing key.
	KID string
}

// SigningKey is one HMAC secret with the time from which it may sign.
// Every key a keyring holds verifies; the newest one past NotBefore signs.
type SigningKey struct {
	ID        string
	Secret    []byte
	NotBefore time.Time
}

// Keyring holds the signing keys every replica shares. Set swaps the whole
// set atomically, so Verify never locks.
type Keyring struct {
	format Format
	keys   atomic.Pointer[keyset]
	// missed is signalled (without blocking) when a token names a kid the
	// keyring does not hold, so the owner can reload from the store early.
	missed chan struct{}
}

type keyset struct {
	byID map[string]*signer
	// sorted newest NotBefore first
	order []*signer
}

type signer struct {
	SigningKey
	pool sync.Pool // of hash.Hash keyed with Secret; Reset restores the key
}

func (s *signer) mac(msg string) [sigLen]byte {
	h, _ := s.pool.Get().(hash.Hash)
	if h == nil {
		h = hmac.New(sha256.New, s.Secret)
	}
	h.Reset()
	h.Write([]byte(msg))
	var out [sigLen]byte
	h.Sum(out[:0])
	s.pool.Put(h)
	return out
}

// NewKeyring returns an empty keyring for tokens of format f.
func NewKeyring(f Format) *Keyring {
	k := &Keyring{format: f, missed: make(chan struct{}, 1)}
	k.keys.Store(&keyset{byID: map[string]*signer{}})
	return k
}

// Format is the keyring's token format.
func (k *Keyring) Format() Format { return k.format }

// Looks reports whether raw claims to be an access token.
func (k *Keyring) Looks(raw string) bool { return k.format.Looks(raw) }

// Missed delivers a signal after a token named an unknown kid.
func (k *Keyring) Missed() <-chan struct{} { return k.missed }

// Set replaces the signing keys. Keys with an empty id or a secret shorter
// than 32 bytes are refused.
func (k *Keyring) Set(keys []SigningKey) error {
	ks := &keyset{byID: make(map[string]*signer, len(keys))}
	for _, sk := range keys {
		if sk.ID == "" || len(sk.ID) > maxID || len(sk.Secret) < 32 {
			return fmt.Errorf("tokens: signing key %q: want an id of 1 to %d bytes and a secret of at least 32 bytes", sk.ID, maxID)
		}
		s := &signer{SigningKey: sk}
		ks.byID[sk.ID] = s
		ks.order = append(ks.order, s)
	}
	// Newest first; insertion sort, the ring holds a handful of keys.
	for i := 1; i < len(ks.order); i++ {
		for j := i; j > 0 && ks.order[j].NotBefore.After(ks.order[j-1].NotBefore); j-- {
			ks.order[j], ks.order[j-1] = ks.order[j-1], ks.order[j]
		}
	}
	k.keys.Store(ks)
	return nil
}

// IDs lists the kids the keyring accepts, newest first.
func (k *Keyring) IDs() []string {
	ks := k.keys.Load()
	out := make([]string, len(ks.order))
	for i, s := range ks.order {
		out[i] = s.ID
	}
	return out
}

// Mint signs an access token for a key with the newest signing key whose
// NotBefore has passed. It fills in KID and IssuedAt.
func (k *Keyring) Mint(keyID, mode string, now time.Time, ttl time.Duration) (string, Claims, error) {
	if keyID == "" || len(keyID) > maxID || (mode != "live" && mode != "test") {
		return "", Claims{}, fmt.Errorf("tokens: mint: bad key id or mode %q", mode)
	}
	var s *signer
	for _, c := range k.keys.Load().order {
		if !now.Before(c.NotBefore) {
			s = c
			break
		}
	}
	if s == nil {
		return "", Claims{}, ErrNoSigningKey
	}
	c := Claims{KeyID: keyID, Mode: mode, IssuedAt: now.Truncate(time.Millisecond), ExpiresAt: now.Add(ttl).Truncate(time.Millisecond), KID: s.ID}
	payload := make([]byte, 0, 2+16+2+len(s.ID)+len(keyID))
	payload = append(payload, version, modeByte(mode))
	payload = binary.BigEndian.AppendUint64(payload, uint64(c.IssuedAt.UnixMilli()))
	payload = binary.BigEndian.AppendUint64(payload, uint64(c.ExpiresAt.UnixMilli()))
	payload = append(payload, byte(len(s.ID)))
	payload = append(payload, s.ID...)
	payload = append(payload, byte(len(keyID)))
	payload = append(payload, keyID...)
	signed := k.format.access + b64.EncodeToString(payload)
	sig := s.mac(signed)
	return signed + "." + b64.EncodeToString(sig[:]), c, nil
}

func modeByte(mode string) byte {
	if mode == "test" {
		return 't'
	}
	return 'l'
}

// Verify checks an access token offline: shape, kid, signature (constant
// time), then expiry. Expiry is reported only for a genuine token, so a
// forger learns nothing from it.
func (k *Keyring) Verify(raw string, now time.Time) (Claims, error) {
	if len(raw) > MaxLen || !k.format.Looks(raw) {
		return Claims{}, ErrInvalid
	}
	dot := strings.LastIndexByte(raw, '.')
	if dot < 0 || len(raw)-dot-1 != sigText {
		return Claims{}, ErrInvalid
	}
	var payload [MaxLen]byte
	n, err := b64.Decode(payload[:], []byte(raw[len(k.format.access):dot]))
	if err != nil {
		return Claims{}, ErrInvalid
	}
	var sig [sigLen + 2]byte
	if m, err := b64.Decode(sig[:], []byte(raw[dot+1:])); err != nil || m != sigLen {
		return Claims{}, ErrInvalid
	}
	c, ok := parsePayload(payload[:n])
	if !ok {
		return Claims{}, ErrInvalid
	}
	s := k.keys.Load().byID[c.KID]
	if s == nil {
		select {
		case k.missed <- struct{}{}:
		default:
		}
		return Claims{}, ErrInvalid
	}
	want := s.mac(raw[:dot])
	if !hmac.Equal(want[:], sig[:sigLen]) {
		return Claims{}, ErrInvalid
	}
	if !now.Before(c.ExpiresAt) {
		return c, ErrExpired
	}
	return c, nil
}

// parsePayload reads the fixed layout Mint writes:
// version, mode, issued (ms), expires (ms), len+kid, len+key id.
func parsePayload(p []byte) (Claims, bool) {
	if len(p) < 2+16+2 || p[0] != version {
		return Claims{}, false
	}
	var c Claims
	switch p[1] {
	case 'l':
		c.Mode = "live"
	case 't':
		c.Mode = "test"
	default:
		return Claims{}, false
	}
	c.IssuedAt = time.UnixMilli(int64(binary.BigEndian.Uint64(p[2:]))).UTC()
	c.ExpiresAt = time.UnixMilli(int64(binary.BigEndian.Uint64(p[10:]))).UTC()
	rest := p[18:]
	kid, rest, ok := lengthPrefixed(rest)
	if !ok {
		return Claims{}, false
	}
	keyID, rest, ok := lengthPrefixed(rest)
	if !ok || len(rest) != 0 {
		return Claims{}, false
	}
	c.KID, c.KeyID = string(kid), string(keyID)
	return c, true
}

func lengthPrefixed(p []byte) (field, rest []byte, ok bool) {
	if len(p) == 0 {
		return nil, nil, false
	}
	n := int(p[0])
	if n == 0 || n > maxID || len(p) < 1+n {
		return nil, nil, false
	}
	return p[1 : 1+n], p[1+n:], true
}
