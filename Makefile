# Kafka sidecar gateway. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO       ?= go
TOOL     := $(GO) tool -modfile=tools/go.mod
BIN      := bin

.PHONY: help
help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: run
run: ## Run the gateway in embedded mode on 127.0.0.1:7070 (no services needed).
	$(GO) run ./cmd/gateway

.PHONY: build
build: ## Build bin/gateway and bin/gatewayctl.
	$(GO) build -o $(BIN)/gateway ./cmd/gateway
	$(GO) build -o $(BIN)/gatewayctl ./cmd/gatewayctl

.PHONY: test
test: ## Install and start real Kafka and Redis, run lint + unit + integration + e2e tests, stop them.
	scripts/test.sh

.PHONY: test-unit
test-unit: ## Unit tests only (no services; integration tests skip).
	$(GO) test -count=1 ./...

.PHONY: services-up
services-up: ## Install and start the real Kafka broker and Redis used by the tests.
	scripts/services.sh install
	scripts/services.sh start all

.PHONY: services-down
services-down: ## Stop them.
	scripts/services.sh stop all

.PHONY: deps
deps: ## Install the Python venv (.cache/venv) and node_modules of the client examples and code generators.
	scripts/clients.sh install

.PHONY: generate
generate: deps ## Regenerate gen/ (Go, Python, TypeScript) and docs/api.md from proto/.
	$(TOOL) buf generate

.PHONY: check-generate
check-generate: deps ## Fail when gen/ or docs/api.md does not match proto/.
	rm -rf .cache/gen-check && mkdir -p .cache/gen-check
	$(TOOL) buf generate -o .cache/gen-check
	diff -r -x __pycache__ gen .cache/gen-check/gen
	diff docs/api.md .cache/gen-check/docs/api.md

.PHONY: lint
lint: check-generate ## gofmt, go vet, buf lint and buf format.
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(TOOL) buf lint
	$(TOOL) buf format --exit-code --diff > /dev/null

.PHONY: chaos
chaos: ## Fault-injection runs against real services (PROFILE=short|long|cluster|all, default long); see docs/reliability.md.
	scripts/chaos.sh $(or $(PROFILE),long)

.PHONY: bench
bench: ## Benchmarks against direct librdkafka on a real broker; writes BENCHMARKS.md.
	scripts/bench.sh
