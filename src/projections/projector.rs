//! Applies stored events to the read models.
//!
//! Each catch-up transaction starts by updating the checkpoint row: on PostgreSQL that row
//! lock serialises projectors across processes, on SQLite the write lock does. The events
//! read after it are therefore applied exactly once, in position order.

use std::collections::{HashMap, HashSet};

use chrono::{Months, NaiveDate};
use cqrs_es::persist::EventUpcaster;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::domain::events::{FactWithdrawn, NoticeCorrected, PersonSplit, PersonsMerged};
use crate::domain::posts::is_head_post;
use crate::domain::{NoticeRecorded, NoticeRevoked, PostFact, RegistryEvent};
use crate::notice::EventKind;
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
        let mut cache = Cache::default();
        for (i, event) in events.iter().enumerate() {
            let decoded = decode_event(event, &self.upcasters)?;
            apply(tx, &mut cache, event, &decoded).await?;
            // A notice's events are committed together, so the notice is complete when the
            // next event belongs to another aggregate or there is none yet.
            let next = match events.get(i + 1) {
                Some(next) => Some(next.aggregate_id.clone()),
                None => next_aggregate(tx, event.position).await?,
            };
            if next.as_deref() != Some(event.aggregate_id.as_str()) {
                check_one_seat_posts(tx, event).await?;
            }
        }
        cache.flush(tx).await?;
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

/// What one batch has already read or written, so the hot path (one fact after another)
/// does not ask the database again. Valid only inside the batch's transaction, where this
/// projector is the only writer of the read models (the checkpoint row is locked).
#[derive(Default)]
struct Cache {
    /// notice id → (reference, jurisdiction)
    notices: HashMap<String, (String, Option<String>)>,
    /// alias → canonical organization, or `None` when known to be absent.
    aliases: HashMap<String, Option<String>>,
    organizations: HashSet<String>,
    posts: HashSet<(String, String)>,
    /// Facts counted per notice, written once per batch.
    fact_counts: HashMap<String, i64>,
}

impl Cache {
    async fn notice(
        &mut self,
        tx: &mut Transaction<'_, Any>,
        notice_id: &str,
    ) -> Result<(String, Option<String>), StoreError> {
        if let Some(known) = self.notices.get(notice_id) {
            return Ok(known.clone());
        }
        let row = sqlx::query(
            "SELECT document_number, notice_key, jurisdiction FROM rm_notices WHERE notice_id = $1",
        )
        .bind(notice_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("fact of unknown notice {notice_id}")))?;
        let number: Option<String> = row.try_get("document_number")?;
        let key: String = row.try_get("notice_key")?;
        let known = (number.unwrap_or(key), row.try_get("jurisdiction")?);
        self.notices.insert(notice_id.to_string(), known.clone());
        Ok(known)
    }

    async fn alias(
        &mut self,
        tx: &mut Transaction<'_, Any>,
        name: &str,
    ) -> Result<Option<String>, StoreError> {
        if let Some(known) = self.aliases.get(name) {
            return Ok(known.clone());
        }
        let known: Option<String> =
            sqlx::query("SELECT canonical_name FROM rm_organization_aliases WHERE alias = $1")
                .bind(name)
                .fetch_optional(&mut **tx)
                .await?
                .map(|r| r.try_get("canonical_name"))
                .transpose()?;
        self.aliases.insert(name.to_string(), known.clone());
        Ok(known)
    }

    /// Writes what was only counted in memory.
    async fn flush(&mut self, tx: &mut Transaction<'_, Any>) -> Result<(), StoreError> {
        for (notice_id, n) in self.fact_counts.drain() {
            sqlx::query(
                "UPDATE rm_notices SET event_count = event_count + $1 WHERE notice_id = $2",
            )
            .bind(n)
            .bind(&notice_id)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
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
    cache: &mut Cache,
    event: &StoredEvent,
    decoded: &RegistryEvent,
) -> Result<(), StoreError> {
    match decoded {
        RegistryEvent::NoticeRecorded(n) => record_notice(tx, event, n).await,
        RegistryEvent::AppointmentRecorded(f) => {
            let ctx = fact_prelude(tx, cache, event, f).await?;
            appoint(tx, event, f, &ctx).await
        }
        RegistryEvent::RemovalRecorded(f) => {
            let ctx = fact_prelude(tx, cache, event, f).await?;
            remove(tx, event, f, &ctx).await
        }
        RegistryEvent::ConfirmationRecorded(f) => {
            let ctx = fact_prelude(tx, cache, event, f).await?;
            confirm(tx, event, f, &ctx).await
        }
        RegistryEvent::NoticeRevoked(r) => revoke(tx, event, r).await,
        RegistryEvent::NoticeCorrected(c) => correct(tx, event, c).await,
        RegistryEvent::FactWithdrawn(w) => withdraw(tx, event, w).await,
        RegistryEvent::PersonsMerged(m) => merge_persons(tx, event, m).await,
        RegistryEvent::PersonSplit(split) => split_person(tx, event, split).await,
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
    person_id: i64,
}

async fn fact_prelude(
    tx: &mut Transaction<'_, Any>,
    cache: &mut Cache,
    event: &StoredEvent,
    f: &PostFact,
) -> Result<FactContext, StoreError> {
    let (reference, jurisdiction) = cache.notice(tx, &event.aggregate_id).await?;
    *cache
        .fact_counts
        .entry(event.aggregate_id.clone())
        .or_insert(0) += 1;
    // A name already known as another organization's alias resolves to that organization,
    // so 市人民防空办公室 lands on 临湘市国防动员办公室 once a notice has said they are one.
    let organization = cache
        .alias(tx, &f.organization_canonical)
        .await?
        .unwrap_or_else(|| f.organization_canonical.clone());
    if cache.organizations.insert(organization.clone()) {
        sqlx::query(
            "INSERT INTO rm_organizations (canonical_name, jurisdiction, first_position) \
             VALUES ($1, $2, $3) ON CONFLICT (canonical_name) DO NOTHING",
        )
        .bind(&organization)
        .bind(&jurisdiction)
        .bind(event.position)
        .execute(&mut **tx)
        .await?;
        if let Some(j) = &jurisdiction {
            sqlx::query(
                "INSERT INTO rm_jurisdictions (jurisdiction) VALUES ($1) \
                 ON CONFLICT (jurisdiction) DO NOTHING",
            )
            .bind(j)
            .execute(&mut **tx)
            .await?;
        }
    }
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
        if cache.alias(tx, &name).await?.is_some() {
            continue; // the first mapping of a name wins
        }
        sqlx::query(
            "INSERT INTO rm_organization_aliases (alias, canonical_name, first_position) \
             VALUES ($1, $2, $3)",
        )
        .bind(&name)
        .bind(&organization)
        .bind(event.position)
        .execute(&mut **tx)
        .await?;
        cache.aliases.insert(name, Some(organization.clone()));
    }
    let person_id = link_person(tx, event, f, &organization, jurisdiction.as_deref()).await?;
    if cache.posts.insert((organization.clone(), f.post.clone())) {
        sqlx::query(
            "INSERT INTO rm_posts (organization, post, first_position) VALUES ($1, $2, $3) \
             ON CONFLICT (organization, post) DO NOTHING",
        )
        .bind(&organization)
        .bind(&f.post)
        .bind(event.position)
        .execute(&mut **tx)
        .await?;
    }
    Ok(FactContext {
        notice: NoticeContext { reference },
        organization,
        person_id,
    })
}

/// A version of a tenure row (see `migrations/*/0002_read_models.sql`).
#[derive(Debug, Clone, Default)]
struct TenureRow {
    tenure_id: i64,
    person_id: i64,
    person: String,
    organization: String,
    organization_as_written: String,
    post: String,
    concurrent: bool,
    start_date: Option<String>,
    end_date: Option<String>,
    probation_months: Option<i64>,
    probation_end: Option<String>,
    probation_outcome: Option<String>,
    probation_outcome_on: Option<String>,
    note: Option<String>,
    end_note: Option<String>,
    appointing_notice: Option<String>,
    appointing_line: Option<i64>,
    appointing_clause: Option<String>,
    ending_notice: Option<String>,
    ending_line: Option<i64>,
    ending_clause: Option<String>,
    recorded_position: i64,
    ended_position: Option<i64>,
    withdrawn_position: Option<i64>,
    withdrawn_reason: Option<String>,
}

const TENURE_COLUMNS: &str =
    "tenure_id, person_id, person, organization, organization_as_written, post, \
     concurrent, start_date, end_date, probation_months, probation_end, probation_outcome, \
     probation_outcome_on, note, end_note, appointing_notice, appointing_line, appointing_clause, \
     ending_notice, ending_line, ending_clause, recorded_position, ended_position, \
     withdrawn_position, withdrawn_reason";

impl TenureRow {
    fn from_row(r: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            tenure_id: r.try_get("tenure_id")?,
            person_id: r.try_get("person_id")?,
            person: r.try_get("person")?,
            organization: r.try_get("organization")?,
            organization_as_written: r.try_get("organization_as_written")?,
            post: r.try_get("post")?,
            concurrent: r.try_get::<i64, _>("concurrent")? != 0,
            start_date: r.try_get("start_date")?,
            end_date: r.try_get("end_date")?,
            probation_months: r.try_get("probation_months")?,
            probation_end: r.try_get("probation_end")?,
            probation_outcome: r.try_get("probation_outcome")?,
            probation_outcome_on: r.try_get("probation_outcome_on")?,
            note: r.try_get("note")?,
            end_note: r.try_get("end_note")?,
            appointing_notice: r.try_get("appointing_notice")?,
            appointing_line: r.try_get("appointing_line")?,
            appointing_clause: r.try_get("appointing_clause")?,
            ending_notice: r.try_get("ending_notice")?,
            ending_line: r.try_get("ending_line")?,
            ending_clause: r.try_get("ending_clause")?,
            recorded_position: r.try_get("recorded_position")?,
            ended_position: r.try_get("ended_position")?,
            withdrawn_position: r.try_get("withdrawn_position")?,
            withdrawn_reason: r.try_get("withdrawn_reason")?,
        })
    }

    /// Inserts this row as the version starting at `version_from`.
    async fn insert(
        &self,
        tx: &mut Transaction<'_, Any>,
        version_from: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO rm_tenures (version_from, {TENURE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, \
             $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, \
             $24, $25, $26)"
        ))
        .bind(version_from)
        .bind(self.tenure_id)
        .bind(self.person_id)
        .bind(&self.person)
        .bind(&self.organization)
        .bind(&self.organization_as_written)
        .bind(&self.post)
        .bind(i64::from(self.concurrent))
        .bind(&self.start_date)
        .bind(&self.end_date)
        .bind(self.probation_months)
        .bind(&self.probation_end)
        .bind(&self.probation_outcome)
        .bind(&self.probation_outcome_on)
        .bind(&self.note)
        .bind(&self.end_note)
        .bind(&self.appointing_notice)
        .bind(self.appointing_line)
        .bind(&self.appointing_clause)
        .bind(&self.ending_notice)
        .bind(self.ending_line)
        .bind(&self.ending_clause)
        .bind(self.recorded_position)
        .bind(self.ended_position)
        .bind(self.withdrawn_position)
        .bind(&self.withdrawn_reason)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Replaces the current version with `self` as of `position`: the old version is closed,
    /// never changed otherwise, so earlier answers stay reproducible.
    async fn supersede(
        &self,
        tx: &mut Transaction<'_, Any>,
        position: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE rm_tenures SET version_to = $1 WHERE tenure_id = $2 AND version_to IS NULL",
        )
        .bind(position)
        .bind(self.tenure_id)
        .execute(&mut **tx)
        .await?;
        self.insert(tx, position).await
    }
}

/// Current, not withdrawn versions matching `filter` (binds follow `$1…`), latest first.
async fn current_tenures(
    tx: &mut Transaction<'_, Any>,
    filter: &str,
    binds: &[&str],
) -> Result<Vec<TenureRow>, StoreError> {
    let sql = format!(
        "SELECT {TENURE_COLUMNS} FROM rm_tenures WHERE version_to IS NULL \
         AND withdrawn_position IS NULL AND {filter} ORDER BY tenure_id DESC"
    );
    let mut query = sqlx::query(&sql);
    for b in binds {
        query = query.bind(*b);
    }
    let rows = query.fetch_all(&mut **tx).await?;
    Ok(rows
        .iter()
        .map(TenureRow::from_row)
        .collect::<Result<_, _>>()?)
}

/// The person a fact's name means. A name links to an existing person record only when
/// that is unambiguous: the one record of that name holding this post, else the one record
/// of that name in the notice's jurisdiction. Otherwise a new record is made (id = this
/// event's position) and, when other records share the name (同名), the notice is flagged so
/// an operator can merge them (`renmian person merge`).
async fn link_person(
    tx: &mut Transaction<'_, Any>,
    event: &StoredEvent,
    f: &PostFact,
    organization: &str,
    jurisdiction: Option<&str>,
) -> Result<i64, StoreError> {
    let rows = sqlx::query(
        "SELECT person_id, jurisdiction FROM rm_persons WHERE name = $1 AND merged_into IS NULL \
         ORDER BY person_id",
    )
    .bind(&f.person)
    .fetch_all(&mut **tx)
    .await?;
    let candidates: Vec<(i64, Option<String>)> = rows
        .iter()
        .map(|r| Ok((r.try_get("person_id")?, r.try_get("jurisdiction")?)))
        .collect::<Result<_, sqlx::Error>>()?;
    if candidates.len() == 1 && candidates[0].1.as_deref() == jurisdiction {
        return Ok(candidates[0].0);
    }
    if !candidates.is_empty() {
        let holding = current_tenures(
            tx,
            "person = $1 AND organization = $2 AND post = $3 AND end_date IS NULL \
             AND ended_position IS NULL",
            &[&f.person, organization, &f.post],
        )
        .await?;
        let mut holders: Vec<i64> = holding.iter().map(|t| t.person_id).collect();
        holders.dedup();
        if let [one] = holders.as_slice() {
            return Ok(*one);
        }
        let local: Vec<i64> = candidates
            .iter()
            .filter(|(_, j)| j.as_deref() == jurisdiction)
            .map(|(id, _)| *id)
            .collect();
        if let [one] = local.as_slice() {
            return Ok(*one);
        }
    }
    let gender = f.gender.map(|g| {
        serde_json::to_value(g)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    });
    insert_person(
        tx,
        event.position,
        &f.person,
        gender.as_deref(),
        jurisdiction,
    )
    .await?;
    if !candidates.is_empty() {
        let others: Vec<String> = candidates
            .iter()
            .map(|(id, j)| format!("#{id} ({})", j.as_deref().unwrap_or("?")))
            .collect();
        warn(
            tx,
            event,
            Some(f.line),
            &format!(
                "同名: {} may be {}; recorded as a new person #{} — `renmian person merge` if they are one",
                f.person,
                others.join(", "),
                event.position
            ),
        )
        .await?;
    }
    Ok(event.position)
}

/// A new person record; its id is the position of the event that introduced it.
async fn insert_person(
    tx: &mut Transaction<'_, Any>,
    person_id: i64,
    name: &str,
    gender: Option<&str>,
    jurisdiction: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO rm_persons (person_id, name, gender, jurisdiction, first_position) \
         VALUES ($1, $2, $3, $4, $1)",
    )
    .bind(person_id)
    .bind(name)
    .bind(gender)
    .bind(jurisdiction)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A name already known as another organization's alias resolves to that organization, so
/// 市人民防空办公室 lands on 临湘市国防动员办公室 once a notice has said they are one.
async fn resolve_alias(
    tx: &mut Transaction<'_, Any>,
    canonical: &str,
) -> Result<String, StoreError> {
    let known: Option<String> =
        sqlx::query("SELECT canonical_name FROM rm_organization_aliases WHERE alias = $1")
            .bind(canonical)
            .fetch_optional(&mut **tx)
            .await?
            .map(|r| r.try_get("canonical_name"))
            .transpose()?;
    Ok(known.unwrap_or_else(|| canonical.to_string()))
}

/// The open tenure of `person` in `post` at `organization`, latest first.
async fn open_tenure(
    tx: &mut Transaction<'_, Any>,
    person_id: i64,
    organization: &str,
    post: &str,
) -> Result<Option<TenureRow>, StoreError> {
    // The id is bound, not formatted into the SQL, so the statement text stays the same and
    // its prepared plan is reused (a new text per person cost a parse and plan per fact).
    Ok(current_tenures(
        tx,
        "person_id = CAST($1 AS BIGINT) AND organization = $2 AND post = $3 \
         AND end_date IS NULL AND ended_position IS NULL",
        &[&person_id.to_string(), organization, post],
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
    tx: &mut Transaction<'_, Any>,
    event: &StoredEvent,
    f: &PostFact,
    ctx: &FactContext,
) -> Result<(), StoreError> {
    if let Some(existing) = open_tenure(tx, ctx.person_id, &ctx.organization, &f.post).await? {
        let since = existing
            .start_date
            .unwrap_or_else(|| "an unknown date".to_string());
        return warn(
            tx,
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
    TenureRow {
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
    }
    .insert(tx, event.position)
    .await
}

async fn remove(
    tx: &mut Transaction<'_, Any>,
    event: &StoredEvent,
    f: &PostFact,
    ctx: &FactContext,
) -> Result<(), StoreError> {
    let terminated_by_note = f.note.as_deref() == Some("终止试用期");
    match open_tenure(tx, ctx.person_id, &ctx.organization, &f.post).await? {
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
            tenure.supersede(tx, event.position).await
        }
        None => {
            TenureRow {
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
            }
            .insert(tx, event.position)
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
    match open_tenure(tx, ctx.person_id, &ctx.organization, &f.post).await? {
        Some(mut tenure)
            if tenure.probation_end.is_some() && tenure.probation_outcome.is_none() =>
        {
            tenure.probation_outcome = Some("confirmed".into());
            tenure.probation_outcome_on = f.effective_on.clone();
            tenure.supersede(tx, event.position).await
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

/// Undoes one fact of a notice as of this event: an appointment's tenure is withdrawn, a
/// removal's tenure reopens (or, if the removal created it, is withdrawn), a confirmation's
/// outcome is cleared. Earlier versions stay, so history shows what was believed before.
async fn withdraw(
    tx: &mut Transaction<'_, Any>,
    event: &StoredEvent,
    w: &FactWithdrawn,
) -> Result<(), StoreError> {
    let ctx = notice_context(tx, &event.aggregate_id).await?;
    let organization = resolve_alias(tx, &w.fact.organization_canonical).await?;
    let f = &w.fact;
    let who = [
        f.person.as_str(),
        organization.as_str(),
        f.post.as_str(),
        ctx.reference.as_str(),
    ];
    let matching = match w.kind {
        EventKind::Appointment => {
            current_tenures(
                tx,
                "person = $1 AND organization = $2 AND post = $3 AND appointing_notice = $4",
                &who,
            )
            .await?
        }
        EventKind::Removal => {
            current_tenures(
                tx,
                "person = $1 AND organization = $2 AND post = $3 AND ending_notice = $4",
                &who,
            )
            .await?
        }
        EventKind::Confirmation => current_tenures(
            tx,
            "person = $1 AND organization = $2 AND post = $3 AND probation_outcome = 'confirmed'",
            &who[..3],
        )
        .await?,
    };
    let Some(mut tenure) = matching.into_iter().next() else {
        return warn(
            tx,
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
    tenure.supersede(tx, event.position).await
}

async fn revoke(
    tx: &mut Transaction<'_, Any>,
    event: &StoredEvent,
    r: &NoticeRevoked,
) -> Result<(), StoreError> {
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
    Ok(())
}

async fn correct(
    tx: &mut Transaction<'_, Any>,
    event: &StoredEvent,
    c: &NoticeCorrected,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE rm_notices SET title = $1, issued_on = $2, remarks = $3, content_hash = $4, \
         source_text = $5, corrected_position = $6, corrected_at = $7, corrected_reason = $8, \
         correction_count = correction_count + 1 WHERE notice_id = $9",
    )
    .bind(&c.title)
    .bind(&c.issued_on)
    .bind(serde_json::to_string(&c.remarks).unwrap_or_default())
    .bind(&c.content_hash)
    .bind(&c.source_text)
    .bind(event.position)
    .bind(&event.recorded_at)
    .bind(&c.reason)
    .bind(&event.aggregate_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The current tenures of one person record.
async fn tenures_of_person(
    tx: &mut Transaction<'_, Any>,
    person_id: i64,
) -> Result<Vec<TenureRow>, StoreError> {
    current_tenures(
        tx,
        "person_id = CAST($1 AS BIGINT)",
        &[&person_id.to_string()],
    )
    .await
}

/// Every current tenure of the retired record moves to the remaining one (as new versions).
async fn merge_persons(
    tx: &mut Transaction<'_, Any>,
    event: &StoredEvent,
    m: &PersonsMerged,
) -> Result<(), StoreError> {
    let moved = tenures_of_person(tx, m.person_id).await?;
    for mut tenure in moved {
        tenure.person_id = m.into;
        tenure.supersede(tx, event.position).await?;
    }
    sqlx::query(
        "UPDATE rm_persons SET merged_into = $1, merged_position = $2 WHERE person_id = $3",
    )
    .bind(m.into)
    .bind(event.position)
    .bind(m.person_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The named tenures move to a new person record (id = this event's position).
async fn split_person(
    tx: &mut Transaction<'_, Any>,
    event: &StoredEvent,
    split: &PersonSplit,
) -> Result<(), StoreError> {
    let row = sqlx::query("SELECT name, gender, jurisdiction FROM rm_persons WHERE person_id = $1")
        .bind(split.person_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| {
            StoreError::Corrupt(format!("split of unknown person #{}", split.person_id))
        })?;
    let (name, gender, jurisdiction): (String, Option<String>, Option<String>) = (
        row.try_get("name")?,
        row.try_get("gender")?,
        row.try_get("jurisdiction")?,
    );
    insert_person(
        tx,
        event.position,
        &name,
        gender.as_deref(),
        jurisdiction.as_deref(),
    )
    .await?;
    let moved = tenures_of_person(tx, split.person_id).await?;
    for mut tenure in moved
        .into_iter()
        .filter(|t| split.tenure_ids.contains(&t.tenure_id))
    {
        tenure.person_id = event.position;
        tenure.supersede(tx, event.position).await?;
    }
    Ok(())
}

/// Aggregate of the event after `position`, if any.
async fn next_aggregate(
    tx: &mut Transaction<'_, Any>,
    position: i64,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT aggregate_id FROM events WHERE position = $1")
        .bind(position + 1)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(|r| r.try_get("aggregate_id")).transpose()?)
}

/// Once a notice's events are all applied: every one-seat post (局长, 主任 …) it appointed
/// someone to must have one holder on the start date. More is accepted and flagged.
async fn check_one_seat_posts(
    tx: &mut Transaction<'_, Any>,
    last: &StoredEvent,
) -> Result<(), StoreError> {
    let Ok(ctx) = notice_context(tx, &last.aggregate_id).await else {
        return Ok(());
    };
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
    .fetch_one(&mut **tx)
    .await?
    .try_get::<Option<i64>, _>("p")?
    .unwrap_or(last.position);
    // Tenure ids are the positions of the events that opened them: a primary-key range.
    let appointed = current_tenures(
        tx,
        "tenure_id BETWEEN CAST($1 AS BIGINT) AND CAST($2 AS BIGINT) AND appointing_notice = $3",
        &[
            &first_position.to_string(),
            &last.position.to_string(),
            &ctx.reference,
        ],
    )
    .await?;
    for t in appointed {
        if t.tenure_id < first_position || !is_head_post(&t.post) {
            continue;
        }
        let Some(start) = t.start_date.clone() else {
            continue;
        };
        let holders = current_tenures(
            tx,
            "organization = $1 AND post = $2 AND (start_date IS NULL OR start_date <= $3) \
             AND ((end_date IS NULL AND ended_position IS NULL) OR end_date > $3)",
            &[&t.organization, &t.post, &start],
        )
        .await?;
        if holders.len() > 1 {
            let mut names: Vec<&str> = holders.iter().map(|h| h.person.as_str()).collect();
            names.sort_unstable();
            let message = format!(
                "one-seat post {} {} has {} holders on {start}: {}",
                t.organization,
                t.post,
                holders.len(),
                names.join("、")
            );
            let at = StoredEvent {
                position: t.tenure_id,
                ..last.clone()
            };
            warn(
                tx,
                &at,
                t.appointing_line.and_then(|l| usize::try_from(l).ok()),
                &message,
            )
            .await?;
        }
    }
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
        assert_eq!(add_months("2023-05", 12).as_deref(), Some("2024-05"));
        assert_eq!(add_months("2023-12", 1).as_deref(), Some("2024-01"));
        assert_eq!(add_months("2023", 12), None);
    }
}
