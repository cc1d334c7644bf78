#!/bin/bash
# PID 1 of the netkit VM lane's guest. The guest's root filesystem is the host's own root, shared
# read-only over virtiofs (root=hostroot rootfstype=virtiofs ro), so this is the repo's script, run
# by the host's bash, and the tests use the host's node, the repo's code and its node_modules.
# Writable state lives on tmpfs: /run (netns, HOME), /tmp, /dev/shm; bpffs on /sys/fs/bpf.
#
# Kernel command line variables arrive as environment variables:
#   nkvm_job=DIR   the host's per-run folder (read-only here) holding job.env
# It prints "nkvm: userspace up" (the host's boot watchdog waits for it), runs the job (vitest, or
# the job.env's NKIT_VM_COMMAND through bash when set, e.g. the VM benchmark), prints
# "NKVM-RESULT rc=N" and leaves through isa-debug-exit so QEMU exits with 2N+1.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
up() { cut -d' ' -f1 /proc/uptime; }

finish() {
  echo "NKVM-RESULT rc=$1 uptime=$(up)s"
  sync
  if [[ -n ${VMEXIT:-} && -x $VMEXIT ]]; then "$VMEXIT" "$1"; fi
  # no helper or no debug-exit device: power off (the host reports "no result")
  echo o >/proc/sysrq-trigger 2>/dev/null
  while :; do sleep 1; done # PID 1 must never exit
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
# The guest's /tmp must be writable and private, but the repo (a CI clone, say) or the job folder
# may live under the host's /tmp: keep the host's /tmp reachable at /run/hosttmp first.
mkdir -p /run/hosttmp
mount --bind /tmp /run/hosttmp
mount -t tmpfs -o mode=1777 tmpfs /tmp
hostpath() { case $1 in /tmp/*) echo "/run/hosttmp/${1#/tmp/}" ;; *) echo "$1" ;; esac; }
mount -t bpf -o mode=700 bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
ip link set lo up
echo; echo "nkvm: userspace up at $(up)s, kernel $(uname -r)"

JOB=$(hostpath "${nkvm_job:-}")
if [[ -z $JOB || ! -r $JOB/job.env ]]; then
  echo "nkvm: no job (nkvm_job=$JOB)"
  finish 98
fi
# shellcheck source=/dev/null
. "$JOB/job.env" # REPO, VM_KERNEL_DIR, VMEXIT, NKIT_VM_TESTS, NKIT_VM_VITEST_ARGS, NKIT_VM_COMMAND
REPO=$(hostpath "$REPO")
VM_KERNEL_DIR=$(hostpath "$VM_KERNEL_DIR")
VMEXIT=$(hostpath "${VMEXIT:-}")
export REPO VM_KERNEL_DIR NKIT_VM_TESTS

# Modules (veth, ...) come from the unpacked kernel package: point the kernel's module autoloader
# at a wrapper that runs modprobe -d on it, and preload what the tests need anyway.
mkdir -p /run/nkvm
printf '%s\n' "$VM_KERNEL_DIR" >/run/nkvm/kernel-dir
echo "$REPO/scripts/vm/guest-modprobe.sh" >/proc/sys/kernel/modprobe
modprobe -d "$VM_KERNEL_DIR" -a veth dummy || echo "nkvm: warning: modprobe veth dummy failed"

mkdir -p /run/home
cd "$REPO" || finish 97
export HOME=/run/home TMPDIR=/tmp NO_COLOR=1 FORCE_COLOR=0 CI=1 TERM=dumb NKIT_VM_LANE=1
set -o pipefail
# A non-vitest job (scripts/vm/bench.sh): run the command from the repo root, same environment.
if [[ -n ${NKIT_VM_COMMAND:-} ]]; then
  echo "nkvm: running command at $(up)s (node $(node --version)): $NKIT_VM_COMMAND"
  bash -c "$NKIT_VM_COMMAND" 2>&1 | cat
  rc=$?
  echo "nkvm: command exited $rc at $(up)s"
  finish "$rc"
fi
echo "nkvm: running vitest at $(up)s (node $(node --version), $(ip -V))"
# --configLoader runner: vite's default loader writes a bundled config into node_modules (read-only
# here); the piped stdout keeps vitest's reporter non-interactive on the serial console.
# shellcheck disable=SC2086
node node_modules/vitest/vitest.mjs run --configLoader runner --project vm \
  --reporter=verbose ${NKIT_VM_VITEST_ARGS:-} 2>&1 | cat
rc=$?
echo "nkvm: vitest exited $rc at $(up)s"
finish "$rc"
