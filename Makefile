# The one test command (README, .ci/run): vet, then every Go test with the
# race detector, fuzz seed corpora included, then the Rego checks.
GO ?= go

.PHONY: test build policy-check

build:
	$(GO) build -o bin/keygate ./cmd/keygate

test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	$(MAKE) policy-check

# opa fmt / check --strict, when the opa binary is installed (.ci/run installs it).
policy-check:
	@if command -v opa >/dev/null 2>&1; then \
		echo "opa fmt --diff"; test -z "$$(opa fmt -l policies)" || { opa fmt -d policies; exit 1; }; \
		echo "opa check --strict"; opa check --strict policies/default; \
	else echo "opa not installed: skipping opa fmt/check (go run ./cmd/keygate policy test still runs the Rego tests)"; fi
