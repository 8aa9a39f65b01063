package decisionlog

import "github.com/keygate/keygate/policies"

// The policy input as the decision log writes it: the same document the
// policy saw (input.request, input.credential, …, same names), encoded
// straight from Go values rather than through OPA's AST, which costs the
// writer several times more per line.

type input struct {
	Request    request    `json:"request"`
	Credential credential `json:"credential"`
	Key        *key       `json:"key,omitempty"`
	Site       *site      `json:"site,omitempty"`
	Account    *account   `json:"account,omitempty"`
	Public     *public    `json:"public,omitempty"`
}

type request struct {
	Method  string            `json:"method"`
	Host    string            `json:"host"`
	Path    string            `json:"path"`
	Query   string            `json:"query"`
	PathOK  bool              `json:"path_ok"`
	Headers map[string]string `json:"headers"`
	Origin  *origin           `json:"origin,omitempty"`
}

type credential struct {
	Status string `json:"status"`
	Kind   string `json:"kind"`
	Scheme string `json:"scheme"`
}

type origin struct {
	Scheme      string `json:"scheme"`
	Host        string `json:"host"`
	Port        string `json:"port"`
	DefaultPort bool   `json:"default_port"`
}

type key struct {
	ID      string `json:"id"`
	Mode    string `json:"mode"`
	Name    string `json:"name"`
	Revoked bool   `json:"revoked"`
	Expired bool   `json:"expired"`
}

type site struct {
	ID      string           `json:"id"`
	Account string           `json:"account"`
	Active  bool             `json:"active"`
	Domains []string         `json:"domains"`
	Limits  map[string]int64 `json:"limits,omitempty"`
}

type account struct {
	ID     string           `json:"id"`
	Plan   string           `json:"plan"`
	Status string           `json:"status"`
	Limits map[string]int64 `json:"limits,omitempty"`
}

type public struct {
	Status  string   `json:"status"`
	Site    *site    `json:"site,omitempty"`
	Account *account `json:"account,omitempty"`
}

// logInput copies what the request contributed through redact: a client
// controls those strings, so a key pasted into a query or a header other
// than the credential headers is caught there. Facts from the store carry
// ids and names only.
func logInput(in *policies.Input, redact func(string) string) *input {
	r := in.Request
	out := &input{
		Request: request{Method: redact(r.Method), Host: redact(r.Host), Path: redact(r.Path), Query: redact(r.Query), PathOK: r.PathOK,
			Headers: make(map[string]string, len(r.Headers))},
		Credential: credential{Status: in.Credential.Status, Kind: in.Credential.Kind, Scheme: in.Credential.Scheme},
		Site:       siteOf(in.Site),
		Account:    accountOf(in.Account),
	}
	for k, v := range r.Headers {
		out.Request.Headers[redact(k)] = redact(v)
	}
	if o := r.Origin; o != nil {
		out.Request.Origin = &origin{Scheme: redact(o.Scheme), Host: redact(o.Host), Port: redact(o.Port), DefaultPort: o.DefaultPort}
	}
	if k := in.Key; k != nil {
		out.Key = &key{ID: k.ID, Mode: k.Mode, Name: k.Name, Revoked: k.Revoked, Expired: k.Expired}
	}
	if p := in.Public; p != nil {
		out.Public = &public{Status: p.Status, Site: siteOf(p.Site), Account: accountOf(p.Account)}
	}
	return out
}

func siteOf(s *policies.Site) *site {
	if s == nil {
		return nil
	}
	domains := s.Domains
	if domains == nil {
		domains = []string{}
	}
	return &site{ID: s.ID, Account: s.Account, Active: s.Active, Domains: domains, Limits: s.Limits}
}

func accountOf(a *policies.Account) *account {
	if a == nil {
		return nil
	}
	return &account{ID: a.ID, Plan: a.Plan, Status: a.Status, Limits: a.Limits}
}
