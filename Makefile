# Shortcuts for the scripts that do the work; each works without make too.
.PHONY: demo test fuzz soak bench release

demo: ## the demo on the embedded default policy
	go run ./cmd/mcpguard demo

test: ## the full suite, installing what the tests need (what CI runs)
	scripts/test.sh

FUZZTIME ?= 5m
FUZZMINIMIZETIME ?= 10s
fuzz: ## every fuzz target for FUZZTIME (default 5m each)
	FUZZTIME=$(FUZZTIME) FUZZMINIMIZETIME=$(FUZZMINIMIZETIME) scripts/fuzz.sh

soak: ## 1000 sessions + stateless load for 60s through the proxy
	go run ./bench/soak

bench: ## the proxy against a direct connection, as a separate process
	bench/run.sh

release: ## static binaries for linux/darwin × amd64/arm64, SHA256SUMS, a CycloneDX SBOM, in dist/ (reproducible)
	scripts/release.sh dist
