package extauthz

import (
	"encoding/base64"
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
		wantStatus credentialStatus
		wantScheme string
		wantValue  string
	}{
		{"no credential", map[string]string{"accept": "*/*"}, credMissing, "", ""},
		{"nil headers", nil, credMissing, "", ""},
		{"bearer", map[string]string{"authorization": "Bearer " + keyA}, credOK, "bearer", keyA},
		{"bearer lower case", map[string]string{"authorization": "bearer " + keyA}, credOK, "bearer", keyA},
		{"bearer upper case", map[string]string{"authorization": "BEARER " + keyA}, credOK, "bearer", keyA},
		{"bearer mixed case", map[string]string{"authorization": "bEaReR " + keyA}, credOK, "bearer", keyA},
		{"bearer double space", map[string]string{"authorization": "Bearer  " + keyA}, credOK, "bearer", keyA},
		{"bearer short token", map[string]string{"authorization": "Bearer x"}, credOK, "bearer", "x"},
		{"bearer empty", map[string]string{"authorization": "Bearer"}, credMalformed, "", ""},
		{"bearer empty with space", map[string]string{"authorization": "Bearer "}, credMalformed, "", ""},
		{"bearer tab", map[string]string{"authorization": "Bearer\t" + keyA}, credMalformed, "", ""},
		{"bearer trailing tab", map[string]string{"authorization": "Bearer " + keyA + "\t"}, credMalformed, "", ""},
		{"bearer colon", map[string]string{"authorization": "Bearer: " + keyA}, credMalformed, "", ""},
		{"token scheme", map[string]string{"authorization": "Token " + keyA}, credMalformed, "", ""},
		{"digest scheme", map[string]string{"authorization": "Digest username=\"x\""}, credMalformed, "", ""},
		{"bare key in authorization", map[string]string{"authorization": keyA}, credMalformed, "", ""},
		{"bearer with NUL", map[string]string{"authorization": "Bearer " + keyA + "\x00"}, credMalformed, "", ""},
		{"bearer with 0x80", map[string]string{"authorization": "Bearer " + keyA[:20] + "\x80" + keyA[21:]}, credMalformed, "", ""},
		{"bearer with ! (Envoy's non-UTF-8 mark)", map[string]string{"authorization": "Bearer " + keyA[:20] + "!" + keyA[21:]}, credMalformed, "", ""},
		{"bearer full-width digit", map[string]string{"authorization": "Bearer kg_live_１" + keyA[9:]}, credMalformed, "", ""},
		{"bearer 64 KiB", map[string]string{"authorization": "Bearer " + huge}, credMalformed, "", ""},
		{"bearer 1 MiB", map[string]string{"authorization": "Bearer " + strings.Repeat("a", 1<<20)}, credMalformed, "", ""},
		{"two authorization headers, same key", map[string]string{"authorization": "Bearer " + keyA + ",Bearer " + keyA}, credOK, "bearer", keyA},
		{"two authorization headers, different keys", map[string]string{"authorization": "Bearer " + keyA + ", Bearer " + keyB}, credAmbiguous, "", ""},
		{"comma in bearer", map[string]string{"authorization": "Bearer " + keyA + ",x"}, credMalformed, "", ""},
		{"basic key as username", map[string]string{"authorization": basic(keyA + ":")}, credOK, "basic", keyA},
		{"basic lower case", map[string]string{"authorization": "basic " + base64.StdEncoding.EncodeToString([]byte(keyA+":"))}, credOK, "basic", keyA},
		{"basic with password", map[string]string{"authorization": basic(keyA + ":password")}, credMalformed, "", ""},
		{"basic key as password", map[string]string{"authorization": basic(":" + keyA)}, credMalformed, "", ""},
		{"basic no colon", map[string]string{"authorization": basic(keyA)}, credMalformed, "", ""},
		{"basic not base64", map[string]string{"authorization": "Basic " + keyA + "!!"}, credMalformed, "", ""},
		{"basic bad padding", map[string]string{"authorization": "Basic " + strings.TrimRight(base64.StdEncoding.EncodeToString([]byte(keyA+":")), "=") + "="}, credMalformed, "", ""},
		{"basic unpadded", map[string]string{"authorization": "Basic " + base64.RawStdEncoding.EncodeToString([]byte(keyA+"x:"))}, credMalformed, "", ""},
		{"basic 10 KiB", map[string]string{"authorization": basic(strings.Repeat("k", 10<<10) + ":")}, credMalformed, "", ""},
		{"basic control byte in user", map[string]string{"authorization": basic("kg\x01live:")}, credMalformed, "", ""},
		{"basic empty", map[string]string{"authorization": "Basic "}, credMalformed, "", ""},
		{"x-api-key", map[string]string{"x-api-key": keyA}, credOK, "x-api-key", keyA},
		{"x-api-key padded with spaces", map[string]string{"x-api-key": " " + keyA + " "}, credOK, "x-api-key", keyA},
		{"x-api-key empty", map[string]string{"x-api-key": ""}, credMalformed, "", ""},
		{"x-api-key trailing newline", map[string]string{"x-api-key": keyA + "\n"}, credMalformed, "", ""},
		{"x-api-key NUL", map[string]string{"x-api-key": "kg\x00live"}, credMalformed, "", ""},
		{"x-api-key raw 0xff", map[string]string{"x-api-key": keyA[:10] + "\xff" + keyA[11:]}, credMalformed, "", ""},
		{"x-api-key 64 KiB", map[string]string{"x-api-key": huge}, credMalformed, "", ""},
		{"x-api-key twice, same key", map[string]string{"x-api-key": keyA + "," + keyA}, credOK, "x-api-key", keyA},
		{"x-api-key twice, different keys", map[string]string{"x-api-key": keyA + "," + keyB}, credAmbiguous, "", ""},
		{"bearer and x-api-key, same key", map[string]string{"authorization": "Bearer " + keyA, "x-api-key": keyA}, credOK, "bearer", keyA},
		{"bearer and x-api-key, different keys", map[string]string{"authorization": "Bearer " + keyA, "x-api-key": keyB}, credAmbiguous, "", ""},
		{"basic and x-api-key, different keys", map[string]string{"authorization": basic(keyA + ":"), "x-api-key": keyB}, credAmbiguous, "", ""},
		{"valid bearer, malformed x-api-key", map[string]string{"authorization": "Bearer " + keyA, "x-api-key": "a b"}, credMalformed, "", ""},
		{"valid x-api-key, unknown scheme", map[string]string{"authorization": "Token x", "x-api-key": keyA}, credMalformed, "", ""},
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
	if c, status := ExtractCredential(h); status != credOK || c.Value.Reveal() != keyA {
		t.Fatalf("got %d %s", status, c.Value)
	}
}
