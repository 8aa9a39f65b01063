// Package deploy holds keygate's deployment files: Kubernetes manifests
// (kubernetes/), a Grafana dashboard (grafana/) and Prometheus alert rules
// (prometheus/). It is its own Go module so that its tests can load them
// with Kubernetes' API types and Prometheus' own rule parser without
// adding those to keygate's dependencies. Run: cd deploy && go test ./...
package deploy
