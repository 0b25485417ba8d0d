#!/usr/bin/env bash
# A fault soak of the keyed link: one svit-host (--key, recording) and four svit-edge boards
# (--key, synthetic camera, 5 frames/s each, one thread) through svit-faultproxy (added latency,
# a bandwidth cap, a flipped bit per 400 kB, stalls, dropped and half-open connections), the
# host killed and restarted about every 40 s (SIGKILL and SIGTERM in turn, a new recording each
# time). Afterwards every recorded frame is checked against a clean run of the same camera and
# model, and the soak prints (and writes to runs/soak/soak.json): frames sent, recorded, lost
# (each a sequence gap), duplicated (must be 0), altered frames recorded (must be 0),
# integrity failures the host caught, reconnect time p50/p99, each process's resident memory
# and open files at start and end.
#
#   scripts/soak.sh MINUTES     (default 2; BENCHMARKS.md uses 30)
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-2}
secs=$(python3 -c "print(int(float('$minutes') * 60))")
bin=${CARGO_TARGET_DIR:-target}/debug
cargo build -q --workspace --bins
dir=runs/soak
rm -rf "$dir" && mkdir -p "$dir"
head -c 32 /dev/urandom > "$dir/key"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hp=$(free_port)
pp=$(free_port)
mem() { # PID -> "rss_kb fds"
  echo "$(awk '/VmRSS/ {print $2}' /proc/"$1"/status 2>/dev/null || echo 0) $(ls /proc/"$1"/fd 2>/dev/null | wc -l)"
}

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT

"$bin/svit-faultproxy" "$pp" "$hp" $((secs + 20)) 7 > "$dir/proxy.json" &
proxy=$!
pids+=($!)

start_host() { # N
  "$bin/svit-host" listen "127.0.0.1:$hp" --key "$dir/key" --quiet \
    --record "$dir/rec-$1.svrec" > /dev/null 2> "$dir/host-$1.log" &
  host=$!
}
start_host 0
sleep 0.5
edges=()
for b in 0 1 2 3; do
  "$bin/svit-edge" run --camera synthetic --name "soak-$b" --fps 5 --threads 1 \
    --key "$dir/key" --connect "127.0.0.1:$pp" > /dev/null 2> "$dir/edge-$b.log" &
  edges+=($!)
  pids+=($!)
done
sleep 10
echo "host $(mem "$host")" > "$dir/mem-start.txt"
for b in 0 1 2 3; do echo "edge-$b $(mem "${edges[$b]}")" >> "$dir/mem-start.txt"; done

# Host restarts: SIGKILL, then SIGTERM, in turn, 30-50 s apart.
n=0
deadline=$((SECONDS + secs - 10))
while [ $SECONDS -lt $deadline ]; do
  wait_s=$((30 + RANDOM % 21))
  while [ $wait_s -gt 0 ] && [ $SECONDS -lt $deadline ]; do sleep 1; wait_s=$((wait_s - 1)); done
  [ $SECONDS -ge $deadline ] && break
  if [ $((n % 2)) = 0 ]; then kill -KILL "$host"; else kill -TERM "$host"; fi
  wait "$host" 2>/dev/null || true
  n=$((n + 1))
  echo "soak: host restart $n ($( [ $((n % 2)) = 1 ] && echo SIGKILL || echo SIGTERM))" >&2
  start_host "$n"
done
echo "host $(mem "$host")" > "$dir/mem-end.txt"
for b in 0 1 2 3; do echo "edge-$b $(mem "${edges[$b]}")" >> "$dir/mem-end.txt"; done
sleep 10
kill -TERM "${edges[@]}"
for e in "${edges[@]}"; do wait "$e" || true; done
sleep 2
kill -TERM "$host"; wait "$host" || true

# The reference: the same camera and model, no link, enough frames for the highest sequence.
for r in "$dir"/rec-*.svrec; do "$bin/svit-host" replay "$r" --max-speed > "${r%.svrec}.jsonl" 2>/dev/null || true; done
maxseq=$(cat "$dir"/rec-*.jsonl | python3 -c 'import sys,json; print(max([json.loads(l)["seq"] for l in sys.stdin if l.startswith("{")] or [0]))')
"$bin/svit-edge" run --camera synthetic --threads 1 --frames $((maxseq + 1)) > "$dir/reference.jsonl" 2> /dev/null

# The proxy writes its counts when its fixed time is up; a fast machine gets here first.
wait "$proxy"

python3 - "$dir" "$secs" "$n" <<'PY'
import glob, json, os, re, sys
from datetime import datetime
d, secs, restarts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ref = {}
for l in open(os.path.join(d, "reference.jsonl")):
    if l.startswith("{"):
        f = json.loads(l)
        ref[f["seq"]] = (f["kept"], round(f["gmacs"], 4), len(f["detections"]))
rec = {}
for path in sorted(glob.glob(os.path.join(d, "rec-*.jsonl"))):
    for l in open(path):
        if l.startswith("{"):
            f = json.loads(l)
            rec.setdefault(f["device"], []).append(f)
boards, altered_total = [], 0
for b in range(4):
    name = f"soak-{b}"
    log = open(os.path.join(d, f"edge-{b}.log")).read()
    m = re.search(r"frames=(\d+).*dropped_before_inference=(\d+)", log)
    sent, before = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    frames = rec.get(name, [])
    seqs = [f["seq"] for f in frames]
    # With frames dropped before inference a sequence number no longer names the same scene.
    altered = None if before else sum(
        1 for f in frames if ref.get(f["seq"]) != (f["kept"], round(f["gmacs"], 4), f["detections"]))
    altered_total += altered or 0
    boards.append({"board": name, "sent": sent, "recorded": len(set(seqs)),
                   "lost": sent - len(set(seqs)), "duplicated": len(seqs) - len(set(seqs)),
                   "altered": altered, "dropped_before_inference": before})
# Reconnects: from a board's disconnection to its next connection, within one host's life.
stamp = lambda l: datetime.fromisoformat(l[:26].rstrip("Z"))
gaps, integrity = [], 0
for path in sorted(glob.glob(os.path.join(d, "host-*.log"))):
    down = {}
    for l in open(path):
        integrity += "integrity failure" in l and "closing the link" in l
        m = re.search(r"board (\S+) \(#\d+\) disconnected", l) or re.search(r"board (\S+) connected \(#", l)
        if not m:
            continue
        if "disconnected" in l:
            down[m.group(1)] = stamp(l)
        elif m.group(1) in down:
            gaps.append((stamp(l) - down.pop(m.group(1))).total_seconds() * 1000)
gaps.sort()
pct = lambda q: round(gaps[min(len(gaps) - 1, int(q * len(gaps)))], 1) if gaps else None
def mem(name):
    out = {}
    for l in open(os.path.join(d, name)):
        who, rss, fds = l.split()
        out[who] = {"rss_mb": round(int(rss) / 1024, 1), "fds": int(fds)}
    return out
doc = {"seconds": secs, "host_restarts": restarts, "boards": boards,
       "sent": sum(b["sent"] for b in boards), "recorded": sum(b["recorded"] for b in boards),
       "lost": sum(b["lost"] for b in boards), "duplicated": sum(b["duplicated"] for b in boards),
       "altered": altered_total, "integrity_failures_caught": integrity,
       "reconnects": len(gaps), "reconnect_ms_p50": pct(0.5), "reconnect_ms_p99": pct(0.99),
       "memory_start": mem("mem-start.txt"), "memory_end": mem("mem-end.txt"),
       "proxy": json.load(open(os.path.join(d, "proxy.json")))}
json.dump(doc, open(os.path.join(d, "soak.json"), "w"), indent=1)
print(json.dumps({k: v for k, v in doc.items() if k not in ("boards", "proxy", "memory_start", "memory_end")}))
for b in boards:
    print(json.dumps(b))
print("memory start", json.dumps(doc["memory_start"]))
print("memory end  ", json.dumps(doc["memory_end"]))
print("proxy", json.dumps(doc["proxy"]))
PY
