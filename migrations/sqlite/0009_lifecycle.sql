-- Rollups: counts per 5-minute bucket (start, µs since the epoch, UTC), kept
-- in the same transaction as every write, so that a retry or a replay never
-- counts twice. Inserts are counted by the write itself, set-wise (one
-- statement per batch, measured cheaper than a trigger per row); deletions
-- and edits by the triggers below. Application and category are '' when absent.
CREATE TABLE event_rollups (
    bucket INTEGER NOT NULL,
    application TEXT NOT NULL,
    category TEXT NOT NULL,
    name TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (bucket, application, category, name)
) WITHOUT ROWID;

-- Event errors, by when they were received and by their first reason's code.
CREATE TABLE error_rollups (
    bucket INTEGER NOT NULL,
    application TEXT NOT NULL,
    category TEXT NOT NULL,
    reason TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (bucket, application, category, reason)
) WITHOUT ROWID;

-- Retention sets this to 1 inside its own transactions: deleting by age keeps
-- the counts (unless rollup_retention_days removes them), where erasing a
-- session or deleting an event by hand takes them back. SQLite has one
-- writer, so no other transaction ever sees the 1.
CREATE TABLE rollup_hold (held INTEGER NOT NULL);
INSERT INTO rollup_hold (held) VALUES (0);

CREATE TRIGGER events_rollup_delete AFTER DELETE ON events
WHEN (SELECT held FROM rollup_hold) = 0
BEGIN
    UPDATE event_rollups SET n = n - 1
    WHERE bucket = OLD.occurred_at - ((OLD.occurred_at % 300000000) + 300000000) % 300000000
      AND application = coalesce(OLD.application, '') AND category = OLD.category AND name = OLD.name;
END;

CREATE TRIGGER event_errors_rollup_delete AFTER DELETE ON event_errors
WHEN (SELECT held FROM rollup_hold) = 0
BEGIN
    UPDATE error_rollups SET n = n - 1
    WHERE bucket = OLD.received_at - ((OLD.received_at % 300000000) + 300000000) % 300000000
      AND application = coalesce(OLD.application, '') AND category = coalesce(OLD.category, '')
      AND reason = coalesce(json_extract(OLD.reasons, '$[0].code'), '');
END;

-- A replay that still fails records new reasons (and maybe a new category).
CREATE TRIGGER event_errors_rollup_update AFTER UPDATE OF reasons, category, application ON event_errors
BEGIN
    UPDATE error_rollups SET n = n - 1
    WHERE bucket = OLD.received_at - ((OLD.received_at % 300000000) + 300000000) % 300000000
      AND application = coalesce(OLD.application, '') AND category = coalesce(OLD.category, '')
      AND reason = coalesce(json_extract(OLD.reasons, '$[0].code'), '');
    INSERT INTO error_rollups (bucket, application, category, reason, n)
    VALUES (NEW.received_at - ((NEW.received_at % 300000000) + 300000000) % 300000000,
            coalesce(NEW.application, ''), coalesce(NEW.category, ''),
            coalesce(json_extract(NEW.reasons, '$[0].code'), ''), 1)
    ON CONFLICT DO UPDATE SET n = n + 1;
END;

-- What is stored already is counted now.
INSERT INTO event_rollups (bucket, application, category, name, n)
SELECT occurred_at - ((occurred_at % 300000000) + 300000000) % 300000000, coalesce(application, ''), category, name,
       COUNT(*)
FROM events WHERE TRUE GROUP BY 1, 2, 3, 4;
INSERT INTO error_rollups (bucket, application, category, reason, n)
SELECT received_at - ((received_at % 300000000) + 300000000) % 300000000, coalesce(application, ''),
       coalesce(category, ''), coalesce(json_extract(reasons, '$[0].code'), ''), COUNT(*)
FROM event_errors WHERE TRUE GROUP BY 1, 2, 3, 4;

-- The dashboard reads the rollups now, so this index only cost writes.
DROP INDEX events_occurred_category;

-- Event errors by session, for erasure and the session page (taken from the
-- payload, like the category).
ALTER TABLE event_errors ADD COLUMN session_id TEXT;
UPDATE event_errors SET session_id = json_extract(raw, '$.session_id')
WHERE json_valid(raw) AND json_type(raw, '$.session_id') = 'text';
CREATE INDEX event_errors_session ON event_errors (session_id) WHERE session_id IS NOT NULL;

-- Tokens that may erase a session's data, not only read.
ALTER TABLE api_tokens ADD COLUMN can_erase INTEGER NOT NULL DEFAULT 0;
