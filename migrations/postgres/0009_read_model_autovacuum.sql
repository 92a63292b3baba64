-- Tenure versions are closed by UPDATE, and a notice's event count is kept by UPDATE: each
-- leaves a dead row version, and a closed tenure version's entry stays in the partial
-- indexes on current versions (rm_tenures_holding, …) until VACUUM. A bitmap scan of a
-- post's holders visits every such entry: at 1M events with no vacuum since the load,
-- 219 heap blocks for 2 live rows, and ListHolders ran at a third of its speed after a
-- VACUUM (BENCHMARKS.md, session 5). Autovacuum's default waits for 20 % of a table to
-- change; these two tables are vacuumed and analyzed after 2 %.
ALTER TABLE rm_tenures SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE rm_notices SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
