package session

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// maxJWKSBytes bounds a fetched key set.
const maxJWKSBytes = 1 << 20

// minRSABits refuses RSA keys too short to trust.
const minRSABits = 2048

// publicKey is one usable JWKS entry: the only algorithm it verifies and
// the raw public key.
type publicKey struct {
	alg    jwa.SignatureAlgorithm
	public any
}

// KeySet is the identity provider's JWKS, read from a URL or a file, cached
// and read again when a token names a kid it does not hold (at most once
// per Floor) or when it is older than MaxAge. A failed read keeps the last
// good keys.
type KeySet struct {
	// Source is an http(s) URL or a file path.
	Source string
	// Floor is the least time between two reads (default 10 s), so tokens
	// with made-up kids cannot make keygate hammer the identity provider.
	Floor time.Duration
	// MaxAge is how long keys are used before the set is read again on the
	// next lookup (default 15 min), so removed keys stop verifying.
	MaxAge time.Duration
	Client *http.Client
	Log    *slog.Logger
	Now    func() time.Time

	// reading serializes reads of the source; mu guards the fields below
	// and is never held during a read, so tokens with known kids are not
	// held up by a slow identity provider.
	reading sync.Mutex
	mu      sync.Mutex
	keys    map[string]publicKey
	fetched time.Time // last read attempt
	loaded  time.Time // last successful read
	reads   int
}

func (s *KeySet) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Load reads the set now; serve calls it at start-up to report a bad
// source early.
func (s *KeySet) Load(ctx context.Context) error {
	s.reading.Lock()
	defer s.reading.Unlock()
	return s.refresh(ctx)
}

// Reads is how many times the set was read (for tests and metrics).
func (s *KeySet) Reads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

// cached returns the key with this kid and whether it is fresh, and
// whether the floor allows another read.
func (s *KeySet) cached(kid string) (k publicKey, found, fresh, mayRead, loaded bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	k, found = s.keys[kid]
	return k, found, found && now.Sub(s.loaded) < s.maxAge(), s.fetched.IsZero() || now.Sub(s.fetched) >= s.floor(), s.keys != nil
}

// lookup returns the key with this kid, reading the set again if the kid
// is unknown (or the set is stale) and the floor allows it.
func (s *KeySet) lookup(ctx context.Context, kid string) (publicKey, error) {
	if k, _, fresh, _, _ := s.cached(kid); fresh {
		return k, nil
	}
	s.reading.Lock()
	// Another caller may have read the set while this one waited: decide
	// again, so a burst of one new kid costs one read.
	k, found, fresh, mayRead, loaded := s.cached(kid)
	var err error
	if !fresh && mayRead {
		err = s.refresh(ctx)
		k, found, _, _, loaded = s.cached(kid)
	}
	s.reading.Unlock()
	switch {
	case found:
		return k, nil // possibly from an older read, if the last one failed
	case !loaded && err != nil:
		return publicKey{}, err
	case !loaded:
		return publicKey{}, fmt.Errorf("%w: not read yet", ErrUnavailable)
	}
	return publicKey{}, fmt.Errorf("%w: unknown kid %q", ErrInvalid, clip(kid))
}

func (s *KeySet) floor() time.Duration {
	if s.Floor > 0 {
		return s.Floor
	}
	return 10 * time.Second
}

func (s *KeySet) maxAge() time.Duration {
	if s.MaxAge > 0 {
		return s.MaxAge
	}
	return 15 * time.Minute
}

// refresh reads the set; on failure the previous keys stay. Callers hold
// reading.
func (s *KeySet) refresh(ctx context.Context) error {
	s.mu.Lock()
	s.fetched = s.now()
	s.reads++
	s.mu.Unlock()
	raw, err := s.read(ctx)
	if err == nil {
		var keys map[string]publicKey
		if keys, err = parseKeys(raw, s.Log); err == nil {
			s.mu.Lock()
			s.keys, s.loaded = keys, s.fetched
			s.mu.Unlock()
			return nil
		}
	}
	if s.Log != nil {
		s.Log.Warn("session keys: reading the JWKS failed; keeping the last good keys", "source", s.Source, "err", err)
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

func (s *KeySet) read(ctx context.Context) ([]byte, error) {
	if !strings.HasPrefix(s.Source, "https://") && !strings.HasPrefix(s.Source, "http://") {
		f, err := os.Open(s.Source)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return readBounded(f)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Source, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", s.Source, res.StatusCode)
	}
	return readBounded(res.Body)
}

func readBounded(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxJWKSBytes {
		return nil, fmt.Errorf("JWKS larger than %d bytes", maxJWKSBytes)
	}
	return b, nil
}

// parseKeys keeps the set's public signature keys that have a kid and are
// RSA (≥ 2048 bits, RS256), EC P-256 (ES256) or Ed25519 (EdDSA). Symmetric
// and other keys are skipped: a JWKS publishes no secrets.
func parseKeys(raw []byte, log *slog.Logger) (map[string]publicKey, error) {
	set, err := jwk.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("not a JWKS: %w", err)
	}
	keys := map[string]publicKey{}
	var skipped []string
	for i := range set.Len() {
		k, _ := set.Key(i)
		kid, _ := k.KeyID()
		pk, err := usable(k)
		if err != nil || kid == "" {
			skipped = append(skipped, fmt.Sprintf("%q: %v", clip(kid), err))
			continue
		}
		keys[kid] = pk
	}
	if len(keys) == 0 {
		return nil, errors.New("the JWKS holds no usable RS256, ES256 or EdDSA key with a kid")
	}
	if len(skipped) > 0 && log != nil {
		log.Warn("session keys: skipped JWKS entries", "entries", skipped)
	}
	return keys, nil
}

func usable(k jwk.Key) (publicKey, error) {
	if use, ok := k.KeyUsage(); ok && use != "sig" {
		return publicKey{}, fmt.Errorf("use %q", use)
	}
	var raw any
	if err := jwk.Export(k, &raw); err != nil {
		return publicKey{}, err
	}
	var pk publicKey
	switch p := raw.(type) {
	case *rsa.PublicKey:
		if p.N.BitLen() < minRSABits {
			return pk, fmt.Errorf("RSA key of %d bits", p.N.BitLen())
		}
		pk = publicKey{alg: jwa.RS256(), public: p}
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() {
			return pk, errors.New("EC key not on P-256")
		}
		pk = publicKey{alg: jwa.ES256(), public: p}
	case ed25519.PublicKey:
		pk = publicKey{alg: jwa.EdDSA(), public: p}
	default:
		// Private and symmetric keys land here too: never verify with them.
		return pk, fmt.Errorf("unsupported key type %T", raw)
	}
	if alg, ok := k.Algorithm(); ok && alg.String() != pk.alg.String() {
		return pk, fmt.Errorf("alg %q does not fit the key", alg)
	}
	return pk, nil
}
