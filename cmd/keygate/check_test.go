package main

import "testing"

// keygate check explains what serve decides: header names are folded as
// serve folds them (ASCII only), so a KELVIN SIGN in a name is not the
// credential header.
func TestCheckRequestFoldsHeaderNamesLikeServe(t *testing.T) {
	req, err := checkRequest("GET", "/v1/videos", "api.example.com", "", []string{"X-API-\u212Aey: kg_live_x", "X-Api-Key: a", "x-api-key: b"})
	if err != nil {
		t.Fatal(err)
	}
	if got := req.Headers["x-api-key"]; got != "a,b" {
		t.Errorf("x-api-key = %q, want %q", got, "a,b")
	}
	if got := req.Headers["x-api-\u212Aey"]; got != "kg_live_x" {
		t.Errorf("the Kelvin-sign name = %q, want it kept apart", got)
	}
}
