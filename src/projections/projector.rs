//! Applies stored events to the read models.
//!
//! Each catch-up transaction starts by updating the checkpoint row: on PostgreSQL that row
//! lock serialises projectors across processes, on SQLite the write lock does. The events
//! read after it are therefore applied exactly once, in position order.

use chrono::{Months, NaiveDate};
use cqrs_es::persist::EventUpcaster;
use sqlx::{Any, Row, Transaction};

use crate::domain::{NoticeRecorded, NoticeRevoked, PostFact, RegistryEvent};
use crate::store::{repository::to_serialized, Database, StoreError, StoredEvent};

/// Name of the registry projection's row in `projection_checkpoint`.
pub const CHECKPOINT: &str = "registry";

/// Events applied per transaction during catch-up and rebuild.
const BATCH: i64 = 2000;

/// Read-model tables, in dependency order (also the export order).
pub const READ_MODEL_TABLES: &[&str] = &[
    "rm_notices",
    "rm_notice_warnings",
    "rm_organizations",
    "rm_organization_aliases",
    "rm_persons",
    "rm_posts",
    "rm_tenures",
    "rm_ingest_requests",
];

#[derive(Clone)]
pub struct Projector {
    db: Database,
    upcasters: std::sync::Arc<Vec<Box<dyn EventUpcaster>>>,
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
    let mut serialized = to_serialized(event)
        .map_err(|e| StoreError::Corrupt(format!("position {}: {e}", event.position)))?;
    for upcaster in upcasters {
        if upcaster.can_upcast(&serialized.event_type, &serialized.event_version) {
            serialized = upcaster.upcast(serialized);
        }
    }
    serde_json::from_value(serialized.payload)
        .map_err(|e| StoreError::Corrupt(format!("position {}: {e}", event.position)))
}

impl Projector {
    pub fn new(db: Database) -> Self {
        Self {
            db,
            upcasters: std::sync::Arc::new(crate::store::upcasters()),
        }
    }

    /// Last position applied to the read models.
    pub async fn checkpoint(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT position FROM projection_checkpoint WHERE name = $1")
            .bind(CHECKPOINT)
            .fetch_one(self.db.pool())
            .await?;
        Ok(row.try_get("position")?)
    }

    /// Applies every event after the checkpoint. Returns the new checkpoint.
    pub async fn catch_up(&self) -> Result<i64, StoreError> {
        loop {
            let mut tx = self.db.pool().begin().await?;
            let checkpoint = lock_checkpoint(&mut tx).await?;
            let applied = self.apply_batch(&mut tx, checkpoint).await?;
            tx.commit().await?;
            match applied {
                Some(last) => tracing::debug!(checkpoint = last, "projection caught up a batch"),
                None => return Ok(checkpoint),
            }
        }
    }

    /// Drops every read model and replays the whole log in one transaction: readers see the
    /// old read models until the new ones are complete.
    pub async fn rebuild(&self) -> Result<i64, StoreError> {
        let mut tx = self.db.pool().begin().await?;
        lock_checkpoint(&mut tx).await?;
        for table in READ_MODEL_TABLES.iter().rev() {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&mut *tx)
                .await?;
        }
        let mut checkpoint = 0;
        while let Some(last) = self.apply_batch(&mut tx, checkpoint).await? {
            checkpoint = last;
        }
        tx.commit().await?;
        Ok(checkpoint)
    }

    /// Applies up to [`BATCH`] events after `after` and moves the checkpoint; `None` when
    /// there was nothing to apply.
    async fn apply_batch(
        &self,
        tx: &mut Transaction<'_, Any>,
        after: i64,
    ) -> Result<Option<i64>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM events WHERE position > $1 ORDER BY position LIMIT $2",
            crate::store::log::EVENT_COLUMNS
        ))
        .bind(after)
        .bind(BATCH)
        .fetch_all(&mut **tx)
        .await?;
        let events = rows
            .iter()
            .map(StoredEvent::from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(None);
        };
        for event in &events {
            let decoded = decode_event(event, &self.upcasters)?;
            apply(tx, event, &decoded).await?;
        }
        sqlx::query("UPDATE projection_checkpoint SET position = $1 WHERE name = $2")
            .bind(last)
            .bind(CHECKPOINT)
            .execute(&mut **tx)
            .await?;
        Ok(Some(last))
    }
}

async fn lock_checkpoint(tx: &mut Transaction<'_, Any>) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "UPDATE projection_checkpoint SET position = position WHERE name = $1 RETURNING position",
    )
    .bind(CHECKPOINT)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get("position")?)
}

/// Context of the notice an event belongs to, from `rm_notices`.
struct NoticeContext {
    reference: String,
}

async fn notice_context(
    tx: &mut Transaction<'_, Any>,
    notice_id: &str,
) -> Result<NoticeContext, StoreError> {
    let row =
        sqlx::query("SELECT document_number, notice_key FROM rm_notices WHERE notice_id = $1")
            .bind(notice_id)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("fact of unknown notice {notice_id}")))?;
    let number: Option<String> = row.try_get("document_number")?;
    let key: String = row.try_get("notice_key")?;
    Ok(NoticeContext {
        reference: number.unwrap_or(key),
    })
}

async fn apply(
    tx: &mut Transaction<'_, Any>,
    event: &StoredEvent,
    decoded: &RegistryEvent,
) -> Result<(), StoreError> {
    match decoded {
        RegistryEvent::NoticeRecorded(n) => record_notice(tx, event, n).await,
        RegistryEvent::AppointmentRecorded(f) => {
            let ctx = fact_prelude(tx, event, f).await?;
            appoint(tx, event, f, &ctx).await
        }
        RegistryEvent::RemovalRecorded(f) => {
            let ctx = fact_prelude(tx, event, f).await?;
            remove(tx, event, f, &ctx).await
        }
        RegistryEvent::ConfirmationRecorded(f) => {
            let ctx = fact_prelude(tx, event, f).await?;
            confirm(tx, event, f, &ctx).await
        }
        RegistryEvent::NoticeRevoked(r) => revoke(tx, event, r).await,
    }
}

async fn record_notice(
    tx: &mut Transaction<'_, Any>,
    event: &StoredEvent,
    n: &NoticeRecorded,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO rm_notices (notice_id, notice_key, document_number, issuer, title, issued_on, \
         jurisdiction, content_hash, source_text, remarks, revokes, event_count, recorded_position, \
         recorded_at, actor) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12, $13, $14)",
    )
    .bind(&event.aggregate_id)
    .bind(&n.key)
    .bind(&n.document_number)
    .bind(&n.issuer)
    .bind(&n.title)
    .bind(&n.issued_on)
    .bind(&n.jurisdiction)
    .bind(&n.content_hash)
    .bind(&n.source_text)
    .bind(serde_json::to_string(&n.remarks).unwrap_or_default())
    .bind(serde_json::to_string(&n.revokes).unwrap_or_default())
    .bind(event.position)
    .bind(&event.recorded_at)
    .bind(&event.actor)
    .execute(&mut **tx)
    .await?;
    let metadata: serde_json::Value = serde_json::from_str(&event.metadata)
        .map_err(|e| StoreError::Corrupt(format!("position {}: {e}", event.position)))?;
    if let Some(request_id) = metadata.get("request_id").and_then(|v| v.as_str()) {
        sqlx::query(
            "INSERT INTO rm_ingest_requests (request_id, notice_id, position) VALUES ($1, $2, $3) \
             ON CONFLICT (request_id, notice_id) DO NOTHING",
        )
        .bind(request_id)
        .bind(&event.aggregate_id)
        .bind(event.position)
        .execute(&mut **tx)
        .await?;
    }
    for d in &n.diagnostics {
        warn(tx, event, Some(d.line), &format!("parser: {}", d.message)).await?;
    }
    Ok(())
}

/// Registers the organization, its names, the person and the post of a fact; returns the
/// notice context with the canonical organization the fact resolves to.
struct FactContext {
    notice: NoticeContext,
    organization: String,
}

async fn fact_prelude(
    tx: &mut Transaction<'_, Any>,
    event: &StoredEvent,
    f: &PostFact,
) -> Result<FactContext, StoreError> {
    let notice = notice_context(tx, &event.aggregate_id).await?;
    sqlx::query("UPDATE rm_notices SET event_count = event_count + 1 WHERE notice_id = $1")
        .bind(&event.aggregate_id)
        .execute(&mut **tx)
        .await?;
    // A name already known as another organization's alias resolves to that organization,
    // so 市人民防空办公室 lands on 临湘市国防动员办公室 once the notice has said they are one.
    let known: Option<String> =
        sqlx::query("SELECT canonical_name FROM rm_organization_aliases WHERE alias = $1")
            .bind(&f.organization_canonical)
            .fetch_optional(&mut **tx)
            .await?
            .map(|r| r.try_get("canonical_name"))
            .transpose()?;
    let organization = known.unwrap_or_else(|| f.organization_canonical.clone());
    let jurisdiction: Option<String> =
        sqlx::query("SELECT jurisdiction FROM rm_notices WHERE notice_id = $1")
            .bind(&event.aggregate_id)
            .fetch_one(&mut **tx)
            .await?
            .try_get("jurisdiction")?;
    sqlx::query(
        "INSERT INTO rm_organizations (canonical_name, jurisdiction, first_position) \
         VALUES ($1, $2, $3) ON CONFLICT (canonical_name) DO NOTHING",
    )
    .bind(&organization)
    .bind(&jurisdiction)
    .bind(event.position)
    .execute(&mut **tx)
    .await?;
    let mut names = vec![
        organization.clone(),
        f.organization_canonical.clone(),
        f.organization.clone(),
    ];
    names.extend(f.organization_aliases.iter().cloned());
    // Names relative to the issuer's jurisdiction (市教育体育局) mean different bodies in
    // different jurisdictions; queries qualify them instead of looking them up.
    names.retain(|n| !n.starts_with(['市', '县', '区']));
    names.dedup();
    for name in names {
        sqlx::query(
            "INSERT INTO rm_organization_aliases (alias, canonical_name, first_position) \
             VALUES ($1, $2, $3) ON CONFLICT (alias) DO NOTHING",
        )
        .bind(&name)
        .bind(&organization)
        .bind(event.position)
        .execute(&mut **tx)
        .await?;
    }
    let gender = f.gender.map(|g| {
        serde_json::to_value(g)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    });
    sqlx::query(
        "INSERT INTO rm_persons (name, gender, first_position) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(&f.person)
    .bind(&gender)
    .bind(event.position)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO rm_posts (organization, post, first_position) VALUES ($1, $2, $3) \
         ON CONFLICT (organization, post) DO NOTHING",
    )
    .bind(&organization)
    .bind(&f.post)
    .bind(event.position)
    .execute(&mut **tx)
    .await?;
    Ok(FactContext {
        notice,
        organization,
    })
}

/// The open tenure of `person` in `post` at `organization`, latest first.
async fn open_tenure(
    tx: &mut Transaction<'_, Any>,
    person: &str,
    organization: &str,
    post: &str,
) -> Result<Option<(i64, Option<String>, Option<String>, Option<String>)>, StoreError> {
    let row = sqlx::query(
        "SELECT tenure_id, start_date, probation_end, probation_outcome FROM rm_tenures \
         WHERE person = $1 AND organization = $2 AND post = $3 AND end_date IS NULL \
         AND revoked_position IS NULL ORDER BY tenure_id DESC LIMIT 1",
    )
    .bind(person)
    .bind(organization)
    .bind(post)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| {
        Ok((
            r.try_get("tenure_id")?,
            r.try_get("start_date")?,
            r.try_get("probation_end")?,
            r.try_get("probation_outcome")?,
        ))
    })
    .transpose()
    .map_err(|e: sqlx::Error| e.into())
}

/// `start` plus `months`, for full dates only (a month-precision start has no exact end).
pub fn add_months(start: &str, months: u32) -> Option<String> {
    let date = NaiveDate::parse_from_str(start, "%Y-%m-%d").ok()?;
    date.checked_add_months(Months::new(months))
        .map(|d| d.format("%Y-%m-%d").to_string())
}

async fn appoint(
    tx: &mut Transaction<'_, Any>,
    event: &StoredEvent,
    f: &PostFact,
    ctx: &FactContext,
) -> Result<(), StoreError> {
    if let Some((tenure, start, _, _)) =
        open_tenure(tx, &f.person, &ctx.organization, &f.post).await?
    {
        let since = start.unwrap_or_else(|| "an unknown date".to_string());
        return warn(
            tx,
            event,
            Some(f.line),
            &format!(
                "{} already holds {} {} (since {since}, tenure {tenure}); the appointment is recorded and the existing tenure kept",
                f.person, ctx.organization, f.post
            ),
        )
        .await;
    }
    let probation_end = match (f.probation_months, f.effective_on.as_deref()) {
        (Some(m), Some(start)) => add_months(start, m),
        _ => None,
    };
    sqlx::query(
        "INSERT INTO rm_tenures (tenure_id, person, organization, organization_as_written, post, \
         concurrent, start_date, probation_months, probation_end, note, appointing_notice, \
         appointing_line, appointing_clause, recorded_position) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(event.position)
    .bind(&f.person)
    .bind(&ctx.organization)
    .bind(&f.organization)
    .bind(&f.post)
    .bind(i64::from(f.concurrent))
    .bind(&f.effective_on)
    .bind(f.probation_months.map(i64::from))
    .bind(&probation_end)
    .bind(&f.note)
    .bind(&ctx.notice.reference)
    .bind(i64::try_from(f.line).unwrap_or(i64::MAX))
    .bind(&f.clause)
    .bind(event.position)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn remove(
    tx: &mut Transaction<'_, Any>,
    event: &StoredEvent,
    f: &PostFact,
    ctx: &FactContext,
) -> Result<(), StoreError> {
    let line = i64::try_from(f.line).unwrap_or(i64::MAX);
    let terminated_by_note = f.note.as_deref() == Some("终止试用期");
    match open_tenure(tx, &f.person, &ctx.organization, &f.post).await? {
        Some((tenure, _, probation_end, outcome)) => {
            // Removed while on probation: the probation ends as terminated.
            let on_probation = probation_end.is_some() && outcome.is_none();
            let terminated = on_probation
                && (terminated_by_note
                    || matches!((&f.effective_on, &probation_end), (Some(d), Some(end)) if d < end));
            sqlx::query(
                "UPDATE rm_tenures SET end_date = $1, end_note = $2, ending_notice = $3, \
                 ending_line = $4, ending_clause = $5, ended_position = $6, \
                 probation_outcome = CASE WHEN $7 = 1 THEN 'terminated' ELSE probation_outcome END, \
                 probation_outcome_on = CASE WHEN $7 = 1 THEN $1 ELSE probation_outcome_on END \
                 WHERE tenure_id = $8",
            )
            .bind(&f.effective_on)
            .bind(&f.note)
            .bind(&ctx.notice.reference)
            .bind(line)
            .bind(&f.clause)
            .bind(event.position)
            .bind(i64::from(terminated))
            .bind(tenure)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }
        None => {
            sqlx::query(
                "INSERT INTO rm_tenures (tenure_id, person, organization, organization_as_written, \
                 post, concurrent, start_date, end_date, end_note, ending_notice, ending_line, \
                 ending_clause, recorded_position, ended_position) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8, $9, $10, $11, $1, $1)",
            )
            .bind(event.position)
            .bind(&f.person)
            .bind(&ctx.organization)
            .bind(&f.organization)
            .bind(&f.post)
            .bind(i64::from(f.concurrent))
            .bind(&f.effective_on)
            .bind(&f.note)
            .bind(&ctx.notice.reference)
            .bind(line)
            .bind(&f.clause)
            .execute(&mut **tx)
            .await?;
            warn(
                tx,
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
    tx: &mut Transaction<'_, Any>,
    event: &StoredEvent,
    f: &PostFact,
    ctx: &FactContext,
) -> Result<(), StoreError> {
    match open_tenure(tx, &f.person, &ctx.organization, &f.post).await? {
        Some((tenure, _, Some(_), None)) => {
            sqlx::query(
                "UPDATE rm_tenures SET probation_outcome = 'confirmed', probation_outcome_on = $1 \
                 WHERE tenure_id = $2",
            )
            .bind(&f.effective_on)
            .bind(tenure)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }
        _ => {
            warn(
                tx,
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

async fn revoke(
    tx: &mut Transaction<'_, Any>,
    event: &StoredEvent,
    r: &NoticeRevoked,
) -> Result<(), StoreError> {
    let ctx = notice_context(tx, &event.aggregate_id).await?;
    sqlx::query(
        "UPDATE rm_notices SET revoked_position = $1, revoked_at = $2, revoked_reason = $3, \
         revoked_by = $4 WHERE notice_id = $5",
    )
    .bind(event.position)
    .bind(&event.recorded_at)
    .bind(&r.reason)
    .bind(r.by_notice.as_deref().unwrap_or(&event.actor))
    .bind(&event.aggregate_id)
    .execute(&mut **tx)
    .await?;
    // The notice's appointments no longer hold; the tenures it ended are open again.
    sqlx::query("UPDATE rm_tenures SET revoked_position = $1 WHERE appointing_notice = $2")
        .bind(event.position)
        .bind(&ctx.reference)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE rm_tenures SET end_date = NULL, end_note = NULL, ending_notice = NULL, \
         ending_line = NULL, ending_clause = NULL, ended_position = NULL \
         WHERE ending_notice = $1 AND start_date IS NOT NULL",
    )
    .bind(&ctx.reference)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE rm_tenures SET revoked_position = $1 WHERE ending_notice = $2 AND start_date IS NULL",
    )
    .bind(event.position)
    .bind(&ctx.reference)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn warn(
    tx: &mut Transaction<'_, Any>,
    event: &StoredEvent,
    line: Option<usize>,
    message: &str,
) -> Result<(), StoreError> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM rm_notice_warnings WHERE position = $1")
        .bind(event.position)
        .fetch_one(&mut **tx)
        .await?;
    let seq: i64 = row.try_get("n")?;
    sqlx::query(
        "INSERT INTO rm_notice_warnings (position, seq, notice_id, line, message) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(event.position)
    .bind(seq)
    .bind(&event.aggregate_id)
    .bind(line.and_then(|l| i64::try_from(l).ok()))
    .bind(message)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probation_end_is_counted_in_calendar_months() {
        assert_eq!(add_months("2023-04-24", 12).as_deref(), Some("2024-04-24"));
        assert_eq!(add_months("2024-01-31", 1).as_deref(), Some("2024-02-29"));
        assert_eq!(add_months("2023-05", 12), None);
    }
}
