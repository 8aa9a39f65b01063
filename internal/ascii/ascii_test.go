package ascii

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestLower(t *testing.T) {
	for in, want := range map[string]string{
		"":                 "",
		"x-api-key":        "x-api-key",
		"X-API-Key":        "x-api-key",
		"API.Example.COM":  "api.example.com",
		"X-API-\u212Aey":   "x-api-\u212Aey", // KELVIN SIGN stays
		"adm\u0130n":       "adm\u0130n",     // capital I with dot stays
		"\u017Fites":       "\u017Fites",     // long s stays
		"Stra\u00dfe-\xff": "stra\u00dfe-\xff",
	} {
		if got := Lower(in); got != want {
			t.Errorf("Lower(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEqualFold(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"Bearer", "bearer", true},
		{"BASIC", "basic", true},
		{"Ba\u017Fic", "basic", false},
		{"\u212Aey", "key", false},
		{"adm\u0130n", "admin", false},
		{"abc", "abcd", false},
		{"a-b", "a_b", false},
	} {
		if got := EqualFold(c.a, c.b); got != c.want {
			t.Errorf("EqualFold(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

// Every rune: ASCII folding agrees with Unicode's on ASCII strings and never
// maps a non-ASCII rune onto an ASCII one.
func TestOnlyASCIIFolds(t *testing.T) {
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		s := string(r)
		if r < utf8.RuneSelf {
			if Lower(s) != strings.ToLower(s) || !EqualFold(s, strings.ToUpper(s)) {
				t.Fatalf("rune %q: ASCII folding differs from Unicode's", r)
			}
			continue
		}
		if Lower(s) != s {
			t.Fatalf("rune %U changed by Lower", r)
		}
		for c := byte(0); c < utf8.RuneSelf; c++ {
			if EqualFold(s, string(c)) {
				t.Fatalf("rune %U folds to %q", r, c)
			}
		}
	}
}
