package envoy

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// The imports of the extension packages (hcm, router, stream, upstreams
// http, ext_authz) register their types, so protojson resolves every
// typed_config Any envoy.yaml names; an unknown one is an error.

// parseBootstrap reads a YAML bootstrap as Envoy does, but stricter: unknown
// fields are errors, every typed_config must resolve, and ValidateAll (the
// proto constraints Envoy enforces at start-up) must pass.
func parseBootstrap(raw []byte) (*bootstrapv3.Bootstrap, error) {
	var doc any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("to JSON: %w", err)
	}
	var b bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, &b); err != nil {
		return nil, fmt.Errorf("not a valid v3 Bootstrap: %w", err)
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("fails Envoy's proto validation: %w", err)
	}
	return &b, nil
}

// unpack decodes an Any and validates the message inside it, which
// Bootstrap.ValidateAll does not look into.
func unpack(a *anypb.Any, into interface {
	proto.Message
	ValidateAll() error
}) error {
	if err := a.UnmarshalTo(into); err != nil {
		return fmt.Errorf("typed_config %s: %w", a.GetTypeUrl(), err)
	}
	if err := into.ValidateAll(); err != nil {
		return fmt.Errorf("typed_config %s: %w", a.GetTypeUrl(), err)
	}
	return nil
}

// envoyConfig is envoy.yaml with its typed parts unpacked and validated.
type envoyConfig struct {
	bootstrap *bootstrapv3.Bootstrap
	hcm       *hcmv3.HttpConnectionManager
	authz     *extauthzv3.ExtAuthz
	accessLog *streamv3.StdoutAccessLog
	filters   []string
	clusters  map[string]*clusterv3.Cluster
}

func parseConfig(raw []byte) (envoyConfig, error) {
	b, err := parseBootstrap(raw)
	if err != nil {
		return envoyConfig{}, err
	}
	c := envoyConfig{bootstrap: b, clusters: map[string]*clusterv3.Cluster{}, hcm: &hcmv3.HttpConnectionManager{}}
	listeners := b.GetStaticResources().GetListeners()
	if len(listeners) != 1 || len(listeners[0].GetFilterChains()) != 1 {
		return c, fmt.Errorf("want one listener with one filter chain, got %d listeners", len(listeners))
	}
	nf := listeners[0].GetFilterChains()[0].GetFilters()
	if len(nf) != 1 || nf[0].GetName() != "envoy.filters.network.http_connection_manager" {
		return c, fmt.Errorf("want exactly the HTTP connection manager, got %v", nf)
	}
	if err := unpack(nf[0].GetTypedConfig(), c.hcm); err != nil {
		return c, err
	}
	for _, f := range c.hcm.GetHttpFilters() {
		c.filters = append(c.filters, f.GetName())
		switch f.GetName() {
		case "envoy.filters.http.ext_authz":
			c.authz = &extauthzv3.ExtAuthz{}
			err = unpack(f.GetTypedConfig(), c.authz)
		case "envoy.filters.http.router":
			err = unpack(f.GetTypedConfig(), &routerv3.Router{})
		default:
			err = fmt.Errorf("unexpected http filter %s", f.GetName())
		}
		if err != nil {
			return c, err
		}
	}
	for _, l := range c.hcm.GetAccessLog() {
		c.accessLog = &streamv3.StdoutAccessLog{}
		if err := unpack(l.GetTypedConfig(), c.accessLog); err != nil {
			return c, err
		}
	}
	for _, vh := range c.hcm.GetRouteConfig().GetVirtualHosts() {
		for _, rt := range vh.GetRoutes() {
			for name, cfg := range rt.GetTypedPerFilterConfig() {
				if name != "envoy.filters.http.ext_authz" {
					return c, fmt.Errorf("unexpected per-route config %s", name)
				}
				if err := unpack(cfg, &extauthzv3.ExtAuthzPerRoute{}); err != nil {
					return c, err
				}
			}
		}
	}
	for _, cl := range b.GetStaticResources().GetClusters() {
		c.clusters[cl.GetName()] = cl
		for _, opt := range cl.GetTypedExtensionProtocolOptions() {
			if err := unpack(opt, &httpv3.HttpProtocolOptions{}); err != nil {
				return c, err
			}
		}
	}
	return c, nil
}

func loadConfig(t *testing.T) envoyConfig {
	t.Helper()
	raw, err := os.ReadFile("envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseConfig(raw)
	if err != nil {
		t.Fatalf("envoy.yaml: %v", err)
	}
	return c
}

// TestEnvoyConfigLoadsStrictly: envoy.yaml is a valid v3 bootstrap.
func TestEnvoyConfigLoadsStrictly(t *testing.T) {
	c := loadConfig(t)
	if got := strings.Join(c.filters, ","); got != "envoy.filters.http.ext_authz,envoy.filters.http.router" {
		t.Errorf("http_filters = %s, want ext_authz then router", got)
	}
}

// TestEnvoyConfigRejectsWhatEnvoyWould: the loader is strict, so the tests
// here can fail: an unknown field, an unresolvable Any, a failed constraint
// (at the top level and inside a typed_config) are all errors.
func TestEnvoyConfigRejectsWhatEnvoyWould(t *testing.T) {
	good, err := os.ReadFile("envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, from, to string }{
		{"unknown field in ext_authz", "failure_mode_allow: false", "failure_mode_alow: false"},
		{"unknown typed_config type", "ext_authz.v3.ExtAuthz\n", "ext_authz.v3.ExtAuthzz\n"},
		{"constraint in the bootstrap", "port_value: 10000", "port_value: 70000"},
		{"unknown enum value", "transport_api_version: V3", "transport_api_version: V9"},
		{"constraint inside typed_config", "cluster_name: keygate_grpc}", "cluster_name: \"\"}"},
		{"unknown per-route field", "disabled: true", "disable: true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(string(good), tt.from) {
				t.Fatalf("envoy.yaml no longer contains %q; update the test", tt.from)
			}
			if _, err := parseConfig([]byte(strings.Replace(string(good), tt.from, tt.to, 1))); err == nil {
				t.Errorf("replacing %q with %q still loads", tt.from, tt.to)
			}
		})
	}
}

// TestEnvoyConfigSafety: the settings that keep an outage or a misbehaving
// authorizer from letting requests through.
func TestEnvoyConfigSafety(t *testing.T) {
	c := loadConfig(t)
	a := c.authz
	if a == nil {
		t.Fatal("no envoy.filters.http.ext_authz filter")
	}
	if a.GetFailureModeAllow() {
		t.Error("failure_mode_allow must be false: an unreachable keygate would let every request through")
	}
	if got := a.GetStatusOnError().GetCode(); got != 503 {
		t.Errorf("status_on_error = %d, want 503 (an outage is not a 403)", got)
	}
	if got := a.GetTransportApiVersion().String(); got != "V3" {
		t.Errorf("transport_api_version = %s, want V3", got)
	}
	gs := a.GetGrpcService()
	if gs.GetEnvoyGrpc().GetClusterName() != "keygate_grpc" {
		t.Errorf("grpc_service cluster = %q, want keygate_grpc", gs.GetEnvoyGrpc().GetClusterName())
	}
	if d := gs.GetTimeout().AsDuration(); d <= 150*time.Millisecond || d > 500*time.Millisecond {
		t.Errorf("grpc timeout = %s, want above keygate's 150ms budget and at most 500ms", d)
	}
	if a.GetHttpService() != nil {
		t.Error("the compose setup uses the gRPC service, not http_service")
	}
	if !a.GetClearRouteCache() {
		t.Error("clear_route_cache must be true so routes match keygate's x-keygate-mode, not the client's")
	}
	if !a.GetValidateMutations() {
		t.Error("validate_mutations must be true")
	}
	r := a.GetDecoderHeaderMutationRules()
	switch {
	case r == nil:
		t.Fatal("decoder_header_mutation_rules missing")
	case !r.GetDisallowSystem().GetValue():
		t.Error("disallow_system must be true (host, :authority, :method, :scheme)")
	case r.GetAllowEnvoy().GetValue():
		t.Error("allow_envoy must be false (x-envoy-*)")
	case !r.GetDisallowIsError().GetValue():
		t.Error("disallow_is_error must be true: a forbidden mutation fails the request")
	case r.GetDisallowAll().GetValue():
		t.Error("disallow_all would drop the identity headers")
	}
	if re := r.GetDisallowExpression().GetRegex(); !strings.Contains(re, "x-forwarded-") {
		t.Errorf("disallow_expression = %q, want x-forwarded-* forbidden", re)
	}

	h := c.hcm
	if !h.GetNormalizePath().GetValue() || !h.GetMergeSlashes() || h.GetPathWithEscapedSlashesAction() != hcmv3.HttpConnectionManager_REJECT_REQUEST {
		t.Error("paths must be normalized, slashes merged and escaped slashes rejected: keygate scopes by path")
	}
	if !h.GetStripTrailingHostDot() {
		t.Error("strip_trailing_host_dot must be true: host_modes match the host without its trailing dot")
	}
	if c.accessLog == nil {
		t.Fatal("no access log")
	}
	if f := c.accessLog.GetLogFormat().GetTextFormatSource().GetInlineString(); !strings.Contains(f, "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:code)%") {
		t.Errorf("access log does not record keygate's decision code: %q", f)
	}
}

// TestEnvoyConfigRoutes: only /auth/, the exact path of GitHub's secret
// scanning reports and the customer key API skip authz, and they go to
// keygate's HTTP port; the sandbox route matches keygate's mode header.
func TestEnvoyConfigRoutes(t *testing.T) {
	c := loadConfig(t)
	vhosts := c.hcm.GetRouteConfig().GetVirtualHosts()
	if len(vhosts) != 1 {
		t.Fatalf("want one virtual host, got %d", len(vhosts))
	}
	if len(vhosts[0].GetTypedPerFilterConfig()) != 0 {
		t.Error("the virtual host must not configure ext_authz for every route")
	}
	routes := vhosts[0].GetRoutes()
	type row struct {
		Prefix, Path, Regex, Header, Cluster string
		AuthzOff                             bool
	}
	var got []row
	for _, rt := range routes {
		r := row{Prefix: rt.GetMatch().GetPrefix(), Path: rt.GetMatch().GetPath(), Regex: rt.GetMatch().GetSafeRegex().GetRegex(), Cluster: rt.GetRoute().GetCluster()}
		for _, hm := range rt.GetMatch().GetHeaders() {
			r.Header = hm.GetName() + "=" + hm.GetStringMatch().GetExact()
		}
		if cfg, ok := rt.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"]; ok {
			var per extauthzv3.ExtAuthzPerRoute
			if err := cfg.UnmarshalTo(&per); err != nil {
				t.Fatal(err)
			}
			r.AuthzOff = per.GetDisabled()
		}
		got = append(got, r)
	}
	want := []row{
		{Prefix: "/auth/", Cluster: "keygate_http", AuthzOff: true},
		{Path: "/secret-scanning/github", Cluster: "keygate_http", AuthzOff: true},
		{Regex: customerRoutes, Cluster: "keygate_http", AuthzOff: true},
		{Prefix: "/", Header: "x-keygate-mode=test", Cluster: "upstream_sandbox"},
		{Prefix: "/", Cluster: "upstream"},
	}
	if len(got) != len(want) {
		t.Fatalf("routes = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("route %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, name := range []string{"keygate_grpc", "keygate_http", "upstream", "upstream_sandbox"} {
		if c.clusters[name] == nil {
			t.Errorf("cluster %s missing", name)
		}
	}
	// gRPC needs HTTP/2 to keygate.
	var opts httpv3.HttpProtocolOptions
	anyOpt := c.clusters["keygate_grpc"].GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	if anyOpt == nil || anyOpt.UnmarshalTo(&opts) != nil || opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Error("cluster keygate_grpc must speak HTTP/2")
	}
}

// customerRoutes is the envoy.yaml route of the customer key API.
const customerRoutes = "^/v1/(api-keys|api-keys/[A-Za-z0-9_-]{1,128}/revoke|sites/[A-Za-z0-9_.-]{1,128}/rotate-key|usage)$"

// TestCustomerRouteMatchesOnlyTheCustomerAPI: the route that skips authz
// takes the customer API's paths and no API route of the platform (Envoy's
// safe_regex is RE2, as Go's regexp).
func TestCustomerRouteMatchesOnlyTheCustomerAPI(t *testing.T) {
	re := regexp.MustCompile(customerRoutes)
	for path, want := range map[string]bool{
		"/v1/api-keys": true, "/v1/api-keys/key_abc/revoke": true, "/v1/sites/acme/rotate-key": true, "/v1/usage": true,
		"/v1/videos": false, "/v1/sites/acme/videos": false, "/v1/sites/acme/rotate-key/x": false,
		"/v1/api-keys/../videos/revoke": false, "/v1/api-keys/a/b/revoke": false, "/v1/usage/x": false,
		"/v1/public/acme/usage": false, "/V1/api-keys": false, "/v1/api-keysx": false, "/x/v1/usage": false,
	} {
		if re.MatchString(path) != want {
			t.Errorf("customer route matches %q: %v, want %v", path, !want, want)
		}
	}
}
