package extauthz

import "testing"

// The policy's body shape wins: a member goes only into an object.
func TestWithMemberShapes(t *testing.T) {
	for _, tc := range []struct {
		body string
		path []string
		want string
	}{
		{`{"code":"X","message":"m"}`, nil, `{"code":"X","detail":"d","message":"m"}`},
		{`{"detail":"old","status":400}`, nil, `{"detail":"d","status":400}`},
		{`{"error":{"code":"X"}}`, []string{"error"}, `{"error":{"code":"X","detail":"d"}}`},
		{`{"error":"flat"}`, []string{"error"}, `{"error":"flat"}`},
		{`["not","an","object"]`, nil, `["not","an","object"]`},
		{`null`, nil, `null`},
	} {
		if got := string(WithMember([]byte(tc.body), tc.path, "detail", "d")); got != tc.want {
			t.Errorf("WithMember(%s, %v) = %s, want %s", tc.body, tc.path, got, tc.want)
		}
	}
}
