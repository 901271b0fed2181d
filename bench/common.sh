# shellcheck shell=bash
# What the benchmark scripts share; sourced, with ADDR (host:port) set.

# Waits until something listens on $ADDR: up to $1 tenths of a second (100).
wait_for_port() {
    for _ in $(seq 1 "${1:-100}"); do
        (exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR#*:}") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "server did not start on $ADDR" >&2
    exit 1
}

# Creates a server application NAME (default bench) with BIN in data dir DIR; prints its key.
app_key() { # BIN DIR [NAME]
    "$1" --data-dir "$2" apps create --name "${3:-bench}" 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}

# Copies the store of a prefilled data dir ($1) into data dir $2, and waits
# until the copy is on disk: else the kernel writes it back during the run,
# and the server's fsyncs wait behind it. With FILL_TODAY=N, first tops the
# copy's today (UTC) up to N events: the writer inserts into today's part of
# the day-keyed indexes, which the clock alone would leave small early in
# the day (or empty, in a store filled on an earlier day).
copy_store() { # FROM TO
    cp "$1"/the-eye.db* "$2"/
    if [ "${FILL_TODAY:-0}" != 0 ]; then
        target/release/prefill --data-dir "$2" --fill-today "$FILL_TODAY" >/dev/null
    fi
    sync
}

# The disk's own fsync time: 2,000 rewrites of a 4 KiB block in DIR, each
# followed by fdatasync, as the spool's commit does; prints p50 and p99.
fsync_floor() { # DIR
    python3 - "$1" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
took = []
for i in range(2000):
    os.pwrite(fd, b"x" * 4096, (i % 64) * 4096)
    t = time.perf_counter(); os.fdatasync(fd); took.append((time.perf_counter() - t) * 1e3)
os.close(fd); os.unlink(path)
took.sort()
print(f"fdatasync of 4 KiB here: p50 {took[1000]:.2f} ms, p99 {took[1980]:.2f} ms")
PY
}

# The spool's group commits so far, from the server's /metrics (the server
# runs with THE_EYE_METRICS_PUBLIC=true): how many, their mean time with the
# fsync, the bucket that holds their 99th percentile, and the mean group.
spool_commits() {
    python3 - "http://$ADDR/metrics" <<'PY'
import re, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
def value(name):
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0
n = value("the_eye_spool_commit_seconds_count")
if not n:
    sys.exit()
buckets = [(float(le), float(c)) for le, c in re.findall(r'^the_eye_spool_commit_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M)]
p99 = next(le for le, c in buckets if c >= 0.99 * n)
groups = value("the_eye_spool_group_size_count")
size = value("the_eye_spool_group_size_sum") / groups if groups else 0
print(f"  spool: {n:.0f} group commits, mean {value('the_eye_spool_commit_seconds_sum') / n * 1e3:.2f} ms "
      f"(p99 <= {p99 * 1e3:.1f} ms), {size:.1f} entries a group")
PY
}

# The scaled deployment in data dir $1: a durable redis-server of its own, a
# new PostgreSQL database at PG_URL, one ingest node (`serve --no-worker`) on
# ADDR and one `worker`, of the build EYE. Sets PIDS to "ingest worker
# redis" and KEY; stop_scaled ends them and drops the database.
start_scaled() { # DIR
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
    "$EYE" --data-dir "$dir" migrate 2>/dev/null
    # shellcheck disable=SC2034 # the caller's load generator sends it
    KEY=$(app_key "$EYE" "$dir")
    "$EYE" --data-dir "$dir" serve --listen "$ADDR" --no-worker &
    local ingest_pid=$!
    "$EYE" --data-dir "$dir" worker &
    PIDS="$ingest_pid $! $redis_pid"
}

stop_scaled() {
    # shellcheck disable=SC2086
    kill -TERM $PIDS 2>/dev/null; wait $PIDS 2>/dev/null || true
    unset THE_EYE_DATABASE_URL THE_EYE_REDIS_URL
    psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null
}
