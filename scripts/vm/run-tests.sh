#!/usr/bin/env bash
# `npm run test:vm`: runs the VM lane's vitest project (test/vm/lane.ts lists the files) inside a
# netkit-capable kernel under QEMU/TCG, in one boot, and exits with vitest's status.
#
#   1. scripts/vm/setup.sh (cached under $NKIT_VM_CACHE, default /var/cache/nkit/vm)
#   2. builds the native addon and BPF objects (incremental; NKIT_VM_NO_BUILD=1 skips)
#   3. starts virtiofsd sharing the host root, boots QEMU 10 (-nographic, TCG, -smp 2, -nic none,
#      isa-debug-exit) with the host root as the guest's read-only root and scripts/vm/guest-init.sh
#      as PID 1, streams the serial console to stdout
#   4. maps the guest's status back: vitest's exit code; 124 timeout; 125 no result (panic, hang)
#
# Environment:
#   NKIT_VM_TESTS="a.test.ts b.test.ts"  run these files (paths or globs from the repo root) instead
#                                        of the default list in test/vm/lane.ts
#   NKIT_VM_VITEST_ARGS="-t name"        extra vitest arguments (e.g. a test name filter)
#   NKIT_VM_COMMAND="node x.js"          run this bash command in the guest (repo root) instead of
#                                        vitest, and exit with its status (scripts/vm/bench.sh)
#   NKIT_VM_TIMEOUT=480                  seconds for the whole boot + test run (then killed)
#   NKIT_VM_BOOT_TIMEOUT=60              seconds until the guest's userspace must be up; a boot that
#                                        misses it is killed and retried NKIT_VM_BOOT_RETRIES (1) times
#   NKIT_VM_MEM=2048 NKIT_VM_SMP=2 NKIT_VM_CPU=max   guest size
#   NKIT_VM_DEBUG=1                      full kernel log on the console
#   NKIT_VM_LOG=FILE                     also keep the console log here (default: in the run folder,
#                                        removed afterwards unless the run failed)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

TIMEOUT=${NKIT_VM_TIMEOUT:-480}
BOOT_TIMEOUT=${NKIT_VM_BOOT_TIMEOUT:-60}
RETRIES=${NKIT_VM_BOOT_RETRIES:-1}
MEM=${NKIT_VM_MEM:-2048}

[[ $(id -u) -eq 0 ]] || vm_die "run as root (the guest runs the tests as root; QEMU needs the host root shared)"

# 1. Setup (cached).
T0=$(date +%s.%N)
bash "$HERE/setup.sh" || vm_die "setup failed"
T_SETUP=$(elapsed "$T0")

# 2. Build what the tests load (make is incremental: a no-op when nothing changed).
T0=$(date +%s.%N)
if [[ -z ${NKIT_VM_NO_BUILD:-} ]]; then
  (cd "$REPO" && npm run -s build:native && npm run -s build:bpf) >&2 || vm_die "build failed (npm run build:native / build:bpf)"
fi
[[ -e $REPO/node_modules/vitest/vitest.mjs ]] || vm_die "node_modules is missing: run npm ci"
T_BUILD=$(elapsed "$T0")

# 3. Per-run folder under the cache: the guest reads job.env from it (the host root is its root).
mkdir -p "$VM_RUNS"
RUN=$(mktemp -d "$VM_RUNS/run.XXXXXX") || vm_die "mktemp failed"
chmod 755 "$RUN"
LOG=$RUN/console.log
QPID='' VPID='' TPID='' KEEP=0
cleanup() {
  local p
  for p in $TPID $QPID $VPID; do
    if kill -0 "$p" 2>/dev/null; then kill "$p" 2>/dev/null; fi
  done
  for p in $TPID $QPID $VPID; do wait "$p" 2>/dev/null; done
  if [[ -n ${NKIT_VM_LOG:-} && -f $LOG ]]; then cp "$LOG" "$NKIT_VM_LOG"; fi
  if ((KEEP)) && [[ -f $LOG ]]; then
    mkdir -p "$NKIT_VM_CACHE/logs"
    cp "$LOG" "$NKIT_VM_CACHE/logs/last-failure.log"
    vm_log "console log kept in $NKIT_VM_CACHE/logs/last-failure.log"
  fi
  rm -rf "$RUN"
}
trap cleanup EXIT
trap 'vm_log "interrupted"; exit 130' INT TERM

q() { printf '%q' "$1"; }
{
  echo "REPO=$(q "$REPO")"
  echo "VM_KERNEL_DIR=$(q "$VM_KERNEL_DIR")"
  echo "VMEXIT=$(q "$VM_BIN/vmexit")"
  echo "NKIT_VM_TESTS=$(q "${NKIT_VM_TESTS:-}")"
  echo "NKIT_VM_VITEST_ARGS=$(q "${NKIT_VM_VITEST_ARGS:-}")"
  echo "NKIT_VM_COMMAND=$(q "${NKIT_VM_COMMAND:-}")"
} >"$RUN/job.env"

KVER=$(ls "$VM_KERNEL_DIR/lib/modules")
QUIET="quiet loglevel=3"
[[ -n ${NKIT_VM_DEBUG:-} ]] && QUIET="loglevel=7"
APPEND="console=ttyS0 root=hostroot rootfstype=virtiofs ro init=$REPO/scripts/vm/guest-init.sh"
APPEND+=" panic=-1 oops=panic $QUIET nkvm_job=$RUN"
export QEMU_MODULE_DIR=$VM_QEMU_DIR/usr/lib/x86_64-linux-gnu/qemu

start_virtiofsd() {
  local sock=$RUN/vfsd.sock
  rm -f "$sock"
  "$VM_VIRTIOFSD" --socket-path="$sock" -o source=/ -o cache=always -o sandbox=chroot \
    -o log_level=err >>"$RUN/virtiofsd.log" 2>&1 &
  VPID=$!
  for _ in $(seq 100); do [[ -S $sock ]] && return 0; sleep 0.05; done
  vm_log "virtiofsd did not start: $(cat "$RUN/virtiofsd.log")"
  return 1
}

# One boot. Returns QEMU's status, 124 on the overall timeout, 126 when the boot watchdog fired.
boot_once() {
  start_virtiofsd || return 125
  : >"$LOG"
  "$VM_QEMU" -nographic -no-reboot -m "$MEM" -smp "${NKIT_VM_SMP:-2}" -accel tcg -cpu "${NKIT_VM_CPU:-max}" \
    -nic none -device isa-debug-exit,iobase=0xf4,iosize=0x01 \
    -kernel "$VM_VMLINUX" -append "$APPEND" \
    -chardev "socket,id=vfs,path=$RUN/vfsd.sock" -device vhost-user-fs-pci,chardev=vfs,tag=hostroot \
    -object "memory-backend-memfd,id=mem,size=${MEM}M,share=on" -numa node,memdev=mem \
    -L "$VM_QEMU_DIR/usr/share/qemu" -L "$VM_QEMU_DIR/usr/share/seabios" \
    </dev/null >"$LOG" 2>&1 &
  QPID=$!
  # stream the console; drop QEMU's harmless module-probe warnings and the firmware's escape codes
  tail -n +1 -s 0.2 -f --pid="$QPID" "$LOG" 2>/dev/null |
    grep -av --line-buffered -e 'failed to initialize module: .*ui-opengl' -e '^Only modules from the same build' |
    sed -u -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1bc//g' &
  TPID=$!
  local t0=$SECONDS booted=0 rc
  while kill -0 "$QPID" 2>/dev/null; do
    if ((!booted)); then
      if grep -aq 'nkvm: userspace up' "$LOG"; then
        booted=1
      elif ((SECONDS - t0 >= BOOT_TIMEOUT)); then
        vm_log "boot watchdog: no guest userspace after ${BOOT_TIMEOUT}s, killing this boot"
        kill "$QPID"; wait "$QPID" 2>/dev/null; QPID=''
        return 126
      fi
    fi
    if ((SECONDS - t0 >= TIMEOUT)); then
      vm_log "timeout: the guest ran for ${TIMEOUT}s (NKIT_VM_TIMEOUT), killing it"
      kill "$QPID"; sleep 2; kill -9 "$QPID" 2>/dev/null; wait "$QPID" 2>/dev/null; QPID=''
      return 124
    fi
    sleep 0.2
  done
  wait "$QPID"; rc=$?; QPID=''
  sleep 0.3 # let tail print the last lines
  return "$rc"
}

T_VM0=$(date +%s.%N)
boots=0
for ((attempt = 0; attempt <= RETRIES; attempt++)); do
  boots=$((boots + 1))
  boot_once; qrc=$?
  # each boot gets a fresh virtiofsd
  if [[ -n $VPID ]]; then kill "$VPID" 2>/dev/null; wait "$VPID" 2>/dev/null; VPID=''; fi
  if [[ -n $TPID ]]; then kill "$TPID" 2>/dev/null; wait "$TPID" 2>/dev/null; TPID=''; fi
  ((qrc == 126)) || break
done
T_VM=$(elapsed "$T_VM0")

JOB_WHAT=vitest
[[ -n ${NKIT_VM_COMMAND:-} ]] && JOB_WHAT="the job command"
result=$(grep -ao 'NKVM-RESULT rc=[0-9]*' "$LOG" | tail -1 | sed 's/.*rc=//')
if ((qrc == 124)); then
  rc=124 why="timed out after ${TIMEOUT}s (NKIT_VM_TIMEOUT)"
elif ((qrc == 126)); then
  rc=125 why="the guest never reached userspace in $boots boots (boot watchdog ${BOOT_TIMEOUT}s)"
elif [[ -n $result ]] && ((qrc % 2 == 1)) && (((qrc - 1) / 2 == result)); then
  rc=$result why="$JOB_WHAT exited $result"
elif [[ -n $result ]]; then
  rc=$result why="guest reported $result (QEMU exit $qrc: isa-debug-exit missed)"
  ((rc == 0)) && rc=125 why="guest reported 0 but QEMU exited $qrc; not trusting it"
else
  rc=125 why="the guest gave no result (QEMU exit $qrc: kernel panic or crash; see the console above)"
fi
summary=$(grep -a -E '^ +(Test Files|Tests) ' "$LOG" | sed 's/^ *//' | tr -s ' ' | paste -sd';' -)
((rc == 0)) || KEEP=1
echo
if ((rc == 0)); then
  vm_log "PASS: netkit VM lane: $why [${summary:-no vitest summary}] kernel $KVER, boots $boots, VM ${T_VM}s, setup ${T_SETUP}s, build ${T_BUILD}s, total $(elapsed)s"
else
  vm_log "FAIL ($rc): netkit VM lane: $why [${summary:-no vitest summary}] kernel $KVER, boots $boots, VM ${T_VM}s, total $(elapsed)s"
fi
exit "$rc"
