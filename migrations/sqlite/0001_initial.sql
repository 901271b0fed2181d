-- Categories and the event types declared in them.
CREATE TABLE categories (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    active INTEGER NOT NULL DEFAULT 1,
    strict INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

CREATE TABLE event_types (
    id INTEGER PRIMARY KEY,
    category_id INTEGER NOT NULL REFERENCES categories (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    schema TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (category_id, name)
);

-- Valid events. Times are microseconds since the Unix epoch (UTC).
-- event_id is a 16-byte UUID; derived and tracker ids are time-ordered,
-- so the unique index is appended to rather than written at random.
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    event_id BLOB NOT NULL,
    session_id TEXT NOT NULL,
    category TEXT NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX events_event_id ON events (event_id);
-- Each index ends in the rowid implicitly, which is the keyset tie-breaker.
CREATE INDEX events_occurred_at ON events (occurred_at);
CREATE INDEX events_session ON events (session_id, occurred_at);
CREATE INDEX events_category_name ON events (category, name, occurred_at);

-- Accepted items that failed validation, with the raw payload and every reason.
CREATE TABLE event_errors (
    id INTEGER PRIMARY KEY,
    event_id BLOB NOT NULL UNIQUE,
    raw TEXT NOT NULL,
    reasons TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX event_errors_received_at ON event_errors (received_at);

-- Read-API bearer tokens; only the SHA-256 of the secret is kept.
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
