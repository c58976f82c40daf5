# Berth. `make run` and `make test` do all the set-up on a fresh machine.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo

.PHONY: all build test lint fmt generate manifests run run-clusters control-plane control-plane-down images screenshots docker-build clean help bench chaos chaos-clusters failover-processes

all: build

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

build: ## Build every crate.
	$(CARGO) build --workspace --all-targets

test: ## Run every test against a real local control plane (built on first use).
	hack/test.sh

lint: ## Markdown link check, rustfmt check, clippy -D warnings, gofmt and go vet.
	hack/check-links.sh
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@unformatted=$$(gofmt -l client/go); test -z "$$unformatted" || { echo "gofmt needed: $$unformatted" >&2; exit 1; }
	cd client/go && GOTOOLCHAIN=local go vet ./...

fmt: ## Format the code.
	$(CARGO) fmt --all
	gofmt -w client/go

generate: manifests ## Regenerate everything generated from the Rust types.

manifests: ## Write the CRD (config/crd/, and the operator chart's copy), config/rbac/ and config/admission/ from their sources.
	$(CARGO) run -q -p berth-api --bin crdgen > config/crd/berthlease.yaml.tmp
	mv config/crd/berthlease.yaml.tmp config/crd/berthlease.yaml
	cp config/crd/berthlease.yaml deploy/helm/berth-operator/files/berthlease.yaml
	hack/render-config.sh

NODES ?= 0
run: ## Run Berth locally on its own control plane (Ctrl-C stops it); NODES=1 adds a real node that runs the example's Jobs.
	NODES=$(NODES) hack/run.sh

run-clusters: ## Run Berth across a coordination plane and members east and west, with the example on both (Ctrl-C stops it); NODES=1 gives the members real nodes.
	NODES=$(NODES) hack/run-clusters.sh

DURATION ?= 10m
CHAOS_BIN_DIR = $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/debug
chaos: ## Chaos check: faults against 3 apiservers, 20 LeaseKeeper contenders, checked history (DURATION=10m; docs/chaos.md).
	$(CARGO) build -p berth-apiserver -p berth-operator -p berth-chaos --bins
	BERTH_APISERVER_BIN=$(CHAOS_BIN_DIR)/apiserver BERTH_OPERATOR_BIN=$(CHAOS_BIN_DIR)/operator \
		$(CHAOS_BIN_DIR)/chaos --duration $(DURATION)

chaos-clusters: ## Soak across clusters: random partitions, apiserver pauses, operator kills; overlaps of the members' targets (DURATION=10m; NODES=1: of their processes on real nodes).
	$(CARGO) build -p berth-apiserver -p berth-operator -p berth-multicluster --bins
	BERTH_APISERVER_BIN=$(CHAOS_BIN_DIR)/apiserver BERTH_OPERATOR_BIN=$(CHAOS_BIN_DIR)/operator \
		$(CHAOS_BIN_DIR)/chaos-clusters --duration $(DURATION) $(if $(filter 1,$(NODES)),--nodes)

RUNS ?= 5
failover-processes: ## Each process-level failover scenario on real nodes RUNS=5 times: overlaps, and failover median and max.
	$(CARGO) build -p berth-apiserver -p berth-operator -p berth-multicluster --bins
	BERTH_APISERVER_BIN=$(CHAOS_BIN_DIR)/apiserver BERTH_OPERATOR_BIN=$(CHAOS_BIN_DIR)/operator \
		$(CHAOS_BIN_DIR)/process-failover --runs $(RUNS)

BENCH_DIR := $(CURDIR)/.run/bench-control-plane
BENCH_TARGET := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/release
bench: ## Benchmarks on a fresh control plane of their own (release builds); writes docs/benchmarks.md and .json.
	$(CARGO) build --release -p berth-apiserver -p berth-operator -p berth-bench
	export BERTH_CONTROL_PLANE_DIR=$(BENCH_DIR) BERTH_TEST_CONTROL_PLANE_DIR=$(BENCH_DIR) \
	  BERTH_APISERVER_BIN=$(BENCH_TARGET)/apiserver BERTH_OPERATOR_BIN=$(BENCH_TARGET)/operator; \
	hack/control-plane down >/dev/null 2>&1 || true; \
	trap 'hack/control-plane down >/dev/null 2>&1 || true' EXIT; \
	$(BENCH_TARGET)/berth-bench run --out-dir docs

control-plane: ## Start (or reuse) the local control plane and print its KUBECONFIG.
	hack/control-plane up

control-plane-down: ## Stop the local control plane.
	hack/control-plane down

screenshots: ## Retake the console's screenshots in docs/ (headless Chromium, on the test control plane).
	BERTH_SCREENSHOTS_DIR=$(CURDIR)/docs $(CARGO) test -p berth-apiserver --test console_browser

IMAGE_TAG ?= dev
images: ## Build the apiserver, operator and berth images as OCI archives, without a Docker engine (target/images/).
	IMAGE_TAG=$(IMAGE_TAG) hack/build-images.sh

docker-build: ## Build the apiserver, operator and berth images (needs a Docker engine).
	@docker info >/dev/null 2>&1 || { echo "docker-build: no Docker engine is reachable (none runs on the dev machines)" >&2; exit 1; }
	docker build --target apiserver -t berth-apiserver:$(IMAGE_TAG) .
	docker build --target operator -t berth-operator:$(IMAGE_TAG) .
	docker build --target berth -t berth-cli:$(IMAGE_TAG) .

clean: ## Remove build output and local control-plane state (not the binary cache).
	hack/control-plane down || true
	BERTH_CONTROL_PLANE_DIR=$(CURDIR)/.run/test-control-plane hack/control-plane down || true
	for d in chaos-control-plane chaos-test-control-plane bench-control-plane; do BERTH_CONTROL_PLANE_DIR=$(CURDIR)/.run/$$d hack/control-plane down || true; done
	for d in $(CURDIR)/.run/{test-clusters,run-clusters,chaos-clusters,failover-clusters}/*/; do [[ -d $$d ]] && BERTH_CONTROL_PLANE_DIR=$$d hack/control-plane down || true; done
	rm -rf .run
	$(CARGO) clean
