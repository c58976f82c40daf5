# Berth. `make run` and `make test` do all the set-up on a fresh machine.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo

.PHONY: all build test lint fmt generate manifests run control-plane control-plane-down docker-build clean help

all: build

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

build: ## Build every crate.
	$(CARGO) build --workspace --all-targets

test: ## Run every test against a real local control plane (built on first use).
	hack/test.sh

lint: ## rustfmt check and clippy -D warnings.
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code.
	$(CARGO) fmt --all

generate: manifests ## Regenerate everything generated from the Rust types.

manifests: ## Write config/crd/berthlease.yaml from api/src/crd.rs.
	$(CARGO) run -q -p berth-api --bin crdgen > config/crd/berthlease.yaml.tmp
	mv config/crd/berthlease.yaml.tmp config/crd/berthlease.yaml

run: ## Run Berth locally on its own control plane (Ctrl-C stops it).
	hack/run.sh

control-plane: ## Start (or reuse) the local control plane and print its KUBECONFIG.
	hack/control-plane up

control-plane-down: ## Stop the local control plane.
	hack/control-plane down

docker-build: ## Build the container images (not available yet: no Dockerfiles).
	@echo "docker-build: the Dockerfiles are not written yet (see README Status)" >&2; exit 1

clean: ## Remove build output and local control-plane state (not the binary cache).
	hack/control-plane down || true
	BERTH_CONTROL_PLANE_DIR=$(CURDIR)/.run/test-control-plane hack/control-plane down || true
	rm -rf .run
	$(CARGO) clean
