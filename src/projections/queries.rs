//! The registry's questions, answered from the read models. The CLI and the gRPC API call
//! these and nothing else, so both give the same answers.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::NaiveDate;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::model::TenureRow;
use super::projector::CheckpointReads;
use super::resident::Answer;
use crate::domain::events::RegistryEvent;
use crate::notice::{self, AliasTable};
use crate::store::log::{numbered, padded_list, IN_LIST_IDS};
use crate::store::{Database, StoreError, StoredEvent};

/// Why a query has no answer. Each variant names what the caller can fix.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The request itself is malformed. Handle: fix `field`.
    #[error("{field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    /// Nothing by that name is recorded. Handle: check the spelling or ingest the notice.
    #[error("{0}")]
    NotFound(String),
    /// A name matches several organizations. Handle: use one of the canonical names.
    #[error("{name:?} is ambiguous: it may mean {}", candidates.join(", "))]
    Ambiguous {
        name: String,
        candidates: Vec<String>,
    },
    /// The read models stand before `position` (asked for with
    /// [`Freshness::AtLeast`](super::resident::Freshness)). Handle: retry, or ask for a
    /// position the registry returned (an ingest's last position).
    #[error("the read models stand at position {checkpoint}, before position {position}")]
    NotReached { position: i64, checkpoint: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for QueryError {
    fn from(err: sqlx::Error) -> Self {
        Self::Store(err.into())
    }
}

/// A person's tenure of a post, traced to the notices that opened and closed it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tenure {
    /// Position of the event that opened it (stable across rebuilds).
    pub tenure_id: i64,
    /// The person record (see [`PersonRecord`]); the name alone may be shared.
    pub person_id: i64,
    pub person: String,
    /// Canonical organization name.
    pub organization: String,
    pub organization_as_written: String,
    pub post: String,
    pub concurrent: bool,
    /// `None`: the registry never saw the appointment.
    pub start_date: Option<String>,
    /// `None`: still open.
    pub end_date: Option<String>,
    pub probation_months: Option<i64>,
    pub probation_end: Option<String>,
    pub probation_outcome: Option<String>,
    pub probation_outcome_on: Option<String>,
    pub note: Option<String>,
    pub end_note: Option<String>,
    pub appointing_notice: Option<String>,
    pub appointing_line: Option<i64>,
    pub appointing_clause: Option<String>,
    pub ending_notice: Option<String>,
    pub ending_line: Option<i64>,
    pub ending_clause: Option<String>,
    pub recorded_position: i64,
    pub recorded_at: Option<String>,
    pub ended_position: Option<i64>,
    pub ended_recorded_at: Option<String>,
    /// Set when the fact that opened the tenure was withdrawn (its notice revoked or
    /// corrected): the tenure never held. Position, time and actor of the withdrawal.
    pub withdrawn_position: Option<i64>,
    pub withdrawn_at: Option<String>,
    pub withdrawn_by: Option<String>,
    pub withdrawn_reason: Option<String>,
    /// Why the tenure ended: `removed`, `retired` (退休), `reassigned` (另有任用),
    /// `probation_terminated`, `withdrawn` (revoked/corrected away); `None` while it holds.
    pub end_cause: Option<String>,
    /// The position of the event that made this version of the tenure the registry's view.
    pub version_from: i64,
    /// Succession (post history only): the tenure this one replaced and the one that
    /// replaced it, when the registry can tell.
    pub replaced_tenure_id: Option<i64>,
    pub replaced_by_tenure_id: Option<i64>,
    /// Holders only: set when this is a one-seat post (局长, 主任 …) and more than one person
    /// holds it on the asked date. The notices are recorded as they are; this flags it.
    pub seat_conflict: bool,
}

impl Tenure {
    /// A tenure version as `TENURE_SELECT` reads it: the stored columns, decoded once by
    /// [`TenureRow`], plus when each fact was recorded.
    pub(crate) fn from_row(r: &AnyRow) -> Result<Self, sqlx::Error> {
        let TenureRow {
            tenure_id,
            person_id,
            person,
            organization,
            organization_as_written,
            post,
            concurrent,
            start_date,
            end_date,
            probation_months,
            probation_end,
            probation_outcome,
            probation_outcome_on,
            note,
            end_note,
            appointing_notice,
            appointing_line,
            appointing_clause,
            ending_notice,
            ending_line,
            ending_clause,
            recorded_position,
            ended_position,
            withdrawn_position,
            withdrawn_reason,
        } = TenureRow::from_row(r)?;
        Ok(Self {
            tenure_id,
            person_id,
            person,
            organization,
            organization_as_written,
            post,
            concurrent,
            start_date,
            end_date,
            probation_months,
            probation_end,
            probation_outcome,
            probation_outcome_on,
            note,
            end_note,
            appointing_notice,
            appointing_line,
            appointing_clause,
            ending_notice,
            ending_line,
            ending_clause,
            recorded_position,
            recorded_at: r.try_get("recorded_at")?,
            ended_position,
            ended_recorded_at: r.try_get("ended_recorded_at")?,
            withdrawn_position,
            withdrawn_at: r.try_get("withdrawn_at")?,
            withdrawn_by: r.try_get("withdrawn_by")?,
            withdrawn_reason,
            end_cause: None,
            version_from: r.try_get("version_from")?,
            replaced_tenure_id: None,
            replaced_by_tenure_id: None,
            seat_conflict: false,
        }
        .with_end_cause())
    }

    /// Whether this version holds on `on` (`YYYY-MM-DD`): what [`HOLDS_ON`] asks of a row,
    /// for read models kept in memory.
    pub(crate) fn holds_on(&self, on: &str) -> bool {
        self.start_date.as_deref().is_none_or(|start| start <= on) && self.not_ended_by(on)
    }

    /// Not withdrawn, and open or ending after `date`: the version can hold on `date` or
    /// any later day.
    pub(crate) fn not_ended_by(&self, date: &str) -> bool {
        self.withdrawn_position.is_none()
            && match self.end_date.as_deref() {
                None => self.ended_position.is_none(),
                Some(end) => end > date,
            }
    }

    fn with_end_cause(mut self) -> Self {
        let note = self.end_note.as_deref().unwrap_or("");
        self.end_cause = if self.withdrawn_position.is_some() {
            Some("withdrawn")
        } else if self.ended_position.is_none() && self.end_date.is_none() {
            None
        } else if self.probation_outcome.as_deref() == Some("terminated") {
            Some("probation_terminated")
        } else if note.contains("退休") {
            Some("retired")
        } else if note.contains("另有任用") {
            Some("reassigned")
        } else {
            Some("removed")
        }
        .map(str::to_string);
        self
    }
}

/// One person record (a person is an id; names may be shared).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersonRecord {
    pub person_id: i64,
    pub name: String,
    pub gender: Option<String>,
    pub jurisdiction: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbationStatus {
    /// Within its term.
    Running,
    /// Past its end, no outcome recorded: HR owes a review.
    Due,
    Confirmed,
    Terminated,
}

impl ProbationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Due => "due",
            Self::Confirmed => "confirmed",
            Self::Terminated => "terminated",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probation {
    pub status: ProbationStatus,
    pub tenure: Tenure,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoticeWarning {
    pub position: i64,
    pub line: Option<i64>,
    pub message: String,
}

impl NoticeWarning {
    fn from_row(r: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            position: r.try_get("position")?,
            line: r.try_get("line")?,
            message: r.try_get("message")?,
        })
    }
}

/// A recorded notice with its provenance, warnings and (when asked) its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoticeView {
    pub notice_id: String,
    pub notice_key: String,
    pub document_number: Option<String>,
    pub issuer: Option<String>,
    pub title: String,
    pub issued_on: Option<String>,
    pub jurisdiction: Option<String>,
    pub content_hash: String,
    pub remarks: Vec<String>,
    pub revokes: Vec<String>,
    pub event_count: i64,
    pub recorded_position: i64,
    pub recorded_at: String,
    pub actor: String,
    pub revoked_position: Option<i64>,
    pub revoked_at: Option<String>,
    pub revoked_reason: Option<String>,
    pub revoked_by: Option<String>,
    /// Last accepted correction (a corrected re-issue under the same key), if any.
    pub corrected_position: Option<i64>,
    pub corrected_at: Option<String>,
    pub corrected_reason: Option<String>,
    pub correction_count: i64,
    pub warnings: Vec<NoticeWarning>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_text: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<StoredEvent>,
}

/// A notice's view as the registry held it right after position `p`, from its events up to
/// `p` (`known`): the heading of its last correction by then (or as recorded), its
/// corrections and facts by then, not revoked after it. The row holds the latest of each,
/// which a correction or a confirmation recorded later has changed.
fn as_known_then(view: &mut NoticeView, known: &[StoredEvent], p: i64) -> Result<(), StoreError> {
    if view.revoked_position.is_some_and(|r| r > p) {
        view.revoked_position = None;
        view.revoked_at = None;
        view.revoked_reason = None;
        view.revoked_by = None;
    }
    let (mut facts, mut corrections) = (0, 0);
    let upcasters = crate::store::upcasters();
    for event in known {
        match super::projector::decode_event(event, &upcasters)? {
            RegistryEvent::NoticeRecorded(n) => {
                set_heading(view, (n.title, n.issued_on, n.remarks, n.content_hash))
            }
            RegistryEvent::NoticeCorrected(c) => {
                corrections += 1;
                set_heading(view, (c.title, c.issued_on, c.remarks, c.content_hash));
                view.corrected_position = Some(event.position);
                view.corrected_at = Some(event.recorded_at.clone());
                view.corrected_reason = Some(c.reason);
            }
            RegistryEvent::AppointmentRecorded(_)
            | RegistryEvent::RemovalRecorded(_)
            | RegistryEvent::ConfirmationRecorded(_) => facts += 1,
            _ => {}
        }
    }
    if corrections == 0 {
        view.corrected_position = None;
        view.corrected_at = None;
        view.corrected_reason = None;
    }
    view.correction_count = corrections;
    view.event_count = facts;
    Ok(())
}

/// A notice's heading: title, date, remarks and content hash.
type NoticeHeading = (String, Option<String>, Vec<String>, String);

fn set_heading(view: &mut NoticeView, heading: NoticeHeading) {
    let (title, issued_on, remarks, content_hash) = heading;
    view.title = title;
    view.issued_on = issued_on;
    view.remarks = remarks;
    view.content_hash = content_hash;
}

/// A notice's text as its events (`events`, the notice's own, in order) last gave it: that of
/// its last correction among them, else as recorded. The log is the one place it is kept
/// (`rm_notices` does not copy it; migration 0017), and only that event is decoded.
fn source_text_of(events: &[StoredEvent]) -> Result<Option<String>, StoreError> {
    let Some(event) = events
        .iter()
        .rev()
        .find(|e| matches!(e.event_type.as_str(), "NoticeRecorded" | "NoticeCorrected"))
    else {
        return Ok(None);
    };
    Ok(
        match super::projector::decode_event(event, &crate::store::upcasters())? {
            RegistryEvent::NoticeRecorded(n) => Some(n.source_text),
            RegistryEvent::NoticeCorrected(c) => Some(c.source_text),
            _ => None,
        },
    )
}

pub(crate) const TENURE_SELECT: &str = "SELECT t.*, e1.recorded_at AS recorded_at, \
     e2.recorded_at AS ended_recorded_at, e3.recorded_at AS withdrawn_at, \
     e3.actor AS withdrawn_by FROM rm_tenures t \
     LEFT JOIN events e1 ON e1.position = t.recorded_position \
     LEFT JOIN events e2 ON e2.position = t.ended_position \
     LEFT JOIN events e3 ON e3.position = t.withdrawn_position";

/// A tenure holds on `$1` when it started on or before `$1` (or its start is unknown) and had
/// not ended by then, and its appointing fact was not withdrawn. "Not ended by then" is
/// written as `rm_tenures_holding` keys it (migration 0015: `COALESCE(end_date, '~')`, '~'
/// after every date), open or ending after `$1` as one range, and a tenure ended on a date
/// not known is not open.
const HOLDS_ON: &str = "(t.start_date IS NULL OR t.start_date <= $1) \
     AND COALESCE(t.end_date, '~') > $1 \
     AND (t.end_date IS NOT NULL OR t.ended_position IS NULL) \
     AND t.withdrawn_position IS NULL";

/// Chronological order of tenures: by start, or by end when the start is unknown (such a
/// tenure began before it ended, so it sorts before one starting that day), then by record.
const HISTORY_ORDER: &str = "ORDER BY COALESCE(t.start_date, t.end_date, ''), \
     CASE WHEN t.start_date IS NULL THEN 0 ELSE 1 END, t.tenure_id";

/// Rows per page when a caller does not say.
pub const DEFAULT_PAGE_SIZE: i64 = 100;

#[derive(Clone, Debug)]
pub struct Queries {
    db: Database,
    aliases: Arc<AliasTable>,
    /// Answer as the registry knew it after this position (`None`: now).
    as_of: Option<i64>,
    /// The checkpoint reads of every clone: see [`Queries::exactly`].
    checkpoint_reads: Arc<CheckpointReads>,
}

pub(crate) fn require(field: &'static str, value: &str) -> Result<String, QueryError> {
    let trimmed: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    if trimmed.is_empty() {
        return Err(QueryError::InvalidArgument {
            field,
            message: "must not be empty".into(),
        });
    }
    Ok(trimmed)
}

/// Parses a `YYYY-MM-DD` date argument.
/// Strict: exactly four, two and two digits (chrono alone would also take `2023-5-1`).
pub fn parse_date(field: &'static str, value: &str) -> Result<NaiveDate, QueryError> {
    let text = value.trim();
    let shaped = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    shaped
        .then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| QueryError::InvalidArgument {
            field,
            message: format!("{value:?} is not a date in YYYY-MM-DD form"),
        })
}

pub(crate) fn iso(date: NaiveDate) -> String {
    use chrono::Datelike;
    match date.year() {
        // What `%Y-%m-%d` writes, without parsing a format string on every query.
        year @ 0..=9999 => format!("{year:04}-{:02}-{:02}", date.month(), date.day()),
        _ => date.format("%Y-%m-%d").to_string(),
    }
}

/// The names an organization asked for as `name` may be recorded under: the name itself,
/// then its alias expansions. Also returns the name, trimmed (refused when empty).
pub(crate) fn organization_candidates(
    aliases: &AliasTable,
    name: &str,
) -> Result<(String, Vec<String>), QueryError> {
    let name = require("organization", name)?;
    let mut candidates = vec![name.clone()];
    for expanded in aliases.expand(&name) {
        if !candidates.contains(&expanded) {
            candidates.push(expanded);
        }
    }
    Ok((name, candidates))
}

/// 市X / 县X / 区X as written in some jurisdiction's notices: the candidates qualified by
/// every known jurisdiction, as the parser qualifies them by a notice's issuer.
pub(crate) fn qualified_candidates<'a>(
    candidates: &[String],
    jurisdictions: impl IntoIterator<Item = &'a String>,
    aliases: &AliasTable,
) -> Vec<String> {
    let mut qualified = Vec::new();
    for jurisdiction in jurisdictions {
        for name in candidates {
            let q = notice::canonical_organization(name, Some(jurisdiction), aliases);
            if !candidates.contains(&q) && !qualified.contains(&q) {
                qualified.push(q);
            }
        }
    }
    qualified
}

/// The one canonical name found for `name`, or why there is none.
pub(crate) fn organization_found(
    name: String,
    mut found: Vec<String>,
) -> Result<String, QueryError> {
    match found.len() {
        0 => Err(QueryError::NotFound(format!(
            "no organization named {name:?} is recorded"
        ))),
        1 => Ok(found.remove(0)),
        _ => {
            found.sort();
            Err(QueryError::Ambiguous {
                name,
                candidates: found,
            })
        }
    }
}

/// A person as a query names them.
pub(crate) enum PersonReference {
    /// `#123` or `王伟#123` (`name` empty for the former).
    Id {
        name: String,
        id: i64,
    },
    Name(String),
}

pub(crate) fn person_reference(person: &str) -> Result<PersonReference, QueryError> {
    let text = require("person", person)?;
    match text.rsplit_once('#') {
        Some((name, id)) => {
            let id = id.parse().map_err(|_| QueryError::InvalidArgument {
                field: "person",
                message: format!("{text:?}: a person id is `#` and digits"),
            })?;
            Ok(PersonReference::Id {
                name: name.to_string(),
                id,
            })
        }
        None => Ok(PersonReference::Name(text)),
    }
}

/// What resolving `#id` needs of a person record.
#[derive(Debug, Clone)]
pub(crate) struct PersonLink {
    pub name: String,
    pub merged_into: Option<i64>,
    pub merged_position: Option<i64>,
}

/// `name#id` resolved against record `id` (`None`: not recorded), as of `as_of` (`None`:
/// now): a record merged by then stands for the one it was merged into.
pub(crate) fn person_by_id(
    name: &str,
    id: i64,
    record: Option<&PersonLink>,
    as_of: Option<i64>,
) -> Result<i64, QueryError> {
    let record =
        record.ok_or_else(|| QueryError::NotFound(format!("no person #{id} is recorded")))?;
    if !name.is_empty() && name != record.name {
        return Err(QueryError::NotFound(format!(
            "person #{id} is {}, not {name}",
            record.name
        )));
    }
    let merged_then = record
        .merged_position
        .is_some_and(|m| as_of.is_none_or(|p| m <= p));
    Ok(if merged_then {
        record.merged_into.unwrap_or(id)
    } else {
        id
    })
}

/// The one record (not merged away) of `name`, or why there is not exactly one.
pub(crate) fn one_person(name: String, records: &[PersonRecord]) -> Result<i64, QueryError> {
    match records {
        [] => Err(QueryError::NotFound(format!(
            "no person named {name:?} is recorded"
        ))),
        [one] => Ok(one.person_id),
        many => Err(QueryError::Ambiguous {
            name,
            candidates: many
                .iter()
                .map(|p| {
                    format!(
                        "{}#{} ({})",
                        p.name,
                        p.person_id,
                        p.jurisdiction.as_deref().unwrap_or("?")
                    )
                })
                .collect(),
        }),
    }
}

/// A person's holdings in answer order: principal posts before concurrent (兼) ones, then
/// by organization, post and tenure (in Rust, so that no database collation decides it).
pub(crate) fn holdings_in_order(mut tenures: Vec<Tenure>) -> Vec<Tenure> {
    tenures.sort_by(|a, b| {
        (a.concurrent, &a.organization, &a.post, a.tenure_id).cmp(&(
            b.concurrent,
            &b.organization,
            &b.post,
            b.tenure_id,
        ))
    });
    tenures
}

pub(crate) fn post_not_recorded(organization: &str, post: &str) -> QueryError {
    QueryError::NotFound(format!("no post {post:?} is recorded at {organization}"))
}

/// The holders of `post` in answer order (earliest start first), each flagged when `post`
/// is a one-seat post and more than one holds it: accepted, recorded, and flagged here.
pub(crate) fn holders_in_order(mut tenures: Vec<Tenure>, post: &str) -> Vec<Tenure> {
    tenures.sort_by(|a, b| {
        (a.start_date.as_deref().unwrap_or(""), a.tenure_id)
            .cmp(&(b.start_date.as_deref().unwrap_or(""), b.tenure_id))
    });
    if tenures.len() > 1 && crate::domain::posts::is_head_post(post) {
        for t in &mut tenures {
            t.seat_conflict = true;
        }
    }
    tenures
}

impl Queries {
    pub fn new(db: Database, aliases: Arc<AliasTable>) -> Self {
        Self {
            db,
            aliases,
            as_of: None,
            checkpoint_reads: Arc::default(),
        }
    }

    /// The same queries, answered as the registry knew it right after event `position` was
    /// recorded: the second time axis (recorded time) beside the valid date of each query.
    pub fn as_of_position(&self, position: i64) -> Result<Self, QueryError> {
        if position < 0 {
            return Err(QueryError::InvalidArgument {
                field: "as_of_position",
                message: "must not be negative".into(),
            });
        }
        Ok(Self {
            as_of: Some(position),
            ..self.clone()
        })
    }

    /// Runs `read` and tells the log position its answer is exactly as of: the same
    /// question asked again as of that position, on any server, gets the same answer (what
    /// an auditor cites; how the pages of one listing come from one point of the log).
    ///
    /// As of a past position, that position, once the read models have reached it
    /// ([`QueryError::NotReached`] before: a later projection could still change what they
    /// hold as of it). Now, the read models' checkpoint read after `read`. Every projection
    /// moves it in the transaction that writes the read models, and it never goes back: so
    /// when it equals a checkpoint read before `read` began (the furthest one any clone
    /// read), nothing was projected in between and `read` saw exactly that state; when it
    /// does not, `read` runs again as of it. One checkpoint read per answer — none on
    /// SQLite while its commit stamp says that nothing committed since the last one.
    pub async fn exactly<T, F, Fut>(&self, read: F) -> Result<Answer<T>, QueryError>
    where
        F: Fn(Self) -> Fut,
        Fut: std::future::Future<Output = Result<T, QueryError>>,
    {
        if let Some(position) = self.as_of {
            self.ensure_reached(position).await?;
            let value = read(self.clone()).await?;
            return Ok(Answer { value, position });
        }
        let before = match self.checkpoint_reads.furthest() {
            Some(checkpoint) => checkpoint,
            None => self.checkpoint().await?,
        };
        let value = read(self.clone()).await?;
        let after = self.checkpoint().await?;
        let value = if after == before {
            value
        } else {
            read(self.as_of_position(after)?).await?
        };
        Ok(Answer {
            value,
            position: after,
        })
    }

    /// [`as_of_position`](Self::as_of_position), refused while the read models have not
    /// reached `position` ([`QueryError::NotReached`]), as [`exactly`](Self::exactly)
    /// refuses it: for an answer that reports no position (the command line's).
    pub async fn as_of_reached(&self, position: i64) -> Result<Self, QueryError> {
        let queries = self.as_of_position(position)?;
        queries.ensure_reached(position).await?;
        Ok(queries)
    }

    /// [`QueryError::NotReached`] when the read models stand before `position`: what they
    /// hold as of it could still change.
    async fn ensure_reached(&self, position: i64) -> Result<(), QueryError> {
        let checkpoint = self.checkpoint().await?;
        if position > checkpoint {
            return Err(QueryError::NotReached {
                position,
                checkpoint,
            });
        }
        Ok(())
    }

    /// The read models' checkpoint as a read started now would find it: the last one read
    /// when nothing committed since (SQLite's commit stamp), else read.
    async fn checkpoint(&self) -> Result<i64, QueryError> {
        match self.checkpoint_reads.unchanged(&self.db) {
            Some(checkpoint) => Ok(checkpoint),
            None => Ok(self.checkpoint_reads.read(&self.db).await?),
        }
    }

    /// The last position recorded at or before `timestamp` (RFC 3339, UTC), for
    /// `--as-recorded-at`.
    pub async fn position_recorded_at(&self, timestamp: &str) -> Result<i64, QueryError> {
        let parsed = chrono::DateTime::parse_from_rfc3339(timestamp.trim()).map_err(|_| {
            QueryError::InvalidArgument {
                field: "as_recorded_at",
                message: format!(
                    "{timestamp:?} is not an RFC 3339 timestamp (2026-01-31T12:00:00Z)"
                ),
            }
        })?;
        let utc = parsed
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        let row = self
            .db
            .read_one(
                sqlx::query("SELECT MAX(position) AS p FROM events WHERE recorded_at <= $1")
                    .bind(&utc),
            )
            .await?;
        Ok(row.try_get::<Option<i64>, _>("p")?.unwrap_or(0))
    }

    /// SQL restricting tenure versions to the registry's view at `as_of` (or now).
    fn version_filter(&self) -> String {
        match self.as_of {
            None => "t.version_to IS NULL".to_string(),
            Some(p) => {
                format!("t.version_from <= {p} AND (t.version_to IS NULL OR t.version_to > {p})")
            }
        }
    }

    /// SQL restricting tenure versions to those of one post's tenures (`post` the parameter
    /// holding its title), or of every post of an organization (`post` `None`), at `as_of`
    /// (or now). Every tenure has exactly one current version, withdrawn or not, and its
    /// organization and post never change: the current versions of a post name all its
    /// tenures (index `rm_tenures_holding`, migration 0014), and an earlier view reads their
    /// versions by primary key.
    fn post_versions(&self, organization: &str, post: Option<&str>) -> String {
        let of_post = |alias: &str| match post {
            Some(post) => {
                format!("{alias}.organization = {organization} AND {alias}.post = {post}")
            }
            None => format!("{alias}.organization = {organization}"),
        };
        match self.as_of {
            None => format!("{} AND {}", self.version_filter(), of_post("t")),
            Some(_) => format!(
                "t.tenure_id IN (SELECT c.tenure_id FROM rm_tenures c \
                 WHERE c.version_to IS NULL AND {}) AND {}",
                of_post("c"),
                self.version_filter()
            ),
        }
    }

    /// SQL restricting a row recorded at `column` to the registry's view at `as_of`.
    fn recorded_filter(&self, column: &str) -> String {
        match self.as_of {
            None => "1 = 1".to_string(),
            Some(p) => format!("{column} <= {p}"),
        }
    }

    /// Resolves an organization named as written (市教育体育局), canonically
    /// (临湘市教育体育局) or by alias (市教体局, 市人民防空办公室) to its canonical name.
    pub async fn resolve_organization(&self, name: &str) -> Result<String, QueryError> {
        let (name, candidates) = organization_candidates(&self.aliases, name)?;
        // The name as given (or its first expansion that is known) wins; only when none is
        // known do the jurisdiction-qualified forms count, all of them, so that 市教育体育局
        // in two jurisdictions is reported as ambiguous.
        let mut found = Vec::new();
        for candidate in &candidates {
            found = self
                .canonical_names_for(std::slice::from_ref(candidate))
                .await?;
            if !found.is_empty() {
                break;
            }
        }
        if found.is_empty() {
            let rows = self
                .db
                .read_all(sqlx::query(
                    "SELECT jurisdiction FROM rm_jurisdictions ORDER BY 1",
                ))
                .await?;
            let jurisdictions = rows
                .iter()
                .map(|row| row.try_get::<String, _>("jurisdiction"))
                .collect::<Result<Vec<_>, _>>()?;
            let qualified = qualified_candidates(&candidates, &jurisdictions, &self.aliases);
            found = self.canonical_names_for(&qualified).await?;
        }
        organization_found(name, found)
    }

    /// Canonical names of the organizations known by any of `names` (alias or canonical),
    /// in one round trip.
    async fn canonical_names_for(&self, names: &[String]) -> Result<Vec<String>, QueryError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        // Padded to one of a few sizes, so that the text is found in the statement cache.
        let names = padded_list(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let list = numbered(1, names.len());
        let sql = format!(
            "SELECT canonical_name FROM rm_organization_aliases WHERE alias IN ({list}) AND {} \
             UNION SELECT canonical_name FROM rm_organizations WHERE canonical_name IN ({list}) \
             AND {} ORDER BY 1",
            self.recorded_filter("first_position"),
            self.recorded_filter("first_position")
        );
        let mut query = sqlx::query(&sql);
        for name in names {
            query = query.bind(name);
        }
        let rows = self.db.read_all(query).await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("canonical_name"))
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    async fn tenures(&self, filter: &str, binds: &[&str]) -> Result<Vec<Tenure>, QueryError> {
        let sql = format!(
            "{TENURE_SELECT} WHERE {} AND {filter}",
            self.version_filter()
        );
        self.fetch_tenures(&sql, binds).await
    }

    async fn fetch_tenures(&self, sql: &str, binds: &[&str]) -> Result<Vec<Tenure>, QueryError> {
        let mut query = sqlx::query(sql);
        for b in binds {
            query = query.bind(*b);
        }
        let rows = self.db.read_all(query).await?;
        Ok(rows
            .iter()
            .map(Tenure::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Who holds `post` at `organization` on `on`.
    pub async fn holders(
        &self,
        organization: &str,
        post: &str,
        on: NaiveDate,
    ) -> Result<Vec<Tenure>, QueryError> {
        let post = require("post", post)?;
        let org = self.resolve_organization(organization).await?;
        let binds: [&str; 3] = [&iso(on), &org, &post];
        let tenures = self.fetch_tenures(&self.holders_sql(), &binds).await?;
        if tenures.is_empty() {
            // Nobody holds it on `on`: say so, or say the post was never recorded.
            let known = self
                .db
                .read_optional(
                    sqlx::query(
                        "SELECT 1 AS one FROM rm_posts WHERE organization = $1 AND post = $2",
                    )
                    .bind(&org)
                    .bind(&post),
                )
                .await?;
            if known.is_none() {
                return Err(post_not_recorded(&org, &post));
            }
        }
        Ok(holders_in_order(tenures, &post))
    }

    /// [`holders`](Self::holders)' statement: `$1` the date, `$2` the organization, `$3`
    /// the post. Now, one range read of `rm_tenures_holding` (the post's current versions,
    /// open or ending after the date) instead of every current version of the post (a head
    /// post has hundreds at 1M events).
    fn holders_sql(&self) -> String {
        format!(
            "{TENURE_SELECT} WHERE {} AND {HOLDS_ON}",
            self.post_versions("$2", Some("$3"))
        )
    }

    /// Person records as the registry knew them (merged ones excluded), by name.
    pub async fn persons(&self, name: &str) -> Result<Vec<PersonRecord>, QueryError> {
        let name = require("person", name)?;
        let merged = match self.as_of {
            None => "merged_into IS NULL".to_string(),
            Some(p) => format!("(merged_position IS NULL OR merged_position > {p})"),
        };
        let rows = self
            .db
            .read_all(
                sqlx::query(&format!(
                    "SELECT person_id, name, gender, jurisdiction FROM rm_persons \
             WHERE name = $1 AND {merged} AND {} ORDER BY person_id",
                    self.recorded_filter("first_position")
                ))
                .bind(&name),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(PersonRecord {
                    person_id: r.try_get("person_id")?,
                    name: r.try_get("name")?,
                    gender: r.try_get("gender")?,
                    jurisdiction: r.try_get("jurisdiction")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// The person a query means: `王伟`, or `#123` / `王伟#123` for one record when several
    /// people share the name (同名). A merged record stands for the one it was merged into.
    pub async fn resolve_person(&self, person: &str) -> Result<i64, QueryError> {
        match person_reference(person)? {
            PersonReference::Id { name, id } => {
                let row = self
                    .db
                    .read_optional(
                        sqlx::query(
                            "SELECT name, merged_into, merged_position FROM rm_persons \
                             WHERE person_id = $1",
                        )
                        .bind(id),
                    )
                    .await?;
                let record = row
                    .map(|r| {
                        Ok::<_, sqlx::Error>(PersonLink {
                            name: r.try_get("name")?,
                            merged_into: r.try_get("merged_into")?,
                            merged_position: r.try_get("merged_position")?,
                        })
                    })
                    .transpose()?;
                person_by_id(&name, id, record.as_ref(), self.as_of)
            }
            PersonReference::Name(name) => {
                let records = self.persons(&name).await?;
                one_person(name, &records)
            }
        }
    }

    /// Every post `person` holds on `on`, concurrent (兼) posts included.
    pub async fn holdings(&self, person: &str, on: NaiveDate) -> Result<Vec<Tenure>, QueryError> {
        let person_id = self.resolve_person(person).await?;
        let tenures = self
            .tenures(
                &format!("{HOLDS_ON} AND t.person_id = CAST($2 AS BIGINT)"),
                &[&iso(on), &person_id.to_string()],
            )
            .await?;
        Ok(holdings_in_order(tenures))
    }

    /// Every tenure of a post (or of every post of an organization), oldest first,
    /// withdrawn ones included and marked, each linked to the tenure it replaced and the one
    /// that replaced it.
    pub async fn post_history(
        &self,
        organization: &str,
        post: Option<&str>,
    ) -> Result<Vec<Tenure>, QueryError> {
        let org = self.resolve_organization(organization).await?;
        let post = post.map(|post| require("post", post)).transpose()?;
        let sql = self.post_history_sql(post.is_some());
        let binds: Vec<&str> = std::iter::once(org.as_str())
            .chain(post.as_deref())
            .collect();
        let mut tenures = self.fetch_tenures(&sql, &binds).await?;
        link_successions(&mut tenures);
        Ok(tenures)
    }

    /// [`post_history`](Self::post_history)'s statement: `$1` the organization, `$2` the
    /// post `with_post`.
    fn post_history_sql(&self, with_post: bool) -> String {
        format!(
            "{TENURE_SELECT} WHERE {} {HISTORY_ORDER}",
            self.post_versions("$1", with_post.then_some("$2"))
        )
    }

    /// Every tenure of a person, oldest first.
    pub async fn person_history(&self, person: &str) -> Result<Vec<Tenure>, QueryError> {
        let person_id = self.resolve_person(person).await?;
        self.tenures(
            &format!("t.person_id = CAST($1 AS BIGINT) {HISTORY_ORDER}"),
            &[&person_id.to_string()],
        )
        .await
    }

    /// Probations in force on `on`: `running`, or `due` (past their end with no outcome).
    /// With `due_within`, only those whose end falls on or before `on + due_within` days.
    pub async fn probations(
        &self,
        on: NaiveDate,
        due_within: Option<u32>,
    ) -> Result<Vec<Probation>, QueryError> {
        let on_s = iso(on);
        let limit = due_within
            .and_then(|d| on.checked_add_days(chrono::Days::new(u64::from(d))))
            .map(iso)
            .unwrap_or_else(|| "9999-12-31".to_string());
        let tenures = self
            .tenures(
                &format!(
                    "{HOLDS_ON} AND t.probation_end IS NOT NULL AND t.probation_end <= $2 \
                     AND (t.probation_outcome IS NULL OR t.probation_outcome_on > $1) \
                     ORDER BY t.probation_end, t.person, t.tenure_id"
                ),
                &[&on_s, &limit],
            )
            .await?;
        Ok(tenures
            .into_iter()
            .map(|tenure| {
                let status = match tenure.probation_end.as_deref() {
                    Some(end) if end <= on_s.as_str() => ProbationStatus::Due,
                    _ => ProbationStatus::Running,
                };
                Probation { status, tenure }
            })
            .collect())
    }

    /// Every probation ever recorded (withdrawn ones excluded) with its status on `on`:
    /// `confirmed` / `terminated` once the outcome took effect, else `running` or `due`.
    pub async fn all_probations(&self, on: NaiveDate) -> Result<Vec<Probation>, QueryError> {
        let on_s = iso(on);
        let tenures = self
            .tenures(
                "t.probation_end IS NOT NULL AND t.withdrawn_position IS NULL \
                 ORDER BY t.probation_end, t.person, t.tenure_id",
                &[],
            )
            .await?;
        Ok(tenures
            .into_iter()
            .map(|tenure| {
                let decided = tenure
                    .probation_outcome_on
                    .as_deref()
                    .is_some_and(|d| d <= on_s.as_str());
                let status = match (tenure.probation_outcome.as_deref(), decided) {
                    (Some("confirmed"), true) => ProbationStatus::Confirmed,
                    (Some("terminated"), true) => ProbationStatus::Terminated,
                    _ if tenure
                        .probation_end
                        .as_deref()
                        .is_some_and(|e| e <= on_s.as_str()) =>
                    {
                        ProbationStatus::Due
                    }
                    _ => ProbationStatus::Running,
                };
                Probation { status, tenure }
            })
            .collect())
    }

    fn notice_from_row(r: &AnyRow) -> Result<NoticeView, sqlx::Error> {
        let json_list = |col: &str| -> Result<Vec<String>, sqlx::Error> {
            let text: String = r.try_get(col)?;
            serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
        };
        Ok(NoticeView {
            notice_id: r.try_get("notice_id")?,
            notice_key: r.try_get("notice_key")?,
            document_number: r.try_get("document_number")?,
            issuer: r.try_get("issuer")?,
            title: r.try_get("title")?,
            issued_on: r.try_get("issued_on")?,
            jurisdiction: r.try_get("jurisdiction")?,
            content_hash: r.try_get("content_hash")?,
            remarks: json_list("remarks")?,
            revokes: json_list("revokes")?,
            event_count: r.try_get("event_count")?,
            recorded_position: r.try_get("recorded_position")?,
            recorded_at: r.try_get("recorded_at")?,
            actor: r.try_get("actor")?,
            revoked_position: r.try_get("revoked_position")?,
            revoked_at: r.try_get("revoked_at")?,
            revoked_reason: r.try_get("revoked_reason")?,
            revoked_by: r.try_get("revoked_by")?,
            corrected_position: r.try_get("corrected_position")?,
            corrected_at: r.try_get("corrected_at")?,
            corrected_reason: r.try_get("corrected_reason")?,
            correction_count: r.try_get("correction_count")?,
            warnings: Vec::new(),
            source_text: None,
            events: Vec::new(),
        })
    }

    async fn warnings(&self, notice_id: &str) -> Result<Vec<NoticeWarning>, QueryError> {
        let rows = self
            .db
            .read_all(
                sqlx::query(&format!(
            "SELECT position, line, message FROM rm_notice_warnings WHERE notice_id = $1 AND {} \
             ORDER BY position, seq",
            self.recorded_filter("position")
        ))
                .bind(notice_id),
            )
            .await?;
        rows.iter()
            .map(NoticeWarning::from_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Warnings raised by the events at positions `first..=last`, with their notice ids,
    /// in order: what a bulk ingest reports for the notices it appended there.
    pub async fn warnings_between(
        &self,
        first: i64,
        last: i64,
    ) -> Result<Vec<(String, NoticeWarning)>, QueryError> {
        let rows = self
            .db
            .read_all(
                sqlx::query(
                    "SELECT notice_id, position, line, message FROM rm_notice_warnings \
                     WHERE position >= $1 AND position <= $2 ORDER BY position, seq",
                )
                .bind(first)
                .bind(last),
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("notice_id")?, NoticeWarning::from_row(r)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Notices in the order they were recorded, `limit` after the first `offset`, with
    /// their warnings; `with_detail` adds source text and events.
    pub async fn notices(
        &self,
        offset: i64,
        limit: i64,
        with_detail: bool,
    ) -> Result<Vec<NoticeView>, QueryError> {
        let rows = self
            .db
            .read_all(
                sqlx::query(&format!(
            "SELECT * FROM rm_notices WHERE {} ORDER BY recorded_position LIMIT $1 OFFSET $2",
            self.recorded_filter("recorded_position")
        ))
                .bind(limit)
                .bind(offset),
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.complete(row, with_detail).await?);
        }
        Ok(out)
    }

    async fn complete(&self, row: &AnyRow, with_detail: bool) -> Result<NoticeView, QueryError> {
        let mut view = Self::notice_from_row(row)?;
        let events = if with_detail || self.as_of.is_some() {
            self.db
                .aggregate_events("notice", &view.notice_id, 0)
                .await?
        } else {
            Vec::new()
        };
        let events = match self.as_of {
            Some(p) => {
                let known: Vec<StoredEvent> =
                    events.into_iter().filter(|e| e.position <= p).collect();
                as_known_then(&mut view, &known, p)?;
                known
            }
            None => events,
        };
        view.warnings = self.warnings(&view.notice_id).await?;
        if with_detail {
            view.source_text = source_text_of(&events)?;
            view.events = events;
        }
        Ok(view)
    }

    /// One notice by document number (文号), or by notice id or key.
    pub async fn notice(&self, reference: &str) -> Result<NoticeView, QueryError> {
        self.notice_with(reference, true).await
    }

    /// Like [`Queries::notice`] without its source text and events.
    pub async fn notice_summary(&self, reference: &str) -> Result<NoticeView, QueryError> {
        self.notice_with(reference, false).await
    }

    async fn notice_with(&self, reference: &str, detail: bool) -> Result<NoticeView, QueryError> {
        let reference = require("document_number", reference)?;
        let rows = self.db.read_all(sqlx::query(
            &format!("SELECT * FROM rm_notices WHERE (document_number = $1 OR notice_id = $1 OR notice_key = $1) AND {} \
             ORDER BY recorded_position", self.recorded_filter("recorded_position")),
        )
        .bind(&reference)
        )
        .await?;
        match rows.as_slice() {
            [] => Err(QueryError::NotFound(format!(
                "no notice {reference:?} is recorded"
            ))),
            [row] => self.complete(row, detail).await,
            many => Err(QueryError::Ambiguous {
                name: reference,
                candidates: many
                    .iter()
                    .map(|r| r.try_get::<String, _>("notice_key"))
                    .collect::<Result<_, _>>()?,
            }),
        }
    }

    /// Document numbers of recorded notices that state they revoke `document_number`.
    pub async fn notices_revoking(&self, document_number: &str) -> Result<Vec<String>, QueryError> {
        let pattern = revokes_pattern(document_number);
        let rows = self.db.read_all(sqlx::query(
            // `revokes <> '[]'` lets the partial index `rm_notices_revoking` serve this.
            "SELECT document_number, notice_key, revokes FROM rm_notices WHERE revokes <> '[]' \
             AND revokes LIKE $1 ORDER BY recorded_position",
        )
        .bind(&pattern)
        )
        .await?;
        let mut found = Vec::new();
        for row in &rows {
            let revokes: String = row.try_get("revokes")?;
            let list: Vec<String> = serde_json::from_str(&revokes).unwrap_or_default();
            if list.iter().any(|r| r == document_number) {
                let number: Option<String> = row.try_get("document_number")?;
                found.push(number.unwrap_or(row.try_get("notice_key")?));
            }
        }
        Ok(found)
    }

    /// Which of `document_numbers` a recorded notice revokes: [`Queries::notices_revoking`]
    /// asked of many numbers in one round trip per [`IN_LIST_IDS`] of them (a bulk ingest
    /// asks it of a few hundred texts at a time).
    pub async fn revoked_among(
        &self,
        document_numbers: &[&str],
    ) -> Result<HashSet<String>, QueryError> {
        let mut revoked = HashSet::new();
        let asked: HashSet<&str> = document_numbers.iter().copied().collect();
        for numbers in document_numbers.chunks(IN_LIST_IDS) {
            // Padded to one of a few sizes, so that the text is found in the statement cache.
            let numbers = padded_list(numbers);
            let patterns: Vec<String> = numbers.iter().map(|n| revokes_pattern(n)).collect();
            let sql = format!(
                "SELECT revokes FROM rm_notices WHERE revokes <> '[]' AND ({})",
                (1..=patterns.len())
                    .map(|i| format!("revokes LIKE ${i}"))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            );
            let mut query = sqlx::query(&sql);
            for pattern in &patterns {
                query = query.bind(pattern.as_str());
            }
            for row in self.db.read_all(query).await? {
                let revokes: String = row.try_get("revokes")?;
                let list: Vec<String> = serde_json::from_str(&revokes).unwrap_or_default();
                revoked.extend(list.into_iter().filter(|r| asked.contains(r.as_str())));
            }
        }
        Ok(revoked)
    }

    /// Notices recorded by a gRPC request id.
    pub async fn notices_for_request(
        &self,
        request_id: &str,
    ) -> Result<Vec<NoticeView>, QueryError> {
        let rows = self.db.read_all(sqlx::query(
            "SELECT n.* FROM rm_notices n JOIN rm_ingest_requests r ON r.notice_id = n.notice_id \
             WHERE r.request_id = $1 ORDER BY n.recorded_position",
        )
        .bind(request_id)
        )
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.complete(row, false).await?);
        }
        Ok(out)
    }

    /// Number of recorded notices.
    pub async fn notice_count(&self) -> Result<i64, QueryError> {
        let row = self
            .db
            .read_one(sqlx::query("SELECT COUNT(*) AS n FROM rm_notices"))
            .await?;
        Ok(row.try_get("n")?)
    }
}

/// Links each tenure to the one it replaced and the one that replaced it, per post:
/// first by notice (an appointment and a removal at the same post in the same notice, paired
/// in line order), then, for one-seat posts, by date (the latest earlier tenure that ended on
/// or before the start and has no successor yet).
fn link_successions(tenures: &mut [Tenure]) {
    let live: Vec<usize> = (0..tenures.len())
        .filter(|&i| tenures[i].withdrawn_position.is_none())
        .collect();
    let mut replaced: Vec<Option<usize>> = vec![None; tenures.len()];
    let mut taken = vec![false; tenures.len()];
    for &i in &live {
        let t = &tenures[i];
        let Some(notice) = t.appointing_notice.as_deref() else {
            continue;
        };
        // Earlier appointments to the same post in this notice take the earlier removals.
        let rank = live
            .iter()
            .filter(|&&j| {
                let u = &tenures[j];
                u.organization == t.organization
                    && u.post == t.post
                    && u.appointing_notice.as_deref() == Some(notice)
                    && u.appointing_line < t.appointing_line
            })
            .count();
        let mut removed: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&j| {
                let u = &tenures[j];
                j != i
                    && u.organization == t.organization
                    && u.post == t.post
                    && u.ending_notice.as_deref() == Some(notice)
            })
            .collect();
        removed.sort_by_key(|&j| (tenures[j].ending_line, tenures[j].tenure_id));
        if let Some(&j) = removed.get(rank) {
            replaced[i] = Some(j);
            taken[j] = true;
        }
    }
    for &i in &live {
        let t = &tenures[i];
        if replaced[i].is_some() || !crate::domain::posts::is_head_post(&t.post) {
            continue;
        }
        let Some(start) = t.start_date.as_deref() else {
            continue;
        };
        let before = live
            .iter()
            .copied()
            .filter(|&j| {
                let u = &tenures[j];
                j != i
                    && !taken[j]
                    && u.organization == t.organization
                    && u.post == t.post
                    && u.end_date.as_deref().is_some_and(|end| end <= start)
            })
            .max_by(|&a, &b| {
                (tenures[a].end_date.as_deref(), tenures[a].tenure_id)
                    .cmp(&(tenures[b].end_date.as_deref(), tenures[b].tenure_id))
            });
        if let Some(j) = before {
            replaced[i] = Some(j);
            taken[j] = true;
        }
    }
    for (i, j) in replaced.iter().enumerate() {
        if let Some(j) = *j {
            let (new_id, old_id) = (tenures[i].tenure_id, tenures[j].tenure_id);
            tenures[i].replaced_tenure_id = Some(old_id);
            tenures[j].replaced_by_tenure_id = Some(new_id);
        }
    }
}

/// A `LIKE` pattern for `rm_notices.revokes` rows that may list `document_number`:
/// `revokes` is a JSON array of document numbers, and the quoted number is matched whole
/// (the caller still checks the parsed list: `LIKE` does not know JSON's escapes).
fn revokes_pattern(document_number: &str) -> String {
    format!("%{}%", serde_json::Value::from(document_number))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A post's holders and its history, now and as of a position, and an organization's
    /// history, read `rm_tenures` by index, never by a scan: without the index on
    /// (organization, post) over every version (migration 0014) they go through the current
    /// versions' `rm_tenures_holding` and the primary key.
    #[tokio::test]
    async fn holders_and_post_histories_search_rm_tenures_by_index() {
        use crate::store::plans::{assert_searches_tenures, fresh_sqlite};
        let (_dir, db) = fresh_sqlite().await;
        let now = Queries::new(db.clone(), Arc::new(AliasTable::default()));
        let then = now.as_of_position(1000).unwrap();
        for queries in [&now, &then] {
            for sql in [
                queries.holders_sql(),
                queries.post_history_sql(true),
                queries.post_history_sql(false),
            ] {
                assert_searches_tenures(&db, &sql, &["t", "c"]).await;
            }
        }
        // Now, the holders are one range of the key's end column, not the post's history.
        let reads = assert_searches_tenures(&db, &now.holders_sql(), &["t"]).await;
        assert!(
            reads.len() == 1 && reads[0].contains("<expr>>?"),
            "{reads:?}"
        );
    }

    #[test]
    fn dates_must_be_iso_with_leading_zeros() {
        assert_eq!(
            parse_date("on", " 2023-05-01 ").unwrap(),
            NaiveDate::from_ymd_opt(2023, 5, 1).unwrap()
        );
        for bad in [
            "2023-5-1",
            "2023/05/01",
            "2023-02-30",
            "",
            "20230501",
            "２０２３-05-01",
        ] {
            assert!(parse_date("on", bad).is_err(), "{bad}");
        }
    }
}
