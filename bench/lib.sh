# shellcheck shell=bash
# Shell plumbing shared by the bench scripts (run.sh, wechat.sh, backlog.sh, failover.sh).
# Source it, do not run it:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   bench_binaries          # BUILD_DIR, BOTGATE, LOADGEN, SINK; exits 2 if one is missing
#   bench_tmp               # TMP (removed on exit), PIDS, the cleanup trap
#
# Every child goes into PIDS (bench_track). On exit, Ctrl-C or SIGTERM the trap sends SIGTERM to
# each child still running, then SIGKILL after 5 s, reaps it, and removes $TMP (KEEP_TMP=1 keeps
# it, logs and all).
# Messages start with "$BENCH_NAME: " (the script's file name).

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_NAME=${BENCH_NAME:-${0##*/}}
STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-15}   # seconds to wait for each listening port
STOP_TIMEOUT=${STOP_TIMEOUT:-30}         # SIGTERM -> SIGKILL grace for botgate

bench_msg() { echo "$BENCH_NAME: $*" >&2; }
bench_die() { bench_msg "$@"; exit 1; }

# Resolves the three executables (overridable one by one) and checks that they exist.
bench_binaries() {
  BUILD_DIR=$(cd "${BUILD_DIR:-$BENCH_ROOT/build}" && pwd)
  BOTGATE=${BOTGATE:-$BUILD_DIR/botgate}
  LOADGEN=${LOADGEN:-$BUILD_DIR/bench/loadgen}
  SINK=${SINK:-$BUILD_DIR/bench/sink}
  local bin
  for bin in "$BOTGATE" "$LOADGEN" "$SINK"; do
    if [[ ! -x $bin ]]; then
      bench_msg "missing executable $bin (build first, or set BUILD_DIR)"
      exit 2
    fi
  done
  # Absolute: botgate runs from a directory of its own (start_botgate).
  BOTGATE=$(realpath "$BOTGATE")
  LOADGEN=$(realpath "$LOADGEN")
  SINK=$(realpath "$SINK")
}

# ---- temp dir, children, cleanup

declare -a PIDS=()

bench_tmp() {
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/botgate-bench.XXXXXX")
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

bench_track() { PIDS+=("$1"); }

# Drops PID from PIDS once it has been reaped, so that the trap never signals a reused pid.
bench_forget() {
  local pid keep=()
  for pid in "${PIDS[@]}"; do [[ $pid == "$1" ]] || keep+=("$pid"); done
  PIDS=("${keep[@]}")
}

# shellcheck disable=SC2317  # invoked through trap
bench_cleanup() {
  local rc=$? pid
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
  PIDS=()
  if [[ -n ${TMP:-} ]]; then
    if [[ ${KEEP_TMP:-0} == 1 ]]; then echo "$BENCH_NAME: kept $TMP" >&2; else rm -rf "$TMP"; fi
  fi
  exit "$rc"
}

# Waits for PID to exit, at most TIMEOUT seconds; returns 1 if it is still running.
# Does not reap it.
wait_exit() {
  local pid=$1 timeout=$2
  local deadline=$((SECONDS + timeout))
  while kill -0 "$pid" 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.02
  done
}

# Reaps PID and sets REAP_RC to its exit status (128+N when killed by signal N).
reap() {
  REAP_RC=0
  wait "$1" 2>/dev/null || REAP_RC=$?
  bench_forget "$1"
}

# run_loadgen ARGS...: runs $LOADGEN with ARGS, output in $TMP/loadgen.out and .err, in the
# background and waited for, so that a signal to the script is handled at once. Sets
# LOADGEN_RC to its exit status and reports a failure with its stderr.
run_loadgen() {
  start_loadgen "$@"
  finish_loadgen
}

# The two halves of run_loadgen, for a script that acts while the load runs (failover.sh):
# start_loadgen ARGS... starts it in the background and sets LOADGEN_PID; finish_loadgen
# reaps it, sets LOADGEN_RC, and prints its stderr if it failed.
start_loadgen() {
  "$LOADGEN" "$@" >"$TMP/loadgen.out" 2>"$TMP/loadgen.err" &
  LOADGEN_PID=$!
  bench_track "$LOADGEN_PID"
}

finish_loadgen() {
  reap "$LOADGEN_PID"
  LOADGEN_RC=$REAP_RC
  if ((LOADGEN_RC != 0)); then
    bench_msg "loadgen exited with $LOADGEN_RC"
    cat "$TMP/loadgen.err" >&2
  fi
}

# wait_sink: the sink exits by itself at --expect or after SINK_IDLE idle seconds; waits for
# that at most SINK_WAIT seconds, then stops it, and reaps it.
wait_sink() {
  if ! wait_exit "$SINK_PID" "$SINK_WAIT"; then
    bench_msg "sink still waiting after ${SINK_WAIT}s; stopping it"
    kill -TERM "$SINK_PID" 2>/dev/null || true
  fi
  reap "$SINK_PID"
}

# Wall clock (CLOCK_REALTIME, like botgate's log timestamps) in milliseconds, from bash 5's
# $EPOCHREALTIME.
now_ms() {
  local t=${EPOCHREALTIME/[.,]/}
  echo $((10#$t / 1000))
}

# ---- waiting for output

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
    sleep 0.02
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

# A TCP port that nothing on this machine uses right now, below the ephemeral range, so that
# no outgoing connection (loadgen's, botgate's) can be given it as its local port meanwhile and
# a connect to it is refused until something listens there. Racy by nature; used only to hold
# a port for a sink that starts later.
free_port() {
  local lo port hex _
  read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || lo=32768
  ((lo > 11000)) || lo=32768
  for _ in $(seq 100); do
    port=$((10000 + (RANDOM * 32768 + RANDOM) % (lo - 10000)))  # 10000 .. lo-1
    printf -v hex ':%04X ' "$port"
    # Column 2 (local address) or 3 (remote address) of any socket, IPv4 or IPv6.
    if ! cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -qF "$hex"; then
      echo "$port"
      return 0
    fi
  done
  return 1
}

# ---- sink

# start_sink PORT OUT ARGS...: starts the sink on PORT (0: ephemeral) with stdout to OUT and
# stderr to OUT.err, waits for `listening port=N`. Sets SINK_PID, SINK_PORT.
# shellcheck disable=SC2034  # SINK_PORT is for the caller
start_sink() {
  local port=$1 out=$2 line
  shift 2
  "$SINK" --host 127.0.0.1 --port "$port" "$@" >"$out" 2>"$out.err" &
  SINK_PID=$!
  bench_track "$SINK_PID"
  if ! line=$(wait_for_line "$out" 'listening port=[0-9]+' "$SINK_PID" "$STARTUP_TIMEOUT"); then
    bench_msg "sink did not start"
    cat "$out.err" >&2
    exit 1
  fi
  SINK_PORT=${line##*port=}
}

# ---- botgate

# start_botgate CONFIG NAME [TIMEOUT]: starts botgate on CONFIG from the scratch directory
# $TMP/work (so that relative paths stay inside $TMP), stdout/stderr to $TMP/NAME.out/.err, and
# waits for its port: the `msg=listening ... port=N` log line, or /proc when LOG_LEVEL hides that
# line. TIMEOUT (default STARTUP_TIMEOUT) bounds the wait, recovery of the queue included.
# Sets BOTGATE_PID, BOTGATE_PORT, BOTGATE_ERR (the log file), BOTGATE_T0_MS (just before exec)
# and BOTGATE_UP_MS (when the port was seen).
# shellcheck disable=SC2034  # the globals are for the caller
start_botgate() {
  local config=$1 name=$2 timeout=${3:-$STARTUP_TIMEOUT} line
  BOTGATE_ERR=$TMP/$name.err
  mkdir -p "$TMP/work"
  BOTGATE_T0_MS=$(now_ms)
  (cd "$TMP/work" && exec "$BOTGATE" --config "$config") >"$TMP/$name.out" 2>"$BOTGATE_ERR" &
  BOTGATE_PID=$!
  bench_track "$BOTGATE_PID"

  BOTGATE_PORT=""
  local deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    line=$(grep -m1 'msg=listening' "$BOTGATE_ERR" 2>/dev/null || true)
    if [[ $line =~ port=([0-9]+) ]]; then
      BOTGATE_PORT=${BASH_REMATCH[1]}
      break
    fi
    if ! kill -0 "$BOTGATE_PID" 2>/dev/null; then
      bench_msg "botgate exited during start-up:"
      cat "$BOTGATE_ERR" >&2
      exit 1
    fi
    if [[ ${LOG_LEVEL:-info} != debug && ${LOG_LEVEL:-info} != info ]]; then
      BOTGATE_PORT=$(listen_port_from_proc "$BOTGATE_PID" || true)
      [[ -n $BOTGATE_PORT ]] && break
    fi
    sleep 0.01
  done
  BOTGATE_UP_MS=$(now_ms)
  if [[ -z $BOTGATE_PORT ]]; then
    bench_msg "botgate did not report its port within ${timeout}s"
    cat "$BOTGATE_ERR" >&2
    exit 1
  fi
}

# stop_botgate PID LOG: SIGTERM, then SIGKILL after STOP_TIMEOUT seconds; reaps it. Reports a
# non-zero exit and the warn/error lines it logged. Sets BOTGATE_RC.
stop_botgate() {
  local pid=$1 log=$2
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_exit "$pid" "$STOP_TIMEOUT"; then
    bench_msg "botgate did not stop within ${STOP_TIMEOUT}s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  reap "$pid"
  BOTGATE_RC=$REAP_RC
  if ((BOTGATE_RC != 0)); then
    bench_msg "botgate exited with $BOTGATE_RC; last log lines:"
    tail -n 20 "$log" >&2
  fi
  report_log_problems "$log"
}

# kill_botgate PID: SIGKILL (a crash) and reap.
kill_botgate() {
  local pid=$1
  kill -KILL "$pid" 2>/dev/null || true
  reap "$pid"
}

# Warnings and errors botgate logged, if any, to stderr.
report_log_problems() {
  local log=$1
  if grep -qE 'level=(warn|error)' "$log"; then
    bench_msg "botgate logged $(grep -cE 'level=(warn|error)' "$log") warn/error lines, e.g.:"
    grep -m5 -E 'level=(warn|error)' "$log" >&2
  fi
}

# ---- /proc

# proc_status_kb PID FIELD: a kB field of /proc/PID/status (VmRSS, VmHWM, ...), as a number.
proc_status_kb() {
  awk -v f="$2:" '$1 == f { print $2; found = 1 } END { exit !found }' "/proc/$1/status"
}

# kB -> MB (MiB), one decimal.
kb_to_mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# ---- metrics

# scrape_metrics PORT [TIMEOUT]: prints botgate's /metrics body. Plain bash (/dev/tcp), no curl.
# Returns 1 on a connect error, a timeout or a status other than 200.
scrape_metrics() {
  local port=$1 timeout=${2:-10} fd line len=-1 body="" rc=0
  local LC_ALL=C  # read -N counts bytes
  { exec {fd}<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
  printf 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$port" >&"$fd"
  local status_re='^HTTP/1\.[01] 200( |$)'
  if IFS= read -r -t "$timeout" line <&"$fd" && [[ ${line%$'\r'} =~ $status_re ]]; then
    while IFS= read -r -t "$timeout" line <&"$fd"; do
      line=${line%$'\r'}
      [[ -z $line ]] && break
      if [[ ${line,,} =~ ^content-length:[\ $'\t']*([0-9]+) ]]; then len=${BASH_REMATCH[1]}; fi
    done
    if ((len > 0)); then
      IFS= read -r -t "$timeout" -N "$len" body <&"$fd" || rc=1
    elif ((len < 0)); then
      # No length: read to EOF (the request asked for Connection: close).
      IFS= read -r -t "$timeout" -d '' body <&"$fd" || [[ -n $body ]] || rc=1
    fi
  else
    rc=1
  fi
  exec {fd}>&-
  ((rc == 0)) || return 1
  printf '%s' "$body"
}

# metric_sum FILE NAME: the sum of every series of NAME (any labels) in a scrape; 0 if none.
metric_sum() {
  awk -v n="$2" '
    /^#/ { next }
    { m = $1; sub(/\{.*/, "", m); if (m == n) s += $NF }
    END { printf "%.15g\n", s + 0 }' "$1"
}

# histogram_quantile FILE NAME Q: the upper bound (le, in seconds) of the bucket of histogram
# NAME holding quantile Q, "+Inf" past the last bound, "nan" when it has no observations.
# An estimate: the true quantile lies between this bucket's lower and upper bounds.
histogram_quantile() {
  awk -v n="$2_bucket" -v q="$3" '
    /^#/ { next }
    {
      m = $1; sub(/\{.*/, "", m); if (m != n) next
      if (!match($1, /le="[^"]*"/)) next
      k++; le[k] = substr($1, RSTART + 4, RLENGTH - 5); c[k] = $NF + 0
    }
    END {
      if (k == 0 || c[k] == 0) { print "nan"; exit }
      want = q * c[k]
      for (i = 1; i <= k; i++) if (c[i] >= want) { print le[i]; exit }
      print "+Inf"
    }' "$1"
}

# json_get FILE KEY: the value of KEY in the first JSON line of FILE that has it, unquoted
# (flat values only: numbers, strings without commas or quotes, true/false/null).
json_get() { grep -o "\"$2\":\"\\?[^,}\"]*" "$1" | head -n1 | sed 's/^[^:]*:"\{0,1\}//'; }

# log_figures FILE: the durable log's figures from a /metrics scrape, into LOG_COMMITS (all
# commits), LOG_EVENT_COMMITS (those that carried events), LOG_SYNCS, LOG_EVENTS (committed
# events), LOG_ERRORS, LOG_PER_COMMIT (events per commit that carried events, 2 decimals, or
# nan: commits of completions alone are not group commits), LOG_P50 and LOG_P99 (upper bounds
# of the commit-latency buckets, seconds, or nan/+Inf).
# shellcheck disable=SC2034  # the globals are for the caller
log_figures() {
  local m=$1
  LOG_COMMITS=$(metric_sum "$m" botgate_log_commits_total)
  LOG_EVENT_COMMITS=$(metric_sum "$m" botgate_log_event_commits_total)
  LOG_SYNCS=$(metric_sum "$m" botgate_log_syncs_total)
  LOG_EVENTS=$(metric_sum "$m" botgate_log_committed_events_total)
  LOG_ERRORS=$(metric_sum "$m" botgate_log_errors_total)
  LOG_PER_COMMIT=$(awk -v e="$LOG_EVENTS" -v c="$LOG_EVENT_COMMITS" \
    'BEGIN { if (c > 0) printf "%.2f", e / c; else print "nan" }')
  LOG_P50=$(histogram_quantile "$m" botgate_log_commit_seconds 0.50)
  LOG_P99=$(histogram_quantile "$m" botgate_log_commit_seconds 0.99)
}

# print_log_summary [FILE]: scrapes botgate's /metrics (BOTGATE_PORT) into FILE (default
# $TMP/metrics.txt) and prints the durable log summary of bench/README.md, or with JSON=1 its
# {"durable_log":{...}} line. Reads FSYNC. Sets the LOG_* globals of log_figures; when the
# scrape fails it says so on stderr, leaves LOG_COMMITS empty and still returns 0.
print_log_summary() {
  local m=${1:-$TMP/metrics.txt}
  LOG_COMMITS=""
  if ! scrape_metrics "$BOTGATE_PORT" >"$m"; then
    bench_msg "could not scrape http://127.0.0.1:$BOTGATE_PORT/metrics"
    return 0
  fi
  log_figures "$m"
  if [[ ${JSON:-0} == 1 ]]; then
    # Bounds in seconds as JSON numbers; null when there is no bound (no commits, or +Inf).
    local j50=$LOG_P50 j99=$LOG_P99 per=$LOG_PER_COMMIT
    [[ $j50 == nan || $j50 == +Inf ]] && j50=null
    [[ $j99 == nan || $j99 == +Inf ]] && j99=null
    [[ $per == nan ]] && per=null
    printf '{"durable_log":{"fsync":"%s","commits":%s,"event_commits":%s,"syncs":%s,"committed_events":%s,"events_per_commit":%s,"log_errors":%s,"commit_p50_le_s":%s,"commit_p99_le_s":%s}}\n' \
      "$FSYNC" "$LOG_COMMITS" "$LOG_EVENT_COMMITS" "$LOG_SYNCS" "$LOG_EVENTS" "$per" \
      "$LOG_ERRORS" "$j50" "$j99"
  else
    echo "durable log (fsync=$FSYNC)"
    printf '  commits          %s (%s with events)\n' "$LOG_COMMITS" "$LOG_EVENT_COMMITS"
    printf '  syncs            %s\n' "$LOG_SYNCS"
    printf '  committed events %s\n' "$LOG_EVENTS"
    printf '  events/commit    %s (events per commit that carried events)\n' "$LOG_PER_COMMIT"
    printf '  log errors       %s\n' "$LOG_ERRORS"
    printf '  commit latency   p50 <= %s ms, p99 <= %s ms (upper bounds of the histogram buckets)\n' \
      "$(sec_to_ms "$LOG_P50")" "$(sec_to_ms "$LOG_P99")"
  fi
}

# seconds (or +Inf/nan) -> milliseconds, for printing a bucket bound.
sec_to_ms() {
  case $1 in
    nan | +Inf) echo "$1" ;;
    *) awk -v s="$1" 'BEGIN { printf "%g", s * 1000 }' ;;
  esac
}

# write_config FILE SINK_PORT [EXTRA_LINES...]: the botgate config both scripts run: source
# "bench" (secret bench-secret) routed to one target "sink" on 127.0.0.1:SINK_PORT. Reads
# LOG_LEVEL, FSYNC, COMMIT_INTERVAL (botgate's default when unset), SHARDS,
# TARGET_CONNECTIONS and PIPELINE. Each extra argument is one more
# line of [queue] (or of a section it opens, e.g. "[backoff]"). dir = "queue" is relative to
# the config file, so the queue lives next to FILE.
# ROUTING_TOML, when set and not empty, replaces the pool and its one target: it must define
# the pool "sinks" and its [[targets]] (SINK_PORT is then unused). failover.sh uses it.
# SOURCES_TOML, when set and not empty, is written after the "bench" source: more
# [[sources]] (wechat.sh adds its wechat source there).
write_config() {
  local file=$1 sink_port=$2
  shift 2
  {
    cat <<EOF
[server]
listen = "127.0.0.1:0"
io_threads = ${IO_THREADS:-1}
max_body = "64KiB"
[log]
level = "$LOG_LEVEL"
[actors]
threads = ${ACTOR_THREADS:-1}
[queue]
dir = "queue"
fsync = "$FSYNC"
shards = $SHARDS
EOF
    [[ -z ${COMMIT_INTERVAL:-} ]] || printf 'commit_interval = "%s"\n' "$COMMIT_INTERVAL"
    printf '%s\n' "$@"
    cat <<EOF
[[sources]]
name = "bench"
secret = "bench-secret"
route = "sinks"
EOF
    [[ -z ${SOURCES_TOML:-} ]] || printf '%s\n' "$SOURCES_TOML"
    if [[ -n ${ROUTING_TOML:-} ]]; then
      printf '%s\n' "$ROUTING_TOML"
    else
      cat <<EOF
[[pools]]
name = "sinks"
policy = "round-robin"
targets = ["sink"]
[[targets]]
name = "sink"
url = "http://127.0.0.1:$sink_port/events"
max_connections = $TARGET_CONNECTIONS
pipeline = $PIPELINE
EOF
    fi
  } >"$file"
}
