package extauthz

import (
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestCanonicalize(t *testing.T) {
	tests := []struct {
		name, host, target string
		wantPath, wantHost string
		wantOK             bool
	}{
		{"plain", "api.example.com", "/v1/sites/blog/videos?x=1", "/v1/sites/blog/videos", "api.example.com", true},
		{"encoded letter", "h", "/v1/%73ites/victim/videos", "/v1/sites/victim/videos", "h", true},
		{"encoded letters everywhere", "h", "/%76%31/%73%69%74%65%73/%76ictim/%56ideos", "/v1/sites/victim/Videos", "h", true},
		{"encoded unreserved marks", "h", "/v1/a%2Db%5Fc%7Ed", "/v1/a-b_c~d", "h", true},
		{"other escapes kept, upper hex", "h", "/v1/videos/a%20b%c3%a9", "/v1/videos/a%20b%C3%A9", "h", true},
		{"escaped long s", "h", "/v1/%C5%BFites/victim/videos", "", "", false},
		{"escaped long s, lower hex", "h", "/v1/%c5%bfites/victim", "", "", false},
		{"escaped Kelvin sign", "h", "/v1/%E2%84%AAeys", "", "", false},
		{"escaped capital I with dot", "h", "/v1/s%C4%B0tes/victim", "", "", false},
		{"escaped dotless i", "h", "/v1/s%C4%B1tes/victim", "", "", false},
		{"escaped sharp s", "h", "/v1/videos/stra%C3%9Fe", "", "", false},
		{"escaped ligature st", "h", "/v1/%EF%AC%85atus", "", "", false},
		{"escaped Kelvin sign after an encoded letter", "h", "/v1/%6b%E2%84%AAy", "", "", false},
		{"escaped capital sharp s", "h", "/v1/a%E1%BA%9Eets/x", "", "", false},
		{"overlong escaped s", "h", "/v1/%C1%B3ites/x", "", "", false},
		{"escaped C0", "h", "/v1/%C0%AF", "", "", false},
		{"escaped F5", "h", "/v1/x%F5", "", "", false},
		{"escaped FF", "h", "/v1/x%ff", "", "", false},
		{"escaped other letters kept", "h", "/v1/videos/%C3%A9t%C3%A9-%D0%B0", "/v1/videos/%C3%A9t%C3%A9-%D0%B0", "h", true},
		{"escaped broken UTF-8 kept", "h", "/v1/videos/%C5%20", "/v1/videos/%C5%20", "h", true},
		{"escaped lone lead byte at end kept", "h", "/v1/videos/%C5", "/v1/videos/%C5", "h", true},
		{"trailing slash kept", "h", "/v1/sites/blog/", "/v1/sites/blog/", "h", true},
		{"upper case kept", "h", "/V1/SITES/victim", "/V1/SITES/victim", "h", true},
		{"double encoding", "h", "/v1/%2573ites/x", "", "", false},
		{"encoded slash", "h", "/v1/sites/a%2Fb", "", "", false},
		{"encoded backslash", "h", "/v1/sites/a%5cb", "", "", false},
		{"encoded semicolon", "h", "/v1/sites/a%3Bx", "", "", false},
		{"encoded question mark", "h", "/v1/sites/a%3fx", "", "", false},
		{"encoded hash", "h", "/v1/sites/a%23x", "", "", false},
		{"encoded NUL", "h", "/v1/%00", "", "", false},
		{"encoded DEL", "h", "/v1/%7f", "", "", false},
		{"encoded dot segment", "h", "/v1/sites/a/%2e%2e/b", "", "", false},
		{"encoded single dot", "h", "/v1/%2E/sites", "", "", false},
		{"dot segment", "h", "/v1/sites/a/../b", "", "", false},
		{"dot", "h", "/v1/./sites/a", "", "", false},
		{"double slash", "h", "/v1//sites/a", "", "", false},
		{"leading double slash", "h", "//v1/sites/a", "", "", false},
		{"semicolon parameter", "h", "/v1/sites/a;x=1/videos", "", "", false},
		{"fragment", "h", "/v1/sites/a#x", "", "", false},
		{"bad escape", "h", "/v1/%g1", "", "", false},
		{"short escape", "h", "/v1/%4", "", "", false},
		{"host upper case and port", "API.Example.COM:8443", "/", "/", "api.example.com", true},
		{"host trailing dot", "api.example.com.", "/", "/", "api.example.com", true},
		{"host trailing dot and port", "api.example.com.:443", "/", "/", "api.example.com", true},
		{"host two trailing dots", "api.example.com..", "/", "", "", false},
		{"host Kelvin sign is not k", "api.example.\u212Aom", "/", "", "", false},
		{"host dotless i is not i", "apı.example.com", "/", "", "", false},
		{"host ipv4", "127.0.0.1:8080", "/", "/", "127.0.0.1", true},
		{"host ipv6", "[::1]:8080", "/", "/", "::1", true},
		{"host empty", "", "/", "/", "", true},
		{"host with space", "api example.com", "/", "", "", false},
		{"host with comma", "a.com,b.com", "/", "", "", false},
		{"host with percent", "api%2eexample.com", "/", "", "", false},
		{"host with userinfo", "u@api.example.com", "/", "", "", false},
		{"host bad port", "api.example.com:x", "/", "", "", false},
		{"host empty label", "api..example.com", "/", "", "", false},
		{"host only dot", ".", "/", "", "", false},
		{"host bad ipv6", "[::g]", "/", "", "", false},
		{"host non-ascii", "аpi.example.com", "/", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Canonicalize(Request{Host: tt.host, Path: tt.target})
			if c.OK != tt.wantOK {
				t.Fatalf("Canonicalize(%q, %q).OK = %t, want %t", tt.host, tt.target, c.OK, tt.wantOK)
			}
			if tt.wantOK && (c.Path != tt.wantPath || c.Host != tt.wantHost) {
				t.Errorf("Canonicalize(%q, %q) = %q %q, want %q %q", tt.host, tt.target, c.Path, c.Host, tt.wantPath, tt.wantHost)
			}
		})
	}
}

// Canonicalising a canonical path changes nothing.
func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{"/v1/%73ites/x", "/v1/a%20b", "/v1/sites/a/", "/%2e%2e/", "/v1/%C3%a9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		c, ok := canonicalPath(p)
		if !ok {
			return
		}
		again, ok := canonicalPath(c)
		if !ok || again != c {
			t.Fatalf("canonicalPath(%q) = %q, but that canonicalises to %q, %t", p, c, again, ok)
		}
	})
}

// foldsToASCII lists exactly the non-ASCII runes whose simple case
// mappings (lower, upper, title, folding orbit) reach an ASCII letter, plus
// the letters whose full case mapping or folding (Unicode's SpecialCasing
// and CaseFolding) is ASCII only: ß, ẞ (folds to "ss"), the Latin ligatures.
func TestFoldsToASCII(t *testing.T) {
	full := map[rune]bool{0xDF: true, 0x1E9E: true, 0xFB00: true, 0xFB01: true, 0xFB02: true, 0xFB03: true, 0xFB04: true, 0xFB05: true, 0xFB06: true}
	for r := rune(utf8.RuneSelf); r <= unicode.MaxRune; r++ {
		simple := unicode.ToLower(r) < utf8.RuneSelf || unicode.ToUpper(r) < utf8.RuneSelf || unicode.ToTitle(r) < utf8.RuneSelf
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			simple = simple || f < utf8.RuneSelf
		}
		if want := simple || full[r]; foldsToASCII(r) != want {
			t.Errorf("foldsToASCII(%U) = %t, want %t", r, !want, want)
		}
	}
}
