package extauthz

import (
	"encoding/json"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/keygate/keygate/policies"
)

// DenyBody is the JSON a denied client receives: the policy's body, or the
// default {"code","message"}.
func DenyBody(d policies.Decision) []byte {
	if len(d.Body) > 0 {
		return d.Body
	}
	b, _ := json.Marshal(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{d.Code, d.Message}) // two strings always marshal
	return b
}

// DenyHeaders are the headers of a denied response: the policy's, plus
// content-type (the decision's, application/json by default), no caching, and a WWW-Authenticate challenge on 401
// (RFC 6750 §3) unless the policy set its own.
func DenyHeaders(d policies.Decision, credentialSent bool) map[string]string {
	h := make(map[string]string, len(d.ResponseHeaders)+3)
	for k, v := range d.ResponseHeaders {
		h[k] = v
	}
	h["content-type"] = contentType(d)
	h["cache-control"] = "no-store"
	if _, ok := h["www-authenticate"]; !ok && d.Status == 401 {
		challenge := `Bearer realm="keygate"`
		if credentialSent {
			challenge += `, error="invalid_token"`
		}
		h["www-authenticate"] = challenge
	}
	return h
}

// CheckResponse renders a result for Envoy.
func (r Result) CheckResponse() *authv3.CheckResponse {
	d := r.Decision
	meta := r.metadata()
	if !d.Allow {
		code := codes.PermissionDenied
		if d.Status == 401 {
			code = codes.Unauthenticated
		}
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(code), Message: d.Code},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.Status)},
				Headers: headerOptions(r.denyHeaders()),
				Body:    string(DenyBody(d)),
			}},
			DynamicMetadata: meta,
		}
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:              headerOptions(r.Upstream),
			HeadersToRemove:      r.Remove,
			ResponseHeadersToAdd: headerOptions(d.ResponseHeaders),
		}},
		DynamicMetadata: meta,
	}
}

// denyHeaders are a denied response's headers with the decision id.
func (r Result) denyHeaders() map[string]string {
	h := DenyHeaders(r.Decision, r.credentialSent())
	if r.DecisionID != "" {
		h[HeaderDecisionID] = r.DecisionID
	}
	return h
}

func (r Result) credentialSent() bool {
	return r.Input != nil && r.Input.Credential.Status != policies.CredMissing && r.Input.Credential.Status != ""
}

// metadata is what Envoy's access log can print (%DYNAMIC_METADATA(envoy.filters.http.ext_authz:code)%).
func (r Result) metadata() *structpb.Struct {
	code := r.Decision.Code
	if r.Decision.Allow {
		code = "OK"
	}
	// Every Check builds this, so its values share one allocation instead of
	// two each (structpb.NewStringValue).
	vals := new([6]stringValue)
	f := make(map[string]*structpb.Value, 6)
	f["code"] = vals[0].set(code)
	f["rule"] = vals[1].set(r.Decision.Rule)
	if r.DecisionID != "" {
		f["decision_id"] = vals[5].set(r.DecisionID)
	}
	if r.KeyID != "" {
		f["key_id"] = vals[2].set(r.KeyID)
		f["mode"] = vals[3].set(r.Mode)
		f["site"] = vals[4].set(r.Site)
	}
	return &structpb.Struct{Fields: f}
}

// stringValue is a structpb string Value and its kind in one allocation.
type stringValue struct {
	v    structpb.Value
	kind structpb.Value_StringValue
}

func (s *stringValue) set(v string) *structpb.Value {
	s.kind.StringValue = v
	s.v.Kind = &s.kind
	return &s.v
}

// headerOptions sorts headers so responses are deterministic, and overwrites
// any value the request already had.
func headerOptions(h map[string]string) []*corev3.HeaderValueOption {
	if len(h) == 0 {
		return nil
	}
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	// The messages live in two arrays: three allocations per response
	// instead of two per header.
	out := make([]*corev3.HeaderValueOption, len(keys))
	opts := make([]corev3.HeaderValueOption, len(keys))
	values := make([]corev3.HeaderValue, len(keys))
	for i, k := range keys {
		values[i].Key, values[i].Value = k, h[k]
		opts[i].Header = &values[i]
		opts[i].AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		out[i] = &opts[i]
	}
	return out
}
