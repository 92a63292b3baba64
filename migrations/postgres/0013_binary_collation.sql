-- Every text column of the log and the read models compares as bytes (collation "C"),
-- whatever the database's default collation is (the one-row head and checkpoint tables
-- keep theirs: nothing orders them, and the append trigger depends on the head's hash): PostgreSQL then orders and compares text exactly as SQLite does (BINARY),
-- so an ORDER BY on names or dates answers alike on both databases, on a database created
-- with, say, en_US.UTF-8 as on this project's C.UTF-8 ones. It is also cheaper: PostgreSQL
-- 15 compares text of any other collation (C.UTF-8 included) with strcoll and without
-- abbreviated keys. A 1M-event copy of rm_tenures: the (organization, post) index built in
-- 0.76 s instead of 1.03, ANALYZE in 0.27 s instead of 0.37 (BENCHMARKS.md, session 14).
-- No data changes and no table is rewritten: the indexes on these columns are rebuilt.

ALTER TABLE events
    ALTER COLUMN aggregate_type TYPE TEXT COLLATE "C",
    ALTER COLUMN aggregate_id TYPE TEXT COLLATE "C",
    ALTER COLUMN event_type TYPE TEXT COLLATE "C",
    ALTER COLUMN event_version TYPE TEXT COLLATE "C",
    ALTER COLUMN payload TYPE TEXT COLLATE "C",
    ALTER COLUMN metadata TYPE TEXT COLLATE "C",
    ALTER COLUMN recorded_at TYPE TEXT COLLATE "C",
    ALTER COLUMN actor TYPE TEXT COLLATE "C",
    ALTER COLUMN document_number TYPE TEXT COLLATE "C",
    ALTER COLUMN clause TYPE TEXT COLLATE "C",
    ALTER COLUMN prev_hash TYPE TEXT COLLATE "C",
    ALTER COLUMN hash TYPE TEXT COLLATE "C";

ALTER TABLE integrity_acknowledgements
    ALTER COLUMN fingerprint TYPE TEXT COLLATE "C",
    ALTER COLUMN problem TYPE TEXT COLLATE "C",
    ALTER COLUMN head_hash TYPE TEXT COLLATE "C",
    ALTER COLUMN acknowledged_at TYPE TEXT COLLATE "C",
    ALTER COLUMN actor TYPE TEXT COLLATE "C",
    ALTER COLUMN reason TYPE TEXT COLLATE "C";

ALTER TABLE rm_ingest_requests
    ALTER COLUMN request_id TYPE TEXT COLLATE "C",
    ALTER COLUMN notice_id TYPE TEXT COLLATE "C";

ALTER TABLE rm_jurisdictions
    ALTER COLUMN jurisdiction TYPE TEXT COLLATE "C";

ALTER TABLE rm_notice_warnings
    ALTER COLUMN notice_id TYPE TEXT COLLATE "C",
    ALTER COLUMN message TYPE TEXT COLLATE "C";

ALTER TABLE rm_notices
    ALTER COLUMN notice_id TYPE TEXT COLLATE "C",
    ALTER COLUMN notice_key TYPE TEXT COLLATE "C",
    ALTER COLUMN document_number TYPE TEXT COLLATE "C",
    ALTER COLUMN issuer TYPE TEXT COLLATE "C",
    ALTER COLUMN title TYPE TEXT COLLATE "C",
    ALTER COLUMN issued_on TYPE TEXT COLLATE "C",
    ALTER COLUMN jurisdiction TYPE TEXT COLLATE "C",
    ALTER COLUMN content_hash TYPE TEXT COLLATE "C",
    ALTER COLUMN source_text TYPE TEXT COLLATE "C",
    ALTER COLUMN remarks TYPE TEXT COLLATE "C",
    ALTER COLUMN revokes TYPE TEXT COLLATE "C",
    ALTER COLUMN recorded_at TYPE TEXT COLLATE "C",
    ALTER COLUMN actor TYPE TEXT COLLATE "C",
    ALTER COLUMN revoked_at TYPE TEXT COLLATE "C",
    ALTER COLUMN revoked_reason TYPE TEXT COLLATE "C",
    ALTER COLUMN revoked_by TYPE TEXT COLLATE "C",
    ALTER COLUMN corrected_at TYPE TEXT COLLATE "C",
    ALTER COLUMN corrected_reason TYPE TEXT COLLATE "C";

ALTER TABLE rm_organization_aliases
    ALTER COLUMN alias TYPE TEXT COLLATE "C",
    ALTER COLUMN canonical_name TYPE TEXT COLLATE "C";

ALTER TABLE rm_organizations
    ALTER COLUMN canonical_name TYPE TEXT COLLATE "C",
    ALTER COLUMN jurisdiction TYPE TEXT COLLATE "C";

ALTER TABLE rm_persons
    ALTER COLUMN name TYPE TEXT COLLATE "C",
    ALTER COLUMN gender TYPE TEXT COLLATE "C",
    ALTER COLUMN jurisdiction TYPE TEXT COLLATE "C";

ALTER TABLE rm_posts
    ALTER COLUMN organization TYPE TEXT COLLATE "C",
    ALTER COLUMN post TYPE TEXT COLLATE "C";

ALTER TABLE rm_tenures
    ALTER COLUMN person TYPE TEXT COLLATE "C",
    ALTER COLUMN organization TYPE TEXT COLLATE "C",
    ALTER COLUMN organization_as_written TYPE TEXT COLLATE "C",
    ALTER COLUMN post TYPE TEXT COLLATE "C",
    ALTER COLUMN start_date TYPE TEXT COLLATE "C",
    ALTER COLUMN end_date TYPE TEXT COLLATE "C",
    ALTER COLUMN probation_end TYPE TEXT COLLATE "C",
    ALTER COLUMN probation_outcome TYPE TEXT COLLATE "C",
    ALTER COLUMN probation_outcome_on TYPE TEXT COLLATE "C",
    ALTER COLUMN note TYPE TEXT COLLATE "C",
    ALTER COLUMN end_note TYPE TEXT COLLATE "C",
    ALTER COLUMN appointing_notice TYPE TEXT COLLATE "C",
    ALTER COLUMN appointing_clause TYPE TEXT COLLATE "C",
    ALTER COLUMN ending_notice TYPE TEXT COLLATE "C",
    ALTER COLUMN ending_clause TYPE TEXT COLLATE "C",
    ALTER COLUMN withdrawn_reason TYPE TEXT COLLATE "C";
