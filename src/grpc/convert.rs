//! Domain ⇄ protobuf conversions: the only place where prost types meet domain types.
//! Responses are built with `From` (they cannot fail); request fields that need
//! validation go through the `TryFrom` impls and helpers here, which fail with
//! INVALID_ARGUMENT naming the field.

use chrono::NaiveDate;
use tonic::Status;

use super::error::{invalid_argument, query_status};
use super::pb;
use crate::domain::content_hash;
use crate::notice::{Diagnostic, EventKind, Gender, Notice, ParsedEvent, Severity};
use crate::projections::queries::parse_date;
use crate::projections::{
    Freshness, NoticeView, NoticeWarning, PersonRecord, Probation, ProbationStatus, Tenure,
};
use crate::registry::IngestOutcome;
use crate::store::StoredEvent;

/// Longest accepted `request_id`; a UUID needs 36.
const MAX_REQUEST_ID_CHARS: usize = 128;

/// A `YYYY-MM-DD` request date; empty means today (server local time), as the CLI does.
pub fn date_or_today(field: &'static str, value: &str) -> Result<NaiveDate, Status> {
    if value.trim().is_empty() {
        return Ok(chrono::Local::now().date_naive());
    }
    parse_date(field, value).map_err(|e| query_status(e, field))
}

/// A lookup's `min_position`: 0 asks for the latest state, a position for any state at or
/// after it; not with `as_of` (an answer as of a past point is not about the latest state).
pub fn freshness(min_position: i64, with_as_of: bool) -> Result<Freshness, Status> {
    match min_position {
        0 => Ok(Freshness::Latest),
        _ if with_as_of => Err(invalid_argument(
            "min_position",
            "not with as_of: an answer as of a past point is not about the latest state",
        )),
        p if p > 0 => Ok(Freshness::AtLeast(p)),
        _ => Err(invalid_argument(
            "min_position",
            "a log position is positive (0: the latest state)",
        )),
    }
}

/// A validated IngestNotice `request_id`: `None` when the client sent none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub Option<String>);

impl TryFrom<&str> for RequestId {
    type Error = Status;

    fn try_from(value: &str) -> Result<Self, Status> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(Self(None));
        }
        if value.chars().count() > MAX_REQUEST_ID_CHARS {
            return Err(super::error::invalid_argument(
                "request_id",
                format!("longer than {MAX_REQUEST_ID_CHARS} characters"),
            ));
        }
        Ok(Self(Some(value.to_string())))
    }
}

/// Positions and line numbers never approach `i64::MAX`; saturate rather than panic.
fn int64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl From<&Notice> for pb::ParsedNotice {
    fn from(n: &Notice) -> Self {
        Self {
            document_number: n.document_number.clone().unwrap_or_default(),
            issuer: n.issuer.clone().unwrap_or_default(),
            title: n.title.clone(),
            issued_on: n
                .issued_on
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
            remarks: n.remarks.clone(),
            revokes: n.revokes.clone(),
            events: n.events.iter().map(pb::ParsedEvent::from).collect(),
            line: int64(n.line),
            content_hash: content_hash(n),
        }
    }
}

impl From<&ParsedEvent> for pb::ParsedEvent {
    fn from(e: &ParsedEvent) -> Self {
        let kind = match e.kind {
            EventKind::Appointment => pb::parsed_event::Kind::Appointment,
            EventKind::Removal => pb::parsed_event::Kind::Removal,
            EventKind::Confirmation => pb::parsed_event::Kind::Confirmation,
        };
        let gender = match e.gender {
            None => pb::parsed_event::Gender::Unspecified,
            Some(Gender::Female) => pb::parsed_event::Gender::Female,
            Some(Gender::Male) => pb::parsed_event::Gender::Male,
        };
        Self {
            kind: kind.into(),
            person: e.person.clone(),
            gender: gender.into(),
            organization: e.organization.clone(),
            organization_canonical: e.organization_canonical.clone(),
            organization_aliases: e.organization_aliases.clone(),
            post: e.post.clone(),
            concurrent: e.concurrent,
            probation_months: e
                .probation_months
                .map(|m| i32::try_from(m).unwrap_or(i32::MAX)),
            line: int64(e.line),
            clause: e.clause.clone(),
            note: e.note.clone().unwrap_or_default(),
            effective_on: e.effective_on.clone().unwrap_or_default(),
        }
    }
}

impl From<&Diagnostic> for pb::Diagnostic {
    fn from(d: &Diagnostic) -> Self {
        let severity = match d.severity {
            Severity::Warning => pb::diagnostic::Severity::Warning,
            Severity::Error => pb::diagnostic::Severity::Error,
        };
        Self {
            line: int64(d.line),
            severity: severity.into(),
            message: d.message.clone(),
        }
    }
}

impl From<NoticeWarning> for pb::Warning {
    fn from(w: NoticeWarning) -> Self {
        Self {
            position: w.position,
            line: w.line,
            message: w.message,
        }
    }
}

impl From<IngestOutcome> for pb::IngestResult {
    fn from(o: IngestOutcome) -> Self {
        Self {
            notice_id: o.notice_id,
            document_number: o.document_number.unwrap_or_default(),
            title: o.title,
            already_recorded: o.already_recorded,
            events_appended: int64(o.events_appended),
            first_position: o.first_position,
            last_position: o.last_position,
            warnings: o.warnings.into_iter().map(Into::into).collect(),
            corrected: o.corrected,
            revoked_notices: o.revoked_notices,
            notes: o.notes,
        }
    }
}

impl From<PersonRecord> for pb::Person {
    fn from(p: PersonRecord) -> Self {
        Self {
            person_id: p.person_id,
            name: p.name,
            gender: p.gender.unwrap_or_default(),
            jurisdiction: p.jurisdiction.unwrap_or_default(),
        }
    }
}

impl From<StoredEvent> for pb::Event {
    fn from(e: StoredEvent) -> Self {
        Self {
            position: e.position,
            aggregate_type: e.aggregate_type,
            aggregate_id: e.aggregate_id,
            sequence: e.sequence,
            event_type: e.event_type,
            event_version: e.event_version,
            payload_json: e.payload,
            metadata_json: e.metadata,
            recorded_at: e.recorded_at,
            actor: e.actor,
            document_number: e.document_number.unwrap_or_default(),
            source_line: e.source_line,
            clause: e.clause.unwrap_or_default(),
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

/// A notice's view as the API shows it, with the log position the view is exactly as of.
pub fn notice(v: NoticeView, exactly_as_of: i64) -> pb::Notice {
    let revocation = v.revoked_position.map(|position| pb::Revocation {
        position,
        revoked_at: v.revoked_at.clone().unwrap_or_default(),
        reason: v.revoked_reason.clone().unwrap_or_default(),
        by_notice: v.revoked_by.clone().unwrap_or_default(),
    });
    let correction = v.corrected_position.map(|position| pb::Correction {
        position,
        corrected_at: v.corrected_at.clone().unwrap_or_default(),
        reason: v.corrected_reason.clone().unwrap_or_default(),
        count: v.correction_count,
    });
    pb::Notice {
        correction,
        notice_id: v.notice_id,
        notice_key: v.notice_key,
        document_number: v.document_number.unwrap_or_default(),
        issuer: v.issuer.unwrap_or_default(),
        title: v.title,
        issued_on: v.issued_on.unwrap_or_default(),
        jurisdiction: v.jurisdiction.unwrap_or_default(),
        content_hash: v.content_hash,
        remarks: v.remarks,
        revokes: v.revokes,
        event_count: v.event_count,
        recorded_position: v.recorded_position,
        recorded_at: v.recorded_at,
        actor: v.actor,
        revocation,
        warnings: v.warnings.into_iter().map(Into::into).collect(),
        source_text: v.source_text.unwrap_or_default(),
        events: v.events.into_iter().map(Into::into).collect(),
        position: exactly_as_of,
    }
}

/// The clause reference of one end of a tenure; `None` when the registry never saw it.
fn clause(
    notice: Option<String>,
    line: Option<i64>,
    clause: Option<String>,
) -> Option<pb::NoticeClause> {
    if notice.is_none() && clause.is_none() {
        return None;
    }
    Some(pb::NoticeClause {
        notice: notice.unwrap_or_default(),
        line,
        clause: clause.unwrap_or_default(),
    })
}

impl From<Tenure> for pb::Tenure {
    fn from(t: Tenure) -> Self {
        Self {
            tenure_id: t.tenure_id,
            person: t.person,
            organization: t.organization,
            organization_as_written: t.organization_as_written,
            post: t.post,
            concurrent: t.concurrent,
            start_date: t.start_date,
            end_date: t.end_date,
            probation_months: t
                .probation_months
                .map(|m| i32::try_from(m).unwrap_or(i32::MAX)),
            probation_end: t.probation_end,
            probation_outcome: t.probation_outcome,
            probation_outcome_on: t.probation_outcome_on,
            note: t.note.unwrap_or_default(),
            end_note: t.end_note.unwrap_or_default(),
            appointed_by: clause(t.appointing_notice, t.appointing_line, t.appointing_clause),
            ended_by: clause(t.ending_notice, t.ending_line, t.ending_clause),
            recorded_position: t.recorded_position,
            recorded_at: t.recorded_at.unwrap_or_default(),
            ended_position: t.ended_position,
            ended_recorded_at: t.ended_recorded_at.unwrap_or_default(),
            withdrawn_position: t.withdrawn_position,
            withdrawn_reason: t.withdrawn_reason.unwrap_or_default(),
            withdrawn_at: t.withdrawn_at.unwrap_or_default(),
            withdrawn_by: t.withdrawn_by.unwrap_or_default(),
            end_cause: t.end_cause.unwrap_or_default(),
            replaced_tenure_id: t.replaced_tenure_id,
            replaced_by_tenure_id: t.replaced_by_tenure_id,
            person_id: t.person_id,
            seat_conflict: t.seat_conflict,
        }
    }
}

impl From<Probation> for pb::Probation {
    fn from(p: Probation) -> Self {
        let status = match p.status {
            ProbationStatus::Running => pb::probation::Status::Running,
            ProbationStatus::Due => pb::probation::Status::Due,
            ProbationStatus::Confirmed => pb::probation::Status::Confirmed,
            ProbationStatus::Terminated => pb::probation::Status::Terminated,
        };
        Self {
            status: status.into(),
            tenure: Some(p.tenure.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_dates_mean_today_and_bad_dates_name_the_field() {
        assert_eq!(
            date_or_today("on_date", "").unwrap(),
            chrono::Local::now().date_naive()
        );
        assert_eq!(
            date_or_today("on_date", "2023-05-01").unwrap(),
            NaiveDate::from_ymd_opt(2023, 5, 1).unwrap()
        );
        let err = date_or_today("on_date", "2023/05/01").unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().starts_with("on_date"));
    }

    #[test]
    fn request_ids_are_optional_and_bounded() {
        assert_eq!(RequestId::try_from("  ").unwrap(), RequestId(None));
        assert_eq!(
            RequestId::try_from("abc").unwrap(),
            RequestId(Some("abc".into()))
        );
        assert!(RequestId::try_from("x".repeat(129).as_str()).is_err());
    }
}
