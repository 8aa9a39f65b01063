package policies

import (
	"github.com/open-policy-agent/opa/v1/ast"
)

// Credential statuses the policy sees in input.credential.status.
const (
	CredMissing      = "missing"
	CredAmbiguous    = "ambiguous"
	CredMalformed    = "malformed"
	CredUnknown      = "unknown"
	CredUnavailable  = "unavailable"
	CredFound        = "found"
	CredInvalidToken = "invalid_token"
	CredExpiredToken = "expired_token"
)

// Input is what a policy decides on. It carries facts only: never a key, a
// token or any header that can hold one.
type Input struct {
	Request    Request
	Credential Credential
	// Key, Site and Account are set when the credential resolved to a key.
	Key     *Key
	Site    *Site
	Account *Account
	// Public is set on public site routes (config.routes.public_site_prefixes).
	Public *Public
}

// Request is the HTTP request being authorized.
type Request struct {
	Method string
	// Host is lower case, without port.
	Host string
	// Path excludes the query string.
	Path  string
	Query string
	// PathOK is false for paths that are not canonical (dot segments, empty
	// segments, encoded separators, ';', '#', control bytes, '\').
	PathOK bool
	// Origin is the parsed Origin header, else Referer; nil if neither parses.
	Origin *Origin
	// Headers are the request headers minus credentials, lower-case names.
	Headers map[string]string
}

// Origin is where a browser request comes from.
type Origin struct {
	Scheme, Host, Port string
	DefaultPort        bool
}

// Credential says what was presented and what became of it.
type Credential struct {
	Status string // one of the Cred* constants
	Kind   string // "key", "token" or ""
	Scheme string // "bearer", "basic", "x-api-key", "bare" (an access token without a scheme) or ""
}

// Key is a resolved key's facts.
type Key struct {
	ID, Mode, Name   string
	Revoked, Expired bool
}

// Site is a site's facts.
type Site struct {
	ID, Account string
	Domains     []string
	Active      bool
	// Limits override the plan's limits (input.site.limits; absent if none).
	Limits map[string]int64
}

// Account is an account's facts.
type Account struct {
	ID, Plan, Status string
	// Limits override the plan's limits (input.account.limits; absent if none).
	Limits map[string]int64
}

// Public is the site a public route names.
type Public struct {
	Status  string // CredFound, CredUnknown or CredUnavailable
	Site    *Site
	Account *Account
}

// Value converts the input to OPA's AST directly, skipping the JSON
// round trip that rego.EvalInput would make on every decision.
func (in *Input) Value() ast.Value {
	obj := ast.NewObject(
		item("request", in.Request.value()),
		item("credential", ast.NewObject(
			str("status", in.Credential.Status),
			str("kind", in.Credential.Kind),
			str("scheme", in.Credential.Scheme),
		)),
	)
	if in.Key != nil {
		obj.Insert(ast.StringTerm("key"), ast.NewTerm(ast.NewObject(
			str("id", in.Key.ID), str("mode", in.Key.Mode), str("name", in.Key.Name),
			boolean("revoked", in.Key.Revoked), boolean("expired", in.Key.Expired),
		)))
	}
	if in.Site != nil {
		obj.Insert(ast.StringTerm("site"), ast.NewTerm(in.Site.value()))
	}
	if in.Account != nil {
		obj.Insert(ast.StringTerm("account"), ast.NewTerm(in.Account.value()))
	}
	if in.Public != nil {
		p := ast.NewObject(str("status", in.Public.Status))
		if in.Public.Site != nil {
			p.Insert(ast.StringTerm("site"), ast.NewTerm(in.Public.Site.value()))
		}
		if in.Public.Account != nil {
			p.Insert(ast.StringTerm("account"), ast.NewTerm(in.Public.Account.value()))
		}
		obj.Insert(ast.StringTerm("public"), ast.NewTerm(p))
	}
	return obj
}

func (r *Request) value() ast.Value {
	headers := make([][2]*ast.Term, 0, len(r.Headers))
	for k, v := range r.Headers {
		headers = append(headers, [2]*ast.Term{ast.StringTerm(k), ast.StringTerm(v)})
	}
	obj := ast.NewObject(
		str("method", r.Method), str("host", r.Host), str("path", r.Path), str("query", r.Query),
		boolean("path_ok", r.PathOK),
		item("headers", ast.NewObject(headers...)),
	)
	if r.Origin != nil {
		obj.Insert(ast.StringTerm("origin"), ast.NewTerm(ast.NewObject(
			str("scheme", r.Origin.Scheme), str("host", r.Origin.Host), str("port", r.Origin.Port),
			boolean("default_port", r.Origin.DefaultPort),
		)))
	}
	return obj
}

func (s *Site) value() ast.Value {
	domains := make([]*ast.Term, len(s.Domains))
	for i, d := range s.Domains {
		domains[i] = ast.StringTerm(d)
	}
	obj := ast.NewObject(
		str("id", s.ID), str("account", s.Account), boolean("active", s.Active),
		item("domains", ast.NewArray(domains...)),
	)
	addLimits(obj, s.Limits)
	return obj
}

func (a *Account) value() ast.Value {
	obj := ast.NewObject(str("id", a.ID), str("plan", a.Plan), str("status", a.Status))
	addLimits(obj, a.Limits)
	return obj
}

func item(k string, v ast.Value) [2]*ast.Term { return [2]*ast.Term{ast.StringTerm(k), ast.NewTerm(v)} }

func str(k, v string) [2]*ast.Term { return [2]*ast.Term{ast.StringTerm(k), ast.StringTerm(v)} }

func boolean(k string, v bool) [2]*ast.Term {
	return [2]*ast.Term{ast.StringTerm(k), ast.BooleanTerm(v)}
}

// AsMap renders the input as plain JSON-able values, for `keygate check` and
// golden files.
func (in *Input) AsMap() (map[string]any, error) {
	v, err := ast.JSON(in.Value())
	if err != nil {
		return nil, err
	}
	m, _ := v.(map[string]any)
	return m, nil
}

// addLimits adds a "limits" object when there are overrides; without them
// the key is absent, so policies read it with object.get or a default.
func addLimits(obj ast.Object, limits map[string]int64) {
	if len(limits) == 0 {
		return
	}
	kv := make([][2]*ast.Term, 0, len(limits))
	for k, v := range limits {
		kv = append(kv, [2]*ast.Term{ast.StringTerm(k), ast.IntNumberTerm(int(v))})
	}
	obj.Insert(ast.StringTerm("limits"), ast.NewTerm(ast.NewObject(kv...)))
}
