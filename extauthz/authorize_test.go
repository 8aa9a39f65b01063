package extauthz

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"unsafe"

	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
)

// fakeDecider is a policy that answers whatever the test says.
type fakeDecider struct {
	decide func(ctx context.Context, in *policies.Input) (policies.Decision, error)
}

func (d fakeDecider) Decide(ctx context.Context, in *policies.Input) (policies.Decision, error) {
	return d.decide(ctx, in)
}

func (fakeDecider) PublicSite(string) (string, bool) { return "", false }

// downFacts is a keystore that is down.
type downFacts struct{ err error }

func (f downFacts) Key(context.Context, []keystore.Digest) (keystore.KeyFacts, error) {
	return keystore.KeyFacts{}, f.err
}

func (f downFacts) KeyID(context.Context, string) (keystore.KeyFacts, error) {
	return keystore.KeyFacts{}, f.err
}

func (f downFacts) Site(context.Context, string) (keystore.SiteFacts, error) {
	return keystore.SiteFacts{}, f.err
}

// TestCheckFailsClosed: whatever goes wrong inside, Check answers with a
// Denied CheckResponse, never a gRPC error and never an allow.
func TestCheckFailsClosed(t *testing.T) {
	tests := []struct {
		name       string
		decide     func(context.Context, *policies.Input) (policies.Decision, error)
		facts      KeyFacts
		ctx        func() context.Context
		wantStatus int
		wantCode   string
	}{
		{"policy error", func(context.Context, *policies.Input) (policies.Decision, error) {
			return policies.Decision{}, policies.ErrPolicy
		}, nil, context.Background, 500, "POLICY_ERROR"},
		{"policy timeout", func(ctx context.Context, _ *policies.Input) (policies.Decision, error) {
			<-ctx.Done()
			return policies.Decision{}, ctx.Err()
		}, nil, func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, 503, "AUTHZ_UNAVAILABLE"},
		{"policy panics", func(context.Context, *policies.Input) (policies.Decision, error) {
			panic("boom")
		}, nil, context.Background, 500, "INTERNAL_ERROR"},
		{"store down", nil, downFacts{err: keystore.ErrUnavailable}, context.Background, 503, "AUTHZ_UNAVAILABLE"},
		{"store returns an odd error", nil, downFacts{err: errors.New("disk on fire")}, context.Background, 503, "AUTHZ_UNAVAILABLE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			a := f.server.Authorizer
			if tt.decide != nil {
				a.Policy = fakeDecider{decide: tt.decide}
			}
			if tt.facts != nil {
				a.Facts = tt.facts
			}
			resp, err := f.server.Check(tt.ctx(), envoyCheckRequest("GET", "/v1/videos", map[string]string{"authorization": "Bearer " + f.live.Reveal()}))
			if err != nil {
				t.Fatalf("gRPC error: %v", err)
			}
			if codes.Code(resp.GetStatus().GetCode()) == codes.OK || resp.GetOkResponse() != nil {
				t.Fatalf("allowed: %v", resp)
			}
			d := resp.GetDeniedResponse()
			if int(d.GetStatus().GetCode()) != tt.wantStatus || resp.GetStatus().GetMessage() != tt.wantCode {
				t.Fatalf("denied with %d %s, want %d %s", d.GetStatus().GetCode(), resp.GetStatus().GetMessage(), tt.wantStatus, tt.wantCode)
			}
		})
	}
}

// The credential headers reach the upstream only when the policy says
// keep_credentials (data: strip_credentials: false).
func TestKeepCredentials(t *testing.T) {
	for _, keep := range []bool{false, true} {
		f := newFixture(t)
		a := f.server.Authorizer
		a.Policy = fakeDecider{decide: func(context.Context, *policies.Input) (policies.Decision, error) {
			return policies.Decision{Allow: true, Status: 200, KeepCredentials: keep}, nil
		}}
		res := a.Authorize(context.Background(), Request{Method: "GET", Path: "/v1/videos",
			Headers: map[string]string{"authorization": "Bearer " + f.live.Reveal(), "x-keygate-site": "spoofed"}})
		stripped := slices.Contains(res.Remove, "authorization")
		if stripped == keep {
			t.Errorf("keep_credentials=%t: authorization removed=%t (remove %v)", keep, stripped, res.Remove)
		}
		if !slices.Contains(res.Remove, "x-keygate-site") && res.Upstream["x-keygate-site"] == "spoofed" {
			t.Errorf("keep_credentials=%t: a spoofed identity header survived", keep)
		}
	}
}

// On a public route the policy allows whatever credential came; a key sent
// there, even in an ambiguous or malformed form, must not reach the upstream.
func TestPublicRouteStripsUnresolvedCredentials(t *testing.T) {
	f := newFixture(t)
	key := f.live.Reveal()
	for name, h := range map[string]map[string]string{
		"valid key":      {"authorization": "Bearer " + key},
		"ambiguous":      {"authorization": "Bearer " + key, "x-api-key": f.test.Reveal()},
		"malformed part": {"authorization": "Bearer " + key + ", Digest x"},
		"garbage":        {"x-api-key": "not a key at all"},
	} {
		res := f.server.Authorizer.Authorize(context.Background(), Request{Method: "GET", Path: "/health", Headers: h})
		if !res.Decision.Allow {
			t.Fatalf("%s: /health denied: %+v", name, res.Decision)
		}
		for k := range h {
			if !slices.Contains(res.Remove, k) {
				t.Errorf("%s: %s reaches the upstream (remove %v)", name, k, res.Remove)
			}
		}
	}
}

// TestMemoHitCheckBytes bounds the bytes a memo-hit Check allocates: at a
// few KB each they decide how often the collector runs, which was about a
// fifth of a memo hit's instructions. The key's facts (432 bytes) stay on
// authorize's stack, and the Check's memory is one object of Go's
// 1,280-byte size class (checkState): 2,352 bytes a Check in session 5,
// ~1,900 in session 11, ~1,550 now.
func TestMemoHitCheckBytes(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes what allocates")
	}
	if n := unsafe.Sizeof(requestState{}); n > 640 {
		t.Errorf("requestState is %d bytes, past the 640-byte size class", n)
	}
	if n := unsafe.Sizeof(checkState{}); n > 1280 {
		t.Errorf("checkState is %d bytes, past the 1,280-byte size class", n)
	}
	f := newFixture(t)
	f.server.Authorizer.DropUnreadHeaders = true
	ctx := envoyContext(t)
	req := envoyCheckRequest("GET", "/v1/videos/0", typicalHeaders("Bearer "+f.live.Reveal()))
	f.server.Check(ctx, req) //nolint:errcheck // warms the key cache
	f.cache.Wait()
	settle(ctx, f)
	const runs = 2000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range runs {
		req.Attributes.Request.Http.Path = "/v1/videos/" + strconv.Itoa(i%10)
		if resp, _ := f.server.Check(ctx, req); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			t.Fatalf("want allow, got %v", resp)
		}
	}
	runtime.ReadMemStats(&after)
	// The paths' strings (a few bytes each) are counted too.
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 2100 {
		t.Fatalf("a memo-hit Check allocates %d bytes, want at most 2100", per)
	}
	// The path's string is one; the Check's memory (checkState: the
	// request's state, the response's messages, the decision id and the
	// key's digest) another, the metadata's map two. It was six: the
	// state, the response, the id and the digest each on its own.
	// A collection in the loop refills pools (~25 allocations each, 0.0125
	// a Check): the bound leaves room for eight.
	if per := float64(after.Mallocs-before.Mallocs) / runs; per > 4.1 {
		t.Fatalf("a memo-hit Check makes %.2f allocations, want at most 4 (one of them the test's path)", per)
	}
}
