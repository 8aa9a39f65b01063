package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/extauthz"
	"github.com/keygate/keygate/internal/ascii"
	"github.com/keygate/keygate/policies"
)

func (e *environment) checkCommand() *cobra.Command {
	var cfg coreConfig
	var method, path, host, client string
	var headers stringList
	c, fs := e.newLeaf("check", "explain the decision for one request (reads the store; asks no server)", e.noArgs,
		func(ctx context.Context, _ []string) error {
			req, err := checkRequest(method, path, host, client, headers.values)
			if err != nil {
				return err
			}
			return e.check(ctx, cfg, req)
		})
	c.Long = `Explain the decision keygate would make for one request: the allow or deny,
the rule that decided, the upstream or response headers and the policy input.

check does not ask a running server: it reads the same store (--store) and
policy (--policies) a server would, and decides in this process. It charges
no rate limit or quota.

Exit status: 0 when the request would be allowed, 3 when it would be denied
(the explanation is printed either way), 2 for a usage mistake, 1 when the
decision could not be made (store or policy unreadable).`
	c.Example = `  keygate check --path /v1/videos -H "Authorization: Bearer $KEY"
  keygate check --method POST --path /v1/sites/acme-web/x -H "X-API-Key: $KEY" --policies ./my-policy`
	cfg.register(fs)
	fs.StringVar(&method, "method", "GET", "request method")
	fs.StringVar(&path, "path", "/", "request path (with query)")
	fs.StringVar(&host, "host", "localhost", "request host")
	fs.VarP(&headers, "header", "H", `request header "Name: value" (repeatable), e.g. -H "Authorization: Bearer $KEY"`)
	fs.StringVar(&client, "client-address", "", "the client's IP address, checked against a key's allowed CIDRs (unset: unknown, which such a key is refused)")
	return c
}

// check explains the decision for one request, built by the same
// constructor as serve's, without starting a server.
func (e *environment) check(ctx context.Context, cfg coreConfig, req extauthz.Request) (err error) {
	log := slog.New(slog.NewTextHandler(e.stderr, nil))
	c, err := e.newCore(ctx, cfg, log, false, nil, nil)
	if err != nil {
		return err
	}
	defer closeInto(&err, c)
	if ring, err := readKeyring(ctx, c.store, c.format); err == nil {
		c.authz.Tokens = ring
	} else {
		log.Warn("access tokens cannot be checked", "err", err)
	}
	res := c.authz.Authorize(ctx, req)
	x := explain(res)
	why := c.policy.engine.Current().Explain(res.Decision.Rule)
	x.Why = &why
	if err := e.printJSON(x); err != nil {
		return err
	}
	if !res.Decision.Allow {
		return fmt.Errorf("%w: %d %s (exit status 3)", errDenied, res.Decision.Status, res.Decision.Code)
	}
	return nil
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
	// The counters as they would be charged: "{key}" and the like filled in
	// (serve refuses a request whose limits cannot be, as POLICY_ERROR).
	if filled, err := policies.CounterKeys(d.Limits, res.Input); err == nil {
		x.Limits = filled
	}
	if !d.Allow {
		x.Response = extauthz.DenyHeaders(d, res.Input.Credential.Status != policies.CredMissing)
		x.Body = extauthz.DenyBody(d)
	}
	x.Input, _ = res.Input.AsMap()
	return x
}

// checkRequest is the request `keygate check` explains.
func checkRequest(method, path, host, client string, headers []string) (extauthz.Request, error) {
	req := extauthz.Request{Method: method, Host: host, Path: path, Headers: map[string]string{}}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			return req, fmt.Errorf("%w: check: -H %q: want \"Name: value\"", errUsage, h)
		}
		name = ascii.Lower(strings.TrimSpace(name))
		if old, dup := req.Headers[name]; dup {
			value = old + "," + strings.TrimSpace(value)
		}
		req.Headers[name] = strings.TrimSpace(value)
	}
	if client != "" {
		addr, err := netip.ParseAddr(client)
		if err != nil {
			return req, fmt.Errorf("%w: check: --client-address %q: not an IP address", errUsage, client)
		}
		req.ClientAddress = addr.Unmap()
	}
	return req, nil
}
