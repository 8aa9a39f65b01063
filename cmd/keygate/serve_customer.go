package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keygate/keygate/customer"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
	"github.com/keygate/keygate/session"
)

// customerFlags configure the customer key API of `keygate serve`: the
// dashboard sessions it trusts and where it is mounted.
type customerFlags struct {
	sessionJWKS, sessionIssuer, sessionAudience string
	accountClaim, roleClaim                     string
	jwksFloor                                   time.Duration
	prefix, origins                             string
}

func (c *customerFlags) register(fs *flagSet) {
	fs.StringVar(&c.sessionJWKS, "session-jwks", "", "JWKS URL or file of the identity provider whose dashboard sessions may manage their account's keys (unset: customer API off)")
	fs.StringVar(&c.sessionIssuer, "session-issuer", "", "required iss of session tokens")
	fs.StringVar(&c.sessionAudience, "session-audience", "", "required aud of session tokens")
	fs.StringVar(&c.accountClaim, "session-account-claim", "account", "session token claim naming the account")
	fs.StringVar(&c.roleClaim, "session-role-claim", "", "session token claim with the user's role: viewer (and any unknown role) is read-only; owner, admin, editor, developer, member may write (unset: every session may write)")
	fs.DurationVar(&c.jwksFloor, "session-jwks-min-refresh", 10*time.Second, "least time between two reads of the JWKS (a token with an unknown kid triggers one)")
	fs.StringVar(&c.prefix, "customer-api-prefix", customer.DefaultPrefix, "path prefix of the customer key API on --http-addr")
	fs.StringVar(&c.origins, "customer-api-origins", "", "comma-separated browser origins allowed to call the customer API (CORS; unset: off)")
}

func (c *customerFlags) validate() error {
	if c.sessionJWKS == "" {
		return nil
	}
	switch {
	case c.sessionIssuer == "" || c.sessionAudience == "":
		return fmt.Errorf("%w: --session-jwks needs --session-issuer and --session-audience", errUsage)
	case c.accountClaim == "":
		return fmt.Errorf("%w: --session-account-claim must name a claim", errUsage)
	case c.jwksFloor < time.Second || c.jwksFloor > time.Hour:
		return fmt.Errorf("%w: --session-jwks-min-refresh must be between 1s and 1h", errUsage)
	}
	if err := customer.ValidatePrefix(c.prefix); err != nil {
		return fmt.Errorf("%w: --customer-api-prefix: %v", errUsage, err)
	}
	_, err := c.originList()
	return err
}

// originList parses --customer-api-origins: each an exact scheme://host[:port].
func (c *customerFlags) originList() ([]string, error) {
	var out []string
	for _, o := range strings.Split(c.origins, ",") {
		if o = strings.TrimSpace(o); o == "" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
			return nil, fmt.Errorf("%w: --customer-api-origins: %q is not an origin such as https://dashboard.example.com", errUsage, o)
		}
		out = append(out, o)
	}
	return out, nil
}

// customerAPI mounts the customer API on mux, or says at start-up why it
// is off. A JWKS file that cannot be read is fatal; an unreachable URL is
// not (the identity provider may come up later), the keys are read on the
// first session.
func (c *customerFlags) customerAPI(ctx context.Context, mux *http.ServeMux, store *keystore.Store, cache keystore.Invalidator, lim customer.Limiter,
	policy *policies.Engine, log *slog.Logger) error {
	if c.sessionJWKS == "" {
		log.Info("customer API off: set --session-jwks, --session-issuer and --session-audience to enable it")
		return nil
	}
	keys := &session.KeySet{Source: c.sessionJWKS, Floor: c.jwksFloor, Log: log,
		Client: &http.Client{Timeout: 5 * time.Second}}
	if err := keys.Load(ctx); err != nil {
		if !strings.HasPrefix(c.sessionJWKS, "http://") && !strings.HasPrefix(c.sessionJWKS, "https://") {
			return fmt.Errorf("--session-jwks: %w", err)
		}
		log.Warn("session keys unreadable at start; the customer API answers 503 until they are", "err", err)
	}
	verifier, err := session.NewVerifier(session.Config{Issuer: c.sessionIssuer, Audience: c.sessionAudience,
		AccountClaim: c.accountClaim, RoleClaim: c.roleClaim}, keys)
	if err != nil {
		return errors.Join(errUsage, err)
	}
	origins, _ := c.originList() // validated
	h := &customer.Handler{Store: store, Cache: cache, Sessions: verifier, Limits: lim, Policy: policy,
		Prefix: c.prefix, Origins: origins, Log: log}
	h.Register(mux)
	log.Info("customer API on", "prefix", c.prefix, "issuer", c.sessionIssuer, "audience", c.sessionAudience, "cors_origins", len(origins))
	return nil
}
