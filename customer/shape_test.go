package customer

import (
	"testing"

	"github.com/keygate/keygate/policies"
)

func TestShapeBodyFollowsThePolicy(t *testing.T) {
	docs := func(shape any) map[string]any {
		return map[string]any{"keygate": map[string]any{"config": map[string]any{"body_shape": shape}}}
	}
	for _, tc := range []struct {
		docs      map[string]any
		requestID string
		want      string
	}{
		{nil, "", `{"code":"NOT_FOUND","message":"Not found"}`},
		{docs("code_message"), "r1", `{"code":"NOT_FOUND","message":"Not found"}`},
		{docs("message"), "", `{"message":"Not found"}`},
		{docs("error_object"), "", `{"error":{"code":"NOT_FOUND","message":"Not found"}}`},
		{docs("error_object"), "req-7", `{"error":{"code":"NOT_FOUND","message":"Not found","request_id":"req-7"}}`},
		{docs(42), "", `{"code":"NOT_FOUND","message":"Not found"}`},
	} {
		if got := string(shapeBody(tc.docs, "NOT_FOUND", "Not found", tc.requestID)); got != tc.want {
			t.Errorf("shape %v: %s, want %s", tc.docs, got, tc.want)
		}
	}
}

func TestShapeDenialProblemDetails(t *testing.T) {
	docs := map[string]any{"keygate": map[string]any{"config": map[string]any{"body_shape": "problem", "problem_type_base": "https://errors.example/"}}}
	d := policies.Decision{Status: 404, Code: "NOT_FOUND", Message: "Not found"}
	shapeDenial(docs, &d, "")
	if want := `{"detail":"Not found","status":404,"title":"Not found","type":"https://errors.example/not-found"}`; string(d.Body) != want || d.ContentType != "application/problem+json" {
		t.Errorf("problem shape: %s (%s), want %s (application/problem+json)", d.Body, d.ContentType, want)
	}
	d = policies.Decision{Status: 404, Code: "NOT_FOUND", Message: "Not found"}
	shapeDenial(nil, &d, "")
	if string(d.Body) != `{"code":"NOT_FOUND","message":"Not found"}` || d.ContentType != "" {
		t.Errorf("no policy: %s (%q)", d.Body, d.ContentType)
	}
}
