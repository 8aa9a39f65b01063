package policies

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func decodeDoc(t *testing.T, s string) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestDecisionLimits(t *testing.T) {
	tests := []struct {
		name   string
		limits string
		want   []Limit
		err    bool
	}{
		{name: "none", limits: `[]`, want: nil},
		{name: "rate and quota", limits: `[
			{"kind": "rate", "key": "key:k1:live", "limit": 60, "period": "1m", "burst": 10, "cost": 2},
			{"kind": "quota", "key": "site:s1:live", "limit": 1000, "period": "month", "cost": 1, "code": "POSTS_USED_UP"}]`,
			want: []Limit{
				{Kind: "rate", Key: "key:k1:live", Limit: 60, Period: time.Minute, Burst: 10, Cost: 2, Code: "RATE_LIMITED"},
				{Kind: "quota", Key: "site:s1:live", Limit: 1000, Cost: 1, Code: "POSTS_USED_UP"},
			}},
		{name: "cost defaults to 1", limits: `[{"kind": "rate", "key": "k", "limit": 5, "period": "1h"}]`,
			want: []Limit{{Kind: "rate", Key: "k", Limit: 5, Period: time.Hour, Cost: 1, Code: "RATE_LIMITED"}}},
		{name: "not an array", limits: `{}`, err: true},
		{name: "unknown kind", limits: `[{"kind": "burst", "key": "k", "limit": 5, "period": "1m"}]`, err: true},
		{name: "zero limit", limits: `[{"kind": "rate", "key": "k", "limit": 0, "period": "1m"}]`, err: true},
		{name: "string limit", limits: `[{"kind": "rate", "key": "k", "limit": "60", "period": "1m"}]`, err: true},
		{name: "negative cost", limits: `[{"kind": "rate", "key": "k", "limit": 5, "period": "1m", "cost": -1}]`, err: true},
		{name: "fractional", limits: `[{"kind": "rate", "key": "k", "limit": 1.5, "period": "1m"}]`, err: true},
		{name: "period too short", limits: `[{"kind": "rate", "key": "k", "limit": 5, "period": "10ms"}]`, err: true},
		{name: "period missing", limits: `[{"kind": "rate", "key": "k", "limit": 5}]`, err: true},
		{name: "quota per week", limits: `[{"kind": "quota", "key": "k", "limit": 5, "period": "week"}]`, err: true},
		{name: "empty key", limits: `[{"kind": "quota", "key": "", "limit": 5, "period": "month"}]`, err: true},
		{name: "key with spaces", limits: `[{"kind": "quota", "key": "a b", "limit": 5, "period": "month"}]`, err: true},
		{name: "lower-case code", limits: `[{"kind": "quota", "key": "k", "limit": 5, "period": "month", "code": "quota"}]`, err: true},
		{name: "too many", limits: `[` + strings.Repeat(`{"kind": "quota", "key": "k", "limit": 5},`, 8) + `{"kind": "quota", "key": "k", "limit": 5}]`, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := parseDecision(decodeDoc(t, `{"allow": true, "status": 200, "limits": `+tt.limits+`}`))
			if tt.err {
				if !errors.Is(err, ErrPolicy) {
					t.Fatalf("want ErrPolicy, got %v (%+v)", err, d.Limits)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, d.Limits); diff != "" {
				t.Errorf("limits (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLimitDenialsOfTheDefaultPolicy(t *testing.T) {
	e := NewEngine(defaultPolicy(t))
	for code, status := range map[string]int{"RATE_LIMITED": 429, "QUOTA_EXCEEDED": 403} {
		d, ok := e.LimitDenial(code)
		if !ok || d.Allow || d.Status != status || d.Code != code || len(d.Body) == 0 {
			t.Errorf("%s: %+v, %t", code, d, ok)
		}
	}
	if _, ok := e.LimitDenial("NOPE"); ok {
		t.Error("an unknown code has a denial")
	}
}

// TestInvalidDenialRowsAreLeftOut: a config.errors row that is no valid
// deny does not stop the policy from loading; keygate's built-in row
// answers for it.
func TestInvalidDenialRowsAreLeftOut(t *testing.T) {
	b, err := Load(Default(), BuiltIn)
	if err != nil {
		t.Fatal(err)
	}
	errs := b.Documents["keygate"].(map[string]any)["config"].(map[string]any)["errors"].(map[string]any)
	errs["AUTHZ_UNAVAILABLE"] = map[string]any{"status": json.Number("302"), "message": "Moved"}
	p, err := Compile(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := p.Denial("AUTHZ_UNAVAILABLE"); ok {
		t.Errorf("invalid row kept: %+v", d)
	}
	if d, ok := BuiltinDenial("AUTHZ_UNAVAILABLE"); !ok || d.Status != 503 {
		t.Errorf("built-in row: %+v %t", d, ok)
	}
	if _, ok := p.Denial("INTERNAL_ERROR"); !ok {
		t.Error("valid rows must stay")
	}
}
