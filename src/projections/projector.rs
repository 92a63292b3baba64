//! Applies stored events to the read models.
//!
//! Each catch-up transaction starts by updating the checkpoint row: on PostgreSQL that row
//! lock serialises projectors across processes, on SQLite the write lock does. The events
//! read after it are therefore applied exactly once, in position order.
//!
//! Decisions are taken on a [`Model`] (keyed lookups in memory, writes buffered and written
//! in bulk; see `model.rs`). A model is kept between catch-ups while the checkpoint is where
//! it left it, so a busy server's ingest reads the read models only for keys it has not
//! seen; a rebuild starts from empty tables and never reads them.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{Months, NaiveDate};
use cqrs_es::persist::EventUpcaster;
use futures::future::BoxFuture;
use sqlx::postgres::PgPool;
use sqlx::{Any, FromRow, Postgres, Row, Transaction};
use tokio::task::JoinHandle;

use super::model::{
    execute_on, on_conn, Cell, Conn, Model, NoticeContext, NoticeRun, TenureRow, Writes,
};
use super::queries::NoticeWarning;
use super::shadow::{drop_orphaned_stages, Shadow, Staged, SWAP_WAIT};
use crate::domain::events::{FactWithdrawn, NoticeCorrected, PersonSplit, PersonsMerged};
use crate::domain::posts::is_head_post;
use crate::domain::{NoticeRecorded, NoticeRevoked, PostFact, RegistryEvent};
use crate::notice::EventKind;
use crate::store::{
    repository::to_serialized, AppendObserver, Backend, CommitStamp, Database, ObservedTx,
    StoreError, StoredEvent,
};

/// Name of the registry projection's row in `projection_checkpoint`.
pub const CHECKPOINT: &str = "registry";

/// Connections a staged rebuild writes through (`shadow.rs`'s [`Staged`]): as many as this
/// machine has cores, within these bounds — the rows are formatted here, and the server
/// takes each connection's in a backend of its own. (On two cores, with the server on the
/// same machine, 2, 3 and 4 wrote a 1M load's rows in the same 10.4–11.1 s.)
const STAGE_WRITERS: std::ops::RangeInclusive<usize> = 2..=4;

/// Last position applied to the read models, read on a read connection.
pub(crate) async fn read_checkpoint(db: &Database) -> Result<i64, StoreError> {
    let row = db
        .read_one(
            sqlx::query("SELECT position FROM projection_checkpoint WHERE name = $1")
                .bind(CHECKPOINT),
        )
        .await?;
    Ok(row.try_get("position")?)
}

/// Checkpoint reads remembered with the commit stamp taken before each (SQLite,
/// [`Database::commit_stamp`]): while the stamp is still that one, nothing has committed
/// since, by any process, so the read stands for one started now and costs no statement.
/// Shared by [`Queries::exactly`](super::Queries::exactly) and the lookups model's fence.
#[derive(Debug, Default)]
pub(crate) struct CheckpointReads(Mutex<Option<(Option<CommitStamp>, i64)>>);

impl CheckpointReads {
    /// Reads the checkpoint and remembers it, unless a further one is remembered already
    /// (two reads may finish out of order).
    pub(crate) async fn read(&self, db: &Database) -> Result<i64, StoreError> {
        // Taken before the statement starts: the checkpoint read is at least as recent as
        // the stamp.
        let stamp = db.commit_stamp();
        let checkpoint = read_checkpoint(db).await?;
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|(_, furthest)| furthest <= checkpoint) {
            *last = Some((stamp, checkpoint));
        }
        Ok(checkpoint)
    }

    /// The remembered checkpoint, when the commit stamp now is the one taken before it was
    /// read.
    pub(crate) fn unchanged(&self, db: &Database) -> Option<i64> {
        let now = db.commit_stamp()?;
        match *self.0.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((Some(then), checkpoint)) if then == now => Some(checkpoint),
            _ => None,
        }
    }

    /// The furthest checkpoint read so far.
    pub(crate) fn furthest(&self) -> Option<i64> {
        let last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        last.map(|(_, checkpoint)| checkpoint)
    }
}

/// Events read per query during catch-up and rebuild (and applied per transaction during
/// catch-up).
const BATCH: i64 = 2000;

/// Rows a rebuild buffers before writing them. What is buffered when the replay ends is
/// written after it, with nothing to overlap (1M events on SQLite: 16 000 instead of 50 000
/// took ~0.6 s off the rebuild's end, BENCHMARKS.md session 11).
const REBUILD_FLUSH_ROWS: usize = 16_000;

/// Read-model tables, in dependency order (also the export order).
pub const READ_MODEL_TABLES: &[&str] = &[
    "rm_notices",
    "rm_notice_warnings",
    "rm_organizations",
    "rm_jurisdictions",
    "rm_organization_aliases",
    "rm_persons",
    "rm_posts",
    "rm_tenures",
    "rm_ingest_requests",
];

#[derive(Clone)]
pub struct Projector {
    db: Database,
    upcasters: Upcasters,
    /// The model of the last committed batch, reused while the checkpoint has not moved.
    kept: Arc<Mutex<Option<Model>>>,
    /// The model of an append's projection, kept once that append has committed, and the
    /// receipts of that projection.
    appended: Arc<Mutex<Option<Projected>>>,
    /// Receipts of committed appends' projections, until their callers take them.
    receipts: Arc<Mutex<VecDeque<Receipt>>>,
    /// Log head when this process last refreshed PostgreSQL's statistics (or first saw the
    /// log); 0 before that. See [`Projector::keep_statistics_fresh`].
    analyzed_at: Arc<AtomicI64>,
    /// Events read per batch and rows buffered before a write, during a rebuild.
    rebuild_sizes: (i64, usize),
    /// Rows a [`Prebuild`] keeps in memory at most ([`PREBUILD_ROWS`]).
    prebuild_rows: usize,
    /// Bulk loads running in this process ([`Projector::bulk_load`]).
    bulk_loads: Arc<AtomicUsize>,
    /// PostgreSQL: how long a rebuild's swap waits for readers (`shadow.rs`).
    swap_wait: Duration,
}

/// A bulk load in progress: while one lives, the projector keeps models up to a larger
/// limit between projections (see [`Projector::bulk_load`]).
#[must_use = "the larger limit holds only while the guard lives"]
pub struct BulkLoad {
    projector: Projector,
}

impl Drop for BulkLoad {
    fn drop(&mut self) {
        if self.projector.bulk_loads.fetch_sub(1, Ordering::SeqCst) == 1 {
            // The last bulk load ended: back to the usual bound.
            let mut kept = self
                .projector
                .kept
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if kept.as_ref().is_some_and(|m| !m.worth_keeping(false)) {
                *kept = None;
            }
        }
    }
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("db", &self.db.display_url())
            .field("upcasters", &self.upcasters.len())
            .finish()
    }
}

/// Decodes a stored event into the domain event, upcasting old versions first.
pub fn decode_event(
    event: &StoredEvent,
    upcasters: &[Box<dyn EventUpcaster>],
) -> Result<RegistryEvent, StoreError> {
    let corrupt = |e: &dyn std::fmt::Display| {
        StoreError::Corrupt(format!("position {}: {e}", event.position))
    };
    // The common case, a current event version: straight from the stored text, without the
    // detour through `serde_json::Value` (and the metadata) that upcasting needs.
    if !upcasters
        .iter()
        .any(|u| u.can_upcast(&event.event_type, &event.event_version))
    {
        return serde_json::from_str(&event.payload).map_err(|e| corrupt(&e));
    }
    let mut serialized = to_serialized(event).map_err(|e| corrupt(&e))?;
    for upcaster in upcasters {
        if upcaster.can_upcast(&serialized.event_type, &serialized.event_version) {
            serialized = upcaster.upcast(serialized);
        }
    }
    serde_json::from_value(serialized.payload).map_err(|e| corrupt(&e))
}

impl Projector {
    pub fn new(db: Database) -> Self {
        Self {
            db,
            upcasters: Arc::new(crate::store::upcasters()),
            kept: Arc::new(Mutex::new(None)),
            appended: Arc::new(Mutex::new(None)),
            receipts: Arc::new(Mutex::new(VecDeque::new())),
            analyzed_at: Arc::new(AtomicI64::new(0)),
            rebuild_sizes: (BATCH, REBUILD_FLUSH_ROWS),
            prebuild_rows: PREBUILD_ROWS,
            bulk_loads: Arc::new(AtomicUsize::new(0)),
            swap_wait: SWAP_WAIT,
        }
    }

    /// Last position applied to the read models.
    pub async fn checkpoint(&self) -> Result<i64, StoreError> {
        read_checkpoint(&self.db).await
    }

    /// The checkpoint and the log's head, read together (one statement, one snapshot).
    pub async fn checkpoint_and_head(&self) -> Result<(i64, i64), StoreError> {
        let row = self.db.read_one(sqlx::query(
            "SELECT c.position AS checkpoint, h.position AS head FROM projection_checkpoint c, \
             event_log_head h WHERE c.name = $1 AND h.id = 1",
        )
        .bind(CHECKPOINT)
        )
        .await?;
        Ok((row.try_get("checkpoint")?, row.try_get("head")?))
    }

    /// Applies every event after the checkpoint. Returns the new checkpoint.
    pub async fn catch_up(&self) -> Result<i64, StoreError> {
        // Reading first keeps the common case (appends project themselves, see
        // [`AppendObserver`]) free of a write transaction.
        let (checkpoint, head) = self.checkpoint_and_head().await?;
        if checkpoint >= head {
            return Ok(checkpoint);
        }
        loop {
            let mut tx = self.db.pool().begin().await?;
            let checkpoint = lock_checkpoint(&mut Conn::of(&mut tx)).await?;
            // A model that fails half-way is dropped with this future: it may believe
            // writes the rollback undid.
            let mut model = self.take_model(&mut tx, checkpoint, None).await?;
            let events = events_after(&mut tx, checkpoint).await?;
            let Some(last) = events.last().map(|e| e.position) else {
                tx.commit().await?;
                self.keep_model(model);
                return Ok(checkpoint);
            };
            let decoded = decode_events(&events, &self.upcasters)?;
            let mut conn = Conn::of(&mut tx);
            self.apply_events(&mut conn, &mut model, (&events, &decoded), After::Unknown)
                .await?;
            model.flush(&mut conn).await?;
            move_checkpoint(&mut conn, last).await?;
            tx.commit().await?;
            self.keep_model(model);
            tracing::debug!(checkpoint = last, "projection caught up a batch");
        }
    }

    /// Projects an append's events inside its transaction when the read models are
    /// caught up to just before them; otherwise leaves them to [`Projector::catch_up`],
    /// which applies events in order.
    async fn project_appended(
        &self,
        observed: &mut ObservedTx<'_, '_>,
        events: &[StoredEvent],
    ) -> Result<(), StoreError> {
        // A model left by an append that never committed must never be kept.
        *self.appended.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(());
        };
        // The checkpoint moves to the append's last event only if it stands just before its
        // first, and is locked by that (a catch-up of another process waits for the
        // commit); the savepoint opens in the same round trip. Rolled back with the
        // savepoint if the projection fails.
        let checkpoint = first.position - 1;
        let moved = observed
            .query_text(&format!(
                "UPDATE projection_checkpoint SET position = {} \
                 WHERE name = '{CHECKPOINT}' AND position = {checkpoint} RETURNING position",
                last.position
            ))
            .await?;
        if moved == 0 {
            return Ok(());
        }
        let tx = observed.transaction().await?;
        // The hash chain names the checkpoint's hash: the first event's `prev_hash`.
        let mut model = self
            .take_model(tx, checkpoint, Some(first.prev_hash.as_str()))
            .await?;
        // The read models stand at the checkpoint, locked, and this append's first event
        // begins its own commit: a fresh model knows the notice's run from its start and
        // need not read back what the commit appointed (two statements per notice, the
        // commit's first position and its tenures, whenever no model was kept, as at 1M
        // events, where the model outgrows the limit).
        model.stands_after(checkpoint);
        // The append holds the log head: nothing follows its last event yet.
        let decoded = decode_events(events, &self.upcasters)?;
        let mut conn = Conn::of(tx);
        self.apply_events(&mut conn, &mut model, (events, &decoded), After::Nothing)
            .await?;
        let receipts = Receipt::of_each(events, &decoded, &model);
        model.flush(&mut conn).await?;
        // Kept only once the append commits (`committed`): a model that believes writes a
        // failed or cancelled commit undid must never be reused, nor a receipt of them.
        *self.appended.lock().unwrap_or_else(|e| e.into_inner()) = Some((model, receipts));
        Ok(())
    }

    /// The receipt of the committed append of `sequences` (in order) of notice
    /// `aggregate_id`, if that append recorded the notice and projected it in its own
    /// transaction; taken once. Without one, the caller reads the read models.
    pub fn take_receipt(&self, aggregate_id: &str, sequences: &[usize]) -> Option<Receipt> {
        let mut receipts = self.receipts.lock().unwrap_or_else(|e| e.into_inner());
        let index = receipts.iter().position(|r| {
            r.aggregate_id == aggregate_id
                && r.events
                    .iter()
                    .map(|(sequence, _)| *sequence)
                    .eq(sequences.iter().copied())
        })?;
        receipts.remove(index)
    }

    /// Drops every read model and replays the whole log in one transaction: readers see the
    /// old read models until the new ones are complete.
    ///
    /// The rows are written behind the replay: once a batch of events has buffered
    /// [`REBUILD_FLUSH_ROWS`] rows, a task of its own writes them on the transaction's
    /// connection while the replay goes on applying the next events in memory (a complete
    /// model reads nothing), so the database's work and renmian's overlap on two cores. An
    /// event that needs SQL ([`applies_in_memory`]) waits for that write and is applied on
    /// the connection. At most one write is in flight, and writes run in the order taken.
    /// On PostgreSQL the transaction is on the driver's own connection ([`RebuildTx`]) and
    /// the rows go in with `COPY`.
    pub async fn rebuild(&self) -> Result<i64, StoreError> {
        self.rebuild_from(None)
            .await
            .map(|rebuilt| rebuilt.unwrap_or(0))
    }

    /// A rebuild whose replay is done ([`Prebuild`]): it writes the replay's rows as
    /// [`Projector::rebuild`] writes its own. `Ok(None)` (nothing changed) when the log's
    /// event at the replay's last position is not the one replayed, so the replay is not
    /// of the log's first events, or (PostgreSQL, whose rows are written before the
    /// checkpoint is locked) when the read models stand past the replay's last position;
    /// the caller rebuilds from the log instead.
    pub async fn rebuild_prebuilt(&self, prebuilt: Prebuilt) -> Result<Option<i64>, StoreError> {
        self.rebuild_from(Some(prebuilt)).await
    }

    /// [`Projector::rebuild`], replaying the log or taking `prebuilt`'s replay.
    async fn rebuild_from(&self, prebuilt: Option<Prebuilt>) -> Result<Option<i64>, StoreError> {
        if self.db.backend() == Backend::Postgres {
            drop_orphaned_stages(&self.db).await?;
        }
        match prebuilt {
            Some(prebuilt) if self.db.backend() == Backend::Postgres => {
                // Checked before the writing, and again under the checkpoint's lock.
                let mut conn = self.db.pool().acquire().await?;
                let replayed = log_has(
                    &mut Conn::of(&mut conn),
                    prebuilt.checkpoint,
                    &prebuilt.hash,
                )
                .await?;
                drop(conn);
                if !replayed {
                    return Ok(None);
                }
                let staged = Staged::create(&self.db).await?;
                let rebuilt = self.rebuild_staged(&staged, prebuilt).await;
                match rebuilt {
                    Ok(Some(_)) => staged.release().await,
                    _ => staged.discard().await,
                }
                rebuilt
            }
            prebuilt => self.rebuild_in_place(prebuilt).await,
        }
    }

    /// PostgreSQL: a rebuild of `prebuilt`'s replay written into `staged`'s tables by
    /// several connections, then swapped in (`shadow.rs`). `Ok(None)` as
    /// [`Projector::rebuild_prebuilt`], and when the read models stand past the replay
    /// once it is written; `staged` is the caller's to release or discard.
    async fn rebuild_staged(
        &self,
        staged: &Staged,
        prebuilt: Prebuilt,
    ) -> Result<Option<i64>, StoreError> {
        let mut times = RebuildTimes::start();
        let Prebuilt {
            mut model,
            mut writes,
            checkpoint,
            hash,
        } = prebuilt;
        writes.push(model.take_final_writes());
        let writers = std::thread::available_parallelism()
            .map_or(*STAGE_WRITERS.start(), |n| n.get())
            .clamp(*STAGE_WRITERS.start(), *STAGE_WRITERS.end());
        times
            .writing(staged.write(&self.db, &writes, writers))
            .await?;
        drop_aside(writes);
        times.replayed();
        let mut tx = RebuildTx::begin(&self.db).await?;
        // The read models were not locked while the rows were written: if another process
        // projected past the replay meanwhile, these tables would take every reader back to
        // an older state. The caller rebuilds from the log instead, under the lock.
        let projected = lock_checkpoint(&mut tx.conn()).await?;
        if projected > checkpoint || !log_has(&mut tx.conn(), checkpoint, &hash).await? {
            return Ok(None);
        }
        let RebuildTx::Postgres(pg, _) = &mut tx else {
            return Err(StoreError::Corrupt(
                "a staged rebuild outside PostgreSQL (a bug)".into(),
            ));
        };
        staged.swap(pg, self.swap_wait).await?;
        times.finished();
        move_checkpoint(&mut tx.conn(), checkpoint).await?;
        let keep = model.worth_keeping(false) && checkpoint > 0;
        if keep {
            model.stands_at(&hash);
        }
        tx.commit().await?;
        times.committed();
        self.keep_rebuilt(model, keep);
        // No `VACUUM` after: the staged tables were vacuumed before the swap.
        times.report(checkpoint, true);
        Ok(Some(checkpoint))
    }

    /// [`Projector::rebuild_from`] in the rebuild's own transaction: on SQLite the live
    /// tables emptied and written again; on PostgreSQL new tables made in the transaction.
    async fn rebuild_in_place(
        &self,
        prebuilt: Option<Prebuilt>,
    ) -> Result<Option<i64>, StoreError> {
        let (batch, flush_rows) = self.rebuild_sizes;
        let mut tx = RebuildTx::begin(&self.db).await?;
        lock_checkpoint(&mut tx.conn()).await?;
        if let Some(prebuilt) = &prebuilt {
            // On SQLite nothing can be appended while this transaction holds the write lock;
            // on PostgreSQL later events are caught up afterwards, as after any rebuild.
            if !log_has(&mut tx.conn(), prebuilt.checkpoint, &prebuilt.hash).await? {
                return Ok(None);
            }
        }
        // PostgreSQL: new tables beside the live ones, swapped in at the end (shadow.rs).
        // SQLite: the live tables emptied and their secondary indexes dropped, the writer's
        // first job: the replay needs none of it until its first rows are written (1M
        // events: ~1 s of deletes, BENCHMARKS.md session 30).
        let fresh = match &mut tx {
            RebuildTx::Postgres(pg, _) => Fresh::Tables(Shadow::create(pg).await?),
            RebuildTx::Any(any) => Fresh::Emptied(secondary_indexes(any).await?),
        };
        let mut writer = WriteBehind::new(tx);
        if let Fresh::Emptied(indexes) = &fresh {
            let names: Vec<String> = indexes.iter().map(|(name, _)| name.clone()).collect();
            writer.spawn(Box::new(move |tx| {
                Box::pin(async move { clear_read_models(&mut tx.conn(), &names).await })
            }));
        }
        let mut times = RebuildTimes::start();
        let prebuilt_replay = prebuilt.is_some();
        let (mut model, checkpoint, batches) = match prebuilt {
            Some(prebuilt) => {
                for writes in prebuilt.writes {
                    times.writing(writer.write(writes)).await?;
                }
                (prebuilt.model, prebuilt.checkpoint, None)
            }
            None => {
                let (model, checkpoint, batches) = self
                    .replay_log(&mut writer, &mut times, batch, flush_rows)
                    .await?;
                (model, checkpoint, Some(batches))
            }
        };
        let tx = times.writing(writer.transaction()).await?;
        times.replayed();
        model.flush(&mut tx.conn()).await?;
        match (fresh, &mut *tx) {
            (Fresh::Emptied(indexes), tx) => {
                let mut conn = tx.conn();
                for (_, definition) in &indexes {
                    sqlx::query(definition).execute(conn.get()?).await?;
                }
            }
            (Fresh::Tables(shadow), RebuildTx::Postgres(pg, _)) => {
                shadow.swap(pg, self.swap_wait).await?
            }
            (Fresh::Tables(_), RebuildTx::Any(_)) => {
                return Err(StoreError::Corrupt(
                    "a rebuild made new tables outside PostgreSQL (a bug)".into(),
                ))
            }
        }
        times.finished();
        move_checkpoint(&mut tx.conn(), checkpoint).await?;
        let keep = model.worth_keeping(false) && checkpoint > 0;
        if keep {
            // The replay read no hashes: the kept model is recognised by its last one.
            let hash = event_hash(&mut tx.conn(), checkpoint).await?;
            model.stands_at(&hash);
        }
        writer.commit().await?;
        times.committed();
        if let Some(batches) = batches {
            batches.finish().await;
        }
        // SQLite: the rebuild wrote every read model again into the write-ahead log, in
        // one transaction (433 MB seen at 1M events). Its commit copied that into the file
        // unless a reader held an older snapshot (then reads look pages up in the log
        // until the next commit), and SQLite reuses a log file but never shrinks it: it
        // stayed that size beside the database for as long as the database was open.
        self.db
            .empty_wal_best_effort(REBUILT_CHECKPOINT_WAIT, "after the rebuild")
            .await;
        self.keep_rebuilt(model, keep);
        // PostgreSQL: the dead row versions its UPDATEs left vacuumed away (notices' fact
        // counts, tenure versions closed after they were written: few, since a rebuild
        // holds open versions back; the rows it copied are frozen and visible to all
        // already). The tables were analysed before the swap (`shadow.rs`), and a rebuild
        // does not change the log.
        vacuum(&self.db, Upkeep::AfterRebuild).await;
        times.report(checkpoint, prebuilt_replay);
        Ok(Some(checkpoint))
    }

    /// A rebuild's replay of the whole log, its rows written behind it on `writer`'s
    /// transaction: the model, the last position replayed and the reader, to finish.
    async fn replay_log(
        &self,
        writer: &mut WriteBehind,
        times: &mut RebuildTimes,
        batch: i64,
        flush_rows: usize,
    ) -> Result<(Model, i64, ReadAhead), StoreError> {
        let mut model = Model::rebuilding(self.db.backend());
        let mut checkpoint = 0;
        let mut batches = ReadAhead::start(self.db.clone(), batch, self.upcasters.clone());
        let mut next = times.reading(batches.next()).await?;
        while !next.0.is_empty() {
            let following = times.reading(batches.next()).await?;
            let (events, decoded) = std::mem::replace(&mut next, following);
            // A notice's events are committed together, and a batch ends where the log
            // ended when it was read: an empty next batch means nothing follows.
            let after = next.0.first().map_or(After::Nothing, After::Event);
            let batch = (events.as_slice(), decoded.as_slice());
            if decoded.iter().all(applies_in_memory) {
                self.apply_events(&mut Conn::none(), &mut model, batch, after)
                    .await?;
            } else {
                let tx = writer.transaction().await?;
                self.apply_events(&mut tx.conn(), &mut model, batch, after)
                    .await?;
            }
            checkpoint = events.last().map_or(checkpoint, |e| e.position);
            if model.buffered_rows() >= flush_rows {
                times.writing(writer.write(model.take_writes())).await?;
            }
        }
        Ok((model, checkpoint, batches))
    }

    /// Keeps a rebuild's `model` as the model of the last committed batch when `keep`, else
    /// lets it go; whatever is let go (it, or the model it replaces) is dropped aside
    /// ([`drop_aside`]).
    fn keep_rebuilt(&self, model: Model, keep: bool) {
        let (kept, unkept) = if keep {
            (Some(model), None)
        } else {
            (None, Some(model))
        };
        let replaced = std::mem::replace(
            &mut *self.kept.lock().unwrap_or_else(|e| e.into_inner()),
            kept,
        );
        drop_aside((replaced, unkept));
    }

    /// Starts replaying, alongside a bulk load into an empty registry, the batches it
    /// appends without projecting ([`Prebuild::appended`]), into a rebuild's model in
    /// memory; [`Projector::rebuild_prebuilt`] then writes what it replayed.
    pub fn prebuild(&self) -> Prebuild {
        let (batches, mut received) = tokio::sync::mpsc::unbounded_channel::<Vec<StoredEvent>>();
        let (done, replay) = tokio::sync::oneshot::channel();
        let (progress, cancel) = (
            Arc::new(AtomicI64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let projector = self.clone();
        let (replayed_to, cancelled) = (progress.clone(), cancel.clone());
        let replayed = async move {
            let (_, flush_rows) = projector.rebuild_sizes;
            let mut model = Model::rebuilding(projector.db.backend());
            let mut writes = Vec::new();
            let (mut rows, mut last) = (0, None);
            while let Some(events) = received.recv().await {
                let (Some(first), Some(end)) = (events.first(), events.last()) else {
                    continue;
                };
                if cancelled.load(Ordering::Relaxed) {
                    return None;
                }
                // The log's first events, gap-free: else this is not a rebuild's replay.
                let expected = last.as_ref().map_or(1, |(position, _)| position + 1);
                if first.position != expected {
                    return None;
                }
                let decoded = decode_events(&events, &projector.upcasters).ok()?;
                if !decoded.iter().all(applies_in_memory) || rows > projector.prebuild_rows {
                    return None;
                }
                // A batch holds whole notices: its last event ends one.
                let batch = (events.as_slice(), decoded.as_slice());
                projector
                    .apply_events(&mut Conn::none(), &mut model, batch, After::Nothing)
                    .await
                    .ok()?;
                last = Some((end.position, end.hash.clone()));
                replayed_to.store(end.position, Ordering::Relaxed);
                if model.buffered_rows() >= flush_rows {
                    rows += model.buffered_rows();
                    writes.push(model.take_writes());
                }
            }
            let (checkpoint, hash) = last?;
            Some(Prebuilt {
                model,
                writes,
                checkpoint,
                hash,
            })
        };
        // On a thread of its own that runs only when a core would otherwise idle
        // (`SCHED_IDLE`): the load's appends are its critical path, and a replay on a
        // runtime worker beside them slowed them by ~3 s of a 1M-event load's ~14 s on
        // two cores (BENCHMARKS.md, session 31). A replay that cannot start gives up.
        let spawned = std::thread::Builder::new()
            .name("renmian-prebuild".into())
            .spawn(move || {
                let _ = thread_priority::set_thread_priority_and_policy(
                    thread_priority::thread_native_id(),
                    thread_priority::ThreadPriority::Min,
                    thread_priority::ThreadSchedulePolicy::Normal(
                        thread_priority::NormalThreadSchedulePolicy::Idle,
                    ),
                );
                let _ = done.send(futures::executor::block_on(replayed));
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no thread for a bulk load's replay; it rebuilds at its end");
        }
        Prebuild {
            batches: Some(batches),
            replay,
            progress,
            cancel,
        }
    }

    /// Marks a bulk load (many appends in a row, `Registry::ingest_all`) until the guard
    /// is dropped: meanwhile a model of up to a few million entries is kept between
    /// projections instead of being dropped at about 100 000 and read back piecemeal by the
    /// next batch. When the last bulk load ends, a kept model over the usual limit is
    /// dropped.
    pub fn bulk_load(&self) -> BulkLoad {
        self.bulk_loads.fetch_add(1, Ordering::SeqCst);
        BulkLoad {
            projector: self.clone(),
        }
    }

    /// The same projector with other rebuild sizes: events read per batch and rows buffered
    /// before a write (tests use small ones to exercise batch boundaries and write-behind).
    pub fn with_rebuild_sizes(mut self, batch_events: i64, flush_rows: usize) -> Self {
        self.rebuild_sizes = (batch_events.max(1), flush_rows.max(1));
        self
    }

    /// The same projector with another bound on the rows a [`Prebuild`] keeps (tests).
    pub fn with_prebuild_rows(mut self, rows: usize) -> Self {
        self.prebuild_rows = rows;
        self
    }

    /// The same projector with another limit on how long a PostgreSQL rebuild waits for
    /// readers to let go of the live read models before it gives up (default
    /// [`SWAP_WAIT`]).
    pub fn with_swap_wait(mut self, wait: Duration) -> Self {
        self.swap_wait = wait;
        self
    }

    /// PostgreSQL: refreshes the planner's statistics and vacuums the read models, in the
    /// background, each time the log has doubled since this process last did, from
    /// [`ANALYZE_FROM_EVENTS`] events on; the first call only notes where the log stands.
    /// `head`: a position just appended and projected. Appends grow the tables from
    /// nothing, and with the statistics of nearly empty tables the planner keeps choosing
    /// sequential scans: a 1M-event bulk load with autovacuum off ran 40 004 scans of
    /// `rm_notices` reading 798M rows and took 482.8 s instead of 141.8 s (BENCHMARKS.md,
    /// session 5). Autovacuum may be off or late.
    pub fn keep_statistics_fresh(&self, head: i64) {
        if self.db.backend() != Backend::Postgres {
            return;
        }
        let seen = self.analyzed_at.load(Ordering::Relaxed);
        if seen == 0 {
            let _ = self.analyzed_at.compare_exchange(
                0,
                head.max(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            return;
        }
        if head < ANALYZE_FROM_EVENTS.max(seen.saturating_mul(2)) {
            return;
        }
        // One refresh per doubling, whoever gets here first.
        if self
            .analyzed_at
            .compare_exchange(seen, head, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            let db = self.db.clone();
            tokio::spawn(async move { vacuum(&db, Upkeep::Growing).await });
        }
    }

    /// The kept model if it stands at `checkpoint` (the same position and the same event
    /// there, by hash), else a fresh one that reads what it needs. `checkpoint_hash`: the
    /// checkpoint event's hash when the caller knows it (an append's first `prev_hash`),
    /// else it is read.
    async fn take_model(
        &self,
        tx: &mut Transaction<'_, Any>,
        checkpoint: i64,
        checkpoint_hash: Option<&str>,
    ) -> Result<Model, StoreError> {
        // Nothing projected yet: the read models are empty, and a new model knows it.
        let fresh = || {
            if checkpoint == 0 {
                Model::complete(self.db.backend())
            } else {
                Model::partial(self.db.backend())
            }
        };
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(model) = kept.filter(|m| m.last_position() == Some(checkpoint)) else {
            return Ok(fresh());
        };
        let hash: Option<String> = match checkpoint_hash {
            Some(hash) => Some(hash.to_string()),
            None => sqlx::query("SELECT hash FROM events WHERE position = $1")
                .bind(checkpoint)
                .fetch_optional(&mut **tx)
                .await?
                .map(|r| r.try_get("hash"))
                .transpose()?,
        };
        Ok(match hash {
            Some(hash) if model.last_hash() == Some(hash.as_str()) => model,
            _ => fresh(),
        })
    }

    /// Keeps a committed model for the next catch-up, unless a later one is kept already.
    fn keep_model(&self, model: Model) {
        let bulk = self.bulk_loads.load(Ordering::SeqCst) > 0;
        if !model.worth_keeping(bulk) || model.last_position().is_none() {
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let newer = kept
            .as_ref()
            .is_some_and(|k| k.last_position() > model.last_position());
        if !newer {
            *kept = Some(model);
        }
    }

    /// Applies `events` (consecutive positions, decoded) to `model`; `after`: what follows
    /// the last.
    async fn apply_events(
        &self,
        tx: &mut Conn<'_>,
        model: &mut Model,
        (events, decoded): (&[StoredEvent], &[RegistryEvent]),
        after: After<'_>,
    ) -> Result<(), StoreError> {
        let facts: Vec<&PostFact> = decoded
            .iter()
            .filter_map(|d| match d {
                RegistryEvent::AppointmentRecorded(f)
                | RegistryEvent::RemovalRecorded(f)
                | RegistryEvent::ConfirmationRecorded(f) => Some(f),
                _ => None,
            })
            .collect();
        model.prefetch(tx, &facts).await?;
        for (i, (event, decoded)) in events.iter().zip(decoded).enumerate() {
            begin_run(model, event);
            apply(tx, model, event, decoded).await?;
            // A notice's events are committed together, so the notice is complete when the
            // next event belongs to another aggregate or there is none yet.
            let read;
            let next = match events.get(i + 1) {
                Some(next) => Some(next.aggregate_id.as_str()),
                None => match after {
                    After::Nothing => None,
                    After::Event(next) => Some(next.aggregate_id.as_str()),
                    After::Unknown => {
                        read = next_aggregate(tx, event.position).await?;
                        read.as_deref()
                    }
                },
            };
            if next != Some(event.aggregate_id.as_str()) {
                if let Some(run) = model.run.take() {
                    check_one_seat_posts(tx, model, run, event).await?;
                }
            }
            model.applied(event.position);
        }
        // A replay reads no hashes (`Database::read_log`); a rebuild notes the last one
        // itself when it keeps its model.
        if let Some(last) = events.last().filter(|e| !e.hash.is_empty()) {
            model.stands_at(&last.hash);
        }
        Ok(())
    }
}

impl AppendObserver for Projector {
    fn appended<'a, 't, 'c>(
        &'a self,
        tx: &'a mut ObservedTx<'t, 'c>,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>>
    where
        't: 'a,
        'c: 'a,
    {
        Box::pin(self.project_appended(tx, events))
    }

    fn committed(&self, events: &[StoredEvent]) {
        let model = self
            .appended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        // Only the model of this very append (another may have projected since).
        if let (Some((model, new)), Some(last)) = (model, events.last()) {
            if model.last_hash() == Some(last.hash.as_str()) {
                let mut receipts = self.receipts.lock().unwrap_or_else(|e| e.into_inner());
                for receipt in new {
                    if receipts.len() == RECEIPTS_KEPT {
                        receipts.pop_front();
                    }
                    receipts.push_back(receipt);
                }
                drop(receipts);
                self.keep_model(model);
            }
        }
    }
}

/// Receipts kept for callers that have not taken theirs yet (an append through a bare
/// `Database` or by a caller that reports nothing leaves one behind; the oldest go first).
const RECEIPTS_KEPT: usize = 64;

/// An append's projection, waiting for the append to commit: its model and its receipts.
type Projected = (Model, Vec<Receipt>);

/// What an append's projection wrote for a notice it recorded, handed to the caller that
/// appended ([`Projector::take_receipt`]) so that its report — positions, title, warnings —
/// needs no read after the commit. It says what the read models held for that notice when
/// the append committed: the rows `rm_notices` and `rm_notice_warnings` got from these events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub aggregate_id: String,
    /// (sequence, position) of each appended event, in order.
    pub events: Vec<(usize, i64)>,
    pub document_number: Option<String>,
    pub title: String,
    /// The warnings the projection raised on this notice, in the read model's order.
    pub warnings: Vec<NoticeWarning>,
}

impl Receipt {
    /// The receipts of projecting `events` into `model` (before its flush): one for each
    /// run of one notice's events that records it — an append of one notice, or each
    /// append of a group (group commit, `store/group.rs`). None when the runs are more
    /// than the receipts kept (a bulk batch's append: its caller reads the read models).
    fn of_each(events: &[StoredEvent], decoded: &[RegistryEvent], model: &Model) -> Vec<Self> {
        let mut runs = Vec::new();
        let mut start = 0;
        for end in 1..=events.len() {
            if end == events.len() || events[end].aggregate_id != events[start].aggregate_id {
                runs.push(start..end);
                if runs.len() > RECEIPTS_KEPT {
                    return Vec::new();
                }
                start = end;
            }
        }
        runs.into_iter()
            .filter_map(|run| Self::of(&events[run.clone()], &decoded[run], model))
            .collect()
    }

    /// The receipt of one notice's run of events, if it records the notice.
    fn of(events: &[StoredEvent], decoded: &[RegistryEvent], model: &Model) -> Option<Self> {
        let first = events.first()?;
        let recorded = decoded.iter().find_map(|d| match d {
            RegistryEvent::NoticeRecorded(n) => Some(n),
            _ => None,
        })?;
        if events.iter().any(|e| e.aggregate_id != first.aggregate_id) {
            return None;
        }
        Some(Self {
            aggregate_id: first.aggregate_id.clone(),
            events: events
                .iter()
                .map(|e| {
                    (
                        usize::try_from(e.sequence).unwrap_or(usize::MAX),
                        e.position,
                    )
                })
                .collect(),
            document_number: recorded.document_number.clone(),
            title: recorded.title.clone(),
            warnings: model.buffered_warnings(&first.aggregate_id),
        })
    }
}

/// Drops `value` on a thread of its own: a rebuild's model and rows are hundreds of MiB
/// in millions of allocations, and freeing them took a 1M-event bulk load's last 0.6 s
/// (BENCHMARKS.md, session 35) after everything was committed. Inline when no thread can
/// be started.
fn drop_aside<T: Send + 'static>(value: T) {
    // A thread that cannot start drops its closure, and `value` with it, here.
    let _ = std::thread::Builder::new()
        .name("renmian-drop".into())
        .spawn(move || drop(value));
}

/// What [`vacuum`] does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Upkeep {
    /// While the log grows: `VACUUM (ANALYZE)` of the read models, then `ANALYZE` of the
    /// event log.
    Growing,
    /// After a rebuild: `VACUUM` of the read models only.
    AfterRebuild,
}

/// PostgreSQL, best effort (a failure is logged and leaves it to autovacuum): `VACUUM` of
/// the read models — the dead row versions of UPDATEs (closed tenure versions, also during
/// a rebuild) cleared from their indexes, which a holders scan otherwise visits one heap
/// block each (migration 0009) — with fresh planner statistics as `upkeep` says. In the
/// simple query protocol, one statement per call: VACUUM cannot run in a transaction block.
async fn vacuum(db: &Database, upkeep: Upkeep) {
    if db.backend() != Backend::Postgres {
        return;
    }
    let tables = READ_MODEL_TABLES.join(", ");
    let statements = match upkeep {
        Upkeep::Growing => vec![
            format!("VACUUM (ANALYZE) {tables}"),
            "ANALYZE events".to_string(),
        ],
        Upkeep::AfterRebuild => vec![format!("VACUUM {tables}")],
    };
    // Not bound by the pool's statement timeout: a VACUUM grows with the tables.
    let mut conn = match db.postgres_maintenance().await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(error = %e, "no connection to vacuum on; autovacuum will do it");
            return;
        }
    };
    for sql in &statements {
        // Without arguments sqlx sends the simple query protocol, as `raw_sql` would.
        if let Err(e) = sqlx::Executor::execute(&mut conn, sql.as_str()).await {
            tracing::warn!(error = %e, statement = %sql, "failed; autovacuum will do it");
            break;
        }
    }
    let _ = sqlx::Connection::close(conn).await;
}

/// Log size from which [`Projector::keep_statistics_fresh`] refreshes statistics. Low, so
/// that a new database's statements are planned anew while its tables are still small: an
/// append's write statement has one text (`model/one_statement.rs`), and the generic plan
/// PostgreSQL makes of it after five executions, on near-empty tables, probed versions to
/// close by a hash join over every current version until the next `ANALYZE`: with 10 000
/// here, 158 of the first 8 000 notices into an empty database ran 3 ms or more (635 ms in
/// all), with 1 000 44 (188 ms; BENCHMARKS.md, session 23). The refreshes this adds are of
/// tables of a few thousand rows.
const ANALYZE_FROM_EVENTS: i64 = 1_000;

/// How long a SQLite rebuild's closing checkpoint waits for readers of an older snapshot
/// and for a writer ([`Database::empty_wal_best_effort`]): reads and ingests take milliseconds.
const REBUILT_CHECKPOINT_WAIT: Duration = Duration::from_secs(1);

/// A rebuild's events, batch after batch, read by a task of their own
/// ([`Database::read_log`], on a connection opened for it) and decoded by another while
/// the rebuild applies the previous batch: reading and decoding rows is about as much work as projecting them (BENCHMARKS.md,
/// session 4), and the three overlap (a batch is read while the one before is decoded).
/// An empty batch ends the log. Consistent with the rebuild's transaction: on SQLite that
/// transaction holds the write lock from its first statement, so no event can be appended
/// while it runs; on PostgreSQL both read committed events in position order, and a
/// position once seen has no later event below it.
struct ReadAhead {
    batches: tokio::sync::mpsc::Receiver<Result<Batch, StoreError>>,
    /// The reading task and the decoding one.
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl ReadAhead {
    fn start(db: Database, batch: i64, upcasters: Upcasters) -> Self {
        let (read_sender, mut read) = tokio::sync::mpsc::channel(1);
        // The reading stops when the decoder does, because the rebuild did.
        let reading = tokio::spawn(async move { db.read_log(0, batch, read_sender).await });
        let (sender, batches) = tokio::sync::mpsc::channel(1);
        let decoding = tokio::spawn(async move {
            while let Some(events) = read.recv().await {
                let decoded = events.and_then(|events| {
                    let decoded = decode_events(&events, &upcasters)?;
                    Ok((events, decoded))
                });
                // The reader stops after an error or the empty batch that ends the log.
                if sender.send(decoded).await.is_err() {
                    return;
                }
            }
        });
        Self {
            batches,
            tasks: [reading, decoding],
        }
    }

    /// The next batch; empty at the end of the log.
    async fn next(&mut self) -> Result<Batch, StoreError> {
        // The reader ends the log with an empty batch; a channel closed before that is a
        // reader that died, never the end of the log.
        self.batches.recv().await.ok_or_else(|| {
            StoreError::Unavailable("the rebuild's event reader stopped early".into())
        })?
    }

    /// Waits, once the empty batch has come, for both tasks to end: when the rebuild
    /// returns, nothing of its own runs on and its reading connection is closed (not left
    /// to the runtime's shutdown, or to a test's dropped temporary directory).
    async fn finish(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Stored events and their decoding, in position order.
type Batch = (Vec<StoredEvent>, Vec<RegistryEvent>);

/// Rows a [`Prebuild`] keeps in memory at most; a larger load rebuilds from the log. A 1M
/// load keeps 1.28M rows, and its peak memory rose from 829 to 1 368 MiB (SQLite; about
/// 420 bytes a row): this bound is about 3M events, 1.7 GiB more than a rebuild's.
const PREBUILD_ROWS: usize = 4_000_000;

/// How long a [`Prebuild`] may make no progress once its load has ended (a batch of
/// `BULK_BATCH_EVENTS` takes it ~0.1 s on an idle core).
const PREBUILD_STALL: Duration = Duration::from_secs(1);

/// A rebuild's replay run alongside a bulk load ([`Projector::prebuild`]): the batches the
/// load appends without projecting are replayed as they are appended, on a thread of its
/// own that runs only on otherwise idle cores, while the load stages and appends the next
/// (a 1M-event load on two cores kept ~1.3 of them busy), instead of read back, decoded
/// and replayed after it. The
/// rows are kept, to be written when the load ends. It gives up (and the load rebuilds
/// from the log) on anything a rebuild's replay would not be: a batch that does not
/// follow the one before it in the log (another writer's events between them), an event
/// that needs the database ([`applies_in_memory`]), more than [`PREBUILD_ROWS`] rows, or
/// a stall ([`Prebuild::finish`]).
pub struct Prebuild {
    /// `None` once [`Prebuild::finish`] has closed it.
    batches: Option<tokio::sync::mpsc::UnboundedSender<Vec<StoredEvent>>>,
    replay: tokio::sync::oneshot::Receiver<Option<Prebuilt>>,
    /// The last position replayed.
    progress: Arc<AtomicI64>,
    /// Set, when this is dropped, to make the replay give up at its next batch.
    cancel: Arc<AtomicBool>,
}

impl Drop for Prebuild {
    /// A replay nobody will take (finished, given up on, or dropped with its load) stops
    /// instead of going on with the batches it was sent.
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

impl Prebuild {
    /// The load appended `events` (a batch of whole notices, in position order).
    pub fn appended(&self, events: Vec<StoredEvent>) {
        // A replay that gave up has dropped its receiver: nothing to do.
        if let Some(batches) = &self.batches {
            let _ = batches.send(events);
        }
    }

    /// The replay of everything appended, unless it gave up. A replay that makes no
    /// progress for [`PREBUILD_STALL`] is given up: its thread runs only on otherwise idle
    /// cores, so on a machine kept busy by others it could take far longer than the
    /// rebuild from the log that replaces it.
    pub async fn finish(mut self) -> Option<Prebuilt> {
        drop(self.batches.take());
        // Dropping `self` afterwards cancels a replay given up on.
        unless_stalled(&mut self.replay, &self.progress, PREBUILD_STALL)
            .await
            .and_then(|replayed| replayed.ok().flatten())
    }
}

/// `work`'s output, unless `progress` (a position it moves on) stays put for `stall`:
/// then `None`, and `work` is left unfinished.
async fn unless_stalled<T>(
    work: impl Future<Output = T>,
    progress: &AtomicI64,
    stall: Duration,
) -> Option<T> {
    let mut work = std::pin::pin!(work);
    let mut seen = progress.load(Ordering::Relaxed);
    loop {
        tokio::select! {
            done = &mut work => return Some(done),
            () = tokio::time::sleep(stall) => {
                let now = progress.load(Ordering::Relaxed);
                if now == seen {
                    tracing::info!(
                        replayed_to = now,
                        "a bulk load's replay made no progress for {stall:?}; rebuilding from the log"
                    );
                    return None;
                }
                seen = now;
            }
        }
    }
}

/// What a [`Prebuild`] replayed: the model, the rows to write, and the position and hash
/// of the last event replayed.
pub struct Prebuilt {
    model: Model,
    writes: Vec<Writes>,
    checkpoint: i64,
    hash: String,
}

type Upcasters = Arc<Vec<Box<dyn EventUpcaster>>>;

/// Decodes stored events (see [`decode_event`]).
fn decode_events(
    events: &[StoredEvent],
    upcasters: &[Box<dyn EventUpcaster>],
) -> Result<Vec<RegistryEvent>, StoreError> {
    events.iter().map(|e| decode_event(e, upcasters)).collect()
}

/// What follows the last event of a batch being applied.
#[derive(Clone, Copy)]
enum After<'a> {
    /// Nothing yet: an append in progress holds the log head, or a rebuild read the end.
    Nothing,
    /// This event (a rebuild reads one batch ahead).
    Event(&'a StoredEvent),
    /// Not known: read it.
    Unknown,
}

/// Whether a complete model applies `event` without any SQL. The others (revocations,
/// corrections, merges and splits) update written rows or read them back, so a rebuild
/// applies them on the connection, after the rows written behind.
fn applies_in_memory(event: &RegistryEvent) -> bool {
    match event {
        RegistryEvent::NoticeRecorded(_)
        | RegistryEvent::AppointmentRecorded(_)
        | RegistryEvent::RemovalRecorded(_)
        | RegistryEvent::ConfirmationRecorded(_)
        | RegistryEvent::FactWithdrawn(_) => true,
        RegistryEvent::NoticeRevoked(_)
        | RegistryEvent::NoticeCorrected(_)
        | RegistryEvent::PersonsMerged(_)
        | RegistryEvent::PersonSplit(_) => false,
    }
}

/// Where a rebuild's time went, logged when it ends: the replay (and how long it waited for
/// the event reader and for the writer), the rest of the transaction (last rows, indexes or
/// swap), the commit and the upkeep after it. Which wait dominates says what to speed up.
struct RebuildTimes {
    /// When the current phase began.
    phase: Instant,
    reader_wait: Duration,
    writer_wait: Duration,
    replay: Duration,
    finish: Duration,
    commit: Duration,
}

impl RebuildTimes {
    fn start() -> Self {
        Self {
            phase: Instant::now(),
            reader_wait: Duration::ZERO,
            writer_wait: Duration::ZERO,
            replay: Duration::ZERO,
            finish: Duration::ZERO,
            commit: Duration::ZERO,
        }
    }

    async fn reading<T>(&mut self, wait: impl Future<Output = T>) -> T {
        waited(&mut self.reader_wait, wait).await
    }

    async fn writing<T>(&mut self, wait: impl Future<Output = T>) -> T {
        waited(&mut self.writer_wait, wait).await
    }

    fn lap(&mut self) -> Duration {
        let lap = self.phase.elapsed();
        self.phase = Instant::now();
        lap
    }

    fn replayed(&mut self) {
        self.replay = self.lap();
    }

    fn finished(&mut self) {
        self.finish = self.lap();
    }

    fn committed(&mut self) {
        self.commit = self.lap();
    }

    /// `prebuilt`: the replay ran alongside a bulk load ([`Prebuild`]); its phase here is
    /// writing what it replayed.
    fn report(mut self, events: i64, prebuilt: bool) {
        let upkeep = self.lap();
        let total = self.replay + self.finish + self.commit + upkeep;
        let s = |d: Duration| format!("{:.1}", d.as_secs_f64());
        tracing::info!(
            events,
            seconds = %s(total),
            replay = %s(self.replay),
            waiting_for_reader = %s(self.reader_wait),
            waiting_for_writer = %s(self.writer_wait),
            finishing = %s(self.finish),
            commit = %s(self.commit),
            upkeep = %s(upkeep),
            replayed_alongside_a_bulk_load = prebuilt,
            "rebuilt the read models"
        );
    }
}

/// Awaits `wait`, adding the time it took to `total`.
async fn waited<T>(total: &mut Duration, wait: impl Future<Output = T>) -> T {
    let since = Instant::now();
    let out = wait.await;
    *total += since.elapsed();
    out
}

/// How a rebuild starts from empty read models.
enum Fresh {
    /// PostgreSQL: new tables beside the live ones, swapped in at the end (`shadow.rs`).
    Tables(Shadow),
    /// SQLite: the live tables emptied, their secondary indexes (name, definition) dropped
    /// by the writer's first job and created again at the end.
    Emptied(Vec<(String, String)>),
}

/// A rebuild's transaction, writing rows in a task of its own while the rebuild goes on:
/// either here (`idle`) or with the task in flight (`writing`), which hands it back with the
/// job's result. After a failed job it is neither: dropped, so rolled back.
struct WriteBehind {
    idle: Option<RebuildTx>,
    writing: Option<JoinHandle<(RebuildTx, Result<(), StoreError>)>>,
}

/// A rebuild's transaction: through `Any` on SQLite; on PostgreSQL on the driver's own
/// connection (with the pool of one that holds it), so that its rows go in with `COPY`
/// (about three times the rows per second of multi-row INSERTs; see `model.rs`).
enum RebuildTx {
    Any(Transaction<'static, Any>),
    Postgres(Transaction<'static, Postgres>, PgPool),
}

impl RebuildTx {
    async fn begin(db: &Database) -> Result<Self, StoreError> {
        Ok(match db.backend() {
            Backend::Sqlite => Self::Any(db.pool().begin().await?),
            Backend::Postgres => {
                let (pool, tx) = db.postgres_transaction().await?;
                Self::Postgres(tx, pool)
            }
        })
    }

    fn conn(&mut self) -> Conn<'_> {
        match self {
            Self::Any(tx) => Conn::of(tx),
            Self::Postgres(tx, _) => Conn::postgres(tx),
        }
    }

    async fn commit(self) -> Result<(), StoreError> {
        match self {
            Self::Any(tx) => tx.commit().await?,
            Self::Postgres(tx, pool) => {
                tx.commit().await?;
                pool.close().await;
            }
        }
        Ok(())
    }
}

/// Work for the writer: statements on the rebuild's transaction.
type Job =
    Box<dyn for<'t> FnOnce(&'t mut RebuildTx) -> BoxFuture<'t, Result<(), StoreError>> + Send>;

impl WriteBehind {
    fn new(tx: RebuildTx) -> Self {
        Self {
            idle: Some(tx),
            writing: None,
        }
    }

    /// Runs `job` in a task of its own (the caller has waited for the one before).
    fn spawn(&mut self, job: Job) {
        if let Some(mut tx) = self.idle.take() {
            self.writing = Some(tokio::spawn(async move {
                let done = job(&mut tx).await;
                (tx, done)
            }));
        }
    }

    /// The transaction, once the job in flight (if any) has finished.
    async fn transaction(&mut self) -> Result<&mut RebuildTx, StoreError> {
        if let Some(task) = self.writing.take() {
            let (tx, done) = task.await.map_err(|e| {
                StoreError::Unavailable(format!("the rebuild's writer stopped: {e}"))
            })?;
            done?;
            self.idle = Some(tx);
        }
        self.idle.as_mut().ok_or_else(lost_transaction)
    }

    /// Starts writing `writes` once the job in flight has finished.
    async fn write(&mut self, mut writes: Writes) -> Result<(), StoreError> {
        self.transaction().await?;
        self.spawn(Box::new(move |tx| {
            Box::pin(async move { writes.write(&mut tx.conn()).await })
        }));
        Ok(())
    }

    async fn commit(mut self) -> Result<(), StoreError> {
        self.transaction().await?;
        let tx = self.idle.take().ok_or_else(lost_transaction)?;
        tx.commit().await
    }
}

fn lost_transaction() -> StoreError {
    StoreError::Unavailable("the rebuild's transaction was lost with a failed write".into())
}

/// Up to [`BATCH`] events after `after`, in order.
async fn events_after(
    tx: &mut Transaction<'_, Any>,
    after: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let rows = sqlx::query(&crate::store::log::EVENTS_AFTER)
        .bind(after)
        .bind(BATCH)
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows
        .iter()
        .map(StoredEvent::from_row)
        .collect::<Result<Vec<_>, _>>()?)
}

/// SQLite: the read models' secondary indexes (not the primary keys and unique constraints
/// the projector's `ON CONFLICT` clauses need), as (name, definition): a rebuild drops them
/// inside its transaction ([`clear_read_models`]) and creates them again once the rows are
/// in. Building an index from the finished table sorts once; maintaining it row by row cost
/// a B-tree descent per row and index (BENCHMARKS.md, session 4). A complete model never
/// reads the read models, so nothing needs the indexes meanwhile, and readers on other
/// connections keep their snapshot (WAL) until the commit. (On PostgreSQL, where `DROP
/// INDEX` would lock every reader out of the table for the whole rebuild, the rebuild
/// writes new tables instead: `shadow.rs`.)
async fn secondary_indexes(
    tx: &mut Transaction<'_, Any>,
) -> Result<Vec<(String, String)>, StoreError> {
    let tables = vec!["?"; READ_MODEL_TABLES.len()].join(", ");
    let sql = format!(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL \
         AND sql NOT LIKE 'CREATE UNIQUE%' AND tbl_name IN ({tables}) ORDER BY name"
    );
    let mut query = sqlx::query(&sql);
    for table in READ_MODEL_TABLES {
        query = query.bind(*table);
    }
    let rows = query.fetch_all(&mut **tx).await?;
    rows.iter()
        .map(|row| Ok((row.try_get("name")?, row.try_get("sql")?)))
        .collect()
}

/// Drops the indexes named and deletes every read model's rows, in the rebuild's
/// transaction.
async fn clear_read_models(tx: &mut Conn<'_>, drop_indexes: &[String]) -> Result<(), StoreError> {
    for name in drop_indexes {
        sqlx::query(&format!("DROP INDEX \"{name}\""))
            .execute(tx.get()?)
            .await?;
    }
    for table in READ_MODEL_TABLES.iter().rev() {
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(tx.get()?)
            .await?;
    }
    Ok(())
}

async fn lock_checkpoint(tx: &mut Conn<'_>) -> Result<i64, StoreError> {
    on_conn!(tx, |c| {
        let row = sqlx::query(
            "UPDATE projection_checkpoint SET position = position WHERE name = $1 \
             RETURNING position",
        )
        .bind(CHECKPOINT)
        .fetch_one(c)
        .await?;
        Ok(row.try_get("position")?)
    })
}

async fn move_checkpoint(tx: &mut Conn<'_>, position: i64) -> Result<(), StoreError> {
    execute_on!(
        tx,
        sqlx::query("UPDATE projection_checkpoint SET position = $1 WHERE name = $2")
            .bind(position)
            .bind(CHECKPOINT)
    )?;
    Ok(())
}

/// Starts a new notice run unless `event` continues the current one (same aggregate, same
/// commit time).
fn begin_run(model: &mut Model, event: &StoredEvent) {
    let continues = model.run.as_ref().is_some_and(|run| {
        run.aggregate_id == event.aggregate_id && run.recorded_at == event.recorded_at
    });
    if continues {
        return;
    }
    // The model saw the previous event, so this one starts its commit; otherwise the commit
    // may have begun before this model existed.
    model.run = Some(NoticeRun {
        aggregate_id: event.aggregate_id.clone(),
        recorded_at: event.recorded_at.clone(),
        from_start: model.last_position() == Some(event.position - 1),
        appointed: Vec::new(),
    });
}

async fn apply(
    tx: &mut Conn<'_>,
    model: &mut Model,
    event: &StoredEvent,
    decoded: &RegistryEvent,
) -> Result<(), StoreError> {
    match decoded {
        RegistryEvent::NoticeRecorded(n) => record_notice(tx, model, event, n).await,
        RegistryEvent::AppointmentRecorded(f) => {
            let ctx = fact_prelude(tx, model, event, f).await?;
            appoint(tx, model, event, f, &ctx).await
        }
        RegistryEvent::RemovalRecorded(f) => {
            let ctx = fact_prelude(tx, model, event, f).await?;
            remove(tx, model, event, f, &ctx).await
        }
        RegistryEvent::ConfirmationRecorded(f) => {
            let ctx = fact_prelude(tx, model, event, f).await?;
            confirm(tx, model, event, f, &ctx).await
        }
        RegistryEvent::NoticeRevoked(r) => revoke(tx, model, event, r).await,
        RegistryEvent::NoticeCorrected(c) => correct(tx, model, event, c).await,
        RegistryEvent::FactWithdrawn(w) => withdraw(tx, model, event, w).await,
        RegistryEvent::PersonsMerged(m) => merge_persons(tx, model, event, m).await,
        RegistryEvent::PersonSplit(split) => split_person(tx, model, event, split).await,
    }
}

async fn record_notice(
    tx: &mut Conn<'_>,
    model: &mut Model,
    event: &StoredEvent,
    n: &NoticeRecorded,
) -> Result<(), StoreError> {
    let context = NoticeContext {
        reference: n.document_number.clone().unwrap_or_else(|| n.key.clone()),
        jurisdiction: n.jurisdiction.clone(),
    };
    let row: Vec<Cell> = vec![
        event.aggregate_id.as_str().into(),
        n.key.as_str().into(),
        n.document_number.clone().into(),
        n.issuer.clone().into(),
        n.title.as_str().into(),
        n.issued_on.clone().into(),
        n.jurisdiction.clone().into(),
        n.content_hash.as_str().into(),
        serde_json::to_string(&n.remarks).unwrap_or_default().into(),
        serde_json::to_string(&n.revokes).unwrap_or_default().into(),
        0i64.into(),
        event.position.into(),
        event.recorded_at.as_str().into(),
        event.actor.as_str().into(),
    ];
    model.add_notice(&event.aggregate_id, context, row);
    let metadata: serde_json::Value = serde_json::from_str(&event.metadata)
        .map_err(|e| StoreError::Corrupt(format!("position {}: {e}", event.position)))?;
    if let Some(request_id) = metadata.get("request_id").and_then(|v| v.as_str()) {
        model.add_ingest_request(request_id, &event.aggregate_id, event.position);
    }
    for d in &n.diagnostics {
        warn(
            tx,
            model,
            event,
            Some(d.line),
            &format!("parser: {}", d.message),
        )
        .await?;
    }
    Ok(())
}

/// The notice context and canonical organization a fact resolves to, and the person it names.
struct FactContext {
    notice: NoticeContext,
    organization: String,
    person_id: i64,
}

/// Registers the organization, its names, the person and the post of a fact.
async fn fact_prelude(
    tx: &mut Conn<'_>,
    model: &mut Model,
    event: &StoredEvent,
    f: &PostFact,
) -> Result<FactContext, StoreError> {
    let notice = model
        .notice(tx, &event.aggregate_id)
        .await?
        .ok_or_else(|| {
            StoreError::Corrupt(format!("fact of unknown notice {}", event.aggregate_id))
        })?;
    model.count_fact(&event.aggregate_id);
    let organization = resolve_alias(tx, model, &f.organization_canonical).await?;
    model.add_organization(
        &organization,
        notice.jurisdiction.as_deref(),
        event.position,
    );
    let mut names = vec![
        organization.as_str(),
        &f.organization_canonical,
        &f.organization,
    ];
    names.extend(f.organization_aliases.iter().map(String::as_str));
    // Names relative to the issuer's jurisdiction (市教育体育局) mean different bodies in
    // different jurisdictions; queries qualify them instead of looking them up.
    names.retain(|n| !n.starts_with(['市', '县', '区']));
    names.dedup();
    for name in names {
        if model.alias(tx, name).await?.is_none() {
            // the first mapping of a name wins
            model.add_alias(name.to_string(), &organization, event.position);
        }
    }
    let person_id = link_person(
        tx,
        model,
        event,
        f,
        &organization,
        notice.jurisdiction.as_deref(),
    )
    .await?;
    model.add_post(&organization, &f.post, event.position);
    Ok(FactContext {
        notice,
        organization,
        person_id,
    })
}

/// A name already known as another organization's alias resolves to that organization, so
/// 市人民防空办公室 lands on 临湘市国防动员办公室 once a notice has said they are one.
async fn resolve_alias(
    tx: &mut Conn<'_>,
    model: &mut Model,
    canonical: &str,
) -> Result<String, StoreError> {
    Ok(model
        .alias(tx, canonical)
        .await?
        .unwrap_or(canonical)
        .to_string())
}

/// The person a fact's name means. A name links to an existing person record only when
/// that is unambiguous: the one record of that name holding this post, else the one record
/// of that name in the notice's jurisdiction. Otherwise a new record is made (id = this
/// event's position) and, when other records share the name (同名), the notice is flagged so
/// an operator can merge them (`renmian person merge`).
async fn link_person(
    tx: &mut Conn<'_>,
    model: &mut Model,
    event: &StoredEvent,
    f: &PostFact,
    organization: &str,
    jurisdiction: Option<&str>,
) -> Result<i64, StoreError> {
    model.load_persons_named(tx, &f.person).await?;
    let candidates = model.persons_named(&f.person);
    if let [one] = candidates {
        if one.jurisdiction.as_deref() == jurisdiction {
            return Ok(one.person_id);
        }
    }
    let same_name = !candidates.is_empty();
    if same_name {
        let mut local = candidates
            .iter()
            .filter(|p| p.jurisdiction.as_deref() == jurisdiction)
            .map(|p| p.person_id);
        let only_local = match (local.next(), local.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        };
        let same_person = |t: &TenureRow| t.person == f.person;
        let mut holders = model
            .post_tenures(tx, organization, &f.post, false, same_person, |t| {
                t.person_id
            })
            .await?;
        holders.dedup();
        if let [one] = holders.as_slice() {
            return Ok(*one);
        }
        if let Some(one) = only_local {
            return Ok(one);
        }
    }
    // The records this one is flagged beside: those of the name before it is added.
    let others = same_name.then(|| {
        let others: Vec<String> = model
            .persons_named(&f.person)
            .iter()
            .map(|p| {
                format!(
                    "#{} ({})",
                    p.person_id,
                    p.jurisdiction.as_deref().unwrap_or("?")
                )
            })
            .collect();
        others.join(", ")
    });
    let gender = f.gender.map(|g| {
        serde_json::to_value(g)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    });
    model
        .add_person(
            tx,
            event.position,
            &f.person,
            gender,
            jurisdiction.map(str::to_string),
        )
        .await?;
    if let Some(others) = others {
        warn(
            tx,
            model,
            event,
            Some(f.line),
            &format!(
                "同名: {} may be {others}; recorded as a new person #{} — `renmian person merge` if they are one",
                f.person,
                event.position
            ),
        )
        .await?;
    }
    Ok(event.position)
}

/// The open tenure of a person in a post, latest first.
async fn open_tenure(
    tx: &mut Conn<'_>,
    model: &mut Model,
    person_id: i64,
    organization: &str,
    post: &str,
) -> Result<Option<TenureRow>, StoreError> {
    Ok(model
        .post_tenures(
            tx,
            organization,
            post,
            false,
            |t| t.person_id == person_id,
            TenureRow::clone,
        )
        .await?
        .into_iter()
        .next())
}

/// `start` plus `months`: for full dates exactly, for month precision to the month
/// (`2023-05` + 12 = `2024-05`); a year-only start has no meaningful end.
pub fn add_months(start: &str, months: u32) -> Option<String> {
    if let Ok(date) = NaiveDate::parse_from_str(start, "%Y-%m-%d") {
        return date
            .checked_add_months(Months::new(months))
            .map(|d| d.format("%Y-%m-%d").to_string());
    }
    let (year, month) = start.split_once('-')?;
    let (year, month): (i64, i64) = (year.parse().ok()?, month.parse().ok()?);
    if !(1..=12).contains(&month) || start.len() != 7 {
        return None;
    }
    let total = year * 12 + (month - 1) + i64::from(months);
    Some(format!("{:04}-{:02}", total / 12, total % 12 + 1))
}

fn line_of(f: &PostFact) -> i64 {
    i64::try_from(f.line).unwrap_or(i64::MAX)
}

async fn appoint(
    tx: &mut Conn<'_>,
    model: &mut Model,
    event: &StoredEvent,
    f: &PostFact,
    ctx: &FactContext,
) -> Result<(), StoreError> {
    if let Some(existing) =
        open_tenure(tx, model, ctx.person_id, &ctx.organization, &f.post).await?
    {
        let since = existing
            .start_date
            .unwrap_or_else(|| "an unknown date".to_string());
        return warn(
            tx,
            model,
            event,
            Some(f.line),
            &format!(
                "{} already holds {} {} (since {since}, tenure {}); the appointment is recorded and the existing tenure kept",
                f.person, ctx.organization, f.post, existing.tenure_id
            ),
        )
        .await;
    }
    let probation_end = match (f.probation_months, f.effective_on.as_deref()) {
        (Some(m), Some(start)) => add_months(start, m),
        _ => None,
    };
    let row = TenureRow {
        tenure_id: event.position,
        person_id: ctx.person_id,
        person: f.person.clone(),
        organization: ctx.organization.clone(),
        organization_as_written: f.organization.clone(),
        post: f.post.clone(),
        concurrent: f.concurrent,
        start_date: f.effective_on.clone(),
        probation_months: f.probation_months.map(i64::from),
        probation_end,
        note: f.note.clone(),
        appointing_notice: Some(ctx.notice.reference.clone()),
        appointing_line: Some(line_of(f)),
        appointing_clause: Some(f.clause.clone()),
        recorded_position: event.position,
        ..TenureRow::default()
    };
    if let Some(run) = model.run.as_mut() {
        run.appointed
            .push((event.position, ctx.organization.clone(), f.post.clone()));
    }
    model.open_tenure(tx, row, event.position).await
}

async fn remove(
    tx: &mut Conn<'_>,
    model: &mut Model,
    event: &StoredEvent,
    f: &PostFact,
    ctx: &FactContext,
) -> Result<(), StoreError> {
    let terminated_by_note = f.note.as_deref() == Some("终止试用期");
    match open_tenure(tx, model, ctx.person_id, &ctx.organization, &f.post).await? {
        Some(mut tenure) => {
            // Removed while on probation: the probation ends as terminated.
            let on_probation = tenure.probation_end.is_some() && tenure.probation_outcome.is_none();
            let before_end = matches!(
                (&f.effective_on, &tenure.probation_end),
                (Some(d), Some(end)) if d < end
            );
            if on_probation && (terminated_by_note || before_end) {
                tenure.probation_outcome = Some("terminated".into());
                tenure.probation_outcome_on = f.effective_on.clone();
            }
            tenure.end_date = f.effective_on.clone();
            tenure.end_note = f.note.clone();
            tenure.ending_notice = Some(ctx.notice.reference.clone());
            tenure.ending_line = Some(line_of(f));
            tenure.ending_clause = Some(f.clause.clone());
            tenure.ended_position = Some(event.position);
            model.supersede(tx, tenure, event.position).await
        }
        None => {
            let row = TenureRow {
                tenure_id: event.position,
                person_id: ctx.person_id,
                person: f.person.clone(),
                organization: ctx.organization.clone(),
                organization_as_written: f.organization.clone(),
                post: f.post.clone(),
                concurrent: f.concurrent,
                end_date: f.effective_on.clone(),
                end_note: f.note.clone(),
                ending_notice: Some(ctx.notice.reference.clone()),
                ending_line: Some(line_of(f)),
                ending_clause: Some(f.clause.clone()),
                recorded_position: event.position,
                ended_position: Some(event.position),
                ..TenureRow::default()
            };
            model.open_tenure(tx, row, event.position).await?;
            warn(
                tx,
                model,
                event,
                Some(f.line),
                &format!(
                    "{} was not recorded as holding {} {}; recorded a tenure with unknown start ending {}",
                    f.person,
                    ctx.organization,
                    f.post,
                    f.effective_on.as_deref().unwrap_or("on an unknown date")
                ),
            )
            .await
        }
    }
}

async fn confirm(
    tx: &mut Conn<'_>,
    model: &mut Model,
    event: &StoredEvent,
    f: &PostFact,
    ctx: &FactContext,
) -> Result<(), StoreError> {
    match open_tenure(tx, model, ctx.person_id, &ctx.organization, &f.post).await? {
        Some(mut tenure)
            if tenure.probation_end.is_some() && tenure.probation_outcome.is_none() =>
        {
            tenure.probation_outcome = Some("confirmed".into());
            tenure.probation_outcome_on = f.effective_on.clone();
            model.supersede(tx, tenure, event.position).await
        }
        _ => {
            warn(
                tx,
                model,
                event,
                Some(f.line),
                &format!(
                    "{} has no running probation in {} {}; the confirmation is recorded only",
                    f.person, ctx.organization, f.post
                ),
            )
            .await
        }
    }
}

/// Undoes one fact of a notice as of this event: an appointment's tenure is withdrawn, a
/// removal's tenure reopens (or, if the removal created it, is withdrawn), a confirmation's
/// outcome is cleared. Earlier versions stay, so history shows what was believed before.
async fn withdraw(
    tx: &mut Conn<'_>,
    model: &mut Model,
    event: &StoredEvent,
    w: &FactWithdrawn,
) -> Result<(), StoreError> {
    let ctx = model
        .notice(tx, &event.aggregate_id)
        .await?
        .ok_or_else(|| {
            StoreError::Corrupt(format!("fact of unknown notice {}", event.aggregate_id))
        })?;
    let f = &w.fact;
    let organization = resolve_alias(tx, model, &f.organization_canonical).await?;
    let reference = Some(ctx.reference.as_str());
    let withdrawn = |t: &TenureRow| {
        t.person == f.person
            && match w.kind {
                EventKind::Appointment => t.appointing_notice.as_deref() == reference,
                EventKind::Removal => t.ending_notice.as_deref() == reference,
                EventKind::Confirmation => t.probation_outcome.as_deref() == Some("confirmed"),
            }
    };
    let matching = model
        .post_tenures(
            tx,
            &organization,
            &f.post,
            true,
            withdrawn,
            TenureRow::clone,
        )
        .await?;
    let Some(mut tenure) = matching.into_iter().next() else {
        return warn(
            tx,
            model,
            event,
            Some(f.line),
            &format!(
                "withdrawn {:?} of {} at {} {} had no effect on any tenure",
                w.kind, f.person, organization, f.post
            ),
        )
        .await;
    };
    match w.kind {
        EventKind::Appointment => {
            tenure.withdrawn_position = Some(event.position);
            tenure.withdrawn_reason = Some(w.reason.clone());
        }
        EventKind::Removal if tenure.appointing_notice.is_none() && tenure.start_date.is_none() => {
            tenure.withdrawn_position = Some(event.position);
            tenure.withdrawn_reason = Some(w.reason.clone());
        }
        EventKind::Removal => {
            if tenure.probation_outcome.as_deref() == Some("terminated")
                && tenure.probation_outcome_on == tenure.end_date
            {
                tenure.probation_outcome = None;
                tenure.probation_outcome_on = None;
            }
            tenure.end_date = None;
            tenure.end_note = None;
            tenure.ending_notice = None;
            tenure.ending_line = None;
            tenure.ending_clause = None;
            tenure.ended_position = None;
        }
        EventKind::Confirmation => {
            tenure.probation_outcome = None;
            tenure.probation_outcome_on = None;
        }
    }
    model.supersede(tx, tenure, event.position).await
}

async fn revoke(
    tx: &mut Conn<'_>,
    model: &mut Model,
    event: &StoredEvent,
    r: &NoticeRevoked,
) -> Result<(), StoreError> {
    // Rare: the notice's row may still be buffered, so write everything first.
    model.flush(tx).await?;
    execute_on!(
        tx,
        sqlx::query(
            "UPDATE rm_notices SET revoked_position = $1, revoked_at = $2, revoked_reason = $3, \
         revoked_by = $4 WHERE notice_id = $5",
        )
        .bind(event.position)
        .bind(&event.recorded_at)
        .bind(&r.reason)
        .bind(r.by_notice.as_deref().unwrap_or(&event.actor))
        .bind(&event.aggregate_id)
    )?;
    Ok(())
}

async fn correct(
    tx: &mut Conn<'_>,
    model: &mut Model,
    event: &StoredEvent,
    c: &NoticeCorrected,
) -> Result<(), StoreError> {
    model.flush(tx).await?;
    execute_on!(
        tx,
        sqlx::query(
            "UPDATE rm_notices SET title = $1, issued_on = $2, remarks = $3, content_hash = $4, \
         corrected_position = $5, corrected_at = $6, corrected_reason = $7, \
         correction_count = correction_count + 1 WHERE notice_id = $8",
        )
        .bind(&c.title)
        .bind(&c.issued_on)
        .bind(serde_json::to_string(&c.remarks).unwrap_or_default())
        .bind(&c.content_hash)
        .bind(event.position)
        .bind(&event.recorded_at)
        .bind(&c.reason)
        .bind(&event.aggregate_id)
    )?;
    Ok(())
}

/// Every current tenure of the retired record moves to the remaining one (as new versions).
async fn merge_persons(
    tx: &mut Conn<'_>,
    model: &mut Model,
    event: &StoredEvent,
    m: &PersonsMerged,
) -> Result<(), StoreError> {
    model.flush(tx).await?;
    for mut tenure in model.person_tenures(tx, m.person_id).await? {
        tenure.person_id = m.into;
        model.supersede(tx, tenure, event.position).await?;
    }
    execute_on!(
        tx,
        sqlx::query(
            "UPDATE rm_persons SET merged_into = $1, merged_position = $2 WHERE person_id = $3",
        )
        .bind(m.into)
        .bind(event.position)
        .bind(m.person_id)
    )?;
    model.retire_person(m.person_id);
    Ok(())
}

/// The named tenures move to a new person record (id = this event's position).
async fn split_person(
    tx: &mut Conn<'_>,
    model: &mut Model,
    event: &StoredEvent,
    split: &PersonSplit,
) -> Result<(), StoreError> {
    model.flush(tx).await?;
    type Person = (String, Option<String>, Option<String>);
    let person: Option<Person> = on_conn!(tx, |c| {
        let row =
            sqlx::query("SELECT name, gender, jurisdiction FROM rm_persons WHERE person_id = $1")
                .bind(split.person_id)
                .fetch_optional(c)
                .await?;
        row.map(|r| {
            Ok((
                r.try_get("name")?,
                r.try_get("gender")?,
                r.try_get("jurisdiction")?,
            ))
        })
        .transpose()
        .map_err(|e: sqlx::Error| StoreError::from(e))
    })?;
    let (name, gender, jurisdiction) = person.ok_or_else(|| {
        StoreError::Corrupt(format!("split of unknown person #{}", split.person_id))
    })?;
    model
        .add_person(tx, event.position, &name, gender, jurisdiction)
        .await?;
    for mut tenure in model
        .person_tenures(tx, split.person_id)
        .await?
        .into_iter()
        .filter(|t| split.tenure_ids.contains(&t.tenure_id))
    {
        tenure.person_id = event.position;
        model.supersede(tx, tenure, event.position).await?;
    }
    Ok(())
}

/// The hash of the event at `position`.
async fn event_hash(tx: &mut Conn<'_>, position: i64) -> Result<String, StoreError> {
    hash_at(tx, position)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("no event at position {position}")))
}

/// Whether the log's event at `position` has `hash`. The hash chain commits to every event
/// before it, so a replay that ended there on that hash replayed the log's first events.
async fn log_has(tx: &mut Conn<'_>, position: i64, hash: &str) -> Result<bool, StoreError> {
    Ok(hash_at(tx, position).await?.as_deref() == Some(hash))
}

/// Hash of the event at `position`, if there is one.
async fn hash_at(tx: &mut Conn<'_>, position: i64) -> Result<Option<String>, StoreError> {
    on_conn!(tx, |c| {
        let row = sqlx::query("SELECT hash FROM events WHERE position = $1")
            .bind(position)
            .fetch_optional(c)
            .await?;
        Ok(row.map(|r| r.try_get("hash")).transpose()?)
    })
}

/// Aggregate of the event after `position`, if any.
async fn next_aggregate(tx: &mut Conn<'_>, position: i64) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT aggregate_id FROM events WHERE position = $1")
        .bind(position + 1)
        .fetch_optional(tx.get()?)
        .await?;
    Ok(row.map(|r| r.try_get("aggregate_id")).transpose()?)
}

/// (tenure_id, organization, post) of the tenures a commit that began before this model
/// existed opened, read from the database after a flush.
async fn appointed_before_model(
    tx: &mut Conn<'_>,
    model: &mut Model,
    last: &StoredEvent,
    reference: &str,
) -> Result<Vec<(i64, String, String)>, StoreError> {
    model.flush(tx).await?;
    // The first event of this commit (the events of one commit share `recorded_at`); the
    // aggregate type lets the (type, id, sequence) index find the notice's few events.
    let first_position = sqlx::query(
        "SELECT MIN(position) AS p FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
         AND position <= $3 AND recorded_at = $4",
    )
    .bind(&last.aggregate_type)
    .bind(&last.aggregate_id)
    .bind(last.position)
    .bind(&last.recorded_at)
    .fetch_one(tx.get()?)
    .await?
    .try_get::<Option<i64>, _>("p")?
    .unwrap_or(last.position);
    // Tenure ids are the positions of the events that opened them: a primary-key range.
    let rows = sqlx::query(
        "SELECT tenure_id, organization, post FROM rm_tenures WHERE version_to IS NULL \
         AND withdrawn_position IS NULL AND tenure_id BETWEEN $1 AND $2 AND appointing_notice = $3",
    )
    .bind(first_position)
    .bind(last.position)
    .bind(reference)
    .fetch_all(tx.get()?)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get("tenure_id")?,
                r.try_get("organization")?,
                r.try_get("post")?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()?)
}

/// Once a notice's events are all applied: every one-seat post (局长, 主任 …) it appointed
/// someone to must have one holder on the start date. More is accepted and flagged.
async fn check_one_seat_posts(
    tx: &mut Conn<'_>,
    model: &mut Model,
    run: NoticeRun,
    last: &StoredEvent,
) -> Result<(), StoreError> {
    let Some(ctx) = model.notice(tx, &last.aggregate_id).await? else {
        return Ok(());
    };
    let appointed = if run.from_start {
        run.appointed
    } else {
        appointed_before_model(tx, model, last, &ctx.reference).await?
    };
    let mut checks = Vec::new();
    for (tenure_id, organization, post) in appointed {
        if !is_head_post(&post) {
            continue;
        }
        // Its start and line, if this notice appointed it and says when.
        let checked = model
            .tenure(tx, &organization, &post, tenure_id, |t| {
                let own = t.appointing_notice.as_deref() == Some(ctx.reference.as_str());
                let line = t.appointing_line.and_then(|l| usize::try_from(l).ok());
                t.start_date
                    .clone()
                    .filter(|_| own)
                    .map(|start| (start, line))
            })
            .await?
            .flatten();
        if let Some((start, line)) = checked {
            checks.push((tenure_id, organization, post, line, start));
        }
    }
    let pairs: Vec<_> = checks
        .iter()
        .map(|(_, organization, post, _, start)| {
            ((organization.clone(), post.clone()), start.clone())
        })
        .collect();
    model.prefetch_holders_on(tx, &pairs).await?;
    for (tenure_id, organization, post, line, start) in checks {
        let holders = model
            .holders_on(tx, &organization, &post, &start, |t| t.person.clone())
            .await?;
        if holders.len() > 1 {
            let mut names: Vec<&str> = holders.iter().map(String::as_str).collect();
            names.sort_unstable();
            let message = format!(
                "one-seat post {organization} {post} has {} holders on {start}: {}",
                holders.len(),
                names.join("、")
            );
            model
                .warn(tx, tenure_id, &last.aggregate_id, line, &message)
                .await?;
        }
    }
    Ok(())
}

async fn warn(
    tx: &mut Conn<'_>,
    model: &mut Model,
    event: &StoredEvent,
    line: Option<usize>,
    message: &str,
) -> Result<(), StoreError> {
    model
        .warn(tx, event.position, &event.aggregate_id, line, message)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replay is given up once it stops moving, not while it moves, however long it takes.
    #[tokio::test]
    async fn a_replay_is_given_up_when_it_stalls_not_while_it_moves() {
        // A stall far longer than the steps, so that a busy machine's delays do not count.
        let stall = Duration::from_millis(200);
        let step = Duration::from_millis(10);
        let progress = Arc::new(AtomicI64::new(7));
        // Never done, never moving.
        let stuck = unless_stalled(std::future::pending::<()>(), &progress, stall).await;
        assert_eq!(stuck, None);
        // Done after three stalls' time, moving every step.
        let moving = progress.clone();
        let slow = async move {
            for position in 8..68 {
                tokio::time::sleep(step).await;
                moving.store(position, Ordering::Relaxed);
            }
            "replayed"
        };
        assert_eq!(
            unless_stalled(slow, &progress, stall).await,
            Some("replayed")
        );
        // Moving, then stuck.
        let moving = progress.clone();
        let stops = async move {
            for position in 68..76 {
                tokio::time::sleep(step).await;
                moving.store(position, Ordering::Relaxed);
            }
            std::future::pending::<&str>().await
        };
        assert_eq!(unless_stalled(stops, &progress, stall).await, None);
        assert_eq!(progress.load(Ordering::Relaxed), 75);
    }

    #[test]
    fn probation_end_is_counted_in_calendar_months() {
        assert_eq!(add_months("2023-04-24", 12).as_deref(), Some("2024-04-24"));
        assert_eq!(add_months("2024-01-31", 1).as_deref(), Some("2024-02-29"));
        assert_eq!(add_months("2023-05", 12).as_deref(), Some("2024-05"));
        assert_eq!(add_months("2023-12", 1).as_deref(), Some("2024-01"));
        assert_eq!(add_months("2023", 12), None);
    }

    /// A model of `aliases` entries that last applied position 1.
    fn model_of(aliases: usize) -> Model {
        let mut model = Model::complete(Backend::Sqlite);
        for i in 0..aliases {
            model.add_alias(format!("alias {i}"), "org", 1);
        }
        let sample = StoredEvent::sample();
        model.applied(sample.position);
        model.stands_at(&sample.hash);
        model
    }

    /// A model over the usual limit is kept while a bulk load runs, and dropped when the
    /// last one ends; a small one stays.
    #[tokio::test]
    async fn a_bulk_load_keeps_a_large_model_until_the_last_one_ends() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("p.db").display());
        let projector = Projector::new(Database::connect(&url).await.unwrap());
        let kept = |p: &Projector| p.kept.lock().unwrap().is_some();
        let large = 100_001;

        projector.keep_model(model_of(large));
        assert!(!kept(&projector), "over the usual limit");
        let first = projector.bulk_load();
        let second = projector.bulk_load();
        projector.keep_model(model_of(large));
        assert!(kept(&projector), "kept during a bulk load");
        drop(first);
        assert!(kept(&projector), "another bulk load still runs");
        drop(second);
        assert!(!kept(&projector), "dropped when the last one ended");

        let bulk = projector.bulk_load();
        projector.keep_model(model_of(10));
        drop(bulk);
        assert!(kept(&projector), "a small model stays");
    }

    /// A replay reads no hashes, yet the model a rebuild keeps is recognised by the hash of
    /// the event it stands at, so the next append projects with it.
    #[tokio::test]
    async fn a_rebuild_keeps_its_model_with_the_last_events_hash() {
        use crate::registry::{Actor, Registry};
        use crate::workload::{generate, WorkloadConfig};

        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("k.db").display());
        let registry = Registry::open(&url).await.unwrap();
        let actor = Actor::named("test");
        for notice in generate(&WorkloadConfig::new(3, 5)) {
            registry.ingest(&notice.text, &actor).await.unwrap();
        }
        let projector = registry.projector();
        *projector.kept.lock().unwrap() = None;
        let head = projector.rebuild().await.unwrap();
        let last = registry.database().events_after(head - 1, 1).await.unwrap();
        let (model_position, model_hash) = {
            let kept = projector.kept.lock().unwrap();
            let model = kept.as_ref().expect("a small rebuilt model is kept");
            (model.last_position(), model.last_hash().map(str::to_owned))
        };
        assert_eq!(model_position, Some(head));
        assert_eq!(model_hash.as_deref(), Some(last[0].hash.as_str()));
        assert_eq!(last[0].hash.len(), 64);
    }

    /// A SQLite rebuild leaves the write-ahead log empty: everything it wrote is in the
    /// database file, and reads do not look pages up in the log first.
    #[tokio::test]
    async fn a_sqlite_rebuild_leaves_the_write_ahead_log_empty() {
        use crate::registry::{Actor, Registry};
        use crate::workload::{generate, WorkloadConfig};

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.db");
        let wal = dir.path().join("w.db-wal");
        let registry = Registry::open(&format!("sqlite://{}", file.display()))
            .await
            .unwrap();
        let actor = Actor::named("test");
        for notice in generate(&WorkloadConfig::new(5, 20)) {
            registry.ingest(&notice.text, &actor).await.unwrap();
        }
        let wal_len = || std::fs::metadata(&wal).map_or(0, |m| m.len());
        assert!(
            wal_len() > 0,
            "the ingests are in the log, not yet in the file"
        );
        let before = crate::projections::export::export(registry.database())
            .await
            .unwrap();

        let head = registry.projector().rebuild().await.unwrap();
        assert!(head > 0);
        assert_eq!(wal_len(), 0, "the rebuild left its writes in the log");
        let after = crate::projections::export::export(registry.database())
            .await
            .unwrap();
        assert_eq!(before, after, "the same read models, read from the file");
    }
}
