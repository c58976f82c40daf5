#!/usr/bin/env bash
# `make run-clusters`: Berth across three local control planes, in the
# foreground, on loopback. A coordination plane runs the Berth apiserver and
# an operator; member planes east and west each run a member-mode operator
# that reaches the apiserver through its own berth-proxy, and get the example
# (config/samples/) applied unchanged. Ctrl-C (or SIGTERM) stops everything
# it started.
#
# Settings, for running a second copy beside the first (the tests do):
#   BERTH_RUN_CLUSTERS_DIR  state directory (default .run/run-clusters), one subdirectory per plane
#   BERTH_BIN_DIR           prebuilt binaries (default: cargo build, then target/debug)
#   BERTH_API_PORT          the apiserver's HTTPS port (9443); the proxies of east and west
#                           listen on BERTH_EAST_PROXY_PORT (9444) and BERTH_WEST_PROXY_PORT (9445)
#   NODES=1                 east and west each get a real node, and the example's CronJob
#                           runs real Jobs on the member that holds the lease
# Metrics and probe ports are free ports, printed at the end.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${BERTH_RUN_CLUSTERS_DIR:-$repo/.run/run-clusters}
api_port=${BERTH_API_PORT:-9443}
declare -A proxy_port=([east]=${BERTH_EAST_PROXY_PORT:-9444} [west]=${BERTH_WEST_PROXY_PORT:-9445})
members=(east west)
log() { printf '[make run-clusters] %s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
plane() { BERTH_CONTROL_PLANE_DIR=$dir/$1 "$repo/hack/control-plane" "${@:2}"; }
# shellcheck source=run-lib.sh
source "$repo/hack/run-lib.sh"

cleanup() {
  log "stopping"
  stop_pids
  for name in coordination "${members[@]}"; do plane "$name" down || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build_bins berth-apiserver berth-operator berth-cli berth-multicluster

mkdir -p "$dir"
node=
[[ ${NODES:-0} == 0 ]] || node=--node
log "control plane coordination"
plane coordination up >/dev/null
for name in "${members[@]}"; do
  log "control plane $name${node:+ with a node}"
  plane "$name" up $node >/dev/null
done
kubectl=$(cat "$dir/coordination/bin-dir")/kubectl
k() { KUBECONFIG=$dir/$1/kubeconfig "$kubectl" "${@:2}"; }
for name in coordination "${members[@]}"; do
  k "$name" apply --server-side -f "$repo/config/crd/berthlease.yaml" >/dev/null
  k "$name" wait --for condition=Established --timeout=60s crd/berthleases.berth.skaphos.io >/dev/null
  k "$name" create namespace pipeline --dry-run=client -o yaml | k "$name" apply -f - >/dev/null
done

# Starts `operator` for plane $1 with extra flags; records its probe port.
declare -A probe_port metrics_port
start_operator() {
  local name=$1
  metrics_port[$name]=$(free_port) probe_port[$name]=$(free_port)
  "$bin/operator" --kubeconfig "$dir/$name/kubeconfig" \
    --metrics-bind-address "127.0.0.1:${metrics_port[$name]}" \
    --health-probe-bind-address "127.0.0.1:${probe_port[$name]}" "${@:2}" \
    >"$dir/$name/operator.log" 2>&1 &
  pids+=($!)
  echo $! >"$dir/$name/operator.pid"
}

log "coordination: the operator and the apiserver"
start_operator coordination
wait_ready "http://127.0.0.1:${probe_port[coordination]}" "${pids[-1]}" "$dir/coordination/operator.log"
api_dir=$dir/coordination/apiserver
"$repo/hack/gen-tls.sh" "$api_dir" berth-apiserver
# One tenant per member (its holder identity is its cluster id), all of the
# cluster set "members": the first member's acquire creates the global lease,
# shared by the set, so nothing is made by hand here (docs/multicluster.md).
: >"$api_dir/api-keys"
for name in "${members[@]}"; do
  openssl rand -hex 24 >"$api_dir/$name.key"
  printf '%s:%s:pipeline:members\n' "$name" "$(tr -d '\n' <"$api_dir/$name.key" | sha256sum | cut -d' ' -f1)" >>"$api_dir/api-keys"
done
api_probe=$(free_port)
start_apiserver "$dir/coordination/kubeconfig" "$api_dir" "$api_port" "$(free_port)" "$api_probe"
echo "${pids[-1]}" >"$api_dir/apiserver.pid"

for name in "${members[@]}"; do
  log "member $name: berth-proxy on 127.0.0.1:${proxy_port[$name]}, the member-mode operator, the example"
  echo pass >"$dir/$name/proxy-mode"
  "$bin/berth-proxy" --listen "127.0.0.1:${proxy_port[$name]}" --upstream "127.0.0.1:$api_port" \
    --mode-file "$dir/$name/proxy-mode" >"$dir/$name/proxy.log" 2>&1 &
  pids+=($!)
  start_operator "$name" --berth-api-server "https://127.0.0.1:${proxy_port[$name]}" \
    --berth-api-key-file "$api_dir/$name.key" --berth-ca-file "$api_dir/ca.crt" --cluster-id "$name"
  wait_ready "http://127.0.0.1:${probe_port[$name]}" "${pids[-1]}" "$dir/$name/operator.log"
  k "$name" apply -f "$repo/config/samples/ingest-pipeline-cronjob.yaml" >/dev/null
  k "$name" apply -f "$repo/config/samples/ingest-coordinator.yaml" >/dev/null
  [[ -z $node ]] || "$repo/hack/sample-on-node.sh" "$dir/$name/kubeconfig"
done

if [[ -n $node ]]; then
  node_hint="With NODES=1 the CronJob fires every minute and its Jobs run as pods on the
member that holds the lease:

  KUBECONFIG=$dir/east/kubeconfig $kubectl -n pipeline get pods -w
  KUBECONFIG=$dir/west/kubeconfig $kubectl -n pipeline get pods -w
"
fi
cat <<MSG

Berth runs across three local clusters:
  coordination  KUBECONFIG=$dir/coordination/kubeconfig  apiserver https://127.0.0.1:$api_port (pid $(cat "$api_dir/apiserver.pid"))
  east          KUBECONFIG=$dir/east/kubeconfig  operator pid $(cat "$dir/east/operator.pid"), via berth-proxy 127.0.0.1:${proxy_port[east]}
  west          KUBECONFIG=$dir/west/kubeconfig  operator pid $(cat "$dir/west/operator.pid"), via berth-proxy 127.0.0.1:${proxy_port[west]}
  logs          $dir/*/operator.log, $dir/*/proxy.log, $api_dir/apiserver.log

Both members got config/samples/ingest-pipeline-cronjob.yaml and
config/samples/ingest-coordinator.yaml (namespace pipeline); one of them holds
the global lease and runs the CronJob.

In another terminal, watch which cluster runs the CronJob (suspend=false runs):

  while sleep 1; do for c in east west; do printf '%s suspend=%-5s  ' \$c \\
    "\$(KUBECONFIG=$dir/\$c/kubeconfig $kubectl -n pipeline get cronjob ingest-pipeline -o jsonpath='{.spec.suspend}')"; done; echo; done
  KUBECONFIG=$dir/east/kubeconfig $kubectl -n pipeline get berthleases -w     # STATE of east's claim
  KUBECONFIG=$dir/coordination/kubeconfig $kubectl -n pipeline get berthleases -w   # the global holder
${node_hint:-}

Cut a member off from the apiserver (a hang, dropped connections, or answers
that come too late), and heal it:

  echo blackhole > $dir/east/proxy-mode
  echo reset > $dir/east/proxy-mode
  echo 'delay 40s' > $dir/east/proxy-mode
  echo pass > $dir/east/proxy-mode

Pause the apiserver past the TTL, or kill a member's operator:

  kill -STOP $(cat "$api_dir/apiserver.pid"); sleep 40; kill -CONT $(cat "$api_dir/apiserver.pid")
  kill $(cat "$dir/east/operator.pid")

Press Ctrl-C to stop everything.
MSG

# Wait in the background so that SIGTERM, not only Ctrl-C, runs the cleanup at once.
sleep infinity &
pids+=($!)
wait $!
