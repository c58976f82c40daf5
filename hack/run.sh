#!/usr/bin/env bash
# `make run`: Berth on its own local control plane, in the foreground, on
# loopback. Ctrl-C (or SIGTERM) stops everything it started.
#
# Settings, for running a second copy beside the first (the tests do):
#   BERTH_RUN_DIR      state directory        (default .run/control-plane)
#   BERTH_BIN_DIR      prebuilt binaries      (default: cargo build, then target/debug)
#   BERTH_API_PORT     apiserver HTTPS port   (8443); its metrics and probes: BERTH_API_METRICS_PORT (8080), BERTH_API_PROBE_PORT (8081)
#   BERTH_OPERATOR_METRICS_PORT (8090), BERTH_OPERATOR_PROBE_PORT (8091)
#   NODES=1            the control plane gets a real node, and the example's
#                      CronJob runs real Jobs on it (docs/testing.md, "Real nodes")
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BERTH_CONTROL_PLANE_DIR=${BERTH_RUN_DIR:-$repo/.run/control-plane}
api_port=${BERTH_API_PORT:-8443}
api_metrics_port=${BERTH_API_METRICS_PORT:-8080}
api_probe_port=${BERTH_API_PROBE_PORT:-8081}
operator_metrics_port=${BERTH_OPERATOR_METRICS_PORT:-8090}
operator_probe_port=${BERTH_OPERATOR_PROBE_PORT:-8091}
log() { printf '[make run] %s\n' "$*" >&2; }
# shellcheck source=run-lib.sh
source "$repo/hack/run-lib.sh"

cleanup() {
  log "stopping"
  stop_pids
  "$repo/hack/control-plane" down || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build_bins berth-apiserver berth-operator berth-cli

node=
[[ ${NODES:-0} == 0 ]] || node=--node
eval "$("$repo/hack/control-plane" up $node)"
kubectl=$(cat "$BERTH_CONTROL_PLANE_DIR/bin-dir")/kubectl

log "applying the BerthLease CRD"
"$kubectl" apply --server-side -f "$repo/config/crd/berthlease.yaml" >/dev/null
"$kubectl" wait --for condition=Established --timeout=60s crd/berthleases.berth.skaphos.io >/dev/null

# The operator: expiry, target actions, finalizers and Events for every namespace.
log "starting the operator (log: $BERTH_CONTROL_PLANE_DIR/operator.log)"
"$bin/operator" --kubeconfig "$KUBECONFIG" \
  --metrics-bind-address "127.0.0.1:$operator_metrics_port" \
  --health-probe-bind-address "127.0.0.1:$operator_probe_port" --log-format text \
  >"$BERTH_CONTROL_PLANE_DIR/operator.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$operator_probe_port" "${pids[-1]}" "$BERTH_CONTROL_PLANE_DIR/operator.log"

# The apiserver: HTTPS with a fresh self-signed CA and a fresh key for tenant "demo".
api_dir=$BERTH_CONTROL_PLANE_DIR/apiserver
log "starting the apiserver (log: $api_dir/apiserver.log)"
"$repo/hack/gen-tls.sh" "$api_dir" berth-apiserver
api_key=$(openssl rand -hex 24)
printf '# tenant:sha256(key) - "demo" may use every namespace\ndemo:%s\n' \
  "$(printf %s "$api_key" | sha256sum | cut -d' ' -f1)" >"$api_dir/api-keys"
start_apiserver "$KUBECONFIG" "$api_dir" "$api_port" "$api_metrics_port" "$api_probe_port"

# The documented example: a CronJob gated by a lease whose holder is declared.
log "applying the example: namespace pipeline, CronJob ingest-pipeline, BerthLease ingest-coordinator"
"$kubectl" create namespace pipeline --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
"$kubectl" apply -f "$repo/config/samples/ingest-pipeline-cronjob.yaml" >/dev/null
"$kubectl" apply -f "$repo/config/samples/ingest-coordinator.yaml" >/dev/null
[[ -z $node ]] || "$repo/hack/sample-on-node.sh" "$KUBECONFIG"

api=https://127.0.0.1:$api_port
cat <<MSG

Berth runs locally:
  kube-apiserver  KUBECONFIG=$KUBECONFIG
  apiserver       $api  (metrics http://127.0.0.1:$api_metrics_port/metrics, probes :$api_probe_port)
  operator        metrics http://127.0.0.1:$operator_metrics_port/metrics, probes :$operator_probe_port
  logs            $BERTH_CONTROL_PLANE_DIR/operator.log, $api_dir/apiserver.log

API key of tenant "demo" (holders demo and demo/...): $api_key

Web console: $api/console/  (sign in with the key above; the certificate is
signed by $api_dir/ca.crt: import it into the browser or accept the warning)

In another terminal:

  export KUBECONFIG=$KUBECONFIG
  export BERTH_API_SERVER=$api BERTH_CA_FILE=$api_dir/ca.crt
  export BERTH_API_KEY=$api_key BERTH_NAMESPACE=pipeline
  alias berth=$bin/berth kubectl=$kubectl

  kubectl get bl -A -w                       # watch leases change hands
  berth lease list
  berth lease get ingest-coordinator         # held by worker-east-1, declared in the manifest
  kubectl -n pipeline get cronjob ingest-pipeline -o jsonpath='{.spec.suspend}{"\\n"}'

  # worker-east-1 sends no heartbeats: its lease expires after 30 s and the
  # operator suspends the CronJob. Then take the lease:
  berth lease acquire ingest-coordinator --holder demo/worker-1 --ttl 30s --wait 1m
  berth lease release ingest-coordinator
  berth lease hold ingest-coordinator --holder demo/worker-1 --wait 1m -- \\
    sh -c 'echo "holding with token \$BERTH_FENCING_TOKEN"; sleep 20'

Or with curl:

  curl --cacert $api_dir/ca.crt -H "Authorization: Bearer $api_key" \\
    -d '{"holder":"demo/worker-1","ttlSeconds":30}' \\
    $api/v1alpha1/namespaces/pipeline/leases/ingest-coordinator/acquire

Press Ctrl-C to stop everything.
MSG

# Wait in the background so that SIGTERM, not only Ctrl-C, runs the cleanup at once.
sleep infinity &
pids+=($!)
wait $!
