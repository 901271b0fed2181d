-- The dashboard counts events by time and category; with both in one index
-- the count can be an index-only scan (bench/src/bin/adminbench.rs).
CREATE INDEX events_occurred_category ON events (occurred_at, category);
