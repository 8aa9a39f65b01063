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

// Routes lists the patterns ("METHOD /path/{param}") the handler serves, for
// the conformance test that holds them to the OpenAPI document.
func (h *Handler) Routes() []string {
	var rec recorder
	h.register(&rec)
	return rec
}

type recorder []string

func (r *recorder) HandleFunc(pattern string, _ func(http.ResponseWriter, *http.Request)) {
	*r = append(*r, pattern)
}
