package extauthz

import (
	"context"
	"net/http"
	"time"

	"github.com/keygate/keygate/keystore"
)

// mint exchanges an API key for a token pair. The key comes in the body,
// or by any scheme Check accepts (Basic with the key as username, Bearer,
// X-API-Key); both at once must agree.
func (x *Exchange) mint(ctx context.Context, r *http.Request, body []byte) reply {
	headers := map[string]string{}
	j := headerJoin{m: headers}
	for _, name := range credentialHeaderNames {
		for _, v := range r.Header.Values(name) {
			j.add(name, v)
		}
	}
	j.done()
	req := Request{Method: r.Method, Host: r.Host, Headers: headers, ClientAddress: x.Throttle.proxies().ClientAddr(r)}
	if len(body) > 0 {
		key, ok := field(body, "apiKey")
		if !ok {
			return x.refuse(denyInvalidRequest)
		}
		req.BodyKey = keystore.Secret(key)
	}
	res, fail := x.decideMint(ctx, req)
	if fail != nil {
		return *fail
	}
	rep := x.mintFor(ctx, &res)
	rep.res = &res
	return rep
}

// mintFor mints a pair for the key res allowed.
func (x *Exchange) mintFor(ctx context.Context, res *Result) reply {
	switch {
	case res.Input.Credential.Kind == string(KindToken):
		return x.refuse(denyTokenNotKey)
	case !res.Decision.Allow:
		return reply{deny: res.Decision}
	case res.KeyID == "":
		// A policy whose mint route is public lets requests through
		// without a key; there is nothing to mint for.
		return x.refuse(denyMissingKey)
	}
	now := x.Gate.Clock()
	refresh, digest, fail := x.newRefresh()
	if fail != nil {
		return *fail
	}
	rep := x.issue(res.KeyID, res.Mode, refresh, now)
	if rep.pair == nil {
		return rep
	}
	if err := x.Refresh.IssueRefreshToken(ctx, res.KeyID, digest, now.Add(x.RefreshTTL)); err != nil {
		x.Gate.Logger().Error("token exchange: storing a refresh token failed", "err", err, "key_id", res.KeyID)
		return x.refuse(denyUnavailable)
	}
	return rep
}

// decideMint asks the policy its question for a mint: would req's
// credential be allowed on the declared mint route? One policy snapshot
// answers both which route and the decision.
func (x *Exchange) decideMint(ctx context.Context, req Request) (Result, *reply) {
	pol := x.Gate.Snapshot()
	route, ok := mintRoute(pol)
	if !ok {
		x.Gate.Logger().Error("token exchange: the policy declares no config.routes.mint_route; refusing to mint")
		rep := reply{deny: Deny(pol, denyPolicyError, "mint_route")}
		return Result{}, &rep
	}
	req.Path = route
	return x.Gate.DecideWith(ctx, pol, req), nil
}

// mintRoute is the policy's declared mint route.
func mintRoute(pol Decider) (string, bool) {
	if m, ok := pol.(interface{ MintRoute() (string, bool) }); ok {
		return m.MintRoute()
	}
	return "", false
}

// newRefresh makes a refresh token and the digest it is stored under.
func (x *Exchange) newRefresh() (string, keystore.Digest, *reply) {
	raw, err := x.Tokens.Format().NewRefresh()
	if err != nil {
		x.Gate.Logger().Error("token exchange: refresh token", "err", err)
		rep := x.refuse(denyInternal)
		return "", "", &rep
	}
	return raw, x.Gate.Digests(raw)[0], nil
}

// issue mints the access token and completes the pair.
func (x *Exchange) issue(keyID, mode, refresh string, now time.Time) reply {
	access, claims, err := x.Tokens.Mint(keyID, mode, now, x.TTL)
	if err != nil {
		x.Gate.Logger().Error("token exchange: minting an access token failed", "err", err, "key_id", keyID)
		return x.refuse(denyUnavailable)
	}
	return reply{pair: &tokenPair{TokenType: "Bearer", ExpiresIn: int64(claims.ExpiresAt.Sub(claims.IssuedAt) / time.Second),
		AccessToken: access, RefreshToken: refresh}}
}
