package tests

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// send makes one HTTP request, setting the headers of each map in turn (a
// later map's value wins), and returns the status, the response headers
// and the whole body. It fails the test when no answer comes.
func send(t *testing.T, method, url, body string, headers ...map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		for k, v := range h {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, raw
}
