# The one test command (README, .ci/run): vet, then every package's tests
# with the race detector (fuzz seed corpora included; the key cache's
# admission tests, which ristretto's buffers make unreliable under it, run
# again without it), the end-to-end
# package without it (its keygate binary built with -race made CI take
# 18 minutes; `go test -race ./tests/` still runs it that way), then the
# Rego checks and the deploy files.
GO ?= go

.PHONY: test build install policy-check deploy-check

# vtprotobuf: go-control-plane's generated marshalling code for Envoy's
# types, which serve's gRPC codec uses (cmd/keygate/serve_codec.go).
# grpcnotrace: gRPC without golang.org/x/net/trace, whose request traces
# only run with grpc.EnableTracing (keygate never sets it) and whose
# html/template made the linker keep every exported method of every type
# (cmd/keygate/cli.go, rootCommand): a fifth less code to start.
TAGS ?= vtprotobuf grpcnotrace

# Built as the image ships it (Dockerfile): static and without cgo (SQLite
# is pure Go), so a start runs no dynamic loader and no libc set-up. The
# load tool is built the same way, as its no-op floor must be (README,
# "Measuring it").
BUILDFLAGS ?= -trimpath -ldflags='-s -w'

build:
	CGO_ENABLED=0 $(GO) build -tags '$(TAGS)' $(BUILDFLAGS) -o bin/ ./cmd/keygate ./cmd/keygate-bench

install:
	CGO_ENABLED=0 $(GO) install -tags '$(TAGS)' $(BUILDFLAGS) ./cmd/keygate

# make test runs the tests that skip under the race detector, or check
# less under it (allocation counts, ristretto's admission, heap per key,
# the randomised heap the prefault test reads), again without it; and the
# authorizer's suite once more with the built-in policy as serve starts it
# (its evaluator loaded from the artifact's image).
NORACE_TESTS = Allocs|AllocatesNothing|CheckBytes|ConvertsThroughCache|HeapPerKey|GrowthKeepsBucket|SQLiteLookup|Populated

test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -tags '$(TAGS)' $$($(GO) list ./... | grep -v '/tests$$')
	$(GO) test -race -count=1 -run 'ServerCodec' ./cmd/keygate
	$(GO) test -count=1 -tags '$(TAGS)' -run '$(NORACE_TESTS)' ./cmd/keygate ./extauthz ./internal/prefault ./keystore ./limits ./policies
	$(GO) test -count=1 -tags '$(TAGS)' ./extauthz -args -started-policy
	$(GO) test -count=1 -tags '$(TAGS)' -timeout 25m ./tests/
	$(MAKE) policy-check
	$(MAKE) deploy-check

# deploy/ is its own module (Kubernetes and Prometheus packages stay out of
# keygate's dependencies): manifests, alert rules and dashboard are loaded
# with those projects' own types and parsers.
deploy-check:
	cd deploy && $(GO) vet ./... && $(GO) test -count=1 ./...

# Rego: the tests of the built-in policy and of every example profile, with
# the coverage threshold (README), through keygate itself so no opa install
# is needed; then opa fmt (no diff) and opa check --strict when opa is
# installed (.ci/run installs it).
POLICY_THRESHOLD ?= 90
POLICY_EXAMPLES := $(wildcard policies/examples/*/)

policy-check:
	$(GO) run ./cmd/keygate policy test --threshold $(POLICY_THRESHOLD)
	@for d in $(POLICY_EXAMPLES); do \
		echo "$(GO) run ./cmd/keygate policy test --threshold $(POLICY_THRESHOLD) $$d"; \
		$(GO) run ./cmd/keygate policy test --threshold $(POLICY_THRESHOLD) $$d || exit 1; \
	done
	@if command -v opa >/dev/null 2>&1; then \
		echo "opa fmt --diff"; test -z "$$(opa fmt -l policies)" || { opa fmt -d policies; exit 1; }; \
		echo "opa check --strict"; opa check --strict policies/default || exit 1; \
		for d in $(POLICY_EXAMPLES); do opa check --strict policies/default $$d || exit 1; done; \
	else echo "opa not installed: skipping opa fmt/check (the Rego tests above ran without it)"; fi
