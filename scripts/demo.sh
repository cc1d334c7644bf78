#!/usr/bin/env bash
# Quickstart: prepares this Debian 12 host, builds nkit, and runs the demo (two pods wired onto
# the BPF datapath, traffic between them, counters), then removes everything it created.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-host.sh
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund
fi
npm run build --silent
exec node dist/cli/main.js demo "$@"
