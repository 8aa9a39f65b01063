package deploy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// manifests are decoded into the Kubernetes API type their kind names.
var manifestTypes = map[string]func() any{
	"Deployment":              func() any { return &appsv1.Deployment{} },
	"Service":                 func() any { return &corev1.Service{} },
	"ConfigMap":               func() any { return &corev1.ConfigMap{} },
	"PodDisruptionBudget":     func() any { return &policyv1.PodDisruptionBudget{} },
	"HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
}

// mustGlob lists the files pattern matches; a pattern that matches none
// (a directory moved or emptied) fails the test rather than checking
// nothing.
func mustGlob(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no files match %s: %v", pattern, err)
	}
	return files
}

// loadManifests decodes every manifest strictly (an unknown or misspelt
// field is an error) into its API type.
func loadManifests(t *testing.T) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, f := range mustGlob(t, "kubernetes/*.yaml") {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var head struct{ APIVersion, Kind string }
		if err := yaml.Unmarshal(raw, &head); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		newObj, ok := manifestTypes[head.Kind]
		if !ok {
			t.Fatalf("%s: kind %q has no test", f, head.Kind)
		}
		obj := newObj()
		if err := yaml.UnmarshalStrict(raw, obj); err != nil {
			t.Fatalf("%s: not a valid %s: %v", f, head.Kind, err)
		}
		out[head.Kind] = obj
	}
	if len(out) != len(manifestTypes) {
		t.Fatalf("found %d kinds of manifest, want %d", len(out), len(manifestTypes))
	}
	return out
}

// TestManifests: the manifests are valid API objects and hold together:
// probes on keygate's endpoints, a non-root read-only container with
// resources, the policy ConfigMap mounted where --policies points, and a
// Service, PDB and HPA that select or target the Deployment.
func TestManifests(t *testing.T) {
	m := loadManifests(t)
	dep := m["Deployment"].(*appsv1.Deployment)
	labels := dep.Spec.Template.Labels
	if len(dep.Spec.Template.Spec.Containers) != 1 {
		t.Fatal("want one container")
	}
	c := dep.Spec.Template.Spec.Containers[0]
	switch {
	case c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/livez":
		t.Error("liveness probe is not /livez")
	case c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz":
		t.Error("readiness probe is not /readyz")
	}
	sc, psc := c.SecurityContext, dep.Spec.Template.Spec.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("container must have a read-only root file system and no privilege escalation")
	}
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Error("pod must run as non-root")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("container needs CPU requests and a memory limit")
	}
	var policyDir string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--policies="); ok {
			policyDir = v
		}
	}
	cm := m["ConfigMap"].(*corev1.ConfigMap)
	mounted := false
	for _, vm := range c.VolumeMounts {
		for _, v := range dep.Spec.Template.Spec.Volumes {
			if v.Name == vm.Name && v.ConfigMap != nil && v.ConfigMap.Name == cm.Name && vm.MountPath == policyDir {
				mounted = true
			}
		}
	}
	if !mounted || policyDir == "" {
		t.Errorf("ConfigMap %s is not mounted at --policies (%q)", cm.Name, policyDir)
	}
	ports := map[string]bool{}
	for _, p := range c.Ports {
		ports[p.Name] = true
	}
	svc := m["Service"].(*corev1.Service)
	if !subset(svc.Spec.Selector, labels) {
		t.Errorf("Service selects %v, pods have %v", svc.Spec.Selector, labels)
	}
	for _, p := range svc.Spec.Ports {
		if !ports[p.TargetPort.String()] {
			t.Errorf("Service port %s targets %s, which the container does not name", p.Name, p.TargetPort.String())
		}
	}
	pdb := m["PodDisruptionBudget"].(*policyv1.PodDisruptionBudget)
	if pdb.Spec.Selector == nil || !subset(pdb.Spec.Selector.MatchLabels, labels) {
		t.Error("PodDisruptionBudget does not select the pods")
	}
	hpa := m["HorizontalPodAutoscaler"].(*autoscalingv2.HorizontalPodAutoscaler)
	if hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.Name != dep.Name {
		t.Error("HorizontalPodAutoscaler does not target the Deployment")
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 {
		t.Error("keep at least two replicas")
	}
}

func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func promParser() parser.Parser { return parser.NewParser(parser.Options{}) }

// TestAlertRules: every rule file parses and validates with Prometheus's
// own parser (expressions, durations, templates); it returns the metric
// names each names.
func TestAlertRules(t *testing.T) {
	alertMetrics(t)
}

func alertMetrics(t *testing.T) map[string]string {
	t.Helper()
	names := map[string]string{}
	for _, f := range mustGlob(t, "prometheus/*.yml") {
		groups, errs := rulefmt.ParseFile(f, false, model.UTF8Validation, promParser(), slog.New(slog.DiscardHandler))
		for _, err := range errs {
			t.Errorf("%s: %v", f, err)
		}
		if groups == nil {
			continue
		}
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" || r.Annotations["summary"] == "" {
					t.Errorf("%s: every rule is an alert with a summary (%q)", f, r.Alert)
				}
				for _, n := range metricNames(t, r.Expr) {
					names[n] = f + ": " + r.Alert
				}
			}
		}
	}
	return names
}

// metricNames parses a PromQL expression and lists the metrics it reads.
func metricNames(t *testing.T, expr string) []string {
	t.Helper()
	e, err := promParser().ParseExpr(expr)
	if err != nil {
		t.Errorf("%q: %v", expr, err)
		return nil
	}
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok && vs.Name != "" {
			out = append(out, vs.Name)
		}
		return nil
	})
	return out
}

// grafanaVars become values PromQL can parse.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*")

// dashboardMetrics parses every panel query of every dashboard.
func dashboardMetrics(t *testing.T) map[string]string {
	t.Helper()
	names := map[string]string{}
	for _, f := range mustGlob(t, "grafana/*.json") {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var dash struct {
			UID    string `json:"uid"`
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(raw, &dash); err != nil || dash.UID == "" || len(dash.Panels) == 0 {
			t.Fatalf("%s: not a dashboard: %v", f, err)
		}
		for _, p := range dash.Panels {
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", f, p.Title)
			}
			for _, q := range p.Targets {
				for _, n := range metricNames(t, grafanaVars.Replace(q.Expr)) {
					names[n] = f + ": " + p.Title
				}
			}
		}
	}
	return names
}

// TestMetricsExist: every metric a dashboard panel or an alert names is one
// a running keygate exports (histograms by their _bucket series).
func TestMetricsExist(t *testing.T) {
	used := dashboardMetrics(t)
	for n, where := range alertMetrics(t) {
		used[n] = where
	}
	exported := scrapeKeygate(t)
	var missing []string
	for n, where := range used {
		base := strings.TrimSuffix(n, "_bucket")
		if !exported[n] && !exported[base] {
			missing = append(missing, fmt.Sprintf("%s (%s)", n, where))
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("named but not exported by keygate:\n%s", strings.Join(missing, "\n"))
	}
}

// scrapeKeygate builds and runs keygate (SQLite, decision log on), makes
// one decision of each kind so that every labelled series exists, and
// returns the metric family names of /metrics.
func scrapeKeygate(t *testing.T) map[string]bool {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs keygate")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "keygate")
	build := exec.Command("go", "build", "-o", bin, "./cmd/keygate")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	store := "sqlite:" + filepath.Join(dir, "k.db")
	cli := func(args ...string) string {
		out, err := exec.Command(bin, append(args, "--store", store)...).Output()
		if err != nil {
			t.Fatalf("keygate %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	httpAddr, grpcAddr := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	srv := exec.CommandContext(ctx, bin, "serve", "--store", store, "--http-addr", httpAddr, "--grpc-addr", grpcAddr,
		"--admin-addr", "127.0.0.1:0", "--decision-log", filepath.Join(dir, "decisions.log"))
	srv.Env = append(os.Environ(), "KEYGATE_ADMIN_TOKEN=")
	stderr, _ := srv.StderrPipe()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = srv.Wait() })
	go func() { _, _ = io.Copy(io.Discard, bufio.NewReader(stderr)) }()
	base := "http://" + httpAddr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("keygate did not become ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// serve created the database; only it may (management commands refuse
	// to create one), so the data comes once it is ready.
	cli("accounts", "create", "--id", "acme", "--plan", "pro")
	cli("sites", "create", "--id", "acme-web", "--account", "acme")
	key := strings.SplitN(cli("keys", "create", "--site", "acme-web", "--mode", "live"), "\n", 2)[0]
	do := func(method, path, body string, h map[string]string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	do("GET", "/ext-authz/v1/videos", "", nil)                                                 // deny
	do("GET", "/ext-authz/v1/videos", "", map[string]string{"Authorization": "Bearer " + key}) // allow, store lookup
	do("POST", "/auth/api-key", `{"apiKey":"`+key+`"}`, map[string]string{"Content-Type": "application/json"})

	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+) `).FindAllStringSubmatch(string(raw), -1) {
		names[m[1]] = true
	}
	for _, want := range []string{"keygate_build_info", "keygate_authz_decisions_total", "keygate_decision_log_lines_total"} {
		if !names[want] {
			t.Fatalf("keygate does not export %s; got %v", want, slices.Sorted(mapKeys(names)))
		}
	}
	return names
}

func mapKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
