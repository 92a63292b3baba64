//! The projector's working set: what it knows of the read models, and the rows it has yet to
//! write.
//!
//! Deciding a fact (which person record a name means, which tenure a removal ends, how many
//! holders a one-seat post has) needs only a few keyed lookups: a notice's reference, an
//! organization's aliases, the records of a name, and the current tenure versions of one
//! post. The model keeps exactly those, keyed, in memory, and buffers every write until
//! [`Model::flush`], which writes them with multi-row INSERTs. So applying an event costs no
//! SQL round trip once its keys are known, and a batch of events costs a handful of
//! statements instead of a dozen per fact.
//!
//! Invariants:
//! - Only the projector writes the read models, under the checkpoint lock (see
//!   `projector.rs`), so what the model remembers stays true as long as the checkpoint is
//!   where the model left it. The projector keeps a model across batches only then, and drops
//!   it on any error: a rolled-back transaction never leaves a model that believes its writes.
//! - Every buffered write is also remembered in the keyed maps, so a key the model does not
//!   know has no buffered row either: loading it from the database (a *partial* model) reads
//!   the truth. A *complete* model (rebuild, starting from empty tables) never reads at all:
//!   a key it does not know does not exist.
//! - A tenure version is never updated but for closing it (`version_to`); a version written
//!   and superseded within one flush is written closed.

use std::collections::VecDeque;
use std::sync::Arc;

mod one_statement;

// foldhash: the model's keys are hashed millions of times in a rebuild, where SipHash was
// about 6 % of the replay's samples; its seed is still random per process.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use sqlx::any::AnyRow;
use sqlx::postgres::PgConnection;
use sqlx::query::Query;
use sqlx::{AnyConnection, Row};

use super::queries::NoticeWarning;
use crate::domain::events::PostFact;
use crate::store::log::{numbered, padded_insert, padded_list, placeholders, statement_size};
use crate::store::{Backend, StoreError};

/// Rows per multi-row INSERT (the event log's append uses the same): 26 columns of a tenure
/// version stay far below both backends' parameter limits.
const INSERT_CHUNK: usize = 500;

/// Keyed entries a model may hold to be kept between projections. A tenure version, the
/// largest entry, takes about 1 KiB with its strings: the limit bounds a server's cache to
/// roughly 100 MiB (measured: 563 MiB RSS with a 400 000 limit after 10 000 notices).
const KEEP_LIMIT: usize = 100_000;

/// Keyed entries a model may hold to be kept between the appends of a bulk load
/// (`Projector::bulk_load`). A bulk load appends thousands of events at a time, and a
/// model dropped at [`KEEP_LIMIT`] would read back, for every batch, the aliases, names
/// and tenures its facts touch — at 1M events most of them. `renmian ingest` of 40 000
/// generated files (1 014 430 events, SQLite): 176 s with the model dropped at 100 000
/// entries, 135 s kept whole (peak RSS 500 MiB → 1.15 GiB, as much as a rebuild of the
/// same log). Past this limit it is dropped as usual: at the 1M load's ~1 KiB per entry
/// (an estimate: ~40 000 notices, 188 000 person records and about a million tenure
/// versions), a model of a few GiB at most, reached after about 3M events.
const BULK_KEEP_LIMIT: usize = 4_000_000;

/// Keys per prefetch statement ([`Model::prefetch`]): IN lists stay well under SQLite's
/// parameter limit, and sqlx's by-name binding on SQLite (linear per parameter) stays cheap.
const PREFETCH_KEYS: usize = 200;

/// The connection of the transaction a projection writes in, as the projection's code sees
/// it; or none, while that connection writes a rebuild's previous rows and the rebuild goes
/// on applying events that need no SQL (a complete model reads nothing; see
/// `projector::applies_in_memory`).
pub(super) enum Conn<'t> {
    /// No connection: any statement is an error, never a silent skip.
    None,
    Any(&'t mut AnyConnection),
    /// A PostgreSQL rebuild's transaction, on the driver's own connection: its rows go in
    /// with `COPY` ([`Writes::write`]). Only what a complete model runs takes it (writes,
    /// and the statements of revocations, corrections, merges and splits: [`on_conn!`]);
    /// the reads of a partial model ask for [`Conn::get`], which refuses it.
    Postgres(&'t mut PgConnection),
}

impl<'t> Conn<'t> {
    pub fn of(conn: &'t mut AnyConnection) -> Self {
        Self::Any(conn)
    }

    pub fn postgres(conn: &'t mut PgConnection) -> Self {
        Self::Postgres(conn)
    }

    pub fn none() -> Self {
        Self::None
    }

    pub fn get(&mut self) -> Result<&mut AnyConnection, StoreError> {
        match self {
            Self::Any(conn) => Ok(conn),
            Self::None => Err(Self::missing()),
            Self::Postgres(_) => Err(StoreError::Corrupt(
                "a rebuild on PostgreSQL's own driver reached a statement only a partial \
                 model runs (a bug)"
                    .into(),
            )),
        }
    }

    pub fn missing() -> StoreError {
        StoreError::Corrupt(
            "a rebuild applied an event that needs SQL while it was writing (a bug)".into(),
        )
    }
}

/// `on_conn!(conn, |c| body)`: runs `body` with `c` the connection of `conn` (a
/// `&mut Conn`), of whichever driver it is; the body is compiled once per driver, so the
/// same statement code serves both. `body` evaluates to a `Result<_, StoreError>`; with no
/// connection, that is an error.
macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            Conn::Any(conn) => {
                let $c = &mut **conn;
                $body
            }
            Conn::Postgres(conn) => {
                let $c = &mut **conn;
                $body
            }
            Conn::None => Err(Conn::missing()),
        }
    };
}
pub(super) use on_conn;

/// `execute_on!(conn, query)`: executes `query` (built once per driver, as in [`on_conn!`])
/// on the connection of `conn` and returns the rows it changed.
macro_rules! execute_on {
    ($conn:expr, $query:expr) => {
        on_conn!($conn, |c| $query
            .execute(c)
            .await
            .map(|done| done.rows_affected())
            .map_err(StoreError::from))
    };
}
pub(super) use execute_on;

/// A notice's context for the facts it states.
#[derive(Debug, Clone)]
pub(super) struct NoticeContext {
    /// Document number, else the notice key: what tenures cite.
    pub reference: String,
    pub jurisdiction: Option<String>,
}

/// A person record a name may mean.
#[derive(Debug, Clone)]
pub(super) struct PersonRef {
    pub person_id: i64,
    pub jurisdiction: Option<String>,
}

/// A version of a tenure row (see `migrations/*/0002_read_models.sql`).
#[derive(Debug, Clone, Default)]
pub(super) struct TenureRow {
    pub tenure_id: i64,
    pub person_id: i64,
    pub person: String,
    pub organization: String,
    pub organization_as_written: String,
    pub post: String,
    pub concurrent: bool,
    pub start_date: Option<String>,
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
    pub ended_position: Option<i64>,
    pub withdrawn_position: Option<i64>,
    pub withdrawn_reason: Option<String>,
}

/// The columns of a tenure row after `version_from` (and `version_to`), in
/// [`TenureRow::cells`] order: one list for the version reads and the version writes.
macro_rules! tenure_columns {
    () => {
        "tenure_id, person_id, person, organization, organization_as_written, post, \
         concurrent, start_date, end_date, probation_months, probation_end, probation_outcome, \
         probation_outcome_on, note, end_note, appointing_notice, appointing_line, \
         appointing_clause, ending_notice, ending_line, ending_clause, recorded_position, \
         ended_position, withdrawn_position, withdrawn_reason"
    };
}

const TENURE_COLUMNS: &str = tenure_columns!();

/// Cells of a tenure version row: `version_from`, `version_to` and [`TENURE_COLUMNS`].
const TENURE_CELLS: usize = 27;

/// Writes tenure versions ([`TenureRow::cells`] order).
const TENURE_INSERT: &str = concat!(
    "INSERT INTO rm_tenures (version_from, version_to, ",
    tenure_columns!(),
    ") VALUES"
);

impl TenureRow {
    /// Decodes the stored columns of a tenure version (also the base of `Tenure`'s decoding
    /// in `queries.rs`).
    pub(crate) fn from_row<R: Row>(r: &R) -> Result<Self, sqlx::Error>
    where
        for<'c> &'c str: sqlx::ColumnIndex<R>,
        i64: for<'v> sqlx::Decode<'v, R::Database> + sqlx::Type<R::Database>,
        String: for<'v> sqlx::Decode<'v, R::Database> + sqlx::Type<R::Database>,
    {
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

    /// Open: neither ended by date nor by a removal of unknown date.
    pub fn is_open(&self) -> bool {
        self.end_date.is_none() && self.ended_position.is_none()
    }

    /// Holds the post on `date` (dates compare as text: YYYY[-MM[-DD]]).
    pub fn holds_on(&self, date: &str) -> bool {
        self.start_date.as_deref().is_none_or(|s| s <= date)
            && (self.is_open() || self.end_date.as_deref().is_some_and(|e| e > date))
    }

    /// The version's cells: `version_from`, `version_to`, then [`TENURE_COLUMNS`] in order
    /// (what [`write_rows`] binds to [`TENURE_INSERT`] or sends in a `COPY` of its columns).
    fn cells(&self, version_from: i64, version_to: Option<i64>) -> [Value<'_>; TENURE_CELLS] {
        fn text(v: &Option<String>) -> Value<'_> {
            Value::Text(v.as_deref())
        }
        [
            Value::Int(Some(version_from)),
            Value::Int(version_to),
            Value::Int(Some(self.tenure_id)),
            Value::Int(Some(self.person_id)),
            Value::Text(Some(&self.person)),
            Value::Text(Some(&self.organization)),
            Value::Text(Some(&self.organization_as_written)),
            Value::Text(Some(&self.post)),
            Value::Int(Some(i64::from(self.concurrent))),
            text(&self.start_date),
            text(&self.end_date),
            Value::Int(self.probation_months),
            text(&self.probation_end),
            text(&self.probation_outcome),
            text(&self.probation_outcome_on),
            text(&self.note),
            text(&self.end_note),
            text(&self.appointing_notice),
            Value::Int(self.appointing_line),
            text(&self.appointing_clause),
            text(&self.ending_notice),
            Value::Int(self.ending_line),
            text(&self.ending_clause),
            Value::Int(Some(self.recorded_position)),
            Value::Int(self.ended_position),
            Value::Int(self.withdrawn_position),
            text(&self.withdrawn_reason),
        ]
    }
}

/// A value to bind or copy, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
}

impl<'a> From<&'a Cell> for Value<'a> {
    fn from(cell: &'a Cell) -> Self {
        match cell {
            Cell::Int(v) => Self::Int(*v),
            Cell::Text(v) => Self::Text(v.as_deref()),
        }
    }
}

/// Appends `values` to `out` as one line of `COPY`'s text format: tab-separated, `\N` for
/// NULL, and the characters that format gives a meaning (backslash, tab, newline,
/// carriage return) escaped.
fn copy_line<'a>(out: &mut String, values: impl IntoIterator<Item = Value<'a>>) {
    for (i, value) in values.into_iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        match value {
            Value::Int(Some(v)) => out.push_str(itoa::Buffer::new().format(v)),
            Value::Text(Some(v)) => copy_text(out, v),
            Value::Int(None) | Value::Text(None) => out.push_str("\\N"),
        }
    }
    out.push('\n');
}

/// `text` as a field of `COPY`'s text format: a backslash, tab, newline or carriage return
/// escaped, the rest copied in runs between them. The four are ASCII, so they never occur
/// inside another character's UTF-8 bytes; they are found with `memchr`'s SIMD searches
/// (most fields have none, a clause or a notice's title a line break at most), not byte
/// by byte.
fn copy_text(out: &mut String, text: &str) {
    let bytes = text.as_bytes();
    // The next of each kind at or after `from`; each is searched again only once passed,
    // so the text is scanned once for each kind.
    let control =
        |from: usize| memchr::memchr3(b'\t', b'\n', b'\r', &bytes[from..]).map(|at| from + at);
    let backslash = |from: usize| memchr::memchr(b'\\', &bytes[from..]).map(|at| from + at);
    let (mut next_control, mut next_backslash) = (control(0), backslash(0));
    let mut run = 0;
    while let Some(at) = [next_control, next_backslash].into_iter().flatten().min() {
        out.push_str(&text[run..at]);
        out.push_str(match bytes[at] {
            b'\\' => "\\\\",
            b'\t' => "\\t",
            b'\n' => "\\n",
            _ => "\\r",
        });
        run = at + 1;
        if next_control == Some(at) {
            next_control = control(run);
        } else {
            next_backslash = backslash(run);
        }
    }
    out.push_str(&text[run..]);
}

/// One value of a buffered row.
#[derive(Debug, Clone)]
pub(super) enum Cell {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Cell {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}
impl From<Option<i64>> for Cell {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}
impl From<String> for Cell {
    fn from(v: String) -> Self {
        Self::Text(Some(v))
    }
}
impl From<&str> for Cell {
    fn from(v: &str) -> Self {
        Self::Text(Some(v.to_string()))
    }
}
impl From<Option<String>> for Cell {
    fn from(v: Option<String>) -> Self {
        Self::Text(v)
    }
}

/// Buffered rows of one table, written by one multi-row statement per [`INSERT_CHUNK`] rows.
struct Rows {
    /// `INSERT INTO t (c1, …) VALUES`
    head: &'static str,
    /// After the values, e.g. `ON CONFLICT … DO NOTHING`.
    tail: &'static str,
    columns: usize,
    cells: Vec<Cell>,
}

impl Rows {
    const fn new(head: &'static str, columns: usize, tail: &'static str) -> Self {
        Self {
            head,
            tail,
            columns,
            cells: Vec::new(),
        }
    }

    fn push(&mut self, row: impl IntoIterator<Item = Cell>) -> usize {
        let index = self.len();
        self.cells.extend(row);
        debug_assert_eq!(self.cells.len() % self.columns, 0);
        index
    }

    fn len(&self) -> usize {
        self.cells.len() / self.columns
    }

    fn cell_mut(&mut self, row: usize, column: usize) -> &mut Cell {
        &mut self.cells[row * self.columns + column]
    }

    /// Writes the buffered rows in order ([`write_rows`]); the buffer is emptied and keeps
    /// its capacity for the next rows.
    async fn write(&mut self, conn: &mut Conn<'_>, backend: Backend) -> Result<(), StoreError> {
        let rows = self.cells.chunks_exact(self.columns).map(row_values);
        write_rows(conn, backend, (self.head, self.tail, self.columns), rows).await?;
        self.cells.clear();
        Ok(())
    }
}

/// A buffered row's cells, borrowed. (Functions, not closures, map the rows [`write_rows`]
/// is given: a closure's borrow is not general enough for the futures `tokio::spawn` takes.)
fn row_values(row: &[Cell]) -> impl Iterator<Item = Value<'_>> {
    row.iter().map(Value::from)
}

/// A buffered tenure version's cells, borrowed ([`TenureRow::cells`]).
fn version_values(
    (from, to, row): &(i64, Option<i64>, Arc<TenureRow>),
) -> [Value<'_>; TENURE_CELLS] {
    row.cells(*from, *to)
}

/// Writes `rows` (each a row's cells in `columns`' order) with `insert` (`INSERT INTO t (c1,
/// …) VALUES`) and its `tail` (a conflict clause, or nothing): on PostgreSQL's own
/// connection with `COPY` when there is no conflict clause to honour (sqlx `Any` cannot
/// send it), else as multi-row INSERTs of [`INSERT_CHUNK`] rows, every cell bound by
/// reference into the caller's buffers (sqlx `Any` copies an owned `String` it is given,
/// and borrows a `&str`).
async fn write_rows<'a, R>(
    conn: &mut Conn<'_>,
    backend: Backend,
    (insert, tail, columns): (&str, &str, usize),
    rows: impl Iterator<Item = R>,
) -> Result<(), StoreError>
where
    R: IntoIterator<Item = Value<'a>>,
{
    if let Conn::Postgres(pg) = conn {
        if tail.is_empty() {
            return copy_in(pg, insert, rows, Freeze::Yes).await;
        }
    }
    let mut rows = rows.peekable();
    // A statement's cells at a time, the buffer reused (most flushes leave most tables empty).
    let mut cells: Vec<Value<'a>> = Vec::new();
    while rows.peek().is_some() {
        cells.clear();
        cells.extend(rows.by_ref().take(INSERT_CHUNK).flatten());
        let n = cells.len() / columns;
        let sql = match backend {
            // Padded with NULL rows to one of a few sizes: the text is found in the
            // statement cache instead of prepared again ([`statement_size`]).
            Backend::Sqlite => {
                let size = statement_size(n, INSERT_CHUNK);
                cells.resize(size * columns, Value::Int(None));
                let target = insert_target(insert).ok_or_else(|| {
                    StoreError::Corrupt(format!("not an INSERT to pad: {insert}"))
                })?;
                padded_insert(target, size, columns, tail)
            }
            Backend::Postgres => {
                format!("{insert} {}{tail}", placeholders(backend, n, columns))
            }
        };
        on_conn!(conn, |c| {
            let arguments = arguments(&*c, &cells).map_err(sqlx::Error::Encode)?;
            sqlx::query_with(&sql, arguments)
                .execute(c)
                .await
                .map(|_| ())
                .map_err(StoreError::from)
        })?;
    }
    Ok(())
}

/// `cells` as the arguments of a statement on `conn`'s driver, their vector sized once:
/// bound one at a time, up to 13 500 of them grew it a doubling at a time, each growth a
/// copy (sizing it once saved 3.2 % of a SQLite rebuild's instructions, BENCHMARKS.md
/// session 20).
fn arguments<'q, C>(
    _conn: &C,
    cells: &[Value<'q>],
) -> Result<<C::Database as sqlx::Database>::Arguments<'q>, sqlx::error::BoxDynError>
where
    C: sqlx::Connection,
    Option<i64>: sqlx::Encode<'q, C::Database> + sqlx::Type<C::Database>,
    Option<&'q str>: sqlx::Encode<'q, C::Database> + sqlx::Type<C::Database>,
{
    use sqlx::Arguments;
    let mut arguments = <C::Database as sqlx::Database>::Arguments::<'q>::default();
    arguments.reserve(cells.len(), 0);
    for cell in cells {
        match *cell {
            Value::Int(v) => arguments.add(v)?,
            Value::Text(v) => arguments.add(v)?,
        }
    }
    Ok(arguments)
}

/// Bytes of `COPY` data sent at a time.
const COPY_SEND_BYTES: usize = 1 << 20;

/// The next piece of `rows` in `COPY`'s text format, about [`COPY_SEND_BYTES`]; `None`
/// when no row is left.
fn copy_piece<'a, R>(rows: &mut impl Iterator<Item = R>) -> Option<String>
where
    R: IntoIterator<Item = Value<'a>>,
{
    // Room for a piece and the line that takes it over the size: no piece is grown (and
    // copied) on its way to a megabyte.
    let mut data = String::with_capacity(COPY_SEND_BYTES + COPY_SEND_BYTES / 8);
    for row in rows.by_ref() {
        copy_line(&mut data, row);
        if data.len() >= COPY_SEND_BYTES {
            break;
        }
    }
    (!data.is_empty()).then_some(data)
}

/// `COPY`s `rows` into the table and columns `insert` names (`INSERT INTO t (c1, …)
/// VALUES`): on PostgreSQL several times faster than multi-row INSERTs of the same rows
/// (974 430 tenure versions: 3.9 s against about 10 s; BENCHMARKS.md, session 14). Each
/// piece is written while the server takes in the one before: written all before the
/// first was sent, the two took turns, and a 1M-event bulk load's rebuild kept one of two
/// cores idle while it wrote its rows (BENCHMARKS.md, session 32).
async fn copy_in<'a, R>(
    pg: &mut PgConnection,
    insert: &str,
    mut rows: impl Iterator<Item = R>,
    freeze: Freeze,
) -> Result<(), StoreError>
where
    R: IntoIterator<Item = Value<'a>>,
{
    let Some(mut piece) = copy_piece(&mut rows) else {
        return Ok(());
    };
    let target = insert_target(insert)
        .ok_or_else(|| StoreError::Corrupt(format!("not an INSERT to copy: {insert}")))?;
    let with = match freeze {
        Freeze::Yes => " WITH (FREEZE)",
        Freeze::No => "",
    };
    let mut copy = pg
        .copy_in_raw(&format!("COPY {target} FROM STDIN{with}"))
        .await?;
    loop {
        let (sent, next) = futures::join!(
            copy.send(piece.into_bytes()),
            // Runs (to its end) once the piece is on its way.
            async { copy_piece(&mut rows) }
        );
        sent?;
        match next {
            Some(next) => piece = next,
            None => break,
        }
    }
    copy.finish().await?;
    Ok(())
}

/// Whether a `COPY` writes its rows frozen (visible to every transaction, with nothing left
/// for `VACUUM` to do on their pages): only into a table created in the same transaction.
#[derive(Clone, Copy)]
enum Freeze {
    Yes,
    /// Into a table created by another transaction (a staged rebuild's, `shadow.rs`).
    No,
}

/// `t (c1, …)` of `INSERT INTO t (c1, …) VALUES`: the table and columns an insert names.
fn insert_target(insert: &str) -> Option<&str> {
    insert
        .trim()
        .strip_prefix("INSERT INTO ")
        .and_then(|t| t.strip_suffix("VALUES"))
        .map(str::trim)
}

/// Columns of [`Writes::notices`] rows, and the index of `rm_notices.event_count` in them.
const NOTICE_COLUMNS: usize = 14;
const NOTICE_EVENT_COUNT: usize = 10;

/// Rows and changes not written yet, in the order [`Model::flush`] writes them.
pub(super) struct Writes {
    /// Whose SQL dialect the statements use.
    backend: Backend,
    notices: Rows,
    requests: Rows,
    warnings: Rows,
    organizations: Rows,
    jurisdictions: Rows,
    aliases: Rows,
    persons: Rows,
    posts: Rows,
    /// (tenure_id, version_from, version_to) of written versions to close.
    closes: Vec<(i64, i64, i64)>,
    /// New versions: (version_from, version_to, row); `version_to` is set when a version is
    /// superseded before it was written.
    tenures: Vec<(i64, Option<i64>, Arc<TenureRow>)>,
    /// Facts counted for notices written by an earlier flush.
    fact_counts: HashMap<String, i64>,
    /// Notices buffered in `notices`: notice id → row.
    pending_notices: HashMap<String, usize>,
}

impl Writes {
    fn new(backend: Backend) -> Self {
        Self {
            backend,
            notices: Rows::new(
                "INSERT INTO rm_notices (notice_id, notice_key, document_number, issuer, title, \
                 issued_on, jurisdiction, content_hash, remarks, revokes, event_count, \
                 recorded_position, recorded_at, actor) VALUES",
                NOTICE_COLUMNS,
                "",
            ),
            requests: Rows::new(
                "INSERT INTO rm_ingest_requests (request_id, notice_id, position) VALUES",
                3,
                " ON CONFLICT (request_id, notice_id) DO NOTHING",
            ),
            warnings: Rows::new(
                "INSERT INTO rm_notice_warnings (position, seq, notice_id, line, message) VALUES",
                5,
                "",
            ),
            organizations: Rows::new(
                "INSERT INTO rm_organizations (canonical_name, jurisdiction, first_position) VALUES",
                3,
                " ON CONFLICT (canonical_name) DO NOTHING",
            ),
            jurisdictions: Rows::new(
                "INSERT INTO rm_jurisdictions (jurisdiction) VALUES",
                1,
                " ON CONFLICT (jurisdiction) DO NOTHING",
            ),
            aliases: Rows::new(
                "INSERT INTO rm_organization_aliases (alias, canonical_name, first_position) VALUES",
                3,
                "",
            ),
            persons: Rows::new(
                "INSERT INTO rm_persons (person_id, name, gender, jurisdiction, first_position) \
                 VALUES",
                5,
                "",
            ),
            posts: Rows::new(
                "INSERT INTO rm_posts (organization, post, first_position) VALUES",
                3,
                " ON CONFLICT (organization, post) DO NOTHING",
            ),
            closes: Vec::new(),
            tenures: Vec::new(),
            fact_counts: HashMap::new(),
            pending_notices: HashMap::new(),
        }
    }
}

impl Writes {
    fn is_empty(&self) -> bool {
        self.notices.len()
            + self.requests.len()
            + self.warnings.len()
            + self.organizations.len()
            + self.jurisdictions.len()
            + self.aliases.len()
            + self.persons.len()
            + self.posts.len()
            + self.closes.len()
            + self.tenures.len()
            + self.fact_counts.len()
            == 0
    }

    fn buffered_rows(&self) -> usize {
        self.notices.len() + self.warnings.len() + self.persons.len() + self.tenures.len()
    }
}

/// The current (latest, not withdrawn) version of a tenure, as the model knows it.
#[derive(Debug, Clone)]
pub(super) struct Version {
    /// Shared with the write buffer ([`Writes::tenures`]) until written: a version is
    /// buffered once and kept once, never copied (a rebuild keeps ~1M of them; copying each
    /// row into a buffer of ~670-byte elements, and growing that buffer, was about a fifth
    /// of its replay's samples).
    pub row: Arc<TenureRow>,
    from: i64,
    stored: Stored,
}

/// Where a [`Version`] stands with the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    /// Written (or read from it).
    Written,
    /// In [`Writes::tenures`] at this index while the model is at this flush generation.
    Buffered { generation: u64, index: usize },
    /// Open and held back by a rebuild ([`Model::rebuilding`]): written once it is closed,
    /// with its final `version_to`, or by the next [`Model::flush`].
    Held,
}

/// A post's current, not withdrawn tenure versions, the open ones apart from the ended ones:
/// most decisions read only the open ones, and a head post's ended ones run to hundreds at
/// 1M events (scanning them was a tenth of a rebuild's replay).
#[derive(Debug, Default)]
struct PostVersions {
    open: Vec<Version>,
    ended: Vec<Version>,
    /// No ended version ends after this date: an upper bound, kept as versions leave.
    ended_until: Option<String>,
}

/// Which of a post's versions a lookup visits.
#[derive(Clone, Copy)]
enum Scope<'a> {
    Open,
    All,
    /// Those that may hold on this date: the open ones, and the ended ones unless none of
    /// them ends after it.
    HoldingOn(&'a str),
}

impl PostVersions {
    fn push(&mut self, version: Version) {
        if version.row.is_open() {
            self.open.push(version);
            return;
        }
        if let Some(end) = &version.row.end_date {
            if self.ended_until.as_ref().is_none_or(|until| end > until) {
                self.ended_until = Some(end.clone());
            }
        }
        self.ended.push(version);
    }

    fn len(&self) -> usize {
        self.open.len() + self.ended.len()
    }

    fn visit<'s>(&'s self, scope: Scope<'_>) -> impl Iterator<Item = &'s Version> {
        let ended = match scope {
            Scope::Open => false,
            Scope::All => true,
            Scope::HoldingOn(date) => self.ended_until.as_deref().is_some_and(|u| u > date),
        };
        let ended = if ended { &self.ended[..] } else { &[] };
        self.open.iter().chain(ended)
    }

    fn contains(&self, tenure_id: i64) -> bool {
        self.find(tenure_id).is_some()
    }

    /// Tenure `tenure_id`'s version, the open ones looked at first (a head post's ended
    /// ones run to hundreds).
    fn find(&self, tenure_id: i64) -> Option<&Version> {
        self.visit(Scope::All)
            .find(|v| v.row.tenure_id == tenure_id)
    }

    /// Removes tenure `tenure_id`'s version (open ones are looked at first).
    fn take(&mut self, tenure_id: i64) -> Option<Version> {
        for list in [&mut self.open, &mut self.ended] {
            if let Some(at) = list.iter().position(|v| v.row.tenure_id == tenure_id) {
                return Some(list.swap_remove(at));
            }
        }
        None
    }
}

/// The notice whose events are being applied (a notice's events are committed together, with
/// one `recorded_at`): the one-seat check runs on the tenures it opened once it is complete.
#[derive(Debug)]
pub(super) struct NoticeRun {
    pub aggregate_id: String,
    pub recorded_at: String,
    /// Whether this model applied its first event (else that was applied before this model
    /// existed, and the database knows the tenures opened before).
    pub from_start: bool,
    /// (tenure_id, organization, post) of the tenures it opened, as this model applied them.
    pub appointed: Vec<(i64, String, String)>,
}

type PostKey = (String, String);

/// A post's key, borrowed: looks up a [`PostKey`] without making one. The model looks up
/// posts several times a fact, and a key's two strings made and freed each time were a
/// good part of a replay's allocations.
trait PostKeyRef: Sync {
    fn organization(&self) -> &str;
    fn post(&self) -> &str;
}

impl PostKeyRef for PostKey {
    fn organization(&self) -> &str {
        &self.0
    }
    fn post(&self) -> &str {
        &self.1
    }
}

impl PostKeyRef for (&str, &str) {
    fn organization(&self) -> &str {
        self.0
    }
    fn post(&self) -> &str {
        self.1
    }
}

impl<'a> std::borrow::Borrow<dyn PostKeyRef + 'a> for PostKey {
    fn borrow(&self) -> &(dyn PostKeyRef + 'a) {
        self
    }
}

/// Hashes as a [`PostKey`] does: a tuple hashes its fields in order, and a `String` as its
/// `str`.
impl std::hash::Hash for dyn PostKeyRef + '_ {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.organization().hash(state);
        self.post().hash(state);
    }
}

impl PartialEq for dyn PostKeyRef + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.organization() == other.organization() && self.post() == other.post()
    }
}

impl Eq for dyn PostKeyRef + '_ {}

/// `(organization, post)` as the borrowed key of the model's maps of posts.
fn post_key<'a>(key: &'a (&'a str, &'a str)) -> &'a (dyn PostKeyRef + 'a) {
    key
}

pub(super) struct Model {
    backend: Backend,
    complete: bool,
    /// Last position applied; `None` until the model has applied something or knows where
    /// the read models stand.
    last_position: Option<i64>,
    /// Hash of the event at `last_position`, to recognise that event later.
    last_hash: Option<String>,
    /// First position this model applied.
    first_applied: Option<i64>,
    notices: HashMap<String, NoticeContext>,
    /// alias → canonical organization, or `None` when known to be absent.
    aliases: HashMap<String, Option<String>>,
    organizations: HashSet<String>,
    jurisdictions: HashSet<String>,
    posts: HashSet<PostKey>,
    /// name → records of that name not merged away, by id.
    persons: HashMap<String, Vec<PersonRef>>,
    /// (organization, post) → current, not withdrawn tenure versions: every one in a
    /// complete model; in a partial one the open ones, the ended ones once asked for
    /// (`ended_loaded`), and every tenure the model changed.
    tenures: HashMap<PostKey, PostVersions>,
    ended_loaded: HashSet<PostKey>,
    /// (post, date) pairs whose versions ending after the date were read
    /// ([`Model::holders_on`], [`Model::prefetch_holders_on`]).
    ended_after: HashSet<(PostKey, String)>,
    /// position → next warning sequence number.
    warning_seq: HashMap<i64, i64>,
    pub run: Option<NoticeRun>,
    out: Writes,
    generation: u64,
    /// A rebuild's model holds open versions back instead of buffering them
    /// ([`Stored::Held`]); `held` counts them.
    hold_open: bool,
    held: usize,
}

impl Model {
    /// A model of empty read models (rebuild): it never reads.
    pub fn complete(backend: Backend) -> Self {
        Self::new(backend, true, Some(0))
    }

    /// A rebuild's model: complete, and an open tenure version is not buffered until it is
    /// closed (then it is written once, closed, instead of written open and updated when
    /// closed: half the versions of a 1M-event log are closed, 486 426 UPDATEs) or until the
    /// next [`flush`](Self::flush). Only within one transaction: a flush writes them all.
    pub fn rebuilding(backend: Backend) -> Self {
        Self {
            hold_open: true,
            ..Self::complete(backend)
        }
    }

    /// A model of read models as they stand: keys are read when first needed.
    pub fn partial(backend: Backend) -> Self {
        Self::new(backend, false, None)
    }

    fn new(backend: Backend, complete: bool, last_position: Option<i64>) -> Self {
        Self {
            backend,
            complete,
            last_position,
            last_hash: None,
            first_applied: None,
            notices: HashMap::new(),
            aliases: HashMap::new(),
            organizations: HashSet::new(),
            jurisdictions: HashSet::new(),
            posts: HashSet::new(),
            persons: HashMap::new(),
            tenures: HashMap::new(),
            ended_loaded: HashSet::new(),
            ended_after: HashSet::new(),
            warning_seq: HashMap::new(),
            run: None,
            out: Writes::new(backend),
            generation: 0,
            hold_open: false,
            held: 0,
        }
    }

    pub fn last_position(&self) -> Option<i64> {
        self.last_position
    }

    pub fn last_hash(&self) -> Option<&str> {
        self.last_hash.as_deref()
    }

    /// Records that the event at `position` is applied. Its hash, which recognises the
    /// model's position later, is noted once a batch ([`Self::stands_at`]).
    pub fn applied(&mut self, position: i64) {
        self.first_applied.get_or_insert(position);
        self.last_position = Some(position);
        self.last_hash = None;
    }

    /// Records that the read models stand at `position` when the model knows no position
    /// yet (a partial model, in an append that holds the log head from `position` on).
    pub fn stands_after(&mut self, position: i64) {
        self.last_position.get_or_insert(position);
    }

    /// Notes `hash`, the hash of the event at the last position applied.
    pub fn stands_at(&mut self, hash: &str) {
        self.last_hash = Some(hash.to_owned());
    }

    /// Whether the model is small enough to keep between catch-ups: [`KEEP_LIMIT`]
    /// entries, or [`BULK_KEEP_LIMIT`] while a bulk load runs (`bulk`).
    pub fn worth_keeping(&self, bulk: bool) -> bool {
        let limit = if bulk { BULK_KEEP_LIMIT } else { KEEP_LIMIT };
        let entries = self.notices.len()
            + self.aliases.len()
            + self.organizations.len()
            + self.posts.len()
            + self.persons.len()
            + self.tenures.values().map(PostVersions::len).sum::<usize>()
            + self.warning_seq.len();
        entries <= limit
    }

    /// Rows buffered, to bound a long replay's memory.
    pub fn buffered_rows(&self) -> usize {
        self.out.buffered_rows()
    }

    /// The warnings on `notice_id` buffered and not yet flushed, in the order the read model
    /// lists a notice's warnings (position, then seq).
    pub fn buffered_warnings(&self, notice_id: &str) -> Vec<NoticeWarning> {
        let mut found: Vec<(i64, i64, NoticeWarning)> = self
            .out
            .warnings
            .cells
            .chunks_exact(self.out.warnings.columns)
            .filter_map(|row| match row {
                [Cell::Int(Some(position)), Cell::Int(Some(seq)), Cell::Text(Some(notice)), Cell::Int(line), Cell::Text(Some(message))]
                    if notice == notice_id =>
                {
                    let warning = NoticeWarning {
                        position: *position,
                        line: *line,
                        message: message.clone(),
                    };
                    Some((*position, *seq, warning))
                }
                _ => None,
            })
            .collect();
        found.sort_by_key(|(position, seq, _)| (*position, *seq));
        found.into_iter().map(|(_, _, warning)| warning).collect()
    }

    // --- notices ---

    pub fn add_notice(&mut self, notice_id: &str, context: NoticeContext, row: Vec<Cell>) {
        let index = self.out.notices.push(row);
        self.out
            .pending_notices
            .insert(notice_id.to_string(), index);
        self.notices.insert(notice_id.to_string(), context);
    }

    pub fn add_ingest_request(&mut self, request_id: &str, notice_id: &str, position: i64) {
        self.out
            .requests
            .push([request_id.into(), notice_id.into(), position.into()]);
    }

    /// The notice's context; `None` when no such notice was recorded.
    pub async fn notice(
        &mut self,
        tx: &mut Conn<'_>,
        notice_id: &str,
    ) -> Result<Option<NoticeContext>, StoreError> {
        if let Some(known) = self.notices.get(notice_id) {
            return Ok(Some(known.clone()));
        }
        if self.complete {
            return Ok(None);
        }
        let Some(row) = sqlx::query(
            "SELECT document_number, notice_key, jurisdiction FROM rm_notices WHERE notice_id = $1",
        )
        .bind(notice_id)
        .fetch_optional(tx.get()?)
        .await?
        else {
            return Ok(None);
        };
        let number: Option<String> = row.try_get("document_number")?;
        let key: String = row.try_get("notice_key")?;
        let known = NoticeContext {
            reference: number.unwrap_or(key),
            jurisdiction: row.try_get("jurisdiction")?,
        };
        self.notices.insert(notice_id.to_string(), known.clone());
        Ok(Some(known))
    }

    pub fn count_fact(&mut self, notice_id: &str) {
        match self.out.pending_notices.get(notice_id) {
            Some(&row) => {
                if let Cell::Int(Some(n)) = self.out.notices.cell_mut(row, NOTICE_EVENT_COUNT) {
                    *n += 1;
                }
            }
            None => {
                *self
                    .out
                    .fact_counts
                    .entry(notice_id.to_string())
                    .or_insert(0) += 1
            }
        }
    }

    // --- prefetch ---

    /// Reads at once what `facts` will ask a partial model for one key at a time: the
    /// organizations their names alias, the records of their persons' names and the open
    /// tenures of their posts. One statement per kind (per [`PREFETCH_KEYS`] keys) instead of
    /// about three per fact: a cold model (a new process, or after another server wrote)
    /// otherwise pays a round trip per key. Keys the model knows are left alone: its own
    /// state is the newer one. A complete model reads nothing.
    pub async fn prefetch(
        &mut self,
        tx: &mut Conn<'_>,
        facts: &[&PostFact],
    ) -> Result<(), StoreError> {
        if self.complete || facts.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = facts
            .iter()
            .flat_map(|f| {
                [&f.organization_canonical, &f.organization]
                    .into_iter()
                    .chain(&f.organization_aliases)
            })
            .map(String::as_str)
            .collect();
        let persons: Vec<&str> = facts.iter().map(|f| f.person.as_str()).collect();
        self.load_aliases_and_persons(tx, &names, &persons).await?;
        // Posts under the organization each fact resolves to (its canonical name, or the
        // organization that name is already an alias of: every alias is known by now).
        let posts: Vec<PostKey> = facts
            .iter()
            .map(|f| {
                let organization = self
                    .aliases
                    .get(&f.organization_canonical)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| f.organization_canonical.clone());
                (organization, f.post.clone())
            })
            .collect();
        self.load_posts(tx, &posts).await
    }

    // --- organizations, aliases, posts ---

    /// The organization a name is an alias of, if any.
    pub async fn alias(
        &mut self,
        tx: &mut Conn<'_>,
        name: &str,
    ) -> Result<Option<&str>, StoreError> {
        if !self.aliases.contains_key(name) {
            self.load_aliases(tx, &[name]).await?;
        }
        Ok(self.aliases.get(name).and_then(Option::as_deref))
    }

    /// [`Model::load_aliases_and_persons`] of aliases only.
    async fn load_aliases(&mut self, tx: &mut Conn<'_>, names: &[&str]) -> Result<(), StoreError> {
        self.load_aliases_and_persons(tx, names, &[]).await
    }

    /// Learns which organization each of `names` the model does not know aliases (`None`
    /// when none) and the records (not merged away, by id) of each of `persons` it does not
    /// know: both kinds in one statement per [`PREFETCH_KEYS`] names of each (one round trip
    /// instead of two, to the server on PostgreSQL, to the connection's thread on SQLite).
    /// A complete model knows every alias and record there is, so it reads nothing.
    async fn load_aliases_and_persons(
        &mut self,
        tx: &mut Conn<'_>,
        names: &[&str],
        persons: &[&str],
    ) -> Result<(), StoreError> {
        let aliases = unknown(names, |name| self.aliases.contains_key(name));
        let people = unknown(persons, |name| self.persons.contains_key(name));
        let (mut alias_chunks, mut person_chunks) =
            (aliases.chunks(PREFETCH_KEYS), people.chunks(PREFETCH_KEYS));
        loop {
            let aliases = alias_chunks.next().unwrap_or_default();
            let people = person_chunks.next().unwrap_or_default();
            if aliases.is_empty() && people.is_empty() {
                return Ok(());
            }
            let mut canonical: HashMap<String, String> = HashMap::new();
            let mut records: HashMap<String, Vec<PersonRef>> = HashMap::new();
            if !self.complete {
                for r in read_aliases_and_persons(tx, aliases, people).await? {
                    let name: String = r.try_get("name")?;
                    if r.try_get::<String, _>("kind")? == "alias" {
                        canonical.insert(name, r.try_get("canonical_name")?);
                    } else {
                        records.entry(name).or_default().push(PersonRef {
                            person_id: r.try_get("person_id")?,
                            jurisdiction: r.try_get("jurisdiction")?,
                        });
                    }
                }
            }
            for name in aliases {
                let canonical = canonical.remove(*name);
                self.aliases.insert(name.to_string(), canonical);
            }
            for name in people {
                let records = records.remove(*name).unwrap_or_default();
                self.persons.insert(name.to_string(), records);
            }
        }
    }

    /// Maps `alias` to `organization`; the caller has checked it maps to nothing yet.
    pub fn add_alias(&mut self, alias: String, organization: &str, position: i64) {
        self.out
            .aliases
            .push([alias.as_str().into(), organization.into(), position.into()]);
        self.aliases.insert(alias, Some(organization.to_string()));
    }

    /// Registers an organization (and its jurisdiction) unless already known.
    pub fn add_organization(
        &mut self,
        organization: &str,
        jurisdiction: Option<&str>,
        position: i64,
    ) {
        // Known in all but a few thousand calls of a 1M-event replay: no key made for those.
        if self.organizations.contains(organization)
            || !self.organizations.insert(organization.to_string())
        {
            return;
        }
        self.out.organizations.push([
            organization.into(),
            jurisdiction.map(str::to_string).into(),
            position.into(),
        ]);
        if let Some(j) = jurisdiction {
            if self.jurisdictions.insert(j.to_string()) {
                self.out.jurisdictions.push([j.into()]);
            }
        }
    }

    pub fn add_post(&mut self, organization: &str, post: &str, position: i64) {
        // Known in nearly every call: no key made for those.
        if !self.posts.contains(post_key(&(organization, post)))
            && self
                .posts
                .insert((organization.to_string(), post.to_string()))
        {
            self.out
                .posts
                .push([organization.into(), post.into(), position.into()]);
        }
    }

    // --- persons ---

    /// Makes sure the model holds the records of `name` ([`Model::persons_named`]).
    pub async fn load_persons_named(
        &mut self,
        tx: &mut Conn<'_>,
        name: &str,
    ) -> Result<(), StoreError> {
        if !self.persons.contains_key(name) {
            self.load_persons(tx, &[name]).await?;
        }
        Ok(())
    }

    /// The records of `name` not merged away, by id, once [`Model::load_persons_named`]
    /// has run for it.
    pub fn persons_named(&self, name: &str) -> &[PersonRef] {
        self.persons.get(name).map_or(&[], Vec::as_slice)
    }

    /// [`Model::load_aliases_and_persons`] of persons only.
    async fn load_persons(&mut self, tx: &mut Conn<'_>, names: &[&str]) -> Result<(), StoreError> {
        self.load_aliases_and_persons(tx, &[], names).await
    }

    /// A new person record; its id is the position of the event that introduced it.
    pub async fn add_person(
        &mut self,
        tx: &mut Conn<'_>,
        person_id: i64,
        name: &str,
        gender: Option<String>,
        jurisdiction: Option<String>,
    ) -> Result<(), StoreError> {
        self.load_persons_named(tx, name).await?;
        self.out.persons.push([
            person_id.into(),
            name.into(),
            gender.into(),
            jurisdiction.clone().into(),
            person_id.into(),
        ]);
        if let Some(records) = self.persons.get_mut(name) {
            records.push(PersonRef {
                person_id,
                jurisdiction,
            });
        }
        Ok(())
    }

    /// Forgets a record merged away (its row is updated by the caller, after a flush).
    pub fn retire_person(&mut self, person_id: i64) {
        for records in self.persons.values_mut() {
            records.retain(|p| p.person_id != person_id);
        }
    }

    // --- tenures ---

    /// Loads the current versions of a post's *open* tenures unless known. Ended ones are
    /// most of a post's history and few decisions need them: [`Model::post_tenures`] reads
    /// them only when asked (`with_ended`).
    async fn load_post(
        &mut self,
        tx: &mut Conn<'_>,
        organization: &str,
        post: &str,
    ) -> Result<(), StoreError> {
        if self.tenures.contains_key(post_key(&(organization, post))) {
            return Ok(());
        }
        let key = (organization.to_string(), post.to_string());
        self.load_posts(tx, &[key]).await
    }

    /// [`Model::load_post`] for every post of `keys` the model does not know, in one
    /// statement per [`PREFETCH_KEYS`] posts; a complete model reads nothing.
    async fn load_posts(&mut self, tx: &mut Conn<'_>, keys: &[PostKey]) -> Result<(), StoreError> {
        let mut seen = HashSet::new();
        let missing: Vec<&PostKey> = keys
            .iter()
            .filter(|k| !self.tenures.contains_key(*k) && seen.insert(*k))
            .collect();
        for chunk in missing.chunks(PREFETCH_KEYS) {
            let mut found = if self.complete {
                HashMap::new()
            } else {
                let (organizations, titles) = in_lists(chunk.iter().copied());
                let filter = open_on_posts(organizations.len(), titles.len());
                let binds: Vec<&str> = organizations.iter().chain(&titles).copied().collect();
                by_post(self.read_versions(tx, &filter, &binds).await?)
            };
            // The IN lists ask for every pairing; only the posts asked for are kept.
            for key in chunk {
                let mut versions = PostVersions::default();
                for v in found.remove(*key).unwrap_or_default() {
                    versions.push(v);
                }
                self.tenures.insert((*key).clone(), versions);
            }
        }
        Ok(())
    }

    /// Current, not withdrawn versions matching `filter` (binds `$1…` as text), from the
    /// database.
    async fn read_versions(
        &self,
        tx: &mut Conn<'_>,
        filter: &str,
        binds: &[&str],
    ) -> Result<Vec<Version>, StoreError> {
        let sql = versions_sql(filter);
        // A merge or split reads these in a rebuild too, on either driver.
        on_conn!(tx, |c| {
            let versions = bound(&sql, binds)
                .fetch_all(c)
                .await?
                .iter()
                .map(|r| {
                    Ok(Version {
                        row: Arc::new(TenureRow::from_row(r)?),
                        from: r.try_get("version_from")?,
                        stored: Stored::Written,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            Ok(versions)
        })
    }

    /// The current, not withdrawn tenures of one person record, latest first, as the
    /// database holds them: call after a flush (the database then holds all the model does).
    pub async fn person_tenures(
        &self,
        tx: &mut Conn<'_>,
        person_id: i64,
    ) -> Result<Vec<TenureRow>, StoreError> {
        let id = person_id.to_string();
        let mut rows: Vec<TenureRow> = self
            .read_versions(tx, OF_PERSON, &[&id])
            .await?
            .into_iter()
            .map(|v| Arc::unwrap_or_clone(v.row))
            .collect();
        rows.sort_by_key(|t| std::cmp::Reverse(t.tenure_id));
        Ok(rows)
    }

    /// Adds the post's ended tenures the model does not hold yet (a partial model holds the
    /// open ones it loaded and every tenure it changed; a complete one holds all).
    async fn load_ended(
        &mut self,
        tx: &mut Conn<'_>,
        organization: &str,
        post: &str,
    ) -> Result<(), StoreError> {
        self.load_post(tx, organization, post).await?;
        let key = (organization.to_string(), post.to_string());
        if self.complete || !self.ended_loaded.insert(key.clone()) {
            return Ok(());
        }
        let ended = self
            .read_versions(tx, ENDED_OF_POST, &[organization, post])
            .await?;
        self.merge_ended(&key, ended);
        Ok(())
    }

    /// Current, not withdrawn tenure versions of a post matching `filter`, latest tenure
    /// first: the open ones, and with `with_ended` the ended ones too; each seen through
    /// `map` (`TenureRow::clone` for a copy): most callers need a field or two of a row of
    /// some twenty strings.
    pub async fn post_tenures<T>(
        &mut self,
        tx: &mut Conn<'_>,
        organization: &str,
        post: &str,
        with_ended: bool,
        filter: impl Fn(&TenureRow) -> bool,
        map: impl Fn(&TenureRow) -> T,
    ) -> Result<Vec<T>, StoreError> {
        if with_ended {
            self.load_ended(tx, organization, post).await?;
        } else {
            self.load_post(tx, organization, post).await?;
        }
        let scope = if with_ended { Scope::All } else { Scope::Open };
        Ok(self.versions_where(post_key(&(organization, post)), scope, filter, map))
    }

    /// The current version of one tenure of a post, unless withdrawn, seen through `map`.
    /// Read by its id when the model does not hold it: never the post's whole history.
    pub async fn tenure<T>(
        &mut self,
        tx: &mut Conn<'_>,
        organization: &str,
        post: &str,
        tenure_id: i64,
        map: impl FnOnce(&TenureRow) -> T,
    ) -> Result<Option<T>, StoreError> {
        let key = (organization, post);
        let key = post_key(&key);
        self.load_tenure(tx, key, tenure_id).await?;
        Ok(self
            .tenures
            .get(key)
            .and_then(|versions| versions.find(tenure_id))
            .map(|v| map(&v.row)))
    }

    /// Makes sure the model holds tenure `tenure_id` of post `key` if it is current and not
    /// withdrawn: the post's open tenures, else that one tenure read by its id (an ended
    /// tenure a partial model has not loaded).
    async fn load_tenure(
        &mut self,
        tx: &mut Conn<'_>,
        key: &dyn PostKeyRef,
        tenure_id: i64,
    ) -> Result<(), StoreError> {
        self.load_post(tx, key.organization(), key.post()).await?;
        let held = self
            .tenures
            .get(key)
            .is_some_and(|vs| vs.contains(tenure_id));
        if !held && !self.complete && !self.ended_loaded.contains(key) {
            let id = tenure_id.to_string();
            let read = self.read_versions(tx, OF_TENURE, &[&id]).await?;
            self.merge_ended(key, read);
        }
        Ok(())
    }

    /// The tenures of a post that hold on `date` (see [`TenureRow::holds_on`]), latest first:
    /// the open ones and those ending after `date`, which the index `rm_tenures_holding`
    /// reads as a range. A head post's ended tenures (hundreds at 1M events) stay unread.
    pub async fn holders_on<T>(
        &mut self,
        tx: &mut Conn<'_>,
        organization: &str,
        post: &str,
        date: &str,
        map: impl Fn(&TenureRow) -> T,
    ) -> Result<Vec<T>, StoreError> {
        let key = (organization.to_string(), post.to_string());
        self.prefetch_holders_on(tx, &[(key.clone(), date.to_string())])
            .await?;
        let holds = |t: &TenureRow| t.holds_on(date);
        Ok(self.versions_where(&key, Scope::HoldingOn(date), holds, map))
    }

    /// Reads what [`Model::holders_on`] needs for every (post, date) of `pairs` it has
    /// not read yet — the post's open tenures, and its versions ending after the date — in
    /// one statement per [`PREFETCH_KEYS`] pairs: a notice that fills several one-seat
    /// posts has them all checked with one read instead of one per post.
    pub async fn prefetch_holders_on(
        &mut self,
        tx: &mut Conn<'_>,
        pairs: &[(PostKey, String)],
    ) -> Result<(), StoreError> {
        let keys: Vec<PostKey> = pairs.iter().map(|(key, _)| key.clone()).collect();
        self.load_posts(tx, &keys).await?;
        if self.complete {
            return Ok(());
        }
        let mut seen = HashSet::new();
        let missing: Vec<&(PostKey, String)> = pairs
            .iter()
            .filter(|pair| {
                !self.ended_loaded.contains(&pair.0)
                    && !self.ended_after.contains(*pair)
                    && seen.insert(*pair)
            })
            .collect();
        for chunk in missing.chunks(PREFETCH_KEYS) {
            // Range reads of `rm_tenures_holding` for every pairing of the organizations and
            // titles asked for, ending after the earliest date asked; the pairs asked for and
            // their dates are picked out here. A post asked for with two dates gets the union
            // once: versions ending after either date, which `holders_on` filters by its own
            // date. (An `OR` of one condition per pair leaves SQLite free to scan the whole
            // index instead, as it did once the index took in withdrawn versions too,
            // migration 0014: a notice's ingest read every current tenure.)
            let mut asked: HashMap<&PostKey, &str> = HashMap::new();
            for (key, date) in chunk.iter().copied() {
                let earliest = asked.entry(key).or_insert(date.as_str());
                *earliest = (*earliest).min(date.as_str());
            }
            let (organizations, titles) = in_lists(asked.keys().copied());
            let Some(earliest) = asked.values().copied().min() else {
                continue;
            };
            let filter = ending_after_on_posts(organizations.len(), titles.len());
            let binds: Vec<&str> = organizations
                .iter()
                .chain(&titles)
                .copied()
                .chain([earliest])
                .collect();
            let read = self.read_versions(tx, &filter, &binds).await?;
            for (key, read) in by_post(read) {
                let Some(&date) = asked.get(&key) else {
                    continue;
                };
                let read = read
                    .into_iter()
                    .filter(|v| v.row.end_date.as_deref().is_some_and(|end| end > date))
                    .collect();
                self.merge_ended(&key, read);
            }
            self.ended_after
                .extend(chunk.iter().map(|pair| (*pair).clone()));
        }
        Ok(())
    }

    /// The versions of post `key` in `scope` the model holds that match `filter`, latest
    /// tenure first, each seen through `map`.
    fn versions_where<T>(
        &self,
        key: &dyn PostKeyRef,
        scope: Scope<'_>,
        filter: impl Fn(&TenureRow) -> bool,
        map: impl Fn(&TenureRow) -> T,
    ) -> Vec<T> {
        let mut found: Vec<(i64, T)> = self
            .tenures
            .get(key)
            .into_iter()
            .flat_map(|versions| versions.visit(scope))
            .filter(|v| filter(&v.row))
            .map(|v| (v.row.tenure_id, map(&v.row)))
            .collect();
        found.sort_by_key(|(tenure_id, _)| std::cmp::Reverse(*tenure_id));
        found.into_iter().map(|(_, t)| t).collect()
    }

    /// Adds versions read from the database for tenures of `key` the model does not hold:
    /// the model's own version of a tenure it changed is the newer one. A tenure the model
    /// *withdrew* is gone from its list while the database still holds it as current until
    /// the flush; it cannot come back through here, because a withdrawal first loads the
    /// post's ended tenures (`post_tenures(.., true, ..)`, marking `ended_loaded`) and every
    /// caller skips the database for such a post.
    fn merge_ended(&mut self, key: &dyn PostKeyRef, read: Vec<Version>) {
        let Some(versions) = self.tenures.get_mut(key) else {
            return;
        };
        for v in read {
            let same_post = v.row.organization == key.organization() && v.row.post == key.post();
            if same_post && !versions.contains(v.row.tenure_id) {
                versions.push(v);
            }
        }
    }

    /// Records a new tenure's first version.
    pub async fn open_tenure(
        &mut self,
        tx: &mut Conn<'_>,
        row: TenureRow,
        position: i64,
    ) -> Result<(), StoreError> {
        self.load_post(tx, &row.organization, &row.post).await?;
        self.add_version(row, position);
        Ok(())
    }

    /// Buffers `row` as the version starting at `position` ([`Model::buffer`]) and, unless
    /// it is withdrawn, keeps it among its post's current versions (when the model holds
    /// the post).
    fn add_version(&mut self, row: TenureRow, position: i64) {
        let version = self.buffer(row, position);
        if version.row.withdrawn_position.is_some() {
            return;
        }
        let row = Arc::clone(&version.row);
        let key = (row.organization.as_str(), row.post.as_str());
        if let Some(versions) = self.tenures.get_mut(post_key(&key)) {
            versions.push(version);
        }
    }

    /// Buffers `row` as the version starting at `position` (or holds it back, see
    /// [`Model::rebuilding`]); returns it as the model keeps it.
    fn buffer(&mut self, row: TenureRow, position: i64) -> Version {
        let row = Arc::new(row);
        // Only a version the model keeps can be closed later; a withdrawn one it drops.
        if self.hold_open && row.is_open() && row.withdrawn_position.is_none() {
            self.held += 1;
            return Version {
                row,
                from: position,
                stored: Stored::Held,
            };
        }
        let index = self.out.tenures.len();
        self.out.tenures.push((position, None, Arc::clone(&row)));
        Version {
            row,
            from: position,
            stored: Stored::Buffered {
                generation: self.generation,
                index,
            },
        }
    }

    /// Buffers every held version, open (see [`Model::rebuilding`]), oldest first.
    fn release_held(&mut self) {
        if self.held == 0 {
            return;
        }
        let mut held: Vec<&mut Version> = self
            .tenures
            .values_mut()
            .flat_map(|versions| versions.open.iter_mut())
            .filter(|v| v.stored == Stored::Held)
            .collect();
        held.sort_by_key(|v| (v.from, v.row.tenure_id));
        for version in held {
            version.stored = Stored::Buffered {
                generation: self.generation,
                index: self.out.tenures.len(),
            };
            self.out
                .tenures
                .push((version.from, None, Arc::clone(&version.row)));
        }
        self.held = 0;
    }

    /// Replaces a tenure's current version with `row` as of `position`: the old version is
    /// closed, never changed otherwise, so earlier answers stay reproducible.
    pub async fn supersede(
        &mut self,
        tx: &mut Conn<'_>,
        row: TenureRow,
        position: i64,
    ) -> Result<(), StoreError> {
        let key = (row.organization.as_str(), row.post.as_str());
        // It may be an ended tenure the model has not loaded (a merge moving someone's
        // history).
        self.load_tenure(tx, post_key(&key), row.tenure_id).await?;
        let versions = self.tenures.get_mut(post_key(&key)).ok_or_else(|| {
            StoreError::Corrupt(format!("tenure {} is not loaded", row.tenure_id))
        })?;
        let current = versions.take(row.tenure_id).ok_or_else(|| {
            StoreError::Corrupt(format!("tenure {} has no current version", row.tenure_id))
        })?;
        match current.stored {
            Stored::Buffered { generation, index } if generation == self.generation => {
                self.out.tenures[index].1 = Some(position);
            }
            Stored::Held => {
                self.held -= 1;
                self.out
                    .tenures
                    .push((current.from, Some(position), current.row));
            }
            Stored::Buffered { .. } | Stored::Written => {
                self.out
                    .closes
                    .push((row.tenure_id, current.from, position))
            }
        }
        self.add_version(row, position);
        Ok(())
    }

    // --- warnings ---

    pub async fn warn(
        &mut self,
        tx: &mut Conn<'_>,
        position: i64,
        notice_id: &str,
        line: Option<usize>,
        message: &str,
    ) -> Result<(), StoreError> {
        // Warnings at a position come from applying that position's notice: a model that
        // applied it knows them all.
        let seen = self.first_applied.is_some_and(|first| position >= first);
        let seq = match self.warning_seq.get(&position) {
            Some(&seq) => seq,
            None if self.complete || seen => 0,
            None => sqlx::query("SELECT COUNT(*) AS n FROM rm_notice_warnings WHERE position = $1")
                .bind(position)
                .fetch_one(tx.get()?)
                .await?
                .try_get("n")?,
        };
        self.warning_seq.insert(position, seq + 1);
        self.out.warnings.push([
            position.into(),
            seq.into(),
            notice_id.into(),
            line.and_then(|l| i64::try_from(l).ok()).into(),
            message.into(),
        ]);
        Ok(())
    }

    // --- writing ---

    /// Writes every buffered row and change.
    pub async fn flush(&mut self, tx: &mut Conn<'_>) -> Result<(), StoreError> {
        self.release_held();
        if self.out.is_empty() {
            return Ok(());
        }
        let mut writes = self.take_writes();
        writes.write(tx).await
    }

    /// Takes every row and change [`Model::flush`] would write, held versions included.
    pub fn take_final_writes(&mut self) -> Writes {
        self.release_held();
        self.take_writes()
    }

    /// Takes every buffered row and change out of the model, to be written before anything
    /// the model buffers next ([`Writes::write`]); the model goes on as after a flush.
    pub fn take_writes(&mut self) -> Writes {
        self.generation += 1;
        let mut writes = std::mem::replace(&mut self.out, Writes::new(self.backend));
        writes.pending_notices.clear();
        writes
    }
}

impl Writes {
    /// Writes every row and change, in dependency order; on PostgreSQL through a pooled
    /// connection as one statement (`one_statement.rs`: a round trip instead of one per
    /// table).
    pub async fn write(&mut self, conn: &mut Conn<'_>) -> Result<(), StoreError> {
        let backend = self.backend;
        if let (Conn::Any(any), Backend::Postgres) = (&mut *conn, backend) {
            return self.write_in_one_statement(any).await;
        }
        self.notices.write(conn, backend).await?;
        self.requests.write(conn, backend).await?;
        self.warnings.write(conn, backend).await?;
        self.organizations.write(conn, backend).await?;
        self.jurisdictions.write(conn, backend).await?;
        self.aliases.write(conn, backend).await?;
        self.persons.write(conn, backend).await?;
        self.posts.write(conn, backend).await?;
        for chunk in std::mem::take(&mut self.closes).chunks(INSERT_CHUNK) {
            close_versions(conn, backend, chunk).await?;
        }
        // Straight from the rows the model shares: nothing is copied but into `COPY`'s text.
        let rows = self.tenures.iter().map(version_values);
        write_rows(conn, backend, (TENURE_INSERT, "", TENURE_CELLS), rows).await?;
        self.tenures.clear();
        let mut counts: Vec<(String, i64)> = self.fact_counts.drain().collect();
        counts.sort();
        for (notice_id, n) in counts {
            execute_on!(
                conn,
                sqlx::query(
                    "UPDATE rm_notices SET event_count = event_count + $1 WHERE notice_id = $2",
                )
                .bind(n)
                .bind(&notice_id)
            )?;
        }
        Ok(())
    }
}

/// Tenure versions per piece of a staged write ([`Writes::write_staged`]): about 35 MB of
/// `COPY` text, so that the writers' last pieces end close together.
const STAGED_TENURE_ROWS: usize = 100_000;

/// A staged write's unit of work: one `COPY` (or run of INSERTs) on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Every row of [`Writes::tables`]' table at this index, from every write.
    Table(usize),
    /// These tenure versions, numbered across every write in order.
    Tenures(std::ops::Range<usize>),
}

/// The pieces of a staged write, in the order the writers take them: the tenure versions in
/// slices (88 % of the read models' bytes at 1M events), then the other tables, larger first
/// — notices, warnings, persons (19, 15 and 7 MB) — so that the writers end close together.
/// `rows[i]`: rows of [`Writes::tables`]' table `i`.
fn pieces(rows: [usize; 8], tenures: usize) -> VecDeque<Piece> {
    let slices = (0..tenures)
        .step_by(STAGED_TENURE_ROWS)
        .map(|start| Piece::Tenures(start..tenures.min(start + STAGED_TENURE_ROWS)));
    let tables = [0, 2, 6, 1, 3, 4, 5, 7]
        .into_iter()
        .filter(|&t| rows[t] > 0)
        .map(Piece::Table);
    slices.chain(tables).collect()
}

impl Writes {
    /// The tables a staged write ([`Writes::write_staged`]) fills with `COPY` alone, no
    /// `ON CONFLICT` clause needing their keys: a staged rebuild adds their primary keys
    /// and unique constraints once the rows are in, one sort each, instead of inserting
    /// into them row by row (`shadow.rs`; `rm_tenures` at 1M events: 6.8–6.9 s of
    /// `INSERT` with its key, 3.7–4.7 s without it and 0.8 s to add it; BENCHMARKS.md,
    /// session 36).
    pub(super) fn copied_tables() -> Vec<&'static str> {
        Self::new(Backend::Postgres)
            .tables()
            .into_iter()
            .filter(|rows| rows.tail.is_empty())
            .map(|rows| rows.head)
            .chain([TENURE_INSERT])
            .filter_map(|insert| insert_target(insert)?.split([' ', '(']).next())
            .collect()
    }

    /// Each table's rows, in [`Writes::write`]'s order.
    fn tables(&self) -> [&Rows; 8] {
        [
            &self.notices,
            &self.requests,
            &self.warnings,
            &self.organizations,
            &self.jurisdictions,
            &self.aliases,
            &self.persons,
            &self.posts,
        ]
    }

    /// Writes `all`, every write of a rebuild in the order it made them, through `conns` at
    /// once (PostgreSQL, into tables other transactions created: `shadow.rs`'s staged
    /// rebuild). Every row is in memory, so the changes later writes make to earlier rows —
    /// versions closed, facts counted — go into the rows before they are sent, and what is
    /// left is rows alone, in pieces any connection may write in any order: each takes the
    /// next piece when it has written its last. A close or a count whose row is not among
    /// them is an error, as [`Writes::write`]'s statements would find.
    pub async fn write_staged(
        all: &[Writes],
        conns: &mut [PgConnection],
    ) -> Result<(), StoreError> {
        let staged = Staging::new(all)?;
        futures::future::try_join_all(conns.iter_mut().map(|pg| staged.writer(pg))).await?;
        Ok(())
    }
}

/// A buffered tenure version: (version_from, version_to, row).
type Buffered = (i64, Option<i64>, Arc<TenureRow>);

/// A staged write's rows, with the later writes' changes to them, and the pieces left.
struct Staging<'w> {
    all: &'w [Writes],
    /// Every write's tenure versions, in order.
    tenures: Vec<&'w Buffered>,
    /// (tenure_id, version_from) → version_to of the versions later writes close.
    closes: HashMap<(i64, i64), i64>,
    /// notice_id → facts later writes counted for it.
    counts: HashMap<&'w str, i64>,
    queue: std::sync::Mutex<VecDeque<Piece>>,
}

impl<'w> Staging<'w> {
    /// `all`'s rows with the later writes' changes folded in, in [`pieces`]; an error if a
    /// close or a count names a row none of them has.
    fn new(all: &'w [Writes]) -> Result<Self, StoreError> {
        let mut closes: HashMap<(i64, i64), i64> = HashMap::new();
        let mut counts: HashMap<&str, i64> = HashMap::new();
        for writes in all {
            for &(tenure_id, from, to) in &writes.closes {
                closes.insert((tenure_id, from), to);
            }
            for (notice_id, n) in &writes.fact_counts {
                *counts.entry(notice_id.as_str()).or_default() += n;
            }
        }
        let tenures: Vec<&Buffered> = all.iter().flat_map(|writes| &writes.tenures).collect();
        let found = tenures
            .iter()
            .filter(|(from, to, row)| to.is_none() && closes.contains_key(&(row.tenure_id, *from)))
            .count();
        let counted = all
            .iter()
            .flat_map(|writes| writes.notices.cells.chunks_exact(writes.notices.columns))
            .filter(
                |row| matches!(&row[0], Cell::Text(Some(id)) if counts.contains_key(id.as_str())),
            )
            .count();
        if found != closes.len() || counted != counts.len() {
            return Err(StoreError::Corrupt(format!(
                "a staged write found {found} of the {} tenure versions it closes and {counted} \
                 of the {} notices whose facts it counts",
                closes.len(),
                counts.len()
            )));
        }
        let mut rows = [0; 8];
        for writes in all {
            for (n, table) in rows.iter_mut().zip(writes.tables()) {
                *n += table.len();
            }
        }
        let queue = std::sync::Mutex::new(pieces(rows, tenures.len()));
        Ok(Self {
            all,
            tenures,
            closes,
            counts,
            queue,
        })
    }

    /// The tenure versions of `range`, each closed if a later write closed it. (Methods,
    /// not closures in [`Staging::writer`]: a closure's borrow there is not general enough
    /// for the futures `tokio::spawn` takes.)
    fn tenure_rows(
        &self,
        range: std::ops::Range<usize>,
    ) -> impl Iterator<Item = [Value<'w>; TENURE_CELLS]> + Send + '_ {
        self.tenures[range].iter().map(|&(from, to, row)| {
            let to = to.or_else(|| self.closes.get(&(row.tenure_id, *from)).copied());
            row.cells(*from, to)
        })
    }

    /// Every write's rows of [`Writes::tables`]' table `t`, notices with the facts later
    /// writes counted.
    fn table_rows(
        &self,
        t: usize,
    ) -> impl Iterator<Item = impl Iterator<Item = Value<'w>> + Send + 'w> + Send + '_ {
        let all: &'w [Writes] = self.all;
        all.iter()
            .flat_map(move |writes| {
                let rows = writes.tables()[t];
                rows.cells.chunks_exact(rows.columns)
            })
            .map(move |row| counted_row(row, t == 0, &self.counts))
    }

    /// One connection's share: the next piece, until none is left.
    async fn writer(&self, pg: &mut PgConnection) -> Result<(), StoreError> {
        loop {
            let piece = self
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            match piece {
                None => return Ok(()),
                Some(Piece::Tenures(range)) => {
                    copy_in(pg, TENURE_INSERT, self.tenure_rows(range), Freeze::No).await?;
                }
                Some(Piece::Table(t)) => {
                    let first = self.all[0].tables()[t];
                    let (head, tail, columns) = (first.head, first.tail, first.columns);
                    let rows = self.table_rows(t);
                    if tail.is_empty() {
                        copy_in(pg, head, rows, Freeze::No).await?;
                    } else {
                        let conn = &mut Conn::postgres(pg);
                        write_rows(conn, Backend::Postgres, (head, tail, columns), rows).await?;
                    }
                }
            }
        }
    }
}

/// A buffered row's cells; a notice's (`notice`) with the facts `counts` holds for it added
/// to its `event_count`.
fn counted_row<'a>(
    row: &'a [Cell],
    notice: bool,
    counts: &HashMap<&str, i64>,
) -> impl Iterator<Item = Value<'a>> + Send + 'a {
    let more = match (notice, &row[0]) {
        (true, Cell::Text(Some(id))) => counts.get(id.as_str()).copied().unwrap_or(0),
        _ => 0,
    };
    row.iter().enumerate().map(move |(i, cell)| match cell {
        Cell::Int(Some(n)) if i == NOTICE_EVENT_COUNT && more != 0 => Value::Int(Some(n + more)),
        cell => Value::from(cell),
    })
}

/// Closes written versions, one statement for all: each `(tenure_id, version_from,
/// version_to)` names a tenure's current version (the only one with `version_to` NULL).
async fn close_versions(
    conn: &mut Conn<'_>,
    backend: Backend,
    closes: &[(i64, i64, i64)],
) -> Result<(), StoreError> {
    let asked = closes.len();
    // The last close again up to one of a few sizes ([`statement_size`]): it changes nothing
    // more.
    let closes = &padded_list(closes);
    let mut sql = String::from("UPDATE rm_tenures SET version_to = CASE");
    let mut n = 0;
    let mut param = |sql: &mut String| {
        n += 1;
        match backend {
            Backend::Sqlite => sql.push('?'),
            Backend::Postgres => sql.push_str(&format!("${n}")),
        }
    };
    for _ in closes {
        sql.push_str(" WHEN tenure_id = ");
        param(&mut sql);
        sql.push_str(" AND version_from = ");
        param(&mut sql);
        sql.push_str(" THEN CAST(");
        param(&mut sql);
        sql.push_str(" AS BIGINT)");
    }
    sql.push_str(" END WHERE version_to IS NULL AND tenure_id IN (");
    for i in 0..closes.len() {
        if i > 0 {
            sql.push_str(", ");
        }
        param(&mut sql);
    }
    sql.push(')');
    let closed = execute_on!(conn, {
        let mut query = sqlx::query(&sql);
        for (tenure_id, from, to) in closes {
            query = query.bind(*tenure_id).bind(*from).bind(*to);
        }
        for (tenure_id, _, _) in closes {
            query = query.bind(*tenure_id);
        }
        query
    })?;
    if closed != asked as u64 {
        return Err(StoreError::Corrupt(format!(
            "closed {closed} tenure versions instead of {asked}"
        )));
    }
    Ok(())
}

/// The names of `names` that `known` does not hold, each once, in order.
fn unknown<'a>(names: &[&'a str], known: impl Fn(&str) -> bool) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    names
        .iter()
        .copied()
        .filter(|name| !known(name) && seen.insert(*name))
        .collect()
}

/// The rows of `rm_organization_aliases` naming each of `aliases` and of `rm_persons` (not
/// merged away) of each of `persons`, as (`kind`, `name`, `canonical_name`, `person_id`,
/// `jurisdiction`), `kind` being `'alias'` or `'person'`, persons by id: one statement, a
/// part for each kind asked for.
async fn read_aliases_and_persons(
    tx: &mut Conn<'_>,
    aliases: &[&str],
    persons: &[&str],
) -> Result<Vec<AnyRow>, StoreError> {
    // Each list padded to one of a few sizes ([`statement_size`]).
    let (aliases, persons) = (&padded_list(aliases), &padded_list(persons));
    let mut parts = Vec::with_capacity(2);
    if !aliases.is_empty() {
        parts.push(format!(
            "SELECT 'alias' AS kind, alias AS name, canonical_name, NULL AS person_id, \
             NULL AS jurisdiction FROM rm_organization_aliases WHERE alias IN ({})",
            numbered(1, aliases.len())
        ));
    }
    if !persons.is_empty() {
        parts.push(format!(
            "SELECT 'person' AS kind, name, NULL AS canonical_name, person_id, jurisdiction \
             FROM rm_persons WHERE name IN ({}) AND merged_into IS NULL",
            numbered(aliases.len() + 1, persons.len())
        ));
    }
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("{} ORDER BY kind, person_id", parts.join(" UNION ALL "));
    let binds: Vec<&str> = aliases.iter().chain(persons).copied().collect();
    Ok(bound(&sql, &binds).fetch_all(tx.get()?).await?)
}

/// [`Model::read_versions`]' statement: current, not withdrawn versions matching `filter`.
/// Every filter below is a search of one of `rm_tenures`' indexes, never a scan (a unit
/// test asks SQLite for the plans).
fn versions_sql(filter: &str) -> String {
    format!(
        "SELECT version_from, {TENURE_COLUMNS} FROM rm_tenures WHERE {filter} \
         AND version_to IS NULL AND withdrawn_position IS NULL"
    )
}

/// The organizations and the titles of `keys`, each sorted and distinct, the last repeated
/// up to [`statement_size`]: the IN lists of
/// [`open_on_posts`] and [`ending_after_on_posts`].
fn in_lists<'k>(keys: impl Iterator<Item = &'k PostKey>) -> (Vec<&'k str>, Vec<&'k str>) {
    let (mut organizations, mut titles): (Vec<&str>, Vec<&str>) = keys
        .map(|(organization, title)| (organization.as_str(), title.as_str()))
        .unzip();
    for list in [&mut organizations, &mut titles] {
        list.sort_unstable();
        list.dedup();
    }
    // Padded to one of a few sizes each ([`statement_size`]).
    (padded_list(&organizations), padded_list(&titles))
}

/// Filter: the open versions of every pairing of `organizations` (`$1…`) and `titles` (the
/// parameters after them). This filter and the next name `COALESCE(end_date, '~')` as
/// `rm_tenures_holding` keys it (migration 0015), so that it is searched as a range.
fn open_on_posts(organizations: usize, titles: usize) -> String {
    format!(
        "organization IN ({}) AND post IN ({}) AND COALESCE(end_date, '~') = '~' \
         AND end_date IS NULL AND ended_position IS NULL",
        numbered(1, organizations),
        numbered(organizations + 1, titles)
    )
}

/// Filter: the versions of every pairing of `organizations` and `titles` (as in
/// [`open_on_posts`]) ending after the date of the parameter that follows them.
fn ending_after_on_posts(organizations: usize, titles: usize) -> String {
    format!(
        "organization IN ({}) AND post IN ({}) AND COALESCE(end_date, '~') > ${} \
         AND COALESCE(end_date, '~') < '~'",
        numbered(1, organizations),
        numbered(organizations + 1, titles),
        organizations + titles + 1
    )
}

/// Filter: the ended versions of post (`$1`, `$2`).
const ENDED_OF_POST: &str =
    "organization = $1 AND post = $2 AND (end_date IS NOT NULL OR ended_position IS NOT NULL)";
/// Filter: the versions of person record `$1`.
const OF_PERSON: &str = "person_id = CAST($1 AS BIGINT)";
/// Filter: the versions of tenure `$1`.
const OF_TENURE: &str = "tenure_id = CAST($1 AS BIGINT)";

/// Versions read from the database, by their post.
fn by_post(versions: Vec<Version>) -> HashMap<PostKey, Vec<Version>> {
    let mut found: HashMap<PostKey, Vec<Version>> = HashMap::new();
    for v in versions {
        found
            .entry((v.row.organization.clone(), v.row.post.clone()))
            .or_default()
            .push(v);
    }
    found
}

/// A query binding `binds` as text, in order, for driver `DB`.
fn bound<'q, DB>(sql: &'q str, binds: &[&'q str]) -> Query<'q, DB, DB::Arguments<'q>>
where
    DB: sqlx::Database,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    binds.iter().fold(sqlx::query(sql), |q, b| q.bind(*b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A post's key looked up borrowed finds what was stored under the owned key, and only
    /// that: the borrowed key hashes and compares as the tuple does.
    #[test]
    fn a_borrowed_post_key_finds_the_owned_one() {
        let mut posts: HashMap<PostKey, i64> = HashMap::new();
        posts.insert(("市教育局".into(), "局长".into()), 1);
        posts.insert(("市教育局局".into(), "长".into()), 2);
        assert_eq!(posts.get(post_key(&("市教育局", "局长"))), Some(&1));
        assert_eq!(posts.get(post_key(&("市教育局局", "长"))), Some(&2));
        assert_eq!(posts.get(post_key(&("市教育", "局局长"))), None);
        let set: HashSet<PostKey> = posts.into_keys().collect();
        assert!(set.contains(post_key(&("市教育局", "局长"))));
        assert!(!set.contains(post_key(&("市教育局", "副局长"))));
    }

    /// Every read of the projector's partial model searches an index of `rm_tenures`: a
    /// scan reads every current tenure once per notice (it did for a while, when an `OR`
    /// of one condition per post stood in the place of `ending_after_on_posts`).
    #[tokio::test]
    async fn the_models_reads_search_rm_tenures_by_index() {
        use crate::store::plans::{assert_searches_tenures, fresh_sqlite};
        let (_dir, db) = fresh_sqlite().await;
        for filter in [
            open_on_posts(1, 1),
            open_on_posts(3, 2),
            ending_after_on_posts(1, 1),
            ending_after_on_posts(3, 2),
            ENDED_OF_POST.to_string(),
            OF_PERSON.to_string(),
            OF_TENURE.to_string(),
        ] {
            let reads = assert_searches_tenures(&db, &versions_sql(&filter), &["rm_tenures"]).await;
            // Open and ended-after reads are ranges of the key's end column, not the
            // whole post.
            if filter.contains("COALESCE") {
                assert!(reads.iter().all(|l| l.contains("<expr>")), "{reads:?}");
            }
        }
    }

    #[test]
    fn copy_lines_escape_what_the_text_format_gives_a_meaning() {
        let mut out = String::new();
        copy_line(
            &mut out,
            [
                Value::Int(Some(-7)),
                Value::Int(None),
                Value::Text(None),
                Value::Text(Some("")),
                Value::Text(Some("a\tb\nc\rd\\e 任免 \\N")),
            ],
        );
        assert_eq!(out, "-7\t\\N\t\\N\t\ta\\tb\\nc\\rd\\\\e 任免 \\\\N\n");
    }

    /// What PostgreSQL's text format reads back from one field (no `\N` here: a text
    /// value is never NULL's marker once escaped).
    fn unescape_copy_field(field: &str) -> String {
        let mut out = String::new();
        let mut chars = field.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some(other) => out.push(other),
                None => panic!("a field ends in a lone backslash: {field:?}"),
            }
        }
        out
    }

    proptest::proptest! {
        /// Any text, mostly made of the characters the format escapes and multi-byte
        /// ones, comes back as it was, on one line of one field.
        #[test]
        fn copied_text_reads_back_as_written(text in "[\\\\\t\n\r任免a-z]{0,40}|\\PC{0,40}") {
            let mut out = String::new();
            copy_line(&mut out, [Value::Text(Some(&text))]);
            let line = out.strip_suffix('\n').expect("a line ends the row");
            proptest::prop_assert!(!line.contains(['\n', '\t', '\r']));
            proptest::prop_assert_eq!(unescape_copy_field(line), text);
        }
    }

    #[test]
    fn a_tenure_copies_the_cells_it_binds_in_the_insert_s_column_order() {
        let text = |s: &str| Some(s.to_string());
        let row = TenureRow {
            tenure_id: 3,
            person_id: 4,
            person: "person".into(),
            organization: "organization".into(),
            organization_as_written: "organization_as_written".into(),
            post: "post".into(),
            concurrent: true,
            start_date: text("start_date"),
            end_date: text("end_date"),
            probation_months: Some(12),
            probation_end: text("probation_end"),
            probation_outcome: text("probation_outcome"),
            probation_outcome_on: text("probation_outcome_on"),
            note: text("note"),
            end_note: text("end_note"),
            appointing_notice: text("appointing_notice"),
            appointing_line: Some(19),
            appointing_clause: text("appointing_clause"),
            ending_notice: text("ending_notice"),
            ending_line: Some(22),
            ending_clause: text("ending_clause"),
            recorded_position: 24,
            ended_position: Some(25),
            withdrawn_position: Some(26),
            withdrawn_reason: text("withdrawn_reason"),
        };
        let columns: Vec<&str> = TENURE_INSERT
            .trim_start_matches("INSERT INTO rm_tenures (")
            .trim_end_matches(") VALUES")
            .split(',')
            .map(str::trim)
            .collect();
        assert_eq!(columns.len(), TENURE_CELLS);
        // Every text cell holds its column's name, every number its column's index (but
        // `concurrent`, 1, and the two versions).
        for (i, (column, cell)) in columns.iter().zip(row.cells(1, Some(2))).enumerate() {
            let expected = match *column {
                "version_from" => Value::Int(Some(1)),
                "version_to" => Value::Int(Some(2)),
                "concurrent" => Value::Int(Some(1)),
                "tenure_id" | "person_id" | "probation_months" | "appointing_line"
                | "ending_line" | "recorded_position" | "ended_position" | "withdrawn_position" => {
                    Value::Int(Some(i as i64 + 1))
                }
                name => Value::Text(Some(name)),
            };
            assert_eq!(cell, expected, "column {column}");
        }
    }

    fn tenure(start: Option<&str>, end: Option<&str>, ended: Option<i64>) -> TenureRow {
        TenureRow {
            start_date: start.map(str::to_string),
            end_date: end.map(str::to_string),
            ended_position: ended,
            ..TenureRow::default()
        }
    }

    #[test]
    fn holding_on_a_date_follows_the_sql_it_replaced() {
        // start_date <= D < end_date; unknown start holds; a removal of unknown date ends it.
        assert!(tenure(Some("2023-01-01"), None, None).holds_on("2023-01-01"));
        assert!(!tenure(Some("2023-01-02"), None, None).holds_on("2023-01-01"));
        assert!(tenure(None, None, None).holds_on("2023-01-01"));
        assert!(tenure(None, Some("2023-02"), Some(9)).holds_on("2023-01-31"));
        assert!(!tenure(None, Some("2023-01-31"), Some(9)).holds_on("2023-01-31"));
        assert!(!tenure(Some("2020"), None, Some(9)).holds_on("2023-01-31"));
    }

    #[test]
    fn buffered_rows_are_written_in_chunks_with_numbered_parameters() {
        let mut rows = Rows::new("INSERT INTO t (a, b) VALUES", 2, "");
        rows.push([1i64.into(), "x".into()]);
        rows.push([2i64.into(), Cell::Text(None)]);
        assert_eq!(rows.len(), 2);
        *rows.cell_mut(1, 0) = 3i64.into();
        assert!(matches!(rows.cells[2], Cell::Int(Some(3))));
    }

    fn held(tenure_id: i64, person: &str, start: &str, end: Option<&str>) -> TenureRow {
        TenureRow {
            tenure_id,
            person: person.into(),
            organization: "市教育局".into(),
            post: "局长".into(),
            ..tenure(Some(start), end, end.map(|_| tenure_id * 10))
        }
    }

    async fn holders(model: &mut Model, date: &str) -> Vec<String> {
        let person = |t: &TenureRow| t.person.clone();
        model
            .holders_on(&mut Conn::none(), "市教育局", "局长", date, person)
            .await
            .expect("a complete model reads nothing")
    }

    /// A post's ended tenures are kept apart from its open ones; a holders lookup still sees
    /// an ended tenure on a date before its end — a removal recorded before an appointment
    /// it overlaps (notices ingested out of order) — and stops seeing it when it reopens and
    /// ends again earlier.
    #[tokio::test]
    async fn holders_on_a_date_include_tenures_that_ended_after_it() {
        let mut model = Model::complete(Backend::Sqlite);
        let conn = &mut Conn::none();
        let ended = held(1, "张三", "2020-01-01", Some("2021-06-01"));
        model.open_tenure(conn, ended, 10).await.unwrap();
        let open = held(2, "李四", "2021-05-01", None);
        model.open_tenure(conn, open, 20).await.unwrap();
        assert_eq!(holders(&mut model, "2020-06-01").await, ["张三"]);
        assert_eq!(holders(&mut model, "2021-05-01").await, ["李四", "张三"]);
        assert_eq!(holders(&mut model, "2021-06-01").await, ["李四"]);

        // The removal withdrawn: 张三 holds again, then is removed as of an earlier date.
        let reopened = held(1, "张三", "2020-01-01", None);
        model.supersede(conn, reopened, 30).await.unwrap();
        assert_eq!(holders(&mut model, "2025-01-01").await, ["李四", "张三"]);
        let ended_earlier = held(1, "张三", "2020-01-01", Some("2021-03-01"));
        model.supersede(conn, ended_earlier, 40).await.unwrap();
        assert_eq!(holders(&mut model, "2021-02-01").await, ["张三"]);
        assert_eq!(holders(&mut model, "2021-05-01").await, ["李四"]);

        // A later ended tenure raises the bound past which no ended tenure holds.
        let later = held(3, "王五", "2022-01-01", Some("2023-01-01"));
        model.open_tenure(conn, later, 50).await.unwrap();
        assert_eq!(holders(&mut model, "2022-06-01").await, ["王五", "李四"]);
        // Without the ended ones, only the open tenure; with them, all three.
        let id = |t: &TenureRow| t.tenure_id;
        let open = model.post_tenures(conn, "市教育局", "局长", false, |_| true, id);
        assert_eq!(open.await.unwrap(), [2]);
        let all = model.post_tenures(conn, "市教育局", "局长", true, |_| true, id);
        assert_eq!(all.await.unwrap(), [3, 2, 1]);
    }

    /// `(version_from, version_to, tenure_id)` of the buffered tenure versions.
    fn buffered(model: &Model) -> Vec<(i64, Option<i64>, i64)> {
        let out = &model.out.tenures;
        out.iter()
            .map(|(f, t, row)| (*f, *t, row.tenure_id))
            .collect()
    }

    /// A rebuild's model writes a version once, when it is closed, instead of writing it
    /// open and updating it; the next flush writes the ones still open, oldest first. A
    /// version buffered before is closed in the buffer, one written before by an UPDATE.
    #[tokio::test]
    async fn a_rebuild_holds_open_versions_back_until_they_close_or_a_flush() {
        let conn = &mut Conn::none();
        let mut model = Model::rebuilding(Backend::Sqlite);
        model
            .open_tenure(conn, held(2, "李四", "2021-05-01", None), 20)
            .await
            .unwrap();
        model
            .open_tenure(conn, held(1, "张三", "2020-01-01", None), 10)
            .await
            .unwrap();
        // Ended from the start: nothing can close it but a correction, so it is buffered.
        let ended = held(3, "王五", "2019-01-01", Some("2019-06-01"));
        model.open_tenure(conn, ended, 30).await.unwrap();
        assert_eq!(buffered(&model), [(30, None, 3)]);

        // 张三 removed: the open version is buffered closed, the ended one as it is.
        let removed = held(1, "张三", "2020-01-01", Some("2022-01-01"));
        model.supersede(conn, removed, 40).await.unwrap();
        assert_eq!(
            buffered(&model),
            [(30, None, 3), (10, Some(40), 1), (40, None, 1)]
        );
        assert_eq!(model.held, 1);
        assert!(model.out.closes.is_empty());
        // Taken for writing: the held version stays behind.
        let taken = model.take_writes();
        assert_eq!(taken.tenures.len(), 3);
        assert!(buffered(&model).is_empty());

        // Still held, so closed in the buffer, not by an UPDATE; the version the writer
        // took is closed by an UPDATE.
        let reopened = held(1, "张三", "2020-01-01", None);
        model.supersede(conn, reopened, 50).await.unwrap();
        assert_eq!(model.out.closes, [(1, 40, 50)]);
        assert_eq!(model.held, 2);
        model.release_held();
        assert_eq!(buffered(&model), [(20, None, 2), (50, None, 1)]);
        assert_eq!(model.held, 0);
        // Released, a version is an ordinary buffered one.
        model
            .supersede(conn, held(2, "李四", "2021-05-01", Some("2023-01-01")), 60)
            .await
            .unwrap();
        assert_eq!(
            buffered(&model),
            [(20, Some(60), 2), (50, None, 1), (60, None, 2)]
        );
        assert_eq!(holders(&mut model, "2021-06-01").await, ["李四", "张三"]);

        // Any other model buffers every version at once.
        let mut model = Model::complete(Backend::Sqlite);
        model
            .open_tenure(conn, held(1, "张三", "2020-01-01", None), 10)
            .await
            .unwrap();
        assert_eq!(buffered(&model), [(10, None, 1)]);
    }

    fn notice_row(notice_id: &str) -> Vec<Cell> {
        let mut row: Vec<Cell> = (0..NOTICE_COLUMNS).map(|_| Cell::Text(None)).collect();
        row[0] = notice_id.into();
        row[NOTICE_EVENT_COUNT] = 0i64.into();
        row
    }

    /// A staged write sends every write's rows at once, in pieces, so what a later write
    /// changes in an earlier one's rows — a version it closes, facts it counts for a notice —
    /// is folded into those rows; a change whose row is in none of the writes is refused.
    #[tokio::test]
    async fn a_staged_write_folds_later_changes_into_the_rows() {
        let conn = &mut Conn::none();
        let mut model = Model::rebuilding(Backend::Postgres);
        let context = NoticeContext {
            reference: "临政人〔2023〕4号".into(),
            jurisdiction: None,
        };
        model.add_notice("n1", context, notice_row("n1"));
        model.count_fact("n1");
        let ended = held(1, "张三", "2020-01-01", Some("2022-01-01"));
        model.open_tenure(conn, ended.clone(), 10).await.unwrap();
        let first = model.take_writes();
        model.count_fact("n1");
        model.count_fact("n1");
        let reopened = held(1, "张三", "2020-01-01", None);
        model.supersede(conn, reopened.clone(), 50).await.unwrap();
        assert_eq!(model.out.closes, [(1, 10, 50)]);
        let all = [first, model.take_final_writes()];

        let staging = Staging::new(&all).unwrap();
        let tenures: Vec<_> = staging.tenure_rows(0..2).collect();
        assert_eq!(
            tenures,
            [ended.cells(10, Some(50)), reopened.cells(50, None)]
        );
        let notices: Vec<Vec<Value>> = staging.table_rows(0).map(Iterator::collect).collect();
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0][NOTICE_EVENT_COUNT], Value::Int(Some(3)));
        assert_eq!(notices[0][0], Value::Text(Some("n1")));
        assert_eq!(
            *staging.queue.lock().unwrap(),
            [Piece::Tenures(0..2), Piece::Table(0)]
        );

        // Without the first write, the close and the counts name rows nobody sends.
        let error = Staging::new(&all[1..]).err().expect("refused");
        assert!(
            error
                .to_string()
                .contains("found 0 of the 1 tenure versions"),
            "{error}"
        );
    }

    /// The tables whose keys a staged rebuild adds after their rows: those it copies, never
    /// one written with `ON CONFLICT`, which would find no key to conflict on.
    #[test]
    fn a_staged_write_copies_the_tables_whose_keys_come_after_it() {
        assert_eq!(
            Writes::copied_tables(),
            [
                "rm_notices",
                "rm_notice_warnings",
                "rm_organization_aliases",
                "rm_persons",
                "rm_tenures"
            ]
        );
    }

    #[test]
    fn a_staged_write_sends_the_tenures_in_slices_then_the_larger_tables_first() {
        let slice = STAGED_TENURE_ROWS;
        assert_eq!(
            pieces([5, 0, 3, 0, 0, 1, 2, 0], 2 * slice + 7),
            [
                Piece::Tenures(0..slice),
                Piece::Tenures(slice..2 * slice),
                Piece::Tenures(2 * slice..2 * slice + 7),
                Piece::Table(0),
                Piece::Table(2),
                Piece::Table(6),
                Piece::Table(5),
            ]
        );
        assert!(pieces([0; 8], 0).is_empty());
    }
}
