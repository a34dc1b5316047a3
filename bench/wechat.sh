#!/usr/bin/env bash
# Encrypted WeChat callbacks end to end: loadgen --wechat-source -> botgate (a wechat source in
# safe mode) -> sink, all on 127.0.0.1 with ephemeral ports. Like run.sh, but every event is an
# AES-encrypted Official Account callback that botgate verifies, decrypts and parses.
# Builds nothing: expects botgate, bench/loadgen and bench/sink under $BUILD_DIR.
# Extra arguments are passed to loadgen (e.g. --pipeline 4).
# Checks that the sink got every accepted event; exits 1 when it did not.
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
LOG_LEVEL=${LOG_LEVEL:-info}         # only lifecycle lines (and rejected callbacks) at info
SINK_THREADS=${SINK_THREADS:-1}
TARGET_CONNECTIONS=${TARGET_CONNECTIONS:-16}  # [[targets]] max_connections toward the sink
PIPELINE=${PIPELINE:-16}             # [[targets]] pipeline toward the sink
FSYNC=${FSYNC:-batch}                # [queue] fsync: batch, always or none
SHARDS=${SHARDS:-4}                  # [queue] shards
JSON=${JSON:-0}                      # 1: the summaries as JSON lines
CHECK_IDS=${CHECK_IDS:-0}            # 1: compare the accepted MsgIds with the sink's keys, one by one
WX_SOURCE=${WX_SOURCE:-wx}           # the wechat source: POST /wechat/$WX_SOURCE
WX_TOKEN=${WX_TOKEN:-bench-token}
WX_AES_KEY=${WX_AES_KEY:-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG}
WX_APP_ID=${WX_APP_ID:-wxbench0000000001}

bench_binaries
bench_tmp

# CHECK_IDS costs the sink one write(2) per event (--keys-file), so it is off for the figures.
sink_ids=() loadgen_ids=()
if [[ $CHECK_IDS == 1 ]]; then
  sink_ids=(--keys-file "$TMP/sink.keys")
  loadgen_ids=(--ids-file "$TMP/accepted.ids")
fi

# ---- sink (summary as JSON: the script reads it)
start_sink 0 "$TMP/sink.out" --expect "$EVENTS" --idle-exit "$SINK_IDLE" --threads "$SINK_THREADS" \
  --json "${sink_ids[@]}"

# ---- botgate: run.sh's config plus the wechat source, routed to the sink's pool
CONFIG=$TMP/botgate.toml
SOURCES_TOML="[[sources]]
name = \"$WX_SOURCE\"
kind = \"wechat\"
token = \"$WX_TOKEN\"
encoding_aes_key = \"$WX_AES_KEY\"
app_id = \"$WX_APP_ID\"
route = \"sinks\"" write_config "$CONFIG" "$SINK_PORT" "max_pending = 100000"

start_botgate "$CONFIG" botgate

bench_msg "sink port=$SINK_PORT botgate port=$BOTGATE_PORT events=$EVENTS connections=$CONNECTIONS conversations=$CONVERSATIONS fsync=$FSYNC source=/wechat/$WX_SOURCE"

# ---- load, then delivery
run_loadgen --host 127.0.0.1 --port "$BOTGATE_PORT" --wechat-source "$WX_SOURCE" \
  --wechat-token "$WX_TOKEN" --wechat-aes-key "$WX_AES_KEY" --wechat-app-id "$WX_APP_ID" \
  --events "$EVENTS" --connections "$CONNECTIONS" --conversations "$CONVERSATIONS" \
  --duration "$DURATION" --json "${loadgen_ids[@]}" "$@"
wait_sink

# ---- durable log (printed below) and botgate's own counters, from /metrics
LOG_TEXT=$(print_log_summary "$TMP/metrics.txt")  # a subshell: read the figures again below
LATE_ACKS="?" REJECTED="?"
if [[ -s $TMP/metrics.txt ]]; then
  log_figures "$TMP/metrics.txt"
  LATE_ACKS=$(metric_sum "$TMP/metrics.txt" botgate_late_acks_total)
  REJECTED=$(metric_sum "$TMP/metrics.txt" botgate_events_rejected_total)
fi

# ---- the figures
lg=$TMP/loadgen.out sk=$TMP/sink.json
grep -v '^listening port=' "$TMP/sink.out" >"$sk" || true
SENT=$(json_get "$lg" sent)
ACCEPTED=$(json_get "$lg" ok_2xx)
RATE=$(json_get "$lg" accepted_per_s)
ELAPSED=$(json_get "$lg" elapsed_s)
P50=$(json_get "$lg" ack_p50_us) P99=$(json_get "$lg" ack_p99_us)
P999=$(json_get "$lg" ack_p999_us) PMAX=$(json_get "$lg" ack_max_us)
NOT_SUCCESS=$(json_get "$lg" not_success)
NON2XX=$(json_get "$lg" non_2xx)
BY_STATUS=$(grep -o '"non_2xx_by_status":{[^}]*}' "$lg" | sed 's/^[^{]*{//; s/}$//; s/"//g; s/:/=/g; s/,/ /g' || true)
ERRORS=$(json_get "$lg" errors) UNANSWERED=$(json_get "$lg" unanswered)
UNIQUE=$(json_get "$sk" unique) DUPLICATES=$(json_get "$sk" duplicates)
SINK_RATE=$(json_get "$sk" unique_per_s)
[[ -n $ACCEPTED && -n $UNIQUE ]] || bench_die "no summary from loadgen or the sink (see $TMP, KEEP_TMP=1)"

# Every accepted event must be at the sink. By count: the sink's unique events are at least the
# accepted ones (it may also have events botgate stored but answered too late or not at all).
# With CHECK_IDS=1: each accepted MsgId is among the sink's keys.
MISSING=$((ACCEPTED > UNIQUE ? ACCEPTED - UNIQUE : 0))
CHECK_HOW="by count"
if [[ $CHECK_IDS == 1 ]]; then
  touch "$TMP/sink.keys" "$TMP/accepted.ids"
  awk '{ print $1 }' "$TMP/sink.keys" | sort -u >"$TMP/sink.sorted"
  sort -u "$TMP/accepted.ids" >"$TMP/accepted.sorted"
  MISSING=$(comm -23 "$TMP/accepted.sorted" "$TMP/sink.sorted" | wc -l)
  CHECK_HOW="by MsgId"
fi

us_to_ms() { awk -v u="$1" 'BEGIN { printf "%.1f", u / 1000 }'; }
if [[ $JSON == 1 ]]; then
  cat "$lg" "$sk"
  printf '%s\n' "$LOG_TEXT"
  printf '{"wechat":{"source":"%s","events":%s,"sent":%s,"accepted":%s,"accepted_per_s":%s,"ack_p50_us":%s,"ack_p99_us":%s,"events_per_commit":%s,"sink_unique":%s,"missing":%s,"check":"%s","late_acks":%s,"rejected":%s}}\n' \
    "$WX_SOURCE" "$EVENTS" "$SENT" "$ACCEPTED" "$RATE" "$P50" "$P99" \
    "$([[ ${LOG_PER_COMMIT:-nan} == nan ]] && echo null || echo "$LOG_PER_COMMIT")" \
    "$UNIQUE" "$MISSING" "${CHECK_HOW#by }" "$LATE_ACKS" "$REJECTED"
else
  echo "wechat callbacks (safe mode, /wechat/$WX_SOURCE; events=$EVENTS connections=$(json_get "$lg" connections) pipeline=$(json_get "$lg" pipeline) fsync=$FSYNC shards=$SHARDS)"
  printf '  accepted         %s of %s sent (200 "success")\n' "$ACCEPTED" "$SENT"
  printf '  not accepted     %s 2xx without "success", %s non-2xx%s, %s connection errors, %s unanswered\n' \
    "${NOT_SUCCESS:-0}" "$NON2XX" "${BY_STATUS:+ ($BY_STATUS)}" "$ERRORS" "$UNANSWERED"
  printf '  accepted/s       %.0f (%.3f s, first send to last answer)\n' "$RATE" "$ELAPSED"
  printf '  ack latency      p50 %s ms, p99 %s ms, p999 %s ms, max %s ms\n' \
    "$(us_to_ms "$P50")" "$(us_to_ms "$P99")" "$(us_to_ms "$P999")" "$(us_to_ms "$PMAX")"
  printf '  events/fsync     %s (events per commit that carried events; one fdatasync each)\n' \
    "${LOG_PER_COMMIT:-?}"
  printf '  sink             %s unique, %s duplicates, %.0f/s first to last event\n' \
    "$UNIQUE" "$DUPLICATES" "$SINK_RATE"
  if ((MISSING == 0)); then
    printf '  check            every accepted event reached the sink (%s)\n' "$CHECK_HOW"
  else
    printf '  check            FAILED: %s accepted events not at the sink (%s)\n' "$MISSING" "$CHECK_HOW"
  fi
  printf '  botgate          %s late acks (acked at ack_deadline before stored), %s rejected callbacks\n' \
    "$LATE_ACKS" "$REJECTED"
  printf '%s\n' "$LOG_TEXT"
fi

# ---- stop botgate
stop_botgate "$BOTGATE_PID" "$BOTGATE_ERR"
((MISSING == 0)) || exit 1
exit "$LOADGEN_RC"
