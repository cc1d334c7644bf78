#!/usr/bin/env bash
# Runs every fuzz target: nkit-cni's JSON scanner under libFuzzer with ASan + UBSan (seeded from
# test/fixtures/cni/fuzz-corpus and the shim's regression inputs in test/fixtures/cni/shim-inputs),
# then the TypeScript targets in test/fuzz under fast-check (config loader, CNI endpoint requests,
# ttrpc framing and envelopes, service definitions, NRI messages).
#   scripts/fuzz.sh                  short profile (CI): 30 s of libFuzzer, 2,000 cases per property
#   scripts/fuzz.sh --full           a million cases each (libFuzzer: -runs=1000000)
#   scripts/fuzz.sh --update-corpus  after the run, merge what libFuzzer found into the kept corpus
# A crasher is kept in /var/tmp/nkit-fuzz-crashes and named in the output: add it to
# test/fixtures/cni/shim-inputs (every file there runs through the sanitizer build of nkit-cni).
set -euo pipefail
cd "$(dirname "$0")/.."

full=0
update=0
for arg in "$@"; do
  case $arg in
    --full) full=1 ;;
    --update-corpus) update=1 ;;
    *) echo "unknown argument: $arg (--full, --update-corpus)" >&2; exit 2 ;;
  esac
done

log() { printf '[fuzz] %s\n' "$*" >&2; }
CORPUS=test/fixtures/cni/fuzz-corpus
CRASHES=/var/tmp/nkit-fuzz-crashes
make -s -C native/cni fuzz
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/new" "$CRASHES"
if ((full)); then budget=(-runs=1000000); else budget=(-max_total_time=30); fi
log "nkit-cni JSON scanner (libFuzzer, ASan+UBSan): ${budget[*]}"
if ! native/cni/build/fuzz-json -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$CRASHES/" "${budget[@]}" "$work/new" "$CORPUS" test/fixtures/cni/shim-inputs \
  2>"$work/libfuzzer.log"; then
  tail -n 40 "$work/libfuzzer.log" >&2
  log "FAILED: crasher(s) in $CRASHES; add them to test/fixtures/cni/shim-inputs as regression cases"
  exit 1
fi
grep -E '^stat::number_of_executed_units|^Done' "$work/libfuzzer.log" >&2 || true
if ((update)); then
  native/cni/build/fuzz-json -merge=1 -max_len=65536 "$CORPUS" "$work/new" 2>/dev/null
  log "corpus: $(ls "$CORPUS" | wc -l) inputs in $CORPUS"
fi

runs=$((full ? 1000000 : 2000))
log "TypeScript targets (fast-check): $runs cases per property"
NKIT_FUZZ_RUNS=$runs npx vitest run --project fuzz
