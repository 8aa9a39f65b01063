//go:build !vtprotobuf

package tests

// buildTags: the tests were built without vtprotobuf, so is the binary.
var buildTags []string
