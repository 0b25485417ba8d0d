#!/usr/bin/env bash
# Chooses a bundle's gate calibration and floor on the tuning scenes (seed 8000), never on the
# validation scenes that BENCHMARKS.md reports (README, "The demo bundle").
#
#   scripts/tune_gates.sh CHECKPOINT [CANDIDATE...]
#
# A candidate is FLOOR:TARGETS: `16:0.35,0.3,0.25,0.25,0.2,0.2` calibrates each gate to keep
# that fraction at threshold 0.5, `16:trained` to the targets it was trained towards, `16:none`
# leaves the gates as trained. FLOOR is `--min-keep` (`16`, or `16..64`). Default candidates:
# none, trained, and the trained targets less 0.05. Each one is exported (f32 only), evaluated
# dense and at the bundle's default threshold (0.5), and becomes a row of the table at the end.
# About 2 minutes a candidate on 2 cores; TUNE_LIMIT=N evaluates only the first N scenes.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n 2,13p "$0"; exit 2; }
ckpt=$1
shift
bin=${SVIT_EXPORT:-target/debug/svit-export}
[ -x "$bin" ] || cargo build --workspace
[ -f "$ckpt/state.json" ] || { echo "tune_gates: $ckpt/state.json not found (a train --out directory?)" >&2; exit 2; }
[ -f data/calib/instances.json ] || "$bin" data --out data/calib --scenes 256 --seed 7000
[ -f data/tune/instances.json ] || "$bin" data --out data/tune --scenes 500 --seed 8000

cands=("$@")
if [ ${#cands[@]} -eq 0 ]; then
  trained=$(python3 -c 'import json,sys; print(",".join(str(t) for t in json.load(open(sys.argv[1]))["plan"]["config"]["keep_targets"]))' "$ckpt/state.json")
  lower=$(python3 -c 'import sys; print(",".join(str(round(max(float(t) - 0.05, 0.05), 3)) for t in sys.argv[1].split(",")))' "$trained")
  cands=("16:none" "16:trained" "16:$lower")
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rows=()
for c in "${cands[@]}"; do
  floor=${c%%:*} targets=${c#*:}
  calib=()
  case "$targets" in
    none) ;;
    trained) calib=(--gate-calib data/calib) ;;
    *) calib=(--gate-calib data/calib --gate-targets "$targets") ;;
  esac
  echo "== floor $floor, gate calibration: $targets" >&2
  rm -rf "$work/b" "$work/eval"
  "$bin" bundle --checkpoint "$ckpt" --out "$work/b" --min-keep "$floor" "${calib[@]}" >&2
  # The bundle's own default threshold: the one the board runs.
  thr=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["defaults"]["threshold"])' "$work/b/manifest.json")
  "$bin" eval --bundle "$work/b" --coco data/tune/instances.json --images data/tune \
    --thresholds "0,$thr" ${TUNE_LIMIT:+--limit "$TUNE_LIMIT"} --json "$work/eval/eval.json" >/dev/null
  rows+=("$(python3 - "$work/eval/eval.json" "$targets" "$floor" "$thr" <<'PY'
import json, sys
runs = {round(r["threshold"], 2): r for r in json.load(open(sys.argv[1]))["runs"]}
d, p = runs[0.0], runs[round(float(sys.argv[4]), 2)]
print(f"| {sys.argv[2]} | {sys.argv[3]} | {d['box_ap']:.2f}/{d['mask_ap']:.2f} "
      f"| {p['box_ap']:.2f}/{p['mask_ap']:.2f} | {p['kept_fraction']:.3f} |")
PY
)")
done
echo
echo "Tuning scenes (data/tune${TUNE_LIMIT:+, first $TUNE_LIMIT}), $ckpt:"
echo
echo "| gate calibration | floor | dense box/mask AP | threshold $thr box/mask AP | kept fraction |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
