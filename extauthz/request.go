package extauthz

import (
	"net/netip"
	"net/url"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/internal/ascii"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
)

// Request is an HTTP request to authorize, whichever way it arrived (Envoy's
// gRPC CheckRequest or an HTTP forward-auth call).
type Request struct {
	Method string
	Host   string
	// Path is the raw request target: path and query, not decoded.
	Path string
	// Headers have lower-case names; repeated headers are comma-joined.
	Headers map[string]string
	// BodyKey is a key the token exchange read from its JSON body
	// ({"apiKey"}). Only keygate sets it, never a client header; the policy
	// sees its scheme as "body".
	BodyKey keystore.Secret
	// ClientAddress is the client's IP address: Envoy's source address on
	// gRPC, the one derived through Proxies on forward-auth and the token
	// exchange; the zero Addr when unknown. The policy sees it only for a
	// key with allowed_cidrs (see clientAddressFor).
	ClientAddress netip.Addr
}

// Bounds on what reaches the policy; Envoy has its own limits, these keep
// keygate's work bounded whatever sits in front of it.
const (
	maxInputHeaders    = 100
	maxInputHeaderSize = 8 << 10
	maxPath            = 8 << 10
)

// FromCheckRequest translates Envoy's CheckRequest. Headers come from
// `headers` and, when Envoy is set to encode_raw_headers, from `header_map`
// (raw values); both are read so neither mode loses a credential.
func FromCheckRequest(req *authv3.CheckRequest) Request {
	return fromCheckRequest(req, lowerCaseKeys)
}

// envoyRequest is FromCheckRequest for Server.Check: Envoy's header map is
// used as is, its names not checked, since scanRequest, which reads every
// name anyway, checks them (a pass over the map was ~8% of a memo-hit
// Check); should one not be lower case, authorize translates the request
// again with FromCheckRequest (see scanned). It returns the envoyCheck
// authorize needs for that.
func envoyRequest(req *authv3.CheckRequest, tt *allowTemplates) (Request, envoyCheck) {
	r := fromCheckRequest(req, func(map[string]string) bool { return true })
	ec := envoyCheck{templates: tt}
	if len(req.GetAttributes().GetRequest().GetHttp().GetHeaderMap().GetHeaders()) == 0 {
		ec.unchecked = req
	}
	return r, ec
}

// envoyCheck is what authorize knows of a request that came to the gRPC
// server: the server's templates, and the CheckRequest whose header map
// the request's Headers are, as Envoy sent it, when its names are not yet
// known to be lower case (nil otherwise). A nil *envoyCheck is another
// transport's request.
type envoyCheck struct {
	templates *allowTemplates
	unchecked *authv3.CheckRequest
	// state is the request's state, allocated with the rest of the
	// Check's memory (checkState); nil: authorize allocates one.
	state *requestState
}

// requestState is ec's request state, or a new one.
func (ec *envoyCheck) requestState() *requestState {
	if ec == nil || ec.state == nil {
		return new(requestState)
	}
	return ec.state
}

func (ec *envoyCheck) allowTemplates() *allowTemplates {
	if ec == nil {
		return nil
	}
	return ec.templates
}

func (ec *envoyCheck) uncheckedRequest() *authv3.CheckRequest {
	if ec == nil {
		return nil
	}
	return ec.unchecked
}

// fromCheckRequest is FromCheckRequest; Envoy's header map is used as is
// when lowerCase says its names are.
func fromCheckRequest(req *authv3.CheckRequest, lowerCase func(map[string]string) bool) Request {
	h := req.GetAttributes().GetRequest().GetHttp()
	r := Request{Method: h.GetMethod(), Host: h.GetHost(), Path: h.GetPath()}
	if len(h.GetHeaderMap().GetHeaders()) == 0 && lowerCase(h.GetHeaders()) {
		// What Envoy sends: use its map as is (nothing writes to it).
		r.Headers = h.GetHeaders()
		if r.Headers == nil {
			r.Headers = map[string]string{}
		}
	} else {
		r.Headers = make(map[string]string, len(h.GetHeaders())+len(h.GetHeaderMap().GetHeaders()))
		j := headerJoin{m: r.Headers}
		for k, v := range h.GetHeaders() {
			j.add(k, v)
		}
		for _, hv := range h.GetHeaderMap().GetHeaders() {
			v := hv.GetValue()
			if raw := hv.GetRawValue(); len(raw) > 0 {
				v = string(raw)
			}
			j.add(hv.GetKey(), v)
		}
		j.done()
	}
	if r.Host == "" {
		r.Host = r.Headers[":authority"]
	}
	if r.Method == "" {
		r.Method = r.Headers[":method"]
	}
	if r.Path == "" {
		r.Path = r.Headers[":path"]
	}
	r.ClientAddress = sourceAddr(req.GetAttributes().GetSource().GetAddress().GetSocketAddress().GetAddress())
	return r
}

func lowerCaseKeys(h map[string]string) bool {
	for k := range h {
		if hasUpper(k) {
			return false
		}
	}
	return true
}

// hasUpper reports whether s has an upper-case ASCII letter. Every Check
// asks it of every header name, so it reads eight bytes at a time.
func hasUpper(s string) bool {
	for ; len(s) >= 8; s = s[8:] {
		w := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
			uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
		if upperBytes(w) != 0 {
			return true
		}
	}
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// upperBytes has the high bit set of each byte of w that is 'A'..'Z'. The
// sums add to each byte's low seven bits, so no carry reaches the next
// byte; a byte whose own high bit is set is not ASCII.
func upperBytes(w uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	low := w &^ highs
	atLeastA := low + (0x80-'A')*ones
	pastZ := low + (0x80-'Z'-1)*ones
	return atLeastA &^ pastZ &^ w & highs
}

// headerJoin adds header fields to m under their lower-case names, joining
// a repeated name's values with a comma, as Envoy does, so a second
// Authorization header is seen rather than silently dropped. A value equal
// to the name's value so far adds nothing. The work is linear in what it is
// given: a repeated name's values gather in a buffer that done writes to m
// once (joining into m's string at each repeat copied it every time, which
// is quadratic: a 4 MiB CheckRequest of one name's alternating values would
// take minutes).
type headerJoin struct {
	m      map[string]string
	joined map[string][]byte
}

func (j *headerJoin) add(k, v string) {
	k = ascii.Lower(k)
	old, ok := j.m[k]
	if !ok {
		j.m[k] = v
		return
	}
	b, many := j.joined[k]
	switch {
	case !many && old == v, many && string(b) == v:
		return
	case !many:
		if j.joined == nil {
			j.joined = make(map[string][]byte)
		}
		b = append(make([]byte, 0, 2*(len(old)+1+len(v))), old...)
	}
	j.joined[k] = append(append(b, ','), v...)
}

// done writes the joined values to m.
func (j *headerJoin) done() {
	for k, b := range j.joined {
		j.m[k] = string(b)
	}
}

// policyRequest builds the request part of the policy input.
func policyRequest(r Request) policies.Request {
	req, _, _ := scanRequest(r, nil, false, true)
	return req
}

// scanned is scanRequest for r as it should be: when r's header names are
// those of unchecked (not nil) and one is not lower case, r is translated
// again with FromCheckRequest and scanned again, and that r is returned.
// Without headers, the policy input gets none (see
// Authorizer.DropUnreadHeaders).
func scanned(r Request, unchecked *authv3.CheckRequest, forged []string, headers bool) (Request, policies.Request, []string) {
	req, forged, upper := scanRequest(r, forged, unchecked != nil, headers)
	if upper {
		r = FromCheckRequest(unchecked)
		req, forged, _ = scanRequest(r, forged[:0], false, headers)
	}
	return r, req, forged
}

// scanRequest is policyRequest that also appends to forged the x-keygate-*
// headers the client sent (see clientIdentityHeaders), in the same pass
// over the headers: every header is seen, however many there are. With
// checkNames, it reports whether a name has an upper-case letter.
func scanRequest(r Request, forged []string, checkNames, headers bool) (_ policies.Request, _ []string, upper bool) {
	c := Canonicalize(r)
	out := policies.Request{
		Method: r.Method,
		Host:   c.Host,
		Path:   c.Path,
		Query:  c.Query,
		PathOK: c.OK,
		Origin: requestOrigin(r.Headers),
	}
	// One pass over Envoy's map: the headers that reach the policy are
	// gathered on the stack, then go into a map sized exactly (Envoy's
	// pseudo-headers and the credential are dropped, and a map of up to 8
	// entries is two allocations where one sized for every header sent
	// would be four).
	var buf [16][2]string
	kept := buf[:0]
	for k, v := range r.Headers {
		upper = upper || checkNames && hasUpper(k)
		if strings.HasPrefix(k, identityPrefix) {
			forged = append(forged, k)
		}
		if headers && len(kept) < maxInputHeaders && policyHeader(k, v) {
			kept = append(kept, [2]string{k, v})
		}
	}
	if !headers {
		return out, forged, upper
	}
	out.Headers = make(map[string]string, len(kept))
	for _, kv := range kept {
		out.Headers[kv[0]] = kv[1]
	}
	return out, forged, upper
}

// policyHeader reports whether a request header reaches the policy input.
func policyHeader(k, v string) bool {
	return !strings.HasPrefix(k, ":") && !secretHeader(k) && len(v) <= maxInputHeaderSize
}

// requestOrigin parses Origin, else Referer, into scheme, host and port.
func requestOrigin(h map[string]string) *policies.Origin {
	v, ok := h["origin"]
	if !ok || v == "" {
		v = h["referer"]
	}
	if v == "" || v == "null" || len(v) > 2048 || strings.Contains(v, ",") {
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || u.User != nil || u.Opaque != "" || !isASCII(u.Host) {
		return nil // a browser sends an internationalised name as punycode
	}
	o := &policies.Origin{Scheme: ascii.Lower(u.Scheme), Host: ascii.Lower(u.Hostname()), Port: u.Port()}
	def := defaultPort(o.Scheme)
	if o.Port == "" {
		o.Port = def
	}
	o.DefaultPort = def != "" && o.Port == def
	return o
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// defaultPort is a scheme's default port, "" for a scheme without one.
func defaultPort(scheme string) string {
	switch scheme {
	case "http":
		return "80"
	case "https":
		return "443"
	}
	return ""
}
