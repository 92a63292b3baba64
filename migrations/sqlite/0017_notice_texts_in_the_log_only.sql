-- A notice's text is kept once, in the log: in the payload of its `NoticeRecorded` event (or
-- of its last `NoticeCorrected`), which a notice's detail reads anyway (its events are part
-- of it). `rm_notices` copied it too: about 1.8 KB per notice, the one large value among the
-- read models (at 1M events 74 MB of text, with its pages 129 MB of the file's 1.6 GB).
-- Every ingest, bulk load and rebuild wrote it a second time (BENCHMARKS.md, session 36).
-- A read model, so nothing is lost: the events hold every version of the text.
-- SQLite rewrites each row in place (1.2 s on a 1M-event file): the pages the texts filled
-- stay the table's, mostly empty, until the next `renmian rebuild` writes it again.
ALTER TABLE rm_notices DROP COLUMN source_text;
