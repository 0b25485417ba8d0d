#!/usr/bin/env bash
# Trains the demo model's successor, a run longer than one working session, on any machine.
#
#   scripts/train_next.sh            start or resume the run: the dense phase in runs/next, then
#                                    the gated phase in runs/next-gated (in the background is up
#                                    to you: it prints progress and checkpoints every 50 steps)
#   scripts/train_next.sh snapshot   copy each phase's latest checkpoint into models/next-ckpt
#                                    (and models/next-ckpt/gated), to commit, so a fresh clone
#                                    resumes where this machine stopped
#
#   RUN=camera SCENES=camera DENSE_STEPS=4000 scripts/train_next.sh
#                                    the same two phases on camera-style scenes (natural-image
#                                    backgrounds, perspective, blur, noise, JPEG, empty scenes), in
#                                    runs/camera and runs/camera-gated, snapshots in
#                                    models/camera-ckpt
#
# runs/ is not in git; models/next-ckpt is, while a run is under way. A fresh clone resumes
# from the snapshot (the optimiser's moments start again from zero, a small cost every resume
# already pays).
set -euo pipefail
cd "$(dirname "$0")/.."
run=${RUN:-next}
dense=runs/$run
gated=runs/$run-gated
snap=models/$run-ckpt
scenes=(--scenes "${SCENES:-plain}")
bin=${SVIT_EXPORT:-target/debug/svit-export}

if [ "${1:-}" = snapshot ]; then
  for pair in "$dense:$snap" "$gated:$snap/gated"; do
    run=${pair%%:*} to=${pair#*:}
    [ -f "$run/state.json" ] || continue
    mkdir -p "$to"
    for f in model.safetensors dense.safetensors state.json val.jsonl; do
      [ -f "$run/$f" ] && cp "$run/$f" "$to/$f"
    done
    echo "$to: $(grep '"step"' "$to/state.json")"
  done
  exit 0
fi

[ -x "$bin" ] || cargo build --workspace
[ -f data/val/instances.json ] || "$bin" data --out data/val --scenes 1000 --seed 9000

# One phase: resumed where its run dir (or, on a fresh clone, its snapshot) left off, else
# started from the given weights and seed.
phase() { # run dir, snapshot dir, start weights, seed, train flags...
  local run=$1 from_snap=$2 weights=$3 seed=$4
  shift 4
  if [ ! -f "$run/state.json" ] && [ -f "$from_snap/state.json" ]; then
    mkdir -p "$run"
    cp "$from_snap"/*.* "$run"/
    echo "resuming $run from the snapshot in $from_snap"
  fi
  local start=(--from "$weights" --seed "$seed")
  [ -f "$run/state.json" ] && start=(--resume)
  "$bin" train --out "$run" "${start[@]}" "${scenes[@]}" "$@" \
    --val-coco data/val/instances.json --val-every 500 --val-limit 200 --ckpt-every 50
}

# Dense phase: continues the shipped model's dense weights with a fresh, long schedule (from
# there it gained faster than a run from random weights did). DENSE_STEPS=N ends it at step N
# instead of 10000 (set it once the run's last checkpoint is at step N: the learning-rate
# schedule is computed from it; train then records that checkpoint as dense.safetensors).
# The shipped model came from this script, with DENSE_STEPS=7000, from the weights before it.
phase "$dense" "$snap" models/demo-ckpt/dense.safetensors 5 \
  --dense-steps "${DENSE_STEPS:-10000}" --gated-steps 0 --lr 3e-4

# Gated phase, from the dense phase's final weights, with the keep targets the shipped model
# was trained towards (README "The demo bundle"). It distils the final tokens from the dense
# model (about +0.5 box and mask AP at the same kept fraction after 400 gated steps). Export
# it with --gate-calib: at threshold 0.5 the gates otherwise keep other fractions than they
# were trained towards; `scripts/tune_gates.sh runs/next-gated` picks the targets and floor on
# the tuning scenes.
phase "$gated" "$snap/gated" "$dense/dense.safetensors" 6 \
  --dense-steps 0 --gated-steps 1000 --lr 3e-4 --distill 1 --keep-targets 0.4,0.35,0.3,0.3,0.25,0.25
