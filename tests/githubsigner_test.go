package tests

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

// gitHubSigner plays GitHub's secret scanning: a P-256 key listed in a keys
// file, signing report bodies.
type gitHubSigner struct {
	key      *ecdsa.PrivateKey
	keysFile string
}

func newGitHubSigner(t *testing.T) gitHubSigner {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	doc, _ := json.Marshal(map[string]any{"public_keys": []map[string]any{{
		"key_identifier": "e2e-key", "is_current": true,
		"key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
	}}})
	path := filepath.Join(t.TempDir(), "github-keys.json")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	return gitHubSigner{key: k, keysFile: path}
}

func (g gitHubSigner) sign(t *testing.T, body []byte) string {
	sum := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, g.key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// post sends a secret scanning report as GitHub does, signed by keyID.
func (g gitHubSigner) post(t *testing.T, httpAddr, keyID string, body []byte, sig string) (int, string) {
	t.Helper()
	status, _, raw := send(t, "POST", "http://"+httpAddr+"/secret-scanning/github", string(body),
		map[string]string{"Github-Public-Key-Identifier": keyID, "Github-Public-Key-Signature": sig})
	return status, string(raw)
}
