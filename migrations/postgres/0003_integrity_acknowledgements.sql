-- Operators' acknowledgements of anomalies in the hash chain (`renmian verify --acknowledge`).
-- An acknowledgement names one anomaly exactly (its position and a fingerprint of what was
-- found there), so a later, different tampering is not covered and needs its own. Like the
-- events it vouches for, it is evidence: append-only, guarded by the same kind of triggers.
CREATE TABLE integrity_acknowledgements (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    position        BIGINT  NOT NULL,             -- where the anomaly was found
    fingerprint     TEXT    NOT NULL,             -- sha256 of what was found there
    problem         TEXT    NOT NULL,
    head_position   BIGINT  NOT NULL,             -- the log head when acknowledged
    head_hash       TEXT    NOT NULL,
    acknowledged_at TEXT    NOT NULL,             -- RFC 3339 UTC, microseconds
    actor           TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    UNIQUE (position, fingerprint)
);

CREATE FUNCTION renmian_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'renmian: % is append-only (% refused)', TG_TABLE_NAME, TG_OP;
END;
$$;
CREATE TRIGGER integrity_acknowledgements_no_update BEFORE UPDATE ON integrity_acknowledgements
    FOR EACH ROW EXECUTE FUNCTION renmian_append_only();
CREATE TRIGGER integrity_acknowledgements_no_delete BEFORE DELETE ON integrity_acknowledgements
    FOR EACH ROW EXECUTE FUNCTION renmian_append_only();
CREATE TRIGGER integrity_acknowledgements_no_truncate BEFORE TRUNCATE ON integrity_acknowledgements
    FOR EACH STATEMENT EXECUTE FUNCTION renmian_append_only();
