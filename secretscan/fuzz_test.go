package secretscan

import (
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/tokens"
)

// FuzzParseReports: any body parses or fails cleanly, and what parses is
// within the bounds the handler relies on. Every parsed token also goes
// through the checks the handler makes of token shapes (access-token
// verification, refresh-token shape) without a panic, and no forged access
// token verifies.
func FuzzParseReports(f *testing.F) {
	f.Add([]byte(`[{"token":"kg_live_abc","type":"keygate_api_key","url":"https://github.com/o/r","source":"content"}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"token":""}]`))
	f.Add([]byte(`{"token":"x"}`))
	f.Add([]byte(`[{"token":"a"},{"token":"b","url":"\u0000"}]`))
	f.Add([]byte(`[null]`))
	// Access and refresh token shapes: a genuine-looking access token, one
	// with no signature, a truncated payload, a refresh token of the right
	// length, too short, and with a character outside base64url.
	f.Add([]byte(`[{"token":"kg_at_AQFsAAABmsXo0AAAAAGaxf-YAARza18xB2tleV9hYmM.GJmV5oVo0d3Rkb1N4cVh0d0Z0bWFnS2F1dWpXWXlQa1E","type":"keygate_access_token","url":"https://github.com/o/r/blob/main/.env"}]`))
	f.Add([]byte(`[{"token":"kg_at_AQFsAAABmsXo0AAAAAGaxf-YAARza18xB2tleV9hYmM.","type":"keygate_access_token"}]`))
	f.Add([]byte(`[{"token":"kg_at_AQ.GJmV5oVo0d3Rkb1N4cVh0d0Z0bWFnS2F1dWpXWXlQa1E"}]`))
	f.Add([]byte(`[{"token":"kg_rt_Pkmg0d3Rkb1N4cVh0d0Z0bWFnS2F1dWpXWXlQa1EAAAA","type":"keygate_refresh_token","source":"commit"}]`))
	f.Add([]byte(`[{"token":"kg_rt_Pkmg"},{"token":"kg_rt_Pkmg0d3Rkb1N4cVh0d0Z0bWFnS2F1dWpXWXlQa1E+AAA"}]`))
	ring := tokens.NewKeyring(tokens.NewFormat("kg"))
	now := time.Unix(1_900_000_000, 0)
	if err := ring.Set([]tokens.SigningKey{{ID: "sk_1", Secret: []byte("fuzz-signing-secret-0123456789ab"), NotBefore: now.Add(-time.Hour)}}); err != nil {
		f.Fatal(err)
	}
	refresh := tokens.NewFormat("kg")
	f.Fuzz(func(t *testing.T, body []byte) {
		reports, err := ParseReports(body)
		if err != nil {
			if reports != nil {
				t.Fatal("reports with an error")
			}
			return
		}
		if len(reports) == 0 || len(reports) > MaxReports {
			t.Fatalf("%d reports", len(reports))
		}
		for _, r := range reports {
			if r.Token == "" || len(r.Token) > maxToken || len(r.URL) > maxField || len(r.Type) > maxField || len(r.Source) > maxField {
				t.Fatalf("report out of bounds: %d %d %d %d", len(r.Token), len(r.URL), len(r.Type), len(r.Source))
			}
			if _, err := ring.Verify(r.Token, now); err == nil || errors.Is(err, tokens.ErrExpired) {
				t.Fatalf("a fuzzed access token verified: %q", r.Token)
			}
			_ = refresh.LooksRefresh(r.Token)
		}
	})
}
