// Package envoy holds the Envoy configuration that docker-compose.yml runs
// (envoy.yaml), the demo seed script and upstream (echo/), and the tests that
// prove them without Docker or an Envoy binary: envoy.yaml loads strictly
// into go-control-plane's Bootstrap with the safety settings keygate relies
// on, and docker-compose.yml agrees with it, the Dockerfile and the README.
package envoy
