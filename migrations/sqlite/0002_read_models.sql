-- Read models: disposable projections of the event log, rebuilt by `renmian rebuild`.
-- Every row can be derived from the log; nothing here is a source of truth.

-- Last event position applied to the read models, updated in the same transaction as them.
CREATE TABLE projection_checkpoint (
    name     TEXT   PRIMARY KEY,
    position BIGINT NOT NULL
);
INSERT INTO projection_checkpoint (name, position) VALUES ('registry', 0);

CREATE TABLE rm_notices (
    notice_id         TEXT   PRIMARY KEY,          -- aggregate id (UUID v5 of the key)
    notice_key        TEXT   NOT NULL UNIQUE,
    document_number   TEXT,
    issuer            TEXT,
    title             TEXT   NOT NULL,
    issued_on         TEXT,
    jurisdiction      TEXT,
    content_hash      TEXT   NOT NULL,
    source_text       TEXT   NOT NULL,
    remarks           TEXT   NOT NULL,             -- JSON array
    revokes           TEXT   NOT NULL,             -- JSON array
    event_count       BIGINT NOT NULL,
    recorded_position BIGINT NOT NULL,
    recorded_at       TEXT   NOT NULL,
    actor             TEXT   NOT NULL,
    revoked_position  BIGINT,
    revoked_at        TEXT,
    revoked_reason    TEXT,
    revoked_by        TEXT,
    corrected_position BIGINT,                     -- last correction
    corrected_at      TEXT,
    corrected_reason  TEXT,
    correction_count  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX rm_notices_document_number ON rm_notices (document_number);

-- Contradictions the registry accepted and flagged (the notice is the source of truth).
CREATE TABLE rm_notice_warnings (
    position  BIGINT NOT NULL,                     -- the event that raised it
    seq       BIGINT NOT NULL,
    notice_id TEXT   NOT NULL,
    line      BIGINT,
    message   TEXT   NOT NULL,
    PRIMARY KEY (position, seq)
);
CREATE INDEX rm_notice_warnings_notice ON rm_notice_warnings (notice_id);

CREATE TABLE rm_organizations (
    canonical_name TEXT   PRIMARY KEY,
    jurisdiction   TEXT,
    first_position BIGINT NOT NULL
);

-- Every name an organization has been written as (as written, canonical, parenthesised
-- second names), mapped to its canonical name. The first mapping of a name wins.
CREATE TABLE rm_organization_aliases (
    alias          TEXT   PRIMARY KEY,
    canonical_name TEXT   NOT NULL,
    first_position BIGINT NOT NULL
);

-- A person is an id, not a name: two people may share a name (同名). person_id is the
-- position of the event that first named them. A name in a notice links to an existing
-- person only when that is unambiguous (see projector.rs); merges and splits are events.
CREATE TABLE rm_persons (
    person_id       BIGINT PRIMARY KEY,
    name            TEXT   NOT NULL,
    gender          TEXT,
    jurisdiction    TEXT,                          -- of the notice that first named them
    first_position  BIGINT NOT NULL,
    merged_into     BIGINT,                        -- set by a merge: this id is retired
    merged_position BIGINT
);
CREATE INDEX rm_persons_name ON rm_persons (name);

CREATE TABLE rm_posts (
    organization   TEXT   NOT NULL,
    post           TEXT   NOT NULL,
    first_position BIGINT NOT NULL,
    PRIMARY KEY (organization, post)
);

-- One row per version of a person's tenure of a post. A tenure is never updated in place:
-- a change (end, probation outcome, withdrawal) closes the current version (version_to = the
-- position of the event that changed it) and inserts the next one (version_from = that
-- position). "As the registry knew it at position P" is the versions with
-- version_from <= P < version_to.
-- start_date NULL: unknown start (a removal of someone never recorded as appointed);
-- end_date NULL: still open. Dates are YYYY-MM-DD (or YYYY-MM / YYYY when only that is
-- known); a tenure holds on D when start_date <= D < end_date.
CREATE TABLE rm_tenures (
    tenure_id               BIGINT NOT NULL,       -- position of the event that opened it
    version_from            BIGINT NOT NULL,
    version_to              BIGINT,                -- NULL: current version
    person_id               BIGINT NOT NULL,
    person                  TEXT   NOT NULL,
    organization            TEXT   NOT NULL,       -- canonical
    organization_as_written TEXT   NOT NULL,
    post                    TEXT   NOT NULL,
    concurrent              BIGINT NOT NULL,       -- 0/1
    start_date              TEXT,
    end_date                TEXT,
    probation_months        BIGINT,
    probation_end           TEXT,
    probation_outcome       TEXT,                  -- confirmed | terminated
    probation_outcome_on    TEXT,
    note                    TEXT,
    end_note                TEXT,
    appointing_notice       TEXT,
    appointing_line         BIGINT,
    appointing_clause       TEXT,
    ending_notice           TEXT,
    ending_line             BIGINT,
    ending_clause           TEXT,
    recorded_position       BIGINT NOT NULL,
    ended_position          BIGINT,
    withdrawn_position      BIGINT,                -- the appointing fact was revoked/corrected away
    withdrawn_reason        TEXT,
    PRIMARY KEY (tenure_id, version_from)
);
CREATE INDEX rm_tenures_post ON rm_tenures (organization, post);
CREATE INDEX rm_tenures_person ON rm_tenures (person_id);
CREATE INDEX rm_tenures_probation ON rm_tenures (probation_end);

-- gRPC IngestNotice request ids, from the `request_id` metadata of NoticeRecorded events:
-- a retried request finds its notices here.
CREATE TABLE rm_ingest_requests (
    request_id TEXT   NOT NULL,
    notice_id  TEXT   NOT NULL,
    position   BIGINT NOT NULL,
    PRIMARY KEY (request_id, notice_id)
);
