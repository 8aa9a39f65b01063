package session_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/session"
	"github.com/keygate/keygate/session/sessiontest"
)

// FuzzVerify feeds arbitrary tokens to Verify: it must never panic, must
// refuse with ErrInvalid or ErrUnavailable, and whatever it accepts must
// carry the claims of a token the fixture signed (no forged account).
func FuzzVerify(f *testing.F) {
	fx := newFixture(f, session.Config{RoleClaim: "role"})
	good := fx.claims("acc_a")
	for _, k := range []*sessiontest.Key{fx.rsa, fx.ec, fx.ed} {
		f.Add(sign(f, k, good))
	}
	f.Add(sessiontest.Unsigned("r1", with(good, "account", "acc_b"), ""))
	f.Add(sessiontest.HMACWith("r1", fx.rsa.PublicPEM(), with(good, "account", "acc_b")))
	f.Add(sign(f, fx.rsa, with(good, "exp", fx.clock().Add(-time.Hour).Unix())))
	f.Add("eyJhbGciOiJSUzI1NiIsImtpZCI6InIxIn0.e30.e30")
	f.Fuzz(func(t *testing.T, tok string) {
		s, err := fx.verifier.Verify(context.Background(), tok)
		if err != nil {
			if !errors.Is(err, session.ErrInvalid) && !errors.Is(err, session.ErrUnavailable) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if s.Account != "acc_a" || s.Subject != "user-1" {
			t.Fatalf("accepted a token the fixture did not sign: %+v", s)
		}
	})
}
