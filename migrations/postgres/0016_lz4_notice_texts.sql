-- A notice's text is the one large value renmian stores: in its `NoticeRecorded` event's
-- payload and in `rm_notices.source_text` (about 2.7 KB of UTF-8 for a generated notice,
-- over PostgreSQL's 2 KB threshold in four notices of five), and PostgreSQL compresses it
-- in both places as it writes the row. Its default method, pglz, is several times slower
-- than lz4 both ways: the 40 000 texts of the 1M-event workload compressed in 0.21 s with
-- lz4 against 0.57 s with pglz, and read back in 0.10 s against 0.15 s, 5 % larger
-- (BENCHMARKS.md, session 35). Every append, rebuild and bulk load writes them.
-- Only values written from now on are compressed this way; those already stored stay as
-- they are, and PostgreSQL reads both. No row changes (the log's triggers are not
-- involved: this is the columns' storage setting). A server built without lz4 keeps pglz.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE events ALTER COLUMN payload SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE rm_notices ALTER COLUMN source_text SET COMPRESSION lz4';
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this PostgreSQL has no lz4: notice texts stay compressed with pglz';
END
$$;
