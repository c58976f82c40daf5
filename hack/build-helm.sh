#!/usr/bin/env bash
# Builds helm from the Go module proxy at the version pinned in hack/versions.env
# (helm's go.mod has no replace directives, so `go install` works as it is).
# The binary lands in a cache outside git, keyed by version.
# Prints the binary's path on stdout; progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
out=${BERTH_CACHE_DIR:-$HOME/.cache/berth}/helm-$HELM_VERSION
if [[ ! -x $out/helm ]]; then
  printf '[build-helm] building helm %s (a few minutes the first time)\n' "$HELM_VERSION" >&2
  mkdir -p "$out"
  GOBIN=$out CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
fi
echo "$out/helm"
