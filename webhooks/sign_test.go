package webhooks

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// The published Standard Webhooks library (not this package) must accept
// what Sign produces, with one secret and with two during a rotation.
func TestSignVerifiesWithStandardWebhooksLibrary(t *testing.T) {
	oldSecret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	newSecret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"type":"key.created","timestamp":"2026-11-30T15:00:00Z","data":{"id":"key_1"}}`)
	now := time.Now()
	for _, tc := range []struct {
		name    string
		signers []string
		verify  string
	}{
		{"one secret", []string{newSecret}, newSecret},
		{"rotation: new verifies", []string{newSecret, oldSecret}, newSecret},
		{"rotation: old verifies", []string{newSecret, oldSecret}, oldSecret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if err := Sign(h, tc.signers, "msg_abc", now, body); err != nil {
				t.Fatal(err)
			}
			if n := len(strings.Fields(h.Get(HeaderSignature))); n != len(tc.signers) {
				t.Fatalf("%d signatures, want %d", n, len(tc.signers))
			}
			wh, err := standardwebhooks.NewWebhook(tc.verify)
			if err != nil {
				t.Fatal(err)
			}
			if err := wh.Verify(body, h); err != nil {
				t.Fatalf("library rejects our signature: %v", err)
			}
			tampered := append([]byte{}, body...)
			tampered[len(tampered)-3] = 'X'
			if err := wh.Verify(tampered, h); err == nil {
				t.Fatal("library accepts a tampered body")
			}
		})
	}
	t.Run("secret not among signers", func(t *testing.T) {
		h := http.Header{}
		if err := Sign(h, []string{newSecret}, "msg_abc", now, body); err != nil {
			t.Fatal(err)
		}
		wh, _ := standardwebhooks.NewWebhook(oldSecret)
		if err := wh.Verify(body, h); err == nil {
			t.Fatal("verified with a secret that did not sign")
		}
	})
}

// A known vector: the library's own Sign and ours agree byte for byte.
func TestSignatureMatchesLibrarySign(t *testing.T) {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	at := time.Unix(1614265330, 0)
	body := []byte(`{"test": 2432232314}`)
	got, err := Signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", at, body)
	if err != nil {
		t.Fatal(err)
	}
	wh, _ := standardwebhooks.NewWebhook(secret)
	want, err := wh.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", at, body)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("Signature = %s, library = %s", got, want)
	}
}

func TestSecrets(t *testing.T) {
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s, SecretPrefix) || ValidSecret(s) != nil {
		t.Fatalf("NewSecret = %q is not valid", s)
	}
	for _, bad := range []string{"", "whsec_", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!!!", "whsec_c2hvcnQ="} {
		if err := ValidSecret(bad); !errors.Is(err, ErrBadSecret) {
			t.Errorf("ValidSecret(%q) = %v, want ErrBadSecret", bad, err)
		}
		if err := Sign(http.Header{}, []string{bad}, "m", time.Now(), nil); !errors.Is(err, ErrBadSecret) {
			t.Errorf("Sign with %q = %v, want ErrBadSecret", bad, err)
		}
	}
}
