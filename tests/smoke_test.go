package tests

import (
	"testing"

	"google.golang.org/grpc/codes"
)

// TestSmoke is the shortest path through the binary: demo data, one allow,
// one deny.
func TestSmoke(t *testing.T) {
	env := NewEnv(t)
	env.Seed("acme", "pro", "acme-web")
	key := env.NewKey("acme-web", "live")
	srv := env.Serve()

	resp := srv.Check(t, "GET", "/v1/videos", map[string]string{"authorization": "Bearer " + key})
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("want allow, got %v", resp)
	}
	resp = srv.Check(t, "GET", "/v1/videos", nil)
	if got := resp.GetDeniedResponse().GetStatus().GetCode(); got != 401 {
		t.Fatalf("want 401, got %v", resp)
	}
}
