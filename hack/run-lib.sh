# Shared by hack/run.sh and hack/run-clusters.sh (sourced): the processes
# a run script starts, how it waits for them, and how it stops them.

pids=()

# Waits until $1/readyz answers, or fails with the log $3 when process $2 died.
wait_ready() {
  for _ in $(seq 1 600); do
    curl -fsS "$1/readyz" >/dev/null 2>&1 && return
    kill -0 "$2" 2>/dev/null || { cat "$3" >&2; exit 1; }
    sleep 0.1
  done
  log "not ready after 60 s: $1"
  exit 1
}

# Stops every process in `pids` (a paused one is resumed first, so that it
# can take the SIGTERM) and waits for each.
stop_pids() {
  for pid in "${pids[@]}"; do kill -CONT "$pid" 2>/dev/null || true; kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}

# Sets `bin` to the folder holding the binaries: $BERTH_BIN_DIR when given,
# else a debug build of the packages named in the arguments.
build_bins() {
  if [[ -n ${BERTH_BIN_DIR:-} ]]; then
    bin=$BERTH_BIN_DIR
    return
  fi
  log "building ${*}"
  local packages=()
  for package in "$@"; do packages+=(-p "$package"); done
  (cd "$repo" && cargo build -q "${packages[@]}" --bins)
  bin=${CARGO_TARGET_DIR:-$repo/target}/debug
}

# Starts the Berth apiserver against kubeconfig $1 on 127.0.0.1:$3, with the
# TLS pair and the api-keys file in folder $2, metrics on port $4 and probes
# on port $5, and waits until it is ready. Its log is $2/apiserver.log.
start_apiserver() {
  "$bin/apiserver" --kubeconfig "$1" \
    --listen-addr "127.0.0.1:$3" --tls-cert-file "$2/tls.crt" --tls-key-file "$2/tls.key" \
    --api-keys-file "$2/api-keys" --log-format text \
    --metrics-bind-address "127.0.0.1:$4" --health-probe-bind-address "127.0.0.1:$5" \
    >"$2/apiserver.log" 2>&1 &
  pids+=($!)
  wait_ready "http://127.0.0.1:$5" "${pids[-1]}" "$2/apiserver.log"
}
