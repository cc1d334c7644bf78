# Shared settings for the netkit VM lane (sourced by scripts/vm/*.sh; not executable on its own).
# Everything downloaded, unpacked or built lives under $NKIT_VM_CACHE, never in the repo.
NKIT_VM_CACHE=${NKIT_VM_CACHE:-/var/cache/nkit/vm}
VM_BPO=bookworm-backports
VM_DEBS=$NKIT_VM_CACHE/debs          # apt-get download
VM_KERNEL_DIR=$NKIT_VM_CACHE/kernel  # dpkg-deb -x of linux-image-*-cloud-amd64-unsigned
VM_QEMU_DIR=$NKIT_VM_CACHE/qemu10    # dpkg-deb -x of qemu 10 (+ firmware) from bookworm-backports
VM_VMLINUX=$NKIT_VM_CACHE/vmlinux    # ELF kernel cut out of the bzImage: QEMU boots it through PVH
VM_BIN=$NKIT_VM_CACHE/bin            # guest helpers built here (vmexit)
VM_RUNS=$NKIT_VM_CACHE/runs          # per-run job folders, visible read-only in the guest
VM_QEMU=$VM_QEMU_DIR/usr/bin/qemu-system-x86_64
VM_VIRTIOFSD=/usr/lib/qemu/virtiofsd # C virtiofsd from bookworm's qemu-system-common 7.2
APT=(apt-get -o DPkg::Lock::Timeout=600)

vm_log() { printf '[nkit-vm] %s\n' "$*" >&2; }
vm_die() { vm_log "error: $*"; exit 1; }
# Seconds (one decimal) since $1, by default since the sourcing script started.
T_START=$(date +%s.%N)
elapsed() { printf '%.1f' "$(echo "$(date +%s.%N) - ${1:-$T_START}" | bc)"; }
