// Package sessiontest is an identity provider for tests: it makes signing
// keys, publishes their JWKS and signs session tokens, including the
// forgeries a verifier must refuse (alg none, HMAC keyed with the public
// key, a key outside the JWKS).
package sessiontest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// Key is one signing key with its kid.
type Key struct {
	Kid     string
	Alg     jwa.SignatureAlgorithm
	private crypto.Signer
}

// NewKey makes a key for alg: "RS256", "ES256" or "EdDSA".
func NewKey(kid, alg string) (*Key, error) {
	var (
		signer crypto.Signer
		err    error
	)
	k := &Key{Kid: kid}
	switch alg {
	case "RS256":
		signer, err = rsa.GenerateKey(rand.Reader, 2048)
		k.Alg = jwa.RS256()
	case "ES256":
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		k.Alg = jwa.ES256()
	case "EdDSA":
		_, signer, err = ed25519.GenerateKey(rand.Reader)
		k.Alg = jwa.EdDSA()
	default:
		return nil, fmt.Errorf("sessiontest: unknown alg %q", alg)
	}
	if err != nil {
		return nil, err
	}
	k.private = signer
	return k, nil
}

// JWK is the key's public half as a JWKS entry.
func (k *Key) JWK() (jwk.Key, error) {
	pub, err := jwk.Import(k.private.Public())
	if err != nil {
		return nil, err
	}
	if err := pub.Set(jwk.KeyIDKey, k.Kid); err != nil {
		return nil, err
	}
	return pub, pub.Set(jwk.KeyUsageKey, "sig")
}

// PublicPEM is the public key as PEM, the bytes an attacker would try as
// an HMAC secret.
func (k *Key) PublicPEM() []byte {
	der, _ := x509.MarshalPKIXPublicKey(k.private.Public())
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Sign signs claims with the key (kid in the header).
func (k *Key) Sign(claims map[string]any) (string, error) {
	tok := jwt.New()
	for name, v := range claims {
		if err := tok.Set(name, v); err != nil {
			return "", err
		}
	}
	priv, err := jwk.Import(k.private)
	if err != nil {
		return "", err
	}
	if err := priv.Set(jwk.KeyIDKey, k.Kid); err != nil {
		return "", err
	}
	b, err := jwt.Sign(tok, jwt.WithKey(k.Alg, priv))
	return string(b), err
}

// Unsigned is a token with "alg": "none" and kid, and an empty signature
// (or sig, to get past a check that only wants three non-empty parts).
func Unsigned(kid string, claims map[string]any, sig string) string {
	return compact(map[string]any{"alg": "none", "kid": kid, "typ": "JWT"}, claims, func([]byte) string { return sig })
}

// HMACWith is a token signed with HS256, keyed with secret (such as a
// public key's PEM or its JWKS JSON), naming kid.
func HMACWith(kid string, secret []byte, claims map[string]any) string {
	return compact(map[string]any{"alg": "HS256", "kid": kid, "typ": "JWT"}, claims, func(input []byte) string {
		m := hmac.New(sha256.New, secret)
		m.Write(input)
		return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	})
}

func compact(header, claims map[string]any, sign func([]byte) string) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	return input + "." + sign([]byte(input))
}

// Provider publishes a JWKS over HTTP (ServeHTTP) and counts the reads.
// Keys can be added and removed while it serves.
type Provider struct {
	mu    sync.Mutex
	keys  []*Key
	reads int
}

// SetKeys replaces the published keys.
func (p *Provider) SetKeys(keys ...*Key) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = keys
}

// Reads is how many times the JWKS was fetched.
func (p *Provider) Reads() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reads
}

// JWKS is the published set as JSON.
func (p *Provider) JWKS() ([]byte, error) {
	p.mu.Lock()
	keys := p.keys
	p.mu.Unlock()
	set := jwk.NewSet()
	for _, k := range keys {
		pub, err := k.JWK()
		if err != nil {
			return nil, err
		}
		if err := set.AddKey(pub); err != nil {
			return nil, err
		}
	}
	return json.Marshal(set)
}

func (p *Provider) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	b, err := p.JWKS()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	p.mu.Lock()
	p.reads++
	p.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// Claims are the usual claims of a session for account, valid for ttl
// from now.
func Claims(iss, aud, sub, account string, now time.Time, ttl time.Duration) map[string]any {
	return map[string]any{"iss": iss, "aud": aud, "sub": sub, "account": account,
		"iat": now.Unix(), "exp": now.Add(ttl).Unix()}
}
