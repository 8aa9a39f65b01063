// Package keystore owns keygate's facts about API keys: the key format, the
// digests keys are stored under, the SQL stores that hold accounts, sites and
// keys, the change log every write appends to, and the ristretto cache that
// keeps key facts off the store on the hot path.
//
// keystore imports no other package of the project.
package keystore

import (
	"crypto/rand"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math/big"
	"strings"
)

// Mode is the mode a key is fixed to for its whole life.
type Mode string

// The two modes. Test keys are a free sandbox; upstreams are told the mode.
const (
	ModeLive Mode = "live"
	ModeTest Mode = "test"
)

// ParseMode accepts exactly "live" or "test".
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case ModeLive, ModeTest:
		return Mode(s), nil
	}
	return "", fmt.Errorf("keystore: mode %q: want live or test", s)
}

const (
	base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	// randomChars base62 characters carry 30*log2(62) ≈ 178 bits, above the
	// 160 bits the contract asks for.
	randomChars   = 30
	checksumChars = 6 // 62^6 > 2^32, so any CRC32 fits.
	bodyChars     = randomChars + checksumChars
	// MaxPrefixLen bounds the configurable prefix ("kg", "vpk", …).
	MaxPrefixLen = 16
	// MaxKeyLen bounds any credential keygate will hash: generated keys are
	// far shorter, imported keys must fit too.
	MaxKeyLen = 512
	// displayChars of the secret part are kept for listings.
	displayChars = 8
)

// Errors returned by Parse. All of them mean "not a key of ours" and are
// decided without touching cache or store.
var (
	ErrMalformed   = errors.New("keystore: malformed key")
	ErrBadChecksum = errors.New("keystore: key checksum mismatch")
)

// Secret is a raw API key. Its String, Format and LogValue redact it so that a
// key that reaches a log line or an error message shows only its display
// prefix.
type Secret string

// Reveal returns the raw key. Call it only to hand the key to its owner once.
func (s Secret) Reveal() string { return string(s) }

// String redacts the key.
func (s Secret) String() string { return Redact(string(s)) }

// Format redacts the key for every verb, including %#v and %q.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }

// LogValue redacts the key in slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Redact shows what is safe to log of a credential: for a key that looks
// like "<prefix>_<mode>_…", the prefix, mode and three characters; for
// anything else (tokens, imported keys) no more than four characters.
func Redact(raw string) string {
	for _, mode := range []string{"_live_", "_test_"} {
		if i := strings.Index(raw, mode); i > 0 && i <= MaxPrefixLen && len(raw) >= i+len(mode)+3+20 {
			return raw[:i+len(mode)+3] + "…"
		}
	}
	if len(raw) >= 16 {
		return raw[:4] + "…"
	}
	return "…"
}

// Format describes the keys one deployment issues: "<prefix>_<mode>_<body>".
type Format struct {
	Prefix string
}

// NewFormat validates a key prefix: 1–16 lower-case letters or digits.
func NewFormat(prefix string) (Format, error) {
	if prefix == "" || len(prefix) > MaxPrefixLen {
		return Format{}, fmt.Errorf("keystore: key prefix %q: want 1 to %d characters", prefix, MaxPrefixLen)
	}
	for i := 0; i < len(prefix); i++ {
		c := prefix[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return Format{}, fmt.Errorf("keystore: key prefix %q: only a-z and 0-9", prefix)
		}
	}
	return Format{Prefix: prefix}, nil
}

// Generate returns a new random key in this format.
func (f Format) Generate(mode Mode) (Secret, error) {
	if _, err := ParseMode(string(mode)); err != nil {
		return "", err
	}
	var b strings.Builder
	b.Grow(len(f.Prefix) + 6 + bodyChars)
	b.WriteString(f.Prefix)
	b.WriteByte('_')
	b.WriteString(string(mode))
	b.WriteByte('_')
	max := big.NewInt(int64(len(base62)))
	for range randomChars {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", fmt.Errorf("keystore: generate: %w", err)
		}
		b.WriteByte(base62[n.Int64()])
	}
	b.WriteString(checksum(b.String()))
	return Secret(b.String()), nil
}

// Parsed is a key that passed the offline checks.
type Parsed struct {
	Mode Mode
	// Display is what listings show: the first characters of the secret part.
	Display string
}

// Looks reports whether raw claims to be a key of this format (prefix and a
// mode), so that a caller can tell "malformed key of ours" from "something
// else", such as an access token or an imported key.
func (f Format) Looks(raw string) bool {
	// No concatenation: every credential of every request is asked about.
	rest, ok := strings.CutPrefix(raw, f.Prefix)
	return ok && (strings.HasPrefix(rest, "_live_") || strings.HasPrefix(rest, "_test_"))
}

// Parse checks prefix, mode, length, alphabet and checksum. It never touches
// cache or store, so garbage costs nothing but this call.
func (f Format) Parse(raw string) (Parsed, error) {
	if !f.Looks(raw) {
		return Parsed{}, ErrMalformed
	}
	head := len(f.Prefix) + 6 // "<prefix>_live_"
	body := raw[head:]
	if len(body) != bodyChars {
		return Parsed{}, ErrMalformed
	}
	for i := 0; i < len(body); i++ {
		if !isBase62(body[i]) {
			return Parsed{}, ErrMalformed
		}
	}
	split := len(raw) - checksumChars
	if sum := checksumOf(raw[:split]); string(sum[:]) != raw[split:] {
		return Parsed{}, ErrBadChecksum
	}
	return Parsed{Mode: Mode(raw[len(f.Prefix)+1 : head-1]), Display: raw[:head+displayChars]}, nil
}

// isBase62 reports whether c is in base62, by range rather than by a search
// of the alphabet for each of a key's characters.
func isBase62(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z'
}

// checksum is the CRC32 (IEEE) of s in fixed-width base62.
func checksum(s string) string {
	sum := checksumOf(s)
	return string(sum[:])
}

// checksumOf is checksum without the allocation, for Parse's hot path.
func checksumOf(s string) [checksumChars]byte {
	// CRC-32 (IEEE) byte by byte over the string itself: the key is short,
	// and handing a buffer to crc32.ChecksumIEEE moves it to the heap (its
	// implementation is chosen at run time), one allocation per Check.
	n := ^uint32(0)
	for i := 0; i < len(s); i++ {
		n = crc32.IEEETable[byte(n)^s[i]] ^ n>>8
	}
	n = ^n
	var out [checksumChars]byte
	for i := checksumChars - 1; i >= 0; i-- {
		out[i] = base62[n%62]
		n /= 62
	}
	return out
}
