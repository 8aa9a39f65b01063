package policies

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// parseDecisionValue is parseDecision for a decision still in OPA's form,
// without converting it to JSON first. It reads the well-formed documents
// (every field of the expected type and within bounds) itself; anything
// else goes through parseDecision, so a malformed document gets exactly
// the error it always did.
func parseDecisionValue(v ast.Value) (Decision, error) {
	if d, ok := fastDecision(v); ok {
		return d, nil
	}
	j, err := ast.JSON(v)
	if err != nil {
		return Decision{}, err
	}
	return parseDecision(j)
}

// Field names as terms, so looking one up allocates nothing.
var fieldTerms = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, n := range []string{"allow", "status", "code", "message", "rule", "keep_credentials", "spend_use",
		"headers", "response_headers", "body", "content_type", "limits",
		"kind", "key", "limit", "cost", "period", "burst"} {
		m[n] = ast.StringTerm(n)
	}
	return m
}()

func vfield(doc ast.Object, name string) *ast.Term { return doc.Get(fieldTerms[name]) }

// fastDecision: false means "let parseDecision decide".
func fastDecision(v ast.Value) (Decision, bool) {
	doc, ok := v.(ast.Object)
	if !ok {
		return Decision{}, false
	}
	var d Decision
	allow, ok := vbool(doc, "allow")
	if !ok || !allow.set {
		return Decision{}, false
	}
	d.Allow = allow.v
	status, ok := vint(doc, "status", 0, 999)
	switch {
	case !ok:
		return Decision{}, false
	case status == 0 && d.Allow:
		status = 200
	case d.Allow && status != 200, !d.Allow && (status < 400 || status > 599):
		return Decision{}, false
	}
	d.Status = int(status)
	if d.Code, ok = vstr(doc, "code", 64); !ok || !d.Allow && !validCode(d.Code) {
		return Decision{}, false
	}
	if d.Message, ok = vstr(doc, "message", maxMessage); !ok {
		return Decision{}, false
	}
	if d.Rule, ok = vstr(doc, "rule", 128); !ok {
		return Decision{}, false
	}
	keep, ok1 := vbool(doc, "keep_credentials")
	spend, ok2 := vbool(doc, "spend_use")
	if !ok1 || !ok2 {
		return Decision{}, false
	}
	d.KeepCredentials, d.SpendUse = keep.v, spend.v
	if d.Headers, ok = vheaders(doc, "headers"); !ok {
		return Decision{}, false
	}
	if d.ResponseHeaders, ok = vheaders(doc, "response_headers"); !ok {
		return Decision{}, false
	}
	if d.ContentType, ok = vstr(doc, "content_type", 128); !ok || !validContentType(d.ContentType) {
		return Decision{}, false
	}
	if d.Limits, ok = vlimits(doc); !ok {
		return Decision{}, false
	}
	// A body is JSON-encoded as parseDecision encodes it: the slow way.
	if b := vfield(doc, "body"); b != nil {
		_, null := b.Value.(ast.Null)
		return d, null
	}
	return d, true
}

type optBool struct{ v, set bool }

func vbool(doc ast.Object, name string) (optBool, bool) {
	t := vfield(doc, name)
	if t == nil {
		return optBool{}, true
	}
	b, ok := t.Value.(ast.Boolean)
	return optBool{v: bool(b), set: true}, ok
}

func vint(doc ast.Object, name string, min, max int64) (int64, bool) {
	t := vfield(doc, name)
	if t == nil {
		return 0, true
	}
	n, ok := t.Value.(ast.Number)
	if !ok {
		return 0, false
	}
	i, err := json.Number(n).Int64()
	return i, err == nil && i >= min && i <= max
}

func vstr(doc ast.Object, name string, max int) (string, bool) {
	t := vfield(doc, name)
	if t == nil {
		return "", true
	}
	s, ok := t.Value.(ast.String)
	return string(s), ok && len(s) <= max && !strings.ContainsAny(string(s), "\x00\r\n")
}

func vheaders(doc ast.Object, name string) (map[string]string, bool) {
	t := vfield(doc, name)
	if t == nil {
		return nil, true
	}
	if _, null := t.Value.(ast.Null); null {
		return nil, true
	}
	m, ok := t.Value.(ast.Object)
	if !ok || m.Len() > maxHeaders {
		return nil, false
	}
	out := make(map[string]string, m.Len())
	bad := m.Until(func(k, v *ast.Term) bool {
		ks, ok1 := k.Value.(ast.String)
		vs, ok2 := v.Value.(ast.String)
		if !ok1 || !ok2 || !ValidHeaderName(string(ks)) || !validHeaderValue(string(vs)) {
			return true
		}
		out[string(ks)] = string(vs)
		return false
	})
	return out, !bad
}

func vlimits(doc ast.Object) ([]Limit, bool) {
	t := vfield(doc, "limits")
	if t == nil {
		return nil, true
	}
	if _, null := t.Value.(ast.Null); null {
		return nil, true
	}
	arr, ok := t.Value.(*ast.Array)
	if !ok || arr.Len() > maxLimits {
		return nil, false
	}
	if arr.Len() == 0 {
		return nil, true
	}
	out := make([]Limit, 0, arr.Len())
	for i := 0; i < arr.Len(); i++ {
		l, ok := vlimit(arr.Elem(i).Value)
		if !ok {
			return nil, false
		}
		out = append(out, l)
	}
	return out, true
}

func vlimit(v ast.Value) (Limit, bool) {
	doc, ok := v.(ast.Object)
	if !ok {
		return Limit{}, false
	}
	var l Limit
	kind, ok1 := vstr(doc, "kind", 16)
	key, ok2 := vstr(doc, "key", maxLimitKey)
	period, ok3 := vstr(doc, "period", 16)
	l.Kind, l.Key = kind, key
	if !ok1 || !ok2 || !ok3 || l.Key == "" || strings.ContainsAny(l.Key, " \t") {
		return Limit{}, false
	}
	if l.Limit, ok = vnum(doc, "limit", 1, 1); !ok {
		return Limit{}, false
	}
	if l.Cost, ok = vnum(doc, "cost", 0, 1); !ok {
		return Limit{}, false
	}
	switch l.Kind {
	case "rate":
		var err error
		if l.Burst, ok = vnum(doc, "burst", 1, 0); !ok {
			return Limit{}, false
		}
		if l.Period, err = time.ParseDuration(period); err != nil || l.Period < minRatePeriod || l.Period > maxRatePeriod {
			return Limit{}, false
		}
	case "quota":
		if period != "month" && period != "" {
			return Limit{}, false
		}
	default:
		return Limit{}, false
	}
	if l.Code, ok = vstr(doc, "code", 64); !ok {
		return Limit{}, false
	}
	if l.Code == "" {
		l.Code = defaultLimitCodes[l.Kind]
	}
	return l, validCode(l.Code)
}

func vnum(doc ast.Object, name string, min, def int64) (int64, bool) {
	if vfield(doc, name) == nil {
		return def, true
	}
	return vint(doc, name, min, maxLimitNumber)
}
