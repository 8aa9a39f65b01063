// Package apitest sends a test's requests to an HTTP API under test and
// reads the answers whole. Only tests import it; each package's tests
// decide what an answer must look like (its media type, its JSON).
package apitest

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Do sends method path, with body and header (name, value pairs), to the
// server at base and returns the answer, its body read and closed. A
// request that cannot be sent or read fails the test.
func Do(t testing.TB, base, method, path, body string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	return res, raw
}
