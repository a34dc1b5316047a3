#!/usr/bin/env bash
# Failover scenario: three sinks behind one round-robin pool (http probe + outlier ejection),
# steady paced load from loadgen, and after BEFORE seconds one sink is killed with SIGKILL while
# the load goes on. Reports:
#   - events lost: acked by botgate (loadgen --ids-file) but answered 200 by no sink (every
#     sink writes a line per answered POST to its --keys-file, the killed one included, up to
#     its death);
#   - the time from the kill until no new delivery attempt goes to the dead sink (botgate's
#     per-target attempt counter, polled every POLL_MS; and its debug log of failed attempts),
#     and when botgate logged `target ejected` / `target unhealthy` for it;
#   - end-to-end latency (loadgen send -> first delivery at any sink) of the events sent
#     before the kill, in the BUMP seconds after it, and after that.
# All on 127.0.0.1 with ephemeral ports. Builds nothing. See bench/README.md ("failover.sh").
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RATE=${RATE:-2000}                  # loadgen --rate: events/s, paced
BEFORE=${BEFORE:-5}                 # seconds of load before the kill
AFTER=${AFTER:-10}                  # seconds of load after the kill
BUMP=${BUMP:-2}                     # "just after the kill" window for the latency figures
CONNECTIONS=${CONNECTIONS:-16}      # loadgen connections
CONVERSATIONS=${CONVERSATIONS:-1000}
KILL=${KILL:-s2}                    # which sink dies: s1, s2 or s3
PROBE_INTERVAL=${PROBE_INTERVAL:-200ms}
PROBE_TIMEOUT=${PROBE_TIMEOUT:-100ms}
FALL=${FALL:-3}
RISE=${RISE:-2}
CONSECUTIVE_FAILURES=${CONSECUTIVE_FAILURES:-5}
BASE_EJECTION=${BASE_EJECTION:-30s}
MAX_EJECTION_PERCENT=${MAX_EJECTION_PERCENT:-10}  # 3 targets: at most 1 ejected
TARGET_CONNECTIONS=${TARGET_CONNECTIONS:-16}
PIPELINE=${PIPELINE:-1}
POLICY=${POLICY:-round-robin}
POLL_MS=${POLL_MS:-50}              # /metrics poll interval for the attempt counter
DRAIN_WAIT=${DRAIN_WAIT:-60}        # after the load, wait at most this long for an empty queue
FSYNC=${FSYNC:-batch}
SHARDS=${SHARDS:-4}
LOG_LEVEL=${LOG_LEVEL:-debug}       # debug: each failed attempt is logged with its target
JSON=${JSON:-0}

bench_binaries
bench_tmp

case $KILL in s1 | s2 | s3) ;; *) bench_die "KILL must be s1, s2 or s3" ;; esac

# ---- three sinks, each writing its answered keys
declare -A SPID SPORT
for s in s1 s2 s3; do
  start_sink 0 "$TMP/$s.out" --name "$s" --json --keys-file "$TMP/$s.keys"
  SPID[$s]=$SINK_PID
  SPORT[$s]=$SINK_PORT
done

# ---- botgate: one pool over the three, probed and with outlier ejection
target_toml() {
  cat <<EOF
[[targets]]
name = "$1"
url = "http://127.0.0.1:$2/events"
max_connections = $TARGET_CONNECTIONS
pipeline = $PIPELINE
[targets.probe]
kind = "http"
path = "/healthz"
interval = "$PROBE_INTERVAL"
timeout = "$PROBE_TIMEOUT"
rise = $RISE
fall = $FALL
EOF
}
ROUTING_TOML=$(
  cat <<EOF
[[pools]]
name = "sinks"
policy = "$POLICY"
targets = ["s1", "s2", "s3"]
[pools.outlier]
consecutive_failures = $CONSECUTIVE_FAILURES
base_ejection_time = "$BASE_EJECTION"
max_ejection_percent = $MAX_EJECTION_PERCENT
EOF
  for s in s1 s2 s3; do target_toml "$s" "${SPORT[$s]}"; done
)
export ROUTING_TOML
CONFIG=$TMP/botgate.toml
write_config "$CONFIG" 0 "max_pending = 100000"
start_botgate "$CONFIG" botgate
bench_msg "botgate port=$BOTGATE_PORT sinks s1=${SPORT[s1]} s2=${SPORT[s2]} s3=${SPORT[s3]};" \
  "rate=$RATE/s before=${BEFORE}s after=${AFTER}s kill=$KILL probe=$PROBE_INTERVAL fall=$FALL" \
  "consecutive_failures=$CONSECUTIVE_FAILURES"

# ---- the doomed sink's attempt counters, polled:
# "UNIX_MS SUCCESSES FAILURES HEALTHY EJECTED" (attempts that ended, by outcome)
poll_target() {
  local m=$TMP/poll.metrics t nap fd
  nap=$(awk -v ms="$POLL_MS" 'BEGIN { printf "%.3f", ms / 1000 }')
  exec {fd}<> <(:)  # read -t on a pipe nobody writes: a sleep without a process per poll
  trap 'exit 0' TERM  # runs once the current child (awk) is done: nothing is orphaned
  while :; do
    t=${EPOCHREALTIME/[.,]/}
    if scrape_metrics "$BOTGATE_PORT" 2 >"$m"; then
      awk -v t=$((10#$t / 1000)) -v want="target=\"$KILL\"" '
        index($1, want) == 0 { next }
        $1 ~ /^botgate_deliveries_total\{/ { if ($1 ~ /outcome="success"/) ok += $NF; else bad += $NF }
        $1 ~ /^botgate_target_healthy\{/ { h = $NF }
        $1 ~ /^botgate_target_ejected\{/ { e = $NF }
        END { printf "%s %d %d %s %s\n", t, ok, bad, h, e }' "$m"
    fi
    read -r -t "$nap" -u "$fd" _ || true
  done
}
poll_target >"$TMP/poll.txt" 2>/dev/null &
POLL_PID=$!
bench_track "$POLL_PID"

# ---- load
EVENTS=$((RATE * (BEFORE + AFTER)))
start_loadgen --host 127.0.0.1 --port "$BOTGATE_PORT" --source bench --secret bench-secret \
  --events "$EVENTS" --rate "$RATE" --connections "$CONNECTIONS" \
  --conversations "$CONVERSATIONS" --duration $((BEFORE + AFTER + 30)) --json \
  --ids-file "$TMP/acked.ids"
LOAD_START_MS=$(now_ms)

sleep "$BEFORE"
t=${EPOCHREALTIME/[.,]/}  # inline, not $(now_ms): no fork between the clock and the kill
KILL_MS=$((10#$t / 1000))
{
  kill -KILL "${SPID[$KILL]}"
  reap "${SPID[$KILL]}"
} 2>/dev/null  # no "Killed" job notice
bench_msg "killed $KILL (pid ${SPID[$KILL]}) at +$((KILL_MS - LOAD_START_MS)) ms"

finish_loadgen
((LOADGEN_RC == 0)) || exit 1
LOAD_END_MS=$(now_ms)

# ---- wait until botgate holds nothing: every acked event delivered (or dead-lettered)
depth=-1
deadline=$((SECONDS + DRAIN_WAIT))
while ((SECONDS < deadline)); do
  if scrape_metrics "$BOTGATE_PORT" >"$TMP/final.metrics"; then
    depth=$(metric_sum "$TMP/final.metrics" botgate_queue_depth)
    [[ $depth == 0 ]] && break
  fi
  sleep 0.2
done
[[ $depth == 0 ]] || bench_msg "queue still holds $depth events after ${DRAIN_WAIT}s"
DRAINED_MS=$(now_ms)

kill -TERM "$POLL_PID" 2>/dev/null || true
reap "$POLL_PID"
for s in s1 s2 s3; do
  [[ $s == "$KILL" ]] && continue
  kill -TERM "${SPID[$s]}" 2>/dev/null || true
  wait_exit "${SPID[$s]}" 10 || kill -KILL "${SPID[$s]}" 2>/dev/null || true
  reap "${SPID[$s]}"
done
stop_botgate "$BOTGATE_PID" "$BOTGATE_ERR"

# ---- analysis
touch "$TMP/s1.keys" "$TMP/s2.keys" "$TMP/s3.keys"
sort -u "$TMP/acked.ids" >"$TMP/acked.sorted"
cat "$TMP/s1.keys" "$TMP/s2.keys" "$TMP/s3.keys" | awk '{ print $1 }' | sort -u >"$TMP/received.sorted"
ACKED=$(wc -l <"$TMP/acked.sorted")
LOST=$(comm -23 "$TMP/acked.sorted" "$TMP/received.sorted" | wc -l)
comm -23 "$TMP/acked.sorted" "$TMP/received.sorted" | head -n 5 >"$TMP/lost.sample"
DELIVERIES=$(cat "$TMP/s1.keys" "$TMP/s2.keys" "$TMP/s3.keys" | wc -l)
DUPLICATES=$((DELIVERIES - $(wc -l <"$TMP/received.sorted")))
PER_SINK=""
for s in s1 s2 s3; do PER_SINK+="$s=$(wc -l <"$TMP/$s.keys") "; done
KILLED_AFTER=$(awk -v k="$KILL_MS" '$2 / 1000 >= k' "$TMP/$KILL.keys" | wc -l)

# From the poll (resolution: one poll cycle, POLL_MS plus the scrape): failed attempts to the
# dead sink (every one is after the kill: it answered all before), the first poll that saw its
# failure counter at its final value, and the last poll that saw its success counter move.
read -r FAILED_ATTEMPTS POLL_FAIL_FINAL_MS POLL_LAST_SUCCESS_MS POLL_GAP_MS < <(awk '
  NR > 1 && $2 != ok { last_ok = $1 }
  NR > 1 && $3 != bad { settled = $1 }
  NR > 1 { gap = $1 - t; if (gap > maxgap) maxgap = gap }
  { t = $1; ok = $2; bad = $3 }
  END { printf "%d %s %s %d\n", bad, (settled ? settled : 0), (last_ok ? last_ok : 0), maxgap }' \
  "$TMP/poll.txt")
rel() { if (($1 > 0)); then echo $(($1 - KILL_MS)); else echo "-"; fi; }
POLL_FAIL_FINAL=$(rel "$POLL_FAIL_FINAL_MS")
POLL_LAST_SUCCESS=$(rel "$POLL_LAST_SUCCESS_MS")

# botgate's log: ISO-8601 UTC ts with ms -> unix ms; the first/last line matching a pattern
# that names the killed target, relative to the kill. "-" when there is none.
log_ms() {
  local which=$1 pattern=$2 line ts
  line=$({ grep -E "$pattern" "$BOTGATE_ERR" || true; } |
    { grep -E "target=\"?$KILL\"?( |$)" || true; } | if [[ $which == first ]]; then
    head -n1
  else
    tail -n1
  fi)
  ts=$(sed -nE 's/.*ts=([0-9T:.-]+Z).*/\1/p' <<<"$line")
  if [[ -z $ts ]]; then
    echo "-"
    return
  fi
  echo $(($(date -u -d "$ts" +%s%3N) - KILL_MS))
}
EJECTED_MS=$(log_ms first 'msg="target ejected"')
UNHEALTHY_MS=$(log_ms first 'msg="target unhealthy"')
# (grep finds nothing -> status 1; with pipefail that would end the script: hence `|| true`.)
REROUTED=$({ grep -E 'msg="in-flight deliveries re-routed"' "$BOTGATE_ERR" || true; } |
  { grep -E "from=\"?$KILL\"?( |$)" || true; } | sed -nE 's/.* count=([0-9]+).*/\1/p' |
  awk '{ s += $1 } END { print s + 0 }')
FIRST_FAILED_MS=$(log_ms first 'msg="delivery failed, will retry"')
LAST_FAILED_MS=$(log_ms last 'msg="delivery failed, will retry"')
LOGGED_FAILURES=$({ grep -E 'msg="delivery failed, will retry"' "$BOTGATE_ERR" || true; } |
  grep -cE "target=\"?$KILL\"?( |$)" || true)
# The events whose attempt to the dead sink failed: their end-to-end latency.
{ grep -E 'msg="delivery failed, will retry"' "$BOTGATE_ERR" || true; } |
  { grep -E "target=\"?$KILL\"?( |$)" || true; } |
  sed -nE 's/.* id=([^ ]+) .*/\1/p' | sort -u >"$TMP/retried.ids"

# End-to-end latency of first deliveries (any sink), by when the event was sent.
latency() {
  # prints: count p50 p99 max (ms) of events sent in [from, to) unix ms
  local from=$1 to=$2
  cat "$TMP/s1.keys" "$TMP/s2.keys" "$TMP/s3.keys" |
    awk '$3 >= 0' | sort -k1,1 -k2,2n | awk '!seen[$1]++' |
    awk -v f="$from" -v t="$to" '{ sent = ($2 - $3) / 1000; if (sent >= f && sent < t) print $3 }' |
    sort -n | awk '
      { v[NR] = $1 }
      END {
        if (NR == 0) { print "0 nan nan nan"; exit }
        r50 = int(0.50 * NR + 0.999999); r99 = int(0.99 * NR + 0.999999)
        printf "%d %.2f %.2f %.2f\n", NR, v[r50] / 1000, v[r99] / 1000, v[NR] / 1000
      }'
}
WARM_MS=$((LOAD_START_MS + 1000))  # the first second warms connections up
read -r N_BEFORE P50_BEFORE P99_BEFORE MAX_BEFORE < <(latency "$WARM_MS" "$KILL_MS")
read -r N_BUMP P50_BUMP P99_BUMP MAX_BUMP < <(latency "$KILL_MS" $((KILL_MS + BUMP * 1000)))
read -r N_AFTER P50_AFTER P99_AFTER MAX_AFTER < <(latency $((KILL_MS + BUMP * 1000)) "$LOAD_END_MS")

# e2e (ms) of the retried events' first deliveries: count and max.
read -r N_RETRIED MAX_RETRIED < <(cat "$TMP/s1.keys" "$TMP/s2.keys" "$TMP/s3.keys" |
  sort -k1,1 -k2,2n | awk '!seen[$1]++' |
  awk 'NR == FNR { want[$1] = 1; next } ($1 in want) && $3 >= 0 { n++; if ($3 > m) m = $3 }
       END { printf "%d %.2f\n", n, m / 1000 }' "$TMP/retried.ids" -)
NON2XX=$({ grep -o '"non_2xx":[0-9]*' "$TMP/loadgen.out" || true; } | cut -d: -f2)
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)

if [[ $JSON == 1 ]]; then
  printf '{"bench":"failover","rate":%s,"before_s":%s,"after_s":%s,"killed":"%s","acked":%s,' \
    "$RATE" "$BEFORE" "$AFTER" "$KILL" "$ACKED"
  printf '"lost":%s,"non_2xx":%s,"deliveries":%s,"duplicates":%s,"killed_answered_after_kill":%s,' \
    "$LOST" "${NON2XX:-0}" "$DELIVERIES" "$DUPLICATES" "$KILLED_AFTER"
  printf '"failed_attempts":%s,"logged_failures":%s,"rerouted":%s,' \
    "$FAILED_ATTEMPTS" "$LOGGED_FAILURES" "$REROUTED"
  printf '"first_failure_ms":"%s","last_failure_ms":"%s","ejected_ms":"%s","unhealthy_ms":"%s",' \
    "$FIRST_FAILED_MS" "$LAST_FAILED_MS" "$EJECTED_MS" "$UNHEALTHY_MS"
  printf '"poll_failures_final_ms":"%s","poll_last_success_ms":"%s","poll_max_gap_ms":%s,' \
    "$POLL_FAIL_FINAL" "$POLL_LAST_SUCCESS" "$POLL_GAP_MS"
  printf '"e2e_before":{"n":%s,"p50_ms":%s,"p99_ms":%s,"max_ms":%s},' \
    "$N_BEFORE" "$P50_BEFORE" "$P99_BEFORE" "$MAX_BEFORE"
  printf '"e2e_bump":{"window_s":%s,"n":%s,"p50_ms":%s,"p99_ms":%s,"max_ms":%s},' \
    "$BUMP" "$N_BUMP" "$P50_BUMP" "$P99_BUMP" "$MAX_BUMP"
  printf '"e2e_after":{"n":%s,"p50_ms":%s,"p99_ms":%s,"max_ms":%s},' \
    "$N_AFTER" "$P50_AFTER" "$P99_AFTER" "$MAX_AFTER"
  printf '"retried":{"n":%s,"max_ms":%s},"drain_ms":%s,"loadavg":"%s"}\n' \
    "$N_RETRIED" "$MAX_RETRIED" "$((DRAINED_MS - LOAD_END_MS))" "$LOADAVG"
else
  echo "failover summary (rate=$RATE/s, $KILL killed at +${BEFORE}s, then ${AFTER}s more load; loadavg $LOADAVG)"
  echo "  acked events      $ACKED (non-2xx answers: ${NON2XX:-0})"
  echo "  lost              $LOST (acked, answered 200 by no sink)"
  echo "  deliveries        $DELIVERIES (${PER_SINK% }), duplicates $DUPLICATES; $KILL answered $KILLED_AFTER after the kill"
  echo "  attempts to $KILL  $FAILED_ATTEMPTS failed after the kill ($LOGGED_FAILURES logged by the shards;" \
    "$REROUTED in flight re-routed)"
  echo "  times after kill  first failure +${FIRST_FAILED_MS} ms, ejected +${EJECTED_MS} ms," \
    "last failed attempt +${LAST_FAILED_MS} ms (log); unhealthy by probe +${UNHEALTHY_MS} ms"
  echo "                    poll: failures final by +${POLL_FAIL_FINAL} ms, last success seen" \
    "+${POLL_LAST_SUCCESS} ms (polls up to ${POLL_GAP_MS} ms apart)"
  echo "  e2e latency ms    sent before the kill:  n=$N_BEFORE p50=$P50_BEFORE p99=$P99_BEFORE max=$MAX_BEFORE"
  echo "                    sent 0-${BUMP}s after:      n=$N_BUMP p50=$P50_BUMP p99=$P99_BUMP max=$MAX_BUMP"
  echo "                    sent later:            n=$N_AFTER p50=$P50_AFTER p99=$P99_AFTER max=$MAX_AFTER"
  echo "                    events retried off $KILL: n=$N_RETRIED max=$MAX_RETRIED"
  echo "  queue drained     $((DRAINED_MS - LOAD_END_MS)) ms after the load ended"
  if ((LOST > 0)); then echo "  lost, e.g.        $(tr '\n' ' ' <"$TMP/lost.sample")"; fi
fi
((LOST == 0))
