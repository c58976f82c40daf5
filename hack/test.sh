#!/usr/bin/env bash
# `make test`: builds the control plane if needed, runs every test, and stops
# the test control plane afterwards. The tests start it themselves (see
# docs/testing.md); starting it here first only makes its progress visible.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BERTH_CONTROL_PLANE_DIR=${BERTH_TEST_CONTROL_PLANE_DIR:-$repo/.run/test-control-plane}
export BERTH_TEST_CONTROL_PLANE_DIR=$BERTH_CONTROL_PLANE_DIR
# The named control planes of the tests across clusters (berth_testenv::clusters).
export BERTH_TEST_CLUSTERS_DIR=${BERTH_TEST_CLUSTERS_DIR:-$repo/.run/test-clusters}

# The console's browser tests need Debian's chromium and chromedriver.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "[test] installing chromium and chromium-driver for the browser tests"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "[test] chromium and chromedriver are missing: install Debian's chromium and chromium-driver" >&2
  fi
fi

down() {
  "$repo/hack/control-plane" down >/dev/null 2>&1 || true
  for dir in "$BERTH_TEST_CLUSTERS_DIR"/*/; do
    [[ -d $dir ]] && BERTH_CONTROL_PLANE_DIR=$dir "$repo/hack/control-plane" down >/dev/null 2>&1 || true
  done
}
trap down EXIT
"$repo/hack/control-plane" up >/dev/null
cd "$repo"
# The tests on real nodes run the images `make images` builds (static release
# binaries: the first build takes minutes, later ones reuse Cargo's cache).
make -s images
# Run both suites even when the first fails, then report both.
status=0
cargo test --workspace --no-fail-fast "$@" || status=$?

# The Go client's tests run against the apiserver that `cargo test` just built.
cargo build -q -p berth-apiserver --bin apiserver
(cd client/go && GOTOOLCHAIN=local BERTH_GO_INTEGRATION=1 \
  BERTH_APISERVER_BIN="${CARGO_TARGET_DIR:-$repo/target}/debug/apiserver" go test -count=1 ./...) || status=$?
exit $status
