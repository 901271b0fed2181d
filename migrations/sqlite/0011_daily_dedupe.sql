-- Deduplicate within the day an event happened on, not across the whole table.
--
-- The unique index on event_id alone took every insert of a random (UUIDv4)
-- client id to a random leaf of one tree that grows with the table: with ten
-- million events stored, nearly every insert read a page the cache no longer
-- held and dirtied it, and the single-event rate fell to about 0.7 of an
-- empty store's (docs/benchmarks.md). Keyed by the UTC day first, inserts of
-- live traffic stay within today's part of the index, which is as large as one
-- day's events, whatever the table holds.
--
-- A retry or a redelivery carries the same payload, so the same timestamp and
-- day: it is still never stored twice. The expression must be written the same
-- way wherever a query means to use this index (`occurred_at / 86400000000`,
-- integer division); see src/store/sqlite/events.rs.
CREATE UNIQUE INDEX events_day_event_id ON events (occurred_at / 86400000000, event_id);
DROP INDEX events_event_id;
