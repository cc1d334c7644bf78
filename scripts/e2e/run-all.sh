#!/usr/bin/env bash
# CI entry point for the e2e suites: prepares both lanes (scripts/e2e/setup.sh, cached under
# $NKIT_E2E_CACHE, default /var/cache/nkit/e2e) and runs the e2e vitest project once per lane.
#
#   scripts/e2e/run-all.sh [--lanes=1.7,2] [vitest args...]
#
# Every lane runs even when an earlier one fails; the exit status is non-zero if any lane failed.
set -uo pipefail

log() { printf '[e2e] %s\n' "$*" >&2; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LANES=1.7,2
ARGS=()
for arg in "$@"; do
  case "$arg" in
    --lanes=*) LANES=${arg#--lanes=} ;;
    *) ARGS+=("$arg") ;;
  esac
done

setup_lane=all
[[ $LANES == 1.7 ]] && setup_lane=1.7
[[ $LANES == 2 ]] && setup_lane=2
t0=$SECONDS
bash "$REPO/scripts/e2e/setup.sh" --lane="$setup_lane" || { log "setup failed"; exit 1; }
log "setup took $((SECONDS - t0)) s"

cd "$REPO" || exit 1
declare -A result
rc=0
IFS=, read -ra lanes <<<"$LANES"
for lane in "${lanes[@]}"; do
  log "lane $lane"
  t=$SECONDS
  if NKIT_E2E_CONTAINERD=$lane npx vitest run --project e2e "${ARGS[@]}"; then
    result[$lane]="passed ($((SECONDS - t)) s)"
  else
    result[$lane]="FAILED ($((SECONDS - t)) s)"
    rc=1
  fi
done
for lane in "${lanes[@]}"; do log "containerd $lane: ${result[$lane]}"; done
exit "$rc"
