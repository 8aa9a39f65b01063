package policies

import (
	"sync"

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
	// ClientAddress is the client's IP address (input.request.client_address):
	// Envoy's source.address on gRPC, the address derived through
	// --trusted-proxies on forward-auth; "" when unknown. keygate sets it
	// only for a key with allowed_cidrs: the memo keys on every field, so an
	// address in every input would make each new client a memo miss.
	ClientAddress string
	// Headers are the request headers minus credentials, lower-case names.
	Headers map[string]string
	// Prefixes and ExactPath classify Path by the policy's data (see
	// pathIndex); the engine sets them, as input.request.prefixes and
	// input.request.exact_path, on the input it evaluates.
	Prefixes  map[string]string
	ExactPath string
	// CaseFolded lists the data's path strings that Path starts with only
	// when letter case is ignored (input.request.case_folded), so a policy
	// can refuse "/V1/SITES/x" without reading the raw path.
	CaseFolded []string
	// OwnSitePrefixes are the prefixes of Prefixes whose segment is the
	// key's site id (input.request.own_site_prefixes, sorted; absent when
	// none): the engine sets them, so a policy can tell "/v1/sites/{site}/…"
	// names the key's own site without comparing the id itself, and the
	// memo can leave the ids out of its key (memo.go).
	OwnSitePrefixes []string
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
	// Entitlements (input.key.scopes, allowed_cidrs, meta, limits,
	// remaining); absent from the input when empty or nil.
	Scopes       []string
	AllowedCIDRs []string
	Meta         map[string]string
	Limits       map[string]int64
	Remaining    *int64
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
//
// It runs on every decision the memo has not seen, so it allocates little:
// terms come from one slab, and the field names are shared terms (fields).
// A decision converts through the cache of parts (input_cache.go) instead.
func (in *Input) Value() ast.Value { return in.value(nil) }

// value is Value, with the parts the cache has (enc, scratch to encode
// them in; nil for none) shared rather than made again.
func (in *Input) value(enc partBuffer) ast.Value {
	t := &terms{}
	// Each object is made once with all its items: inserting into a made
	// object costs an allocation per item, and more as its map grows.
	var items [6][2]*ast.Term
	n := 0
	add := func(k *ast.Term, v *ast.Term) {
		items[n] = [2]*ast.Term{k, v}
		n++
	}
	add(fields.request, t.part(enc, part{kind: partRequest, request: &in.Request}))
	if cred, ok := credentials()[[3]string{in.Credential.Status, in.Credential.Kind, in.Credential.Scheme}]; ok {
		add(fields.credential, cred)
	} else {
		add(fields.credential, t.term(ast.NewObject(
			t.str(fields.status, in.Credential.Status),
			t.str(fields.kind, in.Credential.Kind),
			t.str(fields.scheme, in.Credential.Scheme),
		)))
	}
	if in.Key != nil {
		add(fields.key, t.part(enc, part{kind: partKey, key: in.Key}))
	}
	if in.Site != nil {
		add(fields.site, t.part(enc, part{kind: partSite, site: in.Site}))
	}
	if in.Account != nil {
		add(fields.account, t.part(enc, part{kind: partAccount, account: in.Account}))
	}
	if in.Public != nil {
		var pub [3][2]*ast.Term
		pub[0] = t.str(fields.status, in.Public.Status)
		m := 1
		if in.Public.Site != nil {
			pub[m] = [2]*ast.Term{fields.site, t.part(enc, part{kind: partSite, site: in.Public.Site})}
			m++
		}
		if in.Public.Account != nil {
			pub[m] = [2]*ast.Term{fields.account, t.part(enc, part{kind: partAccount, account: in.Public.Account})}
			m++
		}
		add(fields.public, t.term(ast.NewObject(pub[:m]...)))
	}
	return ast.NewObject(items[:n]...)
}

func (r *Request) value(t *terms, enc partBuffer) ast.Value {
	headers := make([][2]*ast.Term, 0, len(r.Headers))
	for k, v := range r.Headers {
		headers = append(headers, [2]*ast.Term{t.term(ast.String(k)), t.term(ast.String(v))})
	}
	var items [12][2]*ast.Term
	items[0], items[1] = t.str(fields.method, r.Method), t.str(fields.host, r.Host)
	items[2], items[3] = t.str(fields.path, r.Path), t.str(fields.query, r.Query)
	items[4] = t.boolean(fields.pathOK, r.PathOK)
	items[5] = [2]*ast.Term{fields.headers, emptyObject}
	if len(headers) > 0 {
		items[5] = t.item(fields.headers, ast.NewObject(headers...))
	}
	n := 6
	if len(r.Prefixes) > 0 {
		items[n] = [2]*ast.Term{fields.prefixes, t.part(enc, part{kind: partPrefixes, request: r})}
		n++
	} else if r.Prefixes != nil {
		items[n] = [2]*ast.Term{fields.prefixes, emptyObject}
		n++
	}
	if r.ExactPath != "" {
		items[n] = t.str(fields.exactPath, r.ExactPath)
		n++
	}
	if len(r.CaseFolded) > 0 {
		items[n] = t.item(fields.caseFolded, t.strings(r.CaseFolded))
		n++
	}
	if len(r.OwnSitePrefixes) > 0 {
		items[n] = t.item(fields.ownSitePrefixes, t.strings(r.OwnSitePrefixes))
		n++
	}
	if r.ClientAddress != "" {
		items[n] = t.str(fields.clientAddress, r.ClientAddress)
		n++
	}
	if r.Origin != nil {
		items[n] = t.item(fields.origin, ast.NewObject(
			t.str(fields.scheme, r.Origin.Scheme), t.str(fields.host, r.Origin.Host),
			t.str(fields.port, r.Origin.Port), t.boolean(fields.defaultPort, r.Origin.DefaultPort),
		))
		n++
	}
	return ast.NewObject(items[:n]...)
}

func (r *Request) prefixesValue(t *terms) ast.Value {
	prefixes := make([][2]*ast.Term, 0, len(r.Prefixes))
	for k, v := range r.Prefixes {
		prefixes = append(prefixes, [2]*ast.Term{t.term(ast.String(k)), t.term(ast.String(v))})
	}
	return ast.NewObject(prefixes...)
}

func (s *Site) value(t *terms) ast.Value {
	domains := make([]*ast.Term, len(s.Domains))
	for i, d := range s.Domains {
		domains[i] = t.term(ast.String(d))
	}
	obj := ast.NewObject(
		t.str(fields.id, s.ID), t.str(fields.account, s.Account), t.boolean(fields.active, s.Active),
		t.item(fields.domains, ast.NewArray(domains...)),
	)
	addLimits(obj, s.Limits)
	return obj
}

func (a *Account) value(t *terms) ast.Value {
	obj := ast.NewObject(t.str(fields.id, a.ID), t.str(fields.plan, a.Plan), t.str(fields.status, a.Status))
	addLimits(obj, a.Limits)
	return obj
}

// terms hands out *ast.Term from slabs of termSlab, one allocation per slab
// instead of one per term. A slab is never reused: the terms belong to the
// input value for as long as OPA holds it.
type terms struct{ slab []ast.Term }

// termSlab holds the values of a typical input (a key's: ~16 terms), the
// names being shared; 64 held the names too, and more went unused. The
// first slab is smaller: with its facts and request from the cache of
// parts (input_cache.go), a decision's input needs two or three terms.
const (
	termSlab      = 16
	termFirstSlab = 4
)

func (t *terms) term(v ast.Value) *ast.Term {
	if len(t.slab) == cap(t.slab) {
		n := termSlab
		if t.slab == nil {
			n = termFirstSlab
		}
		t.slab = make([]ast.Term, 0, n)
	}
	t.slab = append(t.slab, ast.Term{Value: v})
	return &t.slab[len(t.slab)-1]
}

// item is the field named k (a shared name term) with value v.
func (t *terms) item(k *ast.Term, v ast.Value) [2]*ast.Term {
	return [2]*ast.Term{k, t.term(v)}
}

func (t *terms) str(k *ast.Term, v string) [2]*ast.Term {
	if term, ok := vocabulary[v]; ok {
		return [2]*ast.Term{k, term}
	}
	return [2]*ast.Term{k, t.term(ast.String(v))}
}

// credentials are shared input.credential objects for every status, kind
// and scheme keygate sets: a few hundred objects made once instead of one
// per decision. They are made by the first decision rather than at package
// initialisation, which every keygate command (and serve's start before
// SERVING) would pay for: ~0.5 M instructions.
var credentials = sync.OnceValue(func() map[[3]string]*ast.Term {
	m := map[[3]string]*ast.Term{}
	for _, status := range []string{CredMissing, CredAmbiguous, CredMalformed, CredUnknown, CredUnavailable, CredFound, CredInvalidToken, CredExpiredToken} {
		for _, kind := range []string{"key", "token", ""} {
			for _, scheme := range []string{"bearer", "basic", "x-api-key", "bare", ""} {
				// Sorted now, before any evaluation shares it (sortKeys).
				m[[3]string{status, kind, scheme}] = sortKeys(ast.NewTerm(ast.NewObject(
					[2]*ast.Term{ast.StringTerm("status"), vocabulary[status]},
					[2]*ast.Term{ast.StringTerm("kind"), vocabulary[kind]},
					[2]*ast.Term{ast.StringTerm("scheme"), vocabulary[scheme]},
				)))
			}
		}
	}
	return m
})

// vocabulary are shared terms for the values most inputs carry (statuses,
// kinds, schemes, modes, methods): turning a string into an ast.Value costs
// an allocation, a shared term none. Nothing writes to an input's terms.
var vocabulary = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, s := range []string{"",
		CredMissing, CredAmbiguous, CredMalformed, CredUnknown, CredUnavailable, CredFound, CredInvalidToken, CredExpiredToken,
		"key", "token", "bearer", "basic", "x-api-key", "bare", "live", "test", "active", "suspended", "closed",
		"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "http", "https"} {
		m[s] = ast.StringTerm(s)
	}
	return m
}()

func (t *terms) boolean(k *ast.Term, v bool) [2]*ast.Term {
	return [2]*ast.Term{k, ast.InternedTerm(v)} // shared true/false terms
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
	obj.Insert(fields.limits, ast.NewTerm(ast.NewObject(kv...)))
}
