// Package openapitest holds handlers to their OpenAPI document: an
// http.RoundTripper that validates every request a test sends, and the
// answer it gets, against an OpenAPI 3.1 document with kin-openapi, and
// records which operations were driven. Only tests import it.
package openapitest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// Transport validates every request the test makes, and the handler's
// answer to it, against the OpenAPI document, and records which operations
// were driven.
type Transport struct {
	t      testing.TB
	router routers.Router
	Driven map[string]bool // "METHOD /path/{template}"
	opts   *openapi3filter.Options
}

// New loads and validates doc (an OpenAPI 3.1 document) and returns a
// transport that sends requests to serverURL's handler.
func New(t testing.TB, docJSON []byte, serverURL string) *Transport {
	t.Helper()
	ctx := context.Background()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(docJSON)
	if err != nil {
		t.Fatalf("loading the OpenAPI document: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	if err := doc.Validate(ctx); err != nil {
		t.Fatalf("the OpenAPI document is invalid: %v", err)
	}
	// Requests go to the test server, wherever the document says they go.
	doc.Servers = openapi3.Servers{{URL: serverURL}}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			op.Servers = nil
		}
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	opts := &openapi3filter.Options{
		IncludeResponseStatus: true,
		AuthenticationFunc: func(_ context.Context, in *openapi3filter.AuthenticationInput) error {
			if in.SecurityScheme.Type == "http" && in.SecurityScheme.Scheme == "bearer" &&
				!strings.HasPrefix(in.RequestValidationInput.Request.Header.Get("Authorization"), "Bearer ") {
				return fmt.Errorf("no bearer token")
			}
			return nil
		},
	}
	return &Transport{t: t, router: router, Driven: map[string]bool{}, opts: opts}
}

// RoundTrip validates the request, sends it, and validates the answer.
func (c *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.t.Helper()
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		c.t.Errorf("%s %s: not in the OpenAPI document: %v", req.Method, req.URL.Path, err)
		return http.DefaultTransport.RoundTrip(req)
	}
	c.Driven[req.Method+" "+route.Path] = true
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: c.opts}
	reqErr := openapi3filter.ValidateRequest(req.Context(), in)
	req.Body = io.NopCloser(bytes.NewReader(body))
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	// A request the document refuses must be refused by the handler too.
	if reqErr != nil && resp.StatusCode < 400 {
		c.t.Errorf("%s %s %s: the document refuses it (%v) but the handler answered %d", req.Method, req.URL, body, reqErr, resp.StatusCode)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(raw)), Options: c.opts}
	if err := openapi3filter.ValidateResponse(req.Context(), out); err != nil {
		c.t.Errorf("%s %s %s: answer %d %s does not match the document: %v", req.Method, req.URL, body, resp.StatusCode, raw, err)
	}
	return resp, nil
}
