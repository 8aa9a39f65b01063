package admin

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the OpenAPI 3.1 description of the admin API and the token
// endpoints. It is kept beside the handlers and checked against them by
// the conformance test (openapi_test.go), which drives every route.
//
//go:embed openapi.json
var OpenAPI []byte

// openAPI serves the document (behind the admin token, like every route).
func (h *Handler) openAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(OpenAPI)
}
