package extauthz

import (
	"net"
	"net/url"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

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
	h := req.GetAttributes().GetRequest().GetHttp()
	r := Request{Method: h.GetMethod(), Host: h.GetHost(), Path: h.GetPath()}
	if len(h.GetHeaderMap().GetHeaders()) == 0 && lowerCaseKeys(h.GetHeaders()) {
		// What Envoy sends: use its map as is (nothing writes to it).
		r.Headers = h.GetHeaders()
		if r.Headers == nil {
			r.Headers = map[string]string{}
		}
	} else {
		r.Headers = make(map[string]string, len(h.GetHeaders())+len(h.GetHeaderMap().GetHeaders()))
		for k, v := range h.GetHeaders() {
			addHeader(r.Headers, k, v)
		}
	}
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		v := hv.GetValue()
		if raw := hv.GetRawValue(); len(raw) > 0 {
			v = string(raw)
		}
		addHeader(r.Headers, hv.GetKey(), v)
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
	return r
}

func lowerCaseKeys(h map[string]string) bool {
	for k := range h {
		for i := 0; i < len(k); i++ {
			if k[i] >= 'A' && k[i] <= 'Z' {
				return false
			}
		}
	}
	return true
}

// addHeader joins repeated names with a comma, as Envoy does, so a second
// Authorization header is seen rather than silently dropped.
func addHeader(m map[string]string, k, v string) {
	k = strings.ToLower(k)
	if old, ok := m[k]; ok {
		if old == v {
			return
		}
		v = old + "," + v
	}
	m[k] = v
}

// policyRequest builds the request part of the policy input.
func policyRequest(r Request) policies.Request {
	path, query, _ := strings.Cut(r.Path, "?")
	out := policies.Request{
		Method:  r.Method,
		Host:    hostname(r.Host),
		Path:    path,
		Query:   query,
		PathOK:  CanonicalPath(path),
		Origin:  requestOrigin(r.Headers),
		Headers: make(map[string]string, min(len(r.Headers), maxInputHeaders)),
	}
	for k, v := range r.Headers {
		if len(out.Headers) == maxInputHeaders {
			break
		}
		if secretHeaders[k] || strings.HasPrefix(k, ":") || len(v) > maxInputHeaderSize {
			continue
		}
		out.Headers[k] = v
	}
	return out
}

// CanonicalPath rejects every path form that proxies and upstreams may read
// differently (Envoy CVE-2019-9901, CVE-2021-29492, CVE-2021-32779): dot
// segments, empty segments, encoded '/', '\' or '.', ';', '#', '\' and any
// control or non-ASCII byte. Site scoping relies on it.
func CanonicalPath(p string) bool {
	if p == "" || p[0] != '/' || len(p) > maxPath {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < 0x21 || c >= 0x7f || c == '\\' || c == ';' || c == '#' {
			return false
		}
		if c == '%' {
			if i+2 >= len(p) {
				return false
			}
			switch strings.ToLower(p[i+1 : i+3]) {
			case "2f", "5c", "2e", "00", "3b", "23", "25":
				return false
			}
		}
	}
	if p == "/" {
		return true
	}
	if strings.Contains(p, "//") {
		return false
	}
	// One trailing slash ("/v1/x/") is fine; every other segment must be a
	// real name.
	for rest, more := strings.TrimSuffix(p[1:], "/"), true; more; {
		var seg string
		seg, rest, more = strings.Cut(rest, "/")
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// hostname lower-cases a Host/:authority value and drops its port.
func hostname(h string) string {
	h = strings.ToLower(h)
	if !strings.Contains(h, ":") {
		return h // the usual case, without SplitHostPort's error allocation
	}
	if host, _, err := net.SplitHostPort(h); err == nil {
		return strings.Trim(host, "[]")
	}
	return strings.Trim(h, "[]")
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
	if err != nil || u.Host == "" || u.User != nil || u.Opaque != "" {
		return nil
	}
	o := &policies.Origin{Scheme: strings.ToLower(u.Scheme), Host: strings.ToLower(u.Hostname()), Port: u.Port()}
	def := map[string]string{"http": "80", "https": "443"}[o.Scheme]
	if o.Port == "" {
		o.Port = def
	}
	o.DefaultPort = def != "" && o.Port == def
	return o
}
