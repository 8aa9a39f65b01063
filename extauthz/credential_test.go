package extauthz

import (
	"encoding/base64"
	"regexp"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

const (
	keyA = "kg_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA123456"
	keyB = "kg_live_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBB123456"
)

func basic(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }

// TestExtractCredential runs SECURITY.md's "bad inputs every build must
// survive" that concern credential parsing, and the good ones beside them.
func TestExtractCredential(t *testing.T) {
	huge := strings.Repeat("a", 64<<10)
	tests := []struct {
		name       string
		headers    map[string]string
		wantStatus CredentialStatus
		wantScheme string
		wantValue  string
	}{
		{"no credential", map[string]string{"accept": "*/*"}, CredentialMissing, "", ""},
		{"nil headers", nil, CredentialMissing, "", ""},
		{"bearer", map[string]string{"authorization": "Bearer " + keyA}, CredentialOK, "bearer", keyA},
		{"bearer lower case", map[string]string{"authorization": "bearer " + keyA}, CredentialOK, "bearer", keyA},
		{"bearer upper case", map[string]string{"authorization": "BEARER " + keyA}, CredentialOK, "bearer", keyA},
		{"bearer mixed case", map[string]string{"authorization": "bEaReR " + keyA}, CredentialOK, "bearer", keyA},
		{"bearer double space", map[string]string{"authorization": "Bearer  " + keyA}, CredentialOK, "bearer", keyA},
		{"bearer short token", map[string]string{"authorization": "Bearer x"}, CredentialOK, "bearer", "x"},
		{"bearer empty", map[string]string{"authorization": "Bearer"}, CredentialMalformed, "", ""},
		{"bearer empty with space", map[string]string{"authorization": "Bearer "}, CredentialMalformed, "", ""},
		{"bearer tab", map[string]string{"authorization": "Bearer\t" + keyA}, CredentialMalformed, "", ""},
		{"bearer trailing tab", map[string]string{"authorization": "Bearer " + keyA + "\t"}, CredentialMalformed, "", ""},
		{"bearer colon", map[string]string{"authorization": "Bearer: " + keyA}, CredentialMalformed, "", ""},
		{"token scheme", map[string]string{"authorization": "Token " + keyA}, CredentialMalformed, "", ""},
		{"basic spelled with a long s", map[string]string{"authorization": "Ba\u017Fic " + base64.StdEncoding.EncodeToString([]byte(keyA+":"))}, CredentialMalformed, "", ""},
		{"digest scheme", map[string]string{"authorization": "Digest username=\"x\""}, CredentialMalformed, "", ""},
		{"bare key in authorization", map[string]string{"authorization": keyA}, CredentialMalformed, "", ""},
		{"bearer with NUL", map[string]string{"authorization": "Bearer " + keyA + "\x00"}, CredentialMalformed, "", ""},
		{"bearer with 0x80", map[string]string{"authorization": "Bearer " + keyA[:20] + "\x80" + keyA[21:]}, CredentialMalformed, "", ""},
		{"bearer with ! (Envoy's non-UTF-8 mark)", map[string]string{"authorization": "Bearer " + keyA[:20] + "!" + keyA[21:]}, CredentialMalformed, "", ""},
		{"bearer full-width digit", map[string]string{"authorization": "Bearer kg_live_１" + keyA[9:]}, CredentialMalformed, "", ""},
		{"bearer 64 KiB", map[string]string{"authorization": "Bearer " + huge}, CredentialMalformed, "", ""},
		{"bearer 1 MiB", map[string]string{"authorization": "Bearer " + strings.Repeat("a", 1<<20)}, CredentialMalformed, "", ""},
		{"two authorization headers, same key", map[string]string{"authorization": "Bearer " + keyA + ",Bearer " + keyA}, CredentialOK, "bearer", keyA},
		{"two authorization headers, different keys", map[string]string{"authorization": "Bearer " + keyA + ", Bearer " + keyB}, CredentialAmbiguous, "", ""},
		{"comma in bearer", map[string]string{"authorization": "Bearer " + keyA + ",x"}, CredentialMalformed, "", ""},
		{"basic key as username", map[string]string{"authorization": basic(keyA + ":")}, CredentialOK, "basic", keyA},
		{"basic lower case", map[string]string{"authorization": "basic " + base64.StdEncoding.EncodeToString([]byte(keyA+":"))}, CredentialOK, "basic", keyA},
		{"basic with password", map[string]string{"authorization": basic(keyA + ":password")}, CredentialMalformed, "", ""},
		{"basic key as password", map[string]string{"authorization": basic(":" + keyA)}, CredentialMalformed, "", ""},
		{"basic no colon", map[string]string{"authorization": basic(keyA)}, CredentialMalformed, "", ""},
		{"basic not base64", map[string]string{"authorization": "Basic " + keyA + "!!"}, CredentialMalformed, "", ""},
		{"basic bad padding", map[string]string{"authorization": "Basic " + strings.TrimRight(base64.StdEncoding.EncodeToString([]byte(keyA+":")), "=") + "="}, CredentialMalformed, "", ""},
		{"basic unpadded", map[string]string{"authorization": "Basic " + base64.RawStdEncoding.EncodeToString([]byte(keyA+"x:"))}, CredentialMalformed, "", ""},
		{"basic 10 KiB", map[string]string{"authorization": basic(strings.Repeat("k", 10<<10) + ":")}, CredentialMalformed, "", ""},
		{"basic control byte in user", map[string]string{"authorization": basic("kg\x01live:")}, CredentialMalformed, "", ""},
		{"basic empty", map[string]string{"authorization": "Basic "}, CredentialMalformed, "", ""},
		{"x-api-key", map[string]string{"x-api-key": keyA}, CredentialOK, "x-api-key", keyA},
		{"x-api-key padded with spaces", map[string]string{"x-api-key": " " + keyA + " "}, CredentialOK, "x-api-key", keyA},
		{"x-api-key empty", map[string]string{"x-api-key": ""}, CredentialMalformed, "", ""},
		{"x-api-key trailing newline", map[string]string{"x-api-key": keyA + "\n"}, CredentialMalformed, "", ""},
		{"x-api-key NUL", map[string]string{"x-api-key": "kg\x00live"}, CredentialMalformed, "", ""},
		{"x-api-key raw 0xff", map[string]string{"x-api-key": keyA[:10] + "\xff" + keyA[11:]}, CredentialMalformed, "", ""},
		{"x-api-key 64 KiB", map[string]string{"x-api-key": huge}, CredentialMalformed, "", ""},
		{"x-api-key twice, same key", map[string]string{"x-api-key": keyA + "," + keyA}, CredentialOK, "x-api-key", keyA},
		{"x-api-key twice, different keys", map[string]string{"x-api-key": keyA + "," + keyB}, CredentialAmbiguous, "", ""},
		{"bearer and x-api-key, same key", map[string]string{"authorization": "Bearer " + keyA, "x-api-key": keyA}, CredentialOK, "bearer", keyA},
		{"bearer and x-api-key, different keys", map[string]string{"authorization": "Bearer " + keyA, "x-api-key": keyB}, CredentialAmbiguous, "", ""},
		{"basic and x-api-key, different keys", map[string]string{"authorization": basic(keyA + ":"), "x-api-key": keyB}, CredentialAmbiguous, "", ""},
		{"valid bearer, malformed x-api-key", map[string]string{"authorization": "Bearer " + keyA, "x-api-key": "a b"}, CredentialMalformed, "", ""},
		{"valid x-api-key, unknown scheme", map[string]string{"authorization": "Token x", "x-api-key": keyA}, CredentialMalformed, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, status := ExtractCredential(tt.headers)
			if status != tt.wantStatus {
				t.Fatalf("status = %d, want %d", status, tt.wantStatus)
			}
			if c.Scheme != tt.wantScheme || c.Value.Reveal() != tt.wantValue {
				t.Fatalf("credential = %s %s, want %s %s", c.Scheme, c.Value, tt.wantScheme, keystore.Redact(tt.wantValue))
			}
		})
	}
}

// TestExtractCredentialManyHeaders: hundreds of unrelated headers change nothing.
func TestExtractCredentialManyHeaders(t *testing.T) {
	h := map[string]string{"authorization": "Bearer " + keyA}
	for i := range 500 {
		h["x-filler-"+strings.Repeat("z", i%40)+string(rune('a'+i%26))] = strings.Repeat("v", 100)
	}
	if c, status := ExtractCredential(h); status != CredentialOK || c.Value.Reveal() != keyA {
		t.Fatalf("got %d %s", status, c.Value)
	}
}

// TestCredentialSourcesTable: every header row of credentialSources is
// read by extraction, hidden from the policy input and stripped before the
// upstream, so a new source is one row.
func TestCredentialSourcesTable(t *testing.T) {
	if len(credentialHeaderNames) == 0 {
		t.Fatal("no credential headers")
	}
	for _, src := range credentialSources {
		if src.parse == nil || src.scheme == "" {
			t.Errorf("row %+v lacks a scheme or parser", src)
		}
		if src.header == "" {
			continue
		}
		h := map[string]string{src.header: "x", "accept": "*/*"}
		if got := policyRequest(Request{Path: "/", Headers: h}).Headers; got[src.header] != "" || got["accept"] == "" {
			t.Errorf("%s: policy input headers %v", src.header, got)
		}
		if got := presentCredentialHeaders(h); len(got) != 1 || got[0] != src.header {
			t.Errorf("%s: stripped %v", src.header, got)
		}
	}
}

// TestToken68Syntax: token68 is RFC 9110's grammar, 1*( ALPHA / DIGIT /
// "-" / "." / "_" / "~" / "+" / "/" ) *"=", for every byte in every
// position of a short value.
func TestToken68Syntax(t *testing.T) {
	grammar := regexp.MustCompile(`^[A-Za-z0-9\-._~+/]+=*$`)
	for c := range 256 {
		b := string([]byte{byte(c)})
		for _, v := range []string{b, "a" + b, b + "a", "a" + b + "=", "a=" + b, b + "==", "kg_live_" + b} {
			if got, want := token68(v), grammar.MatchString(v); got != want {
				t.Errorf("token68(%q) = %v, want %v", v, got, want)
			}
		}
	}
	for _, v := range []string{"", "=", "==", "a", "a==", "a=b", " a", "a b"} {
		if got, want := token68(v), grammar.MatchString(v); got != want {
			t.Errorf("token68(%q) = %v, want %v", v, got, want)
		}
	}
}
