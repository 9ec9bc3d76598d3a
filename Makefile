# Tally: report-generation service (Echo API + River workers + PostgreSQL + MinIO).
# `make` (or `make help`) lists the targets; each documents itself with a `## ` comment.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

GO ?= go
TEST_TIMEOUT ?= 30m
TESTFLAGS ?=
PKGS ?= ./...
BENCH_ARGS ?=
CHAOS_ARGS ?=

# Go files gofmt checks: everything but hidden directories, build output and testdata.
GO_FILES = $(shell find . -mindepth 1 \( -name '.*' -o -name bin -o -name artifacts -o -name testdata \) \
	-prune -o -type f -name '*.go' -print 2>/dev/null | LC_ALL=C sort)

# Starts the local services (scripts/services.sh up) and exports their environment into the
# recipe's shell, unless the variable named by the first argument is already set (services
# provided by the caller, e.g. CI or a developer's own setup).
define services_env
if [[ -z "$${$(1):-}" ]]; then
	services_out=$$(scripts/services.sh up)
	eval "$$services_out"
fi
endef

.PHONY: help
help: ## Show this help
	@printf 'Usage: make <target>\n\nTargets:\n'
	awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z0-9_.-]+:.*## / { printf "  %-15s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

.PHONY: services
services: ## Start PostgreSQL and MinIO locally (no Docker) and print their environment
	scripts/services.sh up

.PHONY: services-down
services-down: ## Stop the services this checkout started
	scripts/services.sh down

.PHONY: build
build: ## Build every binary in cmd/ into bin/
	mkdir -p bin
	$(GO) build -o bin/ ./cmd/...

.PHONY: test
test: ## Run all tests with the race detector (starts services unless TALLY_TEST_DATABASE_URL is set)
	$(call services_env,TALLY_TEST_DATABASE_URL)
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(TESTFLAGS) $(PKGS)

.PHONY: test-s3-compat
test-s3-compat: ## Run the storage tests and one end-to-end report against versitygw (built once, cached), not MinIO
	$(call services_env,TALLY_TEST_DATABASE_URL)
	GO=$(GO) TESTFLAGS="$(TESTFLAGS)" scripts/s3-compat.sh

.PHONY: lint
lint: ## Check formatting (gofmt) and run go vet
	unformatted=$$($(if $(GO_FILES),gofmt -l $(GO_FILES)))
	if [[ -n "$$unformatted" ]]; then
		echo "gofmt would change these files (run 'make fmt'):" >&2
		echo "$$unformatted" >&2
		exit 1
	fi
	$(GO) vet ./...

.PHONY: fmt
fmt: ## Format all Go files with gofmt
	$(if $(GO_FILES),gofmt -w $(GO_FILES))

.PHONY: generate
generate: ## Run go generate
	$(GO) generate ./...

.PHONY: demo
demo: ## Run the end-to-end demo (scripts/demo.sh)
	bash scripts/demo.sh

.PHONY: bench
bench: ## Run the load benchmark (cmd/tally-bench) against local services; args in BENCH_ARGS
	$(call services_env,DATABASE_URL)
	$(GO) run ./cmd/tally-bench $(BENCH_ARGS)

.PHONY: bench-large
bench-large: ## make bench plus a 10M-transaction scope (seeding it takes minutes); args in BENCH_ARGS
	$(call services_env,DATABASE_URL)
	$(GO) run ./cmd/tally-bench -large $(BENCH_ARGS)

.PHONY: chaos
chaos: ## Run the chaos test (cmd/tally-chaos): its own PostgreSQL and MinIO, crashed and restarted; args in CHAOS_ARGS
	$(call services_env,DATABASE_URL)
	$(GO) run ./cmd/tally-chaos $(CHAOS_ARGS)

.PHONY: fuzz
fuzz: ## Run the fuzz targets briefly (scripts/fuzz.sh)
	bash scripts/fuzz.sh

HELM_CHART := deploy/helm/tally
HELM_OUT := artifacts/helm
HELM_KUBE_VERSION ?= 1.31.0

.PHONY: helm-check
helm-check: ## Build the pinned Helm (once, cached), lint and render the chart, and check the manifests (deploy/helm)
	helm=$$(scripts/helm.sh)
	"$$helm" lint --strict --kube-version $(HELM_KUBE_VERSION) $(HELM_CHART)
	"$$helm" lint --strict --kube-version $(HELM_KUBE_VERSION) --set autoscaling.keda.enabled=true $(HELM_CHART)
	"$$helm" lint --strict --kube-version $(HELM_KUBE_VERSION) --set autoscaling.hpa.enabled=true $(HELM_CHART)
	mkdir -p $(HELM_OUT)
	render() { "$$helm" template tally $(HELM_CHART) --namespace tally --kube-version $(HELM_KUBE_VERSION) "$$@"; }
	render >$(HELM_OUT)/default.yaml
	render --set autoscaling.keda.enabled=true >$(HELM_OUT)/keda.yaml
	render --set autoscaling.hpa.enabled=true >$(HELM_OUT)/hpa.yaml
	render --set config.s3.credentials=chain --set serviceAccountName=tally-irsa \
		--set config.s3.sse=SSE-KMS --set config.s3.sseKMSKeyID=alias/tally >$(HELM_OUT)/aws-chain.yaml
	if render --set config.s3.credentials=keys >/dev/null 2>&1; then
		echo "helm-check: config.s3.credentials=keys rendered; the chart must refuse it" >&2
		exit 1
	fi
	if render --set autoscaling.keda.enabled=true --set autoscaling.hpa.enabled=true >/dev/null 2>&1; then
		echo "helm-check: KEDA and the HPA both on rendered; the chart must refuse it" >&2
		exit 1
	fi
	TALLY_HELM_RENDERED=$(CURDIR)/$(HELM_OUT) $(GO) test -count=1 ./deploy/helm/

.PHONY: clean
clean: ## Remove build output and artifacts (keeps service data in .services/)
	rm -rf bin/ artifacts/
	$(GO) clean -testcache
