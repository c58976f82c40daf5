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

# The apiserver: HTTPS on 127.0.0.1:8443 with a fresh self-signed CA and a fresh key.
api_dir=$BERTH_CONTROL_PLANE_DIR/apiserver
log "building and starting the apiserver (log: $api_dir/apiserver.log)"
"$repo/hack/gen-tls.sh" "$api_dir" berth-apiserver
api_key=$(openssl rand -hex 24)
printf '# tenant:sha256(key) - "demo" may use every namespace\ndemo:%s\n' \
  "$(printf %s "$api_key" | sha256sum | cut -d' ' -f1)" >"$api_dir/api-keys"
(cd "$repo" && cargo build -q -p berth-apiserver --bin apiserver)
"${CARGO_TARGET_DIR:-$repo/target}/debug/apiserver" --kubeconfig "$KUBECONFIG" \
  --listen-addr 127.0.0.1:8443 --tls-cert-file "$api_dir/tls.crt" --tls-key-file "$api_dir/tls.key" \
  --api-keys-file "$api_dir/api-keys" --log-format text \
  --metrics-bind-address 127.0.0.1:8080 --health-probe-bind-address 127.0.0.1:8081 \
  >"$api_dir/apiserver.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 600); do
  curl -fsS http://127.0.0.1:8081/readyz >/dev/null 2>&1 && break
  kill -0 "${pids[-1]}" 2>/dev/null || { cat "$api_dir/apiserver.log" >&2; exit 1; }
  sleep 0.1
done

# The documented example: a CronJob gated by a lease whose holder is declared.
log "applying the example: namespace pipeline, CronJob ingest-pipeline, BerthLease ingest-coordinator"
"$kubectl" create namespace pipeline --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
"$kubectl" apply -f "$repo/config/samples/ingest-pipeline-cronjob.yaml" >/dev/null
"$kubectl" apply -f "$repo/config/samples/ingest-coordinator.yaml" >/dev/null

(cd "$repo" && cargo build -q -p berth-cli --bin berth)
berth=${CARGO_TARGET_DIR:-$repo/target}/debug/berth

cat <<MSG

Berth runs locally:
  kube-apiserver  KUBECONFIG=$KUBECONFIG
  apiserver       https://127.0.0.1:8443  (metrics http://127.0.0.1:8080/metrics, probes :8081)
  operator        metrics http://127.0.0.1:8090/metrics, probes :8091
  logs            $BERTH_CONTROL_PLANE_DIR/operator.log, $api_dir/apiserver.log

API key of tenant "demo" (holders demo and demo/...): $api_key

In another terminal:

  export KUBECONFIG=$KUBECONFIG
  export BERTH_API_SERVER=https://127.0.0.1:8443 BERTH_CA_FILE=$api_dir/ca.crt
  export BERTH_API_KEY=$api_key BERTH_NAMESPACE=pipeline
  alias berth=$berth kubectl=$kubectl

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
    https://127.0.0.1:8443/v1alpha1/namespaces/pipeline/leases/ingest-coordinator/acquire

Press Ctrl-C to stop everything.
MSG

# Wait in the background so that SIGTERM, not only Ctrl-C, runs the cleanup at once.
sleep infinity &
pids+=($!)
wait $!
