#!/usr/bin/env bash
# Builds kube-apiserver, kubectl and etcd from the Go module proxy at the versions
# pinned in hack/versions.env. Binaries land in a cache outside git, keyed by
# version, and are rebuilt only when a version changes.
#
# Prints the bin directory on stdout; progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${BERTH_CACHE_DIR:-$HOME/.cache/berth}
log() { printf '[build-control-plane] %s\n' "$*" >&2; }

export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local

build_kube() {
  local out=$cache/kube-$KUBE_VERSION
  if [[ -x $out/kube-apiserver && -x $out/kubectl ]]; then return; fi
  log "building kube-apiserver and kubectl $KUBE_VERSION (cold build takes 10-20 minutes on 2 cores)"
  local mod=$cache/src/kube-$KUBE_VERSION
  rm -rf "$mod" && mkdir -p "$mod" "$out"
  local upstream
  upstream=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  local minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  {
    echo "module berth.local/kube-build"
    echo
    grep -E '^go [0-9]' "$upstream"
    grep -E '^godebug ' "$upstream" || true
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    # Every staging module k8s.io/kubernetes replaces with ./staging is published as v0.<minor>.<patch>.
    grep -E '^\s+k8s.io/[a-z0-9-]+ => \./staging/' "$upstream" |
      awk -v v="v0.${KUBE_VERSION#v1.}" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } >"$mod/go.mod"
  cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  log "resolving modules"
  (cd "$mod" && go mod tidy -e >&2 2>&1 | tail -5 >&2 || true)
  local pkg=k8s.io/component-base/version
  local ldflags="-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  for cmd in kube-apiserver kubectl; do
    log "compiling $cmd"
    (cd "$mod" && go build -trimpath -ldflags "$ldflags" -o "$out/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
    mv "$out/$cmd.tmp" "$out/$cmd"
  done
}

build_etcd() {
  local out=$cache/etcd-$ETCD_VERSION
  if [[ -x $out/etcd ]]; then return; fi
  log "building etcd $ETCD_VERSION"
  local mod=$cache/src/etcd-$ETCD_VERSION
  rm -rf "$mod" && mkdir -p "$mod" "$out"
  cat >"$mod/go.mod" <<GOMOD
module berth.local/etcd-build

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
  cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  (cd "$mod" && go mod tidy -e >&2 2>&1 | tail -5 >&2 || true)
  log "compiling etcd"
  (cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$out/etcd.tmp" "$out/etcd"
}

build_etcd
build_kube
# One directory per version pair, so checkouts pinned differently never mix binaries.
bin=$cache/bin/kube-$KUBE_VERSION-etcd-$ETCD_VERSION
mkdir -p "$bin"
ln -sf "$cache/etcd-$ETCD_VERSION/etcd" "$bin/etcd"
ln -sf "$cache/kube-$KUBE_VERSION/kube-apiserver" "$bin/kube-apiserver"
ln -sf "$cache/kube-$KUBE_VERSION/kubectl" "$bin/kubectl"
log "control plane binaries ready in $bin"
echo "$bin"
