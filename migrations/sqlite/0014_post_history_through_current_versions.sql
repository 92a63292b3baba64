-- Every tenure has exactly one current version (version_to IS NULL), withdrawn or not, and
-- a tenure's organization and post never change from one version to the next. So the
-- current versions of a post name all of its tenures, and a post's history, now or as the
-- registry knew it at some position, reads them through `rm_tenures_holding` and, for an
-- earlier position, their versions by primary key (tenure_id, version_from). The index on
-- (organization, post) over every version is then not needed: it was the read models'
-- largest cost in a notice's commit (206 of 931 pages written by eight notices, 22 %) and
-- the longest index build of a rebuild (1.13 s of 4.1 s at 1M events on SQLite;
-- BENCHMARKS.md, session 17 and 18). `rm_tenures_holding` keeps withdrawn versions too, so
-- that a post's history still lists its withdrawn tenures; the queries that must not see
-- them (ListHolders, the projector's reads) say `withdrawn_position IS NULL`, as they did.
DROP INDEX rm_tenures_post;
DROP INDEX rm_tenures_holding;
CREATE INDEX rm_tenures_holding ON rm_tenures (organization, post, end_date, start_date)
    WHERE version_to IS NULL;
