-- Rollups: counts per 5-minute bucket, kept by statement-level triggers in
-- the same transaction as every write, so that a retry or a replay never
-- counts twice. Each statement appends delta rows (never updates one row in
-- place), so concurrent workers never wait on each other's counters; the
-- workers' upkeep merges the deltas (`merged`). Application and category are
-- '' when absent.
CREATE TABLE event_rollups (
    bucket TIMESTAMPTZ NOT NULL,
    application TEXT NOT NULL,
    category TEXT NOT NULL,
    name TEXT NOT NULL,
    n BIGINT NOT NULL,
    merged BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX event_rollups_bucket ON event_rollups (bucket);
CREATE INDEX event_rollups_unmerged ON event_rollups (bucket) WHERE NOT merged;

-- Event errors, by when they were received and by their first reason's code.
CREATE TABLE error_rollups (
    bucket TIMESTAMPTZ NOT NULL,
    application TEXT NOT NULL,
    category TEXT NOT NULL,
    reason TEXT NOT NULL,
    n BIGINT NOT NULL,
    merged BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX error_rollups_bucket ON error_rollups (bucket);
CREATE INDEX error_rollups_unmerged ON error_rollups (bucket) WHERE NOT merged;

CREATE FUNCTION the_eye_bucket(t TIMESTAMPTZ) RETURNS TIMESTAMPTZ
LANGUAGE sql IMMUTABLE AS $$ SELECT date_bin('5 minutes', t, TIMESTAMPTZ '1970-01-01 00:00:00+00') $$;

-- Retention runs `SET LOCAL the_eye.keep_rollups = 'on'`: deleting by age
-- keeps the counts, where erasing a session or deleting by hand takes them back.
CREATE FUNCTION the_eye_rollup_events() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO event_rollups (bucket, application, category, name, n)
        SELECT the_eye_bucket(occurred_at), coalesce(application, ''), category, name, COUNT(*)
        FROM new_rows GROUP BY 1, 2, 3, 4;
    ELSIF coalesce(current_setting('the_eye.keep_rollups', TRUE), '') <> 'on' THEN
        INSERT INTO event_rollups (bucket, application, category, name, n)
        SELECT the_eye_bucket(occurred_at), coalesce(application, ''), category, name, -COUNT(*)
        FROM old_rows GROUP BY 1, 2, 3, 4;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER events_rollup_insert AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION the_eye_rollup_events();
CREATE TRIGGER events_rollup_delete AFTER DELETE ON events
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION the_eye_rollup_events();

CREATE FUNCTION the_eye_rollup_errors() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE')
       AND (TG_OP = 'UPDATE' OR coalesce(current_setting('the_eye.keep_rollups', TRUE), '') <> 'on') THEN
        INSERT INTO error_rollups (bucket, application, category, reason, n)
        SELECT the_eye_bucket(received_at), coalesce(application, ''), coalesce(category, ''),
               coalesce(reasons -> 0 ->> 'code', ''), -COUNT(*)
        FROM old_rows GROUP BY 1, 2, 3, 4;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO error_rollups (bucket, application, category, reason, n)
        SELECT the_eye_bucket(received_at), coalesce(application, ''), coalesce(category, ''),
               coalesce(reasons -> 0 ->> 'code', ''), COUNT(*)
        FROM new_rows GROUP BY 1, 2, 3, 4;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER event_errors_rollup_insert AFTER INSERT ON event_errors
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION the_eye_rollup_errors();
CREATE TRIGGER event_errors_rollup_delete AFTER DELETE ON event_errors
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION the_eye_rollup_errors();
CREATE TRIGGER event_errors_rollup_update AFTER UPDATE ON event_errors
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION the_eye_rollup_errors();

-- What is stored already is counted now.
INSERT INTO event_rollups (bucket, application, category, name, n, merged)
SELECT the_eye_bucket(occurred_at), coalesce(application, ''), category, name, COUNT(*), TRUE
FROM events GROUP BY 1, 2, 3, 4;
INSERT INTO error_rollups (bucket, application, category, reason, n, merged)
SELECT the_eye_bucket(received_at), coalesce(application, ''), coalesce(category, ''),
       coalesce(reasons -> 0 ->> 'code', ''), COUNT(*), TRUE
FROM event_errors GROUP BY 1, 2, 3, 4;

-- The dashboard reads the rollups now, so this index only cost writes.
DROP INDEX events_occurred_category;

-- Event errors by session, for erasure and the session page.
ALTER TABLE event_errors ADD COLUMN session_id TEXT;
CREATE FUNCTION pg_temp.session_of(raw TEXT) RETURNS TEXT
LANGUAGE plpgsql AS $$
BEGIN
    IF jsonb_typeof(raw::jsonb -> 'session_id') = 'string' THEN
        RETURN raw::jsonb ->> 'session_id';
    END IF;
    RETURN NULL;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;
UPDATE event_errors SET session_id = pg_temp.session_of(raw);
CREATE INDEX event_errors_session ON event_errors (session_id) WHERE session_id IS NOT NULL;

-- Tokens that may erase a session's data, not only read.
ALTER TABLE api_tokens ADD COLUMN can_erase BOOLEAN NOT NULL DEFAULT FALSE;
