#!/usr/bin/env bash
# The workers and the store alone: ingest fills the spool with no workers
# running (16 connections, 100 events a request, 6 s, random ids), then the
# server is started again with its workers and the time until the queue is
# empty is measured. No HTTP load competes with the store while it drains.
# Prints the drain rate, the bytes the server wrote to storage an event
# (/proc/PID/io), its CPU by kind of thread during the drain, and the
# machine's CPU split (user, system, idle, I/O wait) from /proc/stat.
#
#   bench/drain.sh [BIN]
#   THE_EYE_WORKER_BATCH_SIZE=5000 bench/drain.sh   # any setting, through the environment
#   PERF=1 bench/drain.sh          # and a perf profile of the first 8 s of the drain (bench/drain.data)
#
# Build first: cargo build --release --workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
BIN=${1:-target/release/the-eye}; ADDR=127.0.0.1:8081
dir=$(mktemp -d)
KEY=$(app_key "$BIN" "$dir" "bench-$RANDOM")
export THE_EYE_RATE_LIMIT_IP=off THE_EYE_RATE_LIMIT_APP=off THE_EYE_LOG=error

THE_EYE_WORKERS=0 "$BIN" --data-dir "$dir" serve --listen "$ADDR" 2>/dev/null &
pid=$!
wait_for_port
events=$(target/release/loadgen --addr "$ADDR" --key "$KEY" --connections 16 --seconds 6 --batch 100 \
    --random-ids --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["events_accepted"])')
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true

# CPU ticks by kind of thread (names without their number), one line.
threads() {
    for t in /proc/"$pid"/task/*; do
        printf '%s %s\n' "$(sed 's/-*[0-9]*$//' "$t/comm")" "$(awk '{print $14 + $15}' "$t/stat")"
    done | awk '{ticks[$1] += $2} END {for (k in ticks) print k, ticks[k]}'
}
# user system idle iowait ticks of the whole machine.
machine() { awk '/^cpu / {print $2 + $3, $4 + $7 + $8, $5, $6}' /proc/stat; }

"$BIN" --data-dir "$dir" serve --listen "$ADDR" 2>/dev/null &
pid=$!
wait_for_port
written() { awk '/^write_bytes/ {print $2}' /proc/"$pid"/io; }
before=$(threads); cpu_before=$(machine); bytes_before=$(written); start=$(date +%s.%N)
if [ -n "${PERF:-}" ]; then
    perf record -F 999 -g -p "$pid" -o bench/drain.data -- sleep 8 >/dev/null 2>&1 &
fi
until [ "$(curl -s "http://$ADDR/readyz" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("queue_depth", -1))')" = 0 ]; do
    sleep 0.2
done
end=$(date +%s.%N); after=$(threads); cpu_after=$(machine); bytes_after=$(written)
python3 - "$events" "$start" "$end" "$before" "$after" "$cpu_before" "$cpu_after" "$bytes_before" "$bytes_after" <<'PY'
import sys
events, start, end = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
took = end - start
def parse(text):
    return {k: int(v) for k, v in (line.split() for line in text.splitlines())}
before, after = parse(sys.argv[4]), parse(sys.argv[5])
written = int(sys.argv[9]) - int(sys.argv[8])
print(f"drained {events} events in {took:.2f} s: {events / took:,.0f} events/s, {written / events:,.0f} bytes written an event")
for name in sorted(after, key=lambda k: after[k] - before.get(k, 0), reverse=True):
    ticks = after[name] - before.get(name, 0)
    if ticks:
        print(f"  {name:<16} {ticks / 100:6.2f} CPU s  {ticks * 1e4 / events:5.1f} µs an event  {ticks / 100 / took:4.0%} of a core")
cpu = [b - a for a, b in zip(map(int, sys.argv[6].split()), map(int, sys.argv[7].split()))]
total = sum(cpu)
print("  machine: " + ", ".join(f"{n} {c / total:.0%}" for n, c in zip(["user", "system", "idle", "iowait"], cpu)))
PY
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
rm -rf "$dir"
