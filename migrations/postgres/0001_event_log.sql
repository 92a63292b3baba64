-- The event log: append-only, one row per event, in global commit order.
CREATE TABLE events (
    position        BIGINT  PRIMARY KEY,          -- global, gap-free, commit-ordered
    aggregate_type  TEXT    NOT NULL,
    aggregate_id    TEXT    NOT NULL,
    sequence        BIGINT  NOT NULL,
    event_type      TEXT    NOT NULL,
    event_version   TEXT    NOT NULL,
    payload         TEXT    NOT NULL,             -- canonical JSON (sorted keys); TEXT keeps bytes for the hash
    metadata        TEXT    NOT NULL,
    recorded_at     TEXT    NOT NULL,             -- RFC 3339 UTC, microseconds
    actor           TEXT    NOT NULL,
    document_number TEXT,
    source_line     BIGINT,
    clause          TEXT,
    prev_hash       TEXT    NOT NULL,
    hash            TEXT    NOT NULL,
    UNIQUE (aggregate_type, aggregate_id, sequence)
);

-- The head of the log: the last position and hash. Writers update it first in their
-- transaction; its row lock serialises appends across processes and keeps positions
-- gap-free and commit-ordered.
CREATE TABLE event_log_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position BIGINT NOT NULL,
    hash     TEXT   NOT NULL
);
INSERT INTO event_log_head (id, position, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Immutability is the database's job, not only the application's.
CREATE FUNCTION renmian_events_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'renmian: events are immutable (% refused)', TG_OP;
END;
$$;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION renmian_events_immutable();
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION renmian_events_immutable();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION renmian_events_immutable();
