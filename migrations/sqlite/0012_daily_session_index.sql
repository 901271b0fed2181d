-- Find a session's events through an index keyed by the day first, as the
-- duplicate check is (migration 0011).
--
-- The tracker's session ids are random (UUIDv4), so the index on
-- (session_id, occurred_at) took each event to a random leaf of one tree that
-- grows with the table. With ten million events stored and visitors' sessions
-- as the tracker makes them, the single-event rate fell to about 0.6–0.7 of an
-- empty store's (docs/benchmarks.md, twenty-first session). Keyed by the UTC
-- day first, live traffic writes only today's part of the index.
--
-- A query for one session seeks once a day stored (src/store/sqlite/events.rs,
-- `SESSION_ON_ANY_DAY`) and must write the day the same way as here
-- (`occurred_at / 86400000000`, integer division). Building this index on an
-- existing store reads the whole table once: about 20 s for ten million events.
CREATE INDEX events_day_session ON events (occurred_at / 86400000000, session_id, occurred_at);
DROP INDEX events_session;
