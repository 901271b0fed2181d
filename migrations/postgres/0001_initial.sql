-- Categories and the event types declared in them.
CREATE TABLE categories (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    active BOOLEAN NOT NULL DEFAULT TRUE,
    strict BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE event_types (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    category_id BIGINT NOT NULL REFERENCES categories (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    schema JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (category_id, name)
);

-- Valid events, range-partitioned by event_id, one partition per month.
--
-- Ids are time-ordered: the tracker sends UUIDv7 and ids derived at ingest
-- carry the event's timestamp in the same top 48 bits, so a range of ids is a
-- range of time. Partitioning on event_id itself keeps event_id unique across
-- the whole table (the idempotent insert needs that), and old months are
-- pruned by dropping their partition, not by DELETE. Ids that are not
-- time-ordered (UUIDv4), and times outside the partitions made so far, land in
-- events_default.
CREATE SEQUENCE events_id_seq;
CREATE TABLE events (
    id BIGINT NOT NULL DEFAULT nextval('events_id_seq'),
    event_id UUID NOT NULL,
    session_id TEXT NOT NULL,
    category TEXT NOT NULL,
    name TEXT NOT NULL,
    data JSONB NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id)
) PARTITION BY RANGE (event_id);
ALTER SEQUENCE events_id_seq OWNED BY events.id;
-- The read API's filters, each ending in id, the keyset tie-breaker.
CREATE INDEX events_occurred_at ON events (occurred_at, id);
CREATE INDEX events_session ON events (session_id, occurred_at, id);
CREATE INDEX events_category_name ON events (category, name, occurred_at, id);
CREATE TABLE events_default PARTITION OF events DEFAULT;

-- The smallest UUID whose time prefix is `at`: partition bounds.
CREATE FUNCTION the_eye_uuid_at(at TIMESTAMPTZ) RETURNS UUID
LANGUAGE sql IMMUTABLE AS $$
    SELECT (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::BIGINT), 12, '0') || repeat('0', 20))::UUID
$$;

-- Makes the monthly partitions from `months_back` before this month to
-- `months_ahead` after it, where missing. Run at every migrate and by workers.
CREATE FUNCTION the_eye_ensure_partitions(months_back INT, months_ahead INT) RETURNS VOID
LANGUAGE plpgsql AS $$
DECLARE
    month DATE;
    part TEXT;
BEGIN
    FOR i IN -months_back..months_ahead LOOP
        month := (date_trunc('month', now()) + make_interval(months => i))::DATE;
        part := 'events_' || to_char(month, 'YYYY_MM');
        IF to_regclass(part) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                part, the_eye_uuid_at(month), the_eye_uuid_at((month + INTERVAL '1 month')::DATE));
        END IF;
    END LOOP;
END
$$;

-- Drops every monthly partition that ends on or before `before`; returns their names.
CREATE FUNCTION the_eye_drop_partitions_before(before DATE) RETURNS SETOF TEXT
LANGUAGE plpgsql AS $$
DECLARE
    part TEXT;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'events'::regclass AND c.relname ~ '^events_[0-9]{4}_[0-9]{2}$'
          AND (to_date(substr(c.relname, 8), 'YYYY_MM') + INTERVAL '1 month')::DATE <= before
        ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE %I', part);
        RETURN NEXT part;
    END LOOP;
END
$$;

SELECT the_eye_ensure_partitions(1, 3);

CREATE TABLE event_errors (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id UUID NOT NULL UNIQUE,
    raw TEXT NOT NULL,
    reasons JSONB NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX event_errors_received_at ON event_errors (received_at);

CREATE TABLE api_tokens (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash BYTEA NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
