package policies

import (
	"context"
	"testing"
)

// A policy that reads the raw path and a header is decided on them, with
// the memo on and off: only fields the policy provably never reads are
// left out of what it is evaluated on.
func TestUnreadKeepsWhatThePolicyReads(t *testing.T) {
	p := compileSource(t, `package keygate.authz

import rego.v1

decision := {"allow": true, "rule": "raw"} if {
	endswith(input.request.path, "/ok")
	input.request.headers["x-tenant"] == "t1"
}

decision := {"allow": false, "status": 403, "code": "NO", "rule": "raw"} if {
	not endswith(input.request.path, "/ok")
}

decision := {"allow": false, "status": 403, "code": "NO", "rule": "raw"} if {
	not input.request.headers["x-tenant"] == "t1"
}
`)
	for _, memoOn := range []bool{true, false} {
		e := NewEngine(p)
		e.SetMemo(memoOn)
		for _, c := range []struct {
			path, tenant string
			allow        bool
		}{{"/v1/a/ok", "t1", true}, {"/v1/a/no", "t1", false}, {"/v1/b/ok", "t2", false}, {"/v1/b/ok", "t1", true}} {
			in := proInput()
			in.Request.Path = c.path
			in.Request.Headers = map[string]string{"x-tenant": c.tenant}
			d, err := e.Decide(context.Background(), in)
			if err != nil || d.Allow != c.allow {
				t.Errorf("memo %v, %s %s: %+v, %v; want allow %v", memoOn, c.path, c.tenant, d, err, c.allow)
			}
		}
	}
}

// The built-in policy reads neither headers nor the raw path when keygate
// classifies the path, so neither is converted for its evaluations.
func TestUnreadDefaultPolicy(t *testing.T) {
	p := defaultPolicy(t)
	in := proInput()
	in.Request.Headers = map[string]string{"x-request-id": "r1"}
	in.Request.Query = "a=1"
	p.unread.clear(in, new(spareFacts))
	if in.Request.Headers != nil || in.Request.Path != "" || in.Request.Query != "" {
		t.Fatalf("left in: %+v", in.Request)
	}
	if in.Request.Method == "" || in.Request.Host == "" {
		t.Fatalf("method or host cleared, but the built-in policy reads them: %+v", in.Request)
	}
}
