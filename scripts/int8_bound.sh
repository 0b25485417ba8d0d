#!/usr/bin/env bash
# How much faster int8 can make the whole network in tract on this machine, from where each
# stage's time goes (QUANTIZATION.md, "How far int8 can go here"). Takes about 30 seconds once built.
#   scripts/int8_bound.sh [BUNDLE] [K]     (default models/demo, gated blocks at K=96 tokens)
# Best of three runs of `stageprof` per stage graph, each node put in a group by
# STAGEPROF_GROUPS=1 (linear, attention, softmax, gelu, norm, int8 glue, other).
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=${1:-models/demo}
K=${2:-96}
cargo build --workspace --examples --quiet
PROF=target/debug/examples/stageprof
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
for run in 1 2 3; do
  for p in f32 int8; do
    for k in "$K" 256; do
      for s in qkv_3 block_3; do
        echo "## $p $k $s"
        STAGEPROF_GROUPS=1 $PROF "$BUNDLE/$p/$s.onnx" "$k"
      done
    done
  done
  # Embed, gates and head are f32 in both variants; the runtime optimises them for their
  # exact size (all 256 tokens, 16 grid rows of the head).
  for s in embed:256 gate_3:256 head:16; do
    echo "## f32 ${s#*:} ${s%:*}"
    STAGEPROF_CONCRETE=1 STAGEPROF_GROUPS=1 $PROF "$BUNDLE/f32/${s%:*}.onnx" "${s#*:}"
  done
done > "$OUT"
python3 - "$OUT" "$K" "$BUNDLE" <<'EOF'
import collections, json, re, sys
path, k, bundle = sys.argv[1], sys.argv[2], sys.argv[3]
runs = collections.defaultdict(list)
for line in open(path):
    m = re.match(r"## (\S+) (\d+) (\S+)", line)
    if m:
        cur = collections.defaultdict(float)
        runs[m.groups()].append(cur)
        continue
    m = re.match(r"\s+([\d.]+) ms\s+([a-z0-9 ]+)$", line)
    if m:
        cur[m.group(2)] += float(m.group(1))
# Best of the runs, per group.
best = {key: {g: min(r.get(g, 0.0) for r in rs) for g in set().union(*rs)} for key, rs in runs.items()}
def stage(p, tokens, *names):
    out = collections.defaultdict(float)
    for n in names:
        for g, t in best[(p, str(tokens), n)].items():
            out[g] += t
    return out
cfg = json.load(open(f"{bundle}/manifest.json"))["config"]
ungated, gated = cfg["first_gated"], cfg["depth"] - cfg["first_gated"]
f32 = {"block K=256": stage("f32", 256, "qkv_3", "block_3"), f"block K={k}": stage("f32", k, "qkv_3", "block_3"),
       "embed": stage("f32", 256, "embed"), "gate": stage("f32", 256, "gate_3"), "head": stage("f32", 16, "head")}
int8 = {"block K=256": stage("int8", 256, "qkv_3", "block_3"), f"block K={k}": stage("int8", k, "qkv_3", "block_3")}
count = {"block K=256": ungated, f"block K={k}": gated, "embed": 1, "gate": gated, "head": 1}
# The int8 graphs' linear layers against the f32 ones: what tract's int8 kernels give here.
ratio = sum(f32[b]["linear"] for b in int8) / sum(int8[b]["linear"] for b in int8)
print(f"{'stage':<14}{'f32 ms':>8}{'int8 ms':>9}{'  f32: linear':>14}{'attention':>10}{'rest':>7}{'bound ms':>10}")
tot = collections.defaultdict(float)
for s, n in count.items():
    f = f32[s]
    q = sum(int8[s].values()) if s in int8 else sum(f.values())
    mm = f.get("linear", 0.0) + f.get("attention", 0.0)
    rest = sum(f.values()) - mm
    # Every matmul int8 at the measured ratio, no glue, the rest as it is in f32.
    bound = rest + mm / ratio
    print(f"{s:<14}{sum(f.values()):>8.3f}{q:>9.3f}{f.get('linear', 0):>14.3f}{f.get('attention', 0):>10.3f}{rest:>7.3f}{bound:>10.3f}")
    tot["f32"] += n * sum(f.values()); tot["int8"] += n * q; tot["bound"] += n * bound
    tot["linear"] += n * f.get("linear", 0.0); tot["mm"] += n * mm
print(f"\nint8 linear layers against f32 ones: {ratio:.2f}x")
print(f"whole network ({ungated} blocks at 256 tokens, {gated} at {k}, {gated} gates, embed, head):")
print(f"  f32 {tot['f32']:.2f} ms, int8 as shipped {tot['int8']:.2f} ms ({tot['f32'] / tot['int8']:.2f}x)")
print(f"  every matmul int8 at {ratio:.2f}x with no glue: {tot['bound']:.2f} ms ({tot['f32'] / tot['bound']:.2f}x)")
# Ceilings: the linear layers alone at 4x f32 (a VNNI or SDOT instruction does four int8
# multiply-adds per f32 lane, the most int8 can give per instruction) or at no cost at all,
# with attention and the rest as they are; and every matmul, attention's too, at 4x.
for what, part, speed in [
    ("every linear layer at 4x f32, attention and the rest f32", "linear", 4.0),
    ("every linear layer free, attention and the rest f32", "linear", float("inf")),
    ("every matmul at 4x f32, the rest f32", "mm", 4.0),
]:
    t = tot["f32"] - tot[part] + tot[part] / speed
    print(f"  {what}: {t:.2f} ms ({tot['f32'] / t:.2f}x)")
EOF
