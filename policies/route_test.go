package policies

import (
	"context"
	"strconv"
	"testing"
	"testing/fstest"
)

// TestMemoIgnoresIDsInPaths: the built-in policy asks only which of its
// data's prefixes a path starts with, so paths that differ in an id later
// on share one remembered decision, while a different site segment does not.
func TestMemoIgnoresIDsInPaths(t *testing.T) {
	e := engineFor(t, Default())
	ctx := context.Background()
	in := proInput()
	for i := range 5 {
		in.Request.Path = "/v1/videos/vid_" + strconv.Itoa(i)
		if d, err := e.Decide(ctx, in); err != nil || !d.Allow {
			t.Fatalf("%s: %+v, %v", in.Request.Path, d, err)
		}
		if in.Request.Prefixes != nil {
			t.Fatal("Decide changed the caller's input")
		}
	}
	if s := e.MemoStats(); s.Misses != 1 || s.Hits != 4 || s.Bypasses != 0 {
		t.Fatalf("MemoStats = %+v; want 1 miss, 4 hits", s)
	}
	in.Request.Path = "/v1/sites/" + in.Site.ID + "/videos/vid_1"
	if d, err := e.Decide(ctx, in); err != nil || !d.Allow {
		t.Fatalf("own site: %+v, %v", d, err)
	}
	in.Request.Path = "/v1/sites/other/videos/vid_1"
	if d, err := e.Decide(ctx, in); err != nil || d.Code != "SITE_MISMATCH" {
		t.Fatalf("other site: %+v, %v", d, err)
	}
	in.Request.Path = "/v1/sites/other/videos/vid_2"
	if d, err := e.Decide(ctx, in); err != nil || d.Code != "SITE_MISMATCH" {
		t.Fatalf("other site, other id: %+v, %v", d, err)
	}
	if s := e.MemoStats(); s.Misses != 3 || s.Hits != 5 {
		t.Fatalf("MemoStats = %+v; want 3 misses, 5 hits", s)
	}
}

// TestMemoKeepsRawPathsItReads: a policy that reads input.request.path is
// remembered by the whole path, so every path gets its own decision.
func TestMemoKeepsRawPathsItReads(t *testing.T) {
	src := `package keygate.authz

import rego.v1

default decision := {"allow": false, "status": 403, "code": "NO", "message": "no", "rule": "raw"}

decision := {"allow": true, "status": 200, "rule": "raw"} if endswith(input.request.path, "/vid_1")
`
	e := engineFor(t, fstest.MapFS{"authz.rego": {Data: []byte(src)}, "data.yaml": {Data: []byte("keygate:\n  config:\n    p: /v1/videos/\n")}})
	ctx := context.Background()
	in := proInput()
	for _, c := range []struct {
		path  string
		allow bool
	}{{"/v1/videos/vid_1", true}, {"/v1/videos/vid_2", false}, {"/v1/videos/vid_1", true}, {"/v1/videos/vid_2", false}} {
		in.Request.Path = c.path
		d, err := e.Decide(ctx, in)
		if err != nil || d.Allow != c.allow {
			t.Fatalf("%s: %+v, %v; want allow=%v", c.path, d, err, c.allow)
		}
	}
	if s := e.MemoStats(); s.Misses != 2 || s.Hits != 2 {
		t.Fatalf("MemoStats = %+v; want 2 misses, 2 hits", s)
	}
}

func TestPathIndex(t *testing.T) {
	ix := newPathIndex(map[string]any{"a": []any{"/v1/sites/", "x", map[string]any{"prefix": "/health"}}, "/keyed": 1, "b": "/health"})
	if want := (pathIndex{"/health", "/keyed", "/v1/sites/"}); len(ix) != len(want) || ix[0] != want[0] || ix[1] != want[1] || ix[2] != want[2] {
		t.Fatalf("index = %q, want %q", ix, want)
	}
	for _, c := range []struct {
		path, exact string
		prefixes    map[string]string
	}{
		{"/v1/sites/s1/videos/9", "", map[string]string{"/v1/sites/": "s1"}},
		{"/health", "/health", map[string]string{"/health": ""}},
		{"/healthz/x", "", map[string]string{}}, // whole segments only
		{"/health/x", "", map[string]string{"/health": ""}},
		{"/v1/videos/9", "", map[string]string{}},
	} {
		r := Request{Path: c.path}
		ix.classify(&r)
		if r.ExactPath != c.exact || len(r.Prefixes) != len(c.prefixes) {
			t.Fatalf("%s: %q %v", c.path, r.ExactPath, r.Prefixes)
		}
		for k, v := range c.prefixes {
			if got, ok := r.Prefixes[k]; !ok || got != v {
				t.Fatalf("%s: prefixes %v, want %v", c.path, r.Prefixes, c.prefixes)
			}
		}
	}
}

// A data prefix matches whole path segments in keygate's classification,
// as in the Rego fallback: "/v1/usage" (free) does not make
// "/v1/usage-export" free, and "/V1/USAGE-export" is no case-only match.
func TestClassificationMatchesWholeSegments(t *testing.T) {
	e := engineFor(t, Default())
	ctx := context.Background()
	in := proInput()
	for path, wantLimits := range map[string]int{
		"/v1/usage": 0, "/v1/usage/daily": 0, "/v1/usage-export": 1, "/v1/usagereport": 1,
	} {
		in.Request.Path = path
		d, err := e.Decide(ctx, in)
		if err != nil || !d.Allow || len(d.Limits) != wantLimits {
			t.Errorf("%s: allow %v, %d limits (%v), want %d", path, d.Allow, len(d.Limits), err, wantLimits)
		}
	}
	in.Request.Path = "/V1/USAGE-export"
	if d, err := e.Decide(ctx, in); err != nil || !d.Allow {
		t.Errorf("/V1/USAGE-export: %+v, %v; it matches no route prefix, even ignoring case", d, err)
	}
	in.Request.Path = "/V1/USAGE/daily"
	if d, err := e.Decide(ctx, in); err != nil || d.Code != "INVALID_PATH" {
		t.Errorf("/V1/USAGE/daily: %+v, %v; want INVALID_PATH (a case-only match)", d, err)
	}
}
