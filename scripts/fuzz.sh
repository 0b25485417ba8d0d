#!/usr/bin/env bash
# Fuzzes every target in fuzz/fuzz_targets for SECONDS each (default 60) with cargo-fuzz on
# nightly (installed if missing), growing fuzz/corpus/NAME with what it finds, and ends with
# the line `fuzz: N targets, M executions, K crashes`. A crash leaves its input in
# fuzz/artifacts/NAME/: once fixed, copy it into fuzz/corpus/NAME/, where the stable test suite
# (tests/tests/fuzz_corpus.rs) replays it. `scripts/fuzz.sh 30 sealed_session` runs one target.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
only=${2:-}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# The fuzz build has its own flags (sanitizer, coverage): keep it apart from the product's.
unset CARGO_TARGET_DIR
targets=0 execs=0 crashes=0
for f in fuzz/fuzz_targets/*.rs; do
  t=$(basename "$f" .rs)
  [ -n "$only" ] && [ "$t" != "$only" ] && continue
  targets=$((targets + 1))
  mkdir -p "fuzz/corpus/$t"
  log=$(mktemp)
  if ! cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- -max_total_time="$secs" \
      -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    crashes=$((crashes + 1))
    tail -40 "$log"
  fi
  n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  execs=$((execs + ${n:-0}))
  echo "$t: ${n:-0} executions"
  rm -f "$log"
done
echo "fuzz: $targets targets, $execs executions, $crashes crashes"
