package extauthz

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/propagation"
)

// Forward-auth endpoints on the HTTP listener, one per proxy convention. Each
// reads the original request only from the headers its proxy sets, so a
// client cannot pick a convention whose headers it controls (for example an
// X-Forwarded-Uri sent through nginx, which sets X-Original-URI).
const (
	// EnvoyPrefix is for Envoy's ext_authz http_service: the original path
	// follows the prefix (http_service.path_prefix: /ext-authz), the method
	// and Host are the original ones.
	EnvoyPrefix = "/ext-authz"
	// NginxPath is for nginx auth_request: X-Original-Method, X-Original-URI,
	// and X-Forwarded-Host (else Host).
	NginxPath = "/auth-request"
	// ForwardAuthPath is for Traefik forwardAuth and Caddy forward_auth:
	// X-Forwarded-Method, X-Forwarded-Uri, X-Forwarded-Host.
	ForwardAuthPath = "/forward-auth"
)

// Response headers of the forward-auth endpoints.
const (
	// envoyRemoveHeader tells Envoy's http_service which request headers to
	// strip before the upstream sees them.
	envoyRemoveHeader = "x-envoy-auth-headers-to-remove"
	// HeaderDenyStatus and HeaderDenyBody repeat a denial's status and JSON
	// body as headers on the nginx endpoint: auth_request drops the body and
	// passes only 401 and 403 through, so the shipped nginx config rebuilds
	// the response from these (auth_request_set + error_page).
	HeaderDenyStatus = "x-keygate-status"
	HeaderDenyBody   = "x-keygate-body"
)

// maxForwardedURI bounds the original request target a proxy hands over.
const maxForwardedURI = maxPath + 1024

// ForwardAuth answers proxies that authorize over HTTP with the same
// decisions as the gRPC server: 200 with the identity headers on allow; on
// deny the decision's status, JSON body and headers (DenyBody, DenyHeaders).
type ForwardAuth struct {
	Authorizer *Authorizer
	Metrics    *Metrics
	Log        *slog.Logger
	// Proxies says whose X-Forwarded-For names the client (for keys with
	// allowed_cidrs); nil: the TCP peer is the client.
	Proxies *Proxies
}

// Wrap serves the forward-auth endpoints and hands every other request to
// next. It looks at the raw request target, before any ServeMux cleaning,
// because a redirect to a "cleaned" path is no answer for an authorizer.
func (f *ForwardAuth) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := r.RequestURI
		switch {
		case target == EnvoyPrefix || strings.HasPrefix(target, EnvoyPrefix+"/"):
			f.serve(w, r, conventionEnvoy)
		case pathOf(target) == NginxPath:
			f.serve(w, r, conventionNginx)
		case pathOf(target) == ForwardAuthPath:
			f.serve(w, r, conventionForwarded)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func pathOf(target string) string {
	p, _, _ := strings.Cut(target, "?")
	return p
}

type convention int

const (
	conventionEnvoy convention = iota
	conventionNginx
	conventionForwarded
)

// transports name each convention in logs and metrics.
var transports = [...]string{conventionEnvoy: TransportEnvoyHTTP, conventionNginx: TransportNginx, conventionForwarded: TransportForwardAuth}

func (f *ForwardAuth) serve(w http.ResponseWriter, r *http.Request, c convention) {
	start := time.Now()
	ctx, o := f.Authorizer.begin(r.Context(), transports[c], propagation.HeaderCarrier(r.Header))
	o.Client = r.RemoteAddr
	res := func() (res Result) {
		defer func() {
			if p := recover(); p != nil {
				f.Log.Error("panic in forward-auth; denying", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				res = panicResult(f.Authorizer.policy())
			}
		}()
		req, err := fromForwardAuth(r, c)
		if err != nil {
			// The proxy in front is misconfigured (or bypassed): refuse, and
			// say why in keygate's log rather than to the client.
			f.Log.Warn("forward-auth request without the original request; denying", "err", err, "endpoint", pathOf(r.RequestURI))
			return Result{Decision: Deny(f.Authorizer.policy(), denyForwardAuth, "forward_auth")}
		}
		req.ClientAddress = f.Proxies.ClientAddr(r)
		return f.Authorizer.Authorize(ctx, req)
	}()
	f.Authorizer.finish(&o, &res)
	f.Metrics.observe(res, time.Since(start))
	writeForwardAuth(w, res, c)
}

// fromForwardAuth reads the original request out of a forward-auth call
// made by the given proxy convention. The credential and every other header
// are the original request's headers, which all three proxies pass on.
func fromForwardAuth(r *http.Request, c convention) (Request, error) {
	out := Request{Headers: make(map[string]string, min(len(r.Header), maxInputHeaders)+1)}
	j := headerJoin{m: out.Headers}
	for k, vs := range r.Header {
		for _, v := range vs {
			j.add(k, v)
		}
	}
	j.done()
	var method, uri, host string
	switch c {
	case conventionEnvoy:
		method, uri, host = r.Method, strings.TrimPrefix(r.RequestURI, EnvoyPrefix), r.Host
		if uri == "" {
			uri = "/"
		}
	case conventionNginx:
		method, uri = out.Headers["x-original-method"], out.Headers["x-original-uri"]
		host = firstNonEmpty(out.Headers["x-forwarded-host"], r.Host)
	case conventionForwarded:
		method, uri = out.Headers["x-forwarded-method"], out.Headers["x-forwarded-uri"]
		host = firstNonEmpty(out.Headers["x-forwarded-host"], r.Host)
	}
	switch {
	case method == "" || uri == "":
		return Request{}, fmt.Errorf("forward-auth: original method or URI header missing")
	case len(uri) > maxForwardedURI || len(method) > 32 || len(host) > 1024:
		return Request{}, fmt.Errorf("forward-auth: original request too large")
	case strings.Contains(method, ",") || strings.Contains(host, ","):
		// Sent twice (once by the client): which one is real is unknowable.
		return Request{}, fmt.Errorf("forward-auth: original method or host given more than once")
	}
	out.Method, out.Path, out.Host = method, uri, host
	out.Headers[":authority"] = host
	return out, nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// writeForwardAuth renders a result the way the proxy convention needs it.
func writeForwardAuth(w http.ResponseWriter, res Result, c convention) {
	h := w.Header()
	d := res.Decision
	if d.Allow {
		for k, v := range res.UpstreamHeaders() {
			h.Set(k, v)
		}
		for k, v := range d.ResponseHeaders {
			h.Set(k, v)
		}
		if c == conventionEnvoy && len(res.Remove) > 0 {
			remove := append([]string(nil), res.Remove...)
			sort.Strings(remove)
			h.Set(envoyRemoveHeader, strings.Join(remove, ","))
		}
		h.Set("cache-control", "no-store")
		w.WriteHeader(http.StatusOK)
		return
	}
	body := DenyBody(d)
	for k, v := range res.denyHeaders() {
		h.Set(k, v)
	}
	if c == conventionNginx {
		h.Set(HeaderDenyStatus, strconv.Itoa(d.Status))
		h.Set(HeaderDenyBody, asciiJSON(body))
	}
	h.Set("content-length", strconv.Itoa(len(body)))
	w.WriteHeader(d.Status)
	_, _ = w.Write(body)
}

// asciiJSON makes a JSON document safe as one header value: compact, with
// every non-ASCII character as a \u escape (only strings hold any, so the
// document means the same). Invalid JSON cannot reach here: DenyBody is
// marshalled or validated by the policy engine.
func asciiJSON(body []byte) string {
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		return `{"code":"INTERNAL_ERROR","message":"Internal authorization error"}`
	}
	var b strings.Builder
	for _, r := range compact.String() {
		switch {
		case r < utf8.RuneSelf:
			b.WriteRune(r)
		case r > 0xFFFF:
			r -= 0x10000
			fmt.Fprintf(&b, `\u%04x\u%04x`, 0xD800+(r>>10), 0xDC00+(r&0x3FF))
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}
