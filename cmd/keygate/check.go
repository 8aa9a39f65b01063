package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"

	"github.com/keygate/keygate/extauthz"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
)

// check explains the decision for one request, using the same store and
// policy a server would, without starting one.
func (e environment) check(ctx context.Context, args []string) (err error) {
	fs := e.flags("check")
	var sf storeFlags
	sf.register(fs)
	method := fs.String("method", "GET", "request method")
	path := fs.String("path", "/", "request path (with query)")
	host := fs.String("host", "localhost", "request host")
	dir := fs.String("policies", "", "policy directory (default: the built-in policies)")
	var headers stringList
	fs.Var(&headers, "H", `request header "Name: value" (repeatable), e.g. -H "Authorization: Bearer $KEY"`)
	if _, err := fs.parse(args); err != nil {
		return err
	}
	req := extauthz.Request{Method: *method, Host: *host, Path: *path, Headers: map[string]string{}}
	for _, h := range headers.values {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			return fmt.Errorf("%w: check: -H %q: want \"Name: value\"", errUsage, h)
		}
		name = strings.ToLower(strings.TrimSpace(name))
		if old, dup := req.Headers[name]; dup {
			value = old + "," + strings.TrimSpace(value)
		}
		req.Headers[name] = strings.TrimSpace(value)
	}

	format, digester, err := e.keyTools(sf)
	if err != nil {
		return err
	}
	if digester, err = e.withTokenSecret(sf.store, digester, false); err != nil {
		return err
	}
	store, err := keystore.Open(ctx, sf.store, keystore.Options{Format: format, Digester: digester})
	if err != nil {
		return err
	}
	defer closeInto(&err, store)
	cache, err := keystore.NewCache(store, keystore.CacheConfig{})
	if err != nil {
		return err
	}
	defer cache.Close()
	policy, err := loadPolicy(ctx, *dir)
	if err != nil {
		return err
	}
	a := &extauthz.Authorizer{Facts: cache, Policy: policies.NewEngine(policy), Format: format, Digester: digester,
		Log: slog.New(slog.NewTextHandler(e.stderr, nil))}
	if ring, err := readKeyring(ctx, store, format); err == nil {
		a.Tokens = ring
	} else {
		a.Log.Warn("access tokens cannot be checked", "err", err)
	}
	res := a.Authorize(ctx, req)
	x := explain(res)
	why := policy.Explain(res.Decision.Rule)
	x.Why = &why
	return e.printJSON(x)
}

// explanation is what `keygate check` prints.
type explanation struct {
	Allow   bool   `json:"allow"`
	Status  int    `json:"status"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	Rule    string `json:"rule"`
	// Why says where in the policy the rule that decided lives and what
	// its METADATA says about it.
	Why      *policies.RuleDoc `json:"why,omitempty"`
	Upstream map[string]string `json:"upstream_headers,omitempty"`
	Remove   []string          `json:"removed_headers,omitempty"`
	Response map[string]string `json:"response_headers,omitempty"`
	Body     json.RawMessage   `json:"body,omitempty"`
	Limits   []policies.Limit  `json:"limits,omitempty"` // what the allow would charge; check charges nothing
	Input    map[string]any    `json:"input"`
}

func explain(res extauthz.Result) explanation {
	d := res.Decision
	x := explanation{Allow: d.Allow, Status: d.Status, Code: d.Code, Message: d.Message, Rule: d.Rule,
		Upstream: res.Upstream, Remove: res.Remove, Response: d.ResponseHeaders, Limits: d.Limits}
	if !d.Allow {
		x.Response = extauthz.DenyHeaders(d, res.Input.Credential.Status != policies.CredMissing)
		x.Body = extauthz.DenyBody(d)
	}
	x.Input, _ = res.Input.AsMap()
	return x
}
