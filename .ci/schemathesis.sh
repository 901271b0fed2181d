#!/usr/bin/env bash
# Property-based tests of the HTTP API against its own OpenAPI description:
# schemathesis generates requests for the collector and the read API from
# /api/openapi.json and checks every answer (no 5xx, statuses, content types
# and bodies as described). Runs a real `the-eye serve` on a scratch data dir.
#
# Two things are left out, on purpose:
# - the `positive_data_acceptance` check: a `cursor` is an opaque token the
#   server hands out, so no schema can say which strings are valid ones, and
#   a made-up cursor is rightly refused with 400;
# - the `coverage` phase: schemathesis 4.32.5 crashes inside it (a KeyError in
#   its own schema walker) on the error-listing operation; the examples,
#   fuzzing and stateful phases run every check on every operation.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/debug/the-eye
cargo build --quiet -p the-eye
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"

# --erase: DELETE /api/sessions/{id} is exercised past its permission check too.
token=$("$bin" --data-dir "$data" tokens create --name schemathesis --erase 2>/dev/null)
key=$("$bin" --data-dir "$data" apps create --name schemathesis 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')

THE_EYE_LOG=warn THE_EYE_RATE_LIMIT_IP=off THE_EYE_RATE_LIMIT_APP=off \
    "$bin" --data-dir "$data" serve --listen "127.0.0.1:$port" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do curl -fsS "$base/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

schemathesis run "$base/api/openapi.json" \
    --url "$base" \
    --header "Authorization: Bearer $token" \
    --header "X-Eye-Key: $key" \
    --checks all \
    --exclude-checks positive_data_acceptance \
    --max-examples "${SCHEMATHESIS_EXAMPLES:-40}" \
    --workers 2 \
    --request-timeout 10 \
    --phases examples,fuzzing,stateful
