//! PostgreSQL: a rebuild writes new read-model tables beside the live ones and swaps them in
//! at the end of its transaction.
//!
//! Emptying the live tables and inserting every row again maintains each of their indexes
//! row by row and leaves every old row dead for VACUUM: at 1M events, `DELETE` of
//! `rm_tenures` and the `INSERT` of its 974 430 rows took 31.7 s, against 12.3 s for the same
//! rows into a table with only its primary key and the five secondary indexes built
//! afterwards, one sort each (BENCHMARKS.md, session 9).
//!
//! How, all in the rebuild's transaction (on a `PgConnection`: the rebuild writes its rows
//! with `COPY`, which sqlx `Any` cannot send):
//! 1. [`Shadow::create`]: schema [`SHADOW_SCHEMA`]; in it, each read-model table `LIKE` the
//!    live one (columns, defaults, checks, column comments, storage, statistics), with its
//!    primary key and unique constraints (the projector's `ON CONFLICT` clauses need them),
//!    storage parameters (migration 0009), comments and grants copied from the catalog. The shadow schema goes
//!    first on the transaction's `search_path`, so the replay, which names tables
//!    unqualified, writes and reads the new tables.
//! 2. [`Shadow::swap`]: the live tables' secondary indexes built on the new ones (same
//!    names, same definitions), the new tables analysed, the live tables dropped, the new
//!    ones moved into the live schema, the shadow schema dropped and the `search_path`
//!    restored.
//!
//! Readers see the old read models until the commit and the new ones after it; a rebuild
//! that fails leaves nothing behind (PostgreSQL's DDL is transactional). The swap needs
//! `ACCESS EXCLUSIVE` locks on the live tables, which readers hold in `ACCESS SHARE` while a
//! statement (or an export's transaction) runs: it waits at most [`SWAP_LOCK_WAIT`] for them,
//! then gives way (back to a savepoint) and tries again, so it neither queues new readers
//! behind it for long nor deadlocks with a reader of several tables; after [`SWAP_WAIT`]
//! of that, the rebuild fails and changes nothing.
//!
//! The read-model tables are renmian's own: a view over one would stop the swap (`DROP
//! TABLE` refuses), and the rebuild would fail, changing nothing.
//!
//! A rebuild whose rows are all in memory already (a bulk load's, replayed alongside it) is
//! [`Staged`] instead: the same tables in a committed schema of its own, written by several
//! connections at once, and swapped in the same way.

use std::time::{Duration, Instant};

use sqlx::postgres::PgConnection;
use sqlx::{Acquire, Connection, Postgres, Row, Transaction};

use super::model::Writes;
use super::projector::READ_MODEL_TABLES;
use crate::store::{Database, StoreError};

/// Where a rebuild writes its tables until the swap. Exists only inside a rebuild's
/// transaction, which holds the projection checkpoint's lock: one rebuild at a time.
pub const SHADOW_SCHEMA: &str = "renmian_rebuild";

/// Longest wait for the live tables' locks per attempt of the swap.
const SWAP_LOCK_WAIT: &str = "200ms";

/// How long the swap keeps trying by default before the rebuild gives up (and changes
/// nothing): long enough for an export of a million events, whose transaction holds its
/// locks for about two minutes (`Projector::with_swap_wait` sets another).
pub const SWAP_WAIT: Duration = Duration::from_secs(300);

/// A rebuild's new tables, between [`Shadow::create`] and [`Shadow::swap`].
pub struct Shadow {
    /// The schema of the new tables, an SQL identifier that needs no quotes.
    schema: String,
    /// The live read models' schema, as an SQL identifier.
    live_schema: String,
    /// The `search_path` of the connection that created the tables, before any change.
    search_path: String,
    /// What is built on the new tables once the rows are in: first the primary keys and
    /// unique constraints left for then ([`Staged`]: of the tables it fills with `COPY`
    /// alone; none for a [`Shadow::create`]d one), so that connections building them at
    /// once take different tables; then the live tables' secondary indexes.
    indexes: Vec<String>,
    /// The comments on any of the live tables' indexes, once the indexes are built.
    comments: Vec<String>,
}

impl Shadow {
    /// Creates the new, empty tables in the transaction and points its unqualified names at
    /// them.
    pub async fn create(tx: &mut PgConnection) -> Result<Self, StoreError> {
        let shadow = Self::create_in(tx, SHADOW_SCHEMA, &[]).await?;
        set_search_path(
            tx,
            &format!("{SHADOW_SCHEMA}, {}", shadow.search_path),
            true,
        )
        .await?;
        Ok(shadow)
    }

    /// Creates `schema` and in it the new, empty tables; those of `keys_later` without
    /// their primary keys and unique constraints, put first in `indexes` to add once the
    /// rows are in.
    async fn create_in(
        tx: &mut PgConnection,
        schema: &str,
        keys_later: &[&str],
    ) -> Result<Self, StoreError> {
        let row = sqlx::query(
            "SELECT quote_ident(n.nspname) AS live_schema, \
             current_setting('search_path') AS search_path \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = to_regclass($1)",
        )
        .bind(READ_MODEL_TABLES[0])
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| {
            StoreError::Unavailable(format!(
                "no table {} on the search path: are the migrations applied?",
                READ_MODEL_TABLES[0]
            ))
        })?;
        let live_schema: String = row.try_get("live_schema")?;
        let search_path: String = row.try_get("search_path")?;
        execute(tx, &format!("CREATE SCHEMA {schema}")).await?;
        let (mut indexes, mut keys, mut comments) = (Vec::new(), Vec::new(), Vec::new());
        for table in READ_MODEL_TABLES {
            let live = format!("{live_schema}.{table}");
            let new = format!("{schema}.{table}");
            execute(
                tx,
                &format!("CREATE TABLE {new} (LIKE {live} INCLUDING ALL EXCLUDING INDEXES)"),
            )
            .await?;
            let later = keys_later.contains(table);
            for (step, statement) in copied_definitions(tx, &live, &new).await? {
                match step {
                    Definition::Key if later => keys.push(statement),
                    Definition::KeyComment if later => comments.push(statement),
                    _ => execute(tx, &statement).await?,
                }
            }
            let (definitions, on_indexes) = secondary_indexes(tx, &live, &new, schema).await?;
            indexes.extend(definitions);
            comments.extend(on_indexes);
        }
        keys.extend(indexes);
        Ok(Self {
            schema: schema.to_owned(),
            live_schema,
            search_path,
            indexes: keys,
            comments,
        })
    }

    /// The new tables, qualified.
    fn tables(&self) -> Vec<String> {
        READ_MODEL_TABLES
            .iter()
            .map(|table| format!("{}.{table}", self.schema))
            .collect()
    }

    /// Indexes the new tables and puts them in the live ones' place, trying for up to
    /// `wait` while readers hold the live tables.
    pub async fn swap(
        self,
        tx: &mut Transaction<'static, Postgres>,
        wait: Duration,
    ) -> Result<(), StoreError> {
        for statement in self.indexes.iter().chain(&self.comments) {
            execute(tx, statement).await?;
        }
        // Statistics before the tables go live: the planner never costs them as empty (a
        // holdings query on an unanalysed 1M-row table took 590 ms on the wrong index
        // instead of 0.2 ms).
        execute(tx, &format!("ANALYZE {}", self.tables().join(", "))).await?;
        self.replace(tx, wait).await?;
        set_search_path(tx, &self.search_path, true).await
    }

    /// Drops the live tables and moves the new ones in their place, then drops their
    /// schema: at once, trying for up to `wait` while readers hold the live tables.
    async fn replace(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        wait: Duration,
    ) -> Result<(), StoreError> {
        execute(tx, &format!("SET LOCAL lock_timeout = '{SWAP_LOCK_WAIT}'")).await?;
        let started = Instant::now();
        let mut attempt: u32 = 1;
        loop {
            let mut savepoint = tx.begin().await?;
            match self.replace_live(&mut savepoint).await {
                Ok(()) => {
                    savepoint.commit().await?;
                    break;
                }
                Err(e) if gives_way(&e) && started.elapsed() < wait => {
                    savepoint.rollback().await?;
                    if attempt % 50 == 1 {
                        tracing::info!(
                            attempt,
                            "the read models are in use: the rebuild's swap waits"
                        );
                    }
                    let pause = Duration::from_millis(20 * u64::from(attempt.min(10)));
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                Err(e) if gives_way(&e) => {
                    return Err(StoreError::Unavailable(format!(
                        "the rebuild waited {wait:?} for readers of the read models to let go \
                         of them and gave up; nothing changed ({e})"
                    )))
                }
                Err(e) => return Err(e.into()),
            }
        }
        execute(tx, "SET LOCAL lock_timeout TO DEFAULT").await?;
        execute(tx, &format!("DROP SCHEMA {}", self.schema)).await
    }

    /// Locks the live tables at once, drops them and moves the new ones in.
    async fn replace_live(&self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        let live: Vec<String> = READ_MODEL_TABLES
            .iter()
            .map(|table| format!("{}.{table}", self.live_schema))
            .collect();
        let statements = std::iter::once(format!(
            "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            live.join(", ")
        ))
        .chain(std::iter::once(format!("DROP TABLE {}", live.join(", "))))
        .chain(READ_MODEL_TABLES.iter().map(|table| {
            format!(
                "ALTER TABLE {}.{table} SET SCHEMA {}",
                self.schema, self.live_schema
            )
        }));
        for statement in statements {
            sqlx::query(&statement).execute(&mut *tx).await?;
        }
        Ok(())
    }
}

/// Prefix of a staged rebuild's schema ([`Staged`]); the rest is a UUID's hex digits.
pub const STAGE_PREFIX: &str = "renmian_stage_";

/// The advisory locks a staged rebuild holds on its schema, (this class, `hashtext` of its
/// name): while held, the schema is being written; once its session has ended, it is an
/// orphan any rebuild may drop.
pub const STAGE_LOCK_CLASS: i32 = 0x726d_5354; // "rmST"

/// PostgreSQL, a rebuild whose every row is already in memory (a bulk load's, replayed
/// alongside it): its new tables are written by several connections at once, which tables
/// created in the rebuild's own transaction ([`Shadow`]) cannot be, since no other
/// connection sees them. One backend taking in one `COPY` after another left one of two
/// cores idle for the whole of a 1M-event load's writing (BENCHMARKS.md, session 33).
///
/// 1. [`Staged::create`]: a schema of its own, [`STAGE_PREFIX`] and a UUID, created and
///    committed by an owner connection that holds an advisory lock on it until the end.
///    Any such schema whose lock nobody holds (its rebuild's process died) is dropped by
///    the next rebuild ([`drop_orphaned_stages`]).
/// 2. [`Staged::write`]: the rows, by connections of their own, a piece at a time
///    (`Writes::write_staged`); then the keys of the tables filled by `COPY` alone (created
///    without them: one sort each instead of a B-tree insert per row), the indexes and the
///    statistics, a statement per table or index, the same way. Each piece commits on its
///    own: readers never look in this schema.
/// 3. [`Staged::swap`], in the rebuild's transaction under the checkpoint's lock: the live
///    tables dropped and the new ones moved in, as [`Shadow::swap`] does; the schema goes
///    with them. Then [`Staged::release`]; or, if anything failed, [`Staged::discard`].
pub struct Staged {
    shadow: Shadow,
    /// Holds the advisory lock on the schema.
    owner: PgConnection,
}

impl Staged {
    /// Creates this rebuild's schema, with its empty tables.
    pub async fn create(db: &Database) -> Result<Self, StoreError> {
        let mut owner = db.postgres_maintenance().await?;
        let schema = format!("{STAGE_PREFIX}{}", uuid::Uuid::new_v4().simple());
        sqlx::query("SELECT pg_advisory_lock($1, hashtext($2))")
            .bind(STAGE_LOCK_CLASS)
            .bind(&schema)
            .execute(&mut owner)
            .await?;
        let mut tx = Connection::begin(&mut owner).await?;
        let shadow = Shadow::create_in(&mut tx, &schema, &Writes::copied_tables()).await?;
        tx.commit().await?;
        Ok(Self { shadow, owner })
    }

    /// Writes `writes` (every write of the rebuild, in order) into the new tables through
    /// `writers` connections of their own, then adds the keys left for after the rows
    /// (`Writes::copied_tables`) and indexes them the same way, and vacuums and
    /// analyses them (`VACUUM (ANALYZE)`, a table per connection at a time): the tables
    /// come in with their visibility maps set and their statistics fresh, and the rebuild
    /// needs no `VACUUM` of the live tables after it commits, on one connection (~0.3 s of
    /// a 1M-event bulk load's end, BENCHMARKS.md, session 35). Nothing changes their rows
    /// afterwards.
    pub async fn write(
        &self,
        db: &Database,
        writes: &[Writes],
        writers: usize,
    ) -> Result<(), StoreError> {
        let path = format!("{}, {}", self.shadow.schema, self.shadow.search_path);
        let mut conns = Vec::with_capacity(writers);
        for _ in 0..writers.max(1) {
            let mut conn = db.postgres_maintenance().await?;
            set_search_path(&mut conn, &path, false).await?;
            conns.push(conn);
        }
        let started = Instant::now();
        Writes::write_staged(writes, &mut conns).await?;
        let written = started.elapsed();
        in_parallel(&mut conns, &self.shadow.indexes).await?;
        for comment in &self.shadow.comments {
            execute(&mut conns[0], comment).await?;
        }
        let indexed = started.elapsed();
        let upkeep: Vec<String> = self
            .shadow
            .tables()
            .iter()
            .map(|table| format!("VACUUM (ANALYZE) {table}"))
            .collect();
        in_parallel(&mut conns, &upkeep).await?;
        tracing::debug!(
            writers,
            rows = ?written,
            keys_and_indexes = ?indexed - written,
            vacuum_and_statistics = ?started.elapsed() - indexed,
            "a staged rebuild wrote its tables"
        );
        for conn in conns {
            conn.close().await?;
        }
        Ok(())
    }

    /// Puts the new tables in the live ones' place, in the rebuild's transaction (see
    /// [`Shadow::swap`]).
    pub async fn swap(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        wait: Duration,
    ) -> Result<(), StoreError> {
        self.shadow.replace(tx, wait).await
    }

    /// Ends the staging once the rebuild's transaction has committed (its schema went with
    /// the swap).
    pub async fn release(self) {
        let _ = self.owner.close().await;
    }

    /// Drops the schema and everything in it: the rebuild failed or gave up.
    pub async fn discard(mut self) {
        let statement = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.shadow.schema);
        if let Err(e) = execute(&mut self.owner, &statement).await {
            // The next rebuild drops it, once this session has ended.
            tracing::warn!(schema = %self.shadow.schema, error = %e, "a staged rebuild's schema was left behind");
        }
        let _ = self.owner.close().await;
    }
}

/// Runs `statements` on `conns` at once, each connection taking the next statement when it
/// has run its last.
async fn in_parallel(conns: &mut [PgConnection], statements: &[String]) -> Result<(), StoreError> {
    let queue = std::sync::Mutex::new(statements.iter());
    let next = || queue.lock().unwrap_or_else(|e| e.into_inner()).next();
    futures::future::try_join_all(conns.iter_mut().map(|conn| async {
        while let Some(statement) = next() {
            execute(conn, statement).await?;
        }
        Ok::<_, StoreError>(())
    }))
    .await?;
    Ok(())
}

/// Drops every staging schema whose advisory lock nobody holds: what a rebuild that died
/// left behind ([`Staged`]). Every rebuild on PostgreSQL does this first, so none outlives
/// the next rebuild. A live rebuild's is left alone (it takes its lock before it creates
/// its schema); one another cleanup dropped meanwhile is gone already (`IF EXISTS`).
pub async fn drop_orphaned_stages(db: &Database) -> Result<(), StoreError> {
    let mut conn = db.postgres_maintenance().await?;
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1) ORDER BY 1",
    )
    .bind(STAGE_PREFIX)
    .fetch_all(&mut conn)
    .await?;
    for schema in schemas {
        let orphan: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(STAGE_LOCK_CLASS)
            .bind(&schema)
            .fetch_one(&mut conn)
            .await?;
        if !orphan {
            continue;
        }
        tracing::info!(%schema, "dropping a staged rebuild's schema its rebuild left behind");
        let dropped = execute(
            &mut conn,
            &format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                schema.replace('"', "\"\"")
            ),
        )
        .await;
        sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
            .bind(STAGE_LOCK_CLASS)
            .bind(&schema)
            .execute(&mut conn)
            .await?;
        dropped?;
    }
    conn.close().await?;
    Ok(())
}

/// Whether the swap should give way and try again: a lock it waited for too long
/// (`lock_timeout`, 55P03) or a deadlock with a reader (40P01).
fn gives_way(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("55P03" | "40P01")))
}

/// What a statement of [`copied_definitions`] adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Definition {
    /// A primary key or unique constraint.
    Key,
    /// A comment on one.
    KeyComment,
    /// Storage parameters, the table's comment or a grant.
    Other,
}

/// What `LIKE … INCLUDING ALL EXCLUDING INDEXES` leaves out, as statements on `new`, in the
/// order to run them: the primary key and unique constraints of `live` (same names) with
/// their comments, its storage parameters, its comment and its grants.
async fn copied_definitions(
    tx: &mut PgConnection,
    live: &str,
    new: &str,
) -> Result<Vec<(Definition, String)>, StoreError> {
    let rows = sqlx::query(
        "WITH t AS (SELECT to_regclass($1::text) AS oid) \
         SELECT step, statement FROM ( \
           SELECT 1 AS step, c.contype::text || c.conname::text AS k, format('ALTER TABLE %s ADD \
             CONSTRAINT %I %s', $2::text, c.conname, pg_get_constraintdef(c.oid)) AS statement \
           FROM pg_constraint c JOIN t ON c.conrelid = t.oid WHERE c.contype IN ('p', 'u') \
         UNION ALL \
           SELECT 2, c.conname::text, format('COMMENT ON CONSTRAINT %I ON %s IS %L', c.conname, \
             $2::text, obj_description(c.oid, 'pg_constraint')) \
           FROM pg_constraint c JOIN t ON c.conrelid = t.oid WHERE c.contype IN ('p', 'u') \
             AND obj_description(c.oid, 'pg_constraint') IS NOT NULL \
         UNION ALL \
           SELECT 3, '', format('ALTER TABLE %s SET (%s)', $2::text, \
             array_to_string(r.reloptions, ', ')) \
           FROM pg_class r JOIN t ON r.oid = t.oid WHERE r.reloptions IS NOT NULL \
         UNION ALL \
           SELECT 4, '', format('COMMENT ON TABLE %s IS %L', $2::text, \
             obj_description(t.oid, 'pg_class')) \
           FROM t WHERE obj_description(t.oid, 'pg_class') IS NOT NULL \
         UNION ALL \
           SELECT 5, a.privilege_type, format('GRANT %s ON %s TO %s%s', a.privilege_type, \
             $2::text, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(g.rolname) END, \
             CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) \
           FROM pg_class r JOIN t ON r.oid = t.oid CROSS JOIN LATERAL aclexplode(r.relacl) a \
           LEFT JOIN pg_roles g ON g.oid = a.grantee WHERE a.grantee <> r.relowner \
         ) s ORDER BY step, k, statement",
    )
    .bind(live)
    .bind(new)
    .fetch_all(&mut *tx)
    .await?;
    rows.iter()
        .map(|row| {
            let step = match row.try_get::<i32, _>("step")? {
                1 => Definition::Key,
                2 => Definition::KeyComment,
                _ => Definition::Other,
            };
            Ok((step, row.try_get("statement")?))
        })
        .collect()
}

/// The secondary indexes of `live` (those of no constraint), as statements creating them on
/// `new` under the same names; then the comments on any of its indexes.
async fn secondary_indexes(
    tx: &mut PgConnection,
    live: &str,
    new: &str,
    schema: &str,
) -> Result<(Vec<String>, Vec<String>), StoreError> {
    let rows = sqlx::query(
        "SELECT pg_get_indexdef(i.indexrelid) AS definition FROM pg_index i \
         WHERE i.indrelid = to_regclass($1::text) AND NOT EXISTS ( \
             SELECT 1 FROM pg_constraint c \
             WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid) \
         ORDER BY 1",
    )
    .bind(live)
    .fetch_all(&mut *tx)
    .await?;
    let indexes = rows
        .iter()
        .map(|row| {
            // `live` is written as the definition names its table: the schema as
            // `quote_ident` quotes it, then the table (whose name needs no quotes).
            let definition: String = row.try_get("definition")?;
            retarget(&definition, live, new).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "unexpected index definition on {live}: {definition}"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let comments = sqlx::query(&format!(
        "SELECT format('COMMENT ON INDEX {schema}.%I IS %L', i.relname, \
           obj_description(i.oid, 'pg_class')) AS statement \
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
         WHERE x.indrelid = to_regclass($1::text) \
           AND obj_description(i.oid, 'pg_class') IS NOT NULL ORDER BY i.relname"
    ))
    .bind(live)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|row| row.try_get("statement"))
    .collect::<Result<_, _>>()?;
    Ok((indexes, comments))
}

/// `CREATE … INDEX name ON live USING …` as the same statement on `new`.
fn retarget(definition: &str, live: &str, new: &str) -> Option<String> {
    let on = format!(" ON {live} USING ");
    let at = definition.find(&on)?;
    Some(format!(
        "{} ON {new} USING {}",
        &definition[..at],
        &definition[at + on.len()..]
    ))
}

/// Sets the `search_path` for the transaction (`local`) or the session.
async fn set_search_path(
    conn: &mut PgConnection,
    path: &str,
    local: bool,
) -> Result<(), StoreError> {
    sqlx::query("SELECT set_config('search_path', $1, $2)")
        .bind(path)
        .bind(local)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Runs `statement` unprepared, in the simple query protocol (a `&str` without arguments),
/// as the projector's upkeep sends its `VACUUM`: each statement here runs once, and none is
/// worth a place in the connection's statement cache.
async fn execute(tx: &mut PgConnection, statement: &str) -> Result<(), StoreError> {
    sqlx::Executor::execute(&mut *tx, statement).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_definition_is_moved_to_the_new_table_only() {
        assert_eq!(
            retarget(
                "CREATE INDEX rm_tenures_holding ON public.rm_tenures USING btree \
                 (organization, post) WHERE ((version_to IS NULL) AND (post <> ' ON public.rm_tenures USING '::text))",
                "public.rm_tenures",
                "renmian_rebuild.rm_tenures",
            )
            .as_deref(),
            Some(
                "CREATE INDEX rm_tenures_holding ON renmian_rebuild.rm_tenures USING btree \
                 (organization, post) WHERE ((version_to IS NULL) AND (post <> ' ON public.rm_tenures USING '::text))"
            )
        );
        assert_eq!(
            retarget(
                "CREATE INDEX i ON other.t USING btree (a)",
                "public.t",
                "s.t"
            ),
            None
        );
    }
}
