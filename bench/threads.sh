#!/usr/bin/env bash
# Where the server's CPU goes, by thread name, over one end-to-end run:
# CPU seconds and context switches per kind of thread (tokio's HTTP and task
# threads, which also run the spool's claims; the spool's writer, the store's
# writer, the validation threads), then the same CPU per event stored.
#
#   bench/threads.sh [BIN]             # 64 connections, one event a request, 8 s
#   BATCH=100 CONNECTIONS=16 bench/threads.sh
#   WORKERS=0 bench/threads.sh         # ingest and spool alone (per event accepted)
#   PREFILL_DIR=bench/.prefill-10000000 bench/threads.sh   # on a copy of a prefilled store
#   FILL_TODAY=333333 PREFILL_DIR=… bench/threads.sh        # its today topped up first (bench/common.sh)
#   SESSIONS=0 bench/threads.sh        # one fixed session a connection (the load generator's default: 100,000)
#
# Build first: cargo build --release --workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
BIN=${1:-target/release/the-eye}; ADDR=127.0.0.1:8081
dir=$(mktemp -d)
if [ -n "${PREFILL_DIR:-}" ]; then
    copy_store "$PREFILL_DIR" "$dir"
fi
KEY=$(app_key "$BIN" "$dir" "bench-$RANDOM")
drain=--drain; rate=stored_events_per_s; counted=stored
if [ "${WORKERS:-}" = 0 ]; then drain=; rate=accepted_events_per_s; counted=accepted; fi
env THE_EYE_RATE_LIMIT_IP=off THE_EYE_RATE_LIMIT_APP=off THE_EYE_LOG=error ${WORKERS:+THE_EYE_WORKERS=$WORKERS} \
    "$BIN" --data-dir "$dir" serve --listen "$ADDR" 2>/dev/null &
pid=$!
wait_for_port
out=$(target/release/loadgen --addr "$ADDR" --key "$KEY" --connections "${CONNECTIONS:-64}" --seconds 8 \
    --batch "${BATCH:-1}" --random-ids ${SESSIONS:+--sessions "$SESSIONS"} $drain --json)
events=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['events_accepted'])" "$out")
# Thread names without their number (eye-store-r1 and eye-store-r3 are one kind);
# utime + stime from /proc/PID/task/TID/stat, in clock ticks (100 a second).
for t in /proc/"$pid"/task/*; do
    printf '%s %s %s\n' "$(sed 's/-*[0-9]*$//' "$t/comm")" \
        "$(awk '/^voluntary_ctxt/ {v = $2} /^nonvoluntary_ctxt/ {n = $2} END {print v + n}' "$t/status")" \
        "$(awk '{print $14 + $15}' "$t/stat")"
done | awk -v events="$events" -v counted="$counted" '
    { switches[$1] += $2; ticks[$1] += $3; threads[$1]++; all += $3 }
    END {
        for (k in ticks) printf "%-16s %2d threads  %6.2f CPU s  %5.1f µs an event  %8d context switches\n", k, threads[k], ticks[k] / 100, ticks[k] * 1e4 / events, switches[k]
        printf "%-16s %2s          %6.2f CPU s  %5.1f µs an event %s (%d events)\n", "all", "", all / 100, all * 1e4 / events, counted, events
    }' | sort -k4 -nr
python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(round(d['$rate']), 'events/s $counted')" "$out"
# What the server read from and wrote to the disk (or the page cache, for
# reads) an event: rchar counts every read(2) and pread(2), SQLite's page
# reads included; write_bytes what went to the disk.
awk -v events="$events" '/^rchar/ {r = $2} /^write_bytes/ {w = $2}
    END {printf "read %.0f bytes, written %.0f bytes an event\n", r / events, w / events}' /proc/"$pid"/io
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
rm -rf "$dir"
