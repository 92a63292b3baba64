//! Connections handed out without sqlx's `Pool`: the read connections queries run on, and
//! the one connection this process appends through.
//!
//! sqlx 0.8's pool pings a connection when it hands it out (`test_before_acquire`) and
//! again, always, when it takes it back (`return_to_pool`, in a spawned task). On SQLite every
//! ping is a round trip to the connection's worker thread, so one query cost three
//! cross-thread round trips where one does the work; on PostgreSQL, three network round
//! trips. A profile of `renmian serve` answering ListHolders had most of its time in
//! context switches (BENCHMARKS.md, session 4).
//!
//! [`Connections`] keeps idle connections in a list and checks a connection out for exactly
//! one unit of work. It is safe to skip the pings because a connection goes back to the list
//! only when its work ran to completion without a connection-level error: work whose future
//! was dropped half-way (a cancelled request) or that failed with an I/O, protocol or
//! connection-loss error takes its connection with it, and the next caller opens a fresh
//! one; such an error also drops the other idle connections (a server restart took them
//! all), and a PostgreSQL connection idle for a while is pinged before use.
//!
//! Two roles ([`Role`]):
//! - **Read**: several connections, one statement each, read-only (`query_only` on SQLite,
//!   `default_transaction_read_only` on PostgreSQL): nothing can write through them.
//! - **Write**: one connection, for the appends ([`Database::append`](super::Database::append))
//!   and the projection each runs in its transaction, checked out by one append at a time
//!   in arrival order (a fair semaphore). Appends take turns anyway — they all move the
//!   log's head row — and one connection keeps what each append warms for the next: on
//!   SQLite its page cache (SQLite drops a connection's whole cache when another connection
//!   committed since its last transaction, and the pool handed appends its connections in
//!   turn; see [`WRITER_SQLITE_CACHE`]), on PostgreSQL its prepared statements (the
//!   projection's multi-row statements come in many sizes: with the pool's 16 connections
//!   and sqlx's 100 statements each, 29 % of an ingest's statements were parsed again,
//!   each a round trip more and one more to evict another; see
//!   [`WRITER_STATEMENT_CACHE`]). Appends that come together queue in this process instead
//!   of in SQLite's busy handler, which sleeps, and whichever gets the connection next
//!   appends all that wait in one transaction ([`group`](super::group)).
//!   An append whose future is dropped half-way takes the connection with it: its
//!   transaction dies with the connection.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::any::{AnyArguments, AnyConnectOptions, AnyRow};
use sqlx::query::Query;
use sqlx::AnyConnection;
use sqlx::{Any, ConnectOptions};
use tokio::sync::Semaphore;

use super::{configure, is_connection_loss, Backend, DatabaseOptions};

/// What a set of [`Connections`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Read-only connections, one statement per checkout.
    Read,
    /// The appending connection, one append (a transaction) per checkout.
    Write,
}

/// sqlx's prepared statements kept per connection of the [`Role::Write`] role on PostgreSQL
/// (sqlx's default is 100; a URL's own `statement-cache-capacity` wins). Measured on one
/// process ingesting 300 notices after 1 700 (`statement-cache-capacity` in the URL of
/// every connection): 1 285 parses for 4 437 statements with 100, 412 with 1 000, and
/// 2 000 notices one by one 7 419-7 448 → 8 008-8 127 events/s. A backend holding that
/// many of renmian's statements used about 20 MiB (`pg_log_backend_memory_contexts`), once
/// per process.
pub(crate) const WRITER_STATEMENT_CACHE: usize = 1000;

/// The appending connection's page cache on SQLite: SQLite's default (2 MiB), not the
/// 32 MiB the other connections get. A connection that keeps its cache from one commit to
/// the next pays for its size at every commit: ending a write transaction, SQLite walks the
/// whole hash table of the cache (`pcache1TruncateUnsafe`, 3.8 % of an ingest's CPU samples
/// with 32 MiB, 0.5 % with 2 MiB, which read 3.1 % instead of 0.6 % back from the file).
/// 2 000 notices one by one, four alternating pairs: 9 792-10 311 → 10 259-10 773
/// events/s; 500 notices on top of 1M events, three pairs: 6 644-6 964 → 6 748-7 038.
const WRITER_SQLITE_CACHE: &str = "PRAGMA cache_size = -2000";

/// Idle connections and the permits bounding how many exist.
#[derive(Debug)]
pub(crate) struct Connections {
    options: AnyConnectOptions,
    backend: Backend,
    role: Role,
    bounds: DatabaseOptions,
    /// Idle connections with the time each went idle, most recent last.
    idle: Mutex<Vec<(AnyConnection, Instant)>>,
    permits: Semaphore,
}

/// A PostgreSQL connection idle for longer than this is pinged before use: the server may
/// have restarted or closed it meanwhile. Under load connections idle for microseconds and
/// are never pinged; SQLite connections are never pinged (a file does not hang up).
const PING_AFTER_IDLE: Duration = Duration::from_secs(2);

impl Role {
    /// How many connections of this role a database gets: one appending connection;
    /// [`reader_count`] read connections.
    fn count(self, backend: Backend) -> usize {
        match self {
            Role::Read => reader_count(backend),
            Role::Write => 1,
        }
    }

    /// The URL this role's connections open `url` with: the appending connection's on
    /// PostgreSQL with room for [`WRITER_STATEMENT_CACHE`] prepared statements, unless
    /// `url` sets its own; otherwise `url` itself.
    pub(crate) fn url(self, url: &str, backend: Backend) -> String {
        if self == Role::Read
            || backend != Backend::Postgres
            || url.contains("statement-cache-capacity=")
        {
            return url.to_owned();
        }
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}statement-cache-capacity={WRITER_STATEMENT_CACHE}")
    }
}

impl Connections {
    /// The connections of `role` ([`Role::count`] of them at most), opened with `options`
    /// (from [`Role::url`]).
    pub(crate) fn new(
        options: AnyConnectOptions,
        backend: Backend,
        role: Role,
        bounds: DatabaseOptions,
    ) -> Self {
        let max = role.count(backend);
        Self {
            options,
            backend,
            role,
            bounds,
            idle: Mutex::new(Vec::with_capacity(max)),
            permits: Semaphore::new(max),
        }
    }

    /// Runs `query` on a connection and returns every row.
    pub(crate) async fn fetch_all<'q>(
        &self,
        query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Result<Vec<AnyRow>, sqlx::Error> {
        let mut reader = self.checkout().await?;
        let result = query.fetch_all(reader.connection()).await;
        reader.finish(&result);
        result
    }

    /// Runs `query` on a connection and returns its first row, if any.
    pub(crate) async fn fetch_optional<'q>(
        &self,
        query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Result<Option<AnyRow>, sqlx::Error> {
        let mut reader = self.checkout().await?;
        let result = query.fetch_optional(reader.connection()).await;
        reader.finish(&result);
        result
    }

    /// Closes the idle connections; later reads fail as on a closed pool.
    pub(crate) async fn close(&self) {
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        for (connection, _) in idle {
            let _ = sqlx::Connection::close(connection).await;
        }
    }

    /// Idle connections now (tests: which work gave its connection back).
    #[cfg(test)]
    pub(crate) fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Drops every idle connection: after one connection was lost, the others were most
    /// likely lost with it (a server restart), and each would fail one more caller.
    fn forget_idle(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Waits for a permit (bounded by the acquire timeout, like the pool; permits go in
    /// arrival order), then takes an idle connection or opens one. The connection comes
    /// back to the idle list only if [`Checkout::finish`] saw its work succeed or fail
    /// without harm to the connection.
    pub(crate) async fn checkout(&self) -> Result<Checkout<'_>, sqlx::Error> {
        let timeout = self.bounds.acquire_timeout;
        let permit = tokio::time::timeout(timeout, self.permits.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        self.checkout_with(permit).await
    }

    /// [`checkout`](Self::checkout) if a permit is free now and nobody waits for one
    /// (permits given back go to waiters first), else `None` at once.
    pub(crate) async fn try_checkout(&self) -> Result<Option<Checkout<'_>>, sqlx::Error> {
        match self.permits.try_acquire() {
            Ok(permit) => self.checkout_with(permit).await.map(Some),
            Err(tokio::sync::TryAcquireError::NoPermits) => Ok(None),
            Err(tokio::sync::TryAcquireError::Closed) => Err(sqlx::Error::PoolClosed),
        }
    }

    /// A checkout on `permit`: an idle connection, or a new one.
    async fn checkout_with<'a>(
        &'a self,
        permit: tokio::sync::SemaphorePermit<'a>,
    ) -> Result<Checkout<'a>, sqlx::Error> {
        let timeout = self.bounds.acquire_timeout;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some((connection, since)) = &mut idle {
            // A ping that does not come back (a peer gone without a reset) counts as lost.
            if self.backend == Backend::Postgres
                && since.elapsed() > PING_AFTER_IDLE
                && !matches!(
                    tokio::time::timeout(timeout, sqlx::Connection::ping(connection)).await,
                    Ok(Ok(()))
                )
            {
                self.forget_idle();
                idle = None;
            }
        }
        let connection = match idle {
            Some((connection, _)) => connection,
            None => tokio::time::timeout(timeout, self.open())
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)??,
        };
        Ok(Checkout {
            connections: self,
            connection: Some(connection),
            healthy: false,
            _permit: permit,
        })
    }

    async fn open(&self) -> Result<AnyConnection, sqlx::Error> {
        let mut connection = self.options.connect().await?;
        configure(&mut connection, self.backend, self.bounds).await?;
        let role_settings = match (self.role, self.backend) {
            (Role::Read, Backend::Sqlite) => "PRAGMA query_only = ON",
            (Role::Read, Backend::Postgres) => "SET default_transaction_read_only = on",
            (Role::Write, Backend::Sqlite) => WRITER_SQLITE_CACHE,
            (Role::Write, Backend::Postgres) => return Ok(connection),
        };
        sqlx::Executor::execute(&mut connection, role_settings).await?;
        Ok(connection)
    }
}

/// One checked-out connection. It returns to the idle list on drop only if
/// [`finish`](Self::finish) saw its work complete without a connection-level error.
pub(crate) struct Checkout<'a> {
    connections: &'a Connections,
    connection: Option<AnyConnection>,
    healthy: bool,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Checkout<'_> {
    pub(crate) fn connection(&mut self) -> &mut AnyConnection {
        self.connection
            .as_mut()
            .expect("a checkout holds its connection until dropped")
    }

    /// Notes how the work went: the connection is kept unless `result` is an error that
    /// breaks it. A transaction that failed otherwise was rolled back by its drop (sqlx
    /// queues the `ROLLBACK` ahead of the connection's next statement).
    pub(crate) fn finish<T, E>(&mut self, result: &Result<T, E>)
    where
        E: BreaksConnection,
    {
        self.healthy = match result {
            Ok(_) => true,
            Err(e) => !e.breaks_connection(),
        };
        if !self.healthy {
            self.connections.forget_idle();
        }
    }
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        if let (true, Some(connection)) = (self.healthy, self.connection.take()) {
            self.connections
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((connection, Instant::now()));
        }
    }
}

/// Errors after which a connection is not trusted again.
pub(crate) trait BreaksConnection {
    fn breaks_connection(&self) -> bool;
}

impl BreaksConnection for super::StoreError {
    fn breaks_connection(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Database(e) => e.breaks_connection(),
            _ => false,
        }
    }
}

impl BreaksConnection for sqlx::Error {
    fn breaks_connection(&self) -> bool {
        match self {
            sqlx::Error::Database(db) => is_connection_loss(db.code().as_deref()),
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed => true,
            _ => false,
        }
    }
}

/// How many read connections a database gets: SQLite runs each connection on its own
/// thread, and more threads than cores only add context switches; PostgreSQL runs queries in
/// its own processes, so more connections overlap network waits.
fn reader_count(backend: Backend) -> usize {
    if let Some(n) = std::env::var("RENMIAN_READERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    match backend {
        Backend::Sqlite => 4,
        Backend::Postgres => 16,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Database;
    use super::{Backend, Role};

    fn idle(db: &Database) -> usize {
        db.readers.idle.lock().unwrap().len()
    }

    #[test]
    fn the_appending_connection_keeps_more_statements_on_postgresql() {
        use std::str::FromStr;

        let pg = Role::Write.url("postgres://u@h/db", Backend::Postgres);
        assert_eq!(pg, "postgres://u@h/db?statement-cache-capacity=1000");
        let with_query = Role::Write.url("postgres://u@h/db?sslmode=disable", Backend::Postgres);
        assert_eq!(
            with_query,
            "postgres://u@h/db?sslmode=disable&statement-cache-capacity=1000"
        );
        let own = "postgres://u@h/db?statement-cache-capacity=7";
        assert_eq!(
            Role::Write.url(own, Backend::Postgres),
            own,
            "the URL's own wins"
        );
        let sqlite = "sqlite://r.db?mode=rwc";
        assert_eq!(Role::Write.url(sqlite, Backend::Sqlite), sqlite);
        let read = "postgres://u@h/db";
        assert_eq!(
            Role::Read.url(read, Backend::Postgres),
            read,
            "readers keep sqlx's"
        );
        // And sqlx reads it.
        let options = sqlx::postgres::PgConnectOptions::from_str(&pg).unwrap();
        assert!(format!("{options:?}").contains("statement_cache_capacity: 1000"));
    }

    /// The appending connection writes (it is not `query_only`) with SQLite's default
    /// page cache; the read connections keep the larger one.
    #[tokio::test]
    async fn the_appending_connection_has_its_own_settings() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("w.db").display());
        let db = Database::connect(&url).await.unwrap();
        let setting = |row: sqlx::any::AnyRow| sqlx::Row::get::<i64, _>(&row, 0);
        let mut writer = db.writer.checkout().await.unwrap();
        let cache = sqlx::query("PRAGMA cache_size")
            .fetch_one(writer.connection())
            .await
            .unwrap();
        assert_eq!(setting(cache), -2000);
        let query_only = sqlx::query("PRAGMA query_only")
            .fetch_one(writer.connection())
            .await
            .unwrap();
        assert_eq!(setting(query_only), 0);
        writer.finish(&Ok::<(), sqlx::Error>(()));
        drop(writer);
        let cache = db.read_one(sqlx::query("PRAGMA cache_size")).await.unwrap();
        assert_eq!(setting(cache), -32768);
        db.close().await;
    }

    #[tokio::test]
    async fn a_read_cut_short_does_not_return_its_connection() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        let db = Database::connect(&url).await.unwrap();
        db.read_all(sqlx::query("SELECT 1 AS one")).await.unwrap();
        assert_eq!(idle(&db), 1, "a completed read returns its connection");
        // A read whose future is dropped half-way (a cancelled request).
        let slow = db.read_all(sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000000) \
             SELECT SUM(i) AS s FROM n",
        ));
        let cut = tokio::time::timeout(std::time::Duration::from_millis(20), slow).await;
        assert!(cut.is_err(), "the slow read was still running");
        assert_eq!(idle(&db), 0, "its connection is not reused");
        // A statement error that leaves the connection sound keeps it.
        assert!(db.read_all(sqlx::query("SELECT nope")).await.is_err());
        assert_eq!(idle(&db), 1);
        let row = db
            .read_one(sqlx::query("SELECT 41 + 1 AS n"))
            .await
            .unwrap();
        assert_eq!(sqlx::Row::try_get::<i64, _>(&row, "n").unwrap(), 42);
    }
}
