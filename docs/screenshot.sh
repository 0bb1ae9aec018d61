#!/usr/bin/env bash
# Screenshot of TensorBoard's scalars dashboard over a demo run (needs Debian's chromium).
# Usage: docs/screenshot.sh DEMO_WORKDIR OUTPUT.png
set -euo pipefail
logdir="$1/model"; out="$2"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$(dirname "$0")/../.venv/bin/tensorboard" --logdir "$logdir" --host 127.0.0.1 --port "$port" \
  >/dev/null 2>&1 &
tb=$!
trap 'kill $tb' EXIT
for _ in $(seq 60); do
  curl -sf "http://127.0.0.1:$port/data/plugin/scalars/tags" | grep -q lm/loss && break
  sleep 1
done
# --host-resolver-rules keeps Chromium on loopback (these machines must not reach out).
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" \
  --user-data-dir="$(mktemp -d)" --window-size=1400,1000 --virtual-time-budget=15000 \
  --screenshot="$out" "http://127.0.0.1:$port/#scalars&_smoothingWeight=0" 2>/dev/null
