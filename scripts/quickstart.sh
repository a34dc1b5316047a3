#!/usr/bin/env bash
# Installs what is missing (scripts/deps.sh), builds (scripts/build.sh), then runs
# botgate on examples/quickstart.toml (127.0.0.1:8080) with two demo backends on
# 127.0.0.1:9001 and 127.0.0.1:9002 that print every request they receive.
# Ctrl-C (or SIGTERM) stops and reaps all three. Safe to run again and again.
#
#   BUILD_DIR   build directory (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."

export BUILD_DIR=${BUILD_DIR:-build}
CONFIG=examples/quickstart.toml
GATEWAY_PORT=8080  # [server] listen in $CONFIG
SINK_PORTS=(9001 9002)  # the [[targets]] urls in $CONFIG

say() { echo "quickstart: $*" >&2; }
die() { say "$*"; exit 1; }

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---- install, build, check
scripts/deps.sh
scripts/build.sh
for bin in "$BUILD_DIR/botgate" "$BUILD_DIR/bench/sink"; do
  [[ -x $bin ]] || die "$bin is missing after the build"
done
"$BUILD_DIR/botgate" check-config "$CONFIG" >/dev/null
for port in "$GATEWAY_PORT" "${SINK_PORTS[@]}"; do
  if port_open "$port"; then
    die "127.0.0.1:$port is already in use (an earlier quickstart still running?); stop that process first"
  fi
done

# ---- stop and reap everything we start, however we leave
sink_pids=()
gateway_pid=
# Sends SIGTERM to the given processes, waits up to $1 seconds, then SIGKILLs and reaps them.
stop() {
  local grace=$1 p
  shift
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  local deadline=$((SECONDS + grace))
  for p in "$@"; do
    while kill -0 "$p" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null || true; fi
    wait "$p" 2>/dev/null || true
  done
}
cleanup() {
  trap '' INT TERM
  # botgate first, so that it can finish in-flight deliveries ([server] drain_timeout,
  # 10 s), then the backends.
  if [[ -n $gateway_pid ]]; then stop 15 "$gateway_pid"; fi
  if ((${#sink_pids[@]})); then stop 5 "${sink_pids[@]}"; fi
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts "$@" in the background in a process group of its own, so that Ctrl-C in the
# terminal reaches only this script, which then stops botgate first (it finishes its
# deliveries to the backends, which are still up) and the backends after. Sets $launched.
launch() {
  set -m
  "$@" &
  launched=$!
  set +m
}

# ---- the demo backends
for port in "${SINK_PORTS[@]}"; do
  launch "$BUILD_DIR/bench/sink" --host 127.0.0.1 --port "$port" --print --name "backend:$port"
  sink_pids+=("$launched")
done
deadline=$((SECONDS + 10))
for i in "${!SINK_PORTS[@]}"; do
  port=${SINK_PORTS[$i]}
  until port_open "$port"; do
    kill -0 "${sink_pids[$i]}" 2>/dev/null || die "the backend on 127.0.0.1:$port did not start"
    ((SECONDS < deadline)) || die "the backend on 127.0.0.1:$port is not listening after 10 s"
    sleep 0.05
  done
done

# ---- botgate
launch "$BUILD_DIR/botgate" --config "$CONFIG"
gateway_pid=$launched
deadline=$((SECONDS + 30))
until curl -fs -o /dev/null "http://127.0.0.1:$GATEWAY_PORT/readyz"; do
  kill -0 "$gateway_pid" 2>/dev/null || die "botgate did not start"
  ((SECONDS < deadline)) || die "botgate is not ready after 30 s (GET /readyz)"
  sleep 0.1
done

say "ready: botgate on 127.0.0.1:$GATEWAY_PORT (pid $gateway_pid), demo backends on 127.0.0.1:${SINK_PORTS[0]} (pid ${sink_pids[0]}) and 127.0.0.1:${SINK_PORTS[1]} (pid ${sink_pids[1]})"
say "send an event with the curl command in README.md ('Try it'); Ctrl-C stops everything"

# Run until Ctrl-C / SIGTERM or until botgate exits. A backend that stops (kill PID) is
# reported; botgate keeps delivering to the other one.
while :; do
  status=0
  exited=
  wait -n -p exited "$gateway_pid" "${sink_pids[@]}" || status=$?
  [[ -n $exited ]] || die "wait failed (status $status)"
  if [[ $exited == "$gateway_pid" ]]; then
    gateway_pid=  # reaped already
    say "botgate exited (status $status); stopping the demo backends"
    exit "$status"
  fi
  for i in "${!sink_pids[@]}"; do
    if [[ ${sink_pids[$i]} == "$exited" ]]; then
      unset 'sink_pids[i]'  # reaped already
      say "the demo backend with pid $exited exited (status $status); botgate retries its events on the other"
    fi
  done
done
