package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/keygate/keygate/keystore"
)

// request is one request the load sends, as the proxy saw it.
type request struct {
	method, path, host string
	headers            map[string]string
	// class groups requests for per-class latency: known, unknown,
	// revoked, public.
	class string
	// first marks a known key's first request in the run: its decisions
	// are not remembered yet, nor its facts but for keys whose token was
	// minted before the load (reported as its own class, on top of its
	// class).
	first bool
}

// traffic generates a workload's requests; next is called by one goroutine
// at a time, so a seed gives the same sequence of choices every run.
type traffic struct {
	cfg     Config
	format  keystore.Format
	rng     *rand.Rand
	zipf    *rand.Zipf
	keys    []seededKey
	revoked []seededKey
	n       int
	// used holds the known keys (by secret) sent so far in the run.
	used map[string]bool
}

type seededKey struct {
	secret, token, site string
}

// seed creates the workload's accounts, sites and keys in the store (ids
// unique to this run, so runs can share a store) and mints access tokens
// for a tenth of the keys when the workload uses them.
func seed(ctx context.Context, cfg Config, stderr io.Writer) (*traffic, error) {
	format, err := keystore.NewFormat(cfg.KeyPrefix)
	if err != nil {
		return nil, err
	}
	digester, err := keystore.NewDigester(cfg.Peppers...)
	if err != nil {
		return nil, err
	}
	store, err := keystore.Open(ctx, cfg.Store, keystore.Options{Format: format, Digester: digester})
	if err != nil {
		return nil, fmt.Errorf("bench: open %s: %w", cfg.Store, err)
	}
	defer store.Close()
	run := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	keys, sites := cfg.Keys, cfg.Sites
	if cfg.Workload == "fixed" {
		keys, sites = 1, 1
	}
	// Zipf's hottest keys belong to site 0, an enterprise (unlimited)
	// account; the rest mix in rate-limited plans. fixed is unlimited, so
	// it measures the decision, not the limiter's 429s.
	plans := []string{"enterprise", "max", "pro"}
	t := &traffic{cfg: cfg, format: format}
	began := time.Now()
	for s := range sites {
		id := fmt.Sprintf("bench-%s-%d", run, s)
		if _, err := store.CreateAccount(ctx, keystore.Account{ID: id, Plan: plans[s%len(plans)], Status: keystore.StatusActive}); err != nil {
			return nil, err
		}
		if _, err := store.CreateSite(ctx, keystore.Site{ID: id, AccountID: id, Domains: []string{id + ".example.com"}, Active: true}); err != nil {
			return nil, err
		}
	}
	for k := range keys {
		site := fmt.Sprintf("bench-%s-%d", run, k%sites)
		key, secret, err := store.CreateKey(ctx, keystore.KeySpec{SiteID: site, Mode: keystore.ModeLive, Name: "bench"})
		if err != nil {
			return nil, err
		}
		sk := seededKey{secret: secret.Reveal(), site: site}
		// About one key in 200 is revoked (realistic traffic still uses them).
		if cfg.Workload == "realistic" && k%200 == 199 {
			if _, err := store.RevokeKey(ctx, key.ID); err != nil {
				return nil, err
			}
			t.revoked = append(t.revoked, sk)
			continue
		}
		t.keys = append(t.keys, sk)
		if k > 0 && k%10_000 == 0 {
			fmt.Fprintf(stderr, "seeded %d keys\n", k)
		}
	}
	fmt.Fprintf(stderr, "seeded %d keys over %d sites in %s (run %s)\n", keys, sites, time.Since(began).Round(time.Millisecond), run)
	if cfg.Workload == "realistic" && cfg.TokenURL != "" && !cfg.SeedOnly {
		// The server must have followed the change log before it can mint.
		time.Sleep(1500 * time.Millisecond)
		for i := 0; i < len(t.keys); i += 10 {
			if t.keys[i].token, err = mint(ctx, cfg.TokenURL, t.keys[i].secret); err != nil {
				return nil, err
			}
		}
	}
	t.reset() // seeding draws nothing at random: the load starts the sequence
	return t, nil
}

// mint exchanges a key for an access token at the server's /auth/api-key.
func mint(ctx context.Context, base, key string) (string, error) {
	body, _ := json.Marshal(map[string]string{"apiKey": key})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/auth/api-key", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("content-type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("bench: mint a token: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&out); err != nil || out.AccessToken == "" {
		return "", fmt.Errorf("bench: mint a token: status %d", resp.StatusCode)
	}
	return out.AccessToken, nil
}

// next is the workload's next request.
func (t *traffic) next() request {
	t.n++
	r := request{method: "GET", host: "api.example.com", class: "known", headers: map[string]string{
		"x-request-id": fmt.Sprintf("%016x", t.rng.Uint64()), "user-agent": "keygate-bench", "accept": "application/json",
	}}
	id := strconv.FormatUint(t.rng.Uint64N(1<<40), 36)
	switch t.cfg.Workload {
	case "fixed":
		r.path = "/v1/videos"
		r.headers["authorization"] = "Bearer " + t.keys[0].secret
	case "miss":
		r.path = "/v1/videos/vid_" + id
		r.headers["authorization"] = "Bearer " + t.keys[(t.n-1)%len(t.keys)].secret
	case "flood":
		r.path = "/v1/videos/vid_" + id
		if t.rng.Float64() < t.cfg.FloodShare {
			r.class = "unknown"
			r.headers["authorization"] = "Bearer " + t.unknownKey()
		} else {
			r.headers["authorization"] = "Bearer " + t.keys[t.rng.IntN(min(len(t.keys), 10))].secret
		}
	default:
		t.realistic(&r, id)
	}
	return r
}

// realistic: Zipf-popular keys, a distinct id in every path, a route mix of
// key, site-scoped, public-with-Origin and metered routes, ~1% unknown and
// ~0.5% revoked keys, a tenth of the keys' traffic on access tokens, and
// all three ways of sending a key.
func (t *traffic) realistic(r *request, id string) {
	k := t.keys[0]
	if t.zipf != nil {
		k = t.keys[t.zipf.Uint64()]
	}
	switch u := t.rng.Float64(); {
	case u < 0.60:
		r.path = "/v1/videos/vid_" + id
	case u < 0.75:
		r.path = "/v1/sites/" + k.site + "/videos/vid_" + id
	case u < 0.85:
		r.path, r.class = "/v1/public/"+k.site+"/player/vid_"+id, "public"
		r.headers["origin"] = "https://" + k.site + ".example.com"
		return
	case u < 0.95:
		r.method, r.path = "POST", "/v1/audio/generate"
	default:
		r.path = "/v1/usage"
	}
	secret := k.secret
	switch u := t.rng.Float64(); {
	case u < 0.01:
		secret, r.class = t.unknownKey(), "unknown"
	case u < 0.015 && len(t.revoked) > 0:
		secret, r.class = t.revoked[t.rng.IntN(len(t.revoked))].secret, "revoked"
	case k.token != "" && u < 0.5:
		t.markFirst(r, k)
		r.headers["authorization"] = "Bearer " + k.token
		return
	default:
		t.markFirst(r, k)
	}
	switch t.rng.IntN(3) {
	case 0:
		r.headers["authorization"] = "Bearer " + secret
	case 1:
		r.headers["authorization"] = "Basic " + base64.StdEncoding.EncodeToString([]byte(secret+":"))
	default:
		r.headers["x-api-key"] = secret
	}
}

// markFirst marks r first when it is key k's first request in the run,
// in whatever form it sends the key (the cache knows a key by its digest
// and its id alike).
func (t *traffic) markFirst(r *request, k seededKey) {
	if !t.used[k.secret] {
		t.used[k.secret], r.first = true, true
	}
}

// unknownKey is a well-formed key (right prefix and checksum) that no store
// holds: it passes the format check and reaches the key lookup.
func (t *traffic) unknownKey() string {
	s, err := t.format.Generate(keystore.ModeLive)
	if err != nil {
		return t.cfg.KeyPrefix + "_live_unknown"
	}
	return s.Reveal()
}
