package extauthz

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/keystore"
)

// FuzzExtractCredential: any pair of credential headers parses without
// panicking, and a credential it accepts is a bounded, visible string that
// the request really carried.
func FuzzExtractCredential(f *testing.F) {
	f.Add("Bearer "+fuzzLiveKey, "")
	f.Add("", fuzzLiveKey)
	f.Add(basic(fuzzLiveKey+":"), fuzzLiveKey)
	f.Fuzz(func(t *testing.T, authorization, apiKey string) {
		h := map[string]string{}
		if authorization != "" {
			h["authorization"] = authorization
		}
		if apiKey != "" {
			h["x-api-key"] = apiKey
		}
		c, status := ExtractCredential(h)
		if status != CredentialOK {
			if c != (Credential{}) {
				t.Fatalf("status %d with a credential %v", status, c.Value)
			}
			return
		}
		v := c.Value.Reveal()
		// Bearer carries keys and access tokens, so it is bounded by the
		// header limit rather than by the key length (fuzzing found a 600-byte
		// bearer value; it is accepted as a credential and fails lookup).
		if v == "" || len(v) > maxCredentialHeader {
			t.Fatalf("accepted a credential of %d bytes", len(v))
		}
		for i := 0; i < len(v); i++ {
			if v[i] <= ' ' || v[i] >= 0x7f || v[i] == ',' {
				t.Fatalf("accepted a credential with byte %#x: %q", v[i], v)
			}
		}
		if !strings.Contains(apiKey, v) && !strings.Contains(authorization, v) && !strings.Contains(decodedBasic(authorization), v) {
			t.Fatalf("credential %q is in no header", v)
		}
	})
}

// fuzzLiveKey and fuzzTestKey are well-formed keys (valid checksums) that
// FuzzCheck imports into its store, so the seed corpus can carry them and
// the fuzzer can mutate them byte by byte. They carry fuzzPrefix, which no
// deployment issues, so the committed corpus holds no string that is a
// valid key anywhere but in FuzzCheck's own temporary store.
const (
	fuzzPrefix  = "fz"
	fuzzLiveKey = "fz_live_Wjmh9pv8RBMZCAZtTBTvZr64K57J9n0HpRif"
	fuzzTestKey = "fz_test_Dg9O0Ss9oSTY4E039boZfBmDbMv9rA2iLJ8S"
)

// FuzzCheck runs the whole Check (real SQLite store, real cache, built-in
// policy) on arbitrary requests: it never panics, never returns a gRPC
// error, and allows only a request that carries a valid key or is on a
// public route.
func FuzzCheck(f *testing.F) {
	fx := newFixtureWithPrefix(f, fuzzPrefix)
	ctx := context.Background()
	for key, mode := range map[string]keystore.Mode{fuzzLiveKey: keystore.ModeLive, fuzzTestKey: keystore.ModeTest} {
		if _, err := fx.store.ImportKey(ctx, keystore.KeySpec{SiteID: "acme-web", Mode: mode}, key); err != nil {
			f.Fatal(err)
		}
	}
	valid := []string{fuzzLiveKey, fuzzTestKey, fx.live.Reveal(), fx.test.Reveal()}

	f.Add("GET", "/v1/videos", "Bearer "+fuzzLiveKey, "", "", "x-keygate-account", "evil", "", []byte(nil))
	f.Add("POST", "/v1/sites/acme-web/videos?x=1", "", fuzzTestKey, "", "", "", "", []byte(nil))
	f.Add("GET", "/health", "", "", "", "", "", "", []byte(nil))
	f.Add("GET", "/v1/public/acme-web/player", "", "", "https://acme.com", "", "", "", []byte(nil))
	f.Add("GET", "/v1/videos", "", "", "", "", "", "x-api-key", []byte(fuzzLiveKey))
	f.Fuzz(func(t *testing.T, method, path, authorization, apiKey, origin, name, value, rawName string, rawValue []byte) {
		h := map[string]string{}
		for k, v := range map[string]string{"authorization": authorization, "x-api-key": apiKey, "origin": origin, name: value} {
			if k != "" && v != "" {
				h[k] = v
			}
		}
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Host: "api.example.com", Headers: h},
		}}}
		if rawName != "" {
			req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: rawName, RawValue: rawValue}}}
		}
		resp, err := fx.server.Check(ctx, req)
		if err != nil {
			t.Fatalf("Check returned a gRPC error: %v", err)
		}
		if resp == nil || resp.GetStatus() == nil {
			t.Fatal("Check returned no status")
		}
		allowed := codes.Code(resp.GetStatus().GetCode()) == codes.OK
		if allowed != (resp.GetOkResponse() != nil) || !allowed && resp.GetDeniedResponse() == nil {
			t.Fatalf("status and response disagree: %v", resp)
		}
		if !allowed {
			return
		}
		// No client-sent identity header reaches the upstream unless keygate
		// overwrote it, and a key used to authenticate is stripped.
		ok := resp.GetOkResponse()
		touched := map[string]bool{}
		for _, h := range ok.GetHeaders() {
			touched[h.GetHeader().GetKey()] = true
		}
		for _, k := range ok.GetHeadersToRemove() {
			touched[k] = true
		}
		sent := FromCheckRequest(req).Headers
		for k := range sent {
			if strings.HasPrefix(k, identityPrefix) && !touched[k] {
				t.Fatalf("client-sent %s reaches the upstream: %v", k, resp)
			}
		}
		if publicRoute(path) {
			return
		}
		for _, k := range []string{"authorization", "x-api-key"} {
			if _, present := sent[k]; present && !touched[k] {
				t.Fatalf("the credential header %s reaches the upstream: %v", k, resp)
			}
		}
		carried := h["authorization"] + "\n" + decodedBasic(h["authorization"]) + "\n" + h["x-api-key"] + "\n" +
			string(rawValue) + "\n" + decodedBasic(string(rawValue)) + "\n" + h[strings.ToLower(name)]
		for _, k := range valid {
			if strings.Contains(carried, k) {
				return
			}
		}
		t.Fatalf("allowed %s %q without a valid key: %v", method, path, resp)
	})
}

// publicRoute mirrors the built-in policy's routes that need no key.
func publicRoute(path string) bool {
	p, _, _ := strings.Cut(path, "?")
	return p == "/health" || strings.HasPrefix(p, "/auth/") || strings.HasPrefix(p, "/v1/public/")
}

// decodedBasic is the decoded credentials of every "Basic" part of an
// Authorization value, or "".
func decodedBasic(v string) string {
	var out []string
	for _, part := range strings.Split(v, ",") {
		fields := strings.Fields(part)
		if len(fields) == 2 && strings.EqualFold(fields[0], "basic") {
			b, _ := base64.StdEncoding.DecodeString(fields[1])
			out = append(out, string(b))
		}
	}
	return strings.Join(out, "\n")
}
