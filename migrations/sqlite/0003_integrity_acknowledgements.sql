-- Operators' acknowledgements of anomalies in the hash chain (`renmian verify --acknowledge`).
-- An acknowledgement names one anomaly exactly (its position and a fingerprint of what was
-- found there), so a later, different tampering is not covered and needs its own. Like the
-- events it vouches for, it is evidence: append-only, guarded by the same kind of triggers.
CREATE TABLE integrity_acknowledgements (
    id              INTEGER PRIMARY KEY,
    position        INTEGER NOT NULL,             -- where the anomaly was found
    fingerprint     TEXT    NOT NULL,             -- sha256 of what was found there
    problem         TEXT    NOT NULL,
    head_position   INTEGER NOT NULL,             -- the log head when acknowledged
    head_hash       TEXT    NOT NULL,
    acknowledged_at TEXT    NOT NULL,             -- RFC 3339 UTC, microseconds
    actor           TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    UNIQUE (position, fingerprint)
);

CREATE TRIGGER integrity_acknowledgements_no_update BEFORE UPDATE ON integrity_acknowledgements
BEGIN
    SELECT RAISE(ABORT, 'renmian: acknowledgements are immutable (UPDATE refused)');
END;
CREATE TRIGGER integrity_acknowledgements_no_delete BEFORE DELETE ON integrity_acknowledgements
BEGIN
    SELECT RAISE(ABORT, 'renmian: acknowledgements are immutable (DELETE refused)');
END;
