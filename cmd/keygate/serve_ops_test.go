package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/keygate/keygate/extauthz"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
)

// pinger is a store whose reachability the test switches.
type pinger struct{ down atomic.Bool }

func (p *pinger) Ping(context.Context) error {
	if p.down.Load() {
		return errors.New("connection refused")
	}
	return nil
}

// oneKey is a cache loader that knows one key id.
type oneKey struct{}

func (oneKey) LookupKey(context.Context, []keystore.Digest) (keystore.KeyFacts, error) {
	return keystore.KeyFacts{}, keystore.ErrNotFound
}
func (oneKey) LookupKeyID(_ context.Context, id string) (keystore.KeyFacts, error) {
	return keystore.KeyFacts{Key: keystore.Key{ID: id, Mode: keystore.ModeLive}}, nil
}
func (oneKey) LookupSite(context.Context, string) (keystore.SiteFacts, error) {
	return keystore.SiteFacts{}, keystore.ErrNotFound
}

// builtinAndCache are the built-in policy and a cache of oneKey, closed
// when the test ends.
func builtinAndCache(t *testing.T) (*policies.Policy, *keystore.Cache) {
	t.Helper()
	p, err := loadPolicy(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	cache, err := keystore.NewCache(oneKey{}, keystore.CacheConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cache.Close)
	return p, cache
}

// TestReadiness: /livez always answers; /readyz and the gRPC health service
// say ready while the store answers, not ready when it does not and the
// cache is cold, and ready again once the cache is warm.
func TestReadiness(t *testing.T) {
	ctx := context.Background()
	p, cache := builtinAndCache(t)
	store := &pinger{}
	r := readiness{store: store, engine: policies.NewEngine(p), cache: cache}
	mux := http.NewServeMux()
	r.register(mux)
	status := func(path string) int {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code
	}
	// serve's health service answers NOT_SERVING until readiness's first
	// round has found the policy and the store ready.
	hs := registerHealth(&extauthz.Server{}, grpc.NewServer())
	for _, svc := range []string{"", "envoy.service.auth.v3.Authorization"} {
		if got, err := hs.Check(ctx, &healthpb.HealthCheckRequest{Service: svc}); err != nil || got.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("health of %q before readiness's first round: %v, %v", svc, got.GetStatus(), err)
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go r.follow(runCtx, hs, 5*time.Millisecond)
	serving := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := hs.Check(ctx, &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
			if err == nil && got.GetStatus() == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("gRPC health never became %v (last %v, %v)", want, got.GetStatus(), err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	if status("/livez") != 200 || status("/readyz") != 200 {
		t.Fatalf("store up: livez %d, readyz %d", status("/livez"), status("/readyz"))
	}
	serving(healthpb.HealthCheckResponse_SERVING)

	store.down.Store(true)
	if status("/livez") != 200 || status("/readyz") != 503 {
		t.Fatalf("store down, cache cold: livez %d, readyz %d", status("/livez"), status("/readyz"))
	}
	serving(healthpb.HealthCheckResponse_NOT_SERVING)

	// A key read twice is a cache hit: the cache can answer for it.
	for range 2 {
		if _, err := cache.KeyID(ctx, "key_1"); err != nil {
			t.Fatal(err)
		}
		cache.Wait()
	}
	if status("/readyz") != 200 {
		t.Fatalf("store down, cache warm: readyz %d", status("/readyz"))
	}
	serving(healthpb.HealthCheckResponse_SERVING)
}

// afterFirst runs once, after readiness's first round, whether or not that
// round found keygate ready (serve ends the collector's start-up pause
// there: a store down at start-up must not keep it on), and after
// onServed when it did.
func TestReadinessAfterFirstRound(t *testing.T) {
	ctx := context.Background()
	p, cache := builtinAndCache(t)
	for _, down := range []bool{true, false} {
		store := &pinger{}
		store.down.Store(down)
		var events []string
		rounds := make(chan struct{}, 16)
		r := readiness{store: store, engine: policies.NewEngine(p), cache: cache, served: make(chan struct{}),
			onServed:   func() { events = append(events, "served") },
			afterFirst: func() { events = append(events, "after first") }}
		r.store = countingPinger{store, rounds}
		hs := registerHealth(&extauthz.Server{}, grpc.NewServer())
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { r.follow(runCtx, hs, time.Millisecond); close(done) }()
		for range 3 { // three rounds: afterFirst is not run again
			<-rounds
		}
		cancel()
		<-done
		want := "[served after first]"
		if down {
			want = "[after first]"
		}
		if got := fmt.Sprint(events); got != want {
			t.Errorf("store down %v: %s, want %s", down, got, want)
		}
	}
}

// countingPinger signals each ping, after it answered (while rounds has
// room: the test reads the first few).
type countingPinger struct {
	*pinger
	rounds chan<- struct{}
}

func (c countingPinger) Ping(ctx context.Context) error {
	defer func() {
		select {
		case c.rounds <- struct{}{}:
		default:
		}
	}()
	return c.pinger.Ping(ctx)
}
