//! The application service: the one place that turns requests into commands and queries.
//! The CLI and the gRPC API both call [`Registry`], so both behave the same.
//!
//! Ingest: parse → for each notice, run the notice aggregate through cqrs-es's event store
//! (load, handle, commit; retried on an optimistic-lock conflict) → catch the projections up
//! → report what was appended and the warnings the projection raised.

use std::collections::HashMap;
use std::sync::Arc;

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{AggregateContext, AggregateError, EventStore};
use serde::Serialize;

use crate::domain::person::person_aggregate_id;
use crate::domain::{
    NoticeAggregate, NoticeCommand, NoticeError, NoticeKey, PersonAggregate, PersonCommand,
    PersonError,
};
use crate::notice::{self, AliasTable, Diagnostic, Notice, ParseOutput};
use crate::projections::projector::Receipt;
use crate::projections::resident::ResidentTenures;
use crate::projections::{NoticeWarning, Projector, Queries, QueryError};
use crate::store::repository::{META_ACTOR, META_DOCUMENT_NUMBER};
use crate::store::{Database, SqlEventRepository, StoreError};

mod bulk;

pub use bulk::{BulkError, BulkProjection, BULK_BATCH_EVENTS, PROJECT_AT_THE_END_FROM};

/// Attempts at an ingest that keeps losing optimistic-lock races before giving up.
const MAX_ATTEMPTS: usize = 8;

/// Errors of the application layer; the gRPC status table and the CLI exit codes map these.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Bad request. Handle: fix `field` (INVALID_ARGUMENT).
    #[error("{field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    /// Nothing by that name. Handle: check the reference (NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// A name that means several things. Handle: be more specific (INVALID_ARGUMENT).
    #[error("{0}")]
    Ambiguous(String),
    /// The same key with different content, or a state that forbids the command
    /// (FAILED_PRECONDITION / ALREADY_EXISTS). Nothing was stored.
    #[error("{0}")]
    Conflict(String),
    /// Too many concurrent writers to the same notice (ABORTED). Retry.
    #[error("gave up after {MAX_ATTEMPTS} concurrent-write conflicts; retry")]
    Contention,
    /// The database is down or timed out (UNAVAILABLE). Retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The event log's hash chain is broken and no operator has acknowledged it, so writes
    /// are refused (FAILED_PRECONDITION; reads still work). Handle: run `renmian verify`,
    /// investigate, then `renmian verify --acknowledge --reason TEXT`.
    #[error("{0}")]
    IntegrityBroken(String),
    /// A read asked for a log position the read models have not reached (OUT_OF_RANGE).
    /// Handle: retry (a write whose projection is still being caught up), or ask for a
    /// position the registry returned.
    #[error("the read models stand at position {checkpoint}, before position {position}")]
    NotReached { position: i64, checkpoint: i64 },
    /// A bug or corrupt data (INTERNAL). The message is for logs, not for clients.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for RegistryError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(m) => Self::Unavailable(m),
            StoreError::Conflict => Self::Contention,
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<QueryError> for RegistryError {
    fn from(err: QueryError) -> Self {
        match err {
            QueryError::InvalidArgument { field, message } => {
                Self::InvalidArgument { field, message }
            }
            QueryError::NotFound(m) => Self::NotFound(m),
            e @ QueryError::Ambiguous { .. } => Self::Ambiguous(e.to_string()),
            QueryError::NotReached {
                position,
                checkpoint,
            } => Self::NotReached {
                position,
                checkpoint,
            },
            QueryError::Store(s) => s.into(),
        }
    }
}

impl From<AggregateError<PersonError>> for RegistryError {
    fn from(err: AggregateError<PersonError>) -> Self {
        match err {
            AggregateError::UserError(e) => Self::Conflict(e.to_string()),
            AggregateError::AggregateConflict => Self::Contention,
            AggregateError::DatabaseConnectionError(e) => Self::Unavailable(e.to_string()),
            AggregateError::DeserializationError(e) | AggregateError::UnexpectedError(e) => {
                Self::Internal(e.to_string())
            }
        }
    }
}

impl From<AggregateError<NoticeError>> for RegistryError {
    fn from(err: AggregateError<NoticeError>) -> Self {
        match err {
            AggregateError::UserError(e @ NoticeError::NotRecorded { .. }) => {
                Self::NotFound(e.to_string())
            }
            AggregateError::UserError(e) => Self::Conflict(e.to_string()),
            AggregateError::AggregateConflict => Self::Contention,
            AggregateError::DatabaseConnectionError(e) => Self::Unavailable(e.to_string()),
            AggregateError::DeserializationError(e) | AggregateError::UnexpectedError(e) => {
                Self::Internal(e.to_string())
            }
        }
    }
}

/// What happened to one notice of an ingest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    pub notice_id: String,
    pub document_number: Option<String>,
    pub title: String,
    /// `true`: the notice was already recorded with this content; nothing was appended.
    pub already_recorded: bool,
    /// `true`: the notice was recorded before with other content and this ingest recorded
    /// the correction.
    pub corrected: bool,
    /// Events appended by this ingest (0 when already recorded).
    pub events_appended: usize,
    pub first_position: Option<i64>,
    pub last_position: Option<i64>,
    /// Contradictions the registry accepted and flagged for this notice.
    pub warnings: Vec<NoticeWarning>,
    /// Document numbers this notice revoked (关于撤销…的通知).
    pub revoked_notices: Vec<String>,
    /// Other things the caller should know (e.g. a revoked notice that is not recorded).
    pub notes: Vec<String>,
}

/// Who is asking, recorded with every event written on their behalf.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub request_id: Option<String>,
}

impl Actor {
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            request_id: None,
        }
    }
}

pub struct Registry {
    db: Database,
    store: PersistedEventStore<SqlEventRepository, NoticeAggregate>,
    persons: PersistedEventStore<SqlEventRepository, PersonAggregate>,
    /// Shared with the database's append observer, which holds it weakly (the projector
    /// holds the database).
    projector: Arc<Projector>,
    queries: Queries,
    aliases: Arc<AliasTable>,
}

impl Registry {
    /// Connects, migrates and catches the projections up (the recovery step after a crash
    /// between an append and its projection).
    pub async fn open(url: &str) -> Result<Self, RegistryError> {
        let db = Database::connect(url).await?;
        let registry = Self::with_database(db);
        registry.projector.catch_up().await?;
        Ok(registry)
    }

    pub fn with_database(db: Database) -> Self {
        let aliases = Arc::new(AliasTable::builtin());
        let store = PersistedEventStore::new_event_store(SqlEventRepository::new(db.clone()))
            .with_upcasters(crate::store::upcasters());
        let persons = PersistedEventStore::new_event_store(SqlEventRepository::new(db.clone()))
            .with_upcasters(crate::store::upcasters());
        let projector = Arc::new(Projector::new(db.clone()));
        // Each append projects its own events before it commits (when the read models are
        // caught up), so a notice and its read models land in one transaction.
        let observer: Arc<dyn crate::store::AppendObserver> = projector.clone();
        db.observe_appends(Arc::downgrade(&observer));
        Self {
            persons,
            projector,
            queries: Queries::new(db.clone(), aliases.clone()),
            store,
            db,
            aliases,
        }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn queries(&self) -> &Queries {
        &self.queries
    }

    /// A read model of tenures in process memory over this registry's database, for
    /// questions about `since` or later (what `serve` answers ListHolders and ListHoldings
    /// from); it loads itself on first use.
    pub fn resident_tenures(&self, since: chrono::NaiveDate) -> ResidentTenures {
        ResidentTenures::new(self.db.clone(), self.aliases.clone(), since)
    }

    pub fn projector(&self) -> &Projector {
        &self.projector
    }

    /// Parses `text` without storing anything.
    pub fn parse(&self, text: &str) -> ParseOutput {
        notice::parse_with(text, &self.aliases)
    }

    /// Parses `text` and records every notice in it. Each notice is all-or-nothing and
    /// idempotent; if any notice conflicts with a recorded one, nothing at all is stored.
    /// A notice that revokes earlier ones (关于撤销…的通知) also records their revocation.
    pub async fn ingest(
        &self,
        text: &str,
        actor: &Actor,
    ) -> Result<Vec<IngestOutcome>, RegistryError> {
        self.ingest_with(text, actor, None).await
    }

    /// Like [`Registry::ingest`], but a notice recorded under the same key with other
    /// content is accepted as an explicit correction (`reason`): the facts it drops are
    /// withdrawn and the facts it adds recorded, as events; nothing is edited.
    pub async fn ingest_correction(
        &self,
        text: &str,
        reason: &str,
        actor: &Actor,
    ) -> Result<Vec<IngestOutcome>, RegistryError> {
        if reason.trim().is_empty() {
            return Err(RegistryError::InvalidArgument {
                field: "reason",
                message: "a correction needs a reason".into(),
            });
        }
        self.ingest_with(text, actor, Some(reason.trim())).await
    }

    async fn ingest_with(
        &self,
        text: &str,
        actor: &Actor,
        correction: Option<&str>,
    ) -> Result<Vec<IngestOutcome>, RegistryError> {
        let parsed = self.parse(text);
        if parsed.notices.is_empty() {
            return Err(no_notice_in(&parsed));
        }
        // Refuse up front when any notice conflicts, so a multi-notice text stores nothing.
        // One notice recorded without a correction needs no pre-check: its command refuses
        // a conflict itself, before anything is stored.
        let mut corrects = Vec::with_capacity(parsed.notices.len());
        if parsed.notices.len() == 1 && correction.is_none() {
            corrects.push(false);
        }
        for n in parsed.notices.iter().skip(corrects.len()) {
            let key = NoticeKey::for_notice(n);
            let mut context = self
                .store
                .load_aggregate(&key.aggregate_id().to_string())
                .await?;
            let conflict = context.aggregate().conflict_with(n);
            match (conflict, correction) {
                (Some(conflict), None) => return Err(conflict_with_hint(&conflict)),
                (conflict, _) => corrects.push(conflict.is_some()),
            }
        }
        let mut outcomes = Vec::with_capacity(parsed.notices.len());
        for (n, correct) in parsed.notices.iter().zip(corrects) {
            let diagnostics = diagnostics_within(n, &parsed.diagnostics);
            let reason = correction.filter(|_| correct);
            let mut outcome = self.record(n.clone(), diagnostics, reason, actor).await?;
            if !outcome.already_recorded {
                self.revoke_listed(n, &mut outcome, actor).await?;
                self.apply_earlier_revocation(n, &mut outcome, actor)
                    .await?;
            }
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// Records the revocations a revoking notice states. A revoked notice the registry does
    /// not hold is reported (the revocation can only take effect once it is ingested).
    async fn revoke_listed(
        &self,
        notice: &Notice,
        outcome: &mut IngestOutcome,
        actor: &Actor,
    ) -> Result<(), RegistryError> {
        let by = notice
            .document_number
            .clone()
            .unwrap_or_else(|| notice.title.clone());
        for number in &notice.revokes {
            match self
                .revoke(number, &format!("由{by}撤销"), Some(by.clone()), actor)
                .await
            {
                Ok(_) => outcome.revoked_notices.push(number.clone()),
                Err(RegistryError::NotFound(_)) => outcome.notes.push(format!(
                    "revokes {number}, which is not recorded; ingest it to record the revocation"
                )),
                Err(RegistryError::Conflict(m)) if m.contains("already revoked") => {
                    outcome.notes.push(format!("{number} was already revoked"))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// A revoking notice may arrive before the notice it revokes: when that notice is
    /// recorded, the revocation stated earlier is recorded for it too.
    async fn apply_earlier_revocation(
        &self,
        notice: &Notice,
        outcome: &mut IngestOutcome,
        actor: &Actor,
    ) -> Result<(), RegistryError> {
        let Some(number) = &notice.document_number else {
            return Ok(());
        };
        for by in self.queries.notices_revoking(number).await? {
            match self
                .revoke(number, &format!("由{by}撤销"), Some(by.clone()), actor)
                .await
            {
                Ok(_) => outcome
                    .notes
                    .push(format!("revoked by {by}, recorded earlier")),
                Err(RegistryError::Conflict(m)) if m.contains("already revoked") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn record(
        &self,
        notice: Notice,
        diagnostics: Vec<Diagnostic>,
        correction: Option<&str>,
        actor: &Actor,
    ) -> Result<IngestOutcome, RegistryError> {
        let aggregate_id = NoticeKey::for_notice(&notice).aggregate_id().to_string();
        let metadata = metadata_for(actor, notice.document_number.as_deref());
        let command = || match correction {
            Some(reason) => NoticeCommand::Correct {
                notice: Box::new(notice.clone()),
                diagnostics: diagnostics.clone(),
                reason: reason.to_string(),
            },
            None => NoticeCommand::Record {
                notice: Box::new(notice.clone()),
                diagnostics: diagnostics.clone(),
            },
        };
        let appended = match self.execute(&aggregate_id, command, &metadata).await {
            Err(RegistryError::Conflict(conflict)) if correction.is_none() => {
                return Err(conflict_with_hint(&conflict))
            }
            other => other?,
        };
        let mut outcome = self.outcome(&aggregate_id, &appended).await?;
        outcome.corrected = correction.is_some() && !appended.is_empty();
        Ok(outcome)
    }

    /// Reports what a command appended: from the receipt of its projection when the append
    /// recorded a notice and projected it in its own transaction (no read after the
    /// commit), otherwise from the read models once the projections have caught up.
    async fn outcome(
        &self,
        aggregate_id: &str,
        appended: &[usize],
    ) -> Result<IngestOutcome, RegistryError> {
        match self.projector.take_receipt(aggregate_id, appended) {
            Some(receipt) => Ok(self.outcome_of(receipt)),
            None => self.outcome_from_read_models(aggregate_id, appended).await,
        }
    }

    /// The outcome of an append that recorded a notice, from its projection's receipt.
    fn outcome_of(&self, receipt: Receipt) -> IngestOutcome {
        let positions: Vec<i64> = receipt.events.iter().map(|(_, p)| *p).collect();
        // Raised by this projection, so by this command's events.
        self.reported(
            receipt.aggregate_id,
            receipt.document_number,
            receipt.title,
            &positions,
            receipt.warnings,
        )
    }

    /// Catches the projections up after a command and reports what it appended.
    async fn outcome_from_read_models(
        &self,
        aggregate_id: &str,
        appended: &[usize],
    ) -> Result<IngestOutcome, RegistryError> {
        self.projector.catch_up().await?;
        let new: Vec<i64> = match appended.iter().min() {
            Some(&from) => self
                .db
                .event_positions("notice", aggregate_id, from as i64)
                .await?
                .into_iter()
                .filter(|(sequence, _)| appended.contains(&(*sequence as usize)))
                .map(|(_, position)| position)
                .collect(),
            None => Vec::new(),
        };
        let view = self.queries.notice_summary(aggregate_id).await?;
        let first = new.first().copied();
        // Warnings raised by this command's events (all of them for a new notice).
        let warnings = view
            .warnings
            .into_iter()
            .filter(|w| first.is_none_or(|f| w.position >= f))
            .collect();
        Ok(self.reported(
            aggregate_id.to_string(),
            view.document_number,
            view.title,
            &new,
            warnings,
        ))
    }

    /// The report of a command on a notice that appended the events at `positions` (none:
    /// the notice was already recorded) and raised `warnings`.
    fn reported(
        &self,
        notice_id: String,
        document_number: Option<String>,
        title: String,
        positions: &[i64],
        warnings: Vec<NoticeWarning>,
    ) -> IngestOutcome {
        if let Some(&last) = positions.last() {
            self.projector.keep_statistics_fresh(last);
        }
        IngestOutcome {
            notice_id,
            document_number,
            title,
            already_recorded: positions.is_empty(),
            corrected: false,
            events_appended: positions.len(),
            first_position: positions.first().copied(),
            last_position: positions.last().copied(),
            warnings,
            revoked_notices: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// An operator's confirmation of a probation that no notice confirmed: recorded on the
    /// notice that started the probation, effective `on`.
    pub async fn confirm_probation(
        &self,
        person: &str,
        organization: &str,
        post: &str,
        on: chrono::NaiveDate,
        actor: &Actor,
    ) -> Result<IngestOutcome, RegistryError> {
        let holdings = self.queries.holdings(person, on).await?;
        let organization = self.queries.resolve_organization(organization).await?;
        let tenure = holdings
            .into_iter()
            .find(|t| t.organization == organization && t.post == post.trim())
            .ok_or_else(|| {
                RegistryError::NotFound(format!(
                    "{person} does not hold {organization} {post} on {on}"
                ))
            })?;
        if tenure.probation_end.is_none() || tenure.probation_outcome.is_some() {
            return Err(RegistryError::Conflict(format!(
                "{person}'s tenure of {organization} {post} has no undecided probation"
            )));
        }
        let notice = tenure
            .appointing_notice
            .clone()
            .ok_or_else(|| RegistryError::NotFound("the appointing notice is unknown".into()))?;
        let view = self.queries.notice(&notice).await?;
        let metadata = metadata_for(actor, view.document_number.as_deref());
        let command = || NoticeCommand::ConfirmProbation {
            person: tenure.person.clone(),
            organization: tenure.organization_as_written.clone(),
            post: tenure.post.clone(),
            effective_on: on.format("%Y-%m-%d").to_string(),
        };
        let appended = self.execute(&view.notice_id, command, &metadata).await?;
        self.outcome(&view.notice_id, &appended).await
    }

    /// Load, handle, commit on a notice; see [`execute_on`].
    async fn execute(
        &self,
        aggregate_id: &str,
        command: impl Fn() -> NoticeCommand,
        metadata: &HashMap<String, String>,
    ) -> Result<Vec<usize>, RegistryError> {
        execute_on(&self.store, aggregate_id, command, metadata).await
    }

    /// Revokes a recorded notice: its facts stop holding from this record on.
    pub async fn revoke(
        &self,
        reference: &str,
        reason: &str,
        by_notice: Option<String>,
        actor: &Actor,
    ) -> Result<IngestOutcome, RegistryError> {
        if reason.trim().is_empty() {
            return Err(RegistryError::InvalidArgument {
                field: "reason",
                message: "a revocation needs a reason".into(),
            });
        }
        let view = self.queries.notice(reference).await?;
        let metadata = metadata_for(actor, view.document_number.as_deref());
        let reason = reason.trim().to_string();
        let appended = self
            .execute(
                &view.notice_id,
                || NoticeCommand::Revoke {
                    reason: reason.clone(),
                    by_notice: by_notice.clone(),
                },
                &metadata,
            )
            .await?;
        self.outcome(&view.notice_id, &appended).await
    }
}

impl Registry {
    /// Records that person record `person_id` and `into` are one person (同名 resolved); the
    /// first is retired and its tenures move to the second. Returns the event position.
    pub async fn merge_persons(
        &self,
        person_id: i64,
        into: i64,
        reason: &str,
        actor: &Actor,
    ) -> Result<i64, RegistryError> {
        let reason = required_reason(reason)?;
        self.require_person_record(person_id).await?;
        self.require_person_record(into).await?;
        let command = || PersonCommand::Merge {
            person_id,
            into,
            reason: reason.clone(),
        };
        self.decide_person(person_id, command, actor).await
    }

    /// Records that `tenure_ids` of person record `person_id` belong to another person of
    /// the same name; they move to a new record whose id is the returned position.
    pub async fn split_person(
        &self,
        person_id: i64,
        tenure_ids: Vec<i64>,
        reason: &str,
        actor: &Actor,
    ) -> Result<i64, RegistryError> {
        let reason = required_reason(reason)?;
        self.require_person_record(person_id).await?;
        let history = self
            .queries
            .person_history(&format!("#{person_id}"))
            .await?;
        if let Some(missing) = tenure_ids
            .iter()
            .find(|id| !history.iter().any(|t| t.tenure_id == **id))
        {
            return Err(RegistryError::NotFound(format!(
                "tenure {missing} is not a tenure of person #{person_id}"
            )));
        }
        let command = || PersonCommand::Split {
            person_id,
            tenure_ids: tenure_ids.clone(),
            reason: reason.clone(),
        };
        self.decide_person(person_id, command, actor).await
    }

    async fn require_person_record(&self, person_id: i64) -> Result<(), RegistryError> {
        let resolved = self
            .queries
            .resolve_person(&format!("#{person_id}"))
            .await?;
        if resolved != person_id {
            return Err(RegistryError::Conflict(format!(
                "person #{person_id} was merged into #{resolved}"
            )));
        }
        Ok(())
    }

    async fn decide_person(
        &self,
        person_id: i64,
        command: impl Fn() -> PersonCommand,
        actor: &Actor,
    ) -> Result<i64, RegistryError> {
        let aggregate_id = person_aggregate_id(person_id);
        let metadata = metadata_for(actor, None);
        execute_on(&self.persons, &aggregate_id, command, &metadata).await?;
        self.projector.catch_up().await?;
        let stored = self.db.aggregate_events("person", &aggregate_id, 0).await?;
        Ok(stored.last().map(|e| e.position).unwrap_or_default())
    }
}

/// Load, handle, commit; retried when another writer committed to the same aggregate
/// first. Returns the sequences of the committed events.
async fn execute_on<A>(
    store: &PersistedEventStore<SqlEventRepository, A>,
    aggregate_id: &str,
    command: impl Fn() -> A::Command,
    metadata: &HashMap<String, String>,
) -> Result<Vec<usize>, RegistryError>
where
    A: cqrs_es::Aggregate<Services = ()>,
    RegistryError: From<AggregateError<A::Error>>,
{
    for _ in 0..MAX_ATTEMPTS {
        let mut context = store.load_aggregate(aggregate_id).await?;
        let sink = cqrs_es::event_sink::EventSink::default();
        context
            .aggregate()
            .handle(command(), &(), &sink)
            .await
            .map_err(AggregateError::UserError)?;
        let events = sink.collect().await;
        match store.commit(events, context, metadata.clone()).await {
            Ok(committed) => return Ok(committed.iter().map(|e| e.sequence).collect()),
            Err(AggregateError::AggregateConflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(RegistryError::Contention)
}

/// Why a text with no personnel notice in it is refused, naming the parser's first finding.
fn no_notice_in(parsed: &ParseOutput) -> RegistryError {
    let hint = parsed
        .diagnostics
        .first()
        .map(|d| format!(" (line {}: {})", d.line, d.message))
        .unwrap_or_default();
    RegistryError::InvalidArgument {
        field: "text",
        message: format!("no personnel notice (任免通知) found in the text{hint}"),
    }
}

/// A notice that differs from the recorded one under its key, with the way to record it.
fn conflict_with_hint(conflict: &impl std::fmt::Display) -> RegistryError {
    RegistryError::Conflict(format!(
        "{conflict}; to record a corrected re-issue use `ingest --correct REASON`"
    ))
}

fn required_reason(reason: &str) -> Result<String, RegistryError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(RegistryError::InvalidArgument {
            field: "reason",
            message: "a decision needs a reason".into(),
        });
    }
    Ok(reason.to_string())
}

/// Event metadata: who wrote it, for which notice, under which request id.
fn metadata_for(actor: &Actor, document_number: Option<&str>) -> HashMap<String, String> {
    let mut metadata = HashMap::from([(META_ACTOR.to_string(), actor.name.clone())]);
    if let Some(number) = document_number {
        metadata.insert(META_DOCUMENT_NUMBER.to_string(), number.to_string());
    }
    if let Some(request_id) = &actor.request_id {
        metadata.insert("request_id".to_string(), request_id.clone());
    }
    metadata
}

/// The parser's diagnostics that fall on the lines of `notice`.
fn diagnostics_within(notice: &Notice, all: &[Diagnostic]) -> Vec<Diagnostic> {
    let first = notice.line;
    let last = notice.line + notice.source_text.lines().count().max(1);
    all.iter()
        .filter(|d| d.line >= first && d.line < last)
        .cloned()
        .collect()
}
