package tokens

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func secret(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func ring(t *testing.T, keys ...SigningKey) *Keyring {
	t.Helper()
	k := NewKeyring(NewFormat("kg"))
	if err := k.Set(keys); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestMintVerify(t *testing.T) {
	k := ring(t, SigningKey{ID: "sk1", Secret: secret(1), NotBefore: t0.Add(-time.Hour)})
	tok, claims, err := k.Mint("key_abc", "test", t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "kg_at_") || len(tok) > MaxLen || strings.Count(tok, ".") != 1 {
		t.Fatalf("token %q: want kg_at_<payload>.<sig> of at most %d bytes", tok, MaxLen)
	}
	want := Claims{KeyID: "key_abc", Mode: "test", IssuedAt: t0, ExpiresAt: t0.Add(time.Hour), KID: "sk1"}
	if diff := cmp.Diff(want, claims); diff != "" {
		t.Fatalf("minted claims (-want +got):\n%s", diff)
	}
	got, err := k.Verify(tok, t0.Add(59*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("verified claims (-want +got):\n%s", diff)
	}
}

// TestExpiry uses the injected clock: the token is good until the instant
// before ExpiresAt and expired from then on.
func TestExpiry(t *testing.T) {
	k := ring(t, SigningKey{ID: "sk1", Secret: secret(1)})
	tok, _, err := k.Mint("key_abc", "live", t0, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at   time.Time
		want error
	}{
		{t0, nil},
		{t0.Add(10*time.Second - time.Millisecond), nil},
		{t0.Add(10 * time.Second), ErrExpired},
		{t0.Add(24 * time.Hour), ErrExpired},
	} {
		if _, err := k.Verify(tok, tc.at); !errors.Is(err, tc.want) && !(err == nil && tc.want == nil) {
			t.Errorf("Verify at %s: got %v, want %v", tc.at.Sub(t0), err, tc.want)
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	k := ring(t, SigningKey{ID: "sk1", Secret: secret(1)})
	tok, _, err := k.Mint("key_abc", "live", t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other := ring(t, SigningKey{ID: "sk1", Secret: secret(2)})
	forged, _, _ := other.Mint("key_abc", "live", t0, time.Hour)
	unknownKid := ring(t, SigningKey{ID: "sk9", Secret: secret(1)})
	strange, _, _ := unknownKid.Mint("key_abc", "live", t0, time.Hour)
	dot := strings.LastIndexByte(tok, '.')
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	cases := map[string]string{
		"empty":             "",
		"key shaped":        "kg_live_abc",
		"no dot":            strings.Replace(tok, ".", "", 1),
		"payload bit":       flip(tok, 10),
		"signature bit":     flip(tok, len(tok)-5),
		"short signature":   tok[:len(tok)-1],
		"long signature":    tok + "A",
		"other secret":      forged,
		"unknown kid":       strange,
		"swapped parts":     "kg_at_" + tok[dot+1:] + "." + tok[6:dot],
		"padding":           tok + "=",
		"too long":          tok[:dot] + strings.Repeat("A", MaxLen) + tok[dot:],
		"other prefix":      "xx" + tok[2:],
		"trailing newline":  tok + "\n",
		"non-base64 chars":  tok[:8] + "!" + tok[9:],
		"empty payload":     "kg_at_." + tok[dot+1:],
		"truncated payload": tok[:dot-4] + tok[dot:],
	}
	for name, raw := range cases {
		if _, err := k.Verify(raw, t0); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
	select {
	case <-k.Missed():
	default:
		t.Error("an unknown kid did not signal Missed")
	}
}

// TestRotation: the newest key past NotBefore signs, every key held
// verifies, and a key dropped from the ring stops verifying.
func TestRotation(t *testing.T) {
	old := SigningKey{ID: "old", Secret: secret(1), NotBefore: t0.Add(-48 * time.Hour)}
	next := SigningKey{ID: "next", Secret: secret(2), NotBefore: t0.Add(time.Minute)}
	k := ring(t, next, old)
	before, c, err := k.Mint("key_abc", "live", t0, time.Hour)
	if err != nil || c.KID != "old" {
		t.Fatalf("before activation: kid %q, err %v; want old", c.KID, err)
	}
	after, c, err := k.Mint("key_abc", "live", t0.Add(time.Minute), time.Hour)
	if err != nil || c.KID != "next" {
		t.Fatalf("after activation: kid %q, err %v; want next", c.KID, err)
	}
	for _, tok := range []string{before, after} {
		if _, err := k.Verify(tok, t0.Add(2*time.Minute)); err != nil {
			t.Fatalf("both keys should verify: %v", err)
		}
	}
	if err := k.Set([]SigningKey{next}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Verify(before, t0.Add(2*time.Minute)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("token of a retired key: got %v, want ErrInvalid", err)
	}
	if diff := cmp.Diff([]string{"next"}, k.IDs()); diff != "" {
		t.Fatal(diff)
	}
}

func TestMintWithoutActiveKey(t *testing.T) {
	k := ring(t, SigningKey{ID: "later", Secret: secret(1), NotBefore: t0.Add(time.Minute)})
	if _, _, err := k.Mint("key_abc", "live", t0, time.Hour); !errors.Is(err, ErrNoSigningKey) {
		t.Fatalf("got %v, want ErrNoSigningKey", err)
	}
	if err := NewKeyring(NewFormat("kg")).Set([]SigningKey{{ID: "short", Secret: []byte("x")}}); err == nil {
		t.Fatal("a 1-byte secret was accepted")
	}
}

func TestRefreshFormat(t *testing.T) {
	f := NewFormat("kg")
	a, err := f.NewRefresh()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := f.NewRefresh()
	if a == b || !f.LooksRefresh(a) || f.Looks(a) {
		t.Fatalf("refresh tokens %q, %q: want distinct, refresh-shaped, not access-shaped", a, b)
	}
	for _, bad := range []string{"", "kg_rt_", a[:len(a)-1], a + "A", "kg_at_" + a[6:], a[:10] + "!" + a[11:]} {
		if f.LooksRefresh(bad) {
			t.Errorf("LooksRefresh(%q) = true", bad)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	k := NewKeyring(NewFormat("kg"))
	_ = k.Set([]SigningKey{{ID: "sk_0123456789ab", Secret: secret(1)}})
	tok, _, _ := k.Mint("key_01234567890123456789", "live", t0, time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Verify(tok, t0); err != nil {
			b.Fatal(err)
		}
	}
}
