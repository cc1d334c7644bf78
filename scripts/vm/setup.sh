#!/usr/bin/env bash
# Prepares the netkit VM lane. Idempotent and cached: a second run only checks stamps (well under a
# second when the package lists still point at the cached kernel).
#
#  - host packages through scripts/setup-host.sh --extra=...: bookworm's qemu-system-x86 7.2 (its
#    shared libraries run QEMU 10, and it ships the C virtiofsd). libc6 is guarded there.
#  - downloaded with `apt-get download` and unpacked with `dpkg-deb -x` (never installed) from
#    bookworm-backports: the cloud kernel the linux-image-cloud-amd64 metapackage points at (the
#    -unsigned variant, CONFIG_NETKIT=y) and QEMU 10 (bookworm's 7.2 oopses this kernel under TCG).
#  - built: an ELF vmlinux (PVH boot, about 1 s faster than the bzImage), modules.dep for the guest's
#    modprobe, and the vmexit helper (isa-debug-exit).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

[[ $(id -u) -eq 0 ]] || vm_die "run as root (apt, qemu, netns in the guest)"

# 1. Host packages (no-op when present). qemu-system-x86 must stay at bookworm's 7.2: the backports
#    10.0 package would replace qemu-system-common and with it the C virtiofsd.
bash "$REPO/scripts/setup-host.sh" "--extra=qemu-system-x86||^1:7\\.2,gcc||,libc6-dev||,zstd||,kmod||,python3||"
[[ -x $VM_VIRTIOFSD ]] || vm_die "$VM_VIRTIOFSD is missing (it comes with bookworm's qemu-system-common 7.2)"

mkdir -p "$VM_DEBS" "$VM_BIN" "$VM_RUNS"
chown _apt "$VM_DEBS" 2>/dev/null || true # lets apt-get download drop privileges without a warning

# 2. Resolve the kernel package through the backports metapackage.
resolve_kpkg() {
  apt-cache show "linux-image-cloud-amd64/$VM_BPO" 2>/dev/null |
    sed -n 's/^Depends: \(linux-image-[^ ,]*\).*/\1/p' | head -1
}
KPKG=$(resolve_kpkg)
if [[ -z $KPKG ]]; then
  vm_log "apt lists lack $VM_BPO; running apt-get update"
  "${APT[@]}" update -qq || vm_log "warning: apt-get update reported errors"
  KPKG=$(resolve_kpkg)
fi
if [[ -z $KPKG ]]; then
  # offline, or the suite vanished: a cached kernel is still good enough
  [[ -f $VM_KERNEL_DIR/.pkg ]] || vm_die "cannot resolve linux-image-cloud-amd64 in $VM_BPO and nothing is cached"
  KPKG=$(cat "$VM_KERNEL_DIR/.pkg")
  vm_log "warning: using cached $KPKG (could not resolve the metapackage)"
else
  KPKG=$KPKG-unsigned
fi

download() { # download PKG/SUITE... into $VM_DEBS
  (cd "$VM_DEBS" && "${APT[@]}" download "$@" 2>&1 | grep -v -e '^Get:' -e unsandboxed >&2 || true)
}

# 3. Kernel: unpack once per package name.
if [[ ! -f $VM_KERNEL_DIR/.pkg || $(cat "$VM_KERNEL_DIR/.pkg") != "$KPKG" || ! -s $VM_VMLINUX ]]; then
  t0=$SECONDS
  deb=$(ls "$VM_DEBS/${KPKG}"_*.deb 2>/dev/null | tail -1 || true)
  if [[ -z $deb ]]; then
    vm_log "downloading $KPKG from $VM_BPO"
    download "$KPKG/$VM_BPO"
    deb=$(ls "$VM_DEBS/${KPKG}"_*.deb 2>/dev/null | tail -1 || true)
    [[ -n $deb ]] || vm_die "apt-get download $KPKG/$VM_BPO produced no .deb"
  fi
  rm -rf "$VM_KERNEL_DIR.tmp" && mkdir -p "$VM_KERNEL_DIR.tmp"
  dpkg-deb -x "$deb" "$VM_KERNEL_DIR.tmp"
  kver=$(ls "$VM_KERNEL_DIR.tmp/lib/modules")
  grep -q '^CONFIG_NETKIT=y' "$VM_KERNEL_DIR.tmp/boot/config-$kver" || vm_die "$KPKG lacks CONFIG_NETKIT=y"
  grep -q '^CONFIG_VIRTIO_FS=y' "$VM_KERNEL_DIR.tmp/boot/config-$kver" || vm_die "$KPKG lacks CONFIG_VIRTIO_FS=y"
  depmod -b "$VM_KERNEL_DIR.tmp" "$kver" # modules.dep/alias for the guest's modprobe -d
  # The bzImage carries a zstd-compressed ELF; QEMU boots the ELF directly via PVH.
  python3 - "$VM_KERNEL_DIR.tmp/boot/vmlinuz-$kver" "$VM_VMLINUX.tmp" <<'PY'
import subprocess, sys
blob = open(sys.argv[1], "rb").read()
at = blob.find(b"\x28\xb5\x2f\xfd")  # zstd frame magic
if at < 0:
    sys.exit("no zstd payload in " + sys.argv[1])
elf = subprocess.run(["zstd", "-d", "-q", "-c"], input=blob[at:], capture_output=True).stdout
if elf[:4] != b"\x7fELF":
    sys.exit("the zstd payload is not an ELF kernel")
open(sys.argv[2], "wb").write(elf)
PY
  rm -rf "$VM_KERNEL_DIR" && mv "$VM_KERNEL_DIR.tmp" "$VM_KERNEL_DIR"
  mv "$VM_VMLINUX.tmp" "$VM_VMLINUX"
  echo "$KPKG" >"$VM_KERNEL_DIR/.pkg"
  # drop older kernel debs
  find "$VM_DEBS" -name 'linux-image-*.deb' ! -name "${KPKG}_*" -delete
  vm_log "kernel $kver ready ($((SECONDS - t0)) s)"
fi

# 4. QEMU 10 from backports, unpacked next to its firmware.
QPKGS=(qemu-system-x86 qemu-system-common qemu-system-data seabios)
if [[ ! -x $VM_QEMU || ! -f $VM_QEMU_DIR/.ok ]]; then
  t0=$SECONDS
  missing=()
  for p in "${QPKGS[@]}"; do ls "$VM_DEBS/${p}"_*bpo*.deb >/dev/null 2>&1 || missing+=("$p/$VM_BPO"); done
  if ((${#missing[@]})); then
    vm_log "downloading ${missing[*]}"
    download "${missing[@]}"
  fi
  rm -rf "$VM_QEMU_DIR.tmp" && mkdir -p "$VM_QEMU_DIR.tmp"
  for p in "${QPKGS[@]}"; do
    deb=$(ls "$VM_DEBS/${p}"_*bpo*.deb 2>/dev/null | tail -1 || true)
    [[ -n $deb ]] || vm_die "apt-get download $p/$VM_BPO produced no .deb"
    dpkg-deb -x "$deb" "$VM_QEMU_DIR.tmp"
  done
  "$VM_QEMU_DIR.tmp/usr/bin/qemu-system-x86_64" --version >/dev/null ||
    vm_die "the unpacked QEMU 10 does not start on this host's libraries"
  rm -rf "$VM_QEMU_DIR" && mv "$VM_QEMU_DIR.tmp" "$VM_QEMU_DIR"
  touch "$VM_QEMU_DIR/.ok"
  vm_log "$("$VM_QEMU" --version | head -1) ready ($((SECONDS - t0)) s)"
fi

# 5. vmexit: writes the guest's status to QEMU's isa-debug-exit port.
if [[ ! -x $VM_BIN/vmexit || $VM_BIN/vmexit -ot $HERE/vmexit.c ]]; then
  gcc -O2 -Wall -Werror -static -o "$VM_BIN/vmexit.tmp" "$HERE/vmexit.c"
  mv "$VM_BIN/vmexit.tmp" "$VM_BIN/vmexit"
fi
vm_log "setup ok: $(cat "$VM_KERNEL_DIR/.pkg"), $("$VM_QEMU" --version | head -1)"
