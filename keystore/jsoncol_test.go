package keystore

import (
	"encoding/json"
	"reflect"
	"testing"
)

// The JSON column decoders give what json.Unmarshal gives, nil or empty
// alike: a site's empty domains must stay [] (not null) in the admin API
// and the policy input.
func TestDecodeJSONColumns(t *testing.T) {
	for _, raw := range []string{`[]`, `["a.example","b.example"]`, `null`, ` []`, `{}`, `[1]`, ``} {
		t.Run("list "+raw, func(t *testing.T) {
			var want []string
			wantErr := json.Unmarshal([]byte(raw), &want)
			got, err := decodeList(raw)
			if (err != nil) != (wantErr != nil) || err == nil && !reflect.DeepEqual(got, want) {
				t.Errorf("decodeList(%q) = %#v, %v; want %#v, %v", raw, got, err, want, wantErr)
			}
		})
	}
	for _, raw := range []string{`{}`, `{"team":"a"}`, `null`, ` {}`, `[]`, `{"a":1}`} {
		t.Run("meta "+raw, func(t *testing.T) {
			var want map[string]string
			wantErr := json.Unmarshal([]byte(raw), &want)
			if len(want) == 0 {
				want = nil
			}
			got, err := decodeMeta(raw)
			if (err != nil) != (wantErr != nil) || err == nil && !reflect.DeepEqual(got, want) {
				t.Errorf("decodeMeta(%q) = %#v, %v; want %#v, %v", raw, got, err, want, wantErr)
			}
		})
	}
	for _, raw := range []string{`{}`, `{"rate":600}`, `null`, `[]`} {
		t.Run("limits "+raw, func(t *testing.T) {
			var want Limits
			wantErr := json.Unmarshal([]byte(raw), &want)
			if len(want) == 0 {
				want = nil
			}
			got, err := parseLimits(raw)
			if (err != nil) != (wantErr != nil) || err == nil && !reflect.DeepEqual(got, want) {
				t.Errorf("parseLimits(%q) = %#v, %v; want %#v, %v", raw, got, err, want, wantErr)
			}
		})
	}
}
