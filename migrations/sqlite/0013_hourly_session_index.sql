-- Find a session's events through an index keyed by the UTC hour first, not
-- the day (migration 0012).
--
-- Keyed by the day, live traffic wrote only today's part of the index, but
-- the tracker's session ids are random (UUIDv4), so each event still went to
-- a random leaf of that part: about 21 MB by the end of a 333,000-event day,
-- more than the store writer's 8 MB page cache. At the end of such a day a
-- store of ten million events took events at about 0.8 of an empty store's
-- rate (docs/benchmarks.md, twenty-second session). Keyed by the hour, the
-- part live traffic writes is about a twenty-fourth of that and stays in the
-- cache at any hour.
--
-- A query for one session seeks once an hour stored (src/store/sqlite/events.rs,
-- `SESSION_ON_ANY_HOUR`) and must write the hour the same way as here
-- (`occurred_at / 3600000000`, integer division). Building this index on an
-- existing store reads the whole table once: about 20 s for ten million events.
CREATE INDEX events_hour_session ON events (occurred_at / 3600000000, session_id, occurred_at);
DROP INDEX events_day_session;
