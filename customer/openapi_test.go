package customer_test

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"go.yaml.in/yaml/v3"

	"github.com/keygate/keygate/admin"
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

// TestOpenAPIFragmentMergesIntoTheAdminDocument: merged into
// admin/openapi.json (paths and components joined), the fragment makes a
// valid OpenAPI document whose $refs all resolve. Skipped while the admin
// document is empty (issue 14 adds it).
func TestOpenAPIFragmentMergesIntoTheAdminDocument(t *testing.T) {
	base := map[string]any{}
	if err := json.Unmarshal(admin.OpenAPI, &base); err != nil {
		t.Fatal(err)
	}
	if _, ok := base["paths"]; !ok {
		t.Skip("admin/openapi.json has no paths yet")
	}
	raw, err := os.ReadFile("../admin/openapi-customer.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var frag map[string]any
	if err := yaml.Unmarshal(raw, &frag); err != nil {
		t.Fatal(err)
	}
	join := func(into, from map[string]any) {
		for k, v := range from {
			if _, dup := into[k]; dup {
				t.Errorf("the fragment redefines %q", k)
			}
			into[k] = v
		}
	}
	join(base["paths"].(map[string]any), frag["paths"].(map[string]any))
	for section, entries := range frag["components"].(map[string]any) {
		comps := base["components"].(map[string]any)
		if comps[section] == nil {
			comps[section] = map[string]any{}
		}
		join(comps[section].(map[string]any), entries.(map[string]any))
	}
	merged, err := json.Marshal(base)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(merged)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("merged document: %v", err)
	}
	for _, r := range customer.Routes() {
		item := doc.Paths.Find(customer.DefaultPrefix + r.Path)
		if item == nil || item.GetOperation(r.Method) == nil {
			t.Errorf("merged document lacks %s %s", r.Method, r.Path)
		}
	}
}
