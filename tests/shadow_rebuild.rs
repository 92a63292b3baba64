//! PostgreSQL: a rebuild writes new read-model tables and swaps them in at its end
//! (`src/projections/shadow.rs`). These tests check what the swap must keep (every table's
//! definition, storage parameters and grants), that it waits for readers instead of failing,
//! and that a rebuild that cannot swap fails and changes nothing; and the same of a staged
//! rebuild (a bulk load's), which also drops only the staging schemas left by rebuilds that
//! died. Skipped, with a message, when `RENMIAN_TEST_DATABASE_URL` is unset.

mod common;

use std::time::Duration;

use common::{actor, export_json, generated_notice, seeded, TestDb};
use renmian::projections::Projector;
use renmian::registry::Registry;
use renmian::store::{Database, DatabaseOptions, StoreError};
use sqlx::{Connection, PgConnection, Row};

/// The live read-model tables as the catalog describes them: columns (type, NOT NULL,
/// compression, default), constraints, indexes, storage parameters, grants and comments;
/// with the schemas of the database.
async fn catalog(conn: &mut PgConnection) -> Vec<String> {
    let tables = sqlx::query(
        "SELECT c.relname::text || ' | ' || \
           COALESCE(array_to_string(c.reloptions, ','), '') || ' | ' || \
           (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) \
              || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END \
              || CASE WHEN a.attcompression <> '' THEN ' compression ' || a.attcompression::text \
                 ELSE '' END \
              || COALESCE(' default ' || pg_get_expr(d.adbin, d.adrelid), '') \
              || COALESCE(' -- ' || col_description(c.oid, a.attnum), ''), ', ' \
              ORDER BY a.attnum) \
            FROM pg_attribute a LEFT JOIN pg_attrdef d \
              ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) || ' | ' || \
           COALESCE((SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid) \
              || COALESCE(' -- ' || obj_description(oid, 'pg_constraint'), ''), '; ' \
              ORDER BY conname) FROM pg_constraint WHERE conrelid = c.oid), '') || ' | ' || \
           COALESCE((SELECT string_agg(pg_get_indexdef(indexrelid) \
              || COALESCE(' -- ' || obj_description(indexrelid, 'pg_class'), ''), '; ' \
              ORDER BY pg_get_indexdef(indexrelid)) FROM pg_index WHERE indrelid = c.oid), '') \
           || ' | ' || COALESCE((SELECT string_agg(a.privilege_type || ' to ' || \
              CASE WHEN a.grantee = 0 THEN 'public' ELSE a.grantee::regrole::text END \
              || CASE WHEN a.is_grantable THEN ' (grantable)' ELSE '' END, ', ' \
              ORDER BY 1) FROM aclexplode(c.relacl) a), '') || ' | ' || \
           COALESCE(obj_description(c.oid, 'pg_class'), '') AS description \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname LIKE 'rm\\_%' \
         ORDER BY c.relname",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let schemas = sqlx::query(
        "SELECT string_agg(nspname::text, ', ' ORDER BY nspname) AS schemas FROM pg_namespace \
         WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    tables
        .iter()
        .map(|row| row.get::<String, _>("description"))
        .chain(std::iter::once(format!(
            "schemas: {}",
            schemas.get::<String, _>("schemas")
        )))
        .collect()
}

/// Taken for writing by a test that checks the visibility maps after a `VACUUM`, for reading
/// by every other test here: `VACUUM` marks a page all-visible only when no transaction
/// older than its rows is running anywhere on the server, and the other tests' transactions
/// (in databases of their own, running at the same time) held it back, so that check
/// failed in about half of the parallel runs and never alone.
static ALONE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A database of the test's own on PostgreSQL holding the seed and 30 generated notices;
/// `None` (with a message) when `RENMIAN_TEST_DATABASE_URL` is unset.
async fn postgres_with_history() -> Option<(TestDb, Registry)> {
    let db = TestDb::postgres().await?;
    let registry = seeded(&db).await;
    for n in 1..=30 {
        registry
            .ingest(&generated_notice(n), &actor())
            .await
            .unwrap();
    }
    Some((db, registry))
}

/// The `name` column of every row `sql` returns.
async fn names(conn: &mut PgConnection, sql: &str) -> Vec<String> {
    sqlx::query(sql)
        .fetch_all(conn)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get("name"))
        .collect()
}

/// The read-model tables with no statistics (`rm_ingest_requests`, empty, has none).
async fn unanalysed(conn: &mut PgConnection) -> Vec<String> {
    names(
        conn,
        "SELECT c.relname::text AS name FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname LIKE 'rm\\_%' \
           AND c.relname <> 'rm_ingest_requests' \
           AND NOT EXISTS (SELECT 1 FROM pg_statistic s WHERE s.starelid = c.oid) \
         ORDER BY 1",
    )
    .await
}

/// The read-model tables with a page not marked all-visible in their visibility maps.
async fn not_all_visible(conn: &mut PgConnection) -> Vec<String> {
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_visibility")
        .execute(&mut *conn)
        .await
        .unwrap();
    names(
        conn,
        "SELECT c.relname::text AS name FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname LIKE 'rm\\_%' \
           AND (SELECT all_visible FROM pg_visibility_map_summary(c.oid)) \
               < pg_relation_size(c.oid) / current_setting('block_size')::bigint \
         ORDER BY 1",
    )
    .await
}

async fn connect(db: &TestDb) -> PgConnection {
    PgConnection::connect(&db.url).await.unwrap()
}

/// A role of this test's own (roles belong to the cluster, not to the test's database),
/// dropped by [`drop_role`].
async fn create_role(conn: &mut PgConnection) -> String {
    let role = format!("renmian_reader_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE ROLE {role} NOLOGIN"))
        .execute(&mut *conn)
        .await
        .unwrap();
    role
}

async fn drop_role(conn: &mut PgConnection, role: &str) {
    for statement in [format!("DROP OWNED BY {role}"), format!("DROP ROLE {role}")] {
        sqlx::query(&statement).execute(&mut *conn).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_swapped_in_tables_are_defined_as_the_replaced_ones() {
    let _shared = ALONE.read().await;
    let Some((db, registry)) = postgres_with_history().await else {
        return;
    };
    let mut conn = connect(&db).await;
    // What an operator may have added beside the migrations: grants, a comment, a storage
    // parameter.
    let role = create_role(&mut conn).await;
    for statement in [
        format!("GRANT SELECT ON rm_tenures, rm_persons TO {role}"),
        format!("GRANT SELECT, INSERT ON rm_notices TO {role} WITH GRANT OPTION"),
        "GRANT SELECT ON rm_posts TO PUBLIC".to_string(),
        "COMMENT ON TABLE rm_posts IS 'posts named by some notice'".to_string(),
        "COMMENT ON COLUMN rm_posts.post IS 'as the notice wrote it'".to_string(),
        "COMMENT ON INDEX rm_tenures_holding IS 'holders and post history'".to_string(),
        "COMMENT ON CONSTRAINT rm_tenures_pkey ON rm_tenures IS 'one row per version'".to_string(),
        "ALTER TABLE rm_persons SET (fillfactor = 90)".to_string(),
    ] {
        sqlx::query(&statement).execute(&mut conn).await.unwrap();
    }
    let before = catalog(&mut conn).await;
    assert!(
        before
            .iter()
            .any(|t| t.starts_with("rm_tenures | autovacuum_vacuum_scale_factor=0.02")),
        "{before:#?}"
    );
    for expected in [
        format!("SELECT to {role}"),
        format!("INSERT to {role} (grantable)"),
        "SELECT to public".into(),
        "posts named by some notice".into(),
        "as the notice wrote it".into(),
        "-- holders and post history".into(),
        "-- one row per version".into(),
        "fillfactor=90".into(),
    ] {
        assert!(
            before.iter().any(|t| t.contains(&expected)),
            "{expected}: {before:#?}"
        );
    }
    let incremental = export_json(&registry).await;

    registry.projector().rebuild().await.unwrap();
    assert_eq!(catalog(&mut conn).await, before);
    assert_eq!(export_json(&registry).await, incremental);
    // Appends after the swap project into the new tables.
    registry
        .ingest(&generated_notice(31), &actor())
        .await
        .unwrap();
    registry.projector().rebuild().await.unwrap();
    assert_eq!(catalog(&mut conn).await, before);
    drop_role(&mut conn, &role).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_swap_waits_for_a_reader_of_the_live_tables() {
    let _shared = ALONE.read().await;
    let Some((db, registry)) = postgres_with_history().await else {
        return;
    };
    let incremental = export_json(&registry).await;
    let mut reader = connect(&db).await;
    let mut watcher = connect(&db).await;
    let reader_pid: i32 = sqlx::query("SELECT pg_backend_pid() AS pid")
        .fetch_one(&mut reader)
        .await
        .unwrap()
        .get("pid");
    // A reader in a transaction (as an export is) holds its table lock until it ends.
    let mut tx = reader.begin().await.unwrap();
    let tenures: i64 = sqlx::query("SELECT count(*) AS n FROM rm_tenures")
        .fetch_one(&mut *tx)
        .await
        .unwrap()
        .get("n");
    let rebuilding = {
        let projector = registry.projector().clone();
        tokio::spawn(async move { projector.rebuild().await })
    };
    // Until the rebuild's swap is seen waiting for the reader's lock.
    let mut waited = false;
    for _ in 0..600 {
        let blocked: i64 = sqlx::query(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE $1 = ANY(pg_blocking_pids(pid))",
        )
        .bind(reader_pid)
        .fetch_one(&mut watcher)
        .await
        .unwrap()
        .get("n");
        if blocked > 0 {
            waited = true;
            break;
        }
        assert!(
            !rebuilding.is_finished(),
            "the rebuild swapped under a reader"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(waited, "the rebuild never waited for the reader");
    // The reader still reads the tables it started with.
    let again: i64 = sqlx::query("SELECT count(*) AS n FROM rm_tenures")
        .fetch_one(&mut *tx)
        .await
        .unwrap()
        .get("n");
    assert_eq!(again, tenures);
    tx.commit().await.unwrap();
    rebuilding.await.unwrap().unwrap();
    assert_eq!(export_json(&registry).await, incremental);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_that_cannot_swap_fails_and_changes_nothing() {
    let _shared = ALONE.read().await;
    let Some((db, registry)) = postgres_with_history().await else {
        return;
    };
    let mut conn = connect(&db).await;
    // A view over a read model: `DROP TABLE` refuses to drop what it depends on.
    sqlx::query("CREATE VIEW current_heads AS SELECT * FROM rm_tenures WHERE version_to IS NULL")
        .execute(&mut conn)
        .await
        .unwrap();
    let before = catalog(&mut conn).await;
    let incremental = export_json(&registry).await;
    let checkpoint = registry.projector().checkpoint().await.unwrap();

    // From the log, and staged (its rows written by other connections and committed
    // before the swap): the staging schema is dropped.
    for staged in [false, true] {
        let error = match staged {
            false => registry.projector().rebuild().await.map(Some),
            true => rebuild_prebuilt(&registry).await,
        }
        .unwrap_err();
        assert!(
            matches!(error, StoreError::Database(_)),
            "{error:?}: a refusal, not a lost connection"
        );
        assert_eq!(catalog(&mut conn).await, before, "no shadow schema is left");
        assert!(staging_schemas(&mut conn).await.is_empty());
        assert_eq!(export_json(&registry).await, incremental);
        assert_eq!(registry.projector().checkpoint().await.unwrap(), checkpoint);
    }
    // The registry goes on: an ingest projects as before, and once the view is gone a
    // rebuild succeeds.
    registry
        .ingest(&generated_notice(31), &actor())
        .await
        .unwrap();
    let incremental = export_json(&registry).await;
    sqlx::query("DROP VIEW current_heads")
        .execute(&mut conn)
        .await
        .unwrap();
    registry.projector().rebuild().await.unwrap();
    assert_eq!(export_json(&registry).await, incremental);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_swap_kept_waiting_gives_up_and_changes_nothing() {
    let _shared = ALONE.read().await;
    let Some((db, registry)) = postgres_with_history().await else {
        return;
    };
    let incremental = export_json(&registry).await;
    let checkpoint = registry.projector().checkpoint().await.unwrap();
    let mut reader = connect(&db).await;
    let mut tx = reader.begin().await.unwrap();
    sqlx::query("SELECT count(*) FROM rm_persons")
        .execute(&mut *tx)
        .await
        .unwrap();
    // The reader outlasts the swap's patience.
    let error = registry
        .projector()
        .clone()
        .with_swap_wait(Duration::from_secs(2))
        .rebuild()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::Unavailable(message) if message.contains("gave up")),
        "{error:?}"
    );
    tx.commit().await.unwrap();
    let mut conn = connect(&db).await;
    let shadow: i64 =
        sqlx::query("SELECT count(*) AS n FROM pg_namespace WHERE nspname = 'renmian_rebuild'")
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get("n");
    assert_eq!(shadow, 0);
    assert_eq!(export_json(&registry).await, incremental);
    assert_eq!(registry.projector().checkpoint().await.unwrap(), checkpoint);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_swapped_in_tables_go_live_analysed_with_their_copied_rows_frozen() {
    let _shared = ALONE.read().await;
    let Some((db, registry)) = postgres_with_history().await else {
        return;
    };
    let mut conn = connect(&db).await;
    registry.projector().rebuild().await.unwrap();
    // Statistics of the new tables came with them (analysed before the swap, not by a
    // VACUUM after the commit that a planner could race).
    let unanalysed = unanalysed(&mut conn).await;
    assert!(unanalysed.is_empty(), "no statistics: {unanalysed:?}");
    // The tenure versions went in with COPY … FREEZE: their pages are all-frozen in the
    // visibility map (a VACUUM of young rows would mark them all-visible, not frozen; the
    // tables written with INSERT … ON CONFLICT are not).
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_visibility")
        .execute(&mut conn)
        .await
        .unwrap();
    let pages = "SELECT all_visible, all_frozen FROM pg_visibility_map_summary($1::regclass)";
    let tenures = sqlx::query(pages)
        .bind("rm_tenures")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let (visible, frozen): (i64, i64) = (tenures.get("all_visible"), tenures.get("all_frozen"));
    assert!(
        frozen > 0 && frozen == visible,
        "{frozen} of {visible} pages frozen"
    );
    let posts = sqlx::query(pages)
        .bind("rm_posts")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(posts.get::<i64, _>("all_frozen"), 0);
}

/// The compression method of `table.column` (`pg_attribute.attcompression`: `l` for lz4,
/// empty for the default).
async fn compression(conn: &mut PgConnection, table: &str, column: &str) -> String {
    sqlx::query_scalar(
        "SELECT attcompression::text FROM pg_attribute \
         WHERE attrelid = to_regclass($1) AND attname = $2",
    )
    .bind(table)
    .bind(column)
    .fetch_one(conn)
    .await
    .unwrap()
}

/// A notice's text, the one large value, is stored once: in the log's payloads, compressed
/// with lz4 (migration `postgres/0016`; on a server built without lz4, with the default),
/// and nowhere in the read models — `rm_notices` has no copy of it (migration 0017), neither
/// migrated nor after a rebuild's new tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notice_texts_are_stored_once_in_the_log_compressed_with_lz4() {
    let _shared = ALONE.read().await;
    let Some((db, registry)) = postgres_with_history().await else {
        return;
    };
    let mut conn = connect(&db).await;
    let lz4 = sqlx::query("SET default_toast_compression = lz4")
        .execute(&mut conn)
        .await
        .is_ok();
    sqlx::query("RESET default_toast_compression")
        .execute(&mut conn)
        .await
        .unwrap();
    let (setting, method) = if lz4 { ("l", "lz4") } else { ("", "pglz") };
    assert_eq!(compression(&mut conn, "events", "payload").await, setting);
    let payloads = "SELECT DISTINCT pg_column_compression(payload) AS name FROM events \
                    WHERE pg_column_compression(payload) IS NOT NULL";
    assert_eq!(names(&mut conn, payloads).await, [method]);
    let text_columns = "SELECT a.attname AS name FROM pg_attribute a \
         WHERE a.attrelid = 'rm_notices'::regclass AND a.attnum > 0 AND NOT a.attisdropped \
           AND a.attname = 'source_text'";
    for rebuilt in [false, true] {
        if rebuilt {
            registry.projector().rebuild().await.unwrap();
        }
        assert!(
            names(&mut conn, text_columns).await.is_empty(),
            "rebuilt: {rebuilt}"
        );
        let notice = registry
            .queries()
            .notice("临政人〔2023〕4号")
            .await
            .unwrap();
        assert!(
            notice
                .source_text
                .unwrap()
                .contains("钟炎夫同志任市教育体育局副局长"),
            "rebuilt: {rebuilt}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn text_compares_as_bytes_as_on_sqlite_before_and_after_a_rebuild() {
    let _shared = ALONE.read().await;
    let Some((db, registry)) = postgres_with_history().await else {
        return;
    };
    let mut conn = connect(&db).await;
    // Migration 0013: every text column of the log and the read models has collation "C"
    // (SQLite's BINARY), so text orders alike on both databases whatever the database's
    // default collation; the rebuild's new tables (`LIKE` the live ones) keep it.
    let other_collations = "SELECT c.relname || '.' || a.attname AS name FROM pg_attribute a \
         JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'r' AND a.attnum > 0 \
           AND NOT a.attisdropped AND a.atttypid = 'text'::regtype \
           AND (c.relname LIKE 'rm\\_%' OR c.relname IN ('events', 'integrity_acknowledgements')) \
           AND a.attcollation <> 'pg_catalog.\"C\"'::regcollation ORDER BY 1";
    for round in ["migrated", "rebuilt"] {
        if round == "rebuilt" {
            registry.projector().rebuild().await.unwrap();
        }
        let columns = names(&mut conn, other_collations).await;
        assert!(columns.is_empty(), "{round}: {columns:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_s_statements_are_not_bound_by_the_pool_s_statement_timeout() {
    let _shared = ALONE.read().await;
    let Some((db, registry)) = postgres_with_history().await else {
        return;
    };
    let before = export_json(&registry).await;
    // A bound far below what a rebuild's statements take (catalog copies, index builds,
    // ANALYZE; with it on the rebuild's connection the rebuild fails): they grow with the
    // log, so the rebuild's own connection bounds lock waits instead.
    let short = DatabaseOptions {
        statement_timeout: Duration::from_millis(1),
        ..DatabaseOptions::default()
    };
    // Connecting runs the migrator's few statements under that bound too: on a busy
    // machine one of them may overrun it, so connecting is retried (the rebuild is not).
    let mut bounded = None;
    for _ in 0..20 {
        match Database::connect_with(&db.url, short).await {
            Ok(connected) => {
                bounded = Some(connected);
                break;
            }
            Err(e) => eprintln!("connecting under a 1 ms bound: {e}; again"),
        }
    }
    let bounded = bounded.expect("connected under a 1 ms statement bound");
    let mut conn = connect(&db).await;
    let vacuumed = "SELECT count(*) AS n FROM pg_stat_user_tables \
         WHERE relname = 'rm_tenures' AND last_vacuum IS NOT NULL";
    let never: i64 = sqlx::query(vacuumed)
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get("n");
    assert_eq!(never, 0, "the new tables were vacuumed before");
    Projector::new(bounded.clone()).rebuild().await.unwrap();
    bounded.close().await;
    assert_eq!(export_json(&registry).await, before);
    // The VACUUM after the commit ran too (on a connection of its own, not bound per
    // statement either); the server publishes its statistics a moment later.
    let mut done: i64 = 0;
    for _ in 0..50 {
        done = sqlx::query(vacuumed)
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get("n");
        if done == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(done, 1, "the rebuilt read models were not vacuumed");
}

/// A rebuild of `registry`'s whole log replayed alongside, as a bulk load's is: on
/// PostgreSQL a staged rebuild (`shadow.rs`'s `Staged`).
async fn rebuild_prebuilt(registry: &Registry) -> Result<Option<i64>, StoreError> {
    let projector = registry.projector();
    let log = registry
        .database()
        .events_after(0, 1_000_000)
        .await
        .unwrap();
    let prebuild = projector.prebuild();
    prebuild.appended(log);
    let prebuilt = prebuild.finish().await.expect("replayed");
    projector.rebuild_prebuilt(prebuilt).await
}

/// The schemas whose names start with `renmian_stage_`.
async fn staging_schemas(conn: &mut PgConnection) -> Vec<String> {
    names(
        conn,
        "SELECT nspname::text AS name FROM pg_namespace \
         WHERE starts_with(nspname, 'renmian_stage_') ORDER BY 1",
    )
    .await
}

/// A rebuild whose rows are all in memory writes them through several connections into
/// committed tables of a schema of its own, then swaps them in: the same tables, definitions
/// and rows as a rebuild from the log. It drops the staging schemas whose rebuilds died (no
/// session holds their advisory lock), not one being written, and leaves none of its own;
/// so does a rebuild from the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_staged_rebuild_writes_what_a_rebuild_writes_and_drops_only_orphans() {
    // Alone: its check of the visibility maps needs no older transaction running.
    let _alone = ALONE.write().await;
    let Some((db, registry)) = postgres_with_history().await else {
        return;
    };
    let mut conn = connect(&db).await;
    let role = create_role(&mut conn).await;
    for statement in [
        format!("GRANT SELECT ON rm_tenures TO {role}"),
        "COMMENT ON INDEX rm_tenures_holding IS 'holders and post history'".to_string(),
        "ALTER TABLE rm_persons SET (fillfactor = 90)".to_string(),
    ] {
        sqlx::query(&statement).execute(&mut conn).await.unwrap();
    }
    let before = catalog(&mut conn).await;
    let incremental = export_json(&registry).await;
    for statement in [
        "CREATE SCHEMA renmian_stage_died",
        "CREATE TABLE renmian_stage_died.rm_tenures (tenure_id BIGINT)",
        "CREATE SCHEMA renmian_stage_alive",
    ] {
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    }
    let mut writing = connect(&db).await;
    sqlx::query("SELECT pg_advisory_lock($1, hashtext('renmian_stage_alive'))")
        .bind(renmian::projections::STAGE_LOCK_CLASS)
        .execute(&mut writing)
        .await
        .unwrap();

    let head = registry.database().head_position().await.unwrap();
    assert_eq!(rebuild_prebuilt(&registry).await.unwrap(), Some(head));
    assert_eq!(staging_schemas(&mut conn).await, ["renmian_stage_alive"]);
    sqlx::query("DROP SCHEMA renmian_stage_alive")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(catalog(&mut conn).await, before);
    assert_eq!(export_json(&registry).await, incremental);
    assert!(
        unanalysed(&mut conn).await.is_empty(),
        "analysed before the swap"
    );
    let unvacuumed = not_all_visible(&mut conn).await;
    assert!(
        unvacuumed.is_empty(),
        "vacuumed before the swap: {unvacuumed:?}"
    );
    // A rebuild from the log drops orphans too.
    sqlx::query("CREATE SCHEMA renmian_stage_died_again")
        .execute(&mut conn)
        .await
        .unwrap();
    registry.projector().rebuild().await.unwrap();
    assert!(staging_schemas(&mut conn).await.is_empty());
    assert_eq!(
        export_json(&registry).await,
        incremental,
        "a rebuild disagrees"
    );
    drop_role(&mut conn, &role).await;
}

/// A staged rebuild writes its rows before it locks the checkpoint: when the read models
/// stand past its replay by then (another process projected meanwhile), swapping its tables
/// in would take readers back to an older state, so it changes nothing and says so (its
/// caller rebuilds from the log instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_staged_rebuild_never_takes_the_read_models_back() {
    let _shared = ALONE.read().await;
    let Some((db, registry)) = postgres_with_history().await else {
        return;
    };
    let mut conn = connect(&db).await;
    let incremental = export_json(&registry).await;
    let checkpoint = registry.projector().checkpoint().await.unwrap();
    let log = registry
        .database()
        .events_after(0, 1_000_000)
        .await
        .unwrap();
    // The log's first notices, whole: a replay the log agrees with, short of the checkpoint.
    let cut = (log.len() / 2..log.len())
        .find(|&i| log[i].aggregate_id != log[i - 1].aggregate_id)
        .unwrap();
    let prebuild = registry.projector().prebuild();
    prebuild.appended(log[..cut].to_vec());
    let prebuilt = prebuild.finish().await.expect("replayed");
    assert!(log[cut - 1].position < checkpoint);

    assert_eq!(
        registry
            .projector()
            .rebuild_prebuilt(prebuilt)
            .await
            .unwrap(),
        None
    );
    assert_eq!(registry.projector().checkpoint().await.unwrap(), checkpoint);
    assert_eq!(export_json(&registry).await, incremental);
    assert!(staging_schemas(&mut conn).await.is_empty());
}
