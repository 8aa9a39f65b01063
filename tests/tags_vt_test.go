//go:build vtprotobuf

package tests

// buildTags are passed on to the keygate binary the tests build, so the
// end-to-end tests run what `make build` and the Docker image ship
// (Makefile, TAGS).
var buildTags = []string{"-tags", "vtprotobuf,grpcnotrace"}
