#!/usr/bin/env bash
# `make run`: Berth on its own local control plane, in the foreground.
# Ctrl-C stops everything it started.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BERTH_CONTROL_PLANE_DIR=$repo/.run/control-plane
log() { printf '[make run] %s\n' "$*" >&2; }

cleanup() {
  log "stopping"
  "$repo/hack/control-plane" down || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

eval "$("$repo/hack/control-plane" up)"
kubectl=$(cat "$BERTH_CONTROL_PLANE_DIR/bin-dir")/kubectl

log "applying the BerthLease CRD"
"$kubectl" apply --server-side -f "$repo/config/crd/berthlease.yaml" >/dev/null
"$kubectl" wait --for condition=Established --timeout=60s crd/berthleases.berth.skaphos.io >/dev/null

cat <<MSG

Berth's local control plane is up.

  export KUBECONFIG=$KUBECONFIG
  $kubectl get bl -A -w

Not yet started here: the apiserver and the operator (see README "Status").
Press Ctrl-C to stop.
MSG

while true; do sleep 3600; done
