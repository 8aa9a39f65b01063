package policies

import (
	"context"
	"reflect"
	"slices"
	"testing"
)

func foldedNames(p *Policy) []string {
	var out []string
	for _, f := range p.folded {
		out = append(out, f.ref.String())
	}
	slices.Sort(out)
	return out
}

// The built-in policy's data-only rules are computed at load; rules that
// read input (even through another rule) are not. A set (accepted_kinds)
// stays a set: it is kept as OPA's term, not converted through JSON.
func TestFoldDefaultPolicy(t *testing.T) {
	got := foldedNames(defaultPolicy(t))
	for _, want := range []string{"data.keygate.authz.config", "data.keygate.authz.keep_credentials", "data.keygate.authz.limits_config", "data.keygate.authz.accepted_kinds"} {
		if !slices.Contains(got, want) {
			t.Errorf("%s not folded; folded: %v", want, got)
		}
	}
	for _, never := range []string{"data.keygate.authz.decision", "data.keygate.authz.route", "data.keygate.authz.plan", "data.keygate.authz.effective_limits", "data.keygate.authz.request_id"} {
		if slices.Contains(got, never) {
			t.Errorf("%s reads input but was folded", never)
		}
	}
}

// Folding changes no decision: the built-in policy decides a spread of
// inputs alike with and without the folded values.
func TestFoldSameDecisions(t *testing.T) {
	p := defaultPolicy(t)
	if len(p.folded) == 0 {
		t.Fatal("nothing folded")
	}
	unfolded := *p
	unfolded.folded = nil
	unfolded.memo = nil
	p.memo = nil
	inputs := map[string]func(*Input){
		"allow":         func(*Input) {},
		"metered":       func(in *Input) { in.Request.Method, in.Request.Path = "POST", "/v1/audio/generate" },
		"free plan":     func(in *Input) { in.Account.Plan = "free" },
		"revoked":       func(in *Input) { in.Key.Revoked = true },
		"site mismatch": func(in *Input) { in.Request.Path = "/v1/sites/other/x" },
		"public":        func(in *Input) { in.Request.Path = "/health" },
		"public site":   func(in *Input) { in.Request.Path = "/v1/public/site-a/x" },
		"bad path":      func(in *Input) { in.Request.PathOK = false },
		"case folded":   func(in *Input) { in.Request.Path = "/V1/SITES/site-a" },
		"missing": func(in *Input) {
			in.Credential = Credential{Status: CredMissing}
			in.Key, in.Site, in.Account = nil, nil, nil
		},
		"not accepted":   func(in *Input) { in.Credential.Scheme = "body"; in.Credential.Kind = "token" },
		"site overrides": func(in *Input) { in.Site.Limits = map[string]int64{"rate": 7} },
	}
	ctx := context.Background()
	for name, edit := range inputs {
		in := proInput()
		edit(in)
		want, werr := unfolded.Decide(ctx, in)
		got, gerr := p.Decide(ctx, in)
		if (werr == nil) != (gerr == nil) || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: folded %+v, %v; unfolded %+v, %v", name, got, gerr, want, werr)
		}
	}
}

// A rule that reads input, or depends on one that does, or uses `with`, is
// not folded; a folded rule evaluated under `with` is computed again.
func TestFoldRespectsInputAndWith(t *testing.T) {
	p := compileWithData(t, `package keygate.authz

import rego.v1

flag := data.cfg.flag

method := input.request.method

shouted := upper(method)

via := v if {
	v := flag with data.cfg.flag as "overridden"
}

decision := {"allow": true, "rule": "r", "headers": {"x-flag": flag, "x-via": via, "x-method": shouted}}
`, map[string]any{"cfg": map[string]any{"flag": "orig"}})
	if got := foldedNames(p); !reflect.DeepEqual(got, []string{"data.keygate.authz.flag"}) {
		t.Fatalf("folded %v, want only flag", got)
	}
	d, err := p.Decide(context.Background(), proInput())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"x-flag": "orig", "x-via": "overridden", "x-method": "GET"}
	if !reflect.DeepEqual(d.Headers, want) {
		t.Fatalf("headers %v, want %v", d.Headers, want)
	}
}

// A data-only rule that errors under strict builtin errors is not folded:
// decisions meet the error (and fail closed) as they did before folding.
func TestFoldLeavesErringRules(t *testing.T) {
	p := compileWithData(t, `package keygate.authz

import rego.v1

numbers := [n | some s in data.cfg.list; n := to_number(s)]

decision := {"allow": true, "rule": "r", "headers": {"x-n": format_int(count(numbers), 10)}}
`, map[string]any{"cfg": map[string]any{"list": []any{"1", "x"}}})
	if got := foldedNames(p); len(got) != 0 {
		t.Fatalf("folded %v", got)
	}
	if d, err := p.Decide(context.Background(), proInput()); err == nil {
		t.Fatalf("decided %+v despite to_number(\"x\")", d)
	}
}

// A data-only rule that verifies certificates is not folded: the
// verification reads the clock, so its load-time answer would outlive a
// certificate's expiry until the next reload.
func TestFoldLeavesClockReadingRules(t *testing.T) {
	p := compileWithData(t, `package keygate.authz

import rego.v1

verified := crypto.x509.parse_and_verify_certificates(data.cfg.pem)

ok := verified[0]

decision := {"allow": true, "rule": "r", "headers": {"x-ok": sprintf("%v", [ok])}}
`, map[string]any{"cfg": map[string]any{"pem": "not a certificate"}})
	if got := foldedNames(p); len(got) != 0 {
		t.Fatalf("folded %v", got)
	}
	if p.memo != nil {
		t.Fatal("memo on for a policy that reads the clock")
	}
}
