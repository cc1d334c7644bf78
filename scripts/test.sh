#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (as root): host packages, npm deps, build,
# lint, unit, integration (real netns/BPF and a private containerd with NRI), and the netkit VM
# lane (Debian's netkit kernel under qemu). Idempotent; downloads are cached outside the repo.
set -euo pipefail
cd "$(dirname "$0")/.."

# containerd 1.7.24 is the only package taken from trixie; runc and the CNI plugins come from bookworm.
bash scripts/setup-host.sh --extra='containerd|trixie|^1\.7\.24,runc||,containernetworking-plugins||,busybox-static||'
export npm_config_cache="${NKIT_NPM_CACHE:-/var/cache/nkit/npm}"
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --prefer-offline
fi

npm test
npm run test:vm
