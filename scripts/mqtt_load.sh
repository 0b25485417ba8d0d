#!/usr/bin/env bash
# MQTT under load: simulated boards (svit-loadgen's MQTT mode: hello retained, frames at QoS 1)
# -> a local Mosquitto -> one svit-host that subscribes (--mqtt-subscribe) and records. First
# 16 boards x 30 frames/s; then the load doubles until frames go missing. Reports frames
# recorded against sent and the CPU of host and broker. Writes runs/bench/mqtt_load.json.
set -euo pipefail
cd "$(dirname "$0")/.."
FPS=${FPS:-30} SECS=${SECS:-15} MAX_BOARDS=${MAX_BOARDS:-1024}
cargo build --workspace --quiet
mkdir -p runs/bench
MOSQ=$(command -v mosquitto || echo /usr/sbin/mosquitto)
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
runs=()
boards=16
while [ "$boards" -le "$MAX_BOARDS" ]; do
  BP=$(free)
  "$MOSQ" -p "$BP" >/dev/null 2>&1 &
  BROKER=$!
  sleep 0.5
  rec=runs/bench/mqtt-load.svrec
  rm -f $rec
  target/debug/svit-host listen 127.0.0.1:0 --quiet --mqtt-subscribe mqtt://127.0.0.1:$BP --record $rec 2>/dev/null &
  HOST=$!
  sleep 1
  h0=$(cpu $HOST) b0=$(cpu $BROKER) t0=$(date +%s.%N)
  SENT=$(target/debug/svit-loadgen mqtt://127.0.0.1:$BP $boards $FPS $SECS)
  h1=$(cpu $HOST) b1=$(cpu $BROKER) t1=$(date +%s.%N)
  sleep 1
  kill -TERM $HOST; wait $HOST || true
  kill $BROKER; wait $BROKER 2>/dev/null || true
  target/debug/svit-host report $rec --out runs/bench/mqtt-load-report > /dev/null
  run=$(python3 - "$SENT" "$h0" "$h1" "$b0" "$b1" "$t0" "$t1" <<'PY'
import json, os, sys
sent = json.loads(sys.argv[1]); hz = os.sysconf("SC_CLK_TCK"); a = [float(x) for x in sys.argv[2:]]
secs = a[5] - a[4]
rep = json.load(open("runs/bench/mqtt-load-report/summary.json"))
print(json.dumps({"boards": sent["boards"], "fps_per_board": sent["fps"], "seconds": sent["seconds"],
  "frames_sent": sum(sent["sent"]), "frames_recorded": sum(b["frames"] for b in rep["boards"]),
  "missing": sum(b["missing"] for b in rep["boards"]),
  "host_cpu_cores": round((a[1] - a[0]) / hz / secs, 3), "broker_cpu_cores": round((a[3] - a[2]) / hz / secs, 3)}))
PY
)
  echo "$run"
  runs+=("$run")
  if python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r["missing"] == 0 and r["frames_recorded"] == r["frames_sent"] else 1)' "$run"; then
    boards=$((boards * 2))
  else
    break
  fi
done
printf '%s\n' "${runs[@]}" | python3 -c 'import json,sys; json.dump([json.loads(l) for l in sys.stdin], open("runs/bench/mqtt_load.json","w"), indent=1)'
