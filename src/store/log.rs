//! The append-only event log: positions, hash chain, ordered reads and verification.
//!
//! Appending takes the log head row first (`UPDATE event_log_head … RETURNING`), which holds a
//! write lock until commit on both backends. Positions are therefore handed out in commit
//! order and without gaps (a rolled-back append also rolls back the head), so a reader that
//! has seen position N never later finds a new event below N.
//!
//! On PostgreSQL the final `UPDATE event_log_head SET hash = …` of both append paths fires a
//! trigger (`migrations/postgres/0004_append_notify.sql`) that notifies `renmian_events`
//! with the new head inside the transaction (see [`super::notify`]): the notification goes
//! out on commit and only then, and since appends are serialised by the head row,
//! notifications arrive in head order.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::postgres::{PgConnectOptions, Postgres};
use sqlx::sqlite::{Sqlite, SqliteConnectOptions};
use sqlx::{Acquire, Any, ConnectOptions, Connection, FromRow, Row};

use super::{Backend, Database, StoreError};

/// `prev_hash` of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Rows per multi-row INSERT; 15 parameters each stays far below both backends' limits.
const INSERT_CHUNK: usize = 500;

pub(crate) const EVENT_COLUMNS: &str =
    "position, aggregate_type, aggregate_id, sequence, event_type, \
     event_version, payload, metadata, recorded_at, actor, document_number, source_line, clause, \
     prev_hash, hash";

/// Up to `$2` events after position `$1`, in position order: [`Database::events_after`] on a
/// read connection, and the projector's catch-up inside its transaction.
pub(crate) static EVENTS_AFTER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2")
});

/// An event about to be appended; position, time and hashes are assigned by [`Database::append`].
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// Canonical JSON (serde_json's sorted-key form).
    pub payload: String,
    pub metadata: String,
    pub actor: String,
    pub document_number: Option<String>,
    pub source_line: Option<i64>,
    pub clause: Option<String>,
}

/// One row of the event log, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: String,
    pub metadata: String,
    pub recorded_at: String,
    pub actor: String,
    pub document_number: Option<String>,
    pub source_line: Option<i64>,
    pub clause: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// The bytes the hash covers: every column but the hashes, in a fixed order, as JSON.
#[derive(Serialize)]
struct CanonicalEvent<'a> {
    position: i64,
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    sequence: i64,
    event_type: &'a str,
    event_version: &'a str,
    payload: &'a str,
    metadata: &'a str,
    recorded_at: &'a str,
    actor: &'a str,
    document_number: Option<&'a str>,
    source_line: Option<i64>,
    clause: Option<&'a str>,
}

impl StoredEvent {
    /// An event at position 1 for unit tests.
    #[cfg(test)]
    pub(crate) fn sample() -> StoredEvent {
        StoredEvent {
            position: 1,
            aggregate_type: "notice".into(),
            aggregate_id: "a".into(),
            sequence: 1,
            event_type: "NoticeRecorded".into(),
            event_version: "1".into(),
            payload: "{}".into(),
            metadata: "{}".into(),
            recorded_at: "2026-01-01T00:00:00.000000Z".into(),
            actor: "test".into(),
            document_number: None,
            source_line: Some(3),
            clause: None,
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        }
    }

    /// `sha256(prev_hash ‖ canonical event)`, hex.
    pub fn compute_hash(&self) -> String {
        let canonical = CanonicalEvent {
            position: self.position,
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            sequence: self.sequence,
            event_type: &self.event_type,
            event_version: &self.event_version,
            payload: &self.payload,
            metadata: &self.metadata,
            recorded_at: &self.recorded_at,
            actor: &self.actor,
            document_number: self.document_number.as_deref(),
            source_line: self.source_line,
            clause: self.clause.as_deref(),
        };
        let json = serde_json::to_string(&canonical).expect("canonical event serialises");
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash.as_bytes());
        hasher.update(json.as_bytes());
        hex::encode(hasher.finalize())
    }
}

/// [`Database::read_log`] on a connection of driver `DB`: `Ok` once the log ended or the
/// receiver is gone.
async fn read_log_on<DB>(
    options: <DB::Connection as Connection>::Options,
    mut after: i64,
    batch: i64,
    batches: &tokio::sync::mpsc::Sender<Result<Vec<StoredEvent>, StoreError>>,
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    StoredEvent: for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let mut conn = DB::Connection::connect_with(&options).await?;
    loop {
        let events: Vec<StoredEvent> = sqlx::query_as::<DB, StoredEvent>(&EVENTS_AFTER)
            .bind(after)
            .bind(batch)
            .fetch_all(&mut conn)
            .await?;
        let last = events.last().map(|e| e.position);
        if batches.send(Ok(events)).await.is_err() {
            break;
        }
        match last {
            Some(position) => after = position,
            None => break,
        }
    }
    conn.close().await?;
    Ok(())
}

/// A stored event from a row of [`EVENT_COLUMNS`], by index, of `Any` or of a driver's own
/// row type (`&str` borrowed from the row, copied once into the event).
macro_rules! stored_event_from_row {
    ($row:ty) => {
        impl<'r> sqlx::FromRow<'r, $row> for StoredEvent {
            fn from_row(row: &'r $row) -> Result<Self, sqlx::Error> {
                let text = |i: usize| row.try_get::<&str, _>(i).map(str::to_owned);
                let optional = |i: usize| {
                    row.try_get::<Option<&str>, _>(i)
                        .map(|v| v.map(str::to_owned))
                };
                Ok(Self {
                    position: row.try_get(0)?,
                    aggregate_type: text(1)?,
                    aggregate_id: text(2)?,
                    sequence: row.try_get(3)?,
                    event_type: text(4)?,
                    event_version: text(5)?,
                    payload: text(6)?,
                    metadata: text(7)?,
                    recorded_at: text(8)?,
                    actor: text(9)?,
                    document_number: optional(10)?,
                    source_line: row.try_get(11)?,
                    clause: optional(12)?,
                    prev_hash: text(13)?,
                    hash: text(14)?,
                })
            }
        }
    };
}

stored_event_from_row!(AnyRow);
stored_event_from_row!(sqlx::sqlite::SqliteRow);
stored_event_from_row!(sqlx::postgres::PgRow);

/// Result of [`Database::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Events checked.
    pub events: i64,
    /// Position of the last event.
    pub head_position: i64,
    /// First position whose row does not match the chain, if any.
    pub first_bad_position: Option<i64>,
    /// What is wrong there.
    pub problem: Option<String>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.first_bad_position.is_none()
    }
}

/// Current UTC time in the stored `recorded_at` format (RFC 3339, microseconds, `Z`).
pub fn now_utc() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

impl Database {
    /// Appends `events` atomically after the current head and returns them as stored.
    /// A unique violation on (aggregate, sequence) means another writer got there first and
    /// is reported as [`StoreError::Conflict`]; nothing is stored then.
    pub async fn append(&self, events: &[NewEvent]) -> Result<Vec<StoredEvent>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool().begin().await?;
        let count = i64::try_from(events.len()).map_err(|_| StoreError::Conflict)?;
        let head = sqlx::query(
            "UPDATE event_log_head SET position = position + $1 WHERE id = 1 \
             RETURNING position, hash",
        )
        .bind(count)
        .fetch_one(&mut *tx)
        .await?;
        let new_head: i64 = head.try_get("position")?;
        let mut prev_hash: String = head.try_get("hash")?;
        let recorded_at = now_utc();
        let mut stored = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            let mut row = StoredEvent {
                position: new_head - count + 1 + i as i64,
                aggregate_type: e.aggregate_type.clone(),
                aggregate_id: e.aggregate_id.clone(),
                sequence: e.sequence,
                event_type: e.event_type.clone(),
                event_version: e.event_version.clone(),
                payload: e.payload.clone(),
                metadata: e.metadata.clone(),
                recorded_at: recorded_at.clone(),
                actor: e.actor.clone(),
                document_number: e.document_number.clone(),
                source_line: e.source_line,
                clause: e.clause.clone(),
                prev_hash,
                hash: String::new(),
            };
            row.hash = row.compute_hash();
            prev_hash = row.hash.clone();
            stored.push(row);
        }
        insert_rows_and_head(&mut tx, self.backend(), &stored, &prev_hash).await?;
        let observer = self.observer.get();
        if let Some(observer) = &observer {
            let mut savepoint = Acquire::begin(&mut *tx).await?;
            match observer.appended(&mut savepoint, &stored).await {
                Ok(()) => savepoint.commit().await?,
                Err(e) => {
                    tracing::warn!(error = %e, "work in the append's transaction failed; the append commits without it");
                    savepoint.rollback().await?;
                }
            }
        }
        tx.commit().await?;
        if let Some(observer) = &observer {
            observer.committed(&stored);
        }
        Ok(stored)
    }

    /// Appends events that already carry positions, times and hashes (`load-events`). The
    /// chain must continue the current head exactly.
    pub async fn append_verbatim(&self, events: &[StoredEvent]) -> Result<(), StoreError> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        let mut tx = self.pool().begin().await?;
        let count = i64::try_from(events.len()).map_err(|_| StoreError::Conflict)?;
        let head = sqlx::query(
            "UPDATE event_log_head SET position = position + $1 WHERE id = 1 \
             RETURNING position, hash",
        )
        .bind(count)
        .fetch_one(&mut *tx)
        .await?;
        let new_head: i64 = head.try_get("position")?;
        let mut prev_hash: String = head.try_get("hash")?;
        for (expected_position, e) in (new_head - count + 1..).zip(events) {
            if e.position != expected_position || e.prev_hash != prev_hash {
                return Err(StoreError::Corrupt(format!(
                    "event at position {} does not continue the chain (expected position {expected_position})",
                    e.position
                )));
            }
            if e.compute_hash() != e.hash {
                return Err(StoreError::Corrupt(format!(
                    "event at position {} has a wrong hash",
                    e.position
                )));
            }
            prev_hash = e.hash.clone();
        }
        insert_rows_and_head(&mut tx, self.backend(), events, &last.hash).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Up to `limit` events with position > `after`, in position order.
    pub async fn events_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = self
            .read_all(sqlx::query(&EVENTS_AFTER).bind(after).bind(limit))
            .await?;
        Ok(rows
            .iter()
            .map(StoredEvent::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Reads the log after position `after` in position order, `batch` events at a time,
    /// and sends each batch to `batches`, the last one empty, until the log ends, a read
    /// fails (the error is sent) or the receiver is gone. Each batch is read as it stood
    /// when its statement began, as [`Database::events_after`] reads it.
    ///
    /// For reading the whole log (a rebuild): on a connection of the driver's own type
    /// opened for this reading, read-only, instead of through `Any`, which converts every
    /// row into an `AnyRow` (copying each value) before it can be decoded; each value is
    /// copied once, from the row into the event.
    pub async fn read_log(
        &self,
        after: i64,
        batch: i64,
        batches: tokio::sync::mpsc::Sender<Result<Vec<StoredEvent>, StoreError>>,
    ) {
        // Where the pool's connections go.
        let url = &self.pool.connect_options().database_url;
        let read = match self.backend {
            Backend::Sqlite => match SqliteConnectOptions::from_url(url) {
                Ok(options) => {
                    // As the read connections are (readers.rs): opened as the pool's are,
                    // then refused every write.
                    let options = options.pragma("query_only", "ON");
                    read_log_on::<Sqlite>(options, after, batch, &batches).await
                }
                Err(e) => Err(e.into()),
            },
            Backend::Postgres => match PgConnectOptions::from_url(url) {
                Ok(options) => {
                    let options = options.options([("default_transaction_read_only", "on")]);
                    read_log_on::<Postgres>(options, after, batch, &batches).await
                }
                Err(e) => Err(e.into()),
            },
        };
        if let Err(e) = read {
            let _ = batches.send(Err(e)).await;
        }
    }

    /// `(sequence, position)` of an aggregate's events from `from_sequence` on: what an ingest
    /// report needs, without reading payloads back (on SQLite the unique index on
    /// `(aggregate_type, aggregate_id, sequence)` answers it alone: `position` is the rowid).
    pub async fn event_positions(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        from_sequence: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows = self
            .read_all(
                sqlx::query(
                    "SELECT sequence, position FROM events WHERE aggregate_type = $1 \
             AND aggregate_id = $2 AND sequence >= $3 ORDER BY sequence",
                )
                .bind(aggregate_type)
                .bind(aggregate_id)
                .bind(from_sequence),
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get("sequence")?, r.try_get("position")?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }

    /// Events of one aggregate with sequence > `after_sequence`, in sequence order.
    pub async fn aggregate_events(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_sequence: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = self
            .read_all(
                sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
             AND sequence > $3 ORDER BY sequence"
        ))
                .bind(aggregate_type)
                .bind(aggregate_id)
                .bind(after_sequence),
            )
            .await?;
        Ok(rows
            .iter()
            .map(StoredEvent::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Position of the last event (0 when the log is empty).
    pub async fn head_position(&self) -> Result<i64, StoreError> {
        let row = self
            .read_one(sqlx::query(
                "SELECT position FROM event_log_head WHERE id = 1",
            ))
            .await?;
        Ok(row.try_get("position")?)
    }

    /// Recomputes the hash chain from the first event and checks the head; reports the first
    /// anomaly whether or not an operator acknowledged it (see [`Database::audit`] for all of
    /// them and their acknowledgements).
    pub async fn verify(&self) -> Result<VerifyReport, StoreError> {
        let audit = self.audit().await?;
        Ok(match audit.anomalies.first() {
            None => VerifyReport {
                events: audit.events,
                head_position: audit.head_position,
                first_bad_position: None,
                problem: None,
            },
            Some(first) => VerifyReport {
                events: audit.verified_before_first_anomaly,
                head_position: audit.head_position,
                first_bad_position: Some(first.position),
                problem: Some(first.problem.clone()),
            },
        })
    }
}

/// Inserts `rows` and sets the head's hash to `head_hash`, in the transaction that took
/// the head. On SQLite the last INSERT and the UPDATE go as one statement list (sqlx binds
/// `?` parameters across them in order): each statement is a round trip to the
/// connection's worker thread, which an append of one notice paid six times. PostgreSQL
/// takes no parameters in a statement list; there the UPDATE follows on its own.
async fn insert_rows_and_head(
    tx: &mut sqlx::Transaction<'_, Any>,
    backend: Backend,
    rows: &[StoredEvent],
    head_hash: &str,
) -> Result<(), StoreError> {
    const SET_HEAD: &str = "UPDATE event_log_head SET hash = $1 WHERE id = 1";
    let chunks: Vec<&[StoredEvent]> = rows.chunks(INSERT_CHUNK).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let with_head = backend == Backend::Sqlite && i + 1 == chunks.len();
        insert_rows(tx, backend, chunk, with_head.then_some(head_hash)).await?;
    }
    if backend == Backend::Postgres || chunks.is_empty() {
        sqlx::query(SET_HEAD)
            .bind(head_hash)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// One multi-row INSERT of `rows`; on SQLite followed, in the same statement list, by
/// setting the head's hash when `head_hash` is given.
async fn insert_rows(
    tx: &mut sqlx::Transaction<'_, Any>,
    backend: Backend,
    rows: &[StoredEvent],
    head_hash: Option<&str>,
) -> Result<(), StoreError> {
    // Placeholders are written by hand: sqlx's QueryBuilder emits `?` for `Any`, which
    // PostgreSQL rejects.
    let mut sql = format!(
        "INSERT INTO events ({EVENT_COLUMNS}) VALUES {}",
        placeholders(backend, rows.len(), 15)
    );
    if head_hash.is_some() {
        sql.push_str("; UPDATE event_log_head SET hash = ? WHERE id = 1");
    }
    let mut query = sqlx::query(&sql);
    // Borrowed text: sqlx `Any` copies a `String` it is bound (even by reference), not a
    // `&str`.
    for e in rows {
        query = query
            .bind(e.position)
            .bind(e.aggregate_type.as_str())
            .bind(e.aggregate_id.as_str())
            .bind(e.sequence)
            .bind(e.event_type.as_str())
            .bind(e.event_version.as_str())
            .bind(e.payload.as_str())
            .bind(e.metadata.as_str())
            .bind(e.recorded_at.as_str())
            .bind(e.actor.as_str())
            .bind(e.document_number.as_deref())
            .bind(e.source_line)
            .bind(e.clause.as_deref())
            .bind(e.prev_hash.as_str())
            .bind(e.hash.as_str());
    }
    if let Some(hash) = head_hash {
        query = query.bind(hash);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// The VALUES list of a multi-row INSERT of `rows` rows of `width` values, in bind order:
/// `($1, …, $w), ($w+1, …)` on PostgreSQL, `(?, …), (?, …)` on SQLite.
///
/// SQLite gets anonymous parameters because sqlx binds each *named* parameter by asking
/// SQLite its name (`sqlite3_bind_parameter_name`), a linear walk of the statement's names:
/// binding a 500-row statement with `$N` names cost O(n²) and was a third of a rebuild's
/// CPU time.
pub fn placeholders(backend: Backend, rows: usize, width: usize) -> String {
    let mut out = String::with_capacity(rows * width * 5);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..width {
            if c > 0 {
                out.push_str(", ");
            }
            match backend {
                Backend::Sqlite => out.push('?'),
                Backend::Postgres => {
                    out.push('$');
                    out.push_str(&(r * width + c + 1).to_string());
                }
            }
        }
        out.push(')');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_row_by_row() {
        assert_eq!(
            placeholders(Backend::Postgres, 2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(placeholders(Backend::Postgres, 1, 1), "($1)");
        assert_eq!(placeholders(Backend::Sqlite, 2, 2), "(?, ?), (?, ?)");
    }

    #[test]
    fn the_hash_covers_every_column_and_the_previous_hash() {
        let base = StoredEvent::sample().compute_hash();
        assert_eq!(base.len(), 64);
        assert_eq!(base, StoredEvent::sample().compute_hash(), "deterministic");
        let mut edited = StoredEvent::sample();
        edited.payload = "{\"x\":1}".into();
        assert_ne!(edited.compute_hash(), base);
        let mut relinked = StoredEvent::sample();
        relinked.prev_hash = "1".repeat(64);
        assert_ne!(relinked.compute_hash(), base);
        let mut moved = StoredEvent::sample();
        moved.position = 2;
        assert_ne!(moved.compute_hash(), base);
    }
}
