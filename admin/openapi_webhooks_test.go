package admin

import (
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The OpenAPI fragment names exactly the routes webhookRoutes serves.
func TestOpenAPIWebhooksFragment(t *testing.T) {
	raw, err := os.ReadFile("openapi-webhooks.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			if method != "parameters" {
				documented = append(documented, strings.ToUpper(method)+" "+path)
			}
		}
	}
	rec := &patternRecorder{ServeMux: http.NewServeMux()}
	(&Handler{}).webhookRoutes(rec.ServeMux)
	sort.Strings(documented)
	served := rec.patterns(t)
	if strings.Join(documented, "\n") != strings.Join(served, "\n") {
		t.Fatalf("documented:\n%s\nserved:\n%s", strings.Join(documented, "\n"), strings.Join(served, "\n"))
	}
}

type patternRecorder struct{ *http.ServeMux }

// patterns asks the mux which pattern each documented-style route matches.
func (p *patternRecorder) patterns(t *testing.T) []string {
	var out []string
	for _, probe := range []struct{ method, path string }{
		{"POST", "/admin/v1/webhooks"}, {"GET", "/admin/v1/webhooks"},
		{"GET", "/admin/v1/webhooks/x"}, {"PATCH", "/admin/v1/webhooks/x"}, {"DELETE", "/admin/v1/webhooks/x"},
		{"GET", "/admin/v1/webhooks/x/deliveries"}, {"POST", "/admin/v1/webhooks/x/deliveries/y/retry"},
		{"PUT", "/admin/v1/webhooks/x"}, {"POST", "/admin/v1/webhooks/x"},
	} {
		req, _ := http.NewRequest(probe.method, probe.path, nil)
		if _, pattern := p.Handler(req); pattern != "" {
			method, path, _ := strings.Cut(pattern, " ")
			out = append(out, method+" "+path)
		}
	}
	sort.Strings(out)
	return out
}
