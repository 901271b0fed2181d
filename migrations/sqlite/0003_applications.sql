-- Applications: who may send events. Write keys are stored as given: they can
-- only add events (browser keys are public anyway), and operators need to see
-- them to put them in their pages. Read-API tokens stay hashed.
CREATE TABLE applications (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    key TEXT NOT NULL UNIQUE,
    origins TEXT NOT NULL DEFAULT '[]',
    active INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL
);

-- Every event and event error records the application that sent it.
ALTER TABLE events ADD COLUMN application TEXT;
ALTER TABLE event_errors ADD COLUMN application TEXT;
