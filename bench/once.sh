#!/usr/bin/env bash
# One scenario against one build, for comparing two builds in turns:
#
#   for i in 1 2 3; do bench/once.sh /tmp/the-eye-before accepted; bench/once.sh target/release/the-eye accepted; done
#
#   bench/once.sh BIN accepted [BATCH] [CONNECTIONS] [SECONDS]   # ingest and spool alone (no workers)
#   bench/once.sh BIN stored   [BATCH] [CONNECTIONS] [SECONDS]   # end to end, until the queue is empty
#   bench/once.sh BIN scaled 100 16 10         # the same in the scaled deployment, as bench/run.sh's
#                                              # scaled row: one ingest node and one worker on PostgreSQL
#                                              # (PG_URL, default postgres://postgres@127.0.0.1:5432/test)
#                                              # and a redis-server of its own
#
#   PREFILL_DIR=bench/.prefill-10000000 bench/once.sh BIN stored   # on a copy of a prefilled store
#   FILL_TODAY=333333 PREFILL_DIR=… bench/once.sh BIN stored   # its today first topped up to 333,333
#                                              # events, as at the end of a day (the writer's worst hour)
#   RATE=12000 bench/once.sh BIN stored        # paced at 12,000 requests/s in all (the ack latency at a load)
#   SESSIONS=0 bench/once.sh BIN stored        # one fixed session a connection, not 100,000 visitors' sessions
#                                              # at once with random ids (the load generator's default)
#
# Prints the rate, ack p50 and p99 (µs) and the server's peak RSS. Random
# (UUIDv4) event ids, rate limits off, a fresh data dir. Build first:
# cargo build --release --workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
BIN=$1; MODE=${2:-accepted}; BATCH=${3:-1}; CONNS=${4:-64}; SECS=${5:-8}; ADDR=127.0.0.1:8078
dir=$(mktemp -d)
if [ -n "${PREFILL_DIR:-}" ]; then
    copy_store "$PREFILL_DIR" "$dir"
fi
workers=; drain=--drain
if [ "$MODE" = accepted ]; then workers=0; drain=; fi
if [ "$MODE" = scaled ]; then
    sync
    EYE=$BIN PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
    export THE_EYE_RATE_LIMIT_IP=off THE_EYE_RATE_LIMIT_APP=off
    start_scaled "$dir" 2>/dev/null
    pids=${PIDS% *} # the ingest node and the worker, not Redis
else
    KEY=$(app_key "$BIN" "$dir" "bench-$RANDOM")
    env THE_EYE_RATE_LIMIT_IP=off THE_EYE_RATE_LIMIT_APP=off THE_EYE_LOG=error ${workers:+THE_EYE_WORKERS=$workers} \
        "$BIN" --data-dir "$dir" serve --listen "$ADDR" 2>/dev/null &
    pids=$!
fi
wait_for_port
out=$(target/release/loadgen --addr "$ADDR" --key "$KEY" --connections "$CONNS" --seconds "$SECS" --batch "$BATCH" --random-ids $drain \
    ${RATE:+--rate "$RATE"} ${SESSIONS:+--sessions "$SESSIONS"} --json)
rss=0
for pid in $pids; do rss=$((rss + $(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$pid/status"))); done
if [ "$MODE" = scaled ]; then
    stop_scaled
else
    kill -TERM "$pids"; wait "$pids" 2>/dev/null || true
fi
rm -rf "$dir"
if [ "$MODE" = scaled ]; then MODE=stored; fi
python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(f\"{round(d['${MODE}_events_per_s'])} events/s $MODE  p50 {d['latency_us']['p50']} µs  p99 {d['latency_us']['p99']} µs  peak RSS {sys.argv[2]} MB\")" "$out" "$rss"
