-- Event errors by category (taken from the payload), and a record of edits.
ALTER TABLE event_errors ADD COLUMN category TEXT;
ALTER TABLE event_errors ADD COLUMN original_raw TEXT;
ALTER TABLE event_errors ADD COLUMN edited_by TEXT;
ALTER TABLE event_errors ADD COLUMN edited_at INTEGER;
UPDATE event_errors SET category = json_extract(raw, '$.category')
WHERE json_valid(raw) AND json_type(raw, '$.category') = 'text';
CREATE INDEX event_errors_category ON event_errors (category, id);

-- What admins did: deletions, replays (with edited payloads), keys rotated.
CREATE TABLE admin_log (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    username TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX admin_log_object ON admin_log (object, id);
