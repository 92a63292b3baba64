//! The event store: one sqlx repository for SQLite (embedded default) and PostgreSQL, through
//! sqlx's `Any` driver, with per-backend migrations applied on connect.
//!
//! - [`Database`] connects, migrates and classifies driver errors ([`StoreError`]).
//! - [`log`] appends events with a global, gap-free, commit-ordered position and a SHA-256
//!   hash chain, reads them back in order and verifies the chain.
//! - [`repository`] adapts the log to cqrs-es's `PersistedEventRepository`.
//! - [`integrity`] lists every anomaly of the chain and records operators' acknowledgements.
//! - [`dump`] writes the log as JSON Lines and loads such a dump into an empty database.
//! - [`notify`] is the cross-process change feed: every append on PostgreSQL notifies
//!   `renmian_events` on commit, and [`AppendListener`] receives those notifications.
//!
//! Every database call is bounded in time: acquiring a connection by
//! [`DatabaseOptions::acquire_timeout`], each statement by
//! [`DatabaseOptions::statement_timeout`] (PostgreSQL `statement_timeout`, SQLite
//! `busy_timeout`). A lost connection surfaces as [`StoreError::Unavailable`]; the pool
//! (writes other than appends) and the connections of [`connections`] (reads, appends)
//! drop the broken connection and open a new one for a later call, so the process recovers
//! by itself when the database returns.
//!
//! Architecture invariant: nothing in renmian issues UPDATE or DELETE on `events`; the
//! database refuses both (triggers in `migrations/*/0001_event_log.sql`).

mod commits;
mod connections;
pub mod dump;
mod group;
pub mod integrity;
pub mod log;
pub mod notify;
pub mod repository;
pub mod upcasters;

use std::str::FromStr;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use connections::Role;
use futures::future::BoxFuture;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Any, AnyPool, ConnectOptions, Executor, Postgres, Transaction};

pub use commits::CommitStamp;
pub use integrity::{Acknowledgement, Anomaly, IntegrityReport};
pub use log::{NewEvent, StoredEvent, VerifyReport, GENESIS_HASH};
pub use notify::{AppendListener, AppendSignal, APPEND_CHANNEL};
pub use repository::SqlEventRepository;
pub use upcasters::upcasters;

/// Which engine a [`Database`] talks to; SQL is shared, migrations and a few pragmas are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Errors of the storage layer, classified by what a caller can do about them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or timed out. Handle: retry later; report UNAVAILABLE.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A concurrent writer appended to the same aggregate first. Handle: reload and retry.
    #[error("concurrent write to the same notice")]
    Conflict,
    /// The URL is not one renmian understands. Handle: fix the configuration.
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// Stored data cannot be decoded (a bug or tampering). Handle: run `renmian verify`.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Anything else from the driver. Handle: log it; report INTERNAL without the SQL.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Self::Unavailable(err.to_string()),
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict,
            sqlx::Error::Database(db) if is_connection_loss(db.code().as_deref()) => {
                Self::Unavailable(err.to_string())
            }
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                Self::Corrupt(err.to_string())
            }
            _ => Self::Database(err),
        }
    }
}

/// PostgreSQL SQLSTATEs that mean "the server went away, is shutting down, is overloaded or
/// the call ran out of time" — conditions a retry later may not meet (class 08 connection
/// exceptions, 57P01-57P05 admin shutdown / cannot connect now / idle timeouts, 57014 query
/// cancelled by `statement_timeout`, class 53 insufficient resources such as too many
/// connections, 55P03 lock not available).
fn is_connection_loss(code: Option<&str>) -> bool {
    matches!(code, Some(c) if c.starts_with("08")
        || c.starts_with("57P")
        || c == "57014"
        || c.starts_with("53")
        || c == "55P03")
}

/// Time bounds of a [`Database`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseOptions {
    /// Longest wait for a pooled connection, including (re)connecting to the server.
    pub acquire_timeout: Duration,
    /// Longest run of one statement (PostgreSQL `statement_timeout`) or wait for SQLite's
    /// write lock (`busy_timeout`).
    pub statement_timeout: Duration,
}

impl Default for DatabaseOptions {
    fn default() -> Self {
        Self {
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// Work done inside an append's transaction, after its events are written and before the
/// commit: the projector projects a notice together with the notice itself, so one commit
/// (one fsync) stores both. It runs in a savepoint ([`ObservedTx`]): when it fails, its
/// writes are rolled back, the append still commits and the failure is logged (catch-up
/// retries it).
pub trait AppendObserver: Send + Sync + 'static {
    fn appended<'a, 't, 'c>(
        &'a self,
        tx: &'a mut ObservedTx<'t, 'c>,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>>
    where
        't: 'a,
        'c: 'a;

    /// Called once the append of `events` has committed (never when it did not).
    fn committed(&self, _events: &[StoredEvent]) {}
}

/// An append's transaction as its [`AppendObserver`] sees it: whatever the observer writes
/// goes into a savepoint, opened before its first statement, that the append rolls back
/// when the observer fails. A successful observer's savepoint is never released: the
/// append's `COMMIT` commits it (one round trip fewer).
///
/// Each statement is a round trip (to the server on PostgreSQL, to the connection's worker
/// thread on SQLite), so [`ObservedTx::query_text`] opens the savepoint in the observer's
/// first statement; [`ObservedTx::transaction`] opens it on its own if nothing did.
pub struct ObservedTx<'t, 'c> {
    tx: &'t mut Transaction<'c, Any>,
    opened: bool,
}

impl<'t, 'c> ObservedTx<'t, 'c> {
    const SAVEPOINT: &'static str = "SAVEPOINT observed";

    pub(crate) fn new(tx: &'t mut Transaction<'c, Any>) -> Self {
        Self { tx, opened: false }
    }

    /// Runs `sql` in the savepoint, opening it in the same round trip when it is not open
    /// yet; returns the number of rows `sql` returned. `sql` is sent as text, without
    /// parameters (PostgreSQL's simple query protocol, the one that takes several
    /// statements at once): it must hold nothing but literals renmian wrote itself.
    pub async fn query_text(&mut self, sql: &str) -> Result<usize, StoreError> {
        let sql = if self.opened {
            sql.to_owned()
        } else {
            // Open from here on: whatever of the two ran is rolled back if they fail.
            self.opened = true;
            format!("{}; {sql}", Self::SAVEPOINT)
        };
        // Without arguments, by the simple query protocol; not kept as a prepared statement
        // (on SQLite a `&str` would be, and its text changes with every append).
        let rows = Executor::fetch_all(&mut **self.tx, sqlx::raw_sql(&sql)).await?;
        Ok(rows.len())
    }

    /// The append's transaction, the savepoint opened first if it is not yet.
    pub async fn transaction(&mut self) -> Result<&mut Transaction<'c, Any>, StoreError> {
        if !self.opened {
            self.opened = true;
            Executor::execute(&mut **self.tx, Self::SAVEPOINT).await?;
        }
        Ok(&mut *self.tx)
    }

    /// Undoes whatever the observer wrote (nothing, if it never opened the savepoint).
    pub(crate) async fn roll_back(self) -> Result<(), StoreError> {
        if self.opened {
            Executor::execute(&mut **self.tx, "ROLLBACK TO SAVEPOINT observed").await?;
        }
        Ok(())
    }
}

/// The observer every clone of a [`Database`] shares, held weakly: an observer usually holds
/// the database, and a strong reference would keep both alive forever.
#[derive(Clone, Default)]
struct Observer(Arc<RwLock<Option<Weak<dyn AppendObserver>>>>);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.get().is_some();
        f.debug_tuple("Observer").field(&set).finish()
    }
}

impl Observer {
    fn get(&self) -> Option<Arc<dyn AppendObserver>> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(Weak::upgrade)
    }
}

/// A connection pool plus the backend it speaks to.
#[derive(Clone, Debug)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    display_url: String,
    /// PostgreSQL only: where [`Database::listen_for_appends`] connects.
    listen_target: Option<notify::ListenTarget>,
    observer: Observer,
    /// Connections for [`Database::read_all`] / [`Database::read_optional`].
    readers: Arc<connections::Connections>,
    /// The connection appends run on ([`connections::Role::Write`]).
    writer: Arc<connections::Connections>,
    /// Appends waiting for `writer`, appended together by whichever gets it ([`group`]).
    waiting: Arc<group::Waiting>,
    /// SQLite only: the WAL's shared-memory index, `<database>-shm` ([`commits`]).
    wal_index: Option<Arc<commits::WalIndex>>,
    /// SQLite only: the head this process's last append left ([`log::LastHead`]).
    last_head: log::LastHead,
    bounds: DatabaseOptions,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Database {
    /// Connects to `url` (`sqlite://renmian.db`, `sqlite::memory:` is refused because each
    /// connection would get its own database, `postgres://…`), creating a SQLite file if
    /// missing, and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, DatabaseOptions::default()).await
    }

    /// [`connect`](Self::connect) with explicit time bounds.
    pub async fn connect_with(url: &str, bounds: DatabaseOptions) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        }
        let connect_url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_string(),
        };
        let connect_options = |connect_url: &str| {
            AnyConnectOptions::from_str(connect_url)
                .map(|options| {
                    options
                        .log_statements(tracing::log::LevelFilter::Trace)
                        .log_slow_statements(
                            tracing::log::LevelFilter::Warn,
                            Duration::from_secs(2),
                        )
                })
                .map_err(|e| StoreError::UnsupportedUrl(format!("{url}: {e}")))
        };
        let options = connect_options(&connect_url)?;
        let max_connections = match backend {
            Backend::Sqlite => 8,
            Backend::Postgres => 16,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            // A SQLite connection is a file handle in this process, with no server to lose:
            // pinging it before each use is a round trip to its worker thread for nothing
            // (a PostgreSQL one can have lost its server while idle; it is still pinged).
            .test_before_acquire(backend == Backend::Postgres)
            .acquire_timeout(bounds.acquire_timeout)
            .after_connect(move |conn, _meta| Box::pin(configure(conn, backend, bounds)))
            .connect_with(options.clone())
            .await?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&pool).await?;
        let listen_target = match backend {
            Backend::Postgres => Some(notify::ListenTarget::parse(url, bounds.acquire_timeout)?),
            Backend::Sqlite => None,
        };
        let wal_index = match backend {
            Backend::Sqlite => {
                let mut shm = sqlx::sqlite::SqliteConnectOptions::from_str(&connect_url)
                    .map_err(|e| StoreError::UnsupportedUrl(format!("{url}: {e}")))?
                    .get_filename()
                    .as_os_str()
                    .to_owned();
                shm.push("-shm");
                Some(Arc::new(commits::WalIndex::new(shm.into())))
            }
            Backend::Postgres => None,
        };
        let writer_options = connect_options(&Role::Write.url(&connect_url, backend))?;
        let writer = connections::Connections::new(writer_options, backend, Role::Write, bounds);
        let readers = connections::Connections::new(options, backend, Role::Read, bounds);
        Ok(Self {
            pool,
            backend,
            display_url: redact(url),
            listen_target,
            observer: Observer::default(),
            readers: Arc::new(readers),
            writer: Arc::new(writer),
            wal_index,
            last_head: log::LastHead::default(),
            waiting: Arc::default(),
            bounds,
        })
    }

    /// PostgreSQL: a transaction on a connection of the driver's own type, on a pool of one
    /// connection of its own (close it after the commit). A rebuild writes its rows through
    /// it with `COPY`, which sqlx `Any` cannot send. Bounded as
    /// [`Database::postgres_maintenance`]'s connections are.
    pub async fn postgres_transaction(
        &self,
    ) -> Result<(PgPool, Transaction<'static, Postgres>), StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(self.bounds.acquire_timeout)
            .connect_with(self.maintenance_options()?)
            .await?;
        let tx = pool.begin().await?;
        Ok((pool, tx))
    }

    /// PostgreSQL: a connection of the driver's own type for work that grows with the log
    /// — a rebuild's index builds and `COPY`s (~0.9 s each at 1M events, minutes at 100M),
    /// `VACUUM` — so its statements are not bound by
    /// [`DatabaseOptions::statement_timeout`] as the pool's are; what that bound guards
    /// against, a statement stuck on a lock, is bounded instead by `lock_timeout` (the same
    /// duration), and a client that dies mid-transaction releases its locks after twice
    /// that (at least a minute: a rebuild's transaction idles while its replay works).
    pub async fn postgres_maintenance(&self) -> Result<PgConnection, StoreError> {
        Ok(sqlx::Connection::connect_with(&self.maintenance_options()?).await?)
    }

    fn maintenance_options(&self) -> Result<PgConnectOptions, StoreError> {
        let statement_ms = self.bounds.statement_timeout.as_millis().max(1);
        let url = &self.pool.connect_options().database_url;
        Ok(PgConnectOptions::from_url(url)?
            .options([
                ("lock_timeout", statement_ms.to_string()),
                (
                    "idle_in_transaction_session_timeout",
                    statement_ms.saturating_mul(2).max(60_000).to_string(),
                ),
            ])
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(2)))
    }

    /// A stamp that changes whenever a transaction commits to the database, in any
    /// process, read without a statement: on SQLite the header of the WAL's shared-memory
    /// index ([`commits`]). `None` on PostgreSQL, or when there is no header to trust; the
    /// caller then asks the database. Two small blocking calls (read a file the page cache
    /// holds, check its link count).
    pub fn commit_stamp(&self) -> Option<CommitStamp> {
        self.wal_index.as_deref().and_then(commits::WalIndex::stamp)
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Runs a read-only `query` and returns every row. Read connections are checked out
    /// without the pool's two pings per statement (see [`connections`]); appends have their
    /// own connection, other writes and transactions use the pool.
    pub async fn read_all<'q>(
        &self,
        query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<Vec<sqlx::any::AnyRow>, sqlx::Error> {
        self.readers.fetch_all(query).await
    }

    /// Runs a read-only `query` and returns its first row, if any (see [`Database::read_all`]).
    pub async fn read_optional<'q>(
        &self,
        query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<Option<sqlx::any::AnyRow>, sqlx::Error> {
        self.readers.fetch_optional(query).await
    }

    /// Runs a read-only `query` that returns one row (see [`Database::read_all`]).
    pub async fn read_one<'q>(
        &self,
        query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<sqlx::any::AnyRow, sqlx::Error> {
        self.readers
            .fetch_optional(query)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL without its password, for logs.
    pub fn display_url(&self) -> &str {
        &self.display_url
    }

    /// Sets the work every append runs before its commit (see [`AppendObserver`]), for
    /// this database and every clone of it, while `observer` is alive.
    pub fn observe_appends(&self, observer: Weak<dyn AppendObserver>) {
        *self.observer.0.write().unwrap_or_else(|e| e.into_inner()) = Some(observer);
    }

    /// Appends of this process waiting for the appending connection (they will be
    /// committed together, [`group`]): a gauge of how far writes queue.
    pub fn appends_waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Closes every connection of this process.
    ///
    /// On SQLite the write-ahead log is then emptied into the database file
    /// ([`Database::empty_wal`]), so that the file alone (a copy, a backup) holds
    /// everything this process wrote. SQLite does that itself when the last connection
    /// closes, but only when no other connection is open at that moment, and `renmian
    /// rebuild` left the log behind in about one run in four (a connection of the process
    /// still closing). Waiting for such a connection (or a reader of another process) at
    /// most [`CLOSING_CHECKPOINT_WAIT`]: it left the log behind once in a CI run when it did
    /// not wait at all.
    pub async fn close(&self) {
        self.writer.close().await;
        self.readers.close().await;
        self.pool.close().await;
        self.empty_wal_best_effort(CLOSING_CHECKPOINT_WAIT, "on closing")
            .await;
    }

    /// [`Database::empty_wal`] where nothing depends on it: a log left in place, or a
    /// failure, is logged (`when`: at what point, "on closing"), not returned.
    pub async fn empty_wal_best_effort(&self, wait: Duration, when: &str) {
        match self.empty_wal(wait).await {
            Ok(true) => {}
            Ok(false) => tracing::info!(
                "the write-ahead log was not emptied {when}: another connection reads from it"
            ),
            Err(e) => tracing::info!(error = %e, "the write-ahead log was not emptied {when}"),
        }
    }

    /// SQLite: copies the write-ahead log into the database file and truncates it
    /// (`PRAGMA wal_checkpoint(TRUNCATE)`), on a connection opened for that alone; `true`
    /// when the log is empty afterwards, and on PostgreSQL. It needs no other connection
    /// gone, only no reader in the middle of an older snapshot and no writer, for which it
    /// waits at most `wait`; then it copies what it can, leaves the log as it is, and says
    /// `false`. An error: the connection or the checkpoint failed, nothing was emptied.
    pub async fn empty_wal(&self, wait: Duration) -> Result<bool, StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(true);
        }
        let url = &self.pool.connect_options().database_url;
        // Never a new, empty database where the file has gone.
        let options = sqlx::sqlite::SqliteConnectOptions::from_url(url)?
            .create_if_missing(false)
            .busy_timeout(wait);
        let mut conn = ConnectOptions::connect(&options).await?;
        let checkpoint: Result<(i64, i64, i64), _> =
            sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&mut conn)
                .await;
        let _ = sqlx::Connection::close(conn).await;
        let (busy, _, _) = checkpoint?;
        Ok(busy == 0)
    }
}

/// How long [`Database::close`]'s checkpoint waits for readers of the write-ahead log.
const CLOSING_CHECKPOINT_WAIT: Duration = Duration::from_millis(250);

/// Settings every connection gets, pooled or of [`connections`]: durability, time bounds,
/// caches.
async fn configure(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    bounds: DatabaseOptions,
) -> Result<(), sqlx::Error> {
    let statement_ms = bounds.statement_timeout.as_millis().max(1);
    match backend {
        // WAL: readers never block the writer; FULL: an acknowledged ingest
        // survives power loss, not only a process crash; busy_timeout:
        // concurrent writers wait for the write lock instead of failing, but
        // not forever.
        Backend::Sqlite => {
            // cache_size: 32 MiB of pages per connection instead of 2 MiB, so
            // projecting does not re-read index pages from the file;
            // temp_store: savepoints (the projection inside an append) keep
            // their sub-journal in memory. No mmap_size: with it each of the
            // pool's connections maps the file, and at 1M events `serve`
            // showed 6 GiB of RSS that was the same page cache counted once
            // per mapping (tried and measured; see BENCHMARKS.md).
            // wal_autocheckpoint: a checkpoint every 8192 WAL pages (32 MiB),
            // not 1000: an ingest dirties ~180 index pages, so the default
            // copied the same hot pages back to the file every few notices.
            conn.execute(&*format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                 PRAGMA busy_timeout = {statement_ms}; PRAGMA foreign_keys = ON; \
                 PRAGMA cache_size = -32768; PRAGMA temp_store = MEMORY; \
                 PRAGMA wal_autocheckpoint = 8192;"
            ))
            .await?;
        }
        // A statement stuck on a lock or a runaway plan is cancelled (57014,
        // reported as unavailable) instead of holding a connection forever;
        // a client that died mid-transaction releases its locks after a
        // while, too.
        Backend::Postgres => {
            conn.execute(&*format!(
                "SET statement_timeout = {statement_ms}; \
                 SET idle_in_transaction_session_timeout = {};",
                statement_ms.saturating_mul(2)
            ))
            .await?;
        }
    }
    Ok(())
}

/// Removes a password from `scheme://user:password@host/…`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..s + 3], &creds[..colon], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Test support: a fresh SQLite database in a directory of its own (kept as long as the
/// directory is), and how SQLite would run a statement of the read paths.
#[cfg(test)]
pub(crate) mod plans {
    use sqlx::Row;

    use super::Database;

    pub(crate) async fn fresh_sqlite() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("plans.db").display());
        let db = Database::connect(&url).await.unwrap();
        (dir, db)
    }

    /// The lines of SQLite's `EXPLAIN QUERY PLAN` for `sql` (its `$N` parameters bound to
    /// text; SQLite plans without statistics, as renmian runs it).
    pub(crate) async fn plan(db: &Database, sql: &str) -> Vec<String> {
        let params = (1..).take_while(|n| sql.contains(&format!("${n}"))).count();
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let query = (0..params).fold(sqlx::query(&explain), |q, _| q.bind("x"));
        query
            .fetch_all(db.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| r.get::<String, _>("detail"))
            .collect()
    }

    /// Panics unless every line of `sql`'s plan that reads `rm_tenures` (under any alias in
    /// `aliases`) is an index search; returns those lines.
    pub(crate) async fn assert_searches_tenures(
        db: &Database,
        sql: &str,
        aliases: &[&str],
    ) -> Vec<String> {
        let lines = plan(db, sql).await;
        let reads: Vec<&String> = lines
            .iter()
            .filter(|l| {
                let mut words = l.split_whitespace();
                matches!(words.next(), Some("SEARCH" | "SCAN"))
                    && words.next().is_some_and(|table| aliases.contains(&table))
            })
            .collect();
        assert!(
            !reads.is_empty(),
            "{sql}: no read of rm_tenures in {lines:?}"
        );
        for line in &reads {
            assert!(line.starts_with("SEARCH "), "{sql}: {line} ({lines:?})");
        }
        reads.into_iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/renmian"),
            "postgres://app:***@db:5432/renmian"
        );
        assert_eq!(
            redact("postgres://app@db/renmian"),
            "postgres://app@db/renmian"
        );
        assert_eq!(redact("sqlite://renmian.db"), "sqlite://renmian.db");
    }

    /// A connection of its own to `url`, in the middle of a read transaction: it holds its
    /// snapshot, and the write-ahead log with it, until it commits.
    async fn reading(url: &str) -> sqlx::SqliteConnection {
        let mut reader = sqlx::Connection::connect(url).await.unwrap();
        sqlx::raw_sql("BEGIN; SELECT count(*) FROM events")
            .execute(&mut reader)
            .await
            .unwrap();
        reader
    }

    /// The size of the write-ahead log of [`plans::fresh_sqlite`]'s database in `dir`.
    fn wal_bytes(dir: &tempfile::TempDir) -> u64 {
        std::fs::metadata(dir.path().join("plans.db-wal")).map_or(0, |m| m.len())
    }

    /// `close` empties the write-ahead log once a reader that holds an older snapshot lets
    /// go, and gives up on one that does not, after its bounded wait, leaving the log (and
    /// every write in it) in place.
    #[tokio::test]
    async fn closing_waits_a_little_for_readers_to_empty_the_write_ahead_log() {
        // Let go while `close` waits: emptied.
        let (dir, db) = plans::fresh_sqlite().await;
        let url = db.pool().connect_options().database_url.to_string();
        let mut reader = reading(&url).await;
        assert!(wal_bytes(&dir) > 0, "the migrations are in the log");
        let (closed, ()) = tokio::join!(db.close(), async {
            tokio::time::sleep(CLOSING_CHECKPOINT_WAIT / 5).await;
            sqlx::raw_sql("COMMIT").execute(&mut reader).await.unwrap();
        });
        let () = closed;
        assert_eq!(wal_bytes(&dir), 0);

        // Held throughout: `close` returns after its wait, the log and its writes stay.
        let (dir, db) = plans::fresh_sqlite().await;
        let url = db.pool().connect_options().database_url.to_string();
        let mut reader = reading(&url).await;
        let started = std::time::Instant::now();
        db.close().await;
        assert!(started.elapsed() < CLOSING_CHECKPOINT_WAIT * 20);
        assert!(wal_bytes(&dir) > 0);
        sqlx::raw_sql("COMMIT").execute(&mut reader).await.unwrap();
        let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master")
            .fetch_one(&mut reader)
            .await
            .unwrap();
        assert!(tables > 0);
    }

    /// `empty_wal` says whether it emptied the log: not while a reader holds it, then yes;
    /// an error when it cannot reach the database.
    #[tokio::test]
    async fn emptying_the_write_ahead_log_says_whether_it_did() {
        let wait = Duration::from_millis(50);
        let (dir, db) = plans::fresh_sqlite().await;
        let url = db.pool().connect_options().database_url.to_string();
        let mut reader = reading(&url).await;
        assert!(!db.empty_wal(wait).await.unwrap(), "a reader holds the log");
        assert!(wal_bytes(&dir) > 0);
        sqlx::raw_sql("COMMIT").execute(&mut reader).await.unwrap();
        assert!(db.empty_wal(wait).await.unwrap());
        assert_eq!(wal_bytes(&dir), 0);

        drop(reader);
        db.close().await;
        std::fs::remove_file(dir.path().join("plans.db")).unwrap();
        assert!(db.empty_wal(wait).await.is_err(), "no database to open");
        assert!(!dir.path().join("plans.db").exists(), "none made either");
    }

    #[test]
    fn connection_loss_codes_are_recognised() {
        assert!(is_connection_loss(Some("08006")));
        assert!(is_connection_loss(Some("57P01")));
        assert!(is_connection_loss(Some("57014")), "statement_timeout");
        assert!(is_connection_loss(Some("53300")), "too many connections");
        assert!(!is_connection_loss(Some("23505")));
        assert!(!is_connection_loss(None));
    }
}
