//! The registry benchmark (issue 7): each measurement next to the machine's own ceiling, on
//! the same generated workload, in the same run.
//!
//! ```text
//! cargo bench --bench registry -- [--notices K] [--seed N] [--lookups N]
//!                                 [--postgres URL] [--only sqlite|postgres]
//!                                 [--keep-sqlite PATH] [--streams K] [--rebuilds N]
//! ```
//!
//! Per backend (SQLite in a temp file; PostgreSQL when `--postgres` or
//! `RENMIAN_BENCH_DATABASE_URL` names a server where a fresh database can be created):
//! 1. ingest: events/s through `Registry::ingest` (parse + append + projections), notice by
//!    notice, vs the ceiling: a raw sqlx INSERT of the very same rows (all 15 columns of
//!    `events`, read back untimed) into a bare table of a fresh database, one transaction
//!    per notice, multi-row statements, each notice's right after its ingest (so both
//!    meet the disk in the same minutes: its syncs swing by 2x between runs). Next to it
//!    the read models' floor for this design, right after the ceiling: the same INSERT
//!    plus raw INSERTs of the read-model rows the notice's ingest wrote and the UPDATE
//!    closing the versions it superseded, one transaction per notice, into a fresh
//!    database with renmian's tables and indexes ([`IngestFloor`]). An ingest that projects
//!    in its append's transaction writes at least that, so no implementation of it beats
//!    ceiling / floor;
//!    Bulk ingest: events/s through `Registry::ingest_all` (what `renmian ingest FILE…`
//!    runs: one append transaction per batch of `BULK_BATCH_EVENTS`; into a fresh database,
//!    from 1 000 texts on, the batches are appended alone and projected once at the end)
//!    of the same texts into a fresh database, in one call, vs the same raw INSERT with one
//!    transaction per batch of whole notices of that size. A bulk load writes the log rows
//!    and the read models, which one SQLite writer can only do one after the other: the
//!    ratio its floors allow is that INSERT's time over its sum with the read models'
//!    floor (item 2); on PostgreSQL, where two connections could write both at once, not a
//!    strict bound;
//!    Concurrent ingest: the same texts through `Registry::ingest` from `--streams K`
//!    tasks at once (4 by default; notice `i` goes to task `i mod K`), as concurrent
//!    gRPC Ingest calls from several offices would, into a fresh database, vs the same
//!    ceiling as notice-by-notice ingest;
//! 2. rebuild: events/s of `Projector::rebuild` vs the ceiling: one ordered scan of the
//!    events table decoding every payload with serde_json into `RegistryEvent`, run right
//!    before each of `--rebuilds N` rebuilds (3 by default), so that each pair meets the
//!    machine in the same seconds (a scan run minutes apart from its rebuild swung by a
//!    third: BENCHMARKS.md, session 37), once the process is idle (a rebuild's model is
//!    freed on a thread of its own after it returns; some scans run right after a rebuild
//!    without this wait took twice as long: session 38); the ratio is of the medians,
//!    each pair's printed beside it, and the peak RSS and CPU are the first rebuild's.
//!    Next to it the read models' floor: the database copying the rows the rebuild wrote
//!    into new tables of its own (`INSERT … SELECT`, the same indexes, one commit), with no
//!    client, no parsing and no projecting. A rebuild has to read the log and write those
//!    rows, so even with both overlapped perfectly it takes at least the longer of the
//!    two: the ratio the ceiling allows is scan / max(scan, floor);
//! 3. in-process query latency, p50/p99 of `holders` and `holdings` over random lookups;
//! 4. peak RSS (VmHWM, reset between phases through /proc/self/clear_refs);
//! 5. the machine's CPU during bulk ingest, ingest and rebuild: how busy every core was
//!    (any process: on PostgreSQL the server's work too) and how much of it was this
//!    process's — whether a phase is bound by the CPU or by waiting.
//!
//! Also the pure parse time of the same texts, and the event store alone: the same events
//! through `Database::append` (positions, hash chain, head row; one transaction per notice)
//! into a fresh renmian database that projects nothing, the number to set next to an event
//! store without read models (the Python peer, `benches/peer/`).
//!
//! Everything is bounded by counts, never by time, and nothing asserts on a duration.
//! The ceilings use sqlx's native drivers with the same durability settings as renmian
//! (SQLite WAL + synchronous=FULL; PostgreSQL defaults), so the ratio is what renmian's
//! design costs over "just write the rows".

/// The allocator of the `renmian` binary (`src/main.rs`), so the bench measures what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/mod.rs"]
mod support;

use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use futures::TryStreamExt;
use renmian::domain::RegistryEvent;
use renmian::registry::{Actor, Registry, BULK_BATCH_EVENTS};
use renmian::store::log::placeholders;
use renmian::store::{Backend, Database, NewEvent, StoredEvent};
use renmian::workload::{generate, WorkloadConfig};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Column, Connection, Row, TypeInfo};
use support::{drop_pg, fresh_pg};

/// Rows per multi-row INSERT of the ceiling (renmian's own append uses 500 too).
const CHUNK: usize = 500;

struct Options {
    notices: usize,
    seed: u64,
    lookups: usize,
    postgres: Option<String>,
    only: Option<String>,
    keep_sqlite: Option<std::path::PathBuf>,
    /// Tasks of the concurrent ingest.
    streams: usize,
    /// Rebuilds, each right after its ceiling's scan.
    rebuilds: usize,
}

fn options() -> Options {
    let mut o = Options {
        notices: 2000,
        seed: 7,
        lookups: 3000,
        postgres: std::env::var("RENMIAN_BENCH_DATABASE_URL").ok(),
        only: None,
        keep_sqlite: None,
        streams: 4,
        rebuilds: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--notices" => o.notices = value().parse().expect("--notices K"),
            "--seed" => o.seed = value().parse().expect("--seed N"),
            "--lookups" => o.lookups = value().parse().expect("--lookups N"),
            "--postgres" => o.postgres = Some(value()),
            "--only" => o.only = Some(value()),
            "--keep-sqlite" => o.keep_sqlite = Some(value().into()),
            "--streams" => {
                o.streams = value().parse().expect("--streams K");
                assert!(o.streams > 0, "--streams K needs at least one task");
            }
            "--rebuilds" => {
                o.rebuilds = value().parse().expect("--rebuilds N");
                assert!(o.rebuilds > 0, "--rebuilds N needs at least one");
            }
            // `cargo bench` passes `--bench` to every bench binary.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

/// Results of one backend.
#[derive(Default)]
struct Report {
    backend: &'static str,
    notices: usize,
    events: usize,
    parse: Duration,
    ingest: Duration,
    raw_insert: Duration,
    /// The same raw INSERT of each notice's rows plus the read-model rows its ingest wrote
    /// ([`IngestFloor`]).
    ingest_floor: Duration,
    /// `Registry::ingest_all` (what `renmian ingest FILE…` runs) of the same texts into a
    /// fresh database, and its ceiling: the raw INSERT with the same transaction per batch.
    bulk_ingest: Duration,
    raw_insert_bulk: Duration,
    /// `Registry::ingest` of the same texts from `streams` tasks at once, into a fresh
    /// database.
    concurrent_ingest: Duration,
    streams: usize,
    rss_bulk_kib: u64,
    rss_before_bulk_kib: u64,
    /// `Database::append` of the same events into a fresh renmian database with no
    /// projection: the event store alone, comparable to the Python peer's append.
    store_append: Duration,
    /// (ceiling's scan, rebuild) of each rebuild, in order, the scan right before it
    /// ([`Report::raw_scan`] and [`Report::rebuild`] are their medians).
    rebuild_pairs: Vec<(Duration, Duration)>,
    /// renmian's own replay read ([`replay_read`]), for the Python peer's replay.
    replay_read: Duration,
    /// The database copying the rebuilt read models into new tables ([`read_model_floor`]).
    floor: Duration,
    holders: Vec<Duration>,
    holdings: Vec<Duration>,
    /// `holdings` lookups answered "ambiguous" (a name shared across jurisdictions).
    ambiguous: usize,
    rss_base_kib: u64,
    rss_ingest_kib: u64,
    rss_rebuild_kib: u64,
    /// Anonymous memory (heap) at the end of each phase: VmHWM also counts the pages of
    /// SQLite's file mapping (`mmap_size`), which are the OS page cache, not the process's.
    anon_ingest_kib: u64,
    anon_rebuild_kib: u64,
    /// The machine's CPU over each phase ([`CpuMeter`]).
    cpu_bulk: CpuShare,
    cpu_ingest: CpuShare,
    cpu_rebuild: CpuShare,
}

impl Report {
    /// The median of the rebuilds' ceilings ([`percentile`] at 0.5: for an even count, the
    /// upper of the two middle ones).
    fn raw_scan(&self) -> Duration {
        let scans: Vec<Duration> = self.rebuild_pairs.iter().map(|&(scan, _)| scan).collect();
        percentile(&scans, 0.5)
    }

    /// The median of the rebuilds, as [`Report::raw_scan`].
    fn rebuild(&self) -> Duration {
        let rebuilds: Vec<Duration> = self.rebuild_pairs.iter().map(|&(_, r)| r).collect();
        percentile(&rebuilds, 0.5)
    }
}

fn main() {
    let o = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut reports = Vec::new();
    runtime.block_on(async {
        if o.only.as_deref() != Some("postgres") {
            let dir = tempfile::tempdir().expect("temp dir");
            // --keep-sqlite PATH: the registry database is left there afterwards (for the
            // gRPC bench or `renmian serve` on the same data).
            let path = o
                .keep_sqlite
                .clone()
                .unwrap_or_else(|| dir.path().join("bench.db"));
            let url = format!("sqlite://{}", path.display());
            let raw = dir.path().join("ceiling.db");
            let fresh = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
            let fresh = Fresh {
                store: fresh("append.db"),
                bulk: fresh("bulk.db"),
                concurrent: fresh("concurrent.db"),
                floor: fresh("ingest-floor.db"),
            };
            reports.push(run("SQLite", &url, Ceiling::Sqlite(raw), &fresh, &o).await);
        }
        if o.only.as_deref() != Some("sqlite") {
            match &o.postgres {
                Some(admin) => {
                    let db = fresh_pg(admin, "run").await;
                    let raw = fresh_pg(admin, "ceiling").await;
                    let fresh = Fresh {
                        store: fresh_pg(admin, "append").await,
                        bulk: fresh_pg(admin, "bulk").await,
                        concurrent: fresh_pg(admin, "concurrent").await,
                        floor: fresh_pg(admin, "floor").await,
                    };
                    let report = run(
                        "PostgreSQL",
                        &db,
                        Ceiling::Postgres(raw.clone()),
                        &fresh,
                        &o,
                    )
                    .await;
                    reports.push(report);
                    let urls = [&db, &raw, &fresh.store, &fresh.bulk, &fresh.concurrent];
                    for url in urls.into_iter().chain([&fresh.floor]) {
                        drop_pg(admin, url).await;
                    }
                }
                None => eprintln!(
                    "PostgreSQL skipped: pass --postgres URL or set RENMIAN_BENCH_DATABASE_URL"
                ),
            }
        }
    });
    print_report(&o, &reports);
}

enum Ceiling {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

/// Fresh databases of one backend, one per measurement that starts from empty.
struct Fresh {
    /// The event store alone.
    store: String,
    bulk: String,
    concurrent: String,
    /// The ingest's floor ([`IngestFloor`]).
    floor: String,
}

async fn run(
    backend: &'static str,
    url: &str,
    ceiling: Ceiling,
    fresh: &Fresh,
    o: &Options,
) -> Report {
    let config = WorkloadConfig::new(o.seed, o.notices);
    let mut r = Report {
        backend,
        notices: o.notices,
        ..Report::default()
    };
    eprintln!("[{backend}] parse-only pass over {} notices", o.notices);
    let started = Instant::now();
    for n in generate(&config) {
        let out = renmian::notice::parse(&n.text);
        assert_eq!(out.notices.len(), 1, "{}", n.file_name);
    }
    // Generation time is in here too; it is measured below and subtracted.
    let parse_and_generate = started.elapsed();
    let started = Instant::now();
    let generated: usize = generate(&config).map(|n| n.text.len()).sum();
    let generate_only = started.elapsed();
    r.parse = parse_and_generate.saturating_sub(generate_only);
    eprintln!("[{backend}] generated {generated} bytes of notices");

    // First, while the process holds nothing else, so its peak RSS is its own.
    eprintln!("[{backend}] bulk ingest (ingest_all) into a fresh database");
    let expected: usize = generate(&config).map(|n| n.expected_events).sum();
    r.rss_before_bulk_kib = rss_kib("VmRSS");
    let cpu = CpuMeter::start();
    r.bulk_ingest = bulk_ingest(&config, &fresh.bulk, expected, &mut r.rss_bulk_kib).await;
    r.cpu_bulk = cpu.stop();

    let registry = Registry::open(url).await.expect("open registry");
    let actor = Actor::named("bench");
    r.rss_base_kib = rss_kib("VmRSS");
    reset_peak_rss();
    eprintln!("[{backend}] ingest, each notice followed by its ceiling: a raw INSERT of its rows");
    let bare = BareTable::create(&ceiling, "notice").await;
    let mut floor = IngestFloor::create(url, &fresh.floor).await;
    let mut head = 0;
    let mut cpu = CpuTally::default();
    let mut last_date = NaiveDate::MIN;
    let mut first_date = None;
    for (i, n) in generate(&config).enumerate() {
        let interval = CpuMeter::start();
        let ingesting = Instant::now();
        let out = registry.ingest(&n.text, &actor).await.expect("ingest");
        r.ingest += ingesting.elapsed();
        cpu.add(&interval);
        let appended: usize = out.iter().map(|x| x.events_appended).sum();
        assert_eq!(appended, n.expected_events, "{}", n.file_name);
        r.events += appended;
        // The ceiling right after, so that both meet the disk as it is now (its syncs
        // swing 2x between minutes): the rows just appended, read back untimed.
        let rows = registry
            .database()
            .events_after(head, appended as i64)
            .await
            .expect("read back");
        assert_eq!(rows.len(), appended);
        head = rows.last().map_or(head, |e| e.position);
        r.raw_insert += bare.insert(&rows).await;
        r.ingest_floor += floor.notice(&rows).await;
        first_date.get_or_insert(n.issued_on);
        last_date = n.issued_on;
        if (i + 1) % 5000 == 0 {
            eprintln!(
                "[{backend}]   {} notices, {} events, {:.0} events/s (ceiling {:.0})",
                i + 1,
                r.events,
                r.events as f64 / r.ingest.as_secs_f64(),
                r.events as f64 / r.raw_insert.as_secs_f64()
            );
        }
    }
    r.cpu_ingest = cpu.share();
    r.rss_ingest_kib = rss_kib("VmHWM");
    r.anon_ingest_kib = rss_kib("RssAnon");

    eprintln!(
        "[{backend}] rebuild, {} times, each right after its ceiling: a raw ordered scan + decode",
        o.rebuilds
    );
    for run in 0..o.rebuilds {
        let settled = settle().await;
        let scan = raw_scan(url).await;
        assert!(scan > Duration::ZERO);
        reset_peak_rss();
        let cpu = CpuMeter::start();
        let started = Instant::now();
        registry.projector().rebuild().await.expect("rebuild");
        let rebuild = started.elapsed();
        let share = cpu.stop();
        if run == 0 {
            r.cpu_rebuild = share;
            r.rss_rebuild_kib = rss_kib("VmHWM");
            r.anon_rebuild_kib = rss_kib("RssAnon");
        }
        eprintln!(
            "[{backend}]   settled {:.1} s, scan {:.2} s, rebuild {:.2} s: {:.1}%",
            settled.as_secs_f64(),
            scan.as_secs_f64(),
            rebuild.as_secs_f64(),
            percent(scan, rebuild)
        );
        r.rebuild_pairs.push((scan, rebuild));
    }

    eprintln!("[{backend}] ceiling: raw INSERT of the same rows, a transaction per bulk batch");
    r.raw_insert_bulk = raw_insert(&registry, &ceiling, BULK_BATCH_EVENTS).await;
    eprintln!("[{backend}] event store alone: Database::append of the same events");
    r.store_append = store_append(&registry, &fresh.store).await;
    eprintln!("[{backend}] concurrent ingest: {} streams", o.streams);
    r.streams = o.streams;
    r.concurrent_ingest = concurrent_ingest(&config, &fresh.concurrent, o.streams, r.events).await;
    eprintln!("[{backend}] renmian's replay read: Database::read_log + decode");
    r.replay_read = replay_read(registry.database()).await;
    eprintln!("[{backend}] floor: the database copying the read models into new tables");
    r.floor = read_model_floor(url).await;

    eprintln!("[{backend}] lookups");
    let first_date = first_date.unwrap_or(last_date);
    lookups(&registry, o, first_date, last_date, &mut r).await;
    registry.database().close().await;
    r
}

/// `Registry::ingest_all` of the generated texts into the fresh database at `url`, in one
/// call as `renmian ingest FILE…` makes it (a load of many texts into an empty registry
/// projects at its end: `BulkProjection::AtTheEnd`); checks it appended `events` events.
/// Generating the texts is not timed; at 40 000 notices they are about 75 MB.
async fn bulk_ingest(config: &WorkloadConfig, url: &str, events: usize, rss: &mut u64) -> Duration {
    let registry = Registry::open(url).await.expect("open bulk registry");
    let actor = Actor::named("bench");
    let texts: Vec<String> = generate(config).map(|n| n.text).collect();
    reset_peak_rss();
    let started = Instant::now();
    let outcomes = registry
        .ingest_all(&texts, &actor)
        .await
        .expect("bulk ingest");
    let timed = started.elapsed();
    let appended: usize = outcomes.iter().map(|o| o.events_appended).sum();
    assert_eq!(
        appended, events,
        "bulk ingest appended other events than ingest"
    );
    *rss = rss_kib("VmHWM");
    registry.database().close().await;
    timed
}

/// `Registry::ingest` of the generated texts into the fresh database at `url` from
/// `streams` tasks at once, notice `i` from task `i mod streams`; checks they appended
/// `events` events in all. Generating the texts is not timed.
async fn concurrent_ingest(
    config: &WorkloadConfig,
    url: &str,
    streams: usize,
    events: usize,
) -> Duration {
    let registry = std::sync::Arc::new(Registry::open(url).await.expect("open registry"));
    let texts: std::sync::Arc<Vec<String>> =
        std::sync::Arc::new(generate(config).map(|n| n.text).collect());
    let started = Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|k| {
            let (registry, texts) = (registry.clone(), texts.clone());
            tokio::spawn(async move {
                let actor = Actor::named("bench");
                let mut appended = 0;
                for text in texts.iter().skip(k).step_by(streams) {
                    let out = registry.ingest(text, &actor).await.expect("ingest");
                    appended += out.iter().map(|x| x.events_appended).sum::<usize>();
                }
                appended
            })
        })
        .collect();
    let mut appended = 0;
    for task in tasks {
        appended += task.await.expect("ingest task");
    }
    let timed = started.elapsed();
    assert_eq!(appended, events, "concurrent ingest appended other events");
    registry.database().close().await;
    timed
}

/// Binds the 15 columns of each event, in `events` column order.
macro_rules! bind_all {
    ($query:expr, $rows:expr) => {{
        let mut q = $query;
        for e in $rows {
            q = q
                .bind(e.position)
                .bind(&e.aggregate_type)
                .bind(&e.aggregate_id)
                .bind(e.sequence)
                .bind(&e.event_type)
                .bind(&e.event_version)
                .bind(&e.payload)
                .bind(&e.metadata)
                .bind(&e.recorded_at)
                .bind(&e.actor)
                .bind(&e.document_number)
                .bind(e.source_line)
                .bind(&e.clause)
                .bind(&e.prev_hash)
                .bind(&e.hash);
        }
        q
    }};
}

/// The stored events of a registry, one notice (one commit) at a time, read page by page.
struct NoticeGroups<'a> {
    registry: &'a Registry,
    after: i64,
    page: std::vec::IntoIter<StoredEvent>,
    pending: Option<StoredEvent>,
}

impl<'a> NoticeGroups<'a> {
    fn new(registry: &'a Registry) -> Self {
        Self {
            registry,
            after: 0,
            page: Vec::new().into_iter(),
            pending: None,
        }
    }

    async fn next_event(&mut self) -> Option<StoredEvent> {
        if let Some(e) = self.page.next() {
            return Some(e);
        }
        let page = self
            .registry
            .database()
            .events_after(self.after, 5000)
            .await
            .expect("read events");
        self.after = page.last()?.position;
        self.page = page.into_iter();
        self.page.next()
    }

    async fn next(&mut self) -> Option<Vec<StoredEvent>> {
        let mut group: Vec<StoredEvent> = self.pending.take().into_iter().collect();
        while let Some(e) = self.next_event().await {
            if group
                .last()
                .is_some_and(|g| g.aggregate_id != e.aggregate_id)
            {
                self.pending = Some(e);
                return Some(group);
            }
            group.push(e);
        }
        (!group.is_empty()).then_some(group)
    }
}

/// Appends every stored event again, notice by notice, through `Database::append` (positions,
/// hash chain, head row) into a fresh renmian database that projects nothing. Only the
/// appends are timed.
async fn store_append(registry: &Registry, url: &str) -> Duration {
    let store = Database::connect(url).await.expect("event store");
    let mut timed = Duration::ZERO;
    let mut groups = NoticeGroups::new(registry);
    while let Some(group) = groups.next().await {
        let rows: Vec<NewEvent> = group
            .into_iter()
            .map(|e| NewEvent {
                aggregate_type: e.aggregate_type,
                aggregate_id: e.aggregate_id,
                sequence: e.sequence,
                event_type: e.event_type,
                event_version: e.event_version,
                payload: e.payload,
                metadata: e.metadata,
                actor: e.actor,
                document_number: e.document_number,
                source_line: e.source_line,
                clause: e.clause,
            })
            .collect();
        let started = Instant::now();
        store.append(&rows).await.expect("append");
        timed += started.elapsed();
    }
    store.close().await;
    timed
}

/// Inserts every stored event again into a bare table of a fresh database, one transaction
/// per group of whole notices of at least `batch_events` events (how a bulk ingest batches
/// them). Only the INSERTs are timed; reading the rows back is not. (The ceiling of one
/// transaction per notice is measured inside the ingest, interleaved with it.)
async fn raw_insert(registry: &Registry, ceiling: &Ceiling, batch_events: usize) -> Duration {
    let bare = BareTable::create(ceiling, &format!("{batch_events}")).await;
    let mut timed = Duration::ZERO;
    let mut groups = NoticeGroups::new(registry);
    let mut batch = Vec::new();
    while let Some(group) = groups.next().await {
        batch.extend(group);
        if batch.len() >= batch_events {
            timed += bare.insert(&batch).await;
            batch.clear();
        }
    }
    timed + bare.insert(&batch).await
}

/// The ceilings' table (also the ingest floor's log, [`IngestFloor`]).
const BARE_EVENTS: &str = "CREATE TABLE events_raw (position BIGINT PRIMARY KEY, \
    aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL, sequence BIGINT NOT NULL, \
    event_type TEXT NOT NULL, event_version TEXT NOT NULL, payload TEXT NOT NULL, \
    metadata TEXT NOT NULL, recorded_at TEXT NOT NULL, actor TEXT NOT NULL, \
    document_number TEXT, source_line BIGINT, clause TEXT, prev_hash TEXT NOT NULL, \
    hash TEXT NOT NULL)";

/// Creates the ceilings' table on PostgreSQL ([`BARE_EVENTS`]), its payloads compressed as
/// renmian's own (migration 0016), so that both store the same bytes the same way.
async fn create_bare_events_postgres(pool: &sqlx::PgPool) {
    sqlx::query(BARE_EVENTS).execute(pool).await.expect("ddl");
    sqlx::raw_sql(
        "DO $$ BEGIN \
         EXECUTE 'ALTER TABLE events_raw ALTER COLUMN payload SET COMPRESSION lz4'; \
         EXCEPTION WHEN feature_not_supported THEN NULL; END $$",
    )
    .execute(pool)
    .await
    .expect("storage");
}

/// The ceilings' table: the 15 columns of `events` and its key, nothing else (no other
/// index, no trigger, no head row), new in a database of its own (`tag` names the SQLite
/// file; on PostgreSQL the ceiling database's one table is made anew), written through
/// sqlx's own driver with renmian's durability.
enum BareTable {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl BareTable {
    async fn create(ceiling: &Ceiling, tag: &str) -> Self {
        match ceiling {
            Ceiling::Sqlite(path) => {
                let options = SqliteConnectOptions::new()
                    .filename(path.with_extension(format!("{tag}.db")))
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full);
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await
                    .expect("ceiling sqlite");
                sqlx::query(BARE_EVENTS).execute(&pool).await.expect("ddl");
                Self::Sqlite(pool)
            }
            Ceiling::Postgres(url) => {
                let pool = sqlx::PgPool::connect(url).await.expect("ceiling postgres");
                sqlx::query("DROP TABLE IF EXISTS events_raw")
                    .execute(&pool)
                    .await
                    .expect("drop");
                create_bare_events_postgres(&pool).await;
                Self::Postgres(pool)
            }
        }
    }

    /// Inserts `rows` in one transaction, in multi-row statements of [`CHUNK`] rows; the
    /// time that took.
    async fn insert(&self, rows: &[StoredEvent]) -> Duration {
        if rows.is_empty() {
            return Duration::ZERO;
        }
        let started = Instant::now();
        match self {
            Self::Sqlite(p) => {
                let mut tx = p.begin().await.expect("begin");
                for chunk in rows.chunks(CHUNK) {
                    let sql = insert_sql(Backend::Sqlite, chunk.len());
                    bind_all!(sqlx::query(&sql), chunk)
                        .execute(&mut *tx)
                        .await
                        .expect("insert");
                }
                tx.commit().await.expect("commit");
            }
            Self::Postgres(p) => {
                let mut tx = p.begin().await.expect("begin");
                for chunk in rows.chunks(CHUNK) {
                    let sql = insert_sql(Backend::Postgres, chunk.len());
                    bind_all!(sqlx::query(&sql), chunk)
                        .execute(&mut *tx)
                        .await
                        .expect("insert");
                }
                tx.commit().await.expect("commit");
            }
        }
        started.elapsed()
    }
}

/// The columns of `events` (and of the ceilings' `events_raw`), in [`bind_all!`]'s order.
const EVENT_COLUMNS: [&str; 15] = [
    "position",
    "aggregate_type",
    "aggregate_id",
    "sequence",
    "event_type",
    "event_version",
    "payload",
    "metadata",
    "recorded_at",
    "actor",
    "document_number",
    "source_line",
    "clause",
    "prev_hash",
    "hash",
];

fn insert_sql(backend: Backend, rows: usize) -> String {
    format!(
        "INSERT INTO events_raw ({}) VALUES {}",
        EVENT_COLUMNS.join(", "),
        placeholders(backend, rows, EVENT_COLUMNS.len())
    )
}

/// The least a per-notice ingest that projects in its append's transaction can cost: the
/// ceiling's raw INSERT of the notice's log rows, plus raw INSERTs of the read-model rows
/// its ingest wrote and one UPDATE closing the tenure versions it superseded, in one
/// transaction per notice, into a fresh database with renmian's read-model tables and
/// indexes (its migrations; SQLite in WAL with `synchronous = FULL`, PostgreSQL with its
/// defaults, as the ceiling). SQLite gets a statement per table, as the ceiling's INSERT
/// ([`sqlite_floor_write`]); PostgreSQL all of it as one statement, three round trips like
/// the ceiling's ([`postgres_floor_write`]; a statement per table was 11 round trips and
/// allowed 32 % instead of 43 % at 2 000 notices). No client work but binding: no parsing,
/// no deciding, no projecting, no reads. The rows are read back untimed right after each
/// ingest, as the registry's read models stand then. What it leaves out makes it a lower
/// bound: the head row, the person links a merge changes, a notice's counts a later
/// correction changes, `rm_jurisdictions` (a handful of rows) and `rm_ingest_requests` (the
/// bench sends no request ids). The ratio the ceiling allows is ceiling / floor: no
/// implementation of this design can beat it on the same disk.
enum IngestFloor {
    Sqlite {
        source: sqlx::SqliteConnection,
        target: sqlx::SqlitePool,
    },
    Postgres {
        source: sqlx::PgConnection,
        target: sqlx::PgPool,
    },
}

/// One column of rows: every column of the read models is an integer or a text.
enum Array {
    Int(Vec<Option<i64>>),
    Text(Vec<Option<String>>),
}

/// Rows of one table, a column at a time (PostgreSQL binds each column as one array).
struct TableRows {
    table: &'static str,
    columns: Vec<String>,
    arrays: Vec<Array>,
    rows: usize,
}

/// The rows a notice's commit (positions `$1` to `$2`) added to each read model, by the
/// position that created them; `rm_notices` through its id, which has the index.
const FLOOR_TABLES: &[(&str, &str)] = &[
    (
        "rm_notices",
        "SELECT * FROM rm_notices WHERE notice_id IN \
         (SELECT aggregate_id FROM events WHERE position BETWEEN $1 AND $2) \
         AND recorded_position BETWEEN $1 AND $2",
    ),
    (
        "rm_notice_warnings",
        "SELECT * FROM rm_notice_warnings WHERE position BETWEEN $1 AND $2",
    ),
    (
        "rm_organizations",
        "SELECT * FROM rm_organizations WHERE first_position BETWEEN $1 AND $2",
    ),
    (
        "rm_organization_aliases",
        "SELECT * FROM rm_organization_aliases WHERE first_position BETWEEN $1 AND $2",
    ),
    (
        "rm_persons",
        "SELECT * FROM rm_persons WHERE first_position BETWEEN $1 AND $2",
    ),
    (
        "rm_posts",
        "SELECT * FROM rm_posts WHERE first_position BETWEEN $1 AND $2",
    ),
    (
        "rm_tenures",
        "SELECT * FROM rm_tenures WHERE version_from BETWEEN $1 AND $2",
    ),
];

/// The versions a notice's commit closed: each is superseded by a version of the same
/// tenure that the commit inserted, starting where it ends.
const FLOOR_CLOSES: &str = "SELECT tenure_id, version_from, version_to FROM rm_tenures \
    WHERE tenure_id IN (SELECT tenure_id FROM rm_tenures WHERE version_from BETWEEN $1 AND $2) \
    AND version_from < $1 AND version_to BETWEEN $1 AND $2";

/// Reads back (untimed) what a notice's commit wrote, on a connection of either driver.
macro_rules! floor_rows {
    ($source:expr, $first:expr, $last:expr) => {{
        let mut tables = Vec::new();
        for (table, sql) in FLOOR_TABLES {
            let rows = sqlx::query(sql)
                .bind($first)
                .bind($last)
                .fetch_all(&mut *$source)
                .await
                .expect("read back");
            let Some(first) = rows.first() else { continue };
            let columns: Vec<String> = first.columns().iter().map(|c| c.name().into()).collect();
            let arrays = first
                .columns()
                .iter()
                .enumerate()
                .map(|(i, c)| match c.type_info().name().contains("INT") {
                    true => Array::Int(rows.iter().map(|row| row.get(i)).collect()),
                    false => Array::Text(rows.iter().map(|row| row.get(i)).collect()),
                })
                .collect();
            tables.push(TableRows {
                table,
                columns,
                arrays,
                rows: rows.len(),
            });
        }
        let closes: Vec<(i64, i64, i64)> = sqlx::query_as(FLOOR_CLOSES)
            .bind($first)
            .bind($last)
            .fetch_all(&mut *$source)
            .await
            .expect("read back closes");
        (tables, closes)
    }};
}

/// SQLite: writes (timed) a notice's log rows, read-model rows and closes in one
/// transaction, a statement per table as the ceiling's INSERT.
async fn sqlite_floor_write(
    target: &sqlx::SqlitePool,
    events: &[StoredEvent],
    tables: &[TableRows],
    closes: &[(i64, i64, i64)],
    last: i64,
) -> Duration {
    let backend = Backend::Sqlite;
    let started = Instant::now();
    let mut tx = target.begin().await.expect("begin");
    for chunk in events.chunks(CHUNK) {
        let sql = insert_sql(backend, chunk.len());
        bind_all!(sqlx::query(&sql), chunk)
            .execute(&mut *tx)
            .await
            .expect("insert log rows");
    }
    for t in tables {
        for start in (0..t.rows).step_by(CHUNK) {
            let end = t.rows.min(start + CHUNK);
            let sql = format!(
                "INSERT INTO {} ({}) VALUES {}",
                t.table,
                t.columns.join(", "),
                placeholders(backend, end - start, t.columns.len())
            );
            let mut q = sqlx::query(&sql);
            for row in start..end {
                for array in &t.arrays {
                    q = match array {
                        Array::Int(v) => q.bind(v[row]),
                        Array::Text(v) => q.bind(v[row].as_deref()),
                    };
                }
            }
            q.execute(&mut *tx).await.expect("insert read-model rows");
        }
    }
    for chunk in closes.chunks(CHUNK) {
        let sql = format!(
            "UPDATE rm_tenures SET version_to = v.column3 FROM (VALUES {}) AS v \
             WHERE rm_tenures.tenure_id = v.column1 AND rm_tenures.version_from = v.column2",
            placeholders(backend, chunk.len(), 3)
        );
        let mut q = sqlx::query(&sql);
        for (tenure, from, to) in chunk {
            q = q.bind(*tenure).bind(*from).bind(*to);
        }
        q.execute(&mut *tx).await.expect("close versions");
    }
    sqlx::query("UPDATE projection_checkpoint SET position = ?")
        .bind(last)
        .execute(&mut *tx)
        .await
        .expect("move checkpoint");
    tx.commit().await.expect("commit");
    started.elapsed()
}

/// PostgreSQL: writes (timed) a notice's log rows, read-model rows and closes as **one**
/// statement in one transaction — three round trips, as the ceiling's — each table's rows
/// bound as one array per column and unpacked by `unnest` in a data-modifying `WITH` of
/// its own (the closes touch versions earlier notices wrote, never the rows inserted
/// beside them). Its text depends only on which tables have rows, so it is prepared once
/// for each such set.
async fn postgres_floor_write(
    target: &sqlx::PgPool,
    events: &[StoredEvent],
    tables: &[TableRows],
    closes: &[(i64, i64, i64)],
    last: i64,
) -> Duration {
    let int = |f: fn(&StoredEvent) -> Option<i64>| Array::Int(events.iter().map(f).collect());
    let text = |f: fn(&StoredEvent) -> Option<&str>| {
        Array::Text(events.iter().map(|e| f(e).map(str::to_string)).collect())
    };
    // In EVENT_COLUMNS' order.
    let log = TableRows {
        table: "events_raw",
        columns: EVENT_COLUMNS.map(String::from).to_vec(),
        arrays: vec![
            int(|e| Some(e.position)),
            text(|e| Some(&e.aggregate_type)),
            text(|e| Some(&e.aggregate_id)),
            int(|e| Some(e.sequence)),
            text(|e| Some(&e.event_type)),
            text(|e| Some(&e.event_version)),
            text(|e| Some(&e.payload)),
            text(|e| Some(&e.metadata)),
            text(|e| Some(&e.recorded_at)),
            text(|e| Some(&e.actor)),
            text(|e| e.document_number.as_deref()),
            int(|e| e.source_line),
            text(|e| e.clause.as_deref()),
            text(|e| Some(&e.prev_hash)),
            text(|e| Some(&e.hash)),
        ],
        rows: events.len(),
    };
    // The arrays are built before the clock starts: they are the client's, not the
    // database's, work. Each table's INSERT reads its columns from consecutive parameters.
    let mut parts = Vec::new();
    let mut arrays: Vec<&Array> = Vec::new();
    for t in std::iter::once(&log).chain(tables) {
        let mut casts = Vec::new();
        for array in &t.arrays {
            arrays.push(array);
            let kind = match array {
                Array::Int(_) => "int8",
                Array::Text(_) => "text",
            };
            casts.push(format!("${}::{kind}[]", arrays.len()));
        }
        parts.push(format!(
            "w{} AS (INSERT INTO {} ({}) SELECT * FROM unnest({}))",
            parts.len(),
            t.table,
            t.columns.join(", "),
            casts.join(", ")
        ));
    }
    let closed = [
        Array::Int(closes.iter().map(|c| Some(c.0)).collect()),
        Array::Int(closes.iter().map(|c| Some(c.1)).collect()),
        Array::Int(closes.iter().map(|c| Some(c.2)).collect()),
    ];
    if !closes.is_empty() {
        let n = arrays.len();
        arrays.extend(&closed);
        parts.push(format!(
            "closes AS (UPDATE rm_tenures SET version_to = v.version_to \
             FROM unnest(${}::int8[], ${}::int8[], ${}::int8[]) \
             AS v(tenure_id, version_from, version_to) \
             WHERE rm_tenures.tenure_id = v.tenure_id \
             AND rm_tenures.version_from = v.version_from)",
            n + 1,
            n + 2,
            n + 3
        ));
    }
    let sql = format!(
        "WITH {} UPDATE projection_checkpoint SET position = ${}",
        parts.join(", "),
        arrays.len() + 1
    );
    let started = Instant::now();
    let mut q = sqlx::query(&sql);
    for column in arrays {
        q = match column {
            Array::Int(v) => q.bind(v),
            Array::Text(v) => q.bind(v),
        };
    }
    let mut tx = target.begin().await.expect("begin");
    q.bind(last)
        .execute(&mut *tx)
        .await
        .expect("floor statement");
    tx.commit().await.expect("commit");
    started.elapsed()
}

/// Prepared statements the floor keeps: one per table and row count it meets, so that no
/// statement is prepared twice (sqlx keeps 100 by default, fewer than the floor's texts).
const FLOOR_STATEMENTS: usize = 10_000;

impl IngestFloor {
    /// `url`: the registry being ingested into; `floor_url`: a fresh database.
    async fn create(url: &str, floor_url: &str) -> Self {
        // renmian's schema, read models and checkpoint row included, then the ceiling's log.
        Database::connect(floor_url)
            .await
            .expect("floor database")
            .close()
            .await;
        if url.starts_with("sqlite:") {
            let source = SqliteConnectOptions::from_str(url).expect("sqlite url");
            let target = SqliteConnectOptions::from_str(floor_url)
                .expect("sqlite url")
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .statement_cache_capacity(FLOOR_STATEMENTS);
            let target = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(target)
                .await
                .expect("floor sqlite");
            sqlx::query(BARE_EVENTS)
                .execute(&target)
                .await
                .expect("ddl");
            Self::Sqlite {
                source: sqlx::SqliteConnection::connect_with(&source)
                    .await
                    .expect("connect"),
                target,
            }
        } else {
            let target = sqlx::postgres::PgConnectOptions::from_str(floor_url)
                .expect("postgres url")
                .statement_cache_capacity(FLOOR_STATEMENTS);
            let target = sqlx::PgPool::connect_with(target)
                .await
                .expect("floor postgres");
            create_bare_events_postgres(&target).await;
            Self::Postgres {
                source: sqlx::PgConnection::connect(url).await.expect("connect"),
                target,
            }
        }
    }

    /// Writes what the notice of `events` wrote (read back untimed); the time that took.
    async fn notice(&mut self, events: &[StoredEvent]) -> Duration {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Duration::ZERO;
        };
        let (first, last) = (first.position, last.position);
        match self {
            Self::Sqlite { source, target } => {
                let (tables, closes) = floor_rows!(source, first, last);
                sqlite_floor_write(target, events, &tables, &closes, last).await
            }
            Self::Postgres { source, target } => {
                let (tables, closes) = floor_rows!(source, first, last);
                postgres_floor_write(target, events, &tables, &closes, last).await
            }
        }
    }
}

/// Reads a row as the projector does (every column) and decodes its payload into the
/// domain event; a macro because SQLite and PostgreSQL rows are different types.
macro_rules! decode_row {
    ($row:expr) => {{
        let row = $row;
        let position: i64 = row.get(0);
        let mut bytes = 0;
        for i in [1, 2, 4, 5, 8, 9, 13, 14] {
            bytes += row.get::<&str, _>(i).len();
        }
        let sequence: i64 = row.get(3);
        let extra: (Option<&str>, Option<i64>, Option<&str>) =
            (row.get(10), row.get(11), row.get(12));
        let payload: &str = row.get(6);
        let metadata: &str = row.get(7);
        let event: RegistryEvent =
            serde_json::from_str(payload).unwrap_or_else(|e| panic!("position {position}: {e}"));
        let meta: serde_json::Value = serde_json::from_str(metadata).expect("metadata");
        std::hint::black_box((&event, &meta, bytes, sequence, extra));
        1
    }};
}

/// One ordered scan of the whole events table with every column, decoding each payload
/// into the domain event: the least any replay has to do.
async fn raw_scan(url: &str) -> Duration {
    const SQL: &str = "SELECT position, aggregate_type, aggregate_id, sequence, event_type, \
        event_version, payload, metadata, recorded_at, actor, document_number, source_line, \
        clause, prev_hash, hash FROM events ORDER BY position";
    let mut decoded = 0usize;
    let started;
    if url.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(url).expect("sqlite url");
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .expect("connect");
        started = Instant::now();
        let mut rows = sqlx::query(SQL).fetch(&mut conn);
        while let Some(row) = rows.try_next().await.expect("scan") {
            decoded += decode_row!(&row);
        }
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        started = Instant::now();
        let mut rows = sqlx::query(SQL).fetch(&mut conn);
        while let Some(row) = rows.try_next().await.expect("scan") {
            decoded += decode_row!(&row);
        }
    }
    let elapsed = started.elapsed();
    assert!(decoded > 0);
    elapsed
}

/// renmian's own read of the whole log for a replay, as a rebuild reads it: `Database::read_log`
/// (a connection of the driver's own type, the columns a replay needs, 2 000 events a
/// batch, the next batch read while this one is decoded) and each payload decoded into a
/// `RegistryEvent`. What to set beside the Python peer's replay, which reads its own
/// stored events back; the ceiling above reads every column.
async fn replay_read(db: &Database) -> Duration {
    let (batches, mut received) = tokio::sync::mpsc::channel(2);
    let started = Instant::now();
    let reader = {
        let db = db.clone();
        tokio::spawn(async move { db.read_log(0, 2000, batches).await })
    };
    let upcasters = renmian::store::upcasters();
    let mut decoded = 0usize;
    while let Some(batch) = received.recv().await {
        let batch = batch.expect("read the log");
        if batch.is_empty() {
            break;
        }
        for event in &batch {
            let _: RegistryEvent =
                renmian::projections::projector::decode_event(event, &upcasters).expect("decode");
            decoded += 1;
        }
    }
    drop(received);
    reader.await.expect("the reader");
    let elapsed = started.elapsed();
    assert!(decoded > 0);
    elapsed
}

/// The least time in which the database itself can write the read models a rebuild wrote:
/// it copies every `rm_*` table into a new table of its own with `INSERT … SELECT`, builds
/// the same indexes and commits, all in one transaction, as a rebuild does (SQLite: into
/// an attached new file in WAL mode with `synchronous = FULL`; PostgreSQL: into a new
/// schema, with its default durability). The copies are dropped afterwards.
async fn read_model_floor(url: &str) -> Duration {
    if url.starts_with("sqlite:") {
        // Flags of the main file apply to the attached one: it may be created.
        let options = SqliteConnectOptions::from_str(url)
            .expect("sqlite url")
            .create_if_missing(true);
        let file = options.get_filename().with_extension("floor.db");
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .expect("connect");
        let objects: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT type, name, sql FROM sqlite_master WHERE tbl_name LIKE 'rm\\_%' ESCAPE '\\' \
             AND sql IS NOT NULL ORDER BY type DESC, name",
        )
        .fetch_all(&mut conn)
        .await
        .expect("schema");
        sqlx::query(&format!("ATTACH DATABASE '{}' AS floor", file.display()))
            .execute(&mut conn)
            .await
            .expect("attach");
        sqlx::raw_sql("PRAGMA floor.journal_mode = WAL; PRAGMA synchronous = FULL")
            .execute(&mut conn)
            .await
            .expect("pragmas");
        let started = Instant::now();
        let mut tx = conn.begin().await.expect("begin");
        for (kind, name, sql) in &objects {
            // `CREATE TABLE rm_x (` / `CREATE [UNIQUE] INDEX rm_x ON …`: the new object goes
            // to the attached file (an index there indexes that file's table of that name).
            let created = sql.replacen(&format!(" {name} "), &format!(" floor.{name} "), 1);
            assert_ne!(&created, sql, "{sql}");
            sqlx::query(&created)
                .execute(&mut *tx)
                .await
                .expect("create");
            if kind == "table" {
                sqlx::query(&format!(
                    "INSERT INTO floor.{name} SELECT * FROM main.{name}"
                ))
                .execute(&mut *tx)
                .await
                .expect("copy");
            }
        }
        tx.commit().await.expect("commit");
        let elapsed = started.elapsed();
        sqlx::query("DETACH DATABASE floor")
            .execute(&mut conn)
            .await
            .expect("detach");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
        elapsed
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() \
             AND tablename LIKE 'rm\\_%' ORDER BY tablename",
        )
        .fetch_all(&mut conn)
        .await
        .expect("tables");
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() \
             AND tablename LIKE 'rm\\_%' ORDER BY indexname",
        )
        .fetch_all(&mut conn)
        .await
        .expect("indexes");
        let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
            .fetch_one(&mut conn)
            .await
            .expect("schema");
        let started = Instant::now();
        let mut tx = conn.begin().await.expect("begin");
        sqlx::query("CREATE SCHEMA renmian_floor")
            .execute(&mut *tx)
            .await
            .expect("create schema");
        for table in &tables {
            sqlx::raw_sql(&format!(
                "CREATE TABLE renmian_floor.{table} (LIKE {table} INCLUDING DEFAULTS); \
                 INSERT INTO renmian_floor.{table} SELECT * FROM {table}"
            ))
            .execute(&mut *tx)
            .await
            .expect("copy");
        }
        for index in &indexes {
            let created = index.replacen(&format!(" ON {schema}."), " ON renmian_floor.", 1);
            assert_ne!(&created, index, "{index}");
            sqlx::query(&created)
                .execute(&mut *tx)
                .await
                .expect("index");
        }
        tx.commit().await.expect("commit");
        let elapsed = started.elapsed();
        sqlx::query("DROP SCHEMA renmian_floor CASCADE")
            .execute(&mut conn)
            .await
            .expect("drop schema");
        elapsed
    }
}

async fn lookups(
    registry: &Registry,
    o: &Options,
    first: NaiveDate,
    last: NaiveDate,
    r: &mut Report,
) {
    let pool = registry.database().pool();
    let posts: Vec<(String, String)> = sqlx::query("SELECT organization, post FROM rm_posts")
        .fetch_all(pool)
        .await
        .expect("posts")
        .iter()
        .map(|row| (row.get("organization"), row.get("post")))
        .collect();
    let persons: Vec<String> = sqlx::query("SELECT DISTINCT name FROM rm_persons")
        .fetch_all(pool)
        .await
        .expect("persons")
        .iter()
        .map(|row| row.get("name"))
        .collect();
    let mut rng = renmian::workload::SplitMix64::new(o.seed ^ 0x5eed);
    let days = (last - first).num_days().max(1) as usize;
    let date = |rng: &mut renmian::workload::SplitMix64| {
        first + chrono::Days::new(rng.below(days + 1) as u64)
    };
    for _ in 0..o.lookups {
        let (org, post) = rng.pick(&posts).clone();
        let on = date(&mut rng);
        let started = Instant::now();
        let found = registry.queries().holders(&org, &post, on).await;
        r.holders.push(started.elapsed());
        // Every (organization, post) comes from rm_posts: an error here is a bug.
        std::hint::black_box(found.expect("holders"));
    }
    for _ in 0..o.lookups {
        let person = rng.pick(&persons).clone();
        let on = date(&mut rng);
        let started = Instant::now();
        let found = registry.queries().holdings(&person, on).await;
        r.holdings.push(started.elapsed());
        // Same-name people of different jurisdictions may be refused as ambiguous: that is
        // an answer too (and costs the same lookups), so it is counted, not fatal.
        match found {
            Ok(v) => {
                std::hint::black_box(v);
            }
            Err(renmian::projections::QueryError::Ambiguous { .. }) => r.ambiguous += 1,
            Err(e) => panic!("holdings of {person}: {e}"),
        }
    }
}

/// A field of /proc/self/status in KiB (0 where there is no /proc).
fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The machine's CPU over a phase, as shares of its capacity (every core for the phase's
/// wall time): busy in any process, and in this one. On PostgreSQL most of the rest is
/// the server's work for this process (it runs on the same machine); a busy share near
/// 100 % means the phase is bound by the machine's CPU, not by waiting.
#[derive(Clone, Copy, Default)]
struct CpuShare {
    machine: f64,
    own: f64,
}

/// Clock ticks (10 ms; Linux `/proc`, zeros elsewhere): every CPU's busy and in all, and
/// this process's.
#[derive(Clone, Copy, Default)]
struct Ticks {
    busy: u64,
    total: u64,
    own: u64,
}

impl Ticks {
    fn now() -> Self {
        let (busy, total) = machine_ticks();
        Self {
            busy,
            total,
            own: own_ticks(),
        }
    }

    /// The ticks from `start` to `self`.
    fn since(self, start: Ticks) -> Ticks {
        Ticks {
            busy: self.busy.saturating_sub(start.busy),
            total: self.total.saturating_sub(start.total),
            own: self.own.saturating_sub(start.own),
        }
    }

    /// The shares of an interval's ticks.
    fn share(self) -> CpuShare {
        let elapsed = self.total.max(1) as f64;
        let machine = self.busy as f64 / elapsed;
        // The two files are read a moment apart and count in ticks (10 ms): this
        // process's share can come out a point over the machine's, never really is.
        let own = (self.own as f64 / elapsed).min(machine);
        CpuShare { machine, own }
    }
}

/// The ticks at the start of a phase ([`CpuShare`]).
struct CpuMeter(Ticks);

impl CpuMeter {
    fn start() -> Self {
        Self(Ticks::now())
    }

    fn elapsed(&self) -> Ticks {
        Ticks::now().since(self.0)
    }

    fn stop(&self) -> CpuShare {
        self.elapsed().share()
    }
}

/// Ticks summed over several intervals: a phase timed in pieces, with other work between
/// them that is not its own (the ingest, with its ceiling interleaved).
#[derive(Default)]
struct CpuTally(Ticks);

impl CpuTally {
    fn add(&mut self, interval: &CpuMeter) {
        let ticks = interval.elapsed();
        self.0.busy += ticks.busy;
        self.0.total += ticks.total;
        self.0.own += ticks.own;
    }

    fn share(&self) -> CpuShare {
        self.0.share()
    }
}

/// (busy, busy + idle) ticks of every CPU: the `cpu` line of /proc/stat (user nice system
/// idle iowait irq softirq steal …; guest time is inside user already).
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .filter(|l| l.starts_with("cpu "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let at = |i: usize| ticks.get(i).copied().unwrap_or(0);
    let idle = at(3) + at(4);
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    (busy, busy + idle)
}

/// User + system ticks of this process, every thread: fields 14 and 15 of
/// /proc/self/stat, counted after the command name's closing parenthesis.
fn own_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let at = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    at(11) + at(12)
}

/// Waits until this process is idle (at most [`SETTLE_TICKS`] of CPU in a
/// [`SETTLE_WINDOW`]), for at most [`SETTLE_MAX`]; how long it waited. What a phase left
/// running (a rebuild's model freed on a thread of its own) is then not counted in the
/// next.
async fn settle() -> Duration {
    let started = Instant::now();
    loop {
        let before = own_ticks();
        tokio::time::sleep(SETTLE_WINDOW).await;
        if own_ticks().saturating_sub(before) <= SETTLE_TICKS || started.elapsed() > SETTLE_MAX {
            return started.elapsed();
        }
    }
}

/// [`settle`]'s window, the CPU ticks (1/100 s, every thread) it allows in one, and its
/// longest wait.
const SETTLE_WINDOW: Duration = Duration::from_millis(250);
const SETTLE_TICKS: u64 = 2;
const SETTLE_MAX: Duration = Duration::from_secs(30);

/// Resets VmHWM to the current RSS (Linux ≥ 4.0), so each phase's peak is its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// `part` as a percentage of `whole`: a ceiling's time of renmian's is renmian's share of the
/// ceiling's rate.
fn percent(part: Duration, whole: Duration) -> f64 {
    100.0 * part.as_secs_f64() / whole.as_secs_f64()
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut v = samples.to_vec();
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU", str::trim)
        .to_string();
    format!("{cpus} CPUs ({model}), {mem_gib:.1} GiB RAM")
}

fn print_report(o: &Options, reports: &[Report]) {
    let rate = |events: usize, d: Duration| events as f64 / d.as_secs_f64().max(1e-9);
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
    let mib = |kib: u64| format!("{:.0} MiB", kib as f64 / 1024.0);
    let mut command = String::from("cargo bench --bench registry --");
    for a in std::env::args().skip(1).filter(|a| a != "--bench") {
        command.push(' ');
        command.push_str(&a);
    }
    println!();
    println!("### renmian registry benchmark");
    println!();
    println!("- command: `{command}`");
    println!(
        "- date: {}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    println!("- machine: {}", machine());
    println!(
        "- workload: seed {}, {} notices, {} lookups per query",
        o.seed, o.notices, o.lookups
    );
    println!();
    let mut header = String::from("| metric |");
    let mut rule = String::from("|---|");
    for r in reports {
        header.push_str(&format!(" {} |", r.backend));
        rule.push_str("---:|");
    }
    println!("{header}");
    println!("{rule}");
    let row = |name: &str, f: &dyn Fn(&Report) -> String| {
        let mut line = format!("| {name} |");
        for r in reports {
            line.push_str(&format!(" {} |", f(r)));
        }
        println!("{line}");
    };
    row("events (notices)", &|r| {
        format!("{} ({})", r.events, r.notices)
    });
    row("ingest, events/s", &|r| {
        format!("{:.0}", rate(r.events, r.ingest))
    });
    row("ceiling: raw INSERT, events/s", &|r| {
        format!("{:.0}", rate(r.events, r.raw_insert))
    });
    row("**ingest / ceiling**", &|r| {
        format!("**{:.1}%**", percent(r.raw_insert, r.ingest))
    });
    row(
        "floor: the same INSERT plus the read-model rows each notice wrote, events/s",
        &|r| format!("{:.0}", rate(r.events, r.ingest_floor)),
    );
    row("ingest / ceiling the floor allows: ceiling / floor", &|r| {
        format!("{:.1}%", percent(r.raw_insert, r.ingest_floor))
    });
    row("ingest / its floor", &|r| {
        format!("{:.1}%", percent(r.ingest_floor, r.ingest))
    });
    row("concurrent ingest (`--streams` tasks), events/s", &|r| {
        format!(
            "{:.0} ({} streams)",
            rate(r.events, r.concurrent_ingest),
            r.streams
        )
    });
    row("**concurrent ingest / ceiling**", &|r| {
        format!("**{:.1}%**", percent(r.raw_insert, r.concurrent_ingest))
    });
    row("bulk ingest (`ingest_all`), events/s", &|r| {
        format!("{:.0}", rate(r.events, r.bulk_ingest))
    });
    row(
        "ceiling: raw INSERT, a transaction per batch, events/s",
        &|r| format!("{:.0}", rate(r.events, r.raw_insert_bulk)),
    );
    row("**bulk ingest / its ceiling**", &|r| {
        format!("**{:.1}%**", percent(r.raw_insert_bulk, r.bulk_ingest))
    });
    row(
        "bulk ingest / the ceiling its floors allow: INSERT / (INSERT + the read models' floor)",
        &|r| {
            format!(
                "{:.1}%",
                percent(r.raw_insert_bulk, r.raw_insert_bulk + r.floor)
            )
        },
    );
    row("rebuild, events/s (median)", &|r| {
        format!("{:.0}", rate(r.events, r.rebuild()))
    });
    row("ceiling: ordered scan + decode, events/s (median)", &|r| {
        format!("{:.0}", rate(r.events, r.raw_scan()))
    });
    row(
        "renmian's replay read (`Database::read_log` + decode, for the Python peer), events/s",
        &|r| format!("{:.0}", rate(r.events, r.replay_read)),
    );
    row("**rebuild / ceiling** (medians)", &|r| {
        format!("**{:.1}%**", percent(r.raw_scan(), r.rebuild()))
    });
    row("rebuild / the scan right before it, each run", &|r| {
        let each: Vec<String> = r
            .rebuild_pairs
            .iter()
            .map(|&(scan, rebuild)| format!("{:.1}%", percent(scan, rebuild)))
            .collect();
        each.join(", ")
    });
    row(
        "floor: the database copying the read models (INSERT … SELECT, indexes, commit), s",
        &|r| format!("{:.1}", r.floor.as_secs_f64()),
    );
    row(
        "rebuild / ceiling the floor allows: scan / max(scan, floor)",
        &|r| format!("{:.1}%", percent(r.raw_scan(), r.raw_scan().max(r.floor))),
    );
    row("ingest wall time, s", &|r| {
        format!("{:.1}", r.ingest.as_secs_f64())
    });
    row("  of which parse (pure), s", &|r| {
        format!("{:.1}", r.parse.as_secs_f64())
    });
    row(
        "event store alone (append, no projection), events/s",
        &|r| format!("{:.0}", rate(r.events, r.store_append)),
    );
    row("holders p50 / p99, ms", &|r| {
        format!(
            "{} / {}",
            ms(percentile(&r.holders, 0.5)),
            ms(percentile(&r.holders, 0.99))
        )
    });
    row("holdings p50 / p99, ms", &|r| {
        format!(
            "{} / {}",
            ms(percentile(&r.holdings, 0.5)),
            ms(percentile(&r.holdings, 0.99))
        )
    });
    row("holdings answered as ambiguous (shared names)", &|r| {
        format!("{} of {}", r.ambiguous, r.holdings.len())
    });
    row("RSS before bulk ingest (the first phase)", &|r| {
        mib(r.rss_before_bulk_kib)
    });
    row("peak RSS during bulk ingest", &|r| mib(r.rss_bulk_kib));
    row("RSS before ingest (what bulk ingest left)", &|r| {
        mib(r.rss_base_kib)
    });
    row("peak RSS during ingest", &|r| mib(r.rss_ingest_kib));
    row("peak RSS during rebuild", &|r| mib(r.rss_rebuild_kib));
    row("RssAnon after ingest", &|r| mib(r.anon_ingest_kib));
    row("RssAnon after rebuild", &|r| mib(r.anon_rebuild_kib));
    let cpu = |share: CpuShare| {
        format!(
            "{:.0}% ({:.0}% this process)",
            100.0 * share.machine,
            100.0 * share.own
        )
    };
    row("CPU busy during bulk ingest, of the machine", &|r| {
        cpu(r.cpu_bulk)
    });
    row("CPU busy during ingest, of the machine", &|r| {
        cpu(r.cpu_ingest)
    });
    row("CPU busy during rebuild, of the machine", &|r| {
        cpu(r.cpu_rebuild)
    });
    println!();
}
