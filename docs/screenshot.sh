#!/usr/bin/env bash
# Screenshot of a TensorBoard dashboard over a log directory (needs Debian's chromium).
# Usage: docs/screenshot.sh LOGDIR OUTPUT.png [DASHBOARD]
#   DASHBOARD is the URL fragment, default "scalars&_smoothingWeight=0"; e.g.
#   "scalars&tagFilter=lm%2Floss&_smoothingWeight=0" (train and eval loss on one chart) or "text".
set -euo pipefail
logdir="$1"; out="$2"; dashboard="${3:-scalars&_smoothingWeight=0}"
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
  --screenshot="$out" "http://127.0.0.1:$port/#$dashboard" 2>/dev/null
