#!/usr/bin/env bash
# Benchmark The Eye on this machine, on purpose (never in CI).
#
#   bench/run.sh            # defaults: 64 connections, 15 s per scenario
#   SECONDS_PER_RUN=30 CONNECTIONS=128 bench/run.sh
#   DEPLOYMENT=scaled bench/run.sh   # one ingest node + one worker on PostgreSQL and Redis
#                                    # (PG_URL, default postgres://postgres@127.0.0.1:5432/test;
#                                    #  a durable redis-server of its own is started)
#
# Prints, from one run on one machine: the HTTP ceiling (a bare axum server
# answering 202), The Eye's end-to-end rate (accepted AND stored: each run ends
# when the queue is empty) with 1 and with 100 events per request, ack latency,
# the latency at half the single-event rate, and the server's peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECONDS_PER_RUN:-15}
DEPLOYMENT=${DEPLOYMENT:-embedded}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
CONNS=${CONNECTIONS:-64}
BATCH_CONNS=${BATCH_CONNECTIONS:-16}
ADDR=127.0.0.1:8077
LOADGEN=target/release/loadgen

cargo build --release --workspace --quiet
# One load generator is one client address: lift the per-address and
# per-application limits, which would otherwise answer most requests with 429.
export THE_EYE_RATE_LIMIT_IP=off THE_EYE_RATE_LIMIT_APP=off

wait_for_port() {
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR#*:}") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "server did not start on $ADDR" >&2
    exit 1
}

field() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2], {}, d))" "$1" "$2"; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
echo "deployment: $DEPLOYMENT; load: $CONNS connections for single events, $BATCH_CONNS for batches, ${SECS}s each"
echo

# 1. HTTP ceiling
target/release/ceiling --listen "$ADDR" 2>/dev/null &
CEILING_PID=$!
wait_for_port
ceiling=$($LOADGEN --addr "$ADDR" --connections "$CONNS" --seconds "$SECS" --json)
kill "$CEILING_PID"; wait "$CEILING_PID" 2>/dev/null || true
ceiling_rps=$(field "$ceiling" "round(requests_per_s)")
echo "HTTP ceiling (bare axum, 202 without reading the body): $ceiling_rps requests/s"

start_scaled() { # sets PIDS to "ingest worker redis" and EYE_ENV
    local dir=$1 port db
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save "" --appendonly yes \
        --appendfsync always --maxmemory-policy noeviction >/dev/null &
    local redis_pid=$!
    db="the_eye_bench_$(date +%s%N)"
    psql "$PG_URL" -qc "CREATE DATABASE $db" >/dev/null
    BENCH_DB="$db"
    until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
    export THE_EYE_DATABASE_URL="${PG_URL%/*}/$db" THE_EYE_REDIS_URL="redis://127.0.0.1:$port" THE_EYE_LOG=warn
    target/release/the-eye --data-dir "$dir" migrate 2>/dev/null
    KEY=$(target/release/the-eye --data-dir "$dir" apps create --name bench 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
    target/release/the-eye --data-dir "$dir" serve --listen "$ADDR" --no-worker &
    local ingest_pid=$!
    target/release/the-eye --data-dir "$dir" worker &
    PIDS="$ingest_pid $! $redis_pid"
}

stop_scaled() {
    # shellcheck disable=SC2086
    kill -TERM $PIDS 2>/dev/null; wait $PIDS 2>/dev/null || true
    unset THE_EYE_DATABASE_URL THE_EYE_REDIS_URL
    psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null
}

run_eye() { # $1 label, $2 batch, $3 connections, $4 rate (0 = flat out)
    local dir pid rss_kb=0
    dir=$(mktemp -d)
    if [ "$DEPLOYMENT" = scaled ]; then
        start_scaled "$dir"
    else
        KEY=$(target/release/the-eye --data-dir "$dir" apps create --name bench 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
        THE_EYE_LOG=warn target/release/the-eye --data-dir "$dir" serve --listen "$ADDR" &
        PIDS=$!
    fi
    wait_for_port
    local out
    out=$($LOADGEN --addr "$ADDR" --key "$KEY" --connections "$3" --seconds "$SECS" --batch "$2" --rate "$4" --drain --json)
    for pid in $PIDS; do # peak RSS of The Eye's processes, summed
        rss_kb=$((rss_kb + $(awk '/VmHWM/ {print $2}' "/proc/$pid/status")))
    done
    if [ "$DEPLOYMENT" = scaled ]; then
        rss_kb=$((rss_kb - $(awk '/VmHWM/ {print $2}' "/proc/${PIDS##* }/status"))) # not Redis's
        stop_scaled
    else
        kill -TERM "$PIDS"; wait "$PIDS" || true
    fi
    rm -rf "$dir"
    echo "$out" > "/tmp/the-eye-bench-$1.json"
    printf '%-28s %8s events/s stored end to end   ack p50 %6s µs  p99 %6s µs   peak RSS %s MB\n' \
        "$1" "$(field "$out" "round(stored_events_per_s)")" "$(field "$out" "latency_us['p50']")" \
        "$(field "$out" "latency_us['p99']")" "$((rss_kb / 1024))"
    LAST_RATE=$(field "$out" "round(stored_events_per_s)")
    LAST_RPS=$(field "$out" "round(requests_per_s)")
}

run_eye "1 event per request" 1 "$CONNS" 0
single=$LAST_RATE
single_rps=$LAST_RPS
run_eye "100 events per request" 100 "$BATCH_CONNS" 0
half=$((single_rps / 2))
run_eye "1 event at half that rate" 1 "$CONNS" "$half"
echo
python3 -c "print(f'ratio of single-event rate to HTTP ceiling: {$single / $ceiling_rps:.2f}')"
