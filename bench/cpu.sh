#!/usr/bin/env bash
# Per-thread CPU use of the running botgate, loadgen and sink over a window:
#   bench/cpu.sh [SECONDS]        (run it while bench/run.sh is sending)
# Prints "process-thread tid  percent-of-one-core", from /proc/<pid>/task/*/stat
# (utime + stime, in clock ticks of 1/100 s).
set -euo pipefail
window=${1:-5}
snap() {
  for pid in $(pgrep -x botgate) $(pgrep -x loadgen) $(pgrep -x sink); do
    for task in /proc/"$pid"/task/*; do
      [[ -r $task/stat ]] || continue
      printf '%s-%s %s\n' "$(cat "$task/comm")" "${task##*/}" "$(awk '{print $14 + $15}' "$task/stat")"
    done
  done | sort
}
before=$(snap)
sleep "$window"
after=$(snap)
join <(echo "$before") <(echo "$after") |
  awk -v s="$window" '{ printf "%-28s %6.1f%%\n", $1, ($3 - $2) / s }'
