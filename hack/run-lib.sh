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
