#!/usr/bin/env bash
# Backlog benchmark: N events held in botgate's durable queue while the backend is down, with
# memory bounded by [queue] memory_window; then a crash (SIGKILL), a restart on the same queue
# directory, and the time to recover and to replay the whole backlog to the sink.
# All on 127.0.0.1. Builds nothing. See bench/README.md ("backlog.sh") for the knobs.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=${N:-1000000}
SHARDS=${SHARDS:-4}
MAX_PENDING=${MAX_PENDING:-$((N / SHARDS + N / SHARDS / 2 + 1000))}  # per shard; hashing is uneven
MEMORY_WINDOW=${MEMORY_WINDOW:-10000}  # [queue] memory_window: events per shard held in memory
FSYNC=${FSYNC:-batch}                  # [queue] fsync
BACKOFF_CAP=${BACKOFF_CAP:-5s}         # [backoff] cap: longest pause between retries
CONNECTIONS=${CONNECTIONS:-64}
CONVERSATIONS=${CONVERSATIONS:-1000}
DURATION=${DURATION:-900}              # loadgen --duration
SINK_WAIT=${SINK_WAIT:-1800}           # after the restart, wait at most this long for N at the sink
RECOVERY_TIMEOUT=${RECOVERY_TIMEOUT:-600}  # after the restart, wait at most this long for the port
SINK_THREADS=${SINK_THREADS:-1}
TARGET_CONNECTIONS=${TARGET_CONNECTIONS:-16}
PIPELINE=${PIPELINE:-16}
JSON=${JSON:-0}                        # 1: print the summary as one JSON line
LOG_LEVEL=info                         # the "shard log recovered" lines are logged at info

bench_binaries
bench_tmp

# ---- a port for the sink, which starts only after the crash: until then every delivery
# attempt is refused, so the whole backlog stays in the queue.
SINK_PORT=${SINK_PORT:-$(free_port)} || bench_die "no free port for the sink"

QUEUE_DIR=$TMP/queue
CONFIG=$TMP/botgate.toml
write_config "$CONFIG" "$SINK_PORT" \
  "memory_window = $MEMORY_WINDOW" \
  "max_pending = $MAX_PENDING" \
  "max_attempts = 1000000000" \
  'max_age = "48h"' \
  "[backoff]" \
  'base = "100ms"' \
  "cap = \"$BACKOFF_CAP\""
# dir = "queue" is relative to the config file: $QUEUE_DIR, removed with $TMP.

# Polls /metrics until the sum of botgate_queue_depth is WANT (at most TIMEOUT s). Leaves the
# last scrape in FILE; sets DEPTH (the sum) and DEPTHS (per shard, space-separated).
wait_depth() {
  local file=$1 want=$2 timeout=$3
  local deadline=$((SECONDS + timeout))
  DEPTH=-1
  while :; do
    if scrape_metrics "$BOTGATE_PORT" >"$file"; then
      DEPTH=$(metric_sum "$file" botgate_queue_depth)
      DEPTHS=$(awk '/^botgate_queue_depth\{/ { printf "%s%s", sep, $NF; sep = " " }' "$file")
      ((DEPTH == want)) && return 0
    fi
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# A value from a one-line JSON object (numbers, booleans, plain strings).
json_get() { grep -o "\"$2\":\"\\?[^,}\"]*" "$1" | head -n1 | sed 's/^[^:]*:"\{0,1\}//'; }

# ---- 1. botgate with the target down; fill the queue
start_botgate "$CONFIG" botgate-1
bench_msg "N=$N shards=$SHARDS memory_window=$MEMORY_WINDOW max_pending=$MAX_PENDING fsync=$FSYNC" \
  "botgate port=$BOTGATE_PORT sink port=$SINK_PORT (not started yet)"

run_loadgen --host 127.0.0.1 --port "$BOTGATE_PORT" --source bench --secret bench-secret \
  --events "$N" --connections "$CONNECTIONS" --conversations "$CONVERSATIONS" \
  --duration "$DURATION" --json
((LOADGEN_RC == 0)) || bench_die "loadgen failed"
ACKED=$(json_get "$TMP/loadgen.out" ok_2xx)
INGEST_S=$(json_get "$TMP/loadgen.out" elapsed_s)
INGEST_RATE=$(json_get "$TMP/loadgen.out" accepted_per_s)
if [[ $ACKED != "$N" ]]; then
  cat "$TMP/loadgen.out" >&2
  bench_die "only $ACKED of $N events acked (503: a shard is full; raise MAX_PENDING)"
fi

# ---- 2. the backlog: queue depth, memory, disk
if ! wait_depth "$TMP/metrics-1.txt" "$N" 10; then
  bench_die "sum of botgate_queue_depth is $DEPTH ($DEPTHS), expected $N"
fi
HELD_DEPTHS=$DEPTHS
HELD_RSS_KB=$(proc_status_kb "$BOTGATE_PID" VmRSS)
HELD_HWM_KB=$(proc_status_kb "$BOTGATE_PID" VmHWM)
HELD_DISK_B=$(du -sb "$QUEUE_DIR" | cut -f1)
RETRIES=$(metric_sum "$TMP/metrics-1.txt" botgate_delivery_retries_total)

# ---- 3. crash
kill_botgate "$BOTGATE_PID"
report_log_problems "$BOTGATE_ERR"

# ---- 4. the sink comes up, botgate restarts on the same queue directory
start_sink "$SINK_PORT" "$TMP/sink.out" --expect "$N" --threads "$SINK_THREADS" --json
start_botgate "$CONFIG" botgate-2 "$RECOVERY_TIMEOUT"
T0_MS=$BOTGATE_T0_MS

# (a) exec -> `listening`, from the line's own timestamp (ts=...Z, ms) when it parses.
listen_line=$(grep -m1 'msg=listening' "$BOTGATE_ERR" || true)
RECOVERY_MS=$((BOTGATE_UP_MS - T0_MS))
if [[ $listen_line =~ ts=([0-9T:.-]+Z) ]] &&
  ts_ms=$(date -u -d "${BASH_REMATCH[1]}" +%s%3N 2>/dev/null); then
  RECOVERY_MS=$((ts_ms - T0_MS))
fi
read -r RECOVERED_PENDING RECOVERED_RECORDS SHARD_MS_SUM SHARD_MS_MAX < <(
  awk '/msg="shard log recovered"/ {
         for (i = 1; i <= NF; i++) {
           split($i, kv, "=")
           if (kv[1] == "pending") p += kv[2]
           if (kv[1] == "records") r += kv[2]
           if (kv[1] == "ms") { t += kv[2]; if (kv[2] > m) m = kv[2] }
         }
       }
       END { print p + 0, r + 0, t + 0, m + 0 }' "$BOTGATE_ERR")

# (b) exec -> N unique events at the sink (the sink exits at --expect).
REPLAY_DONE=1
deadline=$((SECONDS + SINK_WAIT))
while kill -0 "$SINK_PID" 2>/dev/null; do
  if ! kill -0 "$BOTGATE_PID" 2>/dev/null; then
    bench_msg "botgate exited during the replay"
    REPLAY_DONE=0
    break
  fi
  if ((SECONDS >= deadline)); then
    bench_msg "the sink has not got $N events after ${SINK_WAIT}s; stopping it"
    REPLAY_DONE=0
    break
  fi
  sleep 0.02
done
REPLAY_MS=$(($(now_ms) - T0_MS))
kill -TERM "$SINK_PID" 2>/dev/null || true  # no-op when it exited at --expect
reap "$SINK_PID"
SINK_UNIQUE=$(json_get "$TMP/sink.out" unique)
SINK_DUPS=$(json_get "$TMP/sink.out" duplicates)
SINK_STOP=$(json_get "$TMP/sink.out" stop)
SINK_WINDOW_S=$(json_get "$TMP/sink.out" window_s)
SINK_RATE=$(json_get "$TMP/sink.out" unique_per_s)
[[ $SINK_STOP == expect ]] || REPLAY_DONE=0

# (c) memory after the replay, and what botgate counted.
AFTER_HWM_KB=$(proc_status_kb "$BOTGATE_PID" VmHWM || echo 0)
AFTER_RSS_KB=$(proc_status_kb "$BOTGATE_PID" VmRSS || echo 0)
wait_depth "$TMP/metrics-2.txt" 0 10 || true
AFTER_DEPTH=$DEPTH
RECOVERED_TOTAL=$(metric_sum "$TMP/metrics-2.txt" botgate_events_recovered_total)
DELIVERED_TOTAL=$(metric_sum "$TMP/metrics-2.txt" botgate_events_delivered_total)

stop_botgate "$BOTGATE_PID" "$BOTGATE_ERR"
AFTER_DISK_B=$(du -sb "$QUEUE_DIR" | cut -f1)

# ---- summary
mb() { kb_to_mb "$1"; }
bytes_mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
secs() { awk -v ms="$1" 'BEGIN { printf "%.3f", ms / 1000 }'; }
fix() { awk -v x="$1" -v d="$2" 'BEGIN { printf "%.*f", d, x }'; }
rate() { awk -v n="$1" -v ms="$2" 'BEGIN { if (ms > 0) printf "%.0f", n * 1000 / ms; else print 0 }'; }
SINK_UNIQUE=${SINK_UNIQUE:-0} SINK_DUPS=${SINK_DUPS:-0} SINK_WINDOW_S=${SINK_WINDOW_S:-0}
SINK_RATE=${SINK_RATE:-0}

if [[ $JSON == 1 ]]; then
  printf '{"backlog":{"events":%s,"shards":%s,"memory_window":%s,"max_pending":%s,"fsync":"%s",' \
    "$N" "$SHARDS" "$MEMORY_WINDOW" "$MAX_PENDING" "$FSYNC"
  printf '"ingest_s":%s,"ingest_per_s":%s,"held_depth":%s,"held_rss_mb":%s,"held_hwm_mb":%s,' \
    "$(fix "$INGEST_S" 3)" "$(fix "$INGEST_RATE" 0)" "$N" "$(mb "$HELD_RSS_KB")" "$(mb "$HELD_HWM_KB")"
  printf '"held_disk_bytes":%s,"retries":%s,' "$HELD_DISK_B" "$RETRIES"
  printf '"recovery_s":%s,"recovered_pending":%s,"recovered_records":%s,"recovery_shards_ms":%s,' \
    "$(secs "$RECOVERY_MS")" "$RECOVERED_PENDING" "$RECOVERED_RECORDS" "$SHARD_MS_SUM"
  printf '"replay_complete":%s,"replay_s":%s,"replay_per_s":%s,"sink_unique":%s,"sink_duplicates":%s,' \
    "$([[ $REPLAY_DONE == 1 ]] && echo true || echo false)" "$(secs "$REPLAY_MS")" \
    "$(rate "$SINK_UNIQUE" "$REPLAY_MS")" "$SINK_UNIQUE" "$SINK_DUPS"
  printf '"sink_window_s":%s,"sink_per_s":%s,"after_hwm_mb":%s,"after_rss_mb":%s,"after_depth":%s,' \
    "$(fix "$SINK_WINDOW_S" 3)" "$(fix "$SINK_RATE" 0)" "$(mb "$AFTER_HWM_KB")" "$(mb "$AFTER_RSS_KB")" \
    "$AFTER_DEPTH"
  printf '"events_recovered_total":%s,"events_delivered_total":%s,"after_disk_bytes":%s}}\n' \
    "$RECOVERED_TOTAL" "$DELIVERED_TOTAL" "$AFTER_DISK_B"
else
  echo "backlog summary (N=$N, shards=$SHARDS, memory_window=$MEMORY_WINDOW, fsync=$FSYNC)"
  printf '  ingest        %s acked in %s s (%s/s) with the sink down\n' \
    "$ACKED" "$(fix "$INGEST_S" 3)" "$(fix "$INGEST_RATE" 0)"
  printf '  held          queue depth %s (per shard: %s), %s retries meanwhile\n' \
    "$N" "$HELD_DEPTHS" "$RETRIES"
  printf '  held memory   VmRSS %s MB, VmHWM %s MB; queue dir %s MB (du -sb)\n' \
    "$(mb "$HELD_RSS_KB")" "$(mb "$HELD_HWM_KB")" "$(bytes_mb "$HELD_DISK_B")"
  printf '  crash         SIGKILL, then the sink starts on port %s and botgate restarts\n' "$SINK_PORT"
  printf '  recovery      %s s exec -> listening; recovered pending=%s records=%s (shards: %s ms, slowest %s ms)\n' \
    "$(secs "$RECOVERY_MS")" "$RECOVERED_PENDING" "$RECOVERED_RECORDS" "$SHARD_MS_SUM" "$SHARD_MS_MAX"
  printf '  replay        %s s exec -> %s unique at the sink (%s/s), %s duplicates, sink stop=%s\n' \
    "$(secs "$REPLAY_MS")" "$SINK_UNIQUE" "$(rate "$SINK_UNIQUE" "$REPLAY_MS")" "$SINK_DUPS" \
    "${SINK_STOP:-?}"
  printf '  sink window   %s s first -> last event (%s/s)\n' "$(fix "$SINK_WINDOW_S" 3)" "$(fix "$SINK_RATE" 0)"
  printf '  after replay  VmHWM %s MB, VmRSS %s MB; queue depth %s; recovered_total %s; queue dir %s MB\n' \
    "$(mb "$AFTER_HWM_KB")" "$(mb "$AFTER_RSS_KB")" "$AFTER_DEPTH" "$RECOVERED_TOTAL" \
    "$(bytes_mb "$AFTER_DISK_B")"
fi

if [[ $REPLAY_DONE != 1 || $RECOVERED_PENDING != "$N" ]]; then
  bench_msg "FAILED: replay_complete=$REPLAY_DONE recovered pending=$RECOVERED_PENDING (expected $N)"
  exit 1
fi
