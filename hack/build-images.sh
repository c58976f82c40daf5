#!/usr/bin/env bash
# `make images`: the apiserver, operator and berth images as OCI archives,
# built with no Docker engine, for a node to import (`hack/control-plane images`).
#
# Each image holds one static binary, a CA bundle, and /etc/passwd and
# /etc/group naming the non-root user 65532 it runs as: nothing else. The
# Dockerfile builds the same images for users with an engine.
#
# Archives land in $CARGO_TARGET_DIR/images (default target/images), named
# berth.local/<name>:$IMAGE_TAG (default dev).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
tag=${IMAGE_TAG:-dev}
out=$target/images
log() { printf '[images] %s\n' "$*" >&2; }

# Static glibc binaries: the musl target cannot be installed here. --target
# keeps the flag off build scripts and proc macros, which must stay dynamic.
triple=x86_64-unknown-linux-gnu
log "building static release binaries of the apiserver, the operator and berth"
(cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static" cargo build -q --release --locked --target "$triple" \
  -p berth-apiserver -p berth-operator -p berth-cli)
(cd "$repo" && cargo build -q -p berth-oci --bin oci-image)
pack=$target/debug/oci-image
bin=$target/$triple/release
ca=/etc/ssl/certs/ca-certificates.crt
[[ -f $ca ]] || { log "$ca is missing: install Debian's ca-certificates"; exit 1; }

mkdir -p "$out"
stripped=$(mktemp -d)
trap 'rm -rf "$stripped"' EXIT
# image NAME BINARY PORT...
image() {
  local name=$1 binary=$2 ports=()
  local port
  for port in "${@:3}"; do ports+=(--expose "$port"); done
  strip -o "$stripped/$binary" "$bin/$binary"
  "$pack" --name "berth.local/$name:$tag" --out "$out/$name.tar" \
    --file "$stripped/$binary:/usr/local/bin/$binary:0755" --file "$ca:/etc/ssl/certs/ca-certificates.crt" \
    --file "$repo/hack/oci/rootfs/passwd:/etc/passwd" --file "$repo/hack/oci/rootfs/group:/etc/group" \
    --user 65532:65532 --entrypoint "/usr/local/bin/$binary" "${ports[@]}"
  log "berth.local/$name:$tag  $(du -h "$out/$name.tar" | cut -f1) (binary $(du -h "$stripped/$binary" | cut -f1))  $out/$name.tar"
}
image apiserver apiserver 8443 8080 8081
image operator operator 8080 8081
image berth berth
