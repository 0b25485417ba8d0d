#!/usr/bin/env bash
# Web view under load: 16 simulated boards x 30 frames/s into one svit-host with --http, the
# live page open in headless Chromium and /metrics scraped every second. Reports the host's
# CPU use, frames lost, and the page's capture-to-drawn latency (loopback, one clock).
# Writes runs/bench/web_load.json. Needs chromium and python3's websocket-client (installed).
set -euo pipefail
cd "$(dirname "$0")/.."
BOARDS=${BOARDS:-16} FPS=${FPS:-30} SECS=${SECS:-20}
cargo build --workspace --quiet
python3 -c 'import websocket' 2>/dev/null || python3 -m pip install --quiet websocket-client
mkdir -p runs/bench
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free) WEB=$(free) CDP=$(free)
rm -f runs/bench/web.svrec
target/debug/svit-host listen 127.0.0.1:$PORT --quiet --http 127.0.0.1:$WEB --record runs/bench/web.svrec 2>/dev/null &
HOST=$!
prof=$(mktemp -d)
trap 'kill $HOST $CHROME $SCRAPE 2>/dev/null || true; rm -rf "$prof"' EXIT
sleep 0.5
chromium --headless --no-sandbox --disable-gpu --user-data-dir="$prof" --remote-debugging-port=$CDP \
  "http://127.0.0.1:$WEB/" >/dev/null 2>&1 &
CHROME=$!
(while sleep 1; do curl -s -o /dev/null "http://127.0.0.1:$WEB/metrics" || true; done) &
SCRAPE=$!
sleep 2
ticks0=$(awk '{print $14+$15}' /proc/$HOST/stat)
t0=$(date +%s.%N)
SENT=$(target/debug/svit-loadgen 127.0.0.1:$PORT $BOARDS $FPS $SECS)
ticks1=$(awk '{print $14+$15}' /proc/$HOST/stat)
t1=$(date +%s.%N)
LAT=$(python3 - $CDP <<'PY'
import json, sys, urllib.request, websocket
pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/json"))
page = next(p for p in pages if p["type"] == "page" and "SViT" in p["title"])
ws = websocket.create_connection(page["webSocketDebuggerUrl"], suppress_origin=True)
expr = """(() => { const l = window.svitDrawn.map(d => d.drawn_ms - d.capture_us / 1000).sort((a, b) => a - b);
  return JSON.stringify({updates: l.length, p50: l[l.length >> 1], p90: l[Math.floor(l.length * 0.9)]}); })()"""
ws.send(json.dumps({"id": 1, "method": "Runtime.evaluate", "params": {"expression": expr}}))
print(json.loads(ws.recv())["result"]["result"]["value"])
PY
)
kill -TERM $HOST; wait $HOST || true
target/debug/svit-host report runs/bench/web.svrec --out runs/bench/web-report > /dev/null
python3 - "$SENT" "$ticks0" "$ticks1" "$t0" "$t1" "$LAT" <<'PY'
import json, os, sys
sent = json.loads(sys.argv[1]); hz = os.sysconf("SC_CLK_TCK")
cpu = (float(sys.argv[3]) - float(sys.argv[2])) / hz / (float(sys.argv[5]) - float(sys.argv[4]))
lat = json.loads(sys.argv[6])
rep = json.load(open("runs/bench/web-report/summary.json"))
out = {"boards": sent["boards"], "fps_per_board": sent["fps"], "seconds": sent["seconds"],
       "frames_sent": sum(sent["sent"]), "frames_recorded": sum(b["frames"] for b in rep["boards"]),
       "missing": sum(b["missing"] for b in rep["boards"]), "host_cpu_cores": round(cpu, 3),
       "page_updates": lat["updates"], "capture_to_page_p50_ms": round(lat["p50"], 1),
       "capture_to_page_p90_ms": round(lat["p90"], 1)}
json.dump(out, open("runs/bench/web_load.json", "w"), indent=1)
print(json.dumps(out))
PY
