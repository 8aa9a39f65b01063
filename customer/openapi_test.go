package customer_test

import (
	"context"
	"slices"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/customer"
)

// TestOpenAPICoversRoutes: the operations admin/openapi.json tags
// "customer" are exactly the routes Register mounts (with the default
// prefix), each names the session security scheme and documents its 401,
// and the document is valid with every $ref resolved.
func TestOpenAPICoversRoutes(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(admin.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("admin/openapi.json: %v", err)
	}
	var documented, served []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if len(op.Tags) == 0 || op.Tags[0] != "customer" {
				continue
			}
			documented = append(documented, method+" "+path)
			if op.Security == nil || len(*op.Security) != 1 || (*op.Security)[0]["dashboardSession"] == nil || op.Responses.Value("401") == nil {
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
