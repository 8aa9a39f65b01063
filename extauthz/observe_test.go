package extauthz

import (
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
)

// recorder is an Observer that keeps what it saw.
type recorder struct {
	mu  sync.Mutex
	got []*Outcome
}

func (r *recorder) Observe(o Outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, &o)
}

// only returns the one decision observed since the last call.
func (r *recorder) only(t *testing.T) *Outcome {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) != 1 {
		t.Fatalf("observed %d decisions, want exactly 1", len(r.got))
	}
	o := r.got[0]
	r.got = nil
	return o
}

func headerOf(opts []*corev3.HeaderValueOption, name string) string {
	for _, o := range opts {
		if o.GetHeader().GetKey() == name {
			return o.GetHeader().GetValue()
		}
	}
	return ""
}

// TestCheckObservedOnce: every gRPC Check is observed exactly once, with the
// id the client (deny) or the upstream (allow) receives.
func TestCheckObservedOnce(t *testing.T) {
	f := newFixture(t)
	rec := &recorder{}
	f.server.Authorizer.Observer = rec
	ctx := envoyContext(t)

	resp, _ := f.server.Check(ctx, envoyCheckRequest("GET", "/v1/videos", typicalHeaders("Bearer kg_live_nope")))
	deny := resp.GetDeniedResponse()
	o := rec.only(t)
	if id := headerOf(deny.GetHeaders(), HeaderDecisionID); id == "" || id != o.ID {
		t.Errorf("deny carries decision id %q, observed %q", id, o.ID)
	}
	if o.Transport != TransportGRPC || o.Result.Decision.Code != "INVALID_API_KEY" || o.Result.Input == nil {
		t.Errorf("observed %+v", o)
	}

	resp, _ = f.server.Check(ctx, envoyCheckRequest("GET", "/v1/videos", typicalHeaders("Bearer "+f.live.Reveal())))
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("want allow, got %v", resp)
	}
	o = rec.only(t)
	if id := headerOf(resp.GetOkResponse().GetHeaders(), HeaderDecisionID); id == "" || id != o.ID {
		t.Errorf("upstream gets decision id %q, observed %q", id, o.ID)
	}
	if o.Result.KeyID != f.liveKey.ID || o.Result.Memo == "" {
		t.Errorf("observed allow %+v", o.Result)
	}
}

// TestForwardAuthObservedOnce: each forward-auth endpoint's decision is
// observed once, with the id in the response.
func TestForwardAuthObservedOnce(t *testing.T) {
	f := newForwardAuthFixture(t, allowKeys)
	rec := &recorder{}
	f.authorizer.Observer = rec
	for _, c := range []struct {
		transport, target string
		headers           map[string][]string
	}{
		{TransportEnvoyHTTP, "/ext-authz/v1/videos", nil},
		{TransportNginx, "/auth-request", map[string][]string{"X-Original-Method": {"GET"}, "X-Original-Uri": {"/v1/videos"}}},
		{TransportForwardAuth, "/forward-auth", map[string][]string{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/v1/videos"}}},
		{TransportNginx, "/auth-request", nil}, // misconfigured proxy: still one decision
	} {
		res := f.do("GET", c.target, c.headers)
		o := rec.only(t)
		if got := res.Header().Get(HeaderDecisionID); got == "" || got != o.ID || o.Transport != c.transport {
			t.Errorf("%s: header %q, observed %q via %s", c.target, got, o.ID, o.Transport)
		}
	}
}
