package extauthz

import (
	"context"
	"errors"
	"net/http"

	"github.com/keygate/keygate/keystore"
)

// refresh redeems a refresh token (once) for a new pair.
func (x *Exchange) refresh(ctx context.Context, r *http.Request, body []byte) reply {
	raw, ok := field(body, "refreshToken")
	if !ok {
		return x.refuse(denyInvalidRequest)
	}
	if !x.Tokens.Format().LooksRefresh(raw) {
		return x.refuse(denyRefreshInvalid)
	}
	now := x.Gate.Clock()
	next, digest, fail := x.newRefresh()
	if fail != nil {
		return *fail
	}
	digests := x.Gate.Digests(raw)
	if pair, ok := x.grace.replay(digests[0], now); ok {
		return reply{pair: &pair} // a retry whose answer was lost
	}
	peek, live, err := x.Refresh.PeekRefreshToken(ctx, digests, now)
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		return x.refuse(denyRefreshInvalid)
	case err != nil:
		x.Gate.Logger().Error("token exchange: reading a refresh token failed", "err", err)
		return x.refuse(denyUnavailable)
	}
	// Decide on the new pair before the refresh token is used up: a deny or
	// an outage here leaves it valid, so the client's retry is not reuse.
	var rep reply
	if live {
		if rep = x.issue(peek.KeyID, string(peek.Mode), next, now); rep.pair == nil {
			return rep
		}
		// Decide on the new access token exactly as Check will: a key
		// revoked, expired or rotated since the last refresh gets no pair.
		res, fail := x.decideMint(ctx, Request{Method: r.Method, Host: r.Host, ClientAddress: x.Throttle.proxies().ClientAddr(r),
			Headers: map[string]string{"authorization": "Bearer " + rep.pair.AccessToken}})
		rep.res = &res
		switch {
		case fail != nil:
			return *fail
		case !res.Decision.Allow:
			return reply{deny: res.Decision, res: &res}
		case res.KeyID != peek.KeyID:
			// Cannot happen with a policy whose mint route is a key route;
			// refuse rather than hand out a pair nobody checked.
			x.Gate.Logger().Error("token exchange: the refresh probe resolved to another key", "key_id", peek.KeyID)
			return x.refuse(denyInternal)
		}
	}
	// Redeeming also answers for tokens that were not live: a used or
	// revoked one is reuse (its family dies), an old one has expired.
	grant, err := x.Refresh.RedeemRefreshToken(ctx, digests, digest, now.Add(x.RefreshTTL))
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		return x.refuse(denyRefreshInvalid)
	case errors.Is(err, keystore.ErrRefreshReused):
		// RFC 9700 §4.14.2: a used refresh token came back, so one of its
		// holders is not its owner. The key's live family is revoked.
		x.Gate.Logger().Warn("refresh token reused; the key's refresh tokens are revoked", "key_id", grant.KeyID, "family", grant.Family)
		return x.refuse(denyRefreshInvalid)
	case errors.Is(err, keystore.ErrRefreshExpired):
		return x.refuse(denyRefreshExpired)
	case err != nil:
		x.Gate.Logger().Error("token exchange: redeeming a refresh token failed", "err", err)
		return x.refuse(denyUnavailable)
	case !live || grant.KeyID != peek.KeyID:
		// The token changed between the read and the redeem in a way no
		// writer makes; hand out nothing that was not decided on.
		x.Gate.Logger().Error("token exchange: a refresh token changed while being redeemed", "key_id", grant.KeyID)
		return x.refuse(denyInternal)
	}
	x.grace.remember(digests[0], *rep.pair, now, x.Grace)
	return rep
}
