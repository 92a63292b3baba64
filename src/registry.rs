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

use crate::domain::{NoticeAggregate, NoticeCommand, NoticeError, NoticeKey};
use crate::notice::{self, AliasTable, Diagnostic, Notice, ParseOutput};
use crate::projections::{NoticeWarning, Projector, Queries, QueryError};
use crate::store::repository::{META_ACTOR, META_DOCUMENT_NUMBER};
use crate::store::{Database, SqlEventRepository, StoreError};

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
            QueryError::Store(s) => s.into(),
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
    /// Events appended by this ingest (0 when already recorded).
    pub events_appended: usize,
    pub first_position: Option<i64>,
    pub last_position: Option<i64>,
    /// Contradictions the registry accepted and flagged for this notice.
    pub warnings: Vec<NoticeWarning>,
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
    projector: Projector,
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
        Self {
            projector: Projector::new(db.clone()),
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

    pub fn projector(&self) -> &Projector {
        &self.projector
    }

    /// Parses `text` without storing anything.
    pub fn parse(&self, text: &str) -> ParseOutput {
        notice::parse_with(text, &self.aliases)
    }

    /// Parses `text` and records every notice in it. Each notice is all-or-nothing and
    /// idempotent; if any notice conflicts with a recorded one, nothing at all is stored.
    pub async fn ingest(
        &self,
        text: &str,
        actor: &Actor,
    ) -> Result<Vec<IngestOutcome>, RegistryError> {
        let parsed = self.parse(text);
        if parsed.notices.is_empty() {
            let hint = parsed
                .diagnostics
                .first()
                .map(|d| format!(" (line {}: {})", d.line, d.message))
                .unwrap_or_default();
            return Err(RegistryError::InvalidArgument {
                field: "text",
                message: format!("no personnel notice (任免通知) found in the text{hint}"),
            });
        }
        // Refuse up front when any notice conflicts, so a multi-notice text stores nothing.
        for n in &parsed.notices {
            let key = NoticeKey::for_notice(n);
            let context = self
                .store
                .load_aggregate(&key.aggregate_id().to_string())
                .await?;
            let mut context = context;
            let recorded = context.aggregate().clone();
            if let Some(conflict) = recorded.conflict_with(n) {
                return Err(RegistryError::Conflict(conflict.to_string()));
            }
        }
        let mut outcomes = Vec::with_capacity(parsed.notices.len());
        for n in parsed.notices.iter() {
            let diagnostics = diagnostics_within(n, &parsed.diagnostics);
            outcomes.push(self.record(n.clone(), diagnostics, actor).await?);
        }
        Ok(outcomes)
    }

    async fn record(
        &self,
        notice: Notice,
        diagnostics: Vec<Diagnostic>,
        actor: &Actor,
    ) -> Result<IngestOutcome, RegistryError> {
        let aggregate_id = NoticeKey::for_notice(&notice).aggregate_id().to_string();
        let mut metadata = HashMap::from([(META_ACTOR.to_string(), actor.name.clone())]);
        if let Some(number) = &notice.document_number {
            metadata.insert(META_DOCUMENT_NUMBER.to_string(), number.clone());
        }
        if let Some(request_id) = &actor.request_id {
            metadata.insert("request_id".to_string(), request_id.clone());
        }
        let command = || NoticeCommand::Record {
            notice: Box::new(notice.clone()),
            diagnostics: diagnostics.clone(),
        };
        let appended = self.execute(&aggregate_id, command, &metadata).await?;
        self.projector.catch_up().await?;
        let stored = self.db.aggregate_events("notice", &aggregate_id, 0).await?;
        let new: Vec<_> = stored
            .iter()
            .filter(|e| appended.contains(&(e.sequence as usize)))
            .collect();
        let view = self.queries.notice(&aggregate_id).await?;
        Ok(IngestOutcome {
            notice_id: aggregate_id,
            document_number: notice.document_number,
            title: notice.title,
            already_recorded: new.is_empty(),
            events_appended: new.len(),
            first_position: new.first().map(|e| e.position),
            last_position: new.last().map(|e| e.position),
            warnings: view.warnings,
        })
    }

    /// Load, handle, commit; retried when another writer committed to the same aggregate
    /// first. Returns the sequences of the committed events.
    async fn execute(
        &self,
        aggregate_id: &str,
        command: impl Fn() -> NoticeCommand,
        metadata: &HashMap<String, String>,
    ) -> Result<Vec<usize>, RegistryError> {
        use cqrs_es::Aggregate;
        for _ in 0..MAX_ATTEMPTS {
            let mut context = self.store.load_aggregate(aggregate_id).await?;
            let sink = cqrs_es::event_sink::EventSink::default();
            context
                .aggregate()
                .handle(command(), &(), &sink)
                .await
                .map_err(AggregateError::UserError)?;
            let events = sink.collect().await;
            match self.store.commit(events, context, metadata.clone()).await {
                Ok(committed) => return Ok(committed.iter().map(|e| e.sequence).collect()),
                Err(AggregateError::AggregateConflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RegistryError::Contention)
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
        let metadata = HashMap::from([(META_ACTOR.to_string(), actor.name.clone())]);
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
        self.projector.catch_up().await?;
        let stored = self
            .db
            .aggregate_events("notice", &view.notice_id, 0)
            .await?;
        let new: Vec<_> = stored
            .iter()
            .filter(|e| appended.contains(&(e.sequence as usize)))
            .collect();
        Ok(IngestOutcome {
            notice_id: view.notice_id,
            document_number: view.document_number,
            title: view.title,
            already_recorded: false,
            events_appended: new.len(),
            first_position: new.first().map(|e| e.position),
            last_position: new.last().map(|e| e.position),
            warnings: Vec::new(),
        })
    }
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
