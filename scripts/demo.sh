#!/usr/bin/env bash
# Quickstart: prepares this Debian 12 host (packages, containerd 1.7.24 with NRI, local pause and
# busybox images), builds nkit, and runs the demo: a private containerd whose CRI pods are wired by
# nkitd (nkit-cni + NRI), two pods talking over IPv4 and IPv6, and what nkit saw. Everything it
# starts and creates is removed at the end. `scripts/demo.sh --datapath` runs the smaller demo
# that wires two network namespaces with the datapath alone (no containerd).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-host.sh
bash scripts/e2e/setup.sh --lane=1.7
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund
fi
npm run build --silent
if [[ ${1:-} == --datapath ]]; then
  exec node dist/cli/main.js demo
fi
npx tsc -p tsconfig.demo.json
exec node demo/dist/demo/containerd.js
