#!/usr/bin/env bash
# What pushing a bundle to a running board costs: one svit-host (--http, recording) and one
# svit-edge (--store, synthetic camera paced at 10 fps, one thread) on loopback, then
# `svit-host push BUNDLE`. Reports the push's wall time (request to "switched"), the frame gaps
# (capture to capture) around the switch against the median, and the line time the bundle's
# bytes need at least at 921600 baud (arithmetic, 10 bits a byte, framing not counted: a
# pseudo-terminal has no baud rate to measure). Writes runs/bench/push.json.
#
#   scripts/push_bench.sh [BUNDLE]     (default models/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=${1:-models/demo}
bin=${CARGO_TARGET_DIR:-target}/debug
cargo build -q --workspace --bins
dir=runs/push-bench
rm -rf "$dir" && mkdir -p "$dir" runs/bench
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
web=127.0.0.1:$(free_port)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
"$bin/svit-host" listen "127.0.0.1:$port" --quiet --http "$web" --record "$dir/push.svrec" \
  > /dev/null 2> "$dir/host.log" &
host=$!
pids+=($host)
"$bin/svit-edge" run --camera synthetic --fps 10 --threads 1 --name bench --store "$dir/store" \
  --connect "127.0.0.1:$port" > /dev/null 2> "$dir/edge.log" &
pids+=($!)
python3 - "$web" <<'PY'
import json, sys, time, urllib.request
for _ in range(300):
    try:
        if any(b["connected"] for b in json.load(urllib.request.urlopen(f"http://{sys.argv[1]}/api/boards"))):
            break
    except OSError:
        pass
    time.sleep(0.2)
PY
sleep 3
t0=$(date +%s.%N)
"$bin/svit-host" push "$bundle" --board bench --api "http://$web" > "$dir/push.jsonl" 2> "$dir/push.log"
t1=$(date +%s.%N)
sleep 3
kill -TERM "$host"; wait "$host" || true
"$bin/svit-host" report "$dir/push.svrec" --out "$dir/report" > /dev/null
python3 - "$dir" "$t0" "$t1" <<'PY'
import csv, json, statistics, sys
d, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
st = json.loads(open(f"{d}/push.jsonl").read().splitlines()[-1])
assert st["state"] == "switched", st
rows = sorted((int(r["seq"]), int(r["capture_us"])) for r in csv.DictReader(open(f"{d}/report/frames.csv")))
gaps = {b[0]: (b[1] - a[1]) / 1000 for a, b in zip(rows, rows[1:]) if b[0] == a[0] + 1}
seq = st["seq"]
around = [gaps[s] for s in range(seq - 5, seq + 6) if s in gaps]
size = st["size"]
out = {"bundle": st["bundle"], "bytes": size, "push_seconds": round(t1 - t0, 2),
       "switch_seq": seq, "frames": len(rows), "missing_seqs": rows[-1][0] - rows[0][0] + 1 - len(rows),
       "gap_median_ms": round(statistics.median(gaps.values()), 1),
       "gap_at_switch_ms": round(gaps.get(seq, float("nan")), 1),
       "gap_max_around_switch_ms": round(max(around), 1),
       "serial_921600_seconds_at_least": round(size * 10 / 921600, 1)}
json.dump(out, open("runs/bench/push.json", "w"), indent=1)
print(json.dumps(out))
PY
