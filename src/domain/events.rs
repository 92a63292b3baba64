//! The events renmian stores. They are a compatibility boundary: each variant's
//! `event_type` is its name and never changes; a change of shape gets a new version and an
//! upcaster (see `store::upcasters`), never an edit in place.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::notice::{Diagnostic, EventKind, Gender};

/// Current version of every event type. Old versions are upcast on load.
pub const EVENT_VERSION: &str = "1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RegistryEvent {
    /// A notice was accepted; always the first event of a notice aggregate.
    NoticeRecorded(NoticeRecorded),
    /// Someone was appointed to a post (任, 兼任, 聘任, 挂职).
    AppointmentRecorded(PostFact),
    /// Someone was removed from a post (免去, 不再担任, 解聘, 终止试用期).
    RemovalRecorded(PostFact),
    /// A probation ended with confirmation (试用期满…正式任职).
    ConfirmationRecorded(PostFact),
    /// The notice was revoked: none of its facts hold any more, from this record on. Followed
    /// by one `FactWithdrawn` per fact that was in force.
    NoticeRevoked(NoticeRevoked),
    /// A corrected re-issue of the notice (same key, changed content) was accepted. Followed
    /// by `FactWithdrawn` for facts the correction drops and ordinary fact events for facts
    /// it adds; facts it keeps are untouched.
    NoticeCorrected(NoticeCorrected),
    /// One fact of the notice no longer holds (revocation or correction).
    FactWithdrawn(FactWithdrawn),
    /// An operator decided two person records are one person (同名 resolved).
    PersonsMerged(PersonsMerged),
    /// An operator decided some tenures of a person record belong to another person of the
    /// same name.
    PersonSplit(PersonSplit),
}

impl RegistryEvent {
    /// The source line and clause of the event, for the event log's provenance columns.
    pub fn source(&self) -> (Option<usize>, Option<&str>) {
        match self {
            Self::NoticeRecorded(n) => (Some(n.line), None),
            Self::AppointmentRecorded(f)
            | Self::RemovalRecorded(f)
            | Self::ConfirmationRecorded(f) => (Some(f.line), Some(f.clause.as_str())),
            Self::FactWithdrawn(w) => (Some(w.fact.line), Some(w.fact.clause.as_str())),
            Self::NoticeRevoked(_) | Self::PersonsMerged(_) | Self::PersonSplit(_) => (None, None),
            Self::NoticeCorrected(c) => (Some(c.line), None),
        }
    }

    pub fn as_post_fact(&self) -> Option<&PostFact> {
        match self {
            Self::AppointmentRecorded(f)
            | Self::RemovalRecorded(f)
            | Self::ConfirmationRecorded(f) => Some(f),
            _ => None,
        }
    }

    pub fn from_fact(kind: EventKind, fact: PostFact) -> Self {
        match kind {
            EventKind::Appointment => Self::AppointmentRecorded(fact),
            EventKind::Removal => Self::RemovalRecorded(fact),
            EventKind::Confirmation => Self::ConfirmationRecorded(fact),
        }
    }
}

impl DomainEvent for RegistryEvent {
    fn event_type(&self) -> String {
        match self {
            Self::NoticeRecorded(_) => "NoticeRecorded",
            Self::AppointmentRecorded(_) => "AppointmentRecorded",
            Self::RemovalRecorded(_) => "RemovalRecorded",
            Self::ConfirmationRecorded(_) => "ConfirmationRecorded",
            Self::NoticeRevoked(_) => "NoticeRevoked",
            Self::NoticeCorrected(_) => "NoticeCorrected",
            Self::FactWithdrawn(_) => "FactWithdrawn",
            Self::PersonsMerged(_) => "PersonsMerged",
            Self::PersonSplit(_) => "PersonSplit",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeRecorded {
    /// The idempotency key (`issuer|文号` or `sha256:…`).
    pub key: String,
    pub document_number: Option<String>,
    pub issuer: Option<String>,
    pub title: String,
    /// ISO date of the signature line.
    pub issued_on: Option<String>,
    /// Jurisdiction of the issuer (临湘市), used to qualify 市/县/区 names.
    pub jurisdiction: Option<String>,
    pub remarks: Vec<String>,
    pub revokes: Vec<String>,
    /// Hex SHA-256 of the normalised notice text.
    pub content_hash: String,
    /// The notice text as received (title to date line).
    pub source_text: String,
    /// Line of the input where the notice starts.
    pub line: usize,
    /// The parser's diagnostics for this notice's lines.
    pub diagnostics: Vec<Diagnostic>,
}

/// One person, one post, one clause: the payload of appointment, removal and confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostFact {
    pub person: String,
    pub gender: Option<Gender>,
    /// As written in the notice.
    pub organization: String,
    pub organization_canonical: String,
    #[serde(default)]
    pub organization_aliases: Vec<String>,
    pub post: String,
    pub concurrent: bool,
    pub probation_months: Option<u32>,
    pub note: Option<String>,
    /// The date the fact takes effect: the clause's explicit date or the notice's issue date
    /// (`YYYY-MM-DD`, or `YYYY-MM`/`YYYY` when only that precision is known).
    pub effective_on: Option<String>,
    pub line: usize,
    pub clause: String,
}

/// The new content of a corrected notice and why it was corrected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeCorrected {
    pub reason: String,
    pub title: String,
    pub issued_on: Option<String>,
    pub remarks: Vec<String>,
    /// Hex SHA-256 of the corrected text's normal form.
    pub content_hash: String,
    pub source_text: String,
    pub line: usize,
    /// How many facts the correction withdraws and adds (the events that follow).
    pub withdrawn: usize,
    pub added: usize,
}

/// A fact that stops holding: which kind it was, the fact as recorded, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactWithdrawn {
    pub kind: EventKind,
    pub fact: PostFact,
    /// `revoked: …` or `corrected: …`.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeRevoked {
    pub reason: String,
    /// The revoking notice, when the revocation came as a notice.
    pub by_notice: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonsMerged {
    /// The person record that is retired.
    pub person_id: i64,
    /// The person record that remains.
    pub into: i64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonSplit {
    /// The person record some tenures are taken from.
    pub person_id: i64,
    /// The tenures that belong to the new person (whose id is this event's position).
    pub tenure_ids: Vec<i64>,
    pub reason: String,
}
