//! Bulk ingest: many texts recorded in order, a batch of notices per append.
//!
//! [`Registry::ingest`] appends each notice in a transaction of its own: about twenty
//! statements and a commit per notice, each statement a round trip to the database (on
//! SQLite a hand-off to the connection's thread, which is where most of an ingest's time
//! goes; BENCHMARKS.md, session 5). Loading a jurisdiction's history is thousands of
//! notices. Here each notice is still loaded and decided by its aggregate exactly as
//! `ingest` does it (cqrs-es load, handle, commit — into a repository that defers the
//! append), but the events of about [`BULK_BATCH_EVENTS`] are appended together: one
//! transaction holds their events, their projection and one commit.
//!
//! Texts are parsed a few hundred at a time, and two queries ask of all their notices what
//! staging each one would otherwise ask the database on its own: whether it is recorded,
//! and whether a recorded notice revokes its number (`Lookahead`).
//!
//! While one batch is appended, the texts of the next are parsed and decided (at most one
//! append in flight, batches appended in the order staged): the append and its projection
//! run on a task of their own (and on SQLite in the connection's own thread), so the two
//! overlap on two cores. And while a bulk load runs, the projector keeps its model of the
//! read models between batches however large it grows (up to a bound;
//! `Projector::bulk_load`), instead of reading back what each batch's facts touch.
//!
//! A large load into an empty registry (the history of a jurisdiction, loaded before anyone
//! uses it) does not project batch by batch at all: its batches are appended alone and one
//! `Projector::rebuild` projects the log when the load ends ([`BulkProjection::AtTheEnd`]).
//! Inserting each batch's rows into the read models' indexes costs more with every batch —
//! at 1M events on SQLite, 70 of the load's 94 s went into projecting — while a rebuild writes
//! the rows into tables without secondary indexes and sorts each index once (or, on
//! PostgreSQL, copies them with `COPY`). Until the load ends, the read models stay empty
//! (their checkpoint, and every answer, before the load's first event); the outcomes'
//! warnings are read after the rebuild. A text that goes on its own needs the read models,
//! so the first one brings them up to the log that way and the rest of the load projects in
//! each append.
//!
//! That rebuild's replay runs alongside the load (`Projector::prebuild`): each batch is
//! replayed into the rebuild's model as soon as it is appended, on a thread that runs only
//! on cores the load leaves idle, and the rebuild at the end writes what was replayed
//! instead of reading the log back and replaying it then (`Projector::rebuild_prebuilt`,
//! which checks the log's hash at the last position replayed). Should the replay give up —
//! another writer's events between the load's, an event a replay cannot apply in memory, a
//! stall — the load rebuilds from the log as before. 1M generated events (40 000 texts,
//! together with `Lookahead`): SQLite 29.5 → 24.7–27.2 s, PostgreSQL 29.8–33.2 → 26.0–26.2 s
//! (BENCHMARKS.md, session 31).
//!
//! The result is what ingesting the texts one after the other with `ingest` gives: the same
//! events at the same positions, the same read models, the same outcomes (tests/bulk.rs, on
//! both databases). A text that needs more than recording new notices — one already
//! recorded, a notice that revokes others or that an earlier notice revoked, a notice
//! already in the batch — is ingested on its own with `ingest`, after the batch before it
//! is appended.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::task::Poll;

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventStore};

use super::{
    conflict_with_hint, diagnostics_within, metadata_for, no_notice_in, Actor, IngestOutcome,
    Registry, RegistryError,
};
use crate::domain::{NoticeAggregate, NoticeCommand, NoticeKey};
use crate::notice::ParseOutput;
use crate::projections::Prebuild;
use crate::store::repository::Deferred;
use crate::store::{Database, SqlEventRepository, StoreError, StoredEvent};

/// Events staged before a batch is appended: about 320 generated notices. `renmian ingest`
/// of 3 000 generated files (75 326 events) on SQLite, two runs each: 5.54–5.60 s with
/// batches of 500 events, 4.48–4.66 s with 2 000, 3.78–4.05 s with 8 000 (270 MiB peak),
/// 3.62–3.86 s with 32 000 (500 MiB peak). A batch holds the write lock while it is
/// appended and projected: a few tenths of a second at this size (the 3 000-file load is
/// ten batches in under 4 s).
pub const BULK_BATCH_EVENTS: usize = 8_000;

/// A bulk ingest of at least this many texts into an empty registry projects once, at its
/// end, instead of in each batch's append ([`BulkProjection::AtTheEnd`]).
pub const PROJECT_AT_THE_END_FROM: usize = 1_000;

/// Texts parsed and looked up together before they are staged ([`Lookahead`]).
const LOOKAHEAD_TEXTS: usize = 256;

/// When a bulk ingest projects what it appends into the read models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkProjection {
    /// In each batch's append transaction, as [`Registry::ingest`] does.
    InEachAppend,
    /// Once, when the load ends: the batches are appended alone and
    /// `Projector::rebuild` projects the whole log (sorting each index once instead of
    /// inserting into it row by row). Until then the read models stay where they were. A
    /// text that goes on its own — it needs the read models — first has them brought up
    /// to the log the same way, and the rest of the load projects in each append.
    AtTheEnd,
}

impl BulkProjection {
    /// For a load of `texts` texts into a registry whose log ends at `head` (not read for
    /// a small load): at the end for a large load into an empty registry, where a rebuild
    /// replays only what the load appended; else in each append.
    fn for_load(texts: usize, head: Option<i64>) -> Self {
        if texts >= PROJECT_AT_THE_END_FROM && head == Some(0) {
            Self::AtTheEnd
        } else {
            Self::InEachAppend
        }
    }
}

/// A bulk ingest stopped at text `index`: every text before it is recorded (`recorded`
/// holds their outcomes), nothing of it or of the texts after it was stored by this call.
#[derive(Debug, thiserror::Error)]
#[error("text {index}: {error}")]
pub struct BulkError {
    pub index: usize,
    #[source]
    pub error: RegistryError,
    pub recorded: Vec<IngestOutcome>,
}

impl BulkError {
    /// Stopped at text `index` by `error`, with the outcomes recorded so far.
    fn at(index: usize, error: RegistryError, recorded: &mut Vec<IngestOutcome>) -> Self {
        Self {
            index,
            error,
            recorded: std::mem::take(recorded),
        }
    }
}

/// A new notice whose events are staged in the batch.
struct Staged {
    text: usize,
    notice_id: String,
    document_number: Option<String>,
    title: String,
}

/// Notices decided but not yet appended: their events (in the deferring repository's
/// buffer, in order) and who they are.
struct Batch {
    events: Deferred,
    store: PersistedEventStore<SqlEventRepository, NoticeAggregate>,
    staged: Vec<Staged>,
    ids: HashSet<String>,
    /// The notices of the batch being appended meanwhile. Loading one of them would not
    /// see its events yet: staged again, it would make the log's unique index refuse the
    /// next batch whole, to be replayed text by text; so a text that repeats one goes on
    /// its own, after that append.
    appending: HashSet<String>,
}

impl Batch {
    fn new(db: &Database) -> Self {
        let events = Deferred::default();
        let store = PersistedEventStore::new_event_store(SqlEventRepository::deferred(
            db.clone(),
            events.clone(),
        ))
        .with_upcasters(crate::store::upcasters());
        Self {
            events,
            store,
            staged: Vec::new(),
            ids: HashSet::new(),
            appending: HashSet::new(),
        }
    }

    fn event_count(&self) -> usize {
        self.events.events().len()
    }

    /// Whether notice `id` is staged here or being appended.
    fn holds(&self, id: &str) -> bool {
        self.ids.contains(id) || self.appending.contains(id)
    }

    /// Forgets everything staged after the first `staged` notices.
    fn truncate(&mut self, staged: usize, events: usize) {
        self.events.events().truncate(events);
        for s in self.staged.drain(staged..) {
            self.ids.remove(&s.notice_id);
        }
    }

    /// What is staged, to be appended; its notices count as being appended (in place of
    /// the batch taken before) until [`Batch::appended`].
    fn take(&mut self) -> Taken {
        self.appending = std::mem::take(&mut self.ids);
        let events = std::mem::take(&mut *self.events.events());
        (std::mem::take(&mut self.staged), events)
    }

    /// The batch taken last is appended (or failed): nothing is being appended.
    fn appended(&mut self) {
        self.appending.clear();
    }
}

/// Texts parsed ahead of their staging, [`LOOKAHEAD_TEXTS`] at a time, with two questions
/// about all their notices asked in one query each: which are in the log already (those
/// that are not are put in the batch's [`Deferred::unrecorded`], so that deciding them
/// reads nothing), and which of their document numbers a recorded notice revokes. Staging
/// asked both notice by notice, two round trips each: staging a 1M-event load (40 000
/// texts) took 10.4–12.0 s on SQLite and 14.7–15.4 s on PostgreSQL, now 7.2–7.3 s and
/// 8.7–9.0 s, and the load waits on its appends instead (BENCHMARKS.md, session 31).
#[derive(Default)]
struct Lookahead {
    /// Parsed texts not staged yet, in order: the first is text `next`.
    parsed: VecDeque<ParseOutput>,
    next: usize,
    /// Whether `revoked` and the batch's unrecorded notices answer for the parsed texts:
    /// not once a text went on its own (it may have recorded or revoked notices since).
    looked_up: bool,
    /// Document numbers of the parsed texts' notices that a recorded notice revokes.
    revoked: HashSet<String>,
}

impl Lookahead {
    /// Text `index` parsed, with the lookups for it and the texts parsed with it.
    async fn take(
        &mut self,
        registry: &Registry,
        batch: &Batch,
        texts: &[impl AsRef<str>],
        index: usize,
    ) -> Result<ParseOutput, RegistryError> {
        if self.next != index || self.parsed.is_empty() {
            let end = texts.len().min(index + LOOKAHEAD_TEXTS);
            self.parsed = texts[index..end]
                .iter()
                .map(|t| registry.parse(t.as_ref()))
                .collect();
            self.next = index;
            self.looked_up = false;
        }
        if !self.looked_up {
            let notices = || self.parsed.iter().flat_map(|p| &p.notices);
            let ids: Vec<String> = notices()
                .map(|n| NoticeKey::for_notice(n).aggregate_id().to_string())
                .collect();
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            let numbers: Vec<&str> = notices()
                .filter_map(|n| n.document_number.as_deref())
                .collect();
            let recorded = registry
                .db
                .aggregates_in_log(NoticeAggregate::TYPE, &ids)
                .await?;
            self.revoked = registry.queries.revoked_among(&numbers).await?;
            let mut unrecorded = batch.events.unrecorded();
            unrecorded.clear();
            unrecorded.extend(
                ids.iter()
                    // A notice staged or being appended is not in the log yet; loading it
                    // again later must read the log (see `Batch::holds`).
                    .filter(|id| !recorded.contains(**id) && !batch.holds(id))
                    .map(|id| id.to_string()),
            );
            self.looked_up = true;
        }
        self.next += 1;
        self.parsed
            .pop_front()
            .ok_or_else(|| RegistryError::Internal(format!("a bulk ingest lost text {index}")))
    }

    /// A text went on its own: what it recorded or revoked is not in the lookups.
    fn forget_lookups(&mut self) {
        self.looked_up = false;
    }
}

/// A batch taken to be appended: its notices and their events, in order.
type Taken = (Vec<Staged>, Vec<crate::store::NewEvent>);

/// What the append of one batch reports.
struct Appended {
    outcomes: Vec<IngestOutcome>,
    /// Appended without projecting: the outcomes' warnings are not known yet.
    unprojected: Option<Unprojected>,
    /// The events appended without projecting, for the load's [`Prebuild`].
    stored: Vec<StoredEvent>,
}

/// A batch appended without projecting.
#[derive(Debug, Clone, Copy)]
struct Unprojected {
    first_text: usize,
    first_position: i64,
    last_position: i64,
}

/// The outcomes of a bulk ingest so far, and which of them wait for the projection.
#[derive(Default)]
struct Recorded {
    outcomes: Vec<IngestOutcome>,
    /// Indexes into `outcomes` of each batch appended without projecting, with the batch.
    unprojected: Vec<(Range<usize>, Unprojected)>,
    /// The replay of those batches while the load goes on, if it projects at its end.
    prebuild: Option<Prebuild>,
}

/// The append of one batch, driven while the next batch is staged: at most one at a time,
/// so batches are appended in the order they were staged.
struct InFlight<F> {
    append: Option<Pin<Box<F>>>,
    /// Its result, when it finished while something else was being driven.
    done: Option<Result<Appended, BulkError>>,
}

impl<F: Future<Output = Result<Appended, BulkError>>> InFlight<F> {
    fn new() -> Self {
        Self {
            append: None,
            done: None,
        }
    }

    /// Starts `append`; the one before must be [`InFlight::finish`]ed.
    fn start(&mut self, append: F) {
        debug_assert!(self.append.is_none() && self.done.is_none());
        self.append = Some(Box::pin(append));
    }

    /// Runs `work` to its end, driving the append in flight meanwhile: the database writes
    /// and commits one batch while this task parses and decides the next.
    async fn alongside<T>(&mut self, work: impl Future<Output = T>) -> T {
        let mut work = std::pin::pin!(work);
        std::future::poll_fn(|cx| {
            if let Some(append) = self.append.as_mut() {
                if let Poll::Ready(result) = append.as_mut().poll(cx) {
                    self.append = None;
                    self.done = Some(result);
                }
            }
            work.as_mut().poll(cx)
        })
        .await
    }

    /// Waits for the append in flight, if any, and adds its outcomes to `recorded`; its
    /// error carries every outcome recorded before it (`recorded`'s unprojected batches
    /// still index them).
    async fn finish(&mut self, recorded: &mut Recorded) -> Result<(), BulkError> {
        let result = match (self.append.take(), self.done.take()) {
            (Some(append), _) => append.await,
            (None, Some(done)) => done,
            (None, None) => return Ok(()),
        };
        match result {
            Ok(appended) => {
                let start = recorded.outcomes.len();
                recorded.outcomes.extend(appended.outcomes);
                if let Some(batch) = appended.unprojected {
                    recorded
                        .unprojected
                        .push((start..recorded.outcomes.len(), batch));
                    if let Some(prebuild) = &recorded.prebuild {
                        prebuild.appended(appended.stored);
                    }
                }
                Ok(())
            }
            Err(mut error) => {
                let own =
                    std::mem::replace(&mut error.recorded, std::mem::take(&mut recorded.outcomes));
                error.recorded.extend(own);
                Err(error)
            }
        }
    }
}

/// What staging a text came to.
enum Staging {
    /// Every notice of the text is in the batch.
    Staged,
    /// The text needs more than recording new notices; nothing of it is in the batch.
    OnItsOwn,
}

impl Registry {
    /// Records every notice of `texts`, in order, as [`Registry::ingest`] would one text
    /// after the other — each text all-or-nothing and idempotent, the same events, positions,
    /// read models and outcomes — with one append transaction per batch of about
    /// [`BULK_BATCH_EVENTS`] events instead of one per notice. Stops at the first text
    /// that is refused (see [`BulkError`]). As with `ingest`, an error after an append
    /// committed (reading the outcome) leaves that batch recorded; ingesting it again is
    /// idempotent.
    pub async fn ingest_all<T: AsRef<str>>(
        &self,
        texts: &[T],
        actor: &Actor,
    ) -> Result<Vec<IngestOutcome>, BulkError> {
        self.ingest_all_in_batches(texts, actor, BULK_BATCH_EVENTS)
            .await
    }

    /// [`Registry::ingest_all`] with batches of about `batch_events` events (tests use
    /// small ones, so that many batches are appended while the next ones are staged).
    /// A load of [`PROJECT_AT_THE_END_FROM`] texts or more into an empty registry projects
    /// at its end ([`BulkProjection::AtTheEnd`]), any other in each append.
    pub async fn ingest_all_in_batches<T: AsRef<str>>(
        &self,
        texts: &[T],
        actor: &Actor,
        batch_events: usize,
    ) -> Result<Vec<IngestOutcome>, BulkError> {
        let head = if texts.len() < PROJECT_AT_THE_END_FROM {
            None
        } else {
            match self.db.head_position().await {
                Ok(head) => Some(head),
                Err(e) => return Err(BulkError::at(0, e.into(), &mut Vec::new())),
            }
        };
        let projection = BulkProjection::for_load(texts.len(), head);
        self.ingest_all_projecting(texts, actor, batch_events, projection)
            .await
    }

    /// [`Registry::ingest_all_in_batches`], projecting as `projection` says. Either way,
    /// when it returns (done or stopped) the read models hold everything it appended.
    ///
    /// One batch is appended while the texts of the next are parsed and decided: the
    /// database writes and commits (on SQLite in its connection's thread; at 1M events the
    /// append was 139 of a load's 176 s) while this task works, instead of one waiting for
    /// the other. A text
    /// that goes on its own (see the module documentation) waits for that append first, and
    /// so does a text that repeats a notice of the batch being appended (loading it would
    /// not see those events yet).
    pub async fn ingest_all_projecting<T: AsRef<str>>(
        &self,
        texts: &[T],
        actor: &Actor,
        batch_events: usize,
        projection: BulkProjection,
    ) -> Result<Vec<IngestOutcome>, BulkError> {
        let _bulk = self.projector.bulk_load();
        let mut recorded = Recorded::default();
        let loaded = self
            .load(texts, actor, batch_events, projection, &mut recorded)
            .await;
        match loaded {
            Ok(()) => {
                self.project_unprojected(&mut recorded).await?;
                Ok(recorded.outcomes)
            }
            Err(mut error) => {
                // What the load appended before it stopped is projected all the same.
                let mut before = Recorded {
                    outcomes: std::mem::take(&mut error.recorded),
                    unprojected: std::mem::take(&mut recorded.unprojected),
                    prebuild: recorded.prebuild.take(),
                };
                if let Err(unprojected) = self.project_unprojected(&mut before).await {
                    tracing::warn!(error = %error, "a bulk ingest stopped, and projecting what it appended failed too");
                    return Err(unprojected);
                }
                error.recorded = before.outcomes;
                Err(error)
            }
        }
    }

    /// The texts staged, batch by batch, each appended while the next is staged.
    async fn load<T: AsRef<str>>(
        &self,
        texts: &[T],
        actor: &Actor,
        batch_events: usize,
        mut projection: BulkProjection,
        recorded: &mut Recorded,
    ) -> Result<(), BulkError> {
        let mut batch = Batch::new(&self.db);
        let mut lookahead = Lookahead::default();
        let mut flight = InFlight::new();
        // Where the read models stood when the load began: should they move on while it
        // appends alone, another process (a server on the same database) is projecting
        // what the load appends, and projecting it again at the end would be work twice.
        let found = match projection {
            BulkProjection::AtTheEnd => {
                recorded.prebuild = Some(self.projector.prebuild());
                self.projector.checkpoint().await.ok()
            }
            BulkProjection::InEachAppend => None,
        };
        for (index, text) in texts.iter().enumerate() {
            let staging = flight
                .alongside(self.stage(&mut batch, &mut lookahead, texts, index, actor))
                .await;
            let on_its_own = match staging {
                Ok(Staging::Staged) => false,
                Ok(Staging::OnItsOwn) => true,
                Err(error) => {
                    // Every text before this one is recorded, nothing of it.
                    flight.finish(recorded).await?;
                    flight.start(self.append_batch(batch.take(), texts, actor, projection));
                    flight.finish(recorded).await?;
                    return Err(BulkError::at(index, error, &mut recorded.outcomes));
                }
            };
            if on_its_own || batch.event_count() >= batch_events {
                flight.finish(recorded).await?;
                // From here on the read models keep up when a text goes on its own —
                // `ingest` reads them (what the text revokes or was revoked by, its earlier
                // record), and whether a later notice of the load was revoked is read from
                // them too — or when another process has started projecting the load.
                if projection == BulkProjection::AtTheEnd
                    && (on_its_own || self.projected_since(found).await)
                {
                    self.project_unprojected(recorded).await?;
                    projection = BulkProjection::InEachAppend;
                }
                flight.start(self.append_batch(batch.take(), texts, actor, projection));
            }
            if on_its_own {
                flight.finish(recorded).await?;
                batch.appended();
                self.ingest_on_its_own(index, text.as_ref(), actor, &mut recorded.outcomes)
                    .await?;
                lookahead.forget_lookups();
            }
        }
        flight.finish(recorded).await?;
        flight.start(self.append_batch(batch.take(), texts, actor, projection));
        flight.finish(recorded).await
    }

    /// Whether the projection checkpoint moved past `found` (where it stood when the load
    /// began); a checkpoint that cannot be read counts as not moved.
    async fn projected_since(&self, found: Option<i64>) -> bool {
        match (found, self.projector.checkpoint().await) {
            (Some(found), Ok(now)) => now > found,
            _ => false,
        }
    }

    /// Projects the batches `recorded` appended without projecting — a rebuild, since the
    /// read models stand where the load found them and the log has grown by whole batches
    /// since, unless someone else caught them up most of the way — and completes their
    /// outcomes with the warnings the projection raised. When
    /// that fails, the error names the first such batch's first text and carries only the
    /// outcomes before it (the batches are recorded; ingesting them again is idempotent).
    async fn project_unprojected(&self, recorded: &mut Recorded) -> Result<(), BulkError> {
        let unprojected = std::mem::take(&mut recorded.unprojected);
        let prebuild = recorded.prebuild.take();
        let Some((first_range, first)) = unprojected.first().cloned() else {
            return Ok(());
        };
        let projected = async {
            // Another process (a server on the same database) may have caught the read
            // models up meanwhile; if it got most of the way, what is left is caught up too
            // rather than projected again from the start (with a `renmian serve` running, a
            // rebuild at the end made a 10 000-file load 13.0 → 15.4 s).
            let (checkpoint, head) = self.projector.checkpoint_and_head().await?;
            // The replay alongside is of the log from its start: it serves only read models
            // that nobody else has moved (else it is dropped, which stops it, unawaited).
            let prebuild = prebuild.filter(|_| checkpoint == 0);
            if (head - checkpoint) * 2 < head {
                drop(prebuild);
                self.projector.catch_up().await?;
            } else if let Some(prebuild) = prebuild {
                let waited = std::time::Instant::now();
                let prebuilt = prebuild.finish().await;
                tracing::debug!(
                    replayed = prebuilt.is_some(),
                    waited = ?waited.elapsed(),
                    "a bulk load's replay alongside it ended"
                );
                let rebuilt = match prebuilt {
                    Some(prebuilt) => self.projector.rebuild_prebuilt(prebuilt).await?,
                    None => None,
                };
                match rebuilt {
                    // Events another writer appended after the load's are projected too.
                    Some(_) => self.projector.catch_up().await?,
                    None => self.projector.rebuild().await?,
                };
            } else {
                self.projector.rebuild().await?;
            }
            for (range, batch) in &unprojected {
                let warnings = self
                    .queries
                    .warnings_between(batch.first_position, batch.last_position)
                    .await?;
                assign_warnings(&mut recorded.outcomes[range.clone()], warnings);
            }
            Ok::<(), RegistryError>(())
        }
        .await;
        if let Err(error) = projected {
            recorded.outcomes.truncate(first_range.start);
            return Err(BulkError::at(
                first.first_text,
                error,
                &mut recorded.outcomes,
            ));
        }
        Ok(())
    }

    /// Decides every notice of text `index` of `texts` into the batch, or nothing of it.
    async fn stage<T: AsRef<str>>(
        &self,
        batch: &mut Batch,
        lookahead: &mut Lookahead,
        texts: &[T],
        index: usize,
        actor: &Actor,
    ) -> Result<Staging, RegistryError> {
        let parsed = lookahead.take(self, batch, texts, index).await?;
        if parsed.notices.is_empty() {
            return Err(no_notice_in(&parsed));
        }
        let (staged, events) = (batch.staged.len(), batch.event_count());
        let result = self
            .stage_notices(batch, &lookahead.revoked, index, &parsed, actor)
            .await;
        if !matches!(result, Ok(Staging::Staged)) {
            batch.truncate(staged, events);
        }
        result
    }

    /// `revoked`: the document numbers among the text's that recorded notices revoke.
    async fn stage_notices(
        &self,
        batch: &mut Batch,
        revoked: &HashSet<String>,
        index: usize,
        parsed: &ParseOutput,
        actor: &Actor,
    ) -> Result<Staging, RegistryError> {
        for n in &parsed.notices {
            let notice_id = NoticeKey::for_notice(n).aggregate_id().to_string();
            // Revocations are commands on other notices, and an aggregate loaded twice in
            // one batch would not see its staged events: `ingest` handles these.
            if !n.revokes.is_empty() || batch.holds(&notice_id) {
                return Ok(Staging::OnItsOwn);
            }
            if n.document_number
                .as_ref()
                .is_some_and(|n| revoked.contains(n))
            {
                return Ok(Staging::OnItsOwn);
            }
            let mut context = batch.store.load_aggregate(&notice_id).await?;
            if let Some(conflict) = context.aggregate().conflict_with(n) {
                return Err(conflict_with_hint(&conflict));
            }
            let sink = cqrs_es::event_sink::EventSink::default();
            let command = NoticeCommand::Record {
                notice: Box::new(n.clone()),
                diagnostics: diagnostics_within(n, &parsed.diagnostics),
            };
            context
                .aggregate()
                .handle(command, &(), &sink)
                .await
                .map_err(AggregateError::UserError)?;
            let events = sink.collect().await;
            if events.is_empty() {
                // Already recorded: `ingest` reports it as such.
                return Ok(Staging::OnItsOwn);
            }
            let metadata = metadata_for(actor, n.document_number.as_deref());
            batch.store.commit(events, context, metadata).await?;
            batch.ids.insert(notice_id.clone());
            batch.staged.push(Staged {
                text: index,
                notice_id,
                document_number: n.document_number.clone(),
                title: n.title.clone(),
            });
        }
        Ok(Staging::Staged)
    }

    /// Appends a batch taken from the staging (its projection in the same transaction) and
    /// reports an outcome per notice, as `ingest` would have; an error carries the outcomes
    /// of this batch recorded before it.
    async fn append_batch<T: AsRef<str>>(
        &self,
        (staged, events): Taken,
        texts: &[T],
        actor: &Actor,
        projection: BulkProjection,
    ) -> Result<Appended, BulkError> {
        let mut outcomes = Vec::new();
        let Some(first_text) = staged.first().map(|s| s.text) else {
            return Ok(Appended {
                outcomes,
                unprojected: None,
                stored: Vec::new(),
            });
        };
        let project = projection == BulkProjection::InEachAppend;
        // The append, and the projection in its transaction, on a task of its own: a
        // worker thread projects this batch while the caller's task parses and decides the
        // next (on one task the two took turns, and a load kept 1.07 of two cores busy).
        // Dropping this future leaves the task to commit or roll back the batch whole.
        let db = self.db.clone();
        let append = async move {
            if project {
                db.append(&events).await
            } else {
                db.append_unobserved(&events).await
            }
        };
        let appended = match tokio::spawn(append).await {
            Ok(appended) => appended,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(StoreError::Unavailable(format!(
                "the append of a bulk batch was cancelled: {e}"
            ))),
        };
        let stored = match appended {
            Ok(stored) => stored,
            Err(StoreError::Conflict) => {
                // Another writer recorded one of these notices first; nothing of the batch
                // was stored. Each text on its own reports what happened to it.
                tracing::debug!(
                    notices = staged.len(),
                    "a bulk batch lost a race with another writer; ingesting its texts one by one"
                );
                let mut texts_of_batch: Vec<usize> = staged.iter().map(|s| s.text).collect();
                texts_of_batch.dedup();
                for index in texts_of_batch {
                    self.ingest_on_its_own(index, texts[index].as_ref(), actor, &mut outcomes)
                        .await?;
                }
                return Ok(Appended {
                    outcomes,
                    unprojected: None,
                    stored: Vec::new(),
                });
            }
            Err(e) => return Err(BulkError::at(first_text, e.into(), &mut outcomes)),
        };
        let unprojected = match (project, stored.first(), stored.last()) {
            (false, Some(first), Some(last)) => Some(Unprojected {
                first_text,
                first_position: first.position,
                last_position: last.position,
            }),
            _ => None,
        };
        match self.report(&staged, &stored, project).await {
            Ok(outcomes) => Ok(Appended {
                outcomes,
                unprojected,
                stored: if project { Vec::new() } else { stored },
            }),
            Err(error) => Err(BulkError::at(first_text, error, &mut outcomes)),
        }
    }

    /// Text `index` through [`Registry::ingest`], its outcomes added to `outcomes`.
    async fn ingest_on_its_own(
        &self,
        index: usize,
        text: &str,
        actor: &Actor,
        outcomes: &mut Vec<IngestOutcome>,
    ) -> Result<(), BulkError> {
        match self.ingest(text, actor).await {
            Ok(recorded) => {
                outcomes.extend(recorded);
                Ok(())
            }
            Err(error) => Err(BulkError::at(index, error, outcomes)),
        }
    }

    /// Outcomes of the staged notices, whose events were appended as `stored`; with their
    /// warnings when the append was `projected`, else without (yet).
    async fn report(
        &self,
        staged: &[Staged],
        stored: &[crate::store::StoredEvent],
        projected: bool,
    ) -> Result<Vec<IngestOutcome>, RegistryError> {
        let (Some(first), Some(last)) = (stored.first(), stored.last()) else {
            return Ok(Vec::new());
        };
        let mut events = stored.iter().peekable();
        let mut outcomes = Vec::with_capacity(staged.len());
        for s in staged {
            // A notice's events are consecutive, in the order the notices were staged.
            let mut positions = Vec::new();
            while let Some(e) = events.next_if(|e| e.aggregate_id == s.notice_id) {
                positions.push(e.position);
            }
            outcomes.push(IngestOutcome {
                notice_id: s.notice_id.clone(),
                document_number: s.document_number.clone(),
                title: s.title.clone(),
                already_recorded: false,
                corrected: false,
                events_appended: positions.len(),
                first_position: positions.first().copied(),
                last_position: positions.last().copied(),
                warnings: Vec::new(),
                revoked_notices: Vec::new(),
                notes: Vec::new(),
            });
        }
        if projected {
            // The append projected itself unless the read models were behind.
            self.projector.catch_up().await?;
            let warnings = self
                .queries
                .warnings_between(first.position, last.position)
                .await?;
            assign_warnings(&mut outcomes, warnings);
        }
        self.projector.keep_statistics_fresh(last.position);
        Ok(outcomes)
    }
}

/// Gives each outcome of a batch (in position order) the warnings, of `warnings` (the
/// batch's, in position order), that its own events raised: `ingest` reports a notice's
/// warnings from its first position on, read right after its append.
fn assign_warnings(
    outcomes: &mut [IngestOutcome],
    warnings: Vec<(String, crate::projections::NoticeWarning)>,
) {
    let mut warnings = warnings.into_iter().peekable();
    for outcome in outcomes {
        let last = outcome.last_position;
        while let Some((notice_id, w)) = warnings.next_if(|(_, w)| Some(w.position) <= last) {
            if notice_id == outcome.notice_id {
                outcome.warnings.push(w);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small notice of 临湘市人民政府 numbered 临政人〔2024〕`number`号 with one clause.
    fn notice(number: u32, clause: &str) -> String {
        format!(
            "临湘市人民政府\n关于人员职务任免的通知\n(临政人〔2024〕{number}号)\n\n\
             各镇人民政府、街道办事处，市直各单位：\n\n经市人民政府研究决定：\n\n{clause}。\n\n\
             临湘市人民政府\n\n2024年3月1日\n"
        )
    }

    #[test]
    fn only_a_large_load_into_an_empty_registry_projects_at_the_end() {
        use BulkProjection::{AtTheEnd, InEachAppend};
        let large = PROJECT_AT_THE_END_FROM;
        assert_eq!(BulkProjection::for_load(large, Some(0)), AtTheEnd);
        assert_eq!(BulkProjection::for_load(large * 40, Some(0)), AtTheEnd);
        assert_eq!(BulkProjection::for_load(large, Some(1)), InEachAppend);
        assert_eq!(BulkProjection::for_load(large - 1, Some(0)), InEachAppend);
        assert_eq!(BulkProjection::for_load(large - 1, None), InEachAppend);
    }

    /// A batch another writer overtook — one of its notices recorded between staging and
    /// append — is refused whole by the unique (aggregate, sequence) index, and each of its
    /// texts is then ingested on its own and reports what happened to it.
    #[tokio::test]
    async fn a_batch_overtaken_by_another_writer_is_replayed_text_by_text() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("b.db").display());
        let registry = Registry::open(&url).await.unwrap();
        let other = Registry::open(&url).await.unwrap();
        let actor = Actor::named("test");
        let texts = [
            notice(1, "张三同志任市财政局副局长"),
            notice(2, "李四同志任市商务局局长"),
            notice(3, "王五同志任市统计局副局长"),
        ];
        let mut batch = Batch::new(&registry.db);
        let mut lookahead = Lookahead::default();
        for i in 0..texts.len() {
            let staged = registry
                .stage(&mut batch, &mut lookahead, &texts, i, &actor)
                .await
                .unwrap();
            assert!(matches!(staged, Staging::Staged));
        }
        let first = other.ingest(&texts[1], &actor).await.unwrap();
        assert_eq!(first[0].first_position, Some(1));

        let outcomes = registry
            .append_batch(batch.take(), &texts, &actor, BulkProjection::InEachAppend)
            .await
            .unwrap()
            .outcomes;
        let already: Vec<bool> = outcomes.iter().map(|o| o.already_recorded).collect();
        assert_eq!(already, [false, true, false]);
        // Each notice once, the overtaken batch's in text order after the other writer's.
        let appended: usize = outcomes.iter().map(|o| o.events_appended).sum();
        let head = registry.db.head_position().await.unwrap();
        assert_eq!(head as usize, first[0].events_appended + appended);
        assert_eq!(outcomes[0].first_position, Some(head - appended as i64 + 1));
        assert_eq!(outcomes[2].last_position, Some(head));
    }
}
