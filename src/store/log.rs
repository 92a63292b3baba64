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

use std::collections::HashSet;

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, Postgres};
use sqlx::sqlite::{Sqlite, SqliteConnectOptions};
use sqlx::{Any, AnyConnection, ConnectOptions, Connection, FromRow, Row};

use tokio::sync::oneshot;

use super::connections::Checkout;
use super::{group, Backend, Database, ObservedTx, StoreError};

/// `prev_hash` of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Rows per multi-row INSERT; 15 parameters each stays far below both backends' limits.
const INSERT_CHUNK: usize = 500;

/// Items asked about in one statement's list ([`Database::aggregates_in_log`]'s ids,
/// `Queries::revoked_among`'s document numbers): padded to at most 512, far below both
/// backends' limits on parameters.
pub(crate) const IN_LIST_IDS: usize = 500;

pub(crate) const EVENT_COLUMNS: &str =
    "position, aggregate_type, aggregate_id, sequence, event_type, \
     event_version, payload, metadata, recorded_at, actor, document_number, source_line, clause, \
     prev_hash, hash";

/// The columns a replay reads ([`Database::read_log`]): the eight a projection uses. Left
/// out: the provenance columns (`document_number`, `source_line`, `clause`; the projections
/// take a notice's number and a fact's line and clause from the payload), `prev_hash` and
/// `hash` (a rebuild reads the hash of its last event alone, when it keeps its model),
/// `aggregate_type` and `sequence` (only an append's report and its projection's reads of
/// a commit begun before the model use them; a replay's model is complete). sqlx copies
/// each value of a row on its way out of the database (on SQLite a value struct and, for
/// text, its bytes: two allocations): four columns fewer were 6.8 % of a SQLite rebuild's
/// instructions and 7.3 % of renmian's share of a PostgreSQL one (BENCHMARKS.md, session
/// 18); three more, with the copies of each event's hash and of the next event's
/// aggregate id the replay stopped making, another 5.9 % and 3.7 % (session 20).
const REPLAY_COLUMNS: &str =
    "position, aggregate_id, event_type, event_version, payload, metadata, recorded_at, actor";

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

#[cfg(test)]
impl NewEvent {
    /// The first event of notice `aggregate_id`, for unit tests.
    pub(crate) fn sample(aggregate_id: &str) -> Self {
        Self {
            aggregate_type: "notice".into(),
            aggregate_id: aggregate_id.into(),
            sequence: 1,
            event_type: "NoticeRecorded".into(),
            event_version: "1".into(),
            payload: "{}".into(),
            metadata: "{}".into(),
            actor: "test".into(),
            document_number: None,
            source_line: None,
            clause: None,
        }
    }
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
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash.as_bytes());
        // Serialised straight into the hash: the same bytes `to_string` would make, without
        // building them first.
        serde_json::to_writer(&mut hasher, &canonical).expect("canonical event serialises");
        hex::encode(hasher.finalize())
    }
}

/// Events [`read_log_on`] makes room for at once, whatever batch it is asked for.
const MAX_BATCH_CAPACITY: usize = 100_000;

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
    Replayed: for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let mut conn = DB::Connection::connect_with(&options).await?;
    let sql = format!(
        "SELECT {REPLAY_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
    );
    // Room for a whole batch from the start: collected as they came, the events moved at
    // each doubling of the vector.
    let capacity = usize::try_from(batch).unwrap_or(0).min(MAX_BATCH_CAPACITY);
    loop {
        let events: Vec<StoredEvent> = sqlx::query_as::<DB, Replayed>(&sql)
            .bind(after)
            .bind(batch)
            .fetch(&mut conn)
            .try_fold(
                Vec::with_capacity(capacity),
                |mut events, Replayed(event)| {
                    events.push(event);
                    std::future::ready(Ok(events))
                },
            )
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
impl<'r, R> FromRow<'r, R> for StoredEvent
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    Utf8Text<'r>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let optional = |i: usize| {
            row.try_get::<Option<Utf8Text<'r>>, _>(i)
                .map(|v| v.map(|Utf8Text(text)| text.to_owned()))
        };
        Ok(Self {
            position: row.try_get(0)?,
            aggregate_type: text(row, 1)?,
            aggregate_id: text(row, 2)?,
            sequence: row.try_get(3)?,
            event_type: text(row, 4)?,
            event_version: text(row, 5)?,
            payload: text(row, 6)?,
            metadata: text(row, 7)?,
            recorded_at: text(row, 8)?,
            actor: text(row, 9)?,
            document_number: optional(10)?,
            source_line: row.try_get(11)?,
            clause: optional(12)?,
            prev_hash: text(row, 13)?,
            hash: text(row, 14)?,
        })
    }
}

/// A stored event from a row of [`REPLAY_COLUMNS`]: the columns left out come back `None`,
/// empty or 0.
struct Replayed(StoredEvent);

impl<'r, R> FromRow<'r, R> for Replayed
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    Utf8Text<'r>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self(StoredEvent {
            position: row.try_get(0)?,
            aggregate_type: String::new(),
            aggregate_id: text(row, 1)?,
            sequence: 0,
            event_type: text(row, 2)?,
            event_version: text(row, 3)?,
            payload: text(row, 4)?,
            metadata: text(row, 5)?,
            recorded_at: text(row, 6)?,
            actor: text(row, 7)?,
            document_number: None,
            source_line: None,
            clause: None,
            prev_hash: String::new(),
            hash: String::new(),
        }))
    }
}

/// Column `i` of `row` as text, copied out of the row.
fn text<'r, R>(row: &'r R, i: usize) -> Result<String, sqlx::Error>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    Utf8Text<'r>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    row.try_get::<Utf8Text<'r>, _>(i)
        .map(|Utf8Text(text)| text.to_owned())
}

/// A text column of the log, borrowed from its row. The drivers' own `&str` checks that the
/// bytes are UTF-8 with `std::str::from_utf8`, which walks text that is not ASCII (the
/// payloads are mostly Chinese) a byte at a time: 4.3 % of a SQLite rebuild's instructions.
/// On SQLite and PostgreSQL this takes the value's bytes and checks them with `simdutf8`
/// instead — the same check, several bytes per instruction; through `Any` the driver has
/// made a `&str` already.
pub(crate) struct Utf8Text<'r>(pub(crate) &'r str);

impl<'r> Utf8Text<'r> {
    /// The value's bytes as text, or the decoding error a column of invalid UTF-8 is: the
    /// decoding on drivers whose byte slices of a text value are its UTF-8 (SQLite,
    /// PostgreSQL).
    fn from_bytes<DB: sqlx::Database>(
        value: DB::ValueRef<'r>,
    ) -> Result<Self, sqlx::error::BoxDynError>
    where
        &'r [u8]: sqlx::Decode<'r, DB>,
    {
        let bytes = <&'r [u8] as sqlx::Decode<'r, DB>>::decode(value)?;
        Ok(Self(simdutf8::basic::from_utf8(bytes)?))
    }
}

impl<'r> sqlx::Decode<'r, Sqlite> for Utf8Text<'r> {
    fn decode(value: sqlx::sqlite::SqliteValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Self::from_bytes::<Sqlite>(value)
    }
}

impl sqlx::Type<Sqlite> for Utf8Text<'_> {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <&str as sqlx::Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &sqlx::sqlite::SqliteTypeInfo) -> bool {
        <&str as sqlx::Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for Utf8Text<'r> {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Self::from_bytes::<Postgres>(value)
    }
}

impl sqlx::Type<Postgres> for Utf8Text<'_> {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <&str as sqlx::Type<Postgres>>::type_info()
    }

    /// `text` first, by its OID (25, fixed in PostgreSQL's own catalog): every text column
    /// of the log is `text`, and the driver's `&str` builds and compares a list of six
    /// text-like types for every value (3.7 % of renmian's side of a rebuild).
    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        ty.oid() == Some(sqlx::postgres::types::Oid(25))
            || <&str as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Any> for Utf8Text<'r> {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        <&'r str as sqlx::Decode<'r, Any>>::decode(value).map(Utf8Text)
    }
}

impl sqlx::Type<Any> for Utf8Text<'_> {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <&str as sqlx::Type<Any>>::type_info()
    }

    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        <&str as sqlx::Type<Any>>::compatible(ty)
    }
}

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
    ///
    /// Appends of this process that arrive while another is under way wait for it and are
    /// then committed together, in one transaction ([`group`](super::group)); each still
    /// stores all of its events or none and gets back only its own.
    pub async fn append(&self, events: &[NewEvent]) -> Result<Vec<StoredEvent>, StoreError> {
        self.append_observed(events, true).await
    }

    /// [`Database::append`] without the observer: nothing but the events is written in
    /// the transaction, and the read models are left behind them (a bulk load into an empty
    /// registry projects once, at its end, with `Projector::rebuild`).
    pub async fn append_unobserved(
        &self,
        events: &[NewEvent],
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.append_observed(events, false).await
    }

    async fn append_observed(
        &self,
        events: &[NewEvent],
        observe: bool,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // The one appending connection (connections.rs), free and nobody waiting: alone.
        if self.waiting.is_empty() {
            if let Some(mut writer) = self.writer.try_checkout().await? {
                return self.append_with(&mut writer, events, observe).await;
            }
        }
        self.append_grouped(events, observe).await
    }

    /// An append that found the appending connection busy: it waits in the queue until a
    /// group answers it, or until it gets the connection and appends a group itself
    /// (group.rs).
    async fn append_grouped(
        &self,
        events: &[NewEvent],
        observe: bool,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        'queued: loop {
            let mut answer = self.waiting.push(events.to_vec(), observe);
            loop {
                let mut writer = tokio::select! {
                    biased;
                    answered = &mut answer => match answered {
                        Ok(answered) => return answered,
                        // Taken by a group that was cut short: nothing was stored.
                        Err(_) => continue 'queued,
                    },
                    writer = self.writer.checkout() => writer?,
                };
                match answer.try_recv() {
                    Ok(answered) => return answered,
                    // Taken by a group cut short while this one waited: append alone now.
                    Err(oneshot::error::TryRecvError::Closed) => {
                        return self.append_with(&mut writer, events, observe).await
                    }
                    Err(oneshot::error::TryRecvError::Empty) => {}
                }
                let group = self.waiting.take();
                self.append_group(&mut writer, group).await;
                // This append was in the group, or is still queued behind it.
            }
        }
    }

    /// Appends a group's events in one transaction and answers each of its appends. If
    /// the transaction fails, each append of a larger group goes again alone, so each gets
    /// its own answer; a group of one already has it.
    async fn append_group(&self, writer: &mut Checkout<'_>, mut group: Vec<group::Request>) {
        let Some(observe) = group.first().map(|request| request.observe) else {
            return;
        };
        let (events, counts) = group::concatenate(&mut group);
        match self.append_with(writer, &events, observe).await {
            Ok(stored) => {
                for (request, stored) in group.into_iter().zip(group::split(stored, &counts)) {
                    let _ = request.answer.send(Ok(stored));
                }
            }
            Err(e) if group.len() == 1 => {
                if let Some(request) = group.pop() {
                    let _ = request.answer.send(Err(e));
                }
            }
            Err(_) => {
                for (mut request, events) in group.into_iter().zip(group::split(events, &counts)) {
                    request.events = events;
                    let answer = self
                        .append_with(writer, &request.events, request.observe)
                        .await;
                    let _ = request.answer.send(answer);
                }
            }
        }
    }

    /// One append (one transaction) on the checked-out appending connection.
    async fn append_with(
        &self,
        writer: &mut Checkout<'_>,
        events: &[NewEvent],
        observe: bool,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let appended = self.append_on(writer.connection(), events, observe).await;
        writer.finish(&appended);
        appended
    }

    async fn append_on(
        &self,
        connection: &mut AnyConnection,
        events: &[NewEvent],
        observe: bool,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if let Some(head) = self.last_head.expected() {
            match self.append_after(connection, &head, events, observe).await {
                Ok(Some(stored)) => return Ok(stored),
                // The head moved (another process, or another handle's append in this one)
                // or the rows conflict: the general path below tells which.
                Ok(None) | Err(StoreError::Conflict) => self.last_head.forget(),
                Err(e) => {
                    self.last_head.forget();
                    return Err(e);
                }
            }
        }
        let mut tx = Connection::begin(connection).await?;
        let count = i64::try_from(events.len()).map_err(|_| StoreError::Conflict)?;
        let head = sqlx::query(
            "UPDATE event_log_head SET position = position + $1 WHERE id = 1 \
             RETURNING position, hash",
        )
        .bind(count)
        .fetch_one(&mut *tx)
        .await?;
        let after = LogHead {
            position: head.try_get::<i64, _>("position")? - count,
            hash: head.try_get("hash")?,
        };
        let recorded_at = now_utc();
        let rows = Rows::New {
            events,
            recorded_at: &recorded_at,
        };
        let first = rows.first_chunk(&after);
        let stored = insert_rows_and_head(&mut tx, self.backend(), rows, first, &after, false)
            .await?
            .ok_or_else(|| StoreError::Corrupt("an append without a claim was refused".into()))?;
        self.observe_and_commit(tx, stored, observe).await
    }

    /// The append when this process knows the head its last append left ([`LastHead`]),
    /// which saves a round trip (to the connection's worker thread on SQLite, to the
    /// server on PostgreSQL) and hashes the rows while it begins the transaction. The rows
    /// are chained after `head` and the head row is moved only `WHERE` it still is `head`,
    /// in the statement of the first INSERT; `Ok(None)` (rolled back, nothing stored) when
    /// it no longer is. A stale head cannot store a row either: on PostgreSQL the INSERT
    /// takes its rows from the head's UPDATE, so it inserts none when that matched
    /// nothing; on SQLite (one writer at a time) their positions are taken, the log having
    /// no gaps, so the INSERT fails with a unique violation ([`StoreError::Conflict`]),
    /// also rolled back.
    ///
    /// `recorded_at` is read before the lock, but after the hint: the hint is a commit of
    /// this process, and the append succeeds only if nothing committed after it, so times
    /// still never decrease along positions (`--as-recorded-at` relies on it).
    async fn append_after(
        &self,
        connection: &mut AnyConnection,
        head: &LogHead,
        events: &[NewEvent],
        observe: bool,
    ) -> Result<Option<Vec<StoredEvent>>, StoreError> {
        let recorded_at = now_utc();
        let rows = Rows::New {
            events,
            recorded_at: &recorded_at,
        };
        let (tx, first) = futures::join!(Connection::begin(connection), async {
            rows.first_chunk(head)
        });
        let mut tx = tx?;
        let changed = insert_rows_and_head(&mut tx, self.backend(), rows, first, head, true).await;
        match changed {
            Ok(Some(stored)) => self.observe_and_commit(tx, stored, observe).await.map(Some),
            Ok(None) | Err(StoreError::Conflict) => {
                tx.rollback().await?;
                changed.map(|_| None)
            }
            Err(e) => Err(e),
        }
    }

    /// The rest of an append: the observer's work in a savepoint (when `observe`), the
    /// commit, the head noted for the next append and the observer told.
    async fn observe_and_commit(
        &self,
        mut tx: sqlx::Transaction<'_, Any>,
        stored: Vec<StoredEvent>,
        observe: bool,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let observer = if observe { self.observer.get() } else { None };
        if let Some(observer) = &observer {
            let mut observed = ObservedTx::new(&mut tx);
            if let Err(e) = observer.appended(&mut observed, &stored).await {
                tracing::warn!(error = %e, "work in the append's transaction failed; the append commits without it");
                observed.roll_back().await?;
            }
        }
        tx.commit().await?;
        self.last_head.committed(self.backend(), &stored);
        if let Some(observer) = &observer {
            observer.committed(&stored);
        }
        Ok(stored)
    }

    /// Appends events that already carry positions, times and hashes (`load-events`). The
    /// chain must continue the current head exactly.
    pub async fn append_verbatim(&self, events: &[StoredEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
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
        let after = LogHead {
            position: new_head - count,
            hash: events[0].prev_hash.clone(),
        };
        let rows = Rows::Verbatim(events);
        let first = rows.first_chunk(&after);
        insert_rows_and_head(&mut tx, self.backend(), rows, first, &after, false).await?;
        tx.commit().await?;
        self.last_head.committed(self.backend(), events);
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
    /// copied once, from the row into the event. The events are read as a replay needs them
    /// ([`REPLAY_COLUMNS`]): `document_number`, `source_line` and `clause` come back `None`,
    /// `aggregate_type`, `prev_hash` and `hash` empty, `sequence` 0;
    /// [`Database::events_after`] reads whole rows.
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
                    // As the read connections are (connections.rs): opened as the pool's are,
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

    /// Which of `aggregate_ids` (of `aggregate_type`) have events in the log: one query per
    /// [`IN_LIST_IDS`] ids, answered by the `(aggregate_type, aggregate_id, sequence)` index.
    pub async fn aggregates_in_log(
        &self,
        aggregate_type: &str,
        aggregate_ids: &[&str],
    ) -> Result<HashSet<String>, StoreError> {
        let mut found = HashSet::new();
        for ids in aggregate_ids.chunks(IN_LIST_IDS) {
            // Padded to one of a few sizes, so that the text is found in the statement cache.
            let ids = padded_list(ids);
            let sql = format!(
                "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = $1 \
                 AND aggregate_id IN ({})",
                numbered(2, ids.len())
            );
            let mut query = sqlx::query(&sql).bind(aggregate_type);
            for id in ids {
                query = query.bind(id);
            }
            for row in self.read_all(query).await? {
                found.insert(row.try_get("aggregate_id")?);
            }
        }
        Ok(found)
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

/// `events` stamped for the log: positions from `first_position` on, `recorded_at`, each
/// hash chained to the one before, starting from `prev_hash`.
fn chain(
    events: &[NewEvent],
    first_position: i64,
    mut prev_hash: String,
    recorded_at: &str,
) -> Vec<StoredEvent> {
    let mut stored = Vec::with_capacity(events.len());
    for (position, e) in (first_position..).zip(events) {
        let mut row = StoredEvent {
            position,
            aggregate_type: e.aggregate_type.clone(),
            aggregate_id: e.aggregate_id.clone(),
            sequence: e.sequence,
            event_type: e.event_type.clone(),
            event_version: e.event_version.clone(),
            payload: e.payload.clone(),
            metadata: e.metadata.clone(),
            recorded_at: recorded_at.to_owned(),
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
    stored
}

/// The head of the log: its last position and that event's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogHead {
    pub position: i64,
    pub hash: String,
}

/// The head as this process's last append left it, for the next append to chain its rows
/// to before it takes the lock ([`Database::append`]). A hint, never trusted: the append
/// moves the head row only where it still is this head. Shared by every clone of a
/// [`Database`].
///
/// On PostgreSQL several servers may append, and a stale hint costs the append a
/// statement and a rollback before it takes the general way. There the hint is offered
/// only while this process is the one appending: after an append that found the log
/// where this process's previous append had left it (its hint was right, or no other
/// writer had come between). Servers taking turns append the general way.
#[derive(Debug, Default, Clone)]
pub(crate) struct LastHead(std::sync::Arc<std::sync::Mutex<Last>>);

#[derive(Debug, Default)]
pub(crate) struct Last {
    /// The head of this process's furthest commit.
    head: Option<LogHead>,
    /// Whether the next append starts from it.
    offered: bool,
}

impl LastHead {
    fn lock(&self) -> std::sync::MutexGuard<'_, Last> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn expected(&self) -> Option<LogHead> {
        let last = self.lock();
        last.head.clone().filter(|_| last.offered)
    }

    /// Drops a hint found wrong: on PostgreSQL another writer came between, and it is
    /// offered again only after two appends of this process in a row.
    fn forget(&self) {
        *self.lock() = Last::default();
    }

    /// Notes the head an append of this process committed (`appended`: its rows), unless
    /// one further on is known already (two appends' commits may be noted out of order).
    fn committed(&self, backend: Backend, appended: &[StoredEvent]) {
        let (Some(first), Some(last)) = (appended.first(), appended.last()) else {
            return;
        };
        let mut known = self.lock();
        let previous = known.head.as_ref().map(|h| h.position);
        if previous.is_some_and(|p| p >= last.position) {
            return;
        }
        known.offered = backend == Backend::Sqlite || previous == Some(first.position - 1);
        known.head = Some(LogHead {
            position: last.position,
            hash: last.hash.clone(),
        });
    }
}

/// An append's rows: new events, chained (positions, time, hashes) a chunk at a time as
/// they are inserted, or rows that carry all of that already (`load-events`).
enum Rows<'a> {
    New {
        events: &'a [NewEvent],
        recorded_at: &'a str,
    },
    Verbatim(&'a [StoredEvent]),
}

impl<'a> Rows<'a> {
    fn len(&self) -> usize {
        match self {
            Rows::New { events, .. } => events.len(),
            Rows::Verbatim(rows) => rows.len(),
        }
    }

    /// The rows of the first INSERT, after `after`.
    fn first_chunk(&self, after: &LogHead) -> std::borrow::Cow<'a, [StoredEvent]> {
        let range = 0..self.len().min(INSERT_CHUNK);
        self.chunk(range, after.position + 1, after.hash.clone())
    }

    /// Rows `range`, the first of them at `position` after the hash `prev_hash`.
    fn chunk(
        &self,
        range: std::ops::Range<usize>,
        position: i64,
        prev_hash: String,
    ) -> std::borrow::Cow<'a, [StoredEvent]> {
        match self {
            Rows::New {
                events,
                recorded_at,
            } => chain(&events[range], position, prev_hash, recorded_at).into(),
            Rows::Verbatim(rows) => rows[range].into(),
        }
    }
}

/// Inserts `rows` after `after` (the position and hash they follow) and moves the head row
/// to their last, in the transaction of the append; returns the rows it chained (none for
/// [`Rows::Verbatim`]). `first` is [`Rows::first_chunk`], which the caller may make while
/// it begins the transaction. With `claim`, the head row is also moved from `after` to the
/// last row's position, only where it still is `after`; `Ok(None)` when it was not
/// (nothing to commit then). Without, the head's position was moved already (`UPDATE …
/// RETURNING`); a head row that is not there is [`StoreError::Corrupt`].
///
/// The rows go [`INSERT_CHUNK`] to a statement. While the database inserts one chunk, this
/// task chains (hashes) the next: a bulk batch of 8 000 events took ~16 ms to hash before
/// its first INSERT could go, time the database waited (BENCHMARKS.md, session 32). So the
/// head row's hash, known only once the last row is hashed, is set in the statement of the
/// last INSERT; the claim on its position goes in the statement of the first, so that on
/// PostgreSQL an append that starts from a hint takes the head row's lock before it
/// inserts any row: a row inserted before it could make another server's append, which
/// holds that lock and inserts the same positions, wait for this one while this one waits
/// for the lock (a deadlock). Each of them rides on an INSERT ([`insert_rows`]): each
/// statement is a round trip, to the connection's worker thread on SQLite, to the server on
/// PostgreSQL. PostgreSQL's notify trigger fires on the hash's update only, once.
async fn insert_rows_and_head<'a>(
    tx: &mut sqlx::Transaction<'_, Any>,
    backend: Backend,
    rows: Rows<'a>,
    first: std::borrow::Cow<'a, [StoredEvent]>,
    after: &LogHead,
    claim: bool,
) -> Result<Option<Vec<StoredEvent>>, StoreError> {
    let count = rows.len();
    let last_position = after.position + count as i64;
    let mut chained = Vec::with_capacity(match rows {
        Rows::New { .. } => count,
        Rows::Verbatim(_) => 0,
    });
    if count == 0 {
        return Ok(Some(chained));
    }
    let mut ranges = (first.len()..count)
        .step_by(INSERT_CHUNK)
        .map(|start| start..count.min(start + INSERT_CHUNK));
    let position_of = |range: &std::ops::Range<usize>| after.position + 1 + range.start as i64;
    let mut chunk = first;
    let mut is_first = true;
    loop {
        let next = ranges.next();
        let prev_hash = chunk.last().map(|e| e.hash.clone()).unwrap_or_default();
        let head = HeadUpdate {
            claim: (is_first && claim).then_some(Claim {
                to: last_position,
                from: after,
            }),
            hash: next.is_none().then_some(prev_hash.as_str()),
        };
        let head = (head.claim.is_some() || head.hash.is_some()).then_some(&head);
        let (changed, following) = futures::join!(
            insert_rows(tx, backend, &chunk, head),
            // Runs (to its end) once the INSERT has gone to the database.
            async {
                next.clone()
                    .map(|range| rows.chunk(range.clone(), position_of(&range), prev_hash.clone()))
            }
        );
        let changed = changed?;
        if let Some(head) = head {
            let moved = match backend {
                Backend::Sqlite => changed == chunk.len() as u64 + 1,
                // The INSERT is the statement and takes its rows from the head's UPDATE
                // (its WITH clause): all of them where that moved the head, else none.
                Backend::Postgres => changed == chunk.len() as u64,
            };
            if !moved {
                return match head.claim {
                    Some(_) => Ok(None),
                    None => Err(StoreError::Corrupt("the log's head row is missing".into())),
                };
            }
        }
        if let std::borrow::Cow::Owned(rows) = chunk {
            chained.extend(rows);
        }
        match following {
            Some(following) => chunk = following,
            None => return Ok(Some(chained)),
        }
        is_first = false;
    }
}

/// The head row moved from `from` to position `to`, where it still is `from`.
struct Claim<'a> {
    to: i64,
    from: &'a LogHead,
}

/// The UPDATE of the head row that rides on an append's INSERT: its claim on the
/// position, the last row's hash, or both.
struct HeadUpdate<'a> {
    claim: Option<Claim<'a>>,
    hash: Option<&'a str>,
}

impl HeadUpdate<'_> {
    /// Its SQL, its parameters numbered after the `before` ones of the statement it ends.
    fn sql(&self, backend: Backend, before: usize) -> String {
        let mut n = before;
        let mut p = || {
            n += 1;
            match backend {
                Backend::Sqlite => "?".to_owned(),
                Backend::Postgres => format!("${n}"),
            }
        };
        let mut sets = Vec::new();
        if self.claim.is_some() {
            sets.push(format!("position = {}", p()));
        }
        if self.hash.is_some() {
            sets.push(format!("hash = {}", p()));
        }
        let mut sql = format!("UPDATE event_log_head SET {} WHERE id = 1", sets.join(", "));
        if self.claim.is_some() {
            sql += &format!(" AND position = {} AND hash = {}", p(), p());
        }
        sql
    }

    fn bind<'q>(
        &self,
        mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>
    where
        Self: 'q,
    {
        if let Some(claim) = &self.claim {
            query = query.bind(claim.to);
        }
        if let Some(hash) = self.hash {
            query = query.bind(hash);
        }
        if let Some(claim) = &self.claim {
            query = query
                .bind(claim.from.position)
                .bind(claim.from.hash.as_str());
        }
        query
    }
}

/// One multi-row INSERT of `rows`, and `head` in the same statement when it is given: on
/// SQLite a statement list, on PostgreSQL (which takes one statement per prepared query)
/// the INSERT with the head's UPDATE as its `WITH` clause, joined to its rows, so that
/// the UPDATE runs (and locks the head row) before any row is inserted and no row is
/// inserted when it matched nothing — either way one round trip fewer. Returns the rows
/// changed: by both on SQLite, by the INSERT on PostgreSQL.
async fn insert_rows(
    tx: &mut sqlx::Transaction<'_, Any>,
    backend: Backend,
    rows: &[StoredEvent],
    head: Option<&HeadUpdate<'_>>,
) -> Result<u64, StoreError> {
    // Placeholders are written by hand: sqlx's QueryBuilder emits `?` for `Any`, which
    // PostgreSQL rejects.
    // SQLite: padded to one of a few sizes, so that the text is found in the statement
    // cache (PostgreSQL's appending connection keeps 1 000 statements).
    let size = match backend {
        Backend::Sqlite => statement_size(rows.len(), INSERT_CHUNK),
        Backend::Postgres => rows.len(),
    };
    let target = format!("events ({EVENT_COLUMNS})");
    let sql = match (head, backend) {
        (None, Backend::Sqlite) => padded_insert(&target, size, 15, ""),
        (Some(head), Backend::Sqlite) => format!(
            "{}; {}",
            padded_insert(&target, size, 15, ""),
            head.sql(backend, 0)
        ),
        (None, Backend::Postgres) => format!(
            "INSERT INTO {target} VALUES {}",
            placeholders(backend, rows.len(), 15)
        ),
        (Some(head), Backend::Postgres) => format!(
            "WITH head AS ({} RETURNING 1) INSERT INTO {target} \
             SELECT appended.* FROM head, (VALUES {}) AS appended",
            head.sql(backend, rows.len() * 15),
            placeholders(backend, rows.len(), 15)
        ),
    };
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
    for _ in rows.len() * 15..size * 15 {
        query = query.bind(None::<i64>);
    }
    if let Some(head) = head {
        query = head.bind(query);
    }
    Ok(query.execute(&mut **tx).await?.rows_affected())
}

/// How many rows (or list items) a statement carrying `n` of them (`n <= cap`) is written
/// for: the next power of two, at most `cap`. The rest are padding the statement ignores
/// ([`padded_insert`]'s NULL rows, a list's last item again). SQL whose text follows every
/// count is prepared anew almost every time: SQLite's statement cache (sqlx `Any` keeps
/// 100 per connection) held a notice's multi-row INSERTs and IN lists in few of their
/// thousands of shapes, and preparing them was 15 % of a per-notice ingest's instructions
/// (BENCHMARKS.md, session 26). From a few sizes each, the texts stay in the cache.
pub fn statement_size(n: usize, cap: usize) -> usize {
    n.max(1).next_power_of_two().min(cap).max(n)
}

/// SQLite: `INSERT INTO target SELECT * FROM (VALUES …) WHERE column1 IS NOT NULL tail`
/// for `size` rows of `width` anonymous parameters, `target` being `t (c1, …)`. Rows
/// whose first cell is NULL are not inserted: [`statement_size`]'s padding (every table's
/// first column is part of its key, never NULL). The `WHERE` also keeps a conflict clause
/// in `tail` from reading as a join's `ON`.
pub fn padded_insert(target: &str, size: usize, width: usize, tail: &str) -> String {
    format!(
        "INSERT INTO {target} SELECT * FROM (VALUES {}) WHERE column1 IS NOT NULL{tail}",
        placeholders(Backend::Sqlite, size, width)
    )
}

/// `list` with its last item repeated up to [`statement_size`]: an `IN` list that asks
/// for nothing more.
pub fn padded_list<T: Copy>(list: &[T]) -> Vec<T> {
    let mut padded = list.to_vec();
    if let Some(&last) = list.last() {
        padded.resize(statement_size(list.len(), usize::MAX), last);
    }
    padded
}

/// `$from, $from+1, …`: `n` numbered parameters, for an IN list (numbered on both
/// databases, so that one text serves both).
pub fn numbered(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
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

/// Scratch PostgreSQL databases for the tests below: the same code the integration tests
/// and the benches use.
#[cfg(test)]
#[path = "../../tests/common/pg.rs"]
mod scratch_pg;

#[cfg(test)]
mod tests {
    use super::*;

    /// The log's text columns read as the drivers' own `&str` would: the same text, and
    /// bytes that are not UTF-8 a decoding error (not a panic, not replaced characters),
    /// natively and through `Any`.
    #[tokio::test]
    async fn text_columns_are_checked_as_utf8() {
        let (dir, db) = crate::store::plans::fresh_sqlite().await;
        let sql = "SELECT '任免 ok' AS good, CAST(X'E4BBBB' AS TEXT) AS short, \
                   CAST(X'C328' AS TEXT) AS bad";
        let mut native = SqliteConnectOptions::new()
            .filename(dir.path().join("plans.db"))
            .connect()
            .await
            .unwrap();
        let row = sqlx::query(sql).fetch_one(&mut native).await.unwrap();
        assert_eq!(row.try_get::<Utf8Text<'_>, _>("good").unwrap().0, "任免 ok");
        assert_eq!(row.try_get::<Utf8Text<'_>, _>("short").unwrap().0, "任");
        let err = row.try_get::<Utf8Text<'_>, _>("bad").err().unwrap();
        assert!(matches!(err, sqlx::Error::ColumnDecode { .. }), "{err}");
        assert!(row.try_get::<&str, _>("bad").is_err(), "the driver agrees");
        let row = sqlx::query("SELECT '任免 ok' AS good")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(row.try_get::<Utf8Text<'_>, _>("good").unwrap().0, "任免 ok");
        assert!(sqlx::query(sql).fetch_one(db.pool()).await.is_err());
    }

    #[test]
    fn placeholders_are_numbered_row_by_row() {
        assert_eq!(
            placeholders(Backend::Postgres, 2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(placeholders(Backend::Postgres, 1, 1), "($1)");
        assert_eq!(placeholders(Backend::Sqlite, 2, 2), "(?, ?), (?, ?)");
        assert_eq!(numbered(3, 2), "$3, $4");
        assert_eq!(numbered(1, 0), "");
    }

    #[test]
    fn statements_are_written_for_a_few_sizes() {
        let sizes: Vec<usize> = (1..=INSERT_CHUNK)
            .map(|n| statement_size(n, INSERT_CHUNK))
            .collect();
        assert_eq!(&sizes[..9], [1, 2, 4, 4, 8, 8, 8, 8, 16]);
        for (n, size) in (1..=INSERT_CHUNK).zip(&sizes) {
            assert!(*size >= n && *size <= INSERT_CHUNK, "{n} -> {size}");
        }
        let mut distinct = sizes.clone();
        distinct.dedup();
        assert_eq!(distinct, [1, 2, 4, 8, 16, 32, 64, 128, 256, 500]);
        assert_eq!(statement_size(0, 10), 1);
        assert_eq!(padded_list(&["a", "b", "c"]), ["a", "b", "c", "c"]);
        assert_eq!(padded_list::<i64>(&[]), Vec::<i64>::new());
    }

    /// A padded INSERT writes its rows and none of its padding, and takes a conflict
    /// clause.
    #[tokio::test]
    async fn a_padded_insert_skips_its_null_rows() {
        let (_dir, db) = crate::store::plans::fresh_sqlite().await;
        let mut conn = db.pool().acquire().await.unwrap();
        sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY NOT NULL, v INTEGER)")
            .execute(&mut *conn)
            .await
            .unwrap();
        let sql = padded_insert("t (k, v)", 4, 2, " ON CONFLICT (k) DO NOTHING");
        let insert = |rows: &[(&'static str, i64)]| {
            let mut query = sqlx::query(&sql);
            for (k, v) in rows {
                query = query.bind(*k).bind(*v);
            }
            for _ in rows.len()..4 {
                query = query.bind(None::<&str>).bind(None::<i64>);
            }
            query
        };
        let done = insert(&[("a", 1), ("b", 2), ("c", 3)])
            .execute(&mut *conn)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 3);
        let done = insert(&[("c", 30), ("d", 4)])
            .execute(&mut *conn)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1, "c is there already");
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT k, v FROM t ORDER BY k")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        let expected = [("a", 1), ("b", 2), ("c", 3), ("d", 4)].map(|(k, v)| (k.to_string(), v));
        assert_eq!(rows, expected);
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

    fn notice(id: &str, events: i64) -> Vec<NewEvent> {
        (1..=events)
            .map(|sequence| NewEvent {
                aggregate_type: "notice".into(),
                aggregate_id: id.into(),
                sequence,
                event_type: "NoticeRecorded".into(),
                event_version: "1".into(),
                payload: format!("{{\"n\":{sequence}}}"),
                metadata: "{}".into(),
                actor: "test".into(),
                document_number: None,
                source_line: Some(sequence),
                clause: None,
            })
            .collect()
    }

    /// A new, empty database of each backend: SQLite in `dir`, and PostgreSQL on the
    /// server `RENMIAN_TEST_DATABASE_URL` names when it is set (its URL is returned to drop
    /// it afterwards).
    async fn fresh_databases(dir: &std::path::Path) -> Vec<(Database, Option<String>)> {
        let sqlite = format!("sqlite://{}", dir.join("log.db").display());
        let mut databases = vec![(Database::connect(&sqlite).await.unwrap(), None)];
        match std::env::var("RENMIAN_TEST_DATABASE_URL") {
            Ok(admin) => {
                let url = super::scratch_pg::create(&admin, "renmian_unit").await;
                databases.push((Database::connect(&url).await.unwrap(), Some(url)));
            }
            Err(_) => eprintln!("SKIPPED on PostgreSQL: RENMIAN_TEST_DATABASE_URL is not set"),
        }
        databases
    }

    async fn drop_database(url: &str) {
        let admin = std::env::var("RENMIAN_TEST_DATABASE_URL").unwrap();
        super::scratch_pg::drop(&admin, url).await;
    }

    #[test]
    fn a_scratch_database_url_keeps_the_server_and_the_query() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:5432/test",
                "postgres://postgres@127.0.0.1:5432/x",
            ),
            (
                "postgres://postgres@127.0.0.1:5432",
                "postgres://postgres@127.0.0.1:5432/x",
            ),
            (
                "postgres://h/test?sslmode=disable",
                "postgres://h/x?sslmode=disable",
            ),
            (
                "postgres:///test?host=/run/postgresql",
                "postgres:///x?host=/run/postgresql",
            ),
        ];
        for (admin, want) in cases {
            assert_eq!(super::scratch_pg::url_of(admin, "x"), want, "{admin}");
            assert_eq!(super::scratch_pg::database_of(want), "x", "{want}");
        }
    }

    /// The head an append starts from is only a hint: wrong in any way, the append stores
    /// nothing on it, takes the head row and still continues the chain. On PostgreSQL it
    /// is offered only after two appends of this process in a row, and then taken.
    #[tokio::test]
    async fn a_wrong_head_hint_changes_nothing_but_the_way_in() {
        let dir = tempfile::tempdir().unwrap();
        for (db, url) in fresh_databases(dir.path()).await {
            let backend = db.backend();
            let sqlite = backend == Backend::Sqlite;
            db.append(&notice("a", 3)).await.unwrap();
            assert_eq!(db.last_head.expected().is_some(), sqlite, "{backend:?}");
            db.append(&notice("a0", 1)).await.unwrap();
            let known = db
                .last_head
                .expected()
                .expect("two appends in a row offer it");
            assert_eq!(known.position, 4);
            let wrong = [
                LogHead {
                    hash: "f".repeat(64),
                    ..known.clone()
                },
                LogHead {
                    position: 2,
                    ..known.clone()
                },
                LogHead {
                    position: 40,
                    ..known.clone()
                },
            ];
            for (i, hint) in wrong.into_iter().enumerate() {
                let head = db.head_position().await.unwrap();
                *db.last_head.lock() = Last {
                    head: Some(hint),
                    offered: true,
                };
                let stored = db.append(&notice(&format!("b{i}"), 2)).await.unwrap();
                let positions: Vec<i64> = stored.iter().map(|e| e.position).collect();
                assert_eq!(positions, [head + 1, head + 2], "{backend:?} hint {i}");
                let noted = db.last_head.lock().head.clone().unwrap();
                assert_eq!(noted.position, head + 2);
                assert_eq!(db.last_head.expected().is_some(), sqlite);
            }
            if !sqlite {
                db.append(&notice("b3", 1)).await.unwrap();
            }
            let before = db.head_position().await.unwrap();
            // And right, it is the way in that takes no head row first (and stays offered,
            // which it would not after a miss).
            let stored = db.append(&notice("c", 4)).await.unwrap();
            assert_eq!(stored[0].position, before + 1);
            assert_eq!(
                db.last_head.expected().map(|h| h.position),
                Some(before + 4),
                "{backend:?}: the hint was taken"
            );
            let log = db.events_after(0, 100).await.unwrap();
            assert_eq!(log.len() as i64, before + 4);
            assert_eq!(&log[before as usize..], &stored[..]);
            assert!(db.verify().await.unwrap().is_intact());
            // A conflict is still reported as one.
            assert!(matches!(
                db.append(&notice("c", 1)).await,
                Err(StoreError::Conflict)
            ));
            assert_eq!(db.head_position().await.unwrap(), before + 4);
            // An append of several INSERTs (the head moves with the first) from a right
            // hint, then from a stale one.
            let big = (INSERT_CHUNK * 2 + 7) as i64;
            db.append(&notice("d", 1)).await.unwrap();
            db.append(&notice("e", 1)).await.unwrap();
            let head = db.head_position().await.unwrap();
            assert!(db.last_head.expected().is_some(), "{backend:?}");
            let stored = db.append(&notice("f", big)).await.unwrap();
            assert_eq!(stored[0].position, head + 1);
            assert_eq!(
                db.last_head.expected().map(|h| h.position),
                Some(head + big)
            );
            let stale = db.last_head.expected().unwrap();
            db.append(&notice("g", 1)).await.unwrap();
            *db.last_head.lock() = Last {
                head: Some(stale),
                offered: true,
            };
            let stored = db.append(&notice("h", big)).await.unwrap();
            assert_eq!(stored[0].position, head + big + 2);
            assert_eq!(db.head_position().await.unwrap(), head + 2 * big + 1);
            assert!(db.verify().await.unwrap().is_intact());
            db.close().await;
            if let Some(url) = url {
                drop_database(&url).await;
            }
        }
    }

    /// PostgreSQL: an append of several INSERTs claims the head row with the first and sets
    /// its hash with the last; the notify trigger fires on the hash, so each append is
    /// announced once, with its own head, whichever way it came in.
    #[tokio::test]
    async fn an_append_of_several_inserts_is_announced_once() {
        let dir = tempfile::tempdir().unwrap();
        for (db, url) in fresh_databases(dir.path()).await {
            let Some(mut listener) = db.listen_for_appends().await.unwrap() else {
                continue;
            };
            let big = (INSERT_CHUNK * 2 + 7) as i64;
            // From no hint (the first append), then from a right one (the third).
            db.append(&notice("a", big)).await.unwrap();
            db.append(&notice("b", 1)).await.unwrap();
            assert!(db.last_head.expected().is_some());
            db.append(&notice("c", big)).await.unwrap();
            let mut heads = Vec::new();
            while let Ok(signal) =
                tokio::time::timeout(std::time::Duration::from_millis(500), listener.next()).await
            {
                heads.push(signal);
            }
            use crate::store::AppendSignal::Appended;
            assert_eq!(
                heads,
                [Appended(big), Appended(big + 1), Appended(2 * big + 1)]
            );
            assert!(db.verify().await.unwrap().is_intact());
            db.close().await;
            if let Some(url) = url {
                drop_database(&url).await;
            }
        }
    }

    /// Work in an append's transaction that waits on `gate` while it is closed.
    struct Stalling {
        gate: std::sync::atomic::AtomicBool,
    }

    impl crate::store::AppendObserver for Stalling {
        fn appended<'a, 't, 'c>(
            &'a self,
            _tx: &'a mut crate::store::ObservedTx<'t, 'c>,
            _events: &'a [StoredEvent],
        ) -> futures::future::BoxFuture<'a, Result<(), StoreError>>
        where
            't: 'a,
            'c: 'a,
        {
            Box::pin(async move {
                while self.gate.load(std::sync::atomic::Ordering::SeqCst) {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                Ok(())
            })
        }
    }

    /// Appends run on one connection of their own, which an append gives back when it ends
    /// (committed, or refused without harm to the connection) and takes with it when its
    /// future is dropped half-way: the next append opens another, finds nothing of the cut
    /// one in the log (its transaction died with its connection) and continues the chain.
    #[tokio::test]
    async fn an_append_cut_short_takes_the_appending_connection_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("log.db").display());
        let db = Database::connect(&url).await.unwrap();
        db.append(&notice("a", 2)).await.unwrap();
        assert_eq!(
            db.writer.idle_count(),
            1,
            "a committed append gives it back"
        );
        assert!(matches!(
            db.append(&notice("a", 1)).await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(db.writer.idle_count(), 1, "so does a refused one");

        let stalling = std::sync::Arc::new(Stalling {
            gate: std::sync::atomic::AtomicBool::new(true),
        });
        let observer: std::sync::Arc<dyn crate::store::AppendObserver> = stalling.clone();
        db.observe_appends(std::sync::Arc::downgrade(&observer));
        let cut = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            db.append(&notice("b", 3)),
        )
        .await;
        assert!(cut.is_err(), "the append was still in its transaction");
        assert_eq!(db.writer.idle_count(), 0, "its connection is not reused");

        stalling
            .gate
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let stored = db.append(&notice("c", 2)).await.unwrap();
        assert_eq!(
            stored[0].position, 3,
            "nothing of the cut append was stored"
        );
        assert_eq!(db.writer.idle_count(), 1);
        let log = db.events_after(0, 100).await.unwrap();
        let ids: Vec<&str> = log.iter().map(|e| e.aggregate_id.as_str()).collect();
        assert_eq!(ids, ["a", "a", "c", "c"]);
        assert!(db.verify().await.unwrap().is_intact());
        db.close().await;
    }

    /// Appends that come together take turns on the appending connection, in one process,
    /// and every one of them lands: positions without gaps, one chain.
    #[tokio::test]
    async fn concurrent_appends_take_turns_on_one_connection() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("log.db").display());
        let db = Database::connect(&url).await.unwrap();
        let appends = (0..16).map(|i| {
            let db = db.clone();
            tokio::spawn(async move { db.append(&notice(&format!("n{i}"), 3)).await })
        });
        for append in futures::future::join_all(appends).await {
            append.unwrap().unwrap();
        }
        assert_eq!(db.writer.idle_count(), 1, "one connection served them all");
        let log = db.events_after(0, 100).await.unwrap();
        let positions: Vec<i64> = log.iter().map(|e| e.position).collect();
        assert_eq!(positions, (1..=48).collect::<Vec<_>>());
        assert!(db.verify().await.unwrap().is_intact());
        db.close().await;
    }
}
