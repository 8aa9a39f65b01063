package main

import (
	"errors"
	"testing"
	"time"
)

func TestCustomerFlagsValidate(t *testing.T) {
	ok := customerFlags{sessionJWKS: "jwks.json", sessionIssuer: "https://id/", sessionAudience: "dash",
		accountClaim: "account", jwksFloor: 10 * time.Second, prefix: "/v1", origins: "https://dash.example.com, http://localhost:3000"}
	if err := ok.validate(); err != nil {
		t.Fatalf("valid flags: %v", err)
	}
	if err := (&customerFlags{}).validate(); err != nil {
		t.Fatalf("customer API off: %v", err)
	}
	for name, mutate := range map[string]func(*customerFlags){
		"no issuer":        func(c *customerFlags) { c.sessionIssuer = "" },
		"no audience":      func(c *customerFlags) { c.sessionAudience = "" },
		"no account claim": func(c *customerFlags) { c.accountClaim = "" },
		"floor too small":  func(c *customerFlags) { c.jwksFloor = time.Millisecond },
		"prefix shadows":   func(c *customerFlags) { c.prefix = "/auth" },
		"relative prefix":  func(c *customerFlags) { c.prefix = "v1" },
		"wildcard origin":  func(c *customerFlags) { c.origins = "*" },
		"origin with path": func(c *customerFlags) { c.origins = "https://dash.example.com/app" },
	} {
		c := ok
		mutate(&c)
		if err := c.validate(); !errors.Is(err, errUsage) {
			t.Errorf("%s: validate = %v, want a usage error", name, err)
		}
	}
}
