#!/usr/bin/env bash
# `npm run bench:vm`: the datapath benchmark inside the netkit VM lane's guest (QEMU TCG, one boot):
# pod <-> pod TCP_RR / TCP_CRR / TCP_STREAM over nkit netkit vs nkit veth vs loopback, interleaved
# over a few short rounds, plus wire/unwire latency per pod for both modes (bench/README.md, "VM").
#
#   1. builds bench/tools/rr and bench/dist (npm run bench:build); run-tests.sh builds the addon and
#      the BPF objects
#   2. runs scripts/vm/run-tests.sh with NKIT_VM_COMMAND="node bench/dist/bench/vm.js guest ...":
#      same setup, same guest, same cleanup of QEMU and virtiofsd; the guest's console is streamed
#      through a host monitor (vm.js monitor: drops the data lines, samples the host's CPU so the
#      report can flag measurements that other host processes disturbed) and kept in a temp dir
#   3. the guest prints its result as a checksummed gzip+base64 block on the serial console (its root
#      is read-only, /tmp is tmpfs); `vm.js report` cuts it out of the console log and writes
#      bench/results/vm-<ts>.{json,md} and, for a complete run, vm-latest.{json,md}
#
# Environment (besides run-tests.sh's NKIT_VM_* knobs):
#   NKIT_VM_BENCH_ROUNDS=5 NKIT_VM_BENCH_SECONDS=3 NKIT_VM_BENCH_PODS=20
#   NKIT_VM_TIMEOUT=420     seconds for boot + benchmark (then QEMU is killed)
#   NKIT_VM_BENCH_OUT=DIR   results directory (default bench/results)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

ROUNDS=${NKIT_VM_BENCH_ROUNDS:-5}
SECS=${NKIT_VM_BENCH_SECONDS:-3}
PODS=${NKIT_VM_BENCH_PODS:-20}
OUT=${NKIT_VM_BENCH_OUT:-$REPO/bench/results}

[[ $(id -u) -eq 0 ]] || vm_die "run as root (the guest runs the benchmark as root; QEMU needs the host root shared)"
command -v iperf3 >/dev/null || vm_die "iperf3 is missing on the host (the guest runs the host's binary): apt-get install iperf3"

TMPD='' RPID=''
cleanup() {
  # run-tests.sh kills QEMU and virtiofsd by pid and removes its run folder on TERM
  if [[ -n $RPID ]] && kill -0 "$RPID" 2>/dev/null; then
    kill -TERM "$RPID" 2>/dev/null
    wait "$RPID" 2>/dev/null
  fi
  [[ -n $TMPD ]] && rm -rf "$TMPD"
}
trap cleanup EXIT
trap 'vm_log "interrupted"; exit 130' INT TERM HUP

T0=$(date +%s.%N)
(cd "$REPO" && npm run -s bench:build) >&2 || vm_die "build failed (npm run bench:build)"
T_BUILD=$(elapsed "$T0")
TMPD=$(mktemp -d /tmp/nkit-vmbench.XXXXXX) || vm_die "mktemp failed"

STARTED=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
vm_log "VM benchmark: $ROUNDS rounds x ${SECS}s, $PODS pods per mode; host load $LOAD0"
T0=$(date +%s.%N)
# In the background so that a signal reaches our trap at once (and run-tests.sh through it). The
# live console goes through `vm.js monitor`: it drops the data block's lines and the guest's clock
# lines, and samples the host's CPU (this process tree vs everyone else) into host-trace.json; it
# ignores Ctrl-C and ends when run-tests.sh's output does. The full console log goes to $TMPD.
NKIT_VM_COMMAND="node bench/dist/bench/vm.js guest --rounds $ROUNDS --seconds $SECS --pods $PODS" \
  NKIT_VM_LOG=$TMPD/console.log NKIT_VM_TIMEOUT=${NKIT_VM_TIMEOUT:-420} \
  bash "$HERE/run-tests.sh" > >(trap '' INT; exec node "$REPO/bench/dist/bench/vm.js" monitor --root $$ \
    --out "$TMPD/host-trace.json") &
RPID=$!
wait "$RPID"
rc=$?
RPID=''
T_VM=$(elapsed "$T0")
for _ in $(seq 50); do [[ -e $TMPD/host-trace.json ]] && break; sleep 0.1; done # the monitor's last lines

if [[ ! -s $TMPD/console.log ]]; then
  vm_die "no console log from the guest (run-tests.sh exited $rc)"
fi
QEMU_V=$("$VM_QEMU" --version 2>/dev/null | head -1 | sed 's/QEMU emulator version //; s/ (.*//')
node "$REPO/bench/dist/bench/vm.js" report --log "$TMPD/console.log" --job-status "$rc" \
  --host-trace "$TMPD/host-trace.json" \
  --started "$STARTED" --load-start "$LOAD0" --vm-wall "$T_VM" --qemu "$QEMU_V" --out "$OUT" \
  --command "npm run bench:vm"
rrc=$?
if ((rc != 0)); then
  vm_log "FAIL ($rc): VM benchmark: the guest job failed (see above); build ${T_BUILD}s, VM ${T_VM}s, total $(elapsed)s"
  exit "$rc"
fi
if ((rrc != 0)); then
  vm_log "FAIL: VM benchmark: no complete result (report exited $rrc); VM ${T_VM}s, total $(elapsed)s"
  exit 1
fi
vm_log "done: VM benchmark, build ${T_BUILD}s, VM ${T_VM}s, total $(elapsed)s; results in ${OUT#"$REPO"/}/vm-latest.{json,md}"
