package main

import (
	"strings"
	"testing"
)

// A bad --redis URL is reported without the password it may carry.
func TestRedisURLErrorHidesPassword(t *testing.T) {
	_, err := redisClient("redis://user:s3cretpw@localhost:99999x/0")
	if err == nil {
		t.Fatal("want an error for a bad port")
	}
	if strings.Contains(err.Error(), "s3cretpw") {
		t.Fatalf("the error shows the password: %v", err)
	}
}
