-- Event errors by category (taken from the payload), and a record of edits.
ALTER TABLE event_errors ADD COLUMN category TEXT;
ALTER TABLE event_errors ADD COLUMN original_raw TEXT;
ALTER TABLE event_errors ADD COLUMN edited_by TEXT;
ALTER TABLE event_errors ADD COLUMN edited_at TIMESTAMPTZ;
-- Raw payloads need not be JSON, so existing rows are read with a pattern, not a cast.
UPDATE event_errors SET category = substring(raw FROM '"category"\s*:\s*"([^"\\]*)"')
WHERE raw ~ '"category"\s*:\s*"';
CREATE INDEX event_errors_category ON event_errors (category, id);

-- What admins did: deletions, replays (with edited payloads), keys rotated.
CREATE TABLE admin_log (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
    username TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX admin_log_object ON admin_log (object, id);
