#!/usr/bin/env bash
# Loads 5,000,000 generated events into a fresh PostgreSQL database with The Eye's
# partitioned schema, times the read API's query shapes, then prunes a month.
# Run on purpose: bench/pg-partitions.sh (from the repository root).
set -e
U=postgres://postgres@127.0.0.1:5432
psql $U/test -qc "DROP DATABASE IF EXISTS the_eye_big WITH (FORCE)" -c "CREATE DATABASE the_eye_big"
psql $U/the_eye_big -q -v ON_ERROR_STOP=1 -f migrations/postgres/0001_initial.sql -f migrations/postgres/0002_seed.sql >/dev/null
# 5,000,000 events over the last ~60 days (spread over this month and the ones made around it),
# 50,000 sessions, ids time-ordered like UUIDv7.
time psql $U/the_eye_big -q -c "
INSERT INTO events (event_id, session_id, category, name, data, occurred_at, received_at)
SELECT (lpad(to_hex(floor(extract(epoch FROM t) * 1000)::bigint), 12, '0') || lpad(to_hex(g), 20, '0'))::uuid,
       'session-' || (g % 50000), CASE WHEN g % 10 = 0 THEN 'form interaction' ELSE 'page interaction' END,
       CASE WHEN g % 10 = 0 THEN 'submit' WHEN g % 7 = 0 THEN 'banner image click' ELSE 'pageview' END,
       jsonb_build_object('host', 'example.com', 'path', '/p/' || (g % 1000)), t, t
FROM (SELECT g, now() - ((5000000 - g) * interval '1 second' * 1.0) AS t FROM generate_series(1, 5000000) g) s;"
psql $U/the_eye_big -qc "VACUUM ANALYZE events"
psql $U/the_eye_big -tAc "SELECT tableoid::regclass, count(*) FROM events GROUP BY 1 ORDER BY 1"
for q in \
 "SELECT id FROM events ORDER BY occurred_at DESC, id DESC LIMIT 101" \
 "SELECT id FROM events WHERE session_id = 'session-4242' ORDER BY occurred_at DESC, id DESC LIMIT 101" \
 "SELECT id FROM events WHERE category = 'form interaction' AND name = 'submit' ORDER BY occurred_at DESC, id DESC LIMIT 101" \
 "SELECT id FROM events WHERE occurred_at >= now() - interval '30 days' AND occurred_at < now() - interval '29 days' ORDER BY occurred_at DESC, id DESC LIMIT 101" \
 "SELECT id FROM events WHERE (occurred_at, id) < (now() - interval '40 days', 1000000000) ORDER BY occurred_at DESC, id DESC LIMIT 101" \
 "SELECT id FROM events WHERE event_id = (lpad(to_hex(floor(extract(epoch FROM now() - interval '10 days') * 1000)::bigint), 12, '0') || lpad(to_hex(12345), 20, '0'))::uuid" ; do
  echo "== $q"
  for _ in 1 2 3; do psql $U/the_eye_big -tAc "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) $q" | grep -E 'Execution Time'; done | tail -1
done
psql $U/the_eye_big -tAc "EXPLAIN SELECT id FROM events WHERE session_id = 'session-4242' ORDER BY occurred_at DESC, id DESC LIMIT 101" | head -8
time psql $U/the_eye_big -tAc "SELECT the_eye_drop_partitions_before(date_trunc('month', now())::date)"
psql $U/test -qc "DROP DATABASE the_eye_big WITH (FORCE)"
