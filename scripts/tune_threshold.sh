#!/usr/bin/env bash
# Chooses a bundle's default pruning threshold on the tuning scenes (seed 8000, never the
# validation scenes BENCHMARKS.md reports): the most pruning (highest threshold) whose box AP and
# mask AP are both within MAX_DROP (default 0.3) of the dense-trained model, the model a user
# would otherwise ship (the checkpoint's dense.safetensors, exported dense).
#
#   scripts/tune_threshold.sh BUNDLE CHECKPOINT [THRESHOLDS]      print the table and the choice
#   APPLY=1 scripts/tune_threshold.sh ...                         also write it into BUNDLE's manifest
#
# THRESHOLDS default 0.2,0.25,0.3,0.35,0.4,0.45,0.5. About 5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,10p "$0"; exit 2; }
bundle=$1 ckpt=$2 thresholds=${3:-0.2,0.25,0.3,0.35,0.4,0.45,0.5}
bin=${SVIT_EXPORT:-target/debug/svit-export}
[ -x "$bin" ] || cargo build --workspace
[ -f "$ckpt/dense.safetensors" ] || { echo "tune_threshold: $ckpt/dense.safetensors not found" >&2; exit 2; }
[ -f data/tune/instances.json ] || "$bin" data --out data/tune --scenes 500 --seed 8000

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/ckpt"
cp "$ckpt/dense.safetensors" "$ckpt/state.json" "$work/ckpt/"
echo "== the dense-trained model" >&2
"$bin" bundle --checkpoint "$work/ckpt" --dense --out "$work/dense" >&2
"$bin" eval --bundle "$work/dense" --coco data/tune/instances.json --images data/tune \
  --thresholds 0 --json "$work/dense-eval/eval.json" >/dev/null
echo "== $bundle at $thresholds" >&2
"$bin" eval --bundle "$bundle" --coco data/tune/instances.json --images data/tune \
  --thresholds "$thresholds" --json "$work/eval/eval.json" >/dev/null
python3 - "$work/dense-eval/eval.json" "$work/eval/eval.json" "${MAX_DROP:-0.3}" "$bundle" "${APPLY:-0}" <<'PY'
import json, sys
dense = json.load(open(sys.argv[1]))["runs"][0]
runs = json.load(open(sys.argv[2]))["runs"]
drop, bundle, apply = float(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
print(f"dense-trained: box AP {dense['box_ap']:.2f}, mask AP {dense['mask_ap']:.2f} (500 tuning scenes)")
print(f"{'threshold':>9} {'box AP':>7} {'mask AP':>7} {'box vs dt':>9} {'mask vs dt':>10} {'kept':>6}")
ok = []
for r in runs:
    db, dm = r["box_ap"] - dense["box_ap"], r["mask_ap"] - dense["mask_ap"]
    within = db >= -drop and dm >= -drop
    if within:
        ok.append(r)
    print(f"{r['threshold']:>9.2f} {r['box_ap']:>7.2f} {r['mask_ap']:>7.2f} {db:>+9.2f} {dm:>+10.2f} {r['kept_fraction']:>6.3f}{'' if within else '  (too lossy)'}")
for d in sorted({drop, 0.5}):
    within = [r for r in runs if r["box_ap"] - dense["box_ap"] >= -d and r["mask_ap"] - dense["mask_ap"] >= -d]
    best = max(within, key=lambda r: r["threshold"], default=None)
    print(f"most pruning within {d} AP: " + (f"threshold {best['threshold']:.2f} (kept {best['kept_fraction']:.3f})" if best else "none"))
if not ok:
    print(f"no threshold is within {drop} AP of the dense-trained model")
    sys.exit(1 if apply else 0)
best = max(ok, key=lambda r: r["threshold"])
print(f"choice: threshold {best['threshold']:.2f} (kept {best['kept_fraction']:.3f})")
if apply:
    path = f"{bundle}/manifest.json"
    m = json.load(open(path))
    m["defaults"]["threshold"] = round(best["threshold"], 4)
    json.dump(m, open(path, "w"), indent=2)
    print(f"wrote it into {path}")
PY
