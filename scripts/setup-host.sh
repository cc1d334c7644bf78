#!/usr/bin/env bash
# Prepares a Debian 12 host for building and testing nkit. Idempotent: when every
# package is already at the wanted origin it touches nothing and returns in well under a second.
#
# Extra suites are pinned at priority 100 so that only packages named with /suite come from them;
# an install that would touch libc6 is refused before anything changes.
set -euo pipefail

log() { printf '[setup-host] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (apt, bpffs mount)"
[[ -r /etc/debian_version && $(cut -d. -f1 /etc/debian_version) == 12 ]] ||
  log "warning: not Debian 12 ($(cat /etc/debian_version 2>/dev/null || echo unknown)); continuing"

SOURCES=/etc/apt/sources.list.d/nkit-extra.sources
PREFS=/etc/apt/preferences.d/nkit-extra
want_sources='Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg'
want_prefs='Package: *
Pin: release n=bookworm-backports
Pin-Priority: 100

Package: *
Pin: release n=trixie
Pin-Priority: 100'

# name|suite|version-must-match (regex, empty = any)
BASE_PKGS=(
  "clang||" "llvm||" "make||" "gcc||" "pkg-config||" "libelf-dev||" "zlib1g-dev||"
  "libbpf-dev|bookworm-backports|^1:1\\.[4-9]" "libbpf1|bookworm-backports|^1:1\\.[4-9]"
  "bpftool|bookworm-backports|" "iproute2|bookworm-backports|^6\\.1[5-9]"
  "linux-libc-dev|bookworm-backports|^6\\.12"
  "iperf3||" "iptables||" "ethtool||" "nftables||" "iputils-ping||" "util-linux||" "procps||" "kmod||"
)
PKGS=("${BASE_PKGS[@]}")
for arg in "$@"; do
  case "$arg" in
    --extra=*) IFS=, read -ra extra <<<"${arg#--extra=}"; PKGS+=("${extra[@]}") ;;
    *) die "unknown argument: $arg (supported: --extra=name|suite|versionregex,...)" ;;
  esac
done

missing=()
for spec in "${PKGS[@]}"; do
  IFS='|' read -r name suite vre <<<"$spec"
  ver=$(dpkg-query -W -f='${Status}|${Version}' "$name" 2>/dev/null || true)
  if [[ $ver != "install ok installed|"* ]]; then missing+=("$spec"); continue; fi
  ver=${ver#*|}
  if [[ -n $vre && ! $ver =~ $vre ]]; then missing+=("$spec"); fi
done

changed_sources=0
if [[ ! -f $SOURCES || "$(cat "$SOURCES")" != "$want_sources" ]]; then
  printf '%s\n' "$want_sources" >"$SOURCES"; changed_sources=1
fi
if [[ ! -f $PREFS || "$(cat "$PREFS")" != "$want_prefs" ]]; then
  printf '%s\n' "$want_prefs" >"$PREFS"; changed_sources=1
fi

if ((${#missing[@]} > 0)); then
  targets=()
  for spec in "${missing[@]}"; do
    IFS='|' read -r name suite _ <<<"$spec"
    targets+=("${name}${suite:+/$suite}")
  done
  log "installing: ${targets[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq || log "warning: apt-get update reported errors; continuing with the lists it got"
  libc_before=$(dpkg-query -W -f='${Version}' libc6)
  # The plan is captured first: piped into grep -q, apt-get could die of SIGPIPE at the match and
  # pipefail would read "would upgrade libc6" as "would not".
  plan=$(apt-get -s -o DPkg::Lock::Timeout=600 install --no-install-recommends "${targets[@]}")
  if grep -q '^Inst libc6 ' <<<"$plan"; then
    die "installing ${targets[*]} would upgrade libc6; refusing"
  fi
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${targets[@]}" >/dev/null
  [[ $(dpkg-query -W -f='${Version}' libc6) == "$libc_before" ]] || die "libc6 changed; investigate apt pinning"
elif ((changed_sources)); then
  log "apt sources written; packages already present"
fi

# bpffs may be unmounted on this kind of VM.
if ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf
  log "mounted bpffs on /sys/fs/bpf"
fi
log "ok"
