#!/usr/bin/env bash
# Benchmark The Eye on this machine, on purpose (never in CI).
#
#   bench/run.sh            # defaults: 64 connections, 15 s per scenario
#   SECONDS_PER_RUN=30 CONNECTIONS=128 bench/run.sh
#   DEPLOYMENT=scaled bench/run.sh   # one ingest node + one worker on PostgreSQL and Redis
#                                    # (PG_URL, default postgres://postgres@127.0.0.1:5432/test;
#                                    #  a durable redis-server of its own is started)
#   PREFILL=10000000 bench/run.sh    # also: single events on a store that holds 10M already
#                                    # (filled once into bench/.prefill-10000000, kept for reruns;
#                                    #  each copy's today is first topped up to the prefill's events
#                                    #  a day, N/30, as at the end of a day: FILL_TODAY=0 leaves it
#                                    #  as the clock has it, FILL_TODAY=N sets another number;
#                                    #  measured in 3 rounds in turns with an empty store,
#                                    #  FLAT_ROUNDS=N for another number)
#   EYE_BIN=/tmp/the-eye-before bench/run.sh   # another build of the binary, for before/after
#   SCALED=no bench/run.sh           # without the scaled deployment's batched row, which an
#                                    # embedded run adds when PostgreSQL and redis-server are here
#
#   SESSIONS=0 bench/run.sh          # one fixed session a connection, as every run before the
#                                    # twenty-first session (docs/benchmarks.md)
#
# Events carry random (UUIDv4) ids, as clients that make their own send, and
# belong to 100,000 visitors' sessions live at once with random ids, as the
# tracker makes them (the load generator's default; SESSIONS=N for another number).
# Prints, from one run on one machine: the disk's fsync time, the HTTP ceiling (a bare axum server
# answering 202), the durable floor (the same server fsyncing each body, in a group, before its 202:
# to a plain file and to The Eye's spool), ingest and spool alone (no workers), The Eye's end-to-end
# rate (accepted AND stored: each run ends when the queue is empty) with 1 and
# with 100 events per request, ack latency, the latency at half the
# single-event rate (and the durable floor's at the same pace), and the
# server's peak RSS; each rate with its ratio to
# the ceiling. Under each run: the CPU seconds of each process (scaled: with
# PostgreSQL's) and, embedded, the spool's group commits (count, mean time,
# p99 bucket, entries a group), read from the server's /metrics.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECONDS_PER_RUN:-15}
DEPLOYMENT=${DEPLOYMENT:-embedded}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
CONNS=${CONNECTIONS:-64}
BATCH_CONNS=${BATCH_CONNECTIONS:-16}
ADDR=127.0.0.1:8077
LOADGEN=target/release/loadgen
EYE=${EYE_BIN:-target/release/the-eye}
PREFILL=${PREFILL:-0}
PREFILL_DAYS=30   # the days a prefill spreads over, so PREFILL / PREFILL_DAYS events a day

cargo build --release --workspace --quiet
# One load generator is one client address: lift the per-address and
# per-application limits, which would otherwise answer most requests with 429.
export THE_EYE_RATE_LIMIT_IP=off THE_EYE_RATE_LIMIT_APP=off

# shellcheck source=bench/common.sh
. bench/common.sh

field() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2], {}, d))" "$1" "$2"; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
echo "deployment: $DEPLOYMENT; load: $CONNS connections for single events, $BATCH_CONNS for batches, ${SECS}s each"
probe=$(mktemp -d)
echo "disk: $(fsync_floor "$probe")"
rm -rf "$probe"
echo

# 1. HTTP ceiling
target/release/ceiling --listen "$ADDR" 2>/dev/null &
CEILING_PID=$!
wait_for_port
ceiling=$($LOADGEN --addr "$ADDR" --connections "$CONNS" --seconds "$SECS" --json)
kill "$CEILING_PID"; wait "$CEILING_PID" 2>/dev/null || true
ceiling_rps=$(field "$ceiling" "round(requests_per_s)")
echo "HTTP ceiling (bare axum, 202 without reading the body): $ceiling_rps requests/s"

# 1b. The durable floor: the same bare server, but each body is appended and
# fsynced before its 202, through The Eye's spool and through a plain file.
# Nothing that fsyncs before answering can do better here; the ingest row's
# ratio to it is what everything else ingest does costs.
# Paced (a rate other than 0), it prints the ack latency instead: what the
# bare durable server's own tail is at that load, on this disk, this hour.
floor() { # label, rate (0 = flat out), then the floor binary's flag for a path in a fresh dir
    local label=$1 rate=$2 dir out rps; shift 2
    sync # as run_eye: not the last row's writeback under this row's fsyncs
    dir=$(mktemp -d)
    target/release/floor --listen "$ADDR" "$@" "$dir/floor" 2>/dev/null &
    local pid=$!
    wait_for_port
    out=$($LOADGEN --addr "$ADDR" --connections "$CONNS" --seconds "$SECS" --rate "$rate" --json)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
    rps=$(field "$out" "round(requests_per_s)")
    if [ "$rate" = 0 ]; then
        printf '%-36s %8s requests/s     ratio %4s\n' "$label" "$rps" "$(python3 -c "print(f'{$rps / $ceiling_rps:.2f}')")"
    else
        printf '%-36s %8s requests/s                  ack p50 %6s µs  p99 %6s µs\n' "$label" "$rps" \
            "$(field "$out" "latency_us['p50']")" "$(field "$out" "latency_us['p99']")"
    fi
    FLOOR_RPS=$rps
}
if [ "$DEPLOYMENT" != scaled ]; then
    floor "durable floor: a plain file" 0 --log
    floor "durable floor: The Eye's spool" 0 --spool
    spool_floor_rps=$FLOOR_RPS
fi

cpu_ticks() { # user + system ticks of each PID, in order; scaled: then PostgreSQL's
    for pid in "$@"; do awk '{printf "%d ", $14 + $15}' "/proc/$pid/stat"; done
    # Every postgres process together (the worker's backends stay connected
    # for the whole run; a backend that exits meanwhile takes its share along).
    if [ "$DEPLOYMENT" = scaled ]; then
        awk '$2 == "(postgres)" {s += $14 + $15} END {printf "%d ", s}' /proc/[0-9]*/stat 2>/dev/null
    fi
}

run_eye() { # $1 label, $2 batch, $3 connections, $4 rate (0 = flat out), $5 workers (default: the default), $6 data dir to reuse
    local dir pid rss_kb=0 drain=--drain workers=${5:-}
    sync # each row starts with the last row's writes on disk, not still being written back
    dir=${6:-$(mktemp -d)}
    if [ -n "$workers" ]; then export THE_EYE_WORKERS=$workers; fi
    if [ "$workers" = 0 ]; then drain=; fi
    if [ "$DEPLOYMENT" = scaled ]; then
        start_scaled "$dir"
    else
        KEY=$(app_key "$EYE" "$dir" "bench-$RANDOM")
        THE_EYE_LOG=warn THE_EYE_METRICS_PUBLIC=true "$EYE" --data-dir "$dir" serve --listen "$ADDR" &
        PIDS=$!
    fi
    unset THE_EYE_WORKERS
    wait_for_port
    local out cpu_before cpu_after
    # shellcheck disable=SC2086
    cpu_before=$(cpu_ticks $PIDS)
    out=$($LOADGEN --addr "$ADDR" --key "$KEY" --connections "$3" --seconds "$SECS" --batch "$2" --rate "$4" $drain --random-ids ${SESSIONS:+--sessions "$SESSIONS"} --json)
    # shellcheck disable=SC2086
    cpu_after=$(cpu_ticks $PIDS)
    local commits=
    if [ "$DEPLOYMENT" != scaled ]; then commits=$(spool_commits); fi
    for pid in $PIDS; do # peak RSS of The Eye's processes, summed
        rss_kb=$((rss_kb + $(awk '/VmHWM/ {print $2}' "/proc/$pid/status")))
    done
    if [ "$DEPLOYMENT" = scaled ]; then
        rss_kb=$((rss_kb - $(awk '/VmHWM/ {print $2}' "/proc/${PIDS##* }/status"))) # not Redis's
        stop_scaled
    else
        kill -TERM "$PIDS"; wait "$PIDS" || true
    fi
    if [ -z "${6:-}" ]; then rm -rf "$dir"; fi
    echo "$out" > "/tmp/the-eye-bench-${1// /-}.json"
    local rate what=stored ratio
    if [ -n "$drain" ]; then rate=$(field "$out" "round(stored_events_per_s)"); else rate=$(field "$out" "round(accepted_events_per_s)"); what=accepted; fi
    # Events per second against the ceiling's requests per second: for one
    # event a request, the share of the machine's HTTP limit this path keeps.
    ratio=$(python3 -c "print(f'{$rate / $ceiling_rps:.2f}' if $2 == 1 else '-')")
    printf '%-36s %8s events/s %-8s ratio %4s   ack p50 %6s µs  p99 %6s µs   peak RSS %s MB\n' \
        "$1" "$rate" "$what" "$ratio" \
        "$(field "$out" "latency_us['p50']")" "$(field "$out" "latency_us['p99']")" "$((rss_kb / 1024))"
    # CPU seconds each process used during the load and the drain (scaled:
    # ingest node, worker, Redis, PostgreSQL), to see which one sets the pace.
    python3 -c "import sys; b, a = sys.argv[1].split(), sys.argv[2].split(); print('  CPU s: ' + ' '.join(f'{(int(y) - int(x)) / $(getconf CLK_TCK):.1f}' for x, y in zip(b, a)))" "$cpu_before" "$cpu_after"
    # The spool's share of the ack latency: a request waits for the commit
    # in flight, then for its own group's.
    if [ -n "$commits" ]; then echo "$commits"; fi
    LAST_RATE=$rate
    LAST_RPS=$(field "$out" "round(requests_per_s)")
}

if [ "$DEPLOYMENT" != scaled ]; then
    run_eye "ingest + spool only (no workers)" 1 "$CONNS" 0 0
    python3 -c "print(f'  ingest + spool / durable floor (spool): {$LAST_RATE / $spool_floor_rps:.2f}')"
fi
run_eye "1 event per request" 1 "$CONNS" 0
single=$LAST_RATE
single_rps=$LAST_RPS
# Paced right after the row it halves, before the batched row's heavy
# writeback (which runs last of the empty-store rows for that reason).
half=$((single_rps / 2))
run_eye "1 event at half that rate" 1 "$CONNS" "$half"
# The same pace against the durable floor: the part of that tail which any
# server that fsyncs before its 202 would have here.
if [ "$DEPLOYMENT" != scaled ]; then
    floor "  durable floor (spool), same rate" "$half" --spool
fi
run_eye "100 events per request" 100 "$BATCH_CONNS" 0
if [ "$PREFILL" != 0 ] && [ "$DEPLOYMENT" != scaled ]; then
    filled="bench/.prefill-$PREFILL"
    if [ ! -f "$filled/the-eye.db" ]; then
        echo "filling a store with $PREFILL events (once; kept in $filled)..."
        target/release/prefill --data-dir "$filled" --events "$PREFILL" --days "$PREFILL_DAYS" >/dev/null
    fi
    fill=${FILL_TODAY:-$((PREFILL / PREFILL_DAYS))}
    today="$fill of them today, as at the end of a day"
    if [ "$fill" = 0 ]; then today="today's as the clock left them"; fi
    # In turns with an empty store, round by round: two runs of the same
    # store minutes apart differ by up to 30 % on these machines, so one
    # pair says little (docs/benchmarks.md, twenty-fourth session).
    empties=(); filleds=()
    for round in $(seq "${FLAT_ROUNDS:-3}"); do
        run_eye "1 event per request, empty (round $round)" 1 "$CONNS" 0
        empties+=("$LAST_RATE")
        copy=$(mktemp -d)
        FILL_TODAY=$fill copy_store "$filled" "$copy"
        run_eye "1 event per request, $PREFILL stored ($today, round $round)" 1 "$CONNS" 0 "" "$copy"
        rm -rf "$copy"
        filleds+=("$LAST_RATE")
    done
    python3 - "${empties[*]}" "${filleds[*]}" "$PREFILL" <<'PY'
import sys
empty, filled = ([float(x) for x in a.split()] for a in sys.argv[1:3])
rounds = " ".join(f"{f / e:.2f}" for e, f in zip(empty, filled))
print(f"rate with {sys.argv[3]} stored / rate on an empty store, round by round: {rounds};"
      f" mean rates {sum(filled) / len(filled):.0f} / {sum(empty) / len(empty):.0f}: {sum(filled) / sum(empty):.2f}")
PY
fi
# The scaled deployment's batched row too, so that one command measures every
# row of issue 15's table (DEPLOYMENT=scaled runs all rows scaled instead).
if [ "$DEPLOYMENT" = embedded ] && [ "${SCALED:-auto}" != no ]; then
    if command -v redis-server >/dev/null && psql "$PG_URL" -qc 'SELECT 1' >/dev/null 2>&1; then
        DEPLOYMENT=scaled
        run_eye "scaled: 100 events per request" 100 "$BATCH_CONNS" 0
        DEPLOYMENT=embedded
    else
        echo "scaled row skipped: it needs redis-server and PostgreSQL at $PG_URL (SCALED=no says nothing)"
    fi
fi
echo
python3 -c "print(f'ratio of single-event rate to HTTP ceiling: {$single / $ceiling_rps:.2f}')"
if [ -n "${spool_floor_rps:-}" ]; then
    python3 -c "print(f'ratio of single-event rate to the durable floor (spool): {$single / $spool_floor_rps:.2f}')"
fi
