#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (as root): host packages, npm deps, build,
# lint, unit, integration (real netns/BPF and a private containerd with NRI), the netkit VM lane
# (Debian's netkit kernel under qemu), the containerd e2e lanes (Debian's 1.7.24 and 2.x built
# from the Go module proxy), the package lane (npm tarball and .deb in fresh Debian 12 roots) and
# the Nomad lane. Idempotent; downloads and builds are cached outside the repo.
# Every stage runs even when an earlier one failed; the exit status says whether all passed.
set -euo pipefail
cd "$(dirname "$0")/.."

# containerd 1.7.24 is the only package taken from trixie; runc and the CNI plugins come from bookworm.
bash scripts/setup-host.sh --extra='containerd|trixie|^1\.7\.24,runc||,containernetworking-plugins||,busybox-static||,debootstrap||,libclang-rt-14-dev||'
export npm_config_cache="${NKIT_NPM_CACHE:-/var/cache/nkit/npm}"
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --prefer-offline
fi

declare -A status
rc=0
log=$(mktemp /tmp/nkit-test-XXXXXX.log)
trap 'rm -f "$log"' EXIT
stage() {
  local name=$1
  shift
  local t=$SECONDS
  set +e
  "$@" 2>&1 | tee -a "$log"
  local code=${PIPESTATUS[0]}
  set -e
  if ((code == 0)); then status[$name]="passed ($((SECONDS - t)) s)"; else status[$name]="FAILED ($((SECONDS - t)) s)"; rc=1; fi
}
stage "build, lint, unit, integration" npm test
# Fuzzing, short profile: libFuzzer on nkit-cni's JSON scanner, fast-check on the TypeScript parsers.
stage "fuzz (short profile)" bash scripts/fuzz.sh
stage "netkit VM lane" npm run test:vm
stage "containerd e2e lanes" bash scripts/e2e/run-all.sh
# The npm tarball and the Debian package, built and installed into fresh Debian 12 roots.
stage "package lane" sh -c 'bash scripts/package.sh && npx vitest run --project package'

# The real-Nomad lane needs a Nomad v1.6.5 binary built on this machine from a snapshot of Nomad's
# repository (never by this repository: see test/nomad/env.ts); without one it says so, loudly.
NOMAD_BIN=${NKIT_NOMAD_BIN:-/var/cache/nkit/nomad/bin/nomad}
if [[ -x $NOMAD_BIN ]]; then
  stage "Nomad lane" npx vitest run --project nomad
else
  status["Nomad lane"]="NOT RUN: no Nomad binary at $NOMAD_BIN (set NKIT_NOMAD_BIN)"
  echo "[test] *** the Nomad lane did NOT run: no Nomad binary at $NOMAD_BIN ***" | tee -a "$log"
fi

echo
for name in "build, lint, unit, integration" "fuzz (short profile)" "netkit VM lane" "containerd e2e lanes" "package lane" "Nomad lane"; do
  echo "[test] $name: ${status[$name]}"
done
# One plain total over every vitest run above (host projects, the VM guest, both e2e lanes).
sed 's/\x1b\[[0-9;]*m//g' "$log" | awk '
  /^ +Tests +[0-9]/ {
    for (i = 1; i <= NF; i++) {
      if ($(i + 1) == "passed") p += $i
      if ($(i + 1) == "failed") f += $i
      if ($(i + 1) == "skipped") s += $i
    }
  }
  END { printf "%d passed, %d failed, %d skipped\n", p, f, s }'
exit $rc
