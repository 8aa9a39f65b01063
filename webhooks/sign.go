// Package webhooks tells integrators about key events before their users
// meet a 401: it signs deliveries the Standard Webhooks way
// (https://www.standardwebhooks.com), checks where they may go (no SSRF), and
// runs the worker that drains the store's transactional outbox.
//
// The store (keystore) owns the outbox, the endpoints and the delivery
// states; this package owns the wire: headers, signatures, HTTP, retries.
package webhooks

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks header names.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every endpoint secret.
const SecretPrefix = "whsec_"

// secretBytes is the random part of a secret: the specification asks for
// 24 to 64 bytes.
const secretBytes = 32

// RotationOverlap is how long a rotated-away secret still signs deliveries
// beside the new one, so receivers can switch over without losing any.
const RotationOverlap = 24 * time.Hour

// ErrBadSecret is returned for a secret that is not whsec_ + base64 of at
// least 24 bytes.
var ErrBadSecret = errors.New("webhooks: secret must be whsec_ followed by base64 of 24 to 64 bytes")

// NewSecret makes an endpoint secret: whsec_ + base64 of 32 random bytes.
func NewSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("webhooks: secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b), nil
}

// secretKey decodes the HMAC key of a whsec_ secret.
func secretKey(secret string) ([]byte, error) {
	raw, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, ErrBadSecret
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) < 24 || len(key) > 64 {
		return nil, ErrBadSecret
	}
	return key, nil
}

// ValidSecret reports whether secret is a usable endpoint secret.
func ValidSecret(secret string) error {
	_, err := secretKey(secret)
	return err
}

// Signature is one "v1,<base64>" entry of the webhook-signature header:
// HMAC-SHA256 over "id.timestamp.body" keyed with the decoded secret.
func Signature(secret, id string, at time.Time, body []byte) (string, error) {
	key, err := secretKey(secret)
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(strconv.FormatInt(at.Unix(), 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}

// Sign sets the three Standard Webhooks headers on h. Every secret in
// secrets signs (the current one first, then one still in its rotation
// overlap); the signatures are space-separated as the specification says.
func Sign(h http.Header, secrets []string, id string, at time.Time, body []byte) error {
	if len(secrets) == 0 {
		return ErrBadSecret
	}
	sigs := make([]string, 0, len(secrets))
	for _, s := range secrets {
		sig, err := Signature(s, id, at, body)
		if err != nil {
			return err
		}
		sigs = append(sigs, sig)
	}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(at.Unix(), 10))
	h.Set(HeaderSignature, strings.Join(sigs, " "))
	return nil
}
