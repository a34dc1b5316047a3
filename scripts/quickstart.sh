#!/usr/bin/env bash
# Installs what is missing, builds, then runs botgate on examples/quickstart.toml
# with two demo backends (127.0.0.1:9001 and :9002) that print every event they
# receive. Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh
BUILD_DIR=${BUILD_DIR:-build}

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

for port in 9001 9002; do
  "$BUILD_DIR/bench/sink" --port "$port" --print --name "backend:$port" &
  pids+=($!)
done
echo "demo backends on 127.0.0.1:9001 and 127.0.0.1:9002; botgate on 127.0.0.1:8080"
echo "send an event with the curl command in README.md (section 'Try it')"
"$BUILD_DIR/botgate" --config examples/quickstart.toml &
pids+=($!)
wait "${pids[-1]}"
