package extauthz

import (
	"encoding/json"
	"slices"
	"strings"

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

// checkResponse holds the messages of one CheckResponse, so that every
// Check allocates them at once instead of one by one (they are
// write-once: nothing copies a message after it is filled).
type checkResponse struct {
	resp   authv3.CheckResponse
	status rpcstatus.Status
	meta   structpb.Struct
	vals   [6]stringValue
	ok     authv3.CheckResponse_OkResponse
	okHTTP authv3.OkHttpResponse
	// headers hold the response's header messages while they last: an
	// allow's identity headers, or a deny's, fit.
	headers headerSlots
}

// deniedResponse is the part of a deny's CheckResponse an allow does not need.
type deniedResponse struct {
	denied     authv3.CheckResponse_DeniedResponse
	deniedHTTP authv3.DeniedHttpResponse
	httpStatus typev3.HttpStatus
}

// CheckResponse renders a result for Envoy.
func (r Result) CheckResponse() *authv3.CheckResponse {
	d := r.Decision
	m := new(checkResponse)
	m.resp.DynamicMetadata = r.metadata(&m.meta, &m.vals)
	m.resp.Status = &m.status
	if !d.Allow {
		code := codes.PermissionDenied
		if d.Status == 401 {
			code = codes.Unauthenticated
		}
		m.status.Code, m.status.Message = int32(code), d.Code
		dm := new(deniedResponse)
		dm.httpStatus.Code = typev3.StatusCode(d.Status)
		dm.deniedHTTP.Status = &dm.httpStatus
		dm.deniedHTTP.Headers = m.headers.options(r.denyHeaders())
		dm.deniedHTTP.Body = string(DenyBody(d))
		dm.denied.DeniedResponse = &dm.deniedHTTP
		m.resp.HttpResponse = &dm.denied
		return &m.resp
	}
	m.status.Code = int32(codes.OK)
	m.okHTTP.Headers = m.headers.options(r.UpstreamHeaders())
	m.okHTTP.HeadersToRemove = r.Remove
	m.okHTTP.ResponseHeadersToAdd = m.headers.options(d.ResponseHeaders)
	m.ok.OkResponse = &m.okHTTP
	m.resp.HttpResponse = &m.ok
	return &m.resp
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

// metadata is what Envoy's access log can print
// (%DYNAMIC_METADATA(envoy.filters.http.ext_authz:code)%), built in s and
// vals: every Check builds it, so its values share the response's
// allocation instead of taking two each (structpb.NewStringValue).
func (r Result) metadata(s *structpb.Struct, vals *[6]stringValue) *structpb.Struct {
	code := r.Decision.Code
	if r.Decision.Allow {
		code = "OK"
	}
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
	s.Fields = f
	return s
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

// headerSlots are header messages allocated with the response they go in.
type headerSlots struct {
	msgs [8]headerMessages
	ptrs [8]*corev3.HeaderValueOption
	used int
}

// fewHeaders are the messages of a few headers and their list, allocated
// at once (see headerSlots.options).
type fewHeaders struct {
	msgs [3]headerMessages
	ptrs [3]*corev3.HeaderValueOption
}

// headerMessages are one header's two messages.
type headerMessages struct {
	opt   corev3.HeaderValueOption
	value corev3.HeaderValue
}

// options renders h as header options, sorted so responses are
// deterministic, each overwriting any value the request already had. The
// messages come from the free slots (if s is not nil), else from one new
// array.
func (s *headerSlots) options(h map[string]string) []*corev3.HeaderValueOption {
	if len(h) == 0 {
		return nil
	}
	// The usual handful of headers sorts on the stack, each name with its
	// value, so that no value is looked up again.
	var buf [16][2]string
	kv := sortedHeaders(h, buf[:0])
	n := len(kv)
	var out []*corev3.HeaderValueOption
	var msgs []headerMessages
	switch end := s.free(n); {
	case end > 0:
		out, msgs = s.ptrs[s.used:end:end], s.msgs[s.used:end:end]
		s.used = end
	case n <= len(fewHeaders{}.msgs):
		// A few headers (a templated allow's rate headers, usually
		// three; the headers past a result's slots): one allocation for
		// the messages and their list, not two, of the bytes two took
		// for three (504 bytes; more slots would cost fewer headers more).
		f := new(fewHeaders)
		out, msgs = f.ptrs[:n:n], f.msgs[:n:n]
	default:
		out, msgs = make([]*corev3.HeaderValueOption, n), make([]headerMessages, n)
	}
	for i, kv := range kv {
		out[i] = msgs[i].set(kv[0], kv[1])
	}
	return out
}

// free takes n free slots, returning where they end (0 when too few are
// free).
func (s *headerSlots) free(n int) int {
	if s == nil || s.used+n > len(s.msgs) {
		return 0
	}
	return s.used + n
}

// sortedHeaders appends h's headers to kv, sorted by name.
func sortedHeaders(h map[string]string, kv [][2]string) [][2]string {
	for k, v := range h {
		kv = append(kv, [2]string{k, v})
	}
	sortByName(kv)
	return kv
}

// set fills m as the header k: v, overwriting any value the request had.
func (m *headerMessages) set(k, v string) *corev3.HeaderValueOption {
	m.value.Key, m.value.Value = k, v
	m.opt.Header = &m.value
	m.opt.AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	return &m.opt
}

// sortByName sorts headers by name: by insertion for the handful a response
// usually has (cheaper than a sort calling a comparison func), else by
// slices.SortFunc.
func sortByName(kv [][2]string) {
	if len(kv) > 16 {
		slices.SortFunc(kv, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
		return
	}
	for i := 1; i < len(kv); i++ {
		for j := i; j > 0 && kv[j][0] < kv[j-1][0]; j-- {
			kv[j], kv[j-1] = kv[j-1], kv[j]
		}
	}
}
