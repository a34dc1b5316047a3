#!/usr/bin/env bash
# End-to-end benchmark: loadgen -> botgate -> sink, all on 127.0.0.1 with ephemeral ports.
# Builds nothing: expects botgate, bench/loadgen and bench/sink under $BUILD_DIR.
# Extra arguments are passed to loadgen (e.g. --pipeline 4 --threads 1).
# See bench/README.md for the knobs and what the figures mean.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=$(cd "${BUILD_DIR:-$ROOT/build}" && pwd)
BOTGATE=${BOTGATE:-$BUILD_DIR/botgate}
LOADGEN=${LOADGEN:-$BUILD_DIR/bench/loadgen}
SINK=${SINK:-$BUILD_DIR/bench/sink}

EVENTS=${EVENTS:-200000}
CONNECTIONS=${CONNECTIONS:-64}
CONVERSATIONS=${CONVERSATIONS:-1000}
DURATION=${DURATION:-120}            # loadgen --duration (seconds of sending, at most)
SINK_IDLE=${SINK_IDLE:-10}           # sink exits this long after its last event
SINK_WAIT=${SINK_WAIT:-60}           # after loadgen, wait at most this long for the sink
STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-15}
STOP_TIMEOUT=${STOP_TIMEOUT:-30}     # SIGTERM -> SIGKILL grace for botgate
LOG_LEVEL=${LOG_LEVEL:-info}         # only lifecycle lines are logged at info
SINK_THREADS=${SINK_THREADS:-1}
TARGET_CONNECTIONS=${TARGET_CONNECTIONS:-16}  # [[targets]] max_connections toward the sink
PIPELINE=${PIPELINE:-16}             # [[targets]] pipeline toward the sink
JSON=${JSON:-0}                      # 1: loadgen and sink print one JSON line each

for bin in "$BOTGATE" "$LOADGEN" "$SINK"; do
  if [[ ! -x $bin ]]; then
    echo "run.sh: missing executable $bin (build first, or set BUILD_DIR)" >&2
    exit 2
  fi
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/botgate-bench.XXXXXX")
declare -a PIDS=()

# shellcheck disable=SC2317  # invoked through trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for pid in "${PIDS[@]}"; do
    # Give each child a moment, then make sure it is gone, and reap it.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

json_flag=()
[[ $JSON == 1 ]] && json_flag=(--json)

# Waits until FILE has a line matching REGEX (or PID dies / timeout); prints the match.
wait_for_line() {
  local file=$1 regex=$2 pid=$3 timeout=$4 line=""
  local deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    line=$(grep -m1 -E "$regex" "$file" 2>/dev/null || true)
    if [[ -n $line ]]; then
      echo "$line"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# Fallback when the listening line is not logged (LOG_LEVEL=warn): the TCP port of the
# one listening socket that PID owns, from /proc.
listen_port_from_proc() {
  local pid=$1 inodes
  inodes=$(find "/proc/$pid/fd" -lname 'socket:*' -printf '%l\n' 2>/dev/null | tr -dc '0-9\n' | sort -u)
  [[ -n $inodes ]] || return 1
  local hex
  hex=$(cat "/proc/$pid/net/tcp" "/proc/$pid/net/tcp6" 2>/dev/null |
    awk -v inodes="$inodes" '
      BEGIN { n = split(inodes, a, "\n"); for (i = 1; i <= n; i++) want[a[i]] = 1 }
      $4 == "0A" && ($10 in want) { split($2, la, ":"); print la[2]; exit }')
  [[ $hex =~ ^[0-9A-Fa-f]+$ ]] || return 1
  echo $((16#$hex))
}

# ---- sink
"$SINK" --port 0 --expect "$EVENTS" --idle-exit "$SINK_IDLE" --threads "$SINK_THREADS" \
  "${json_flag[@]}" >"$TMP/sink.out" 2>"$TMP/sink.err" &
SINK_PID=$!
PIDS+=("$SINK_PID")
if ! line=$(wait_for_line "$TMP/sink.out" 'listening port=[0-9]+' "$SINK_PID" "$STARTUP_TIMEOUT"); then
  echo "run.sh: sink did not start" >&2
  cat "$TMP/sink.err" >&2
  exit 1
fi
SINK_PORT=${line##*port=}

# ---- botgate
CONFIG=$TMP/botgate.toml
cat >"$CONFIG" <<EOF
[server]
listen = "127.0.0.1:0"
io_threads = 1
max_body = "64KiB"
[log]
level = "$LOG_LEVEL"
[actors]
threads = 1
[queue]
shards = 4
max_pending = 100000
[[sources]]
name = "bench"
secret = "bench-secret"
route = "sinks"
[[pools]]
name = "sinks"
policy = "round-robin"
targets = ["sink"]
[[targets]]
name = "sink"
url = "http://127.0.0.1:$SINK_PORT/events"
max_connections = $TARGET_CONNECTIONS
pipeline = $PIPELINE
EOF

mkdir -p "$TMP/work"
# Started from a scratch directory so that any relative path (./data) stays inside $TMP.
(cd "$TMP/work" && exec "$BOTGATE" --config "$CONFIG") >"$TMP/botgate.out" 2>"$TMP/botgate.err" &
BOTGATE_PID=$!
PIDS+=("$BOTGATE_PID")

BOTGATE_PORT=""
deadline=$((SECONDS + STARTUP_TIMEOUT))
while ((SECONDS < deadline)); do
  line=$(grep -m1 'msg=listening' "$TMP/botgate.err" 2>/dev/null || true)
  if [[ $line =~ port=([0-9]+) ]]; then
    BOTGATE_PORT=${BASH_REMATCH[1]}
    break
  fi
  if ! kill -0 "$BOTGATE_PID" 2>/dev/null; then
    echo "run.sh: botgate exited during start-up:" >&2
    cat "$TMP/botgate.err" >&2
    exit 1
  fi
  if [[ $LOG_LEVEL != debug && $LOG_LEVEL != info ]]; then
    BOTGATE_PORT=$(listen_port_from_proc "$BOTGATE_PID" || true)
    [[ -n $BOTGATE_PORT ]] && break
  fi
  sleep 0.05
done
if [[ -z $BOTGATE_PORT ]]; then
  echo "run.sh: botgate did not report its port within ${STARTUP_TIMEOUT}s" >&2
  cat "$TMP/botgate.err" >&2
  exit 1
fi

echo "run.sh: sink port=$SINK_PORT botgate port=$BOTGATE_PORT events=$EVENTS connections=$CONNECTIONS conversations=$CONVERSATIONS" >&2

# ---- load
# In the background and waited for, so that a signal to this script is handled at once.
"$LOADGEN" --host 127.0.0.1 --port "$BOTGATE_PORT" --source bench --secret bench-secret \
  --events "$EVENTS" --connections "$CONNECTIONS" --conversations "$CONVERSATIONS" \
  --duration "$DURATION" "${json_flag[@]}" "$@" >"$TMP/loadgen.out" 2>"$TMP/loadgen.err" &
LOADGEN_PID=$!
PIDS+=("$LOADGEN_PID")
set +e
wait "$LOADGEN_PID"
LOADGEN_RC=$?
set -e
if ((LOADGEN_RC != 0)); then
  echo "run.sh: loadgen exited with $LOADGEN_RC" >&2
  cat "$TMP/loadgen.err" >&2
fi

# ---- wait for delivery: the sink exits by itself at --expect or after SINK_IDLE idle seconds
deadline=$((SECONDS + SINK_WAIT))
while kill -0 "$SINK_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
if kill -0 "$SINK_PID" 2>/dev/null; then
  echo "run.sh: sink still waiting after ${SINK_WAIT}s; stopping it" >&2
  kill -TERM "$SINK_PID" 2>/dev/null || true
fi
wait "$SINK_PID" 2>/dev/null || true

cat "$TMP/loadgen.out"
grep -v '^listening port=' "$TMP/sink.out" || true

# ---- stop botgate
kill -TERM "$BOTGATE_PID" 2>/dev/null || true
deadline=$((SECONDS + STOP_TIMEOUT))
while kill -0 "$BOTGATE_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
if kill -0 "$BOTGATE_PID" 2>/dev/null; then
  echo "run.sh: botgate did not stop within ${STOP_TIMEOUT}s; killing it" >&2
  kill -KILL "$BOTGATE_PID" 2>/dev/null || true
fi
set +e
wait "$BOTGATE_PID" 2>/dev/null
BOTGATE_RC=$?
set -e
if ((BOTGATE_RC != 0)); then
  echo "run.sh: botgate exited with $BOTGATE_RC; last log lines:" >&2
  tail -n 20 "$TMP/botgate.err" >&2
fi
# Warnings and errors botgate logged during the run, if any.
if grep -qE 'level=(warn|error)' "$TMP/botgate.err"; then
  echo "run.sh: botgate logged $(grep -cE 'level=(warn|error)' "$TMP/botgate.err") warn/error lines, e.g.:" >&2
  grep -m5 -E 'level=(warn|error)' "$TMP/botgate.err" >&2
fi
exit "$LOADGEN_RC"
