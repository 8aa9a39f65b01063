package extauthz

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"mime"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
	"github.com/keygate/keygate/tokens"
)

// RefreshStore keeps refresh tokens; keystore.Store implements it.
type RefreshStore interface {
	IssueRefreshToken(ctx context.Context, keyID string, d keystore.Digest, expires time.Time) error
	PeekRefreshToken(ctx context.Context, digests []keystore.Digest, now time.Time) (keystore.RefreshGrant, bool, error)
	RedeemRefreshToken(ctx context.Context, digests []keystore.Digest, next keystore.Digest, expires time.Time) (keystore.RefreshGrant, error)
}

// Minter signs access tokens; tokens.Keyring implements it.
type Minter interface {
	Mint(keyID, mode string, now time.Time, ttl time.Duration) (string, tokens.Claims, error)
	Format() tokens.Format
}

// Exchange serves the token exchange (DESIGN.md "Token exchange"):
//
//	POST /auth/api-key {"apiKey"}        (or the key by any scheme Check accepts)
//	POST /auth/refresh {"refreshToken"}
//
// Both answer {"token_type":"Bearer","expires_in","access_token","refresh_token"}.
//
// A key may mint exactly when Check would let it through the key route the
// policy declares for minting (config.routes.mint_route, see
// policies.Policy.MintRoute), on the same host: a revoked key, an inactive
// site or account or a plan without API access is refused with the code
// Check would give. A refresh is decided the same way with the access token
// it mints. A policy that declares no mint route lets nothing mint.
type Exchange struct {
	Authorizer *Authorizer
	Tokens     Minter
	Refresh    RefreshStore
	// TTL is the access-token lifetime; RefreshTTL bounds an unused
	// refresh token.
	TTL, RefreshTTL time.Duration
	// Throttle limits failed attempts per client; nil disables it.
	Throttle *Throttle
	// Metrics is optional.
	Metrics *ExchangeMetrics
	// Grace is how long a redeemed refresh token may be presented again
	// for the same pair (DefaultRefreshGrace); 0: never, it is reuse.
	Grace time.Duration

	grace refreshGrace
}

// ExchangeMetrics count token-exchange outcomes.
type ExchangeMetrics struct {
	outcomes *prometheus.CounterVec
}

// NewExchangeMetrics registers the collectors with reg.
func NewExchangeMetrics(reg prometheus.Registerer) *ExchangeMetrics {
	m := &ExchangeMetrics{outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keygate_token_exchange_total",
		Help: "Token-exchange requests by endpoint and outcome code (OK for a pair; INVALID_TOKEN on refresh includes reuse).",
	}, []string{"endpoint", "code"})}
	reg.MustRegister(m.outcomes)
	return m
}

func (m *ExchangeMetrics) observe(endpoint string, rep reply) {
	if m == nil {
		return
	}
	code := rep.deny.Code
	if rep.pair != nil {
		code = "OK"
	}
	m.outcomes.WithLabelValues(endpoint, code).Inc()
}

// exchangeTimeout bounds one exchange, store round trips included.
const exchangeTimeout = 5 * time.Second

// maxExchangeBody bounds a request body: {"apiKey": "…"} is under 600 bytes.
const maxExchangeBody = 4 << 10

// Register adds the two endpoints to mux. Every method is routed here so
// that a wrong one gets the JSON error shape too.
func (x *Exchange) Register(mux *http.ServeMux) {
	mux.HandleFunc("/auth/api-key", x.serve("api_key", TransportTokenAPIKey, x.mint))
	mux.HandleFunc("/auth/refresh", x.serve("refresh", TransportTokenRefresh, x.refresh))
}

// reply is one answer: a token pair (Status 200) or a decision to deny.
type reply struct {
	pair *tokenPair
	deny policies.Decision
	// res is the Authorizer's decision the reply rests on, if one was made.
	res *Result
}

// result is the reply as a final decision, for Authorizer.finish.
func (rep reply) result() Result {
	var res Result
	if rep.res != nil {
		res = *rep.res
	}
	if rep.pair == nil {
		res.Decision = rep.deny
	}
	res.Upstream, res.Remove = nil, nil
	return res
}

type tokenPair struct {
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

// refuse is the exchange's own deny by name, shaped by the policy like
// Check's denials.
func (x *Exchange) refuse(name string) reply {
	return reply{deny: Deny(x.Authorizer.policy(), name, "token_exchange")}
}

// serve wraps an endpoint with what both share: the checks of answer, the
// outcome metric and the response writer.
func (x *Exchange) serve(endpoint, transport string, handle func(ctx context.Context, r *http.Request, body []byte) reply) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, o := x.Authorizer.begin(r.Context(), transport, propagation.HeaderCarrier(r.Header))
		o.Client = r.RemoteAddr
		rep := x.answer(w, r.WithContext(ctx), handle)
		res := rep.result()
		x.Authorizer.finish(&o, &res)
		x.Metrics.observe(endpoint, rep)
		w.Header().Set(HeaderDecisionID, res.DecisionID)
		write(w, rep)
	}
}

// answer decides one request of an endpoint: method, throttle (failures
// count against the client), body, then the endpoint itself.
func (x *Exchange) answer(w http.ResponseWriter, r *http.Request, handle func(context.Context, *http.Request, []byte) reply) reply {
	if r.Method != http.MethodPost {
		w.Header().Set("allow", http.MethodPost)
		return x.refuse(denyMethod)
	}
	client := x.Throttle.Client(r)
	if wait := x.Throttle.Acquire(client); wait > 0 {
		rep := x.refuse(denyThrottled)
		rep.deny.ResponseHeaders = maps.Clone(rep.deny.ResponseHeaders)
		if rep.deny.ResponseHeaders == nil {
			rep.deny.ResponseHeaders = map[string]string{}
		}
		rep.deny.ResponseHeaders[HeaderRetryAfter] = seconds(wait)
		return rep
	}
	rep := x.withBody(w, r, handle)
	// 400 and 401 are what guessing produces and keep the attempt
	// taken; anything else (success, 403, 503) gives it back.
	if rep.pair != nil || (rep.deny.Status != 400 && rep.deny.Status != 401) {
		x.Throttle.Release(client)
	}
	return rep
}

// withBody reads the bounded body, checks its content type and hands it
// to the endpoint.
func (x *Exchange) withBody(w http.ResponseWriter, r *http.Request, handle func(context.Context, *http.Request, []byte) reply) reply {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxExchangeBody))
	if err != nil {
		return x.refuse(denyInvalidRequest) // too large or unreadable
	}
	if len(body) > 0 {
		mt, _, err := mime.ParseMediaType(r.Header.Get("content-type"))
		if err != nil || mt != "application/json" {
			return x.refuse(denyInvalidRequest)
		}
	}
	// One bound for the whole exchange: the decision and the store
	// writes. (No Envoy waits here, so Check's 150 ms budget does not apply.)
	ctx, cancel := context.WithTimeout(r.Context(), exchangeTimeout)
	defer cancel()
	return handle(ctx, r, body)
}

// field reads one string field of a JSON object body; false when the
// body is not an object or the field is absent, null, empty or not a
// string.
func field(body []byte, name string) (string, bool) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil || doc == nil {
		return "", false
	}
	raw, ok := doc[name]
	if !ok || string(raw) == "null" {
		return "", false
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil || v == "" {
		return "", false
	}
	return v, true
}

// mint exchanges an API key for a token pair. The key comes in the body,
// or by any scheme Check accepts (Basic with the key as username, Bearer,
// X-API-Key); both at once must agree.
func (x *Exchange) mint(ctx context.Context, r *http.Request, body []byte) reply {
	headers := map[string]string{}
	for _, name := range credentialHeaderNames {
		for _, v := range r.Header.Values(name) {
			addHeader(headers, name, v)
		}
	}
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
	now := x.Authorizer.now()
	refresh, digest, fail := x.newRefresh()
	if fail != nil {
		return *fail
	}
	rep := x.issue(res.KeyID, res.Mode, refresh, now)
	if rep.pair == nil {
		return rep
	}
	if err := x.Refresh.IssueRefreshToken(ctx, res.KeyID, digest, now.Add(x.RefreshTTL)); err != nil {
		x.Authorizer.Log.Error("token exchange: storing a refresh token failed", "err", err, "key_id", res.KeyID)
		return x.refuse(denyUnavailable)
	}
	return rep
}

// decideMint asks the policy its question for a mint: would req's
// credential be allowed on the declared mint route? One policy snapshot
// answers both which route and the decision.
func (x *Exchange) decideMint(ctx context.Context, req Request) (Result, *reply) {
	pol := x.Authorizer.policy()
	route, ok := mintRoute(pol)
	if !ok {
		x.Authorizer.Log.Error("token exchange: the policy declares no config.routes.mint_route; refusing to mint")
		rep := reply{deny: Deny(pol, denyPolicyError, "mint_route")}
		return Result{}, &rep
	}
	req.Path = route
	return x.Authorizer.authorize(ctx, pol, req), nil
}

// mintRoute is the policy's declared mint route.
func mintRoute(pol Decider) (string, bool) {
	if m, ok := pol.(interface{ MintRoute() (string, bool) }); ok {
		return m.MintRoute()
	}
	return "", false
}

// refresh redeems a refresh token (once) for a new pair.
func (x *Exchange) refresh(ctx context.Context, r *http.Request, body []byte) reply {
	raw, ok := field(body, "refreshToken")
	if !ok {
		return x.refuse(denyInvalidRequest)
	}
	if !x.Tokens.Format().LooksRefresh(raw) {
		return x.refuse(denyRefreshInvalid)
	}
	now := x.Authorizer.now()
	next, digest, fail := x.newRefresh()
	if fail != nil {
		return *fail
	}
	digests := x.Authorizer.Digester.All(raw)
	if pair, ok := x.grace.replay(digests[0], now); ok {
		return reply{pair: &pair} // a retry whose answer was lost
	}
	peek, live, err := x.Refresh.PeekRefreshToken(ctx, digests, now)
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		return x.refuse(denyRefreshInvalid)
	case err != nil:
		x.Authorizer.Log.Error("token exchange: reading a refresh token failed", "err", err)
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
			x.Authorizer.Log.Error("token exchange: the refresh probe resolved to another key", "key_id", peek.KeyID)
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
		x.Authorizer.Log.Warn("refresh token reused; the key's refresh tokens are revoked", "key_id", grant.KeyID, "family", grant.Family)
		return x.refuse(denyRefreshInvalid)
	case errors.Is(err, keystore.ErrRefreshExpired):
		return x.refuse(denyRefreshExpired)
	case err != nil:
		x.Authorizer.Log.Error("token exchange: redeeming a refresh token failed", "err", err)
		return x.refuse(denyUnavailable)
	case !live || grant.KeyID != peek.KeyID:
		// The token changed between the read and the redeem in a way no
		// writer makes; hand out nothing that was not decided on.
		x.Authorizer.Log.Error("token exchange: a refresh token changed while being redeemed", "key_id", grant.KeyID)
		return x.refuse(denyInternal)
	}
	x.grace.remember(digests[0], *rep.pair, now, x.Grace)
	return rep
}

// newRefresh makes a refresh token and the digest it is stored under.
func (x *Exchange) newRefresh() (string, keystore.Digest, *reply) {
	raw, err := x.Tokens.Format().NewRefresh()
	if err != nil {
		x.Authorizer.Log.Error("token exchange: refresh token", "err", err)
		rep := x.refuse(denyInternal)
		return "", "", &rep
	}
	return raw, x.Authorizer.Digester.Primary(raw), nil
}

// issue mints the access token and completes the pair.
func (x *Exchange) issue(keyID, mode, refresh string, now time.Time) reply {
	access, claims, err := x.Tokens.Mint(keyID, mode, now, x.TTL)
	if err != nil {
		x.Authorizer.Log.Error("token exchange: minting an access token failed", "err", err, "key_id", keyID)
		return x.refuse(denyUnavailable)
	}
	return reply{pair: &tokenPair{TokenType: "Bearer", ExpiresIn: int64(claims.ExpiresAt.Sub(claims.IssuedAt) / time.Second),
		AccessToken: access, RefreshToken: refresh}}
}

// write sends a pair, or a denial in the shape Check's denials have.
func write(w http.ResponseWriter, rep reply) {
	h := w.Header()
	if rep.pair == nil {
		for k, v := range DenyHeaders(rep.deny, rep.deny.Code != "MISSING_API_KEY") {
			h.Set(k, v)
		}
		w.WriteHeader(rep.deny.Status)
		_, _ = w.Write(DenyBody(rep.deny))
		return
	}
	// RFC 6749 §5.1: token responses are never cached.
	h.Set("content-type", "application/json")
	h.Set("cache-control", "no-store")
	h.Set("pragma", "no-cache")
	_ = json.NewEncoder(w).Encode(rep.pair)
}
