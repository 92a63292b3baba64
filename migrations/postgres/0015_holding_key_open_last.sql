-- A post's entries in `rm_tenures_holding` ordered so that its open tenures come right after
-- the ones that ended last: the end date's place in the key is `COALESCE(end_date, '~')`
-- ('~' sorts after every date, which are digits and dashes). With `end_date` itself open
-- entries (NULL) sorted first and the tenure just ended last, behind every ended one: an
-- appointment and its predecessor's removal wrote two to four leaves per post, and this
-- index was 45 % of what a notice's commit wrote at 1M events (BENCHMARKS.md, session 19).
-- "Open, or ending after D" is now one range of the key, `> D`.
DROP INDEX rm_tenures_holding;
CREATE INDEX rm_tenures_holding ON rm_tenures (organization, post, (COALESCE(end_date, '~')), start_date)
    WHERE version_to IS NULL;
