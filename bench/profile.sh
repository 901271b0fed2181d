#!/usr/bin/env bash
# A perf profile of the server on the single-event path: 64 connections, one
# event a request, two workers storing, 8 s sampled at 499 Hz.
#
#   bench/profile.sh [BIN]    # then: perf report -i bench/perf.data --no-children --sort comm,dso,sym
#   BATCH=100 CONNECTIONS=16 bench/profile.sh   # the batched path instead
#   WORKERS=0 bench/profile.sh                   # ingest and spool alone
#
# Build with line tables for readable stacks: cargo build --profile profiling.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
BIN=${1:-target/release/the-eye}; ADDR=127.0.0.1:8079
dir=$(mktemp -d)
KEY=$(app_key "$BIN" "$dir")
THE_EYE_RATE_LIMIT_IP=off THE_EYE_RATE_LIMIT_APP=off THE_EYE_WORKERS="${WORKERS:-2}" THE_EYE_LOG=error \
    "$BIN" --data-dir "$dir" serve --listen "$ADDR" 2>/dev/null &
pid=$!
wait_for_port
target/release/loadgen --addr "$ADDR" --key "$KEY" --connections "${CONNECTIONS:-64}" --seconds 12 --batch "${BATCH:-1}" --random-ids >/dev/null &
load=$!
sleep 2
perf record -F 499 -g -p "$pid" -o bench/perf.data -- sleep 8
wait "$load"
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
rm -rf "$dir"
perf report -i bench/perf.data --no-children --sort comm --stdio -g none 2>/dev/null | grep '%' | head -5
perf report -i bench/perf.data --no-children --sort dso,sym --stdio -g none 2>/dev/null | grep '%' | head -25
