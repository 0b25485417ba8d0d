#!/usr/bin/env bash
# Regenerates BENCHMARKS.md from measurements on this machine. Takes about 45 minutes on 2 cores (30 of them the soak).
#   scripts/benchmarks.sh [BUNDLE]        (default models/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=${1:-models/demo}
OUT=runs/bench
mkdir -p "$OUT"
# The reference checks and the peer benchmark need these; fail now rather than 10 minutes in.
python3 -c 'import pycocotools, onnxruntime, onnx, numpy' 2>/dev/null || {
  echo "benchmarks.sh needs Python modules pycocotools, onnxruntime, onnx and numpy:" >&2
  echo "  python3 -m pip install pycocotools onnxruntime onnx numpy" >&2
  exit 1
}
cargo build --workspace --quiet
EXPORT=target/debug/svit-export
EDGE=target/debug/svit-edge

# Held-out scenes: seed 9000 is never used for training (training uses seed 1).
[ -f data/val/instances.json ] || $EXPORT data --out data/val --scenes 1000 --seed 9000

# Accuracy of the shipped bundle, dense (threshold 0) and pruned, as the board runs it.
$EXPORT eval --bundle "$BUNDLE" --coco data/val/instances.json --images data/val \
  --thresholds 0,0.3,0.5,0.7 --json "$OUT/eval.json"

# Every precision of the bundle as the runtime runs it, on the same 200 scenes (x86 emulates
# f16, slowly; that is why not all 1000).
rm -rf "$OUT/precision"
PRECISIONS=$(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["precisions"]))' "$BUNDLE/manifest.json")
for p in $PRECISIONS; do
  mkdir -p "$OUT/precision/$p"
  $EXPORT eval --bundle "$BUNDLE" --coco data/val/instances.json --images data/val --limit 200 \
    --precision $p --thresholds 0,0.5 --json "$OUT/precision/$p/eval.json"
done

# The model as it was after dense training, before gates were trained.
if [ -f models/demo-ckpt/dense.safetensors ]; then
  rm -rf "$OUT/dense-bundle" "$OUT/dense-trained"
  mkdir -p "$OUT/ckpt-dense" && cp models/demo-ckpt/dense.safetensors models/demo-ckpt/state.json "$OUT/ckpt-dense/"
  $EXPORT bundle --checkpoint "$OUT/ckpt-dense" --dense --out "$OUT/dense-bundle"
  $EXPORT eval --bundle "$OUT/dense-bundle" --coco data/val/instances.json --images data/val \
    --thresholds 0 --json "$OUT/dense-trained/eval.json"
fi

# The default threshold against the dense-trained model, on the tuning scenes (seed 8000).
if [ -f models/demo-ckpt/dense.safetensors ]; then
  SVIT_EXPORT=$EXPORT scripts/tune_threshold.sh "$BUNDLE" models/demo-ckpt 2>/dev/null > "$OUT/tune_threshold.txt"
fi

# Checked against the reference implementations (pycocotools, onnxruntime).
python3 scripts/coco_check.py eval --coco data/val/instances.json --eval-json "$OUT/eval.json" > "$OUT/coco_check.txt"
$EXPORT reference --bundle "$BUNDLE" --image data/val/000000.png --out "$OUT/reference"
python3 scripts/ort_check.py "$BUNDLE" "$OUT/reference" > "$OUT/ort_check.txt"

# Latency, pruned vs dense, same frames, one run.
# (f16 is left out here: x86 has no fp16 arithmetic, so its timings would mean nothing.)
BENCH_PRECISIONS=f32
case " $PRECISIONS " in *" int8 "*) BENCH_PRECISIONS=f32,int8 ;; esac
$EDGE bench --bundle "$BUNDLE" --frames 200 --warmup 20 --thresholds 0,0.3,0.5,0.7 --threads 1,2 \
  --precision "$BENCH_PRECISIONS" --json "$OUT/bench.json"

# The engines in one run: tract and onnxruntime on the stage graphs (onnxruntime's int8 is its
# own quantizer's form, ort-int8/, where the bundle has it), dense and at the bundle's
# threshold, and the peer a user would otherwise pick: onnxruntime running the whole dense.onnx,
# f32 and its own int8 version. Accuracy of onnxruntime's pass on the first 200 scenes.
python3 scripts/ort_quantize.py dense "$BUNDLE" "$OUT/dense_int8.onnx" > /dev/null
$EDGE bench --bundle "$BUNDLE" --frames 200 --warmup 20 --threads 1,2 --engine tract,onnxruntime \
  --precision "$BENCH_PRECISIONS" --dense-int8 "$OUT/dense_int8.onnx" --json "$OUT/engines.json"
rm -rf "$OUT/engines" && mkdir -p "$OUT/engines"
for p in ${BENCH_PRECISIONS//,/ }; do
  for e in tract onnxruntime; do
    $EXPORT eval --bundle "$BUNDLE" --coco data/val/instances.json --images data/val --limit 200 \
      --engine $e --precision $p --thresholds 0,"$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["defaults"]["threshold"])' "$BUNDLE/manifest.json")" \
      --json "$OUT/engines/$e-$p/eval.json" > /dev/null
  done
done

# What a latency budget costs: the controller over 200 scenes at multiples of the default
# pruned p50 (f32, one thread), each frame's time predicted from the bench just measured.
THR=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["defaults"]["threshold"])' "$BUNDLE/manifest.json")
P50=$(python3 -c 'import json,sys; b=json.load(open(sys.argv[1])); print(next(c["total_ms"]["p50"] for c in b["configs"] if c["precision"] == "f32" and c["threads"] == 1 and c["mode"] == "pruned" and abs(c["threshold"] - float(sys.argv[2])) < 1e-6))' "$OUT/bench.json" "$THR")
BUDGETS=$(python3 -c "print(','.join(f'{$P50 * x:.2f}' for x in (0.75, 0.9, 1.0, 1.25)))")
rm -rf "$OUT/budget" && mkdir -p "$OUT/budget"
$EXPORT eval --bundle "$BUNDLE" --coco data/val/instances.json --images data/val --limit 200 \
  --precision f32 --thresholds "$THR" --budget-ms "$BUDGETS" --latency-model "$OUT/bench.json" \
  --json "$OUT/budget/eval.json"
python3 - "$OUT/budget/eval.json" "$P50" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1])); doc["default_p50_ms"] = float(sys.argv[2])
json.dump(doc, open(sys.argv[1], "w"), indent=1)
PY

# Pruning harder: the same bundle with min_keep 16 (1/16 of the tokens) instead of its default
# (nothing to compare when that is its default).
rm -rf "$OUT/min-keep-16"
FLOOR=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["defaults"]["min_keep"])' "$BUNDLE/manifest.json")
if [ "$FLOOR" != 16 ] && [ "$FLOOR" != "[16, 16]" ]; then
  $EXPORT eval --bundle "$BUNDLE" --coco data/val/instances.json --images data/val \
    --thresholds 0.5 --min-keep 16 --json "$OUT/min-keep-16/eval.json"
  $EDGE bench --bundle "$BUNDLE" --frames 200 --warmup 20 --thresholds 0,0.5 --threads 1 \
    --precision "$BENCH_PRECISIONS" --min-keep 16 --json "$OUT/min-keep-16/bench.json"
fi

# The floor as one number for every gated block (96, the demo bundle's default before the
# rising floor), for comparison with the bundle's default.
$EXPORT eval --bundle "$BUNDLE" --coco data/val/instances.json --images data/val \
  --thresholds 0.5 --min-keep 96 --json "$OUT/min-keep-96/eval.json"

# The whole pipeline on this machine: two boards (ArduCAM driver on the simulated module, and
# the synthetic camera) paced at 10 fps, so the link is free; per-stage times from the recording.
target/debug/svit-host demo --bundle "$BUNDLE" --seconds 30 --out "$OUT/pipeline" --http off > /dev/null

# The keyed link under faults for 30 minutes (scripts/soak.sh says what it does).
scripts/soak.sh 30 > /dev/null && cp runs/soak/soak.json "$OUT/soak.json"

# What a key costs per message (seal and open against plain encode and decode).
cargo run -q -p svit-e2e --example seal_cost > "$OUT/seal_cost.json"

# Host: 16 simulated boards x 30 frames/s.
scripts/host_load.sh > /dev/null
scripts/web_load.sh > /dev/null
scripts/mqtt_load.sh > /dev/null

# Pushing the bundle to a running board: time to switch, frame gaps around the switch.
scripts/push_bench.sh > /dev/null

python3 scripts/render_benchmarks.py "$OUT" > BENCHMARKS.md
echo "wrote BENCHMARKS.md"
