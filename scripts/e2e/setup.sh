#!/usr/bin/env bash
# Prepares everything the e2e suites (test/e2e) need. Idempotent; a re-run with a warm cache only checks
# stamps and returns in about a second.
#
#   scripts/e2e/setup.sh [--lane=1.7|2|all] [--containerd2-version=vX.Y.Z] [--prune-go-cache]
#
# - lane 1.7 (default and always): containerd 1.7.24 from trixie (only containerd; libc6 must stay
#   untouched, enforced by scripts/setup-host.sh), runc, containernetworking-plugins, busybox-static.
# - local OCI image tarballs built without a registry:
#     $CACHE/images/pause.oci.tar    -> localhost/pause:test
#     $CACHE/images/busybox.oci.tar  -> localhost/busybox:test
#   import with `ctr -n k8s.io images import FILE`.
# - lane 2: containerd 2.x (containerd, containerd-shim-runc-v2, ctr) built from the Go module proxy into
#   $CACHE/containerd-<version>/bin. Nothing is written into the repository.
# - both lanes: nerdctl v2 built from the Go module proxy into $CACHE/nerdctl-<version>/bin (the nerdctl
#   suite drives it against either containerd).
#
# Cache root: $NKIT_E2E_CACHE (default /var/cache/nkit/e2e). Go's module and build caches for the 2.x
# build live under it too (~1.2 GB), so a CI cache of that one directory makes every later run warm;
# --prune-go-cache drops them after a build (the binaries, ~75 MB, are all the tests need).
set -euo pipefail

log() { printf '[e2e-setup] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${NKIT_E2E_CACHE:-/var/cache/nkit/e2e}
# Default 2.x version: the newest 2.x release on the Go proxy when this was written (go list -m -versions).
CTRD2_VERSION=${NKIT_E2E_CONTAINERD2_VERSION:-v2.4.2}
# nerdctl: the newest v2 the Go module proxy serves.
NERDCTL_VERSION=${NKIT_E2E_NERDCTL_VERSION:-v2.4.2}
LANE=1.7
PRUNE_GO=0

for arg in "$@"; do
  case "$arg" in
    --lane=*) LANE=${arg#--lane=} ;;
    --containerd2-version=*) CTRD2_VERSION=${arg#--containerd2-version=} ;;
    --prune-go-cache) PRUNE_GO=1 ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    *) die "unknown argument: $arg" ;;
  esac
done
case "$LANE" in 1.7 | 2 | all) ;; *) die "--lane must be 1.7, 2 or all" ;; esac
[[ $(id -u) -eq 0 ]] || die "run as root"

mkdir -p "$CACHE"
exec 9>"$CACHE/.setup.lock"
flock 9 # concurrent setups (two CI jobs on one runner) wait for each other

# ---------------------------------------------------------------------------------------------------------
# 1. Packages. setup-host.sh pins trixie at priority 100, so only containerd comes from there.
packages() {
  local t0=$SECONDS
  bash "$REPO/scripts/setup-host.sh" \
    --extra='containerd|trixie|^1\.7\.24,runc||,containernetworking-plugins||,busybox-static||,jq||,gcc||,libc6-dev||'
  for f in /usr/bin/containerd /usr/bin/ctr /usr/bin/containerd-shim-runc-v2 /usr/sbin/runc \
    /usr/lib/cni/loopback /usr/lib/cni/bridge /usr/lib/cni/host-local /bin/busybox; do
    [[ -x $f ]] || die "missing after install: $f"
  done
  # Not `busybox --list | grep -q`: grep quits at the match, busybox may die of SIGPIPE, and
  # pipefail turns the found applet into a failure.
  local applets
  applets=$(/bin/busybox --list)
  grep -qx nc <<<"$applets" || die "busybox-static has no nc applet"
  log "packages ok ($((SECONDS - t0)) s)"
}

# ---------------------------------------------------------------------------------------------------------
# 2. Images. Deterministic OCI layouts (same digests on every run); rebuilt when the inputs change.
IMG_DIR=$CACHE/images
sha() { sha256sum "$1" | cut -d' ' -f1; }

# blob FILE LAYOUT -> stores FILE under LAYOUT/blobs/sha256/<hex>, prints the hex digest
blob() {
  local h
  h=$(sha "$1")
  mkdir -p "$2/blobs/sha256"
  cp "$1" "$2/blobs/sha256/$h"
  printf '%s' "$h"
}

# oci_image NAME REF ROOTFS CONFIG_JSON WORK -> $IMG_DIR/NAME.oci.tar
oci_image() {
  local name=$1 ref=$2 rootfs=$3 cfg=$4 work=$5
  local tarflags=(--sort=name --owner=0 --group=0 --numeric-owner --mtime=@0)
  local lay=$work/$name-layout
  rm -rf "$lay"
  mkdir -p "$lay"
  tar "${tarflags[@]}" -C "$rootfs" -cf "$work/$name-layer.tar" .
  local layer layer_size
  layer=$(blob "$work/$name-layer.tar" "$lay")
  layer_size=$(stat -c %s "$work/$name-layer.tar")
  jq -cn --arg d "sha256:$layer" --argjson c "$cfg" \
    '{architecture:"amd64",os:"linux",config:$c,rootfs:{type:"layers",diff_ids:[$d]},
      history:[{created_by:"nkit scripts/e2e/setup.sh"}]}' >"$work/$name-config.json"
  local config config_size
  config=$(blob "$work/$name-config.json" "$lay")
  config_size=$(stat -c %s "$work/$name-config.json")
  jq -cn --arg c "sha256:$config" --argjson cs "$config_size" --arg l "sha256:$layer" --argjson ls "$layer_size" \
    '{schemaVersion:2,mediaType:"application/vnd.oci.image.manifest.v1+json",
      config:{mediaType:"application/vnd.oci.image.config.v1+json",digest:$c,size:$cs},
      layers:[{mediaType:"application/vnd.oci.image.layer.v1.tar",digest:$l,size:$ls}]}' >"$work/$name-manifest.json"
  local manifest manifest_size
  manifest=$(blob "$work/$name-manifest.json" "$lay")
  manifest_size=$(stat -c %s "$work/$name-manifest.json")
  jq -cn --arg m "sha256:$manifest" --argjson ms "$manifest_size" --arg ref "$ref" \
    '{schemaVersion:2,mediaType:"application/vnd.oci.image.index.v1+json",
      manifests:[{mediaType:"application/vnd.oci.image.manifest.v1+json",digest:$m,size:$ms,
        platform:{architecture:"amd64",os:"linux"},
        annotations:{"io.containerd.image.name":$ref,"org.opencontainers.image.ref.name":$ref}}]}' >"$lay/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$lay/oci-layout"
  tar "${tarflags[@]}" -C "$lay" -cf "$IMG_DIR/$name.oci.tar.tmp" oci-layout index.json blobs
  mv "$IMG_DIR/$name.oci.tar.tmp" "$IMG_DIR/$name.oci.tar"
  log "image $ref manifest sha256:${manifest:0:12} -> $IMG_DIR/$name.oci.tar"
}

PAUSE_C='/* pod sandbox pause: sleep until SIGTERM/SIGINT, reap children */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void on_term(int sig) { (void)sig; _exit(0); }
static void on_chld(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction term = {0}, chld = {0};
  term.sa_handler = on_term;
  sigaction(SIGTERM, &term, 0);
  sigaction(SIGINT, &term, 0);
  chld.sa_handler = on_chld;
  chld.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGCHLD, &chld, 0);
  for (;;) pause();
}
'

images() {
  local t0=$SECONDS
  # the stamp covers this script's image code, the busybox binary and the C compiler
  local key
  key=$( (printf '%s' "$PAUSE_C"; declare -f oci_image blob; sha /bin/busybox; gcc --version | head -1) | sha256sum | cut -c1-16)
  if [[ -f $IMG_DIR/.stamp && $(cat "$IMG_DIR/.stamp") == "$key" && -f $IMG_DIR/pause.oci.tar && -f $IMG_DIR/busybox.oci.tar ]]; then
    log "images cached ($IMG_DIR)"
    return
  fi
  mkdir -p "$IMG_DIR"
  local work
  work=$(mktemp -d "$CACHE/.img-build.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  printf '%s' "$PAUSE_C" >"$work/pause.c"
  gcc -static -Os -s -o "$work/pause" "$work/pause.c"
  mkdir -p "$work/pause-rootfs"
  install -m 0755 "$work/pause" "$work/pause-rootfs/pause"
  oci_image pause localhost/pause:test "$work/pause-rootfs" '{"Entrypoint":["/pause"],"WorkingDir":"/"}' "$work"

  local r=$work/busybox-rootfs
  mkdir -p "$r"/{bin,etc,tmp,proc,sys,dev,root,var/www}
  chmod 1777 "$r/tmp"
  install -m 0755 /bin/busybox "$r/bin/busybox"
  local applet
  for applet in $(/bin/busybox --list); do
    [[ $applet == busybox ]] || ln -sf busybox "$r/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
  oci_image busybox localhost/busybox:test "$r" '{"Env":["PATH=/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/"}' "$work"
  printf '%s' "$key" >"$IMG_DIR/.stamp"
  log "images built ($((SECONDS - t0)) s)"
}

# ---------------------------------------------------------------------------------------------------------
# 3. Test peers built from the Go module proxy into $CACHE/<name>-<version>/bin, once per stamp key:
#    `go install` refuses both (their go.mod files have exclude and replace directives), so the module is
#    downloaded, copied to a writable directory and built there by the given function (run inside the
#    copy, with the output directory as $1). The copy goes afterwards; the module cache keeps the sources.
#      go_module_build NAME MODULE VERSION KEY BUILD_FN BINARY...
go_module_build() {
  local name=$1 module=$2 version=$3 key=$4 build=$5
  shift 5
  local t0=$SECONDS out=$CACHE/$name-$version
  local bin=$out/bin ok=1 b
  for b in "$@"; do [[ -x $bin/$b ]] || ok=0; done
  if ((ok)) && [[ -f $out/.stamp && $(cat "$out/.stamp") == "$key" ]]; then
    log "$name $version cached ($bin)"
    return
  fi
  command -v go >/dev/null || die "go not found (needed to build $name $version)"
  export GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build GOFLAGS=-modcacherw GOTOOLCHAIN=local
  local dir
  dir=$(cd / && go mod download -json "$module@$version" | jq -r .Dir)
  [[ -d $dir ]] || die "go mod download $module@$version gave no directory"
  log "downloaded $module@$version ($((SECONDS - t0)) s)"
  rm -rf "$out/src" "$bin.tmp"
  mkdir -p "$out" "$bin.tmp"
  cp -r "$dir" "$out/src"
  chmod -R u+w "$out/src"
  (cd "$out/src" && export CGO_ENABLED=0 && "$build" "$bin.tmp") || die "building $name $version failed"
  rm -rf "$bin"
  mv "$bin.tmp" "$bin"
  rm -rf "$out/src"
  "$bin/$1" --version >&2
  printf '%s' "$key" >"$out/.stamp"
  log "$name $version built ($((SECONDS - t0)) s) -> $bin"
}

# containerd 2.x (lane 2).
build_containerd2() {
  local module=github.com/containerd/containerd/v2
  go build -trimpath -tags no_btrfs,no_devmapper,no_zfs \
    -ldflags "-s -w -X $module/version.Version=$CTRD2_VERSION -X $module/version.Package=$module" \
    -o "$1/" ./cmd/containerd ./cmd/containerd-shim-runc-v2 ./cmd/ctr
}
containerd2() {
  go_module_build containerd github.com/containerd/containerd/v2 "$CTRD2_VERSION" \
    "$CTRD2_VERSION $(go version 2>/dev/null || echo no-go) CGO_ENABLED=0 tags=no_btrfs,no_devmapper,no_zfs" \
    build_containerd2 containerd containerd-shim-runc-v2 ctr
}

# nerdctl v2 (both lanes). Its dependency moby/moby/v2@v2.0.0-beta.28 (only `nerdctl info` uses it) is
# not served: the copy points that one dependency at a beta the proxy serves.
build_nerdctl() {
  go mod edit -replace github.com/moby/moby/v2=github.com/moby/moby/v2@v2.0.0-beta.25
  go build -mod=mod -trimpath -ldflags "-s -w -X github.com/containerd/nerdctl/v2/pkg/version.Version=$NERDCTL_VERSION" \
    -o "$1/nerdctl" ./cmd/nerdctl
}
nerdctl() {
  go_module_build nerdctl github.com/containerd/nerdctl/v2 "$NERDCTL_VERSION" \
    "$NERDCTL_VERSION $(go version 2>/dev/null || echo no-go) CGO_ENABLED=0 moby-v2=beta.25" \
    build_nerdctl nerdctl
}

T0=$SECONDS
packages
images
if [[ $LANE == 2 || $LANE == all ]]; then containerd2; fi
nerdctl
if ((PRUNE_GO)) && [[ -d $CACHE/go ]]; then
  chmod -R u+w "$CACHE/go" && rm -rf "$CACHE/go"
  log "pruned the Go caches"
fi
# the harness finds the 2.x binaries through this file
if [[ -x $CACHE/containerd-$CTRD2_VERSION/bin/containerd ]]; then
  printf '%s\n' "$CACHE/containerd-$CTRD2_VERSION/bin" >"$CACHE/containerd2.path"
fi
printf '%s\n' "$CACHE/nerdctl-$NERDCTL_VERSION/bin/nerdctl" >"$CACHE/nerdctl.path"
log "ok ($((SECONDS - T0)) s, cache $CACHE)"
