#!/usr/bin/env bash
# `make test`: builds the control plane if needed, runs every test, and stops
# the test control plane afterwards. The tests start it themselves (see
# docs/testing.md); starting it here first only makes its progress visible.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BERTH_CONTROL_PLANE_DIR=${BERTH_TEST_CONTROL_PLANE_DIR:-$repo/.run/test-control-plane}
export BERTH_TEST_CONTROL_PLANE_DIR=$BERTH_CONTROL_PLANE_DIR

trap '"$repo/hack/control-plane" down >/dev/null 2>&1 || true' EXIT
"$repo/hack/control-plane" up >/dev/null
cd "$repo"
cargo test --workspace --no-fail-fast "$@"
