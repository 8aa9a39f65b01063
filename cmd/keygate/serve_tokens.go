package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/extauthz"
	"github.com/keygate/keygate/internal/every"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/tokens"
)

// tokenFlags configure the token exchange of `keygate serve`.
type tokenFlags struct {
	tokenTTL, refreshTTL time.Duration
	signingRotation      time.Duration
	trustedProxies       string
	trustedHops          int
	refreshGrace         time.Duration
	failureBurst         int
}

func (t *tokenFlags) register(fs *flagSet) {
	fs.DurationVar(&t.tokenTTL, "token-ttl", time.Hour, "lifetime of access tokens minted by /auth/api-key and /auth/refresh")
	fs.DurationVar(&t.refreshTTL, "refresh-ttl", 30*24*time.Hour, "lifetime of an unused refresh token")
	fs.DurationVar(&t.signingRotation, "token-key-rotation", 24*time.Hour, "age at which the token signing key gets a successor")
	fs.IntVar(&t.failureBurst, "token-failure-burst", 10, "failed token-exchange attempts a client address may make before it is throttled (then one per 6s)")
	fs.StringVar(&t.trustedProxies, "trusted-proxies", "", "comma-separated CIDRs of proxies whose X-Forwarded-For names the client (token-exchange throttle; keys' allowed CIDRs on forward-auth)")
	fs.DurationVar(&t.refreshGrace, "refresh-grace", extauthz.DefaultRefreshGrace, "a refresh token presented again this soon after its refresh gets the same pair back (a retry whose answer was lost) instead of counting as reuse; 0 turns it off")
	fs.IntVar(&t.trustedHops, "trusted-hops", 1, "trusted proxies in front of keygate, each appending to X-Forwarded-For: the client is that many entries from the right")
}

func (t *tokenFlags) validate() error {
	switch {
	case t.tokenTTL < time.Second || t.tokenTTL > 24*time.Hour:
		return fmt.Errorf("%w: --token-ttl must be between 1s and 24h", errUsage)
	case t.refreshTTL < t.tokenTTL || t.refreshTTL > 365*24*time.Hour:
		return fmt.Errorf("%w: --refresh-ttl must be between --token-ttl and 365 days", errUsage)
	case t.failureBurst < 1 || t.failureBurst > 10_000:
		return fmt.Errorf("%w: --token-failure-burst must be between 1 and 10000", errUsage)
	case t.refreshGrace < 0 || t.refreshGrace > time.Minute:
		return fmt.Errorf("%w: --refresh-grace must be between 0 and 1m", errUsage)
	case t.trustedHops < 1 || t.trustedHops > 10:
		return fmt.Errorf("%w: --trusted-hops must be between 1 and 10", errUsage)
	case t.signingRotation < time.Hour:
		return fmt.Errorf("%w: --token-key-rotation must be at least 1h", errUsage)
	}
	_, err := t.proxies()
	return err
}

func (t *tokenFlags) proxies() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range strings.Split(t.trustedProxies, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%w: --trusted-proxies: %v", errUsage, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// keyringReload is how often a replica rereads the signing keys; a new key
// is published for signingActivation before it signs, so every replica
// holds it before the first token it signs arrives.
const (
	keyringReload     = 10 * time.Second
	signingActivation = time.Minute
)

// tokenExchange loads the shared signing keys (creating the first on a
// fresh store) and builds the exchange. Its keyring also verifies access
// tokens on the Check path.
func (t *tokenFlags) tokenExchange(ctx context.Context, store *keystore.Store, format keystore.Format, authz *extauthz.Authorizer, reg prometheus.Registerer) (*tokens.Keyring, *extauthz.Exchange, error) {
	ring := tokens.NewKeyring(tokens.NewFormat(format.Prefix))
	if err := reloadKeyring(ctx, store, ring, t.schedule()); err != nil {
		return nil, nil, fmt.Errorf("token signing keys: %w", err)
	}
	proxies, err := t.proxies()
	if err != nil {
		return nil, nil, err
	}
	x := &extauthz.Exchange{Gate: authz, Tokens: ring, Refresh: store, TTL: t.tokenTTL, RefreshTTL: t.refreshTTL, Grace: t.refreshGrace,
		Throttle: &extauthz.Throttle{Burst: t.failureBurst, Trusted: proxies, Hops: t.trustedHops}, Metrics: extauthz.NewExchangeMetrics(reg)}
	return ring, x, nil
}

// schedule retires a superseded key once every token it signed has
// expired (plus a margin for clock skew between replicas).
func (t *tokenFlags) schedule() keystore.SigningSchedule {
	return keystore.SigningSchedule{RotateEvery: t.signingRotation, Activation: signingActivation, RetireAfter: t.tokenTTL + 5*time.Minute}
}

func reloadKeyring(ctx context.Context, store *keystore.Store, ring *tokens.Keyring, sch keystore.SigningSchedule) error {
	keys, err := store.SigningKeys(ctx, sch)
	if err != nil {
		return err
	}
	return setKeyring(ring, keys)
}

// readKeyring loads the signing keys as they are, for `keygate check`: it
// must not run the schedule, whose retirement depends on the servers'
// --token-ttl.
func readKeyring(ctx context.Context, store *keystore.Store, format keystore.Format) (*tokens.Keyring, error) {
	keys, err := store.CurrentSigningKeys(ctx)
	if err != nil {
		return nil, err
	}
	ring := tokens.NewKeyring(tokens.NewFormat(format.Prefix))
	return ring, setKeyring(ring, keys)
}

func setKeyring(ring *tokens.Keyring, keys []keystore.SigningKey) error {
	out := make([]tokens.SigningKey, len(keys))
	for i, k := range keys {
		out[i] = tokens.SigningKey{ID: k.ID, Secret: k.Secret, NotBefore: k.NotBefore}
	}
	return ring.Set(out)
}

// runKeyring keeps the keyring in step with the store until ctx ends:
// every keyringReload, and early (at most once a second) when a token
// names a kid it lacks, e.g. the first key another replica created at the
// same moment as this one.
func (t *tokenFlags) runKeyring(ctx context.Context, store *keystore.Store, ring *tokens.Keyring, log *slog.Logger) {
	if ring == nil {
		return // token exchange is off
	}
	outage := every.Outage{Log: log, Down: "token signing keys: reload failed; keeping the current keys", Up: "token signing keys: reloaded"}
	every.Tick(ctx, keyringReload, ring.Missed(), func(ctx context.Context) {
		outage.Observe(ctx, reloadKeyring(ctx, store, ring, t.schedule()))
		select { // early reloads at most once a second
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	})
}

// tokenExchangeOrOff is tokenExchange with authz verifying the access tokens
// it mints, or, without a secret to seal signing keys with, the exchange
// off (nil, nil) and a warning that says why.
func (t *tokenFlags) tokenExchangeOrOff(ctx context.Context, store *keystore.Store, format keystore.Format, authz *extauthz.Authorizer, reg prometheus.Registerer, log *slog.Logger) (*tokens.Keyring, *extauthz.Exchange, error) {
	keyring, exchange, err := t.tokenExchange(ctx, store, format, authz, reg)
	switch {
	case errors.Is(err, keystore.ErrNoSealSecret):
		log.Warn(tokenExchangeOff)
		return nil, nil, nil
	case err != nil:
		return nil, nil, err
	}
	authz.Tokens = keyring
	return keyring, exchange, nil
}
