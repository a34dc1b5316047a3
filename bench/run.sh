#!/usr/bin/env bash
# End-to-end benchmark: loadgen -> botgate -> sink, all on 127.0.0.1 with ephemeral ports.
# Builds nothing: expects botgate, bench/loadgen and bench/sink under $BUILD_DIR.
# Extra arguments are passed to loadgen (e.g. --pipeline 4 --threads 1).
# See bench/README.md for the knobs and what the figures mean.
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

EVENTS=${EVENTS:-200000}
CONNECTIONS=${CONNECTIONS:-64}
CONVERSATIONS=${CONVERSATIONS:-1000}
DURATION=${DURATION:-120}            # loadgen --duration (seconds of sending, at most)
SINK_IDLE=${SINK_IDLE:-10}           # sink exits this long after its last event
SINK_WAIT=${SINK_WAIT:-60}           # after loadgen, wait at most this long for the sink
LOG_LEVEL=${LOG_LEVEL:-info}         # only lifecycle lines are logged at info
SINK_THREADS=${SINK_THREADS:-1}
TARGET_CONNECTIONS=${TARGET_CONNECTIONS:-16}  # [[targets]] max_connections toward the sink
PIPELINE=${PIPELINE:-16}             # [[targets]] pipeline toward the sink
FSYNC=${FSYNC:-batch}                # [queue] fsync: batch, always or none
SHARDS=${SHARDS:-4}                  # [queue] shards
JSON=${JSON:-0}                      # 1: loadgen, sink and the log summary print one JSON line each

bench_binaries
bench_tmp

json_flag=()
[[ $JSON == 1 ]] && json_flag=(--json)

# ---- sink
start_sink 0 "$TMP/sink.out" --expect "$EVENTS" --idle-exit "$SINK_IDLE" --threads "$SINK_THREADS" \
  "${json_flag[@]}"

# ---- botgate
CONFIG=$TMP/botgate.toml
write_config "$CONFIG" "$SINK_PORT" "max_pending = 100000"
# dir = "queue" is relative to the config file: $TMP/queue, removed with $TMP.

start_botgate "$CONFIG" botgate

bench_msg "sink port=$SINK_PORT botgate port=$BOTGATE_PORT events=$EVENTS connections=$CONNECTIONS conversations=$CONVERSATIONS fsync=$FSYNC"

# ---- load, then delivery
run_loadgen --host 127.0.0.1 --port "$BOTGATE_PORT" --source bench --secret bench-secret \
  --events "$EVENTS" --connections "$CONNECTIONS" --conversations "$CONVERSATIONS" \
  --duration "$DURATION" "${json_flag[@]}" "$@"
wait_sink

cat "$TMP/loadgen.out"
grep -v '^listening port=' "$TMP/sink.out" || true

# ---- durable log figures, from botgate's /metrics
print_log_summary() {
  local m=$TMP/metrics.txt
  if ! scrape_metrics "$BOTGATE_PORT" >"$m"; then
    bench_msg "could not scrape http://127.0.0.1:$BOTGATE_PORT/metrics"
    return 0
  fi
  local commits event_commits syncs events errors per p50 p99
  commits=$(metric_sum "$m" botgate_log_commits_total)
  event_commits=$(metric_sum "$m" botgate_log_event_commits_total)
  syncs=$(metric_sum "$m" botgate_log_syncs_total)
  events=$(metric_sum "$m" botgate_log_committed_events_total)
  errors=$(metric_sum "$m" botgate_log_errors_total)
  # Per commit that carried events: commits of completions alone are not group commits.
  per=$(awk -v e="$events" -v c="$event_commits" 'BEGIN { if (c > 0) printf "%.2f", e / c; else print "nan" }')
  p50=$(histogram_quantile "$m" botgate_log_commit_seconds 0.50)
  p99=$(histogram_quantile "$m" botgate_log_commit_seconds 0.99)
  if [[ $JSON == 1 ]]; then
    # Bounds in seconds as JSON numbers; null when there is no bound (no commits, or +Inf).
    local j50=$p50 j99=$p99
    [[ $j50 == nan || $j50 == +Inf ]] && j50=null
    [[ $j99 == nan || $j99 == +Inf ]] && j99=null
    [[ $per == nan ]] && per=null
    printf '{"durable_log":{"fsync":"%s","commits":%s,"event_commits":%s,"syncs":%s,"committed_events":%s,"events_per_commit":%s,"log_errors":%s,"commit_p50_le_s":%s,"commit_p99_le_s":%s}}\n' \
      "$FSYNC" "$commits" "$event_commits" "$syncs" "$events" "$per" "$errors" "$j50" "$j99"
  else
    echo "durable log (fsync=$FSYNC)"
    printf '  commits          %s (%s with events)\n' "$commits" "$event_commits"
    printf '  syncs            %s\n' "$syncs"
    printf '  committed events %s\n' "$events"
    printf '  events/commit    %s (events per commit that carried events)\n' "$per"
    printf '  log errors       %s\n' "$errors"
    printf '  commit latency   p50 <= %s ms, p99 <= %s ms (upper bounds of the histogram buckets)\n' \
      "$(sec_to_ms "$p50")" "$(sec_to_ms "$p99")"
  fi
}
print_log_summary

# ---- stop botgate
stop_botgate "$BOTGATE_PID" "$BOTGATE_ERR"
exit "$LOADGEN_RC"
