#!/usr/bin/env bash
# Trains the demo model's successor, a run longer than one working session, on any machine.
#
#   scripts/train_next.sh            start or resume the run in runs/next (in the background is
#                                    up to you: it prints progress and checkpoints every 50 steps)
#   scripts/train_next.sh snapshot   copy the run's latest checkpoint into models/next-ckpt, to
#                                    commit, so a fresh clone resumes where this machine stopped
#
# runs/ is not in git; models/next-ckpt is. A fresh clone resumes from the snapshot (the
# optimiser's moments start again from zero, a small cost every resume already pays).
set -euo pipefail
cd "$(dirname "$0")/.."
run=runs/next
snap=models/next-ckpt
bin=${SVIT_EXPORT:-target/debug/svit-export}

if [ "${1:-}" = snapshot ]; then
  [ -f "$run/state.json" ] || { echo "no run in $run to snapshot" >&2; exit 1; }
  mkdir -p "$snap"
  for f in model.safetensors dense.safetensors state.json val.jsonl; do
    [ -f "$run/$f" ] && cp "$run/$f" "$snap/$f"
  done
  grep '"step"' "$snap/state.json"
  exit 0
fi

[ -x "$bin" ] || cargo build --workspace
[ -f data/val/instances.json ] || "$bin" data --out data/val --scenes 1000 --seed 9000

if [ ! -f "$run/state.json" ] && [ -f "$snap/state.json" ]; then
  mkdir -p "$run"
  cp "$snap"/* "$run"/
  echo "resuming from the snapshot in $snap"
fi
val=(--val-coco data/val/instances.json --val-every 500 --val-limit 200)
# The gated phase distils the final tokens from the dense model (about +0.5 box and mask AP at
# the same kept fraction after 400 gated steps; README "The demo bundle").
plan=(--dense-steps 10000 --gated-steps 1000 --lr 3e-4 --distill 1 --ckpt-every 50)
if [ -f "$run/state.json" ]; then
  exec "$bin" train --out "$run" --resume "${plan[@]}" "${val[@]}"
fi
# A new run continues the shipped model's dense weights with a fresh, long schedule: from there
# it gained faster than a run from random weights did.
exec "$bin" train --out "$run" --from models/demo-ckpt/dense.safetensors --seed 5 "${plan[@]}" "${val[@]}"
