#!/usr/bin/env bash
# `make run`: Berth on its own local control plane, in the foreground.
# Ctrl-C stops everything it started.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BERTH_CONTROL_PLANE_DIR=$repo/.run/control-plane
log() { printf '[make run] %s\n' "$*" >&2; }

pids=()
cleanup() {
  log "stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  "$repo/hack/control-plane" down || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

eval "$("$repo/hack/control-plane" up)"
kubectl=$(cat "$BERTH_CONTROL_PLANE_DIR/bin-dir")/kubectl

log "applying the BerthLease CRD"
"$kubectl" apply --server-side -f "$repo/config/crd/berthlease.yaml" >/dev/null
"$kubectl" wait --for condition=Established --timeout=60s crd/berthleases.berth.skaphos.io >/dev/null

# The operator: expiry, target actions, finalizers and Events for every namespace.
log "building and starting the operator (log: $BERTH_CONTROL_PLANE_DIR/operator.log)"
(cd "$repo" && cargo build -q -p berth-operator --bin operator)
"${CARGO_TARGET_DIR:-$repo/target}/debug/operator" --kubeconfig "$KUBECONFIG" \
  --metrics-bind-address 127.0.0.1:8090 --health-probe-bind-address 127.0.0.1:8091 \
  >"$BERTH_CONTROL_PLANE_DIR/operator.log" 2>&1 &
pids+=($!)

cat <<MSG

Berth's local control plane is up.

  export KUBECONFIG=$KUBECONFIG
  $kubectl get bl -A -w

The operator runs: metrics on http://127.0.0.1:8090/metrics, probes on :8091.
Not yet started here: the apiserver (see README "Status").
Press Ctrl-C to stop.
MSG

while true; do sleep 3600; done
