package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// verdict is a CheckResponse as the client and upstream see it.
type verdict struct {
	Allow  bool
	Status int
	// Code is the deny body's "code" (or "error"."code"), else the code the
	// gRPC status carries.
	Code string
	// Body is the deny body, decoded.
	Body map[string]any
	// Headers are the upstream headers of an allow, or the client's
	// response headers of a deny.
	Headers map[string]string
}

func (v verdict) String() string {
	b, _ := json.Marshal(v.Body)
	return fmt.Sprintf("allow=%t status=%d code=%s body=%s headers=%v", v.Allow, v.Status, v.Code, b, v.Headers)
}

func verdictOf(t *testing.T, resp *authv3.CheckResponse) verdict {
	t.Helper()
	v := verdict{Headers: map[string]string{}}
	if ok := resp.GetOkResponse(); ok != nil && resp.GetStatus().GetCode() == 0 {
		v.Allow, v.Status = true, 200
		for _, h := range ok.GetHeaders() {
			v.Headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		return v
	}
	denied := resp.GetDeniedResponse()
	if denied == nil {
		t.Fatalf("neither an allow nor a deny: %v", resp)
	}
	v.Status = int(denied.GetStatus().GetCode())
	for _, h := range denied.GetHeaders() {
		v.Headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	if err := json.Unmarshal([]byte(denied.GetBody()), &v.Body); err != nil {
		t.Fatalf("deny body %q is not a JSON object: %v", denied.GetBody(), err)
	}
	v.Code, _ = v.Body["code"].(string)
	if e, ok := v.Body["error"].(map[string]any); ok && v.Code == "" {
		v.Code, _ = e["code"].(string)
	}
	if v.Code == "" {
		// A shape without a code (problem details): the gRPC status names it.
		v.Code = resp.GetStatus().GetMessage()
	}
	return v
}

// message is the deny body's human text: "message", or a problem's "detail".
func (v verdict) message() string {
	if m, ok := v.Body["message"].(string); ok {
		return m
	}
	m, _ := v.Body["detail"].(string)
	return m
}

// decide sends one Check and returns its verdict.
func (s *Server) decide(t *testing.T, method, path string, headers map[string]string) verdict {
	t.Helper()
	return verdictOf(t, s.Check(t, method, path, headers))
}

// expectDeny fails unless v is a deny with status and code.
func expectDeny(t *testing.T, what string, v verdict, status int, code string) {
	t.Helper()
	if v.Allow || v.Status != status || v.Code != code {
		t.Errorf("%s: got %v; want %d %s", what, v, status, code)
	}
}

// expectAllowIn fails unless v is an allow that tells the upstream the
// key's mode (x-keygate-mode).
func expectAllowIn(t *testing.T, what string, v verdict, mode string) {
	t.Helper()
	if !v.Allow || v.Headers["x-keygate-mode"] != mode {
		t.Errorf("%s: got %v; want an allow in mode %s", what, v, mode)
	}
}

// writePolicyDir writes files into a fresh directory and returns it.
func writePolicyDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	writePolicyFiles(t, dir, files)
	return dir
}

// writePolicyFiles replaces files atomically (write, then rename), as a
// deployment tool should, so the reloader never reads half a file.
func writePolicyFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		tmp := filepath.Join(dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func bearer(key string) map[string]string { return map[string]string{"authorization": "Bearer " + key} }

// bearerAt sends a Bearer credential to a given host (:authority).
func bearerAt(host, credential string) map[string]string {
	return map[string]string{"host": host, "authorization": "Bearer " + credential}
}
