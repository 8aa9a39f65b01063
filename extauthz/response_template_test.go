package extauthz

import (
	"bytes"
	"context"
	"hash/maphash"
	"maps"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/google/go-cmp/cmp"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/policies"
)

// decided is what Server.Check does before it renders: the result with its
// decision id.
func decided(t *testing.T, s *Server, r Request) Result {
	t.Helper()
	ctx, o := s.Authorizer.begin(context.Background(), TransportGRPC, nil)
	res := s.Authorizer.authorize(ctx, s.Authorizer.policy(), r, &envoyCheck{templates: s.allowTemplates()}, time.Time{})
	s.Authorizer.finish(&o, &res)
	return res
}

// wire is the bytes gRPC would send for resp.
func wire(t *testing.T, resp *authv3.CheckResponse) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rendered is a response and its bytes when it was rendered.
type rendered struct {
	resp  *authv3.CheckResponse
	bytes []byte
}

// sameAsUntemplated renders res as Server.Check does and fails unless the
// bytes are those Result.CheckResponse renders without a template.
func sameAsUntemplated(t *testing.T, s *Server, res Result) rendered {
	t.Helper()
	got := s.checkResponse(res, nil)
	b := wire(t, got)
	if want := wire(t, res.CheckResponse()); !bytes.Equal(b, want) {
		t.Fatalf("templated response differs:\n got %v\nwant %v", got, res.CheckResponse())
	}
	return rendered{got, b}
}

// unchangedSince fails if a response's bytes changed after it was rendered:
// something wrote through a message responses share.
func unchangedSince(t *testing.T, all []rendered) {
	t.Helper()
	for i, r := range all {
		if b := wire(t, r.resp); !bytes.Equal(b, r.bytes) {
			t.Fatalf("response %d changed after it was sent:\n now %v", i, r.resp)
		}
	}
}

// TestTemplatedAllowSameBytes: an allow rendered from its template is byte
// for byte what Result.CheckResponse renders (first use, reuse, other keys,
// modes, forged identity headers, public routes, rate headers), and no
// later Check changes a response sent before (templates share messages).
func TestTemplatedAllowSameBytes(t *testing.T) {
	f := newFixture(t)
	live, test := f.live.Reveal(), f.test.Reveal()
	requests := []Request{
		{Method: "GET", Host: "api.example.com", Path: "/v1/videos?limit=10", Headers: map[string]string{"authorization": "Bearer " + live}},
		{Method: "GET", Host: "api.example.com", Path: "/v1/videos/1", Headers: map[string]string{"x-api-key": test}},
		{Method: "GET", Host: "api.example.com", Path: "/v1/sites/acme-web/videos", Headers: map[string]string{"x-api-key": live,
			"x-keygate-account": "evil", "x-keygate-decision-id": "forged", "x-keygate-admin": "1"}},
		{Method: "GET", Host: "api.example.com", Path: "/health", Headers: map[string]string{"x-keygate-account": "evil"}},
		{Method: "GET", Host: "api.example.com", Path: "/v1/videos", Headers: map[string]string{}},
	}
	var all []rendered
	for range 3 { // the first round makes the templates, the others reuse them
		for _, r := range requests {
			all = append(all, sameAsUntemplated(t, f.server, decided(t, f.server, r)))
		}
	}
	// Twice in a row, so no other request's slot can collide in between.
	again := []rendered{sameAsUntemplated(t, f.server, decided(t, f.server, requests[0])),
		sameAsUntemplated(t, f.server, decided(t, f.server, requests[0]))}
	if a, b := allowHeaders(again[0].resp), allowHeaders(again[1].resp); a[0] != b[0] {
		t.Fatal("the same allow twice shares no header message: not testing templates")
	}
	all = append(all, again...)

	lf := newLimitsFixture(t, keystore.Limits{"rate": 3})
	lf.withLimiter(t, limits.Config{})
	s := &Server{Authorizer: lf.authz, Log: lf.authz.Log}
	for range 5 { // allows with RateLimit-* headers, then refusals
		r := Request{Method: "GET", Host: "api.example.test", Path: "/v1/videos", Headers: map[string]string{"x-api-key": lf.key}}
		all = append(all, sameAsUntemplated(t, s, decided(t, s, r)))
	}
	unchangedSince(t, all)
}

func allowHeaders(resp *authv3.CheckResponse) []any {
	var out []any
	for _, h := range resp.GetOkResponse().GetHeaders() {
		out = append(out, h)
	}
	return append(out, nil)
}

// TestTemplateRendersOnlyItsOwn: a template renders only a result that
// holds exactly its headers and metadata values; any difference made after
// the result took its template (a header changed, added or removed, another
// mode, rule or decision id, rate headers) renders the result's own.
func TestTemplateRendersOnlyItsOwn(t *testing.T) {
	s := &Server{}
	base := func() Result {
		d := policies.Decision{Allow: true, Status: 200, Rule: "allow", Headers: map[string]string{"x-tier": "gold"}}
		r := Result{Decision: d, KeyID: "key_1", Mode: "live", Site: "site_1", DecisionID: "01DECISION", Remove: []string{"authorization"}}
		c := caller{key: true, account: "acct", site: "site_1", keyID: "key_1", mode: "live", plan: "pro"}
		r.Upstream, r.template = s.allowTemplates().upstream(&r, c, d)
		return r
	}
	// A result's headers are changed by replacing its map (a template's
	// is shared and never written), keeping its template or, as a result
	// whose map is its own, without one.
	replaced := func(own bool, change func(h map[string]string)) func(r *Result) {
		return func(r *Result) {
			h := maps.Clone(r.UpstreamHeaders())
			change(h)
			r.Upstream = h
			if own {
				r.template = nil
			}
		}
	}
	edits := []func(r *Result){
		func(r *Result) {},
		replaced(true, func(h map[string]string) { h[HeaderPlan] = "free" }),
		replaced(false, func(h map[string]string) { h[HeaderPlan] = "free" }),
		replaced(true, func(h map[string]string) { delete(h, "x-tier") }),
		replaced(true, func(h map[string]string) { h["x-zzz"] = "more" }),
		replaced(false, func(h map[string]string) { delete(h, "x-tier"); h["x-tier2"] = "gold" }),
		replaced(true, func(map[string]string) {}),
		func(r *Result) { r.Mode = "test" },
		func(r *Result) { r.Decision.Rule = "other" },
		func(r *Result) { r.DecisionID = "01OTHER" },
		replaced(true, func(h map[string]string) { h[HeaderDecisionID] = "01FORGED" }),
		func(r *Result) { r.Decision.ResponseHeaders = map[string]string{"ratelimit-remaining": "1"} },
		func(r *Result) { r.KeyID, r.Mode, r.Site = "", "", "" },
		func(r *Result) { r.Decision.Allow = false },
	}
	var all []rendered
	for range 2 {
		for _, edit := range edits {
			r := base()
			edit(&r)
			all = append(all, sameAsUntemplated(t, s, r))
		}
	}
	unchangedSince(t, all)
}

// TestTemplateUpstreamNotWritten: allows share their template's upstream
// headers, and no allow writes to them (its decision id least of all), yet
// every allow's id reaches its upstream headers, its response and its
// forward-auth rendering.
func TestTemplateUpstreamNotWritten(t *testing.T) {
	f := newFixture(t)
	r := Request{Method: "GET", Host: "api.example.com", Path: "/v1/videos/1",
		Headers: map[string]string{"x-api-key": f.live.Reveal(), "x-keygate-decision-id": "forged"}}
	first := decided(t, f.server, r)
	if !first.Decision.Allow || first.template == nil || !first.shared() {
		t.Fatalf("want a templated allow, got %+v", first.Decision)
	}
	want := maps.Clone(first.Upstream)
	if _, ok := want[HeaderDecisionID]; ok {
		t.Fatalf("the template's upstream headers hold a decision id: %v", want)
	}
	ids := map[string]bool{}
	for range 3 {
		res := decided(t, f.server, r)
		if res.template != first.template || !sameMap(res.Upstream, first.Upstream) {
			t.Fatal("the same allow again did not share its template's map: not testing sharing")
		}
		if got := res.UpstreamHeaders()[HeaderDecisionID]; got != res.DecisionID || got == "" || ids[got] {
			t.Fatalf("upstream decision id %q, want the allow's own %q", got, res.DecisionID)
		}
		ids[res.DecisionID] = true
		if got := headerOf(f.server.checkResponse(res, nil).GetOkResponse().GetHeaders(), HeaderDecisionID); got != res.DecisionID {
			t.Fatalf("response decision id %q, want %q", got, res.DecisionID)
		}
		if slices.Contains(res.Remove, HeaderDecisionID) {
			t.Fatalf("the decision id header is removed after it is set: %v", res.Remove)
		}
		rec := httptest.NewRecorder()
		writeForwardAuth(rec, res, conventionEnvoy)
		if got := rec.Header().Get(HeaderDecisionID); got != res.DecisionID {
			t.Fatalf("forward-auth decision id %q, want %q", got, res.DecisionID)
		}
	}
	if diff := cmp.Diff(want, first.template.upstream); diff != "" {
		t.Fatalf("the template's upstream headers changed (-before +after):\n%s", diff)
	}
}

// TestTemplateUpstreamIsIdentity: the upstream headers an allow takes from
// a template are those identity builds for its caller and policy headers,
// whichever allows used the slot before (the same key id and rule with
// another plan, site, mode or policy headers share one).
func TestTemplateUpstreamIsIdentity(t *testing.T) {
	tt := (&Server{}).allowTemplates()
	key := caller{key: true, account: "acct", site: "site_1", keyID: "key_1", mode: "live", plan: "pro"}
	callers := []caller{key, {}, {public: true, account: "acct", site: "site_1", mode: "live", plan: "pro"}}
	for _, edit := range []func(c *caller){
		func(c *caller) { c.plan = "free" }, func(c *caller) { c.site = "site_2" },
		func(c *caller) { c.mode = "test" }, func(c *caller) { c.account = "other" },
		func(c *caller) { c.key, c.public = false, true },
	} {
		c := key
		edit(&c)
		callers = append(callers, c)
	}
	headers := []map[string]string{nil, {"x-tier": "gold"}, {"x-tier": "silver"}, {"x-tier": "gold", "x-more": "1"},
		{HeaderAccount: "forged", HeaderDecisionID: "forged"}}
	for range 2 {
		for _, c := range callers {
			for _, h := range headers {
				d := policies.Decision{Allow: true, Rule: "allow", Headers: h}
				res := Result{Decision: d, KeyID: c.keyID}
				got, _ := tt.upstream(&res, c, d)
				want := identity(c, h)
				delete(want, HeaderDecisionID) // finish sets the request's
				delete(got, HeaderDecisionID)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("caller %+v, policy headers %v (-want +got):\n%s", c, h, diff)
				}
			}
		}
	}
}

// TestTemplateSkipsLargePolicyHeaders: an allow whose policy headers pass
// maxTemplatePolicyBytes gets its headers built, without a template (the
// table's memory bound), and a small one still gets a template.
func TestTemplateSkipsLargePolicyHeaders(t *testing.T) {
	tt := &allowTemplates{seed: maphash.MakeSeed()}
	res := &Result{KeyID: "key_1", Mode: "live", Site: "site_1"}
	c := caller{key: true, account: "acct_1", site: "site_1", keyID: "key_1", mode: "live", plan: "pro"}
	big := map[string]string{"x-meta": strings.Repeat("v", maxTemplatePolicyBytes)}
	up, tmpl := tt.upstream(res, c, policies.Decision{Rule: "key_route", Headers: big})
	if tmpl != nil {
		t.Fatal("policy headers past the cap got a template")
	}
	if !maps.Equal(up, identity(c, big)) {
		t.Fatalf("upstream %v, want %v", up, identity(c, big))
	}
	for i := range tt.slots {
		if tt.slots[i].Load() != nil {
			t.Fatalf("slot %d holds a template", i)
		}
	}
	if _, tmpl = tt.upstream(res, c, policies.Decision{Rule: "key_route", Headers: map[string]string{"x-meta": "v"}}); tmpl == nil {
		t.Fatal("small policy headers got no template")
	}
}

// collidingCallers are two key callers whose allows by rule share one of
// tt's slots.
func collidingCallers(t *testing.T, tt *allowTemplates, rule string) (caller, caller) {
	t.Helper()
	a := caller{key: true, account: "acct_1", site: "site_1", keyID: "key_a", mode: "live", plan: "pro"}
	for i := range 1 << 20 {
		b := caller{key: true, account: "acct_2", site: "site_2", keyID: "key_" + strconv.Itoa(i), mode: "live", plan: "max"}
		if tt.index(b, rule) == tt.index(a, rule) {
			return a, b
		}
	}
	t.Fatal("no colliding caller found")
	return caller{}, caller{}
}

// alternate makes allows by a and b in turns, n of each, checking each
// one's upstream headers, and returns how many times their slot's template
// was replaced.
func alternate(t *testing.T, tt *allowTemplates, a, b caller, d policies.Decision, n int) int {
	t.Helper()
	slot := &tt.slots[tt.index(a, d.Rule)]
	replaced := 0
	for range n {
		for _, c := range []caller{a, b} {
			before := slot.Load()
			res := Result{Decision: d, KeyID: c.keyID, Mode: c.mode, Site: c.site}
			got, _ := tt.upstream(&res, c, d)
			if want := identity(c, d.Headers); !maps.Equal(got, want) {
				t.Fatalf("caller %s: upstream %v, want %v", c.keyID, got, want)
			}
			if before != nil && slot.Load() != before {
				replaced++
			}
		}
	}
	return replaced
}

// TestTemplateSlotCollision: two hot callers whose allows share a slot do
// not rebuild its template on every allow (each rebuild cost 17
// allocations where an allow without a template costs 7): the caller that
// holds the slot keeps it and the other is rendered without a template,
// until the holder stops calling.
func TestTemplateSlotCollision(t *testing.T) {
	tt := &allowTemplates{seed: maphash.MakeSeed()}
	d := policies.Decision{Allow: true, Rule: "key_route", Headers: map[string]string{"x-tier": "gold"}}
	a, b := collidingCallers(t, tt, d.Rule)
	if n := alternate(t, tt, a, b, d, 50); n != 0 {
		t.Fatalf("the shared slot's template was replaced %d times in 100 alternating allows", n)
	}
	slot := &tt.slots[tt.index(a, d.Rule)]
	if got := slot.Load(); got == nil || got.caller != a {
		t.Fatalf("the slot holds %+v, want the first caller's template", got)
	}
	// a's last allow, then a stops calling: b's allows take the slot over
	// after a few.
	resA := Result{Decision: d, KeyID: a.keyID, Mode: a.mode, Site: a.site}
	tt.upstream(&resA, a, d)
	for i := range replaceAfterMisses {
		res := Result{Decision: d, KeyID: b.keyID, Mode: b.mode, Site: b.site}
		_, tmpl := tt.upstream(&res, b, d)
		if last := i == replaceAfterMisses-1; (tmpl != nil) != last || (tmpl != nil && slot.Load() != tmpl) {
			t.Fatalf("allow %d of the caller left out: template %v (want one only at allow %d)", i+1, tmpl != nil, replaceAfterMisses)
		}
	}
}

// TestTemplateSlotCollisionAllocs: an alternating pair of colliding allows
// allocates no more than the holder's templated allow and the other's
// untemplated one (before, each allow built a template).
func TestTemplateSlotCollisionAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	tt := &allowTemplates{seed: maphash.MakeSeed()}
	d := policies.Decision{Allow: true, Rule: "key_route", Headers: map[string]string{"x-tier": "gold"}}
	a, b := collidingCallers(t, tt, d.Rule)
	resA := Result{Decision: d, KeyID: a.keyID, Mode: a.mode, Site: a.site}
	resB := Result{Decision: d, KeyID: b.keyID, Mode: b.mode, Site: b.site}
	tt.upstream(&resA, a, d)
	held := testing.AllocsPerRun(100, func() { tt.upstream(&resA, a, d) })
	var sink map[string]string
	plain := testing.AllocsPerRun(100, func() { sink = identity(b, d.Headers) })
	_ = sink
	pair := testing.AllocsPerRun(100, func() {
		tt.upstream(&resA, a, d)
		tt.upstream(&resB, b, d)
	})
	if pair > held+plain {
		t.Fatalf("an alternating colliding pair allocates %.0f, want at most %.0f (templated %.0f + untemplated %.0f)", pair, held+plain, held, plain)
	}
}

// A templated allow's rate headers (response headers outside any slots)
// are one allocation, messages and list together; more than fit are two,
// as before. It was two for any number.
func TestRateHeadersAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes what allocates")
	}
	rate := map[string]string{"x-ratelimit-limit": "100", "x-ratelimit-remaining": "99", "x-ratelimit-reset": "60"}
	var opts []*corev3.HeaderValueOption
	if n := testing.AllocsPerRun(100, func() { opts = (*headerSlots)(nil).options(rate) }); n != 1 {
		t.Errorf("three rate headers: %.1f allocations, want 1", n)
	}
	if len(opts) != 3 || opts[0].GetHeader().GetKey() != "x-ratelimit-limit" || opts[2].GetHeader().GetValue() != "60" ||
		opts[1].GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
		t.Errorf("options = %v, want the three headers sorted by name, each overwriting", opts)
	}
	many := map[string]string{}
	for i := range 6 {
		many["x-h"+strconv.Itoa(i)] = "v"
	}
	if n := testing.AllocsPerRun(100, func() { opts = (*headerSlots)(nil).options(many) }); n != 2 || len(opts) != 6 {
		t.Errorf("six headers: %.1f allocations and %d options, want 2 and 6", n, len(opts))
	}
}
