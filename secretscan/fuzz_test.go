package secretscan

import (
	"testing"
)

// FuzzParseReports: any body parses or fails cleanly, and what parses is
// within the bounds the handler relies on.
func FuzzParseReports(f *testing.F) {
	f.Add([]byte(`[{"token":"kg_live_abc","type":"keygate_api_key","url":"https://github.com/o/r","source":"content"}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"token":""}]`))
	f.Add([]byte(`{"token":"x"}`))
	f.Add([]byte(`[{"token":"a"},{"token":"b","url":"\u0000"}]`))
	f.Add([]byte(`[null]`))
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
		}
	})
}
