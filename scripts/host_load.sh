#!/usr/bin/env bash
# Host load test: 16 simulated boards x 30 frames/s (thumbnails off) into one svit-host that
# records; reports frames lost and the host's CPU use. Writes runs/bench/host_load.json.
set -euo pipefail
cd "$(dirname "$0")/.."
BOARDS=${BOARDS:-16} FPS=${FPS:-30} SECS=${SECS:-20}
cargo build --workspace --quiet
mkdir -p runs/bench
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
rm -f runs/bench/load.svrec
target/debug/svit-host listen 127.0.0.1:$PORT --quiet --record runs/bench/load.svrec 2>/dev/null &
HOST=$!
sleep 0.5
ticks0=$(awk '{print $14+$15}' /proc/$HOST/stat)
t0=$(date +%s.%N)
SENT=$(target/debug/svit-loadgen 127.0.0.1:$PORT $BOARDS $FPS $SECS)
sleep 1
ticks1=$(awk '{print $14+$15}' /proc/$HOST/stat)
t1=$(date +%s.%N)
kill -TERM $HOST; wait $HOST || true
target/debug/svit-host report runs/bench/load.svrec --out runs/bench/load-report > /dev/null
python3 - "$SENT" "$ticks0" "$ticks1" "$t0" "$t1" <<'PY'
import json, os, sys
sent = json.loads(sys.argv[1]); hz = os.sysconf("SC_CLK_TCK")
cpu = (float(sys.argv[3]) - float(sys.argv[2])) / hz / (float(sys.argv[5]) - float(sys.argv[4]))
rep = json.load(open("runs/bench/load-report/summary.json"))
recv = sum(b["frames"] for b in rep["boards"]); missing = sum(b["missing"] for b in rep["boards"])
out = {"boards": sent["boards"], "fps_per_board": sent["fps"], "seconds": sent["seconds"],
       "frames_sent": sum(sent["sent"]), "frames_recorded": recv, "missing": missing,
       "host_cpu_cores": round(cpu, 3)}
json.dump(out, open("runs/bench/host_load.json", "w"), indent=1)
print(json.dumps(out))
PY
