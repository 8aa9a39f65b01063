package envoy

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// loadCompose loads docker-compose.yml as `docker compose` does (schema
// validation, interpolation, anchors, relative paths made absolute), with an
// empty environment so the test sees the file's own defaults.
func loadCompose(t *testing.T) (*types.Project, string) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	details := types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml")}},
		Environment: types.Mapping{},
	}
	p, err := loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SetProjectName("keygate", true)
		o.ResolvePaths = true
	})
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return p, root
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("docker-compose.yml: service %s: %v", name, err)
	}
	return s
}

func env(s types.ServiceConfig, name string) string {
	if v := s.Environment[name]; v != nil {
		return *v
	}
	return ""
}

// listenPorts are the ports a compose service listens on, read from how it
// is started: keygate's --grpc-addr/--http-addr (flag, env or default), the
// echo upstream's --addr.
func listenPorts(t *testing.T, s types.ServiceConfig) []int {
	t.Helper()
	var addrs []string
	if slices.Contains(s.Command, "serve") {
		addrs = append(addrs,
			firstNonEmpty(flagValue(s.Command, "--grpc-addr"), env(s, "KEYGATE_GRPC_ADDR"), ":9191"),
			firstNonEmpty(flagValue(s.Command, "--http-addr"), env(s, "KEYGATE_HTTP_ADDR"), ":8080"))
	}
	if a := flagValue(s.Command, "--addr"); a != "" {
		addrs = append(addrs, a)
	}
	var ports []int
	for _, a := range addrs {
		ports = append(ports, portOf(t, a))
	}
	return ports
}

func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

// TestComposeMatchesEnvoy: every cluster in envoy.yaml points at a compose
// service on a port that service listens on, and Envoy runs the file that
// the tests above checked, on the port compose publishes.
func TestComposeMatchesEnvoy(t *testing.T) {
	p, root := loadCompose(t)
	c := loadConfig(t)
	for name, cl := range c.clusters {
		for _, eps := range cl.GetLoadAssignment().GetEndpoints() {
			for _, ep := range eps.GetLbEndpoints() {
				sa := ep.GetEndpoint().GetAddress().GetSocketAddress()
				s := service(t, p, sa.GetAddress())
				if ports := listenPorts(t, s); !slices.Contains(ports, int(sa.GetPortValue())) {
					t.Errorf("cluster %s: %s:%d, but service %s listens on %v", name, sa.GetAddress(), sa.GetPortValue(), s.Name, ports)
				}
			}
		}
	}
	// The gRPC cluster is keygate's gRPC port, the /auth/ cluster its HTTP port.
	kg := service(t, p, "keygate")
	ports := listenPorts(t, kg)
	for cluster, want := range map[string]int{"keygate_grpc": ports[0], "keygate_http": ports[1]} {
		sa := c.clusters[cluster].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		if sa.GetAddress() != "keygate" || int(sa.GetPortValue()) != want {
			t.Errorf("cluster %s = %s:%d, want keygate:%d", cluster, sa.GetAddress(), sa.GetPortValue(), want)
		}
	}

	ev := service(t, p, "envoy")
	if !regexp.MustCompile(`^envoyproxy/envoy:v1\.\d+\.\d+$`).MatchString(ev.Image) {
		t.Errorf("envoy image %q: pin a release (envoyproxy/envoy:v1.N.M)", ev.Image)
	}
	confIn := flagValue(ev.Command, "-c")
	mounted := false
	for _, v := range ev.Volumes {
		if v.Target == confIn {
			mounted = v.Source == filepath.Join(root, "envoy", "envoy.yaml") && v.ReadOnly
		}
	}
	if !mounted {
		t.Errorf("envoy runs -c %q, which must be ./envoy/envoy.yaml mounted read-only", confIn)
	}
	listener := int(c.bootstrap.GetStaticResources().GetListeners()[0].GetAddress().GetSocketAddress().GetPortValue())
	if len(ev.Ports) != 1 || int(ev.Ports[0].Target) != listener || ev.Ports[0].Published != strconv.Itoa(listener) {
		t.Errorf("envoy ports %+v, want %d:%d (the listener in envoy.yaml)", ev.Ports, listener, listener)
	}
}

// TestComposeProductionPath: keygate and the seed step share one PostgreSQL
// store (the postgres service's credentials) and the Redis service.
func TestComposeProductionPath(t *testing.T) {
	p, _ := loadCompose(t)
	kg, seed, pg := service(t, p, "keygate"), service(t, p, "seed"), service(t, p, "postgres")
	store, err := url.Parse(env(kg, "KEYGATE_STORE"))
	if err != nil || store.Scheme != "postgres" {
		t.Fatalf("KEYGATE_STORE = %q, want postgres://…", env(kg, "KEYGATE_STORE"))
	}
	pass, _ := store.User.Password()
	got := []string{store.Hostname(), store.Port(), store.User.Username(), pass, strings.TrimPrefix(store.Path, "/")}
	want := []string{"postgres", "5432", env(pg, "POSTGRES_USER"), env(pg, "POSTGRES_PASSWORD"), env(pg, "POSTGRES_DB")}
	if !slices.Equal(got, want) {
		t.Errorf("KEYGATE_STORE host, port, user, password, db = %q; the postgres service has %q", got, want)
	}
	redis, err := url.Parse(env(kg, "KEYGATE_REDIS"))
	if err != nil || redis.Scheme != "redis" {
		t.Fatalf("KEYGATE_REDIS = %q, want redis://…", env(kg, "KEYGATE_REDIS"))
	}
	service(t, p, redis.Hostname())
	for _, v := range []string{"KEYGATE_STORE", "KEYGATE_PEPPER"} {
		if env(kg, v) == "" || env(kg, v) != env(seed, v) {
			t.Errorf("%s differs between keygate (%q) and seed (%q): the seed's keys would not work", v, env(kg, v), env(seed, v))
		}
	}
	if pepper := env(kg, "KEYGATE_PEPPER"); len(pepper) < 16 {
		t.Errorf("KEYGATE_PEPPER default %q is under keygate's 16-byte minimum", pepper)
	}
}

// TestComposeStartOrder: nothing starts before what it needs is healthy, and
// every dependency on health has a health check to wait for.
func TestComposeStartOrder(t *testing.T) {
	p, _ := loadCompose(t)
	want := map[string]map[string]string{
		"envoy":   {"keygate": "service_healthy", "upstream": "service_healthy", "upstream-sandbox": "service_healthy"},
		"keygate": {"postgres": "service_healthy", "redis": "service_healthy", "seed": "service_completed_successfully"},
		"seed":    {"postgres": "service_healthy"},
	}
	for name, deps := range want {
		s := service(t, p, name)
		for dep, cond := range deps {
			if got := s.DependsOn[dep].Condition; got != cond {
				t.Errorf("%s depends_on %s: condition %q, want %q", name, dep, got, cond)
			}
		}
	}
	for _, s := range p.Services {
		for dep, d := range s.DependsOn {
			if d.Condition != "service_healthy" {
				continue
			}
			if hc := service(t, p, dep).HealthCheck; hc == nil || len(hc.Test) == 0 {
				t.Errorf("%s waits for %s to be healthy, which has no healthcheck", s.Name, dep)
			}
		}
	}
	// keygate's health check asks its own HTTP port.
	kg := service(t, p, "keygate")
	wantURL := "http://127.0.0.1:" + strconv.Itoa(listenPorts(t, kg)[1]) + "/health"
	if hc := kg.HealthCheck; hc == nil || !slices.Contains(hc.Test, wantURL) {
		t.Errorf("keygate healthcheck %v, want a GET of %s", kg.HealthCheck, wantURL)
	}
}

// TestComposeBuildsAndFiles: every build target exists in the Dockerfile,
// every package it builds and every mounted file exists, and the seed step
// runs the mounted script.
func TestComposeBuildsAndFiles(t *testing.T) {
	p, root := loadCompose(t)
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range p.Services {
		if s.Build != nil {
			if s.Build.Context != root {
				t.Errorf("%s: build context %s, want the repository root", s.Name, s.Build.Context)
			}
			if !regexp.MustCompile(`(?m)^FROM \S+ AS ` + regexp.QuoteMeta(s.Build.Target) + `$`).Match(dockerfile) {
				t.Errorf("%s: build target %q is not a stage of the Dockerfile", s.Name, s.Build.Target)
			}
		} else if s.Image == "" || !strings.Contains(s.Image, ":") || strings.HasSuffix(s.Image, ":latest") {
			t.Errorf("%s: image %q is not pinned to a tag", s.Name, s.Image)
		}
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s mounts %s: %v", s.Name, v.Source, err)
			}
		}
	}
	for _, m := range regexp.MustCompile(`go build .* (\./\S+)`).FindAllStringSubmatch(string(dockerfile), -1) {
		if _, err := os.Stat(filepath.Join(root, m[1], "main.go")); err != nil {
			t.Errorf("the Dockerfile builds %s: %v", m[1], err)
		}
	}
	seed := service(t, p, "seed")
	script := seed.Entrypoint[len(seed.Entrypoint)-1]
	found := false
	for _, v := range seed.Volumes {
		found = found || (v.Target == script && v.Source == filepath.Join(root, "envoy", "seed.sh"))
	}
	if !found {
		t.Errorf("seed runs %s, which must be ./envoy/seed.sh mounted there", script)
	}
}

// TestReadmeQuickstartMatchesCompose: the README's compose quick start uses
// the published port, the routes envoy.yaml has, and the names the seed
// script creates and prints.
func TestReadmeQuickstartMatchesCompose(t *testing.T) {
	_, root := loadCompose(t)
	c := loadConfig(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	seed, err := os.ReadFile(filepath.Join(root, "envoy", "seed.sh"))
	if err != nil {
		t.Fatal(err)
	}
	const heading = "## Run it with Envoy (docker compose)"
	_, section, ok := strings.Cut(string(readme), heading)
	if !ok {
		t.Fatalf("README has no %q section", heading)
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	listener := c.bootstrap.GetStaticResources().GetListeners()[0].GetAddress().GetSocketAddress().GetPortValue()
	base := "http://localhost:" + strconv.Itoa(int(listener))
	urls := regexp.MustCompile(`http://localhost:\d+[^\s'"]*`).FindAllString(section, -1)
	if len(urls) < 6 {
		t.Fatalf("README compose section has %d localhost URLs; want the allow, deny, token and public examples", len(urls))
	}
	for _, u := range urls {
		if !strings.HasPrefix(u, base+"/") && u != base {
			t.Errorf("README uses %s; Envoy listens on %s", u, base)
		}
	}
	for _, must := range []string{base + "/auth/api-key", "docker compose up", "docker compose logs --no-log-prefix seed", "$LIVE_KEY", "$TEST_KEY"} {
		if !strings.Contains(section, must) {
			t.Errorf("README compose section lacks %q", must)
		}
	}
	for _, printed := range []string{"LIVE_KEY=", "TEST_KEY="} {
		if !strings.Contains(string(seed), printed) {
			t.Errorf("README reads %s from the seed output, which seed.sh does not print", printed)
		}
	}
	// Sites, origins and the domains the seed gives them.
	for _, m := range regexp.MustCompile(`/v1/(?:public|sites)/([a-z0-9-]+)/`).FindAllStringSubmatch(section, -1) {
		if m[1] != "other-site" && !strings.Contains(string(seed), "--id "+m[1]+" ") {
			t.Errorf("README uses site %s, which seed.sh does not create", m[1])
		}
	}
	for _, m := range regexp.MustCompile(`Origin: https?://([^'"\s]+)`).FindAllStringSubmatch(section, -1) {
		if m[1] != "evil.example" && !strings.Contains(string(seed), "--domain "+m[1]) {
			t.Errorf("README sends Origin %s, which no seeded site allows", m[1])
		}
	}
}
