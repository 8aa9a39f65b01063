package secretscan

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
)

// PublicKeys are GitHub's signing keys, by identifier.
type PublicKeys map[string]*ecdsa.PublicKey

// LoadPublicKeys reads the JSON document GitHub publishes at
// https://api.github.com/meta/public_keys/secret_scanning:
// {"public_keys":[{"key_identifier","key","is_current"}]}.
func LoadPublicKeys(path string) (PublicKeys, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secretscan: keys: %w", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("secretscan: keys: %w", err)
	}
	if len(raw) > maxKeyFile {
		return nil, fmt.Errorf("secretscan: keys: %s is larger than %d bytes", path, maxKeyFile)
	}
	return ParsePublicKeys(raw)
}

// ParsePublicKeys parses GitHub's public keys document. Every key must be a
// PEM "PUBLIC KEY" on P-256; a document with none is an error.
func ParsePublicKeys(raw []byte) (PublicKeys, error) {
	var doc struct {
		PublicKeys []struct {
			ID  string `json:"key_identifier"`
			Key string `json:"key"`
		} `json:"public_keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("secretscan: keys: %w", err)
	}
	if len(doc.PublicKeys) == 0 || len(doc.PublicKeys) > maxKeys {
		return nil, fmt.Errorf("secretscan: keys: want 1 to %d public_keys", maxKeys)
	}
	keys := PublicKeys{}
	for _, k := range doc.PublicKeys {
		block, _ := pem.Decode([]byte(k.Key))
		if k.ID == "" || block == nil || block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("secretscan: keys: %q: want a key_identifier and a PEM PUBLIC KEY", k.ID)
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("secretscan: keys: %q: %w", k.ID, err)
		}
		ec, ok := pub.(*ecdsa.PublicKey)
		if !ok || ec.Curve != elliptic.P256() {
			return nil, fmt.Errorf("secretscan: keys: %q: want an ECDSA P-256 key", k.ID)
		}
		keys[k.ID] = ec
	}
	return keys, nil
}
