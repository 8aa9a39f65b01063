package extauthz

import (
	"context"
	"encoding/json"
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
	// Gate decides and records every exchange as Check's decisions are
	// (an *Authorizer); it is all the exchange sees of the Authorizer.
	Gate    Gate
	Tokens  Minter
	Refresh RefreshStore
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

// result is the reply as a final decision, for Gate.Finish.
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
	return reply{deny: Deny(x.Gate.Snapshot(), name, "token_exchange")}
}

// serve wraps an endpoint with what both share: the checks of answer, the
// outcome metric and the response writer.
func (x *Exchange) serve(endpoint, transport string, handle func(ctx context.Context, r *http.Request, body []byte) reply) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, o := x.Gate.Begin(r.Context(), transport, propagation.HeaderCarrier(r.Header))
		o.Client = r.RemoteAddr
		rep := x.answer(w, r.WithContext(ctx), handle)
		res := rep.result()
		x.Gate.Finish(&o, &res)
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
