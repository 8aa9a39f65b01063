package customer_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/keygate/keygate/customer"
)

// TestOpenAPIFragmentCoversRoutes: admin/openapi-customer.yaml documents
// exactly the routes Register mounts (with the default prefix), and every
// operation names the session security scheme.
func TestOpenAPIFragmentCoversRoutes(t *testing.T) {
	raw, err := os.ReadFile("../admin/openapi-customer.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Security  []map[string][]string `yaml:"security"`
			Responses map[string]any        `yaml:"responses"`
		} `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var documented, served []string
	for path, ops := range doc.Paths {
		for method, op := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
			if len(op.Security) != 1 || op.Security[0]["dashboardSession"] == nil || op.Responses["401"] == nil {
				t.Errorf("%s %s: want security dashboardSession and a 401 response", method, path)
			}
		}
	}
	for _, r := range customer.Routes() {
		served = append(served, r.Method+" "+customer.DefaultPrefix+r.Path)
	}
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Fatalf("documented %v\nserved     %v", documented, served)
	}
}
