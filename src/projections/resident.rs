//! ListHolders and ListHoldings answered from process memory, as fresh as the database.
//!
//! [`ResidentTenures`] keeps, per server, what the holders and holdings queries read: every
//! organization, alias, jurisdiction, post and person record, and the current version of
//! every tenure that was not withdrawn and still held on its *horizon* date or later (open,
//! or ending after it), by post and by person. A question about a date on or after the
//! horizon costs no round trip of its own to the database (one about an earlier date goes
//! to the database: a tenure that holds on `D` is open or ends after `D`, so the tenures
//! kept answer exactly the dates from the horizon on, and a 1M-event history keeps a few
//! years of it instead of thirty):
//!
//! - **Fence.** Before answering, the model needs the projection checkpoint as read by a
//!   statement that *started after the request arrived*. One task reads it for every
//!   request waiting at that moment ([`Fence`]: requests that arrive while a read is under
//!   way wait for the next one), so at concurrency 16 one checkpoint read serves many
//!   requests. An ingest is acknowledged only after its projection committed, so a request
//!   that starts after any server acknowledged a write sees a checkpoint at or past it:
//!   read-your-writes holds across servers exactly as for the SQL path. On SQLite most
//!   requests need no read at all: the fence notes the database's commit stamp before each
//!   read ([`Database::commit_stamp`], the WAL index's header, which every commit of every
//!   process changes), and a request that finds the same stamp takes that read's
//!   checkpoint, since nothing committed after it started. The statement and the hop to
//!   SQLite's worker thread were ~15 % of `serve`'s CPU under ListHolders at concurrency 16.
//! - **Refresh.** When the checkpoint is past the model, one refresh (the others wait for
//!   it) reads what changed in between: tenure versions by `version_from`, organizations,
//!   aliases, posts and persons by `first_position`, merged persons by `merged_position`
//!   (indexes of migrations 0010 and 0011). Every row a projection writes up to checkpoint
//!   `C` commits with `C`; a tenure row is never changed afterwards except to close it when
//!   its next version is inserted, and a person row only by a merge (read as of `C`), so
//!   the rows up to `C`, applied in position order, are the read models at `C`.
//! - **Fallback.** Until the first load has finished, and whenever the fence or the refresh
//!   fails, the query goes to the database ([`Queries::holders`], [`Queries::holdings`]),
//!   which then reports the error, if any, exactly as before.
//!
//! - **At least a position.** A caller that needs only the events up to a position it
//!   knows (an ingest's `last_position`: read-your-writes, monotonic reads) asks with
//!   [`Freshness::AtLeast`]; a model that already stands there answers at once, with no
//!   checkpoint read (on PostgreSQL that read is a round trip per batch of requests, the
//!   difference between 35 % and 58 % of the echo at concurrency 16, BENCHMARKS.md session
//!   25). The model follows the log by itself too ([`ResidentTenures::follow`], called by
//!   `serve` at every change-feed wake-up, at most every 100 ms, and at every poll), so such
//!   answers lag by a notification and that spacing, at most a poll — while it is asked:
//!   a model no question was answered from since the last follow is left behind, marked,
//!   and the next question fences first. A position the read models have not reached is an error
//!   ([`QueryError::NotReached`]), never an older answer. Every answer says which
//!   position it reflects ([`Answer`]), for the caller to pass on.
//!
//! Invariant: for every request, the answer equals `Queries::holders` (`holdings`) at a
//! checkpoint read after the request arrived (`tests/resident.rs`, both databases,
//! including writes through another server, revocations, merges and splits), or, asked
//! [`Freshness::AtLeast`] `P`, at a checkpoint `C ≥ P` the model stood at. Queries as of a
//! past position are not served here.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use chrono::NaiveDate;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use super::projector::CheckpointReads;
use super::queries::{
    holders_in_order, holdings_in_order, iso, one_person, organization_candidates,
    organization_found, person_by_id, person_reference, post_not_recorded, qualified_candidates,
    require, PersonLink, PersonReference, TENURE_SELECT,
};
use super::{PersonRecord, Queries, QueryError, Tenure};
use crate::notice::AliasTable;
use crate::store::Database;

/// Batches reads of a position so that each request waits for a read that started after it
/// arrived, and concurrent requests share one read.
struct Fence {
    requests: mpsc::UnboundedSender<oneshot::Sender<Option<i64>>>,
}

impl Fence {
    /// Spawns the reading task; `read` answers `None` when it could not read.
    fn spawn<F, Fut>(read: F) -> Self
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Option<i64>> + Send,
    {
        let (requests, mut queue) = mpsc::unbounded_channel::<oneshot::Sender<Option<i64>>>();
        tokio::spawn(async move {
            while let Some(first) = queue.recv().await {
                // Everything queued now arrived before the read below starts.
                let mut waiting = vec![first];
                while let Ok(more) = queue.try_recv() {
                    waiting.push(more);
                }
                let position = read().await;
                for waiter in waiting {
                    // A request that gave up (cancelled) no longer listens.
                    let _ = waiter.send(position);
                }
            }
        });
        Self { requests }
    }

    /// A position read by a statement that started after this call; `None` when the read
    /// failed.
    async fn position(&self) -> Option<i64> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(reply).ok()?;
        answer.await.ok().flatten()
    }
}

/// How recent an answer must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Freshness {
    /// As of a checkpoint read after the request arrived: everything acknowledged before
    /// it, by any server (linearizable).
    #[default]
    Latest,
    /// As of any checkpoint at or past this log position.
    AtLeast(i64),
}

impl Freshness {
    /// `Ok` when an answer as of `checkpoint` will do.
    fn admits(self, checkpoint: i64) -> Result<(), QueryError> {
        match self {
            Self::AtLeast(position) if checkpoint < position => Err(QueryError::NotReached {
                position,
                checkpoint,
            }),
            _ => Ok(()),
        }
    }
}

/// An answer and the log position it is exactly as of: every event up to `position` is in
/// it and none after it (from memory, the model's position; from the database, see
/// [`Queries::exactly`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer<T> {
    pub value: T,
    pub position: i64,
}

/// What the holders and holdings queries read, at one checkpoint.
#[derive(Default)]
struct State {
    position: i64,
    organizations: HashSet<String>,
    jurisdictions: BTreeSet<String>,
    aliases: HashMap<String, String>,
    /// Every person record, by id.
    persons: HashMap<i64, Person>,
    /// Person ids by name, ascending.
    names: HashMap<String, Vec<i64>>,
    /// The current version of each tenure kept, by tenure id.
    tenures: HashMap<i64, Tenure>,
    posts: HashMap<(String, String), Post>,
    /// Tenure ids kept, by person id.
    held_by: HashMap<i64, Vec<i64>>,
}

#[derive(Default)]
struct Post {
    /// In `rm_posts` (a tenure's post always is; this keeps the two apart all the same).
    recorded: bool,
    /// The tenures kept, with their dates packed: a post keeps dozens of tenures (44 on
    /// average at 1M events), and testing each through the map of tenures cost a hash
    /// probe and three pointer chases apiece, most of what a ListHolders answer cost.
    tenures: Vec<Kept>,
}

/// A kept tenure of a post, and what deciding whether it holds on a day needs.
#[derive(Clone, Copy)]
struct Kept {
    id: i64,
    /// `None` when a date does not pack ([`date_key`]): the tenure itself is asked.
    dates: Option<KeptDates>,
}

#[derive(Clone, Copy)]
struct KeptDates {
    start: Option<u64>,
    end: Option<u64>,
    /// Ended without an end date (never kept as it stands; kept faithful all the same).
    ended_undated: bool,
}

impl Kept {
    fn of(tenure: &Tenure) -> Self {
        let packed = |date: &Option<String>| match date.as_deref() {
            None => Some(None),
            Some(date) => date_key(date).map(Some),
        };
        let dates = packed(&tenure.start_date)
            .zip(packed(&tenure.end_date))
            .map(|(start, end)| KeptDates {
                start,
                end,
                ended_undated: tenure.end_date.is_none() && tenure.ended_position.is_some(),
            });
        Self {
            id: tenure.tenure_id,
            dates,
        }
    }
}

impl KeptDates {
    /// [`Tenure::holds_on`] for a kept (not withdrawn) tenure, `on` packed.
    fn hold_on(&self, on: u64) -> bool {
        self.start.is_none_or(|start| start <= on)
            && match self.end {
                None => !self.ended_undated,
                Some(end) => end > on,
            }
    }
}

/// A date as the read models store it (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`), packed into an
/// integer that orders as the text does: its digits, big-endian, padded with zero bytes (a
/// shorter text that is a prefix of a longer one orders first, as a zero byte before a
/// digit does). `None` for any other text, which is then compared as text.
fn date_key(date: &str) -> Option<u64> {
    let bytes = date.as_bytes();
    if !matches!(bytes.len(), 4 | 7 | 10) {
        return None;
    }
    let mut key = [0u8; 8];
    let mut digits = 0;
    for (at, &b) in bytes.iter().enumerate() {
        if at == 4 || at == 7 {
            if b != b'-' {
                return None;
            }
        } else if b.is_ascii_digit() {
            key[digits] = b;
            digits += 1;
        } else {
            return None;
        }
    }
    Some(u64::from_be_bytes(key))
}

/// A person record as resolving a name or `#id` reads it.
struct Person {
    link: PersonLink,
    gender: Option<String>,
    jurisdiction: Option<String>,
}

/// Rows per read of the first load.
const LOAD_CHUNK: usize = 5_000;

/// A model further behind than this many events loads afresh (current versions only,
/// in chunks) instead of reading every version in between: after a bulk load through another
/// server, the versions in between are most of the log.
const RELOAD_AFTER_EVENTS: i64 = 100_000;

/// How a model at `at` (`None`: not loaded) reaches checkpoint `to`.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Nothing to read: the model is at `to`, or past it (another request's fence read was
    /// later than this one's).
    Current,
    /// Read the versions and names recorded after `from`.
    Apply { from: i64 },
    /// Read the state at `to` into a new model.
    Load,
}

fn step(at: Option<i64>, to: i64, reload_after: i64) -> Step {
    match at {
        None => Step::Load,
        Some(at) if at >= to => Step::Current,
        Some(at) if to - at <= reload_after => Step::Apply { from: at },
        Some(_) => Step::Load,
    }
}

/// The rows that changed between two checkpoints.
struct Changes {
    organizations: Vec<(String, Option<String>)>,
    /// Records created or merged in between.
    persons: Vec<(i64, Person)>,
    aliases: Vec<(String, String)>,
    posts: Vec<(String, String)>,
    /// In position order: a later version of a tenure replaces an earlier one.
    tenures: Vec<Tenure>,
}

/// Two columns of the rows of `table` recorded (`first_position`) after `from` up to `to`.
async fn recorded_pairs<A, B>(
    db: &Database,
    (from, to): (i64, i64),
    table: &str,
    (a, b): (&str, &str),
) -> Result<Vec<(A, B)>, QueryError>
where
    A: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
    B: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    let sql =
        format!("SELECT {a}, {b} FROM {table} WHERE first_position > $1 AND first_position <= $2");
    let rows = db.read_all(sqlx::query(&sql).bind(from).bind(to)).await?;
    let pairs = rows
        .iter()
        .map(|r| Ok((r.try_get(a)?, r.try_get(b)?)))
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(pairs)
}

impl Changes {
    /// Rows recorded after `after` up to checkpoint `to`: every tenure version in between,
    /// withdrawn and ended ones included, since they remove what they replace. With no
    /// `after` (a load), the state at `to`: only the tenure versions current then that can
    /// hold on `since` or later, read `chunk` rows at a time.
    async fn read(
        db: &Database,
        after: Option<i64>,
        to: i64,
        since: &str,
        chunk: usize,
    ) -> Result<Self, QueryError> {
        let span = (after.unwrap_or(0), to);
        let organizations = recorded_pairs(
            db,
            span,
            "rm_organizations",
            ("canonical_name", "jurisdiction"),
        )
        .await?;
        let aliases = recorded_pairs(
            db,
            span,
            "rm_organization_aliases",
            ("alias", "canonical_name"),
        )
        .await?;
        let posts = recorded_pairs(db, span, "rm_posts", ("organization", "post")).await?;
        let persons = if let Some(from) = after {
            // Created in between, or merged in between.
            let sql = format!(
                "SELECT {PERSON_COLUMNS} FROM rm_persons \
                 WHERE first_position > $1 AND first_position <= $2 \
                 UNION SELECT {PERSON_COLUMNS} FROM rm_persons \
                 WHERE merged_position > $1 AND merged_position <= $2"
            );
            let rows = db.read_all(sqlx::query(&sql).bind(from).bind(to)).await?;
            rows.iter().map(person).collect::<Result<_, _>>()?
        } else {
            Self::persons_at(db, to, chunk).await?
        };
        let tenures = if let Some(from) = after {
            let sql = format!(
                "{TENURE_SELECT} WHERE t.version_from > $1 AND t.version_from <= $2 \
                 ORDER BY t.version_from, t.tenure_id"
            );
            db.read_all(sqlx::query(&sql).bind(from).bind(to))
                .await?
                .iter()
                .map(Tenure::from_row)
                .collect::<Result<_, _>>()?
        } else {
            Self::current_tenures(db, to, since, chunk).await?
        };
        Ok(Self {
            organizations,
            persons,
            aliases,
            posts,
            tenures,
        })
    }
}

/// The columns of a person record as of checkpoint `$2`: a merge recorded after it is not
/// there yet (the tenures it moves are not either); a later refresh reads it by
/// `merged_position`.
const PERSON_COLUMNS: &str = "person_id, name, gender, jurisdiction, \
     CASE WHEN merged_position <= $2 THEN merged_into END AS merged_into, \
     CASE WHEN merged_position <= $2 THEN merged_position END AS merged_position";

fn person(r: &sqlx::any::AnyRow) -> Result<(i64, Person), sqlx::Error> {
    let person = Person {
        link: PersonLink {
            name: r.try_get("name")?,
            merged_into: r.try_get("merged_into")?,
            merged_position: r.try_get("merged_position")?,
        },
        gender: r.try_get("gender")?,
        jurisdiction: r.try_get("jurisdiction")?,
    };
    Ok((r.try_get("person_id")?, person))
}

impl Changes {
    /// Every person record at checkpoint `to`, read `chunk` rows at a time.
    async fn persons_at(
        db: &Database,
        to: i64,
        chunk: usize,
    ) -> Result<Vec<(i64, Person)>, QueryError> {
        let sql = format!(
            "SELECT {PERSON_COLUMNS} FROM rm_persons WHERE person_id > $1 \
             AND first_position <= $2 ORDER BY person_id LIMIT {chunk}"
        );
        let mut persons: Vec<(i64, Person)> = Vec::new();
        loop {
            let after = persons.last().map_or(i64::MIN, |(id, _)| *id);
            let rows = db.read_all(sqlx::query(&sql).bind(after).bind(to)).await?;
            for row in &rows {
                persons.push(person(row)?);
            }
            if rows.len() < chunk {
                return Ok(persons);
            }
        }
    }

    /// The tenure versions current at `to` that can hold on `since` or later, read `chunk`
    /// rows at a time (in position order, resuming after the last one read) so
    /// that the rows of a big history are never all in memory at once beside the tenures.
    async fn current_tenures(
        db: &Database,
        to: i64,
        since: &str,
        chunk: usize,
    ) -> Result<Vec<Tenure>, QueryError> {
        let sql = format!(
            "{TENURE_SELECT} WHERE t.version_from <= $1 \
             AND (t.version_to IS NULL OR t.version_to > $1) \
             AND t.withdrawn_position IS NULL \
             AND ((t.end_date IS NULL AND t.ended_position IS NULL) OR t.end_date > $2) \
             AND (t.version_from > $3 OR (t.version_from = $3 AND t.tenure_id > $4)) \
             ORDER BY t.version_from, t.tenure_id LIMIT {chunk}"
        );
        let mut tenures: Vec<Tenure> = Vec::new();
        loop {
            let (after_version, after_tenure) = tenures
                .last()
                .map_or((0, 0), |t| (t.version_from, t.tenure_id));
            let query = sqlx::query(&sql)
                .bind(to)
                .bind(since)
                .bind(after_version)
                .bind(after_tenure);
            let rows = db.read_all(query).await?;
            for row in &rows {
                tenures.push(Tenure::from_row(row)?);
            }
            if rows.len() < chunk {
                return Ok(tenures);
            }
        }
    }
}

impl State {
    fn apply(&mut self, changes: Changes, position: i64, since: &str) {
        for (organization, jurisdiction) in changes.organizations {
            self.jurisdictions.extend(jurisdiction);
            self.organizations.insert(organization);
        }
        self.aliases.extend(changes.aliases);
        for key in changes.posts {
            self.posts.entry(key).or_default().recorded = true;
        }
        for (id, person) in changes.persons {
            if !self.persons.contains_key(&id) {
                let ids = self.names.entry(person.link.name.clone()).or_default();
                let at = ids.partition_point(|&other| other < id);
                ids.insert(at, id);
            }
            self.persons.insert(id, person);
        }
        for tenure in changes.tenures {
            let id = tenure.tenure_id;
            if let Some(old) = self.tenures.remove(&id) {
                let key = (old.organization, old.post);
                if let Some(post) = self.posts.get_mut(&key) {
                    post.tenures.retain(|t| t.id != id);
                }
                if let Some(held) = self.held_by.get_mut(&old.person_id) {
                    held.retain(|&t| t != id);
                }
            }
            if tenure.not_ended_by(since) {
                let key = (tenure.organization.clone(), tenure.post.clone());
                self.posts
                    .entry(key)
                    .or_default()
                    .tenures
                    .push(Kept::of(&tenure));
                self.held_by.entry(tenure.person_id).or_default().push(id);
                self.tenures.insert(id, tenure);
            }
        }
        self.position = position;
    }

    /// The kept tenures among `ids` that hold on `on`.
    fn holding<'a>(&self, ids: impl IntoIterator<Item = &'a i64>, on: &str) -> Vec<Tenure> {
        ids.into_iter()
            .filter_map(|id| self.tenures.get(id))
            .filter(|t| t.holds_on(on))
            .cloned()
            .collect()
    }

    /// The kept tenures of `post` that hold on `on`: those whose packed dates rule them out
    /// are passed over, the rest checked by [`holding`](Self::holding).
    fn holding_post(&self, post: &Post, on: &str) -> Vec<Tenure> {
        let day = date_key(on);
        let may_hold = |t: &&Kept| match (day, t.dates) {
            (Some(day), Some(dates)) => dates.hold_on(day),
            _ => true,
        };
        self.holding(post.tenures.iter().filter(may_hold).map(|t| &t.id), on)
    }

    /// [`Queries::resolve_person`], on the records in memory.
    fn resolve_person(&self, person: &str) -> Result<i64, QueryError> {
        match person_reference(person)? {
            PersonReference::Id { name, id } => {
                person_by_id(&name, id, self.persons.get(&id).map(|p| &p.link), None)
            }
            PersonReference::Name(name) => {
                let records: Vec<PersonRecord> = self
                    .names
                    .get(&name)
                    .into_iter()
                    .flatten()
                    .filter_map(|id| Some((*id, self.persons.get(id)?)))
                    .filter(|(_, p)| p.link.merged_into.is_none())
                    .map(|(id, p)| PersonRecord {
                        person_id: id,
                        name: p.link.name.clone(),
                        gender: p.gender.clone(),
                        jurisdiction: p.jurisdiction.clone(),
                    })
                    .collect();
                one_person(name, &records)
            }
        }
    }

    /// [`Queries::holdings`] (now), on the tenures in memory.
    fn holdings(&self, person: &str, on: NaiveDate) -> Result<Vec<Tenure>, QueryError> {
        let person_id = self.resolve_person(person)?;
        let held = self.held_by.get(&person_id).into_iter().flatten();
        Ok(holdings_in_order(self.holding(held, &iso(on))))
    }

    /// [`Queries::resolve_organization`], on the names in memory.
    fn resolve_organization(&self, aliases: &AliasTable, name: &str) -> Result<String, QueryError> {
        let (name, candidates) = organization_candidates(aliases, name)?;
        let mut found = Vec::new();
        for candidate in &candidates {
            found = self.canonical_names_for(std::slice::from_ref(candidate));
            if !found.is_empty() {
                break;
            }
        }
        if found.is_empty() {
            let qualified = qualified_candidates(&candidates, &self.jurisdictions, aliases);
            found = self.canonical_names_for(&qualified);
        }
        organization_found(name, found)
    }

    fn canonical_names_for(&self, names: &[String]) -> Vec<String> {
        let mut found = BTreeSet::new();
        for name in names {
            found.extend(self.aliases.get(name));
            if self.organizations.contains(name) {
                found.insert(name);
            }
        }
        found.into_iter().cloned().collect()
    }

    /// [`Queries::holders`] (now), on the tenures in memory.
    fn holders(
        &self,
        aliases: &AliasTable,
        organization: &str,
        post: &str,
        on: NaiveDate,
    ) -> Result<Vec<Tenure>, QueryError> {
        let post = require("post", post)?;
        let organization = self.resolve_organization(aliases, organization)?;
        let on = iso(on);
        let key = (organization, post);
        let entry = self.posts.get(&key);
        let holders = entry.map_or_else(Vec::new, |post| self.holding_post(post, &on));
        if holders.is_empty() && !entry.is_some_and(|p| p.recorded) {
            return Err(post_not_recorded(&key.0, &key.1));
        }
        Ok(holders_in_order(holders, &key.1))
    }
}

/// The holders read model in process memory; see the module documentation.
#[derive(Clone)]
pub struct ResidentTenures {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    queries: Queries,
    aliases: Arc<AliasTable>,
    /// The horizon: questions about earlier dates go to the database.
    since: NaiveDate,
    fence: Fence,
    /// The fence's last checkpoint read, with the commit stamp taken before it (SQLite).
    last_read: Arc<CheckpointReads>,
    /// `None` until the first load has finished.
    state: RwLock<Option<State>>,
    /// Held by the one refresh under way.
    refresh: tokio::sync::Mutex<()>,
    loading: AtomicBool,
    /// Rows per read of the first load.
    load_chunk: usize,
    /// See [`RELOAD_AFTER_EVENTS`].
    reload_after: i64,
    from_memory: AtomicU64,
    from_database: AtomicU64,
    /// Set by every answer from memory, taken by [`ResidentTenures::follow`]: a model
    /// nobody asks is not kept current (its reads would cost a write-only server ~8 % of its
    /// ingest rate, BENCHMARKS.md session 25).
    used: AtomicBool,
    /// Set when `follow` left the model where it was: it may be behind, so the next
    /// request asked [`Freshness::AtLeast`] fences as one for the latest state does.
    behind: AtomicBool,
}

impl ResidentTenures {
    /// An empty model over `db` for questions about `since` or later; it loads itself in the
    /// background on first use (or on [`warm`](Self::warm)). Must be called inside a tokio
    /// runtime.
    pub fn new(db: Database, aliases: Arc<AliasTable>, since: NaiveDate) -> Self {
        let reader = db.clone();
        let last_read: Arc<CheckpointReads> = Arc::default();
        let read = last_read.clone();
        let fence = Fence::spawn(move || {
            let db = reader.clone();
            let read = read.clone();
            async move {
                match read.read(&db).await {
                    Ok(position) => Some(position),
                    Err(e) => {
                        tracing::warn!("resident tenures: reading the checkpoint failed: {e}");
                        None
                    }
                }
            }
        });
        Self {
            inner: Arc::new(Inner {
                queries: Queries::new(db.clone(), aliases.clone()),
                db,
                aliases,
                since,
                fence,
                last_read,
                state: RwLock::new(None),
                refresh: tokio::sync::Mutex::new(()),
                loading: AtomicBool::new(false),
                load_chunk: LOAD_CHUNK,
                reload_after: RELOAD_AFTER_EVENTS,
                from_memory: AtomicU64::new(0),
                from_database: AtomicU64::new(0),
                used: AtomicBool::new(false),
                behind: AtomicBool::new(false),
            }),
        }
    }

    /// The same model reading its first load `rows` rows at a time (tests: more than one
    /// read on a small history). Before first use only.
    pub fn with_load_chunk(mut self, rows: usize) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.load_chunk = rows.max(1);
        }
        self
    }

    /// The same model loading afresh when more than `events` behind (tests: a reload on a
    /// small history). Before first use only.
    pub fn with_reload_after(mut self, events: i64) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.reload_after = events.max(0);
        }
        self
    }

    /// Starts the first load in the background unless it is done or under way.
    pub fn warm(&self) {
        if self.loaded() || self.inner.loading.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.load().await {
                tracing::warn!("resident tenures: first load failed: {e}");
            }
            this.inner.loading.store(false, Ordering::Release);
        });
    }

    /// Loads the model now (the first load), or brings it to the checkpoint.
    pub async fn load(&self) -> Result<(), QueryError> {
        let started = std::time::Instant::now();
        self.refresh(None).await?;
        tracing::info!(
            position = self.position(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "resident tenures loaded"
        );
        Ok(())
    }

    /// Whether the first load has finished (until then queries go to the database).
    pub fn loaded(&self) -> bool {
        self.read_state().is_some()
    }

    /// The checkpoint the model stands at (0 before the first load).
    pub fn position(&self) -> i64 {
        self.read_state().as_ref().map_or(0, |s| s.position)
    }

    /// Who holds `post` at `organization` on `on`, as [`Queries::holders`] answers now.
    pub async fn holders(
        &self,
        organization: &str,
        post: &str,
        on: NaiveDate,
    ) -> Result<Vec<Tenure>, QueryError> {
        self.holders_with(organization, post, on, Freshness::Latest)
            .await
            .map(|answer| answer.value)
    }

    /// [`holders`](Self::holders) as of a checkpoint `freshness` admits, with the position
    /// the answer reflects.
    pub async fn holders_with(
        &self,
        organization: &str,
        post: &str,
        on: NaiveDate,
        freshness: Freshness,
    ) -> Result<Answer<Vec<Tenure>>, QueryError> {
        self.answer(
            on,
            freshness,
            |state| state.holders(&self.inner.aliases, organization, post, on),
            |q: Queries| async move { q.holders(organization, post, on).await },
        )
        .await
    }

    /// Every post `person` holds on `on`, as [`Queries::holdings`] answers now.
    pub async fn holdings(&self, person: &str, on: NaiveDate) -> Result<Vec<Tenure>, QueryError> {
        self.holdings_with(person, on, Freshness::Latest)
            .await
            .map(|answer| answer.value)
    }

    /// [`holdings`](Self::holdings) as of a checkpoint `freshness` admits, with the position
    /// the answer reflects.
    pub async fn holdings_with(
        &self,
        person: &str,
        on: NaiveDate,
        freshness: Freshness,
    ) -> Result<Answer<Vec<Tenure>>, QueryError> {
        self.answer(
            on,
            freshness,
            |state| state.holdings(person, on),
            |q: Queries| async move { q.holdings(person, on).await },
        )
        .await
    }

    /// A question about `on`: from memory when `on` is not before the horizon and the model
    /// stands where `freshness` admits (at once) or could be brought to the checkpoint,
    /// else from the database, exactly as of the checkpoint it reports
    /// ([`Queries::exactly`]). Either way the answer holds every event up to its position
    /// and none after it.
    async fn answer<T, Fut>(
        &self,
        on: NaiveDate,
        freshness: Freshness,
        from_memory: impl FnOnce(&State) -> Result<T, QueryError>,
        from_database: impl Fn(Queries) -> Fut,
    ) -> Result<Answer<T>, QueryError>
    where
        Fut: Future<Output = Result<T, QueryError>>,
    {
        if on >= self.inner.since {
            // A model that stands where `freshness` admits answers at once; any other is
            // brought to a checkpoint read after the call first, and one still short of
            // the position means the read models have not reached it.
            let admitted = freshness != Freshness::Latest
                && !self.inner.behind.load(Ordering::Acquire)
                && self
                    .read_state()
                    .as_ref()
                    .is_some_and(|state| freshness.admits(state.position).is_ok());
            if admitted || self.fresh().await {
                if let Some(state) = self.read_state().as_ref() {
                    freshness.admits(state.position)?;
                    self.inner.from_memory.fetch_add(1, Ordering::Relaxed);
                    self.inner.used.store(true, Ordering::Release);
                    let value = from_memory(state)?;
                    return Ok(Answer {
                        value,
                        position: state.position,
                    });
                }
            }
        }
        // Its checkpoint is read after the question, so the answer is as of now.
        let answer = self.inner.queries.exactly(from_database).await?;
        freshness.admits(answer.position)?;
        self.inner.from_database.fetch_add(1, Ordering::Relaxed);
        Ok(answer)
    }

    /// How many questions were answered from memory and how many from the database.
    pub fn answered(&self) -> (u64, u64) {
        (
            self.inner.from_memory.load(Ordering::Relaxed),
            self.inner.from_database.load(Ordering::Relaxed),
        )
    }

    /// Brings the model to a checkpoint read after this call; `false` when it cannot (not
    /// loaded yet, or the database failed), and the caller asks the database instead.
    async fn fresh(&self) -> bool {
        if !self.loaded() {
            self.warm();
            return false;
        }
        self.with_behind_cleared(async {
            // `None`: the fence has said why.
            let checkpoint = self.checkpoint_now().await.ok_or(())?;
            if self.position() >= checkpoint {
                return Ok(());
            }
            self.refresh(Some(checkpoint))
                .await
                .map_err(|e| tracing::warn!("resident tenures: refresh failed: {e}"))
        })
        .await
        .is_ok()
    }

    /// The checkpoint as read by a statement that started after this call: the fence's
    /// last read when nothing committed since it started ([`Self::unchanged_checkpoint`]),
    /// else its next read, shared with the requests waiting with this one; `None` when
    /// that read failed (the fence logs why).
    async fn checkpoint_now(&self) -> Option<i64> {
        match self.unchanged_checkpoint() {
            Some(checkpoint) => Some(checkpoint),
            None => self.inner.fence.position().await,
        }
    }

    /// The checkpoint the fence read last, when the database's commit stamp read now is
    /// the one taken before that read: nothing was committed since, by any process, so
    /// that read is as good as one started now, and costs no statement (SQLite;
    /// [`Database::commit_stamp`]).
    fn unchanged_checkpoint(&self) -> Option<i64> {
        self.inner.last_read.unchanged(&self.inner.db)
    }

    /// Brings a loaded model to the checkpoint now (nothing before the first load): `serve`
    /// calls it whenever the change feed wakes and at every poll, so answers asked
    /// [`Freshness::AtLeast`] follow the log without a request having to fence.
    ///
    /// A model no question was answered from since the last call is left where it is and
    /// marked behind (keeping a model nobody asks current would cost a write-only server
    /// ~8 % of its ingest rate); the next question fences first.
    pub async fn follow(&self) -> Result<(), QueryError> {
        if !self.loaded() {
            return Ok(());
        }
        if !self.inner.used.swap(false, Ordering::AcqRel) {
            self.inner.behind.store(true, Ordering::Release);
            return Ok(());
        }
        self.with_behind_cleared(self.refresh(None)).await
    }

    /// Runs `refresh`, which brings the model to a checkpoint read after this call, with
    /// the model no longer marked behind; marked again if it fails.
    async fn with_behind_cleared<E>(
        &self,
        refresh: impl Future<Output = Result<(), E>>,
    ) -> Result<(), E> {
        // Cleared first: a `follow` that marks it meanwhile keeps it marked.
        self.inner.behind.store(false, Ordering::Release);
        let result = refresh.await;
        if result.is_err() {
            self.inner.behind.store(true, Ordering::Release);
        }
        result
    }

    /// Brings the model to `to` (`None`: the checkpoint now). One at a time; a refresh
    /// that finds the model already there reads nothing.
    async fn refresh(&self, to: Option<i64>) -> Result<(), QueryError> {
        let _one = self.inner.refresh.lock().await;
        let to = match to {
            Some(to) => to,
            None => super::projector::read_checkpoint(&self.inner.db).await?,
        };
        let at = self.loaded().then(|| self.position());
        let after = match step(at, to, self.inner.reload_after) {
            Step::Current => return Ok(()),
            Step::Apply { from } => Some(from),
            Step::Load => None,
        };
        let since = iso(self.inner.since);
        let changes =
            Changes::read(&self.inner.db, after, to, &since, self.inner.load_chunk).await?;
        let mut state = self.inner.state.write().unwrap_or_else(|e| e.into_inner());
        if after.is_none() {
            *state = None;
        }
        state
            .get_or_insert_with(State::default)
            .apply(changes, to, &since);
        Ok(())
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, Option<State>> {
        self.inner.state.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI64;
    use std::time::Duration;

    /// A request that arrives while a read is under way waits for the next read, and the
    /// requests waiting together share it.
    #[tokio::test]
    async fn a_request_waits_for_a_read_that_started_after_it() {
        let reads = Arc::new(AtomicI64::new(0));
        let (gate, gates) = mpsc::unbounded_channel::<()>();
        let gates = Arc::new(tokio::sync::Mutex::new(gates));
        let counter = reads.clone();
        let fence = Arc::new(Fence::spawn(move || {
            let counter = counter.clone();
            let gates = gates.clone();
            async move {
                // The read's number is taken when it starts; it ends when the test says.
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                gates.lock().await.recv().await;
                Some(n)
            }
        }));
        let first = tokio::spawn({
            let fence = fence.clone();
            async move { fence.position().await }
        });
        while reads.load(Ordering::SeqCst) < 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Read 1 is under way: these two arrived after it started.
        let later: Vec<_> = (0..2)
            .map(|_| {
                let fence = fence.clone();
                tokio::spawn(async move { fence.position().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        gate.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Some(1));
        gate.send(()).unwrap();
        for request in later {
            assert_eq!(request.await.unwrap(), Some(2));
        }
        assert_eq!(reads.load(Ordering::SeqCst), 2, "the two shared one read");
    }

    #[test]
    fn a_model_far_behind_loads_afresh() {
        assert_eq!(step(None, 10, 100), Step::Load);
        assert_eq!(step(Some(10), 10, 100), Step::Current);
        assert_eq!(step(Some(12), 10, 100), Step::Current);
        assert_eq!(step(Some(10), 110, 100), Step::Apply { from: 10 });
        assert_eq!(step(Some(10), 111, 100), Step::Load);
        assert_eq!(step(Some(0), 5, 100), Step::Apply { from: 0 });
    }

    fn notice(number: u32, clause: &str) -> String {
        format!(
            "临湘市人民政府\n关于人员职务任免的通知\n(临政人〔2024〕{number}号)\n\n\
             各镇人民政府、街道办事处，市直各单位：\n\n经市人民政府研究决定：\n\n{clause}。\n\n\
             临湘市人民政府\n\n2024年3月1日\n"
        )
    }

    /// A refresh to checkpoint `C` that meets a merge recorded after `C` (committed between
    /// the fence's read and the refresh's) leaves it for the next refresh: the tenures the
    /// merge moves are not in the model yet either.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_merge_after_the_checkpoint_is_left_for_the_next_refresh() {
        use crate::registry::{Actor, Registry};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        let registry = Registry::open(&url).await.unwrap();
        let actor = Actor::named("test");
        for (n, clause) in [
            (1, "张三同志任市财政局副局长"),
            (2, "张三同志兼任市商务局副局长"),
        ] {
            registry.ingest(&notice(n, clause), &actor).await.unwrap();
        }
        let on = NaiveDate::from_ymd_opt(2024, 6, 1).unwrap();
        let held = registry.queries().holdings("张三", on).await.unwrap();
        assert_eq!(held.len(), 2, "one record holds both posts");
        let first = held[0].person_id;
        let split = registry
            .split_person(first, vec![held[1].tenure_id], "两个人", &actor)
            .await
            .unwrap();
        registry
            .merge_persons(split, first, "同一个人", &actor)
            .await
            .unwrap();
        let db = registry.database();
        let merged_at = db.head_position().await.unwrap();
        let merged = |changes: &Changes| {
            let (_, person) = changes.persons.iter().find(|(id, _)| *id == split).unwrap();
            person.link.merged_into
        };
        for from in [None, Some(split - 1)] {
            let before = Changes::read(db, from, merged_at - 1, "2020-01-01", 100)
                .await
                .unwrap();
            assert_eq!(merged(&before), None, "read after {from:?}");
            let after = Changes::read(db, from, merged_at, "2020-01-01", 100)
                .await
                .unwrap();
            assert_eq!(merged(&after), Some(first), "read after {from:?}");
        }
    }

    /// Packed dates order exactly as their texts do, against any query day.
    #[test]
    fn packed_dates_order_as_their_texts() {
        let dates = [
            "1999",
            "2000",
            "2000-01",
            "2000-01-01",
            "2000-01-31",
            "2000-02",
            "2000-12-31",
            "2001",
            "2023-05",
            "2023-05-01",
            "2023-05-09",
            "2023-05-10",
            "2023-06",
            "9999-12-31",
        ];
        for a in dates {
            for b in dates {
                let (ka, kb) = (date_key(a).unwrap(), date_key(b).unwrap());
                assert_eq!(ka.cmp(&kb), a.cmp(b), "{a} vs {b}");
            }
        }
        for odd in [
            "",
            "2023-5",
            "2023/05/01",
            "二〇二三年",
            "2023-05-01T00",
            "20x3",
            "2023-0a",
        ] {
            assert_eq!(date_key(odd), None, "{odd}");
        }
    }

    /// `iso` writes what chrono's `%Y-%m-%d` writes, on every year.
    #[test]
    fn iso_writes_what_the_format_string_writes() {
        for (y, m, d) in [
            (2024, 3, 1),
            (1, 1, 1),
            (0, 12, 31),
            (9999, 12, 31),
            (10000, 1, 1),
            (-5, 6, 7),
        ] {
            let date = NaiveDate::from_ymd_opt(y, m, d).unwrap();
            assert_eq!(iso(date), date.format("%Y-%m-%d").to_string());
        }
    }

    /// A post's tenures are tested on their packed dates, and a date that does not pack
    /// falls back to the text: both answer as `Tenure::holds_on`.
    #[test]
    fn a_post_holds_what_holds_on_says() {
        let tenure = |id: i64, start: Option<&str>, end: Option<&str>| Tenure {
            tenure_id: id,
            start_date: start.map(str::to_string),
            end_date: end.map(str::to_string),
            ..Tenure::default()
        };
        let tenures = [
            tenure(1, Some("2020-01-01"), None),
            tenure(2, Some("2022-06"), Some("2024-03-01")),
            tenure(3, None, Some("2023")),
            tenure(4, Some("2024-03-01"), None),
            tenure(5, Some("二〇二一年"), None),
            tenure(6, Some("2021-02-30"), Some("2025")),
        ];
        let mut state = State::default();
        let mut post = Post::default();
        for t in tenures {
            post.tenures.push(Kept::of(&t));
            state.tenures.insert(t.tenure_id, t);
        }
        assert!(post.tenures[4].dates.is_none(), "does not pack");
        for on in [
            "2019-12-31",
            "2020-01-01",
            "2022-06-01",
            "2022-12-31",
            "2023-01-01",
            "2024-02-29",
            "2024-03-01",
            "2026-01-01",
        ] {
            let mut expected: Vec<i64> = state
                .tenures
                .values()
                .filter(|t| t.holds_on(on))
                .map(|t| t.tenure_id)
                .collect();
            expected.sort();
            let got: Vec<i64> = state
                .holding_post(&post, on)
                .iter()
                .map(|t| t.tenure_id)
                .collect();
            assert_eq!(got, expected, "on {on}");
        }
    }

    #[tokio::test]
    async fn a_failed_read_answers_none() {
        let fence = Fence::spawn(|| async { None });
        assert_eq!(fence.position().await, None);
    }
}
