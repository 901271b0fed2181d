#!/usr/bin/env bash
# Benchmarks of the data's life on a store of EVENTS events (default 1,000,000),
# on purpose (never in CI):
#
#   bench/lifecycle.sh
#   EVENTS=200000 PG_URL=postgres://postgres@127.0.0.1:5432/test bench/lifecycle.sh
#
# 1. adminbench: fills a SQLite store (the write rate), times the dashboard's
#    charts from the rollups, /api/stats, erasure, a rollup rebuild and a backup
#    (kept for the steps below), then retention deleting every event.
# 2. Export: `the-eye export` (NDJSON, CSV) of every event with its peak RSS,
#    and GET /api/export with the server's peak RSS.
# 3. Retention under load: the copy's events moved 30 days back, a server with
#    retention_days = 7 deleting them all while the load generator sends at a
#    steady rate; ack latency then, against the same rate without retention.
# 4. Import (with PG_URL): `the-eye import django` of EVENTS events from a
#    Django-shaped scratch database.
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-1000000}
RATE=${RATE:-2000}
SECS=${SECONDS_PER_RUN:-20}
ADDR=127.0.0.1:8078
BIN=target/release/the-eye
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
export THE_EYE_RATE_LIMIT_IP=off THE_EYE_RATE_LIMIT_APP=off THE_EYE_LOG=warn

cargo build --release --workspace --quiet
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F); $EVENTS events"

echo "== 1. adminbench"
EVENTS=$EVENTS KEEP_DB="$WORK/filled.db" target/release/adminbench

# Peak RSS (MB) and wall time (s) of a command.
measure() {
    /usr/bin/time -f "%M %e" -o "$WORK/time" "$@" >/dev/null 2>"$WORK/stderr" || { cat "$WORK/stderr"; exit 1; }
    read -r rss_kb secs <"$WORK/time"
    echo "$((rss_kb / 1024)) $secs"
}

# shellcheck source=bench/common.sh
. bench/common.sh

echo
echo "== 2. export"
mkdir -p "$WORK/export"
cp "$WORK/filled.db" "$WORK/export/the-eye.db"
for format in ndjson csv; do
    read -r rss secs < <(measure $BIN --data-dir "$WORK/export" export --format $format --out "$WORK/out.$format")
    rows=$(wc -l <"$WORK/out.$format")
    size=$(du -m "$WORK/out.$format" | cut -f1)
    printf 'the-eye export --format %-6s %8d lines %5d MB in %6.1f s = %7.0f rows/s, peak RSS %d MB\n' \
        $format "$rows" "$size" "$secs" "$(echo "$rows / $secs" | bc -l)" "$rss"
    rm "$WORK/out.$format"
done
token=$($BIN --data-dir "$WORK/export" tokens create --name bench 2>/dev/null)
$BIN --data-dir "$WORK/export" serve --listen $ADDR --no-worker 2>/dev/null &
server=$!
wait_for_port 200
rss_before=$(awk '/VmRSS/ {print int($2 / 1024)}' /proc/$server/status)
start=$(date +%s.%N)
bytes=$(curl -fsS -H "Authorization: Bearer $token" "http://$ADDR/api/export?format=ndjson" | wc -c)
secs=$(echo "$(date +%s.%N) - $start" | bc -l)
peak=$(awk '/VmHWM/ {print int($2 / 1024)}' /proc/$server/status)
printf 'GET /api/export?format=ndjson  %5d MB in %6.1f s = %7.0f rows/s; server RSS %d MB before, peak %d MB\n' \
    "$((bytes / 1048576))" "$secs" "$(echo "$EVENTS / $secs" | bc -l)" "$rss_before" "$peak"
kill $server; wait $server 2>/dev/null || true

echo
echo "== 3. retention while ingest runs ($RATE events/s, one per request)"
mkdir -p "$WORK/retention"
cp "$WORK/filled.db" "$WORK/retention/the-eye.db"
python3 - "$WORK/retention/the-eye.db" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
month = 30 * 86400 * 1000000
db.execute("UPDATE events SET occurred_at = occurred_at - ?", (month,))
db.commit()
EOF
key=$(app_key "$BIN" "$WORK/retention")
run_load() { # label
    target/release/loadgen --addr $ADDR --key "$key" --connections 16 --seconds "$SECS" --batch 1 --rate "$RATE" --json
}
field() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2], {}, d))" "$1" "$2"; }
THE_EYE_UPKEEP_INTERVAL_SECS=3600 $BIN --data-dir "$WORK/retention" serve --listen $ADDR &
server=$!
wait_for_port 200
base=$(run_load)
kill $server; wait $server 2>/dev/null || true
printf 'without retention:  ack p50 %6s µs  p99 %6s µs  max %6s µs\n' \
    "$(field "$base" "latency_us['p50']")" "$(field "$base" "latency_us['p99']")" "$(field "$base" "latency_us['max']")"
THE_EYE_LOG=info THE_EYE_LOG_FORMAT=json THE_EYE_RETENTION_DAYS=7 THE_EYE_UPKEEP_INTERVAL_SECS=3600 \
    $BIN --data-dir "$WORK/retention" serve --listen $ADDR 2>"$WORK/retention.log" &
server=$!
wait_for_port 200
during=$(run_load)
for _ in $(seq 1 600); do grep -q "retention removed old data" "$WORK/retention.log" && break; sleep 1; done
kill $server; wait $server 2>/dev/null || true
line=$(grep "retention removed old data" "$WORK/retention.log" | head -1)
removed=$(field "$line" "fields['events']")
took=$(field "$line" "round(fields['secs'], 1)")
printf 'with retention:     ack p50 %6s µs  p99 %6s µs  max %6s µs\n' \
    "$(field "$during" "latency_us['p50']")" "$(field "$during" "latency_us['p99']")" "$(field "$during" "latency_us['max']")"
printf 'retention deleted %d events in %s s = %.0f events/s (in steps of 2,000; between steps a pause as long as the step, at least 20 ms)\n' \
    "$removed" "$took" "$(echo "$removed / $took" | bc -l)"

if [ -n "${PG_URL:-}" ]; then
    echo
    echo "== 4. import from a Django database of $EVENTS events"
    db="the_eye_django_$(date +%s)"
    psql -q "$PG_URL" -c "CREATE DATABASE $db"
    src="${PG_URL%/*}/$db"
    psql -q "$src" <<EOF
CREATE TABLE collector_category (id bigserial PRIMARY KEY, name varchar(255) NOT NULL UNIQUE);
CREATE TABLE collector_event (id bigserial PRIMARY KEY, session_id varchar(255) NOT NULL,
    category_id bigint NOT NULL REFERENCES collector_category (id), name varchar(255) NOT NULL,
    data jsonb NOT NULL, timestamp timestamptz NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE collector_eventerror (id bigserial PRIMARY KEY, message text NOT NULL, data json NOT NULL,
    created_at timestamptz NOT NULL);
INSERT INTO collector_category (name) VALUES ('page interaction');
INSERT INTO collector_event (session_id, category_id, name, data, timestamp, created_at)
SELECT 'session-' || (i % 50000), 1, 'pageview', jsonb_build_object('host', 'old.example', 'path', '/p/' || (i % 10000)),
       now() - i * interval '1 second', now() - i * interval '1 second'
FROM generate_series(1, $EVENTS) AS i;
EOF
    mkdir -p "$WORK/import"
    read -r rss secs < <(measure $BIN --data-dir "$WORK/import" import django --from "$src")
    printf 'import django into SQLite: %d events in %.1f s = %.0f events/s, peak RSS %d MB\n' \
        "$EVENTS" "$secs" "$(echo "$EVENTS / $secs" | bc -l)" "$rss"
    read -r rss secs < <(measure $BIN --data-dir "$WORK/import" import django --from "$src")
    printf 'the same again (adds nothing): %.1f s\n' "$secs"
    psql -q "$PG_URL" -c "DROP DATABASE $db WITH (FORCE)"
fi
