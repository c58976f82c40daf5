#!/usr/bin/env bash
# Builds the local cluster's binaries from the Go module proxy at the versions
# pinned in hack/versions.env. Binaries land in a cache outside git, keyed by
# version, and are rebuilt only when a version changes.
#
#   hack/build-control-plane.sh          etcd, kube-apiserver, kubectl
#   hack/build-control-plane.sh --node   also what a node and its control loops
#                                        need: kube-controller-manager,
#                                        kube-scheduler, kubelet, kube-proxy,
#                                        containerd (with its runc shim and ctr),
#                                        crictl, and a static pause binary
#
# Prints the bin directory on stdout; progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${BERTH_CACHE_DIR:-$HOME/.cache/berth}
log() { printf '[build-control-plane] %s\n' "$*" >&2; }
node=false
[[ ${1:-} == --node ]] && node=true

export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local

# go_build MODULE_DIR OUT_DIR PACKAGE NAME [LDFLAGS]: one binary, moved into place only when whole.
go_build() {
  log "compiling $4"
  (cd "$1" && go build -trimpath -ldflags "${5:--s -w}" -o "$2/$4.tmp" "$3")
  mv "$2/$4.tmp" "$2/$4"
}

# The wrapper module for k8s.io/kubernetes: `go install k8s.io/kubernetes/cmd/X@v`
# fails because the module replaces its staging modules with ./staging, so this
# module requires it and replaces each staging module with its published v0.<minor>.<patch>.
kube_module() {
  local mod=$cache/src/kube-$KUBE_VERSION
  if [[ -f $mod/.resolved ]]; then echo "$mod"; return; fi
  rm -rf "$mod" && mkdir -p "$mod"
  local upstream
  upstream=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module berth.local/kube-build"
    echo
    grep -E '^go [0-9]' "$upstream"
    grep -E '^godebug ' "$upstream" || true
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    grep -E '^\s+k8s.io/[a-z0-9-]+ => \./staging/' "$upstream" |
      awk -v v="v0.${KUBE_VERSION#v1.}" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } >"$mod/go.mod"
  {
    echo '//go:build tools'
    echo
    echo 'package tools'
    echo
    echo 'import ('
    for cmd in kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy; do
      echo "	_ \"k8s.io/kubernetes/cmd/$cmd\""
    done
    echo ')'
  } >"$mod/tools.go"
  log "resolving modules"
  (cd "$mod" && go mod tidy -e >&2 2>&1 | tail -5 >&2 || true)
  touch "$mod/.resolved"
  echo "$mod"
}

# build_kube OUT_DIR CMD...: the named k8s.io/kubernetes commands, with /version
# reporting the pinned release.
build_kube() {
  local out=$1
  shift
  local missing=()
  for cmd in "$@"; do [[ -x $out/$cmd ]] || missing+=("$cmd"); done
  ((${#missing[@]})) || return 0
  log "building ${missing[*]} $KUBE_VERSION (a cold build takes minutes on 2 cores)"
  mkdir -p "$out"
  local mod minor=${KUBE_VERSION#v1.}
  mod=$(kube_module)
  minor=${minor%%.*}
  local pkg=k8s.io/component-base/version
  local ldflags="-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  for cmd in "${missing[@]}"; do
    go_build "$mod" "$out" "k8s.io/kubernetes/cmd/$cmd" "$cmd" "$ldflags"
  done
}

# tool_module NAME MODULE@VERSION: a wrapper module that requires one module.
tool_module() {
  local mod=$cache/src/$1
  if [[ ! -f $mod/.resolved ]]; then
    rm -rf "$mod" && mkdir -p "$mod"
    printf 'module berth.local/%s-build\n\ngo 1.24\n' "$1" >"$mod/go.mod"
    (cd "$mod" && go get "$2" >&2 2>&1 | tail -3 >&2)
    touch "$mod/.resolved"
  fi
  echo "$mod"
}

build_etcd() {
  local out=$cache/etcd-$ETCD_VERSION
  [[ -x $out/etcd ]] && return
  log "building etcd $ETCD_VERSION"
  mkdir -p "$out"
  go_build "$(tool_module "etcd-$ETCD_VERSION" "go.etcd.io/etcd/server/v3@$ETCD_VERSION")" "$out" go.etcd.io/etcd/server/v3 etcd
}

build_containerd() {
  local out=$cache/containerd-$CONTAINERD_VERSION
  [[ -x $out/containerd && -x $out/containerd-shim-runc-v2 && -x $out/ctr ]] && return
  log "building containerd $CONTAINERD_VERSION"
  mkdir -p "$out"
  local mod
  mod=$(tool_module "containerd-$CONTAINERD_VERSION" "github.com/containerd/containerd/v2@$CONTAINERD_VERSION")
  local ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
  for cmd in containerd containerd-shim-runc-v2 ctr; do
    go_build "$mod" "$out" "github.com/containerd/containerd/v2/cmd/$cmd" "$cmd" "$ldflags"
  done
}

build_crictl() {
  local out=$cache/cri-tools-$CRI_TOOLS_VERSION
  [[ -x $out/crictl ]] && return
  log "building crictl $CRI_TOOLS_VERSION"
  mkdir -p "$out"
  go_build "$(tool_module "cri-tools-$CRI_TOOLS_VERSION" "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION")" "$out" \
    sigs.k8s.io/cri-tools/cmd/crictl crictl
}

# The pod sandbox's pause process, from its C source in the pinned kubernetes module.
build_pause() {
  local out=$cache/kube-node-$KUBE_VERSION
  [[ -x $out/pause ]] && return
  local src
  src=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/build/pause/linux/pause.c
  log "compiling pause from $src"
  mkdir -p "$out"
  gcc -Os -static -DVERSION="$PAUSE_VERSION" -o "$out/pause.tmp" "$src"
  strip "$out/pause.tmp"
  mv "$out/pause.tmp" "$out/pause"
}

build_etcd
build_kube "$cache/kube-$KUBE_VERSION" kube-apiserver kubectl
# One directory per version set, so checkouts pinned differently never mix binaries.
bin=$cache/bin/kube-$KUBE_VERSION-etcd-$ETCD_VERSION
mkdir -p "$bin"
ln -sf "$cache/etcd-$ETCD_VERSION/etcd" "$bin/etcd"
for cmd in kube-apiserver kubectl; do ln -sf "$cache/kube-$KUBE_VERSION/$cmd" "$bin/$cmd"; done
if $node; then
  build_kube "$cache/kube-node-$KUBE_VERSION" kube-controller-manager kube-scheduler kubelet kube-proxy
  build_containerd
  build_crictl
  build_pause
  bin=$cache/bin/kube-$KUBE_VERSION-etcd-$ETCD_VERSION-containerd-$CONTAINERD_VERSION-crictl-$CRI_TOOLS_VERSION
  mkdir -p "$bin"
  ln -sf "$cache/etcd-$ETCD_VERSION/etcd" "$bin/etcd"
  for cmd in kube-apiserver kubectl; do ln -sf "$cache/kube-$KUBE_VERSION/$cmd" "$bin/$cmd"; done
  for cmd in kube-controller-manager kube-scheduler kubelet kube-proxy pause; do
    ln -sf "$cache/kube-node-$KUBE_VERSION/$cmd" "$bin/$cmd"
  done
  for cmd in containerd containerd-shim-runc-v2 ctr; do ln -sf "$cache/containerd-$CONTAINERD_VERSION/$cmd" "$bin/$cmd"; done
  ln -sf "$cache/cri-tools-$CRI_TOOLS_VERSION/crictl" "$bin/crictl"
fi
log "control plane binaries ready in $bin"
echo "$bin"
