package customer

import "testing"

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
