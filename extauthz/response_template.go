package extauthz

import (
	"hash/maphash"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/keygate/keygate/policies"
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
// none), and nothing else sees a CheckResponse (TestTemplatedAllowSameBytes
// re-marshals responses sent before to catch a writer).
//
// A template is made where an allow's upstream headers are
// (allowTemplates.upstream, on the gRPC server's requests only), found by
// the caller and rule, and used only when it was made from the same caller,
// rule, policy headers and metadata values; Server.Check renders from it
// only when the result still holds exactly its headers
// (allowTemplate.renders). A stale or colliding slot costs an allow
// rendered without a template, or a rebuild, never a wrong header.

// templateSlots bounds the templates kept, and maxTemplatePolicyBytes the
// policy headers one may hold (a template keeps them, their upstream copy
// and their messages: ~2.5 KB for the built-in policy's usual headers, ~5
// KB at the cap), so the table holds at most ~25 MB however many keys call
// and whatever headers a policy sets (up to 32 of 4 KB each: ~144 KB a
// template, 590 MB for the table, without the cap). An allow with larger
// policy headers is rendered without a template, as before templates.
//
// A slot two hot callers share would be rebuilt by turns, each allow
// paying for a template (17 allocations) instead of the 7 of an allow
// rendered without one. So a slot's template is replaced only after
// replaceAfterMisses allows in a row that it did not match: the caller
// that holds it keeps it while it is used, the other is rendered without
// a template, and a caller that stopped calling (or a template a reload
// outdated) gives its slot up after a few allows.
const (
	templateSlots          = 4096
	maxTemplatePolicyBytes = 1024
	replaceAfterMisses     = 4
)

// allowTemplates is a direct-mapped table of allow templates.
type allowTemplates struct {
	seed  maphash.Seed
	slots [templateSlots]atomic.Pointer[allowTemplate]
}

// allowTemplate is what an allow's result and response share with every
// other of the same caller, rule and policy headers.
type allowTemplate struct {
	// misses counts the allows in a row that found t in their slot and
	// did not match it (see replaceAfterMisses); a match resets it. It is
	// the one field that changes after t is made, and it is only a hint:
	// racing updates cost a template at most.
	misses atomic.Int32

	// What it was made from, compared on every use.
	caller caller
	policy map[string]string // the policy's upstream headers
	rule   string
	// keyID, mode and site are the result's, for the metadata.
	keyID, mode, site string

	// upstream are the upstream headers but the decision id; every allow
	// made from t shares it as its Result.Upstream, and nothing writes to
	// it once t is made.
	upstream map[string]string
	// options are upstream rendered, sorted by name; the decision id's
	// goes at idAt.
	options []*corev3.HeaderValueOption
	idAt    int
	status  rpcstatus.Status
	// meta are the metadata fields but the decision id, with values in vals
	// (code, rule, key_id, mode, site).
	meta map[string]*structpb.Value
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

// upstream is res's upstream headers for an allow d by c, its template's
// map (shared, read-only: see Result.Upstream; a copy of it was 336 bytes
// an allow), and the template; without templates (tt nil: not the gRPC
// transport), or when no template is used, they are built and there is
// none.
func (tt *allowTemplates) upstream(res *Result, c caller, d policies.Decision) (map[string]string, *allowTemplate) {
	if tt == nil {
		return identity(c, d.Headers), nil
	}
	slot := &tt.slots[tt.index(c, d.Rule)]
	t := slot.Load()
	switch {
	case t != nil && t.madeFrom(res, c, d):
		if t.misses.Load() != 0 { // a write only when there is one to undo
			t.misses.Store(0)
		}
		return t.upstream, t
	case t != nil && t.misses.Add(1) < replaceAfterMisses:
		// Another caller holds the slot and used it lately: this allow
		// is rendered without a template rather than evicting it.
		return identity(c, d.Headers), nil
	case headerBytes(d.Headers) > maxTemplatePolicyBytes:
		// Sized only when a template would be made: no stored template
		// holds policy headers past the cap, so a decision with such
		// headers never matches one above.
		return identity(c, d.Headers), nil
	}
	t = newAllowTemplate(res, c, d)
	slot.Store(t)
	return t.upstream, t
}

// index is the slot of c's allows by rule.
func (tt *allowTemplates) index(c caller, rule string) uint64 {
	who := c.keyID
	if who == "" {
		who = c.site
	}
	h := maphash.String(tt.seed, who) ^ maphash.String(tt.seed, rule)*0x9E3779B97F4A7C15
	return h % templateSlots
}

// madeFrom reports whether t was made for res's allow d by c.
func (t *allowTemplate) madeFrom(res *Result, c caller, d policies.Decision) bool {
	return t.caller == c && t.rule == d.Rule && t.keyID == res.KeyID && t.mode == res.Mode && t.site == res.Site &&
		sameHeaders(t.policy, d.Headers)
}

// headerBytes is the size of h's names and values.
func headerBytes(h map[string]string) int {
	n := 0
	for k, v := range h {
		n += len(k) + len(v)
	}
	return n
}

func sameHeaders(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// newAllowTemplate renders the shared parts of res's allow d by c.
func newAllowTemplate(res *Result, c caller, d policies.Decision) *allowTemplate {
	t := &allowTemplate{caller: c, policy: maps.Clone(d.Headers), rule: d.Rule, keyID: res.KeyID, mode: res.Mode, site: res.Site}
	t.upstream = identity(c, d.Headers)
	// A policy header of that name is overwritten by each request's id.
	delete(t.upstream, HeaderDecisionID)
	t.status.Code = int32(codes.OK)
	t.meta = t.newMetadata()
	kv := sortedHeaders(t.upstream, make([][2]string, 0, len(t.upstream)+1))
	t.idAt, _ = slices.BinarySearchFunc(kv, HeaderDecisionID, func(h [2]string, name string) int { return strings.Compare(h[0], name) })
	msgs := make([]headerMessages, len(kv))
	t.options = make([]*corev3.HeaderValueOption, len(kv))
	for i, h := range kv {
		t.options[i] = msgs[i].set(h[0], h[1])
	}
	return t
}

// allowTemplates is s's table of templates, made on first use.
func (s *Server) allowTemplates() *allowTemplates {
	if tt := s.templates.Load(); tt != nil {
		return tt
	}
	s.templates.CompareAndSwap(nil, &allowTemplates{seed: maphash.MakeSeed()})
	return s.templates.Load()
}

// checkResponse renders r for Envoy: from its template when r still holds
// what the template renders (into m, the request's own messages), else as
// Result.CheckResponse; the same bytes either way.
func (s *Server) checkResponse(r Result, m *allowResponse) *authv3.CheckResponse {
	if t := r.template; t != nil && t.renders(&r) {
		return t.render(&r, m)
	}
	return r.CheckResponse()
}

// renders reports whether t renders r: an allow with t's metadata values,
// and t's upstream headers (the very map: nothing writes to it) and r's
// decision id as its upstream headers.
func (t *allowTemplate) renders(r *Result) bool {
	if !r.Decision.Allow || r.DecisionID == "" || !r.shared() || !sameMap(r.Upstream, t.upstream) {
		return false
	}
	return r.Decision.Rule == t.rule && r.KeyID == t.keyID && r.Mode == t.mode && r.Site == t.site
}

// sameMap reports whether a and b are one map.
func sameMap(a, b map[string]string) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// render is r's CheckResponse with t's messages, the request's own in m
// (new ones when nil): what Result.CheckResponse renders, in fewer and
// smaller allocations.
func (t *allowTemplate) render(r *Result, m *allowResponse) *authv3.CheckResponse {
	if m == nil {
		m = new(allowResponse)
	}
	m.resp.Status = &t.status
	m.resp.DynamicMetadata = t.metadata(&m.meta, m.id.set(r.DecisionID))
	n := len(t.options) + 1
	var h []*corev3.HeaderValueOption
	if n <= len(m.ptrs) {
		h = m.ptrs[:n:n]
	} else {
		h = make([]*corev3.HeaderValueOption, n)
	}
	copy(h, t.options[:t.idAt])
	h[t.idAt] = m.idHeader.set(HeaderDecisionID, r.DecisionID)
	copy(h[t.idAt+1:], t.options[t.idAt:])
	m.okHTTP.Headers = h
	m.okHTTP.HeadersToRemove = r.Remove
	if len(r.Decision.ResponseHeaders) > 0 { // rate headers: the request's own
		m.okHTTP.ResponseHeadersToAdd = (*headerSlots)(nil).options(r.Decision.ResponseHeaders)
	}
	m.ok.OkResponse = &m.okHTTP
	m.resp.HttpResponse = &m.ok
	return &m.resp
}

// metadata is Result.metadata's Struct: a copy of t's fields (a copy of a
// small map is one memory copy, where six insertions hash six names) with
// the request's decision id.
func (t *allowTemplate) metadata(s *structpb.Struct, id *structpb.Value) *structpb.Struct {
	f := maps.Clone(t.meta)
	f["decision_id"] = id
	s.Fields = f
	return s
}

// newMetadata is the metadata fields but the decision id, with t's values;
// room for the decision id is made now so that each copy has it.
func (t *allowTemplate) newMetadata() map[string]*structpb.Value {
	f := make(map[string]*structpb.Value, 6)
	f["code"] = t.vals[0].set("OK")
	f["rule"] = t.vals[1].set(t.rule)
	if t.keyID != "" {
		f["key_id"] = t.vals[2].set(t.keyID)
		f["mode"] = t.vals[3].set(t.mode)
		f["site"] = t.vals[4].set(t.site)
	}
	return f
}
