package extauthz

import (
	"hash/maphash"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
)

// Allow templates: the CheckResponse messages an allow repeats request after
// request. A caller's allows differ only in the decision id (and the
// removals and rate headers, which are the request's own), yet rendering
// one built, sorted and allocated every identity header and metadata value
// again: on a memo hit the response was half of the bytes a Check
// allocated, and allocation (through the GC) the largest cost left.
//
// A template holds those messages once; responses share them. Sharing is
// safe because nothing writes to a message once it is rendered: the gRPC
// codec only reads (protobuf-go's size cache is atomic; vtprotobuf keeps
// none), and nothing else sees a CheckResponse
// (TestTemplatesSharedUnchanged re-marshals old responses to catch a writer).
//
// A template is found by the caller and rule, and used only when it
// renders exactly what the result holds (allowTemplate.renders), so a
// stale or colliding slot costs a rebuild, never a wrong header.

// templateSlots bounds the templates kept: each is ~1.5 KB, so at most ~6
// MB however many keys call; a slot two callers share is rebuilt by turns.
const templateSlots = 4096

// allowTemplates is a direct-mapped table of allow templates.
type allowTemplates struct {
	seed  maphash.Seed
	slots [templateSlots]atomic.Pointer[allowTemplate]
}

// allowTemplate is what an allow's response shares with every other of the
// same caller, identity headers and rule.
type allowTemplate struct {
	// What it was rendered from, compared on every use.
	rule, keyID, mode, site string
	// upstream are the upstream header options but the decision id's,
	// sorted by name; the decision id's goes at idAt.
	upstream []*corev3.HeaderValueOption
	idAt     int
	status   rpcstatus.Status
	// vals are the metadata values: code, rule, key_id, mode, site.
	vals [5]stringValue
}

// allowResponse holds the messages of one templated allow that are the
// request's own, allocated at once.
type allowResponse struct {
	resp     authv3.CheckResponse
	meta     structpb.Struct
	id       stringValue
	idHeader headerMessages
	ok       authv3.CheckResponse_OkResponse
	okHTTP   authv3.OkHttpResponse
	ptrs     [8]*corev3.HeaderValueOption
}

// checkResponse renders r for Envoy, an allow from its template when it has
// one (else it makes one for the next allow); the same bytes as
// r.CheckResponse().
func (s *Server) checkResponse(r Result) *authv3.CheckResponse {
	// Templates are for allows whose decision id is among the upstream
	// headers, as finish leaves them; anything else renders as it is.
	if !r.Decision.Allow || r.DecisionID == "" || r.Upstream[HeaderDecisionID] != r.DecisionID {
		return r.CheckResponse()
	}
	tt := s.templates.Load()
	if tt == nil {
		s.templates.CompareAndSwap(nil, &allowTemplates{seed: maphash.MakeSeed()})
		tt = s.templates.Load()
	}
	slot := &tt.slots[tt.index(&r)]
	t := slot.Load()
	if t == nil || !t.renders(&r) {
		t = newAllowTemplate(&r)
		slot.Store(t)
	}
	return t.render(&r)
}

// index is r's slot: its caller (the key, or the site of a public route)
// and rule.
func (tt *allowTemplates) index(r *Result) uint64 {
	caller := r.KeyID
	if caller == "" {
		caller = r.Site
	}
	h := maphash.String(tt.seed, caller) ^ maphash.String(tt.seed, r.Decision.Rule)*0x9E3779B97F4A7C15
	return h % templateSlots
}

// newAllowTemplate renders r's shared messages. r is an allow with a
// decision id among its upstream headers.
func newAllowTemplate(r *Result) *allowTemplate {
	t := &allowTemplate{rule: r.Decision.Rule, keyID: r.KeyID, mode: r.Mode, site: r.Site}
	t.status.Code = int32(codes.OK)
	for i, v := range [...]string{"OK", t.rule, t.keyID, t.mode, t.site} {
		t.vals[i].set(v)
	}
	buf := make([][2]string, 0, len(r.Upstream))
	kv := sortedHeaders(r.Upstream, buf)
	msgs := make([]headerMessages, 0, len(kv)-1)
	t.upstream = make([]*corev3.HeaderValueOption, 0, len(kv)-1)
	for i, h := range kv {
		if h[0] == HeaderDecisionID {
			t.idAt = i
			continue
		}
		msgs = append(msgs, headerMessages{})
		t.upstream = append(t.upstream, msgs[len(msgs)-1].set(h[0], h[1]))
	}
	return t
}

// renders reports whether t renders r's shared parts: the same metadata
// values and, but for r's decision id (which checkResponse found among
// them), the same upstream headers.
func (t *allowTemplate) renders(r *Result) bool {
	if r.Decision.Rule != t.rule || r.KeyID != t.keyID || r.Mode != t.mode || r.Site != t.site {
		return false
	}
	if len(r.Upstream) != len(t.upstream)+1 { // +1: the decision id
		return false
	}
	for _, o := range t.upstream {
		if v, ok := r.Upstream[o.Header.Key]; !ok || v != o.Header.Value {
			return false
		}
	}
	return true
}

// render is r's CheckResponse with t's messages: what Result.CheckResponse
// renders, in fewer and smaller allocations.
func (t *allowTemplate) render(r *Result) *authv3.CheckResponse {
	m := new(allowResponse)
	m.resp.Status = &t.status
	m.resp.DynamicMetadata = t.metadata(&m.meta, m.id.set(r.DecisionID))
	n := len(t.upstream) + 1
	var h []*corev3.HeaderValueOption
	if n <= len(m.ptrs) {
		h = m.ptrs[:n:n]
	} else {
		h = make([]*corev3.HeaderValueOption, n)
	}
	copy(h, t.upstream[:t.idAt])
	h[t.idAt] = m.idHeader.set(HeaderDecisionID, r.DecisionID)
	copy(h[t.idAt+1:], t.upstream[t.idAt:])
	m.okHTTP.Headers = h
	m.okHTTP.HeadersToRemove = r.Remove
	if len(r.Decision.ResponseHeaders) > 0 { // rate headers: the request's own
		m.okHTTP.ResponseHeadersToAdd = (*headerSlots)(nil).options(r.Decision.ResponseHeaders)
	}
	m.ok.OkResponse = &m.okHTTP
	m.resp.HttpResponse = &m.ok
	return &m.resp
}

// metadata is Result.metadata's Struct, with the shared values and the
// request's decision id.
func (t *allowTemplate) metadata(s *structpb.Struct, id *structpb.Value) *structpb.Struct {
	f := make(map[string]*structpb.Value, 6)
	f["code"] = &t.vals[0].v
	f["rule"] = &t.vals[1].v
	f["decision_id"] = id
	if t.keyID != "" {
		f["key_id"] = &t.vals[2].v
		f["mode"] = &t.vals[3].v
		f["site"] = &t.vals[4].v
	}
	s.Fields = f
	return s
}
