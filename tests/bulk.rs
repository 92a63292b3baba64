//! Bulk ingest (`Registry::ingest_all`, what `renmian ingest FILE…` runs) against ingesting
//! the same texts one after the other with `Registry::ingest`: the same outcomes, the same
//! events at the same positions, the same read models; a refused text stops it with every
//! text before it recorded and nothing of it; two bulk ingests of the same texts at once
//! record each notice once. On SQLite, and on PostgreSQL when `RENMIAN_TEST_DATABASE_URL`
//! is set.

mod common;

use common::{actor, generated_notice, notice_text, revocation_text, TestDb};
use renmian::projections::export::{export, to_json, ExportedTable};
use renmian::registry::{
    BulkProjection, IngestOutcome, Registry, RegistryError, BULK_BATCH_EVENTS,
};
use renmian::store::{NewEvent, StoredEvent};
use renmian::workload::{generate, WorkloadConfig};

/// A generated history with every case bulk ingest hands to `ingest` mixed in: a notice
/// ingested twice (later, and right after itself), a revocation of an earlier notice, a
/// revocation that arrives before the notice it revokes, a text of two notices, and a removal from a post nobody was recorded in (a warning).
fn texts() -> Vec<String> {
    let config = WorkloadConfig {
        jurisdictions: 3,
        years: 2,
        ..WorkloadConfig::new(20261128, 160)
    };
    let mut texts: Vec<String> = generate(&config).map(|n| n.text).collect();
    let two_notices = format!("{}\n\n{}", generated_notice(9006), generated_notice(9007));
    let specials = [
        (12, generated_notice(9001)),
        (20, texts[3].clone()),
        (21, generated_notice(9002)),
        (22, generated_notice(9002)),
        (30, revocation_text(9003, 9001, "2024年5月1日")),
        (41, revocation_text(9004, 9005, "2024年5月1日")),
        (60, generated_notice(9005)),
        (75, two_notices),
        (
            90,
            notice_text(9008, "2024年4月1日", &["免去路人甲同志市统计局局长职务"]),
        ),
    ];
    for (at, text) in specials {
        texts.insert(at, text);
    }
    texts
}

/// The same database, empty, on the same backend.
async fn another(db: &TestDb) -> TestDb {
    match db.backend {
        "sqlite" => TestDb::sqlite(),
        _ => TestDb::postgres()
            .await
            .expect("a second PostgreSQL database"),
    }
}

/// Every event without the columns a clock sets (`recorded_at`, and the hashes over it).
async fn events(registry: &Registry) -> Vec<String> {
    let all = registry
        .database()
        .events_after(0, 1_000_000)
        .await
        .unwrap();
    all.iter()
        .map(|e| {
            format!(
                "{} {} {} {} {} {} {} {} {} {:?} {:?} {:?}",
                e.position,
                e.aggregate_type,
                e.aggregate_id,
                e.sequence,
                e.event_type,
                e.event_version,
                e.payload,
                e.metadata,
                e.actor,
                e.document_number,
                e.source_line,
                e.clause
            )
        })
        .collect()
}

/// Every read model, with the columns a clock sets (`…_at`) blanked.
async fn read_models(registry: &Registry) -> String {
    let mut tables: Vec<ExportedTable> = export(registry.database()).await.unwrap();
    for table in &mut tables {
        let clocked: Vec<usize> = (0..table.columns.len())
            .filter(|&i| table.columns[i].ends_with("_at"))
            .collect();
        for row in &mut table.rows {
            for &i in &clocked {
                row[i] = serde_json::Value::Null;
            }
        }
        table
            .rows
            .sort_by_key(|row| serde_json::to_string(row).unwrap());
    }
    serde_json::to_string(&to_json(&tables)).unwrap()
}

async fn one_after_the_other(registry: &Registry, texts: &[String]) -> Vec<IngestOutcome> {
    let mut outcomes = Vec::new();
    for text in texts {
        outcomes.extend(registry.ingest(text, &actor()).await.expect("ingest"));
    }
    outcomes
}

async fn bulk_ingest_is_ingest_one_text_after_the_other(db: TestDb) {
    let texts = texts();
    assert_eq!(renmian::notice::parse(&texts[75]).notices.len(), 2);
    let sequential = Registry::open(&db.url).await.unwrap();
    let expected = one_after_the_other(&sequential, &texts).await;

    // Batches of one notice (each appended while the next is staged, and the repeat of a
    // notice right after itself staged while that notice is being appended), of a few,
    // and the default (everything in one).
    for batch_events in [1, 60] {
        let other = another(&db).await;
        let bulk = Registry::open(&other.url).await.unwrap();
        let outcomes = bulk
            .ingest_all_in_batches(&texts, &actor(), batch_events)
            .await
            .expect("bulk ingest");
        assert_eq!(outcomes, expected, "batches of {batch_events} events");
        assert_eq!(events(&bulk).await, events(&sequential).await);
        assert!(
            read_models(&bulk).await == read_models(&sequential).await,
            "read models differ (batches of {batch_events} events)"
        );
    }
    let other = another(&db).await;
    let bulk = Registry::open(&other.url).await.unwrap();
    let outcomes = bulk
        .ingest_all(&texts, &actor())
        .await
        .expect("bulk ingest");

    assert_eq!(outcomes, expected);
    // The mixed-in cases happened, so each path was taken.
    assert!(outcomes.iter().any(|o| o.already_recorded));
    assert!(outcomes.iter().any(|o| !o.revoked_notices.is_empty()));
    assert!(outcomes.iter().any(|o| !o.notes.is_empty()));
    assert!(outcomes.iter().any(|o| !o.warnings.is_empty()));
    assert!(outcomes.len() > texts.len());
    assert_eq!(events(&bulk).await, events(&sequential).await);
    let projected = read_models(&bulk).await;
    assert!(
        projected == read_models(&sequential).await,
        "read models differ"
    );
    bulk.projector().rebuild().await.unwrap();
    assert!(projected == read_models(&bulk).await, "a rebuild disagrees");

    // Ingesting everything again records nothing.
    let again = bulk.ingest_all(&texts, &actor()).await.unwrap();
    assert!(again.iter().all(|o| o.already_recorded));
    assert_eq!(events(&bulk).await, events(&sequential).await);
}

/// Projecting once at the end of the load (what a large load into an empty registry does)
/// ends where ingesting the texts one after the other ends: the same outcomes — warnings
/// included, read after the projection — events and read models. Without a text that goes
/// on its own, the whole load projects at its end; with the mixed-in cases, the first such
/// text brings the read models up to the log and the rest of the load projects in each
/// append.
async fn projecting_at_the_end_is_ingest_one_text_after_the_other(db: TestDb) {
    let mixed = texts();
    // Generated notices and a removal from a post nobody was recorded in (a warning); none
    // of them goes on its own.
    let mut plain: Vec<String> = mixed[..12].to_vec();
    plain.push(notice_text(
        9008,
        "2024年4月1日",
        &["免去路人甲同志市统计局局长职务"],
    ));
    for (texts, batch_events) in [
        (&plain, 1),
        (&plain, BULK_BATCH_EVENTS),
        (&mixed, 60),
        (&mixed, BULK_BATCH_EVENTS),
    ] {
        let case = format!("{} texts, batches of {batch_events} events", texts.len());
        let reference = another(&db).await;
        let sequential = Registry::open(&reference.url).await.unwrap();
        let expected = one_after_the_other(&sequential, texts).await;
        let other = another(&db).await;
        let bulk = Registry::open(&other.url).await.unwrap();
        let outcomes = bulk
            .ingest_all_projecting(texts, &actor(), batch_events, BulkProjection::AtTheEnd)
            .await
            .expect("bulk ingest");
        assert_eq!(outcomes, expected, "{case}");
        assert!(
            outcomes.iter().any(|o| !o.warnings.is_empty()),
            "{case}: no warning to check"
        );
        assert_eq!(events(&bulk).await, events(&sequential).await, "{case}");
        assert!(
            read_models(&bulk).await == read_models(&sequential).await,
            "read models differ ({case})"
        );
    }
}

async fn a_refused_text_stops_the_bulk_ingest_after_the_texts_before_it(db: TestDb) {
    // In batches of one notice, the text before the refused one is being appended when
    // it is refused.
    // Projecting at the end, what the load appended before it stopped is projected.
    let small = another(&db).await;
    let at_the_end = another(&db).await;
    let small_at_the_end = another(&db).await;
    for (url, batch_events, projection) in [
        (&db.url, BULK_BATCH_EVENTS, BulkProjection::InEachAppend),
        (&small.url, 1, BulkProjection::InEachAppend),
        (&at_the_end.url, BULK_BATCH_EVENTS, BulkProjection::AtTheEnd),
        (&small_at_the_end.url, 1, BulkProjection::AtTheEnd),
    ] {
        a_refused_text_stops_it_in_batches_of(url, batch_events, projection).await;
    }
}

async fn a_refused_text_stops_it_in_batches_of(
    url: &str,
    batch_events: usize,
    projection: BulkProjection,
) {
    let registry = Registry::open(url).await.unwrap();
    let conflicting = notice_text(9001, "2024年3月1日", &["王五同志任市商务局局长"]);
    let texts = vec![
        generated_notice(9001),
        generated_notice(9002),
        generated_notice(9003),
        conflicting,
        generated_notice(9004),
    ];
    let refused = registry
        .ingest_all_projecting(&texts, &actor(), batch_events, projection)
        .await
        .unwrap_err();
    assert_eq!(refused.index, 3);
    assert!(
        matches!(refused.error, RegistryError::Conflict(_)),
        "{:?}",
        refused.error
    );
    assert_eq!(refused.recorded.len(), 3);
    let recorded = registry.queries().notices(0, 100, false).await.unwrap();
    let numbers: Vec<_> = recorded
        .iter()
        .filter_map(|n| n.document_number.clone())
        .collect();
    assert_eq!(
        numbers,
        [
            "临政人〔2024〕9001号",
            "临政人〔2024〕9002号",
            "临政人〔2024〕9003号"
        ]
    );

    // Text without a notice: refused as `ingest` refuses it, nothing of it stored.
    let texts = vec![generated_notice(9005), "not a notice".to_string()];
    let refused = registry
        .ingest_all_projecting(&texts, &actor(), batch_events, projection)
        .await
        .unwrap_err();
    assert_eq!(refused.index, 1);
    assert!(matches!(
        refused.error,
        RegistryError::InvalidArgument { field: "text", .. }
    ));
    assert_eq!(refused.recorded.len(), 1);
    assert_eq!(
        registry
            .queries()
            .notices(0, 100, false)
            .await
            .unwrap()
            .len(),
        4
    );
}

/// 120 generated notices, and a registry of another database (kept alive by the `TestDb`)
/// that ingested them one after the other.
async fn generated_ingested_one_by_one(db: &TestDb) -> (Vec<String>, TestDb, Registry) {
    let texts: Vec<String> = (1..=120).map(generated_notice).collect();
    let reference = another(db).await;
    let sequential = Registry::open(&reference.url).await.unwrap();
    one_after_the_other(&sequential, &texts).await;
    (texts, reference, sequential)
}

/// Two loads of the same texts (in opposite orders) at once through two registries, each
/// projecting in each append or at the end: while one appends alone, the other projects
/// (its texts already recorded go on their own, through `ingest`), which the first sees and
/// so projects what it appended and goes on projecting in each append.
async fn concurrent_bulk_ingests_record_each_notice_once(db: TestDb) {
    let at_the_end = another(&db).await;
    for (url, projection) in [
        (&db.url, BulkProjection::InEachAppend),
        (&at_the_end.url, BulkProjection::AtTheEnd),
    ] {
        concurrent_loads(&db, url, projection).await;
    }
}

async fn concurrent_loads(db: &TestDb, url: &str, projection: BulkProjection) {
    let (texts, _reference, sequential) = generated_ingested_one_by_one(db).await;
    let expected_events = sequential.database().head_position().await.unwrap();

    let (a, b) = (
        Registry::open(url).await.unwrap(),
        Registry::open(url).await.unwrap(),
    );
    let reversed: Vec<String> = texts.iter().rev().cloned().collect();
    let who = actor();
    // Projecting at the end, in many batches, so that the two loads interleave.
    let batch_events = match projection {
        BulkProjection::InEachAppend => BULK_BATCH_EVENTS,
        BulkProjection::AtTheEnd => 60,
    };
    let (from_a, from_b) = tokio::join!(
        a.ingest_all_projecting(&texts, &who, batch_events, projection),
        b.ingest_all_projecting(&reversed, &who, batch_events, projection)
    );
    let (from_a, from_b) = (from_a.unwrap(), from_b.unwrap());
    assert_eq!(a.database().head_position().await.unwrap(), expected_events);
    for text in &texts {
        let (id, events) = common::expectation(text);
        let appended: Vec<&IngestOutcome> = from_a
            .iter()
            .chain(&from_b)
            .filter(|o| o.notice_id == id && !o.already_recorded)
            .collect();
        assert_eq!(appended.len(), 1, "{id} appended {appended:?}");
        assert_eq!(appended[0].events_appended as i64, events);
    }
    let projected = read_models(&a).await;
    b.projector().rebuild().await.unwrap();
    assert!(projected == read_models(&a).await, "a rebuild disagrees");
}

/// A bulk ingest dropped part-way (a client that went away): each batch appended before
/// or while it was dropped is in the log whole, the rest not at all, and running the load
/// again ends where one uninterrupted run of the texts ends.
async fn a_bulk_ingest_dropped_part_way_leaves_whole_notices(db: TestDb) {
    dropped_part_way(db, BulkProjection::InEachAppend).await;
}

/// The same when the load projects at its end: what it appended before it was dropped is
/// in the log, not yet in the read models, and the next ingest brings them up to it.
async fn a_bulk_ingest_projecting_at_the_end_dropped_part_way_leaves_whole_notices(db: TestDb) {
    dropped_part_way(db, BulkProjection::AtTheEnd).await;
}

async fn dropped_part_way(db: TestDb, projection: BulkProjection) {
    let (texts, _reference, sequential) = generated_ingested_one_by_one(&db).await;
    let total = sequential.database().head_position().await.unwrap();

    let registry = Registry::open(&db.url).await.unwrap();
    let who = actor();
    // Batches of a notice or two; dropped once the first of them is in the log.
    let load = registry.ingest_all_projecting(&texts, &who, 60, projection);
    let first_committed = async {
        while registry.database().head_position().await.unwrap() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    };
    tokio::select! {
        _ = load => panic!("the load finished before a batch of it was seen committed"),
        () = first_committed => {}
    }
    // The batch in flight when the load was dropped commits or rolls back on its own.
    let mut head = registry.database().head_position().await.unwrap();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let now = registry.database().head_position().await.unwrap();
        if now == head {
            break;
        }
        head = now;
    }
    assert!(
        head > 0 && head < total,
        "dropped part-way: {head} of {total}"
    );
    let mut per_notice = std::collections::HashMap::<String, i64>::new();
    for e in registry
        .database()
        .events_after(0, 1_000_000)
        .await
        .unwrap()
    {
        *per_notice.entry(e.aggregate_id).or_default() += 1;
    }
    for text in &texts {
        let (id, events) = common::expectation(text);
        let recorded = per_notice.get(&id).copied().unwrap_or(0);
        assert!(
            recorded == 0 || recorded == events,
            "{id}: {recorded} of its {events} events"
        );
    }

    registry
        .ingest_all(&texts, &who)
        .await
        .expect("the load again");
    assert_eq!(events(&registry).await, events(&sequential).await);
    assert!(
        read_models(&registry).await == read_models(&sequential).await,
        "read models differ"
    );
}

backend_suite!(
    bulk_ingest_is_ingest_one_text_after_the_other,
    projecting_at_the_end_is_ingest_one_text_after_the_other,
    a_refused_text_stops_the_bulk_ingest_after_the_texts_before_it,
    concurrent_bulk_ingests_record_each_notice_once,
    a_bulk_ingest_dropped_part_way_leaves_whole_notices,
    a_bulk_ingest_projecting_at_the_end_dropped_part_way_leaves_whole_notices,
    a_replay_alongside_the_appends_writes_what_a_rebuild_writes,
);

/// Stored events as new ones, to append elsewhere.
fn as_new(events: &[StoredEvent]) -> Vec<NewEvent> {
    events
        .iter()
        .map(|e| NewEvent {
            aggregate_type: e.aggregate_type.clone(),
            aggregate_id: e.aggregate_id.clone(),
            sequence: e.sequence,
            event_type: e.event_type.clone(),
            event_version: e.event_version.clone(),
            payload: e.payload.clone(),
            metadata: e.metadata.clone(),
            actor: e.actor.clone(),
            document_number: e.document_number.clone(),
            source_line: e.source_line,
            clause: e.clause.clone(),
        })
        .collect()
}

/// A bulk load into an empty registry replays its batches as it appends them
/// (`Projector::prebuild`) and writes that replay at its end: the read models come out as
/// ingesting one text after the other makes them. Fed anything but the log's first events in
/// order, an event it cannot apply in memory (a revocation) or more rows than its bound,
/// the replay gives up; a
/// replay of other events than the log's (another chain) is refused and changes nothing.
async fn a_replay_alongside_the_appends_writes_what_a_rebuild_writes(db: TestDb) {
    let texts: Vec<String> = texts()[..12].to_vec();
    let sequential = Registry::open(&db.url).await.unwrap();
    one_after_the_other(&sequential, &texts).await;
    let log = sequential
        .database()
        .events_after(0, 1_000_000)
        .await
        .unwrap();
    let half = log.len() / 2;
    // Whole notices in each batch, as a bulk load appends them.
    let cut = (half..log.len())
        .find(|&i| log[i].aggregate_id != log[i - 1].aggregate_id)
        .unwrap();

    let other = another(&db).await;
    let bulk = Registry::open(&other.url).await.unwrap();
    let database = bulk.database();
    let first = database
        .append_unobserved(&as_new(&log[..cut]))
        .await
        .unwrap();
    let second = database
        .append_unobserved(&as_new(&log[cut..]))
        .await
        .unwrap();
    let projector = bulk.projector();
    let gap = projector.prebuild();
    gap.appended(second.clone());
    assert!(gap.finish().await.is_none(), "a replay not from position 1");
    let skipped = projector.prebuild();
    skipped.appended(first.clone());
    skipped.appended(second[1..].to_vec());
    assert!(skipped.finish().await.is_none(), "a replay with a gap");

    // A revocation needs the rows written before it: a replay in memory gives up on it.
    let revoking = another(&db).await;
    let revoker = Registry::open(&revoking.url).await.unwrap();
    revoker
        .ingest(&generated_notice(1), &actor())
        .await
        .unwrap();
    revoker
        .ingest(&revocation_text(2, 1, "2024年5月1日"), &actor())
        .await
        .unwrap();
    let revoked = revoker.database().events_after(0, 1_000).await.unwrap();
    assert!(revoked.iter().any(|e| e.event_type == "NoticeRevoked"));
    let elsewhere = another(&db).await;
    let replayed = Registry::open(&elsewhere.url).await.unwrap();
    let stored = replayed
        .database()
        .append_unobserved(&as_new(&revoked))
        .await
        .unwrap();
    let revocation = replayed.projector().prebuild();
    revocation.appended(stored);
    assert!(
        revocation.finish().await.is_none(),
        "a replay of a revocation"
    );

    // Rows beyond the bound: the replay gives up rather than keep them all in memory.
    let bounded = renmian::projections::Projector::new(database.clone())
        .with_rebuild_sizes(100, 1)
        .with_prebuild_rows(1);
    let too_many = bounded.prebuild();
    too_many.appended(first.clone());
    too_many.appended(second.clone());
    assert!(too_many.finish().await.is_none(), "a replay over its bound");
    let roomy = renmian::projections::Projector::new(database.clone())
        .with_rebuild_sizes(100, 1)
        .with_prebuild_rows(usize::MAX);
    let enough = roomy.prebuild();
    enough.appended(first.clone());
    enough.appended(second.clone());
    assert!(enough.finish().await.is_some(), "a replay within its bound");

    // The other registry's events: the same positions, another chain (another clock).
    let foreign = projector.prebuild();
    foreign.appended(log[..cut].to_vec());
    let foreign = foreign.finish().await.expect("replayed");
    assert_eq!(projector.rebuild_prebuilt(foreign).await.unwrap(), None);
    assert_eq!(projector.checkpoint().await.unwrap(), 0, "nothing changed");

    let prebuild = projector.prebuild();
    prebuild.appended(first);
    prebuild.appended(second);
    let prebuilt = prebuild.finish().await.expect("replayed");
    let last = log.last().unwrap().position;
    assert_eq!(
        projector.rebuild_prebuilt(prebuilt).await.unwrap(),
        Some(last)
    );
    assert_eq!(projector.checkpoint().await.unwrap(), last);
    let prebuilt = read_models(&bulk).await;
    assert!(
        prebuilt == read_models(&sequential).await,
        "read models differ"
    );
    projector.rebuild().await.unwrap();
    assert!(prebuilt == read_models(&bulk).await, "a rebuild disagrees");
}

/// PostgreSQL: a bulk load refreshes the planner's statistics and vacuums the read models
/// as the tables grow, so the per-notice reads do not keep the plans of empty tables
/// (sequential scans), nor visit the index entries of closed tenure versions, until
/// autovacuum gets round to it — if it runs at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bulk_load_refreshes_statistics_and_vacuums_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let registry = Registry::open(&db.url).await.unwrap();
    let analyzed = || async {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(LEAST(analyze_count, vacuum_count)), 0) AS BIGINT) AS n \
             FROM pg_stat_user_tables WHERE relname IN ('rm_notices', 'rm_tenures', 'rm_persons')",
        )
        .fetch_one(registry.database().pool())
        .await
        .unwrap();
        sqlx::Row::get::<i64, _>(&row, "n")
    };
    // Small loads leave statistics alone.
    let small: Vec<String> = (9101..=9120).map(generated_notice).collect();
    registry.ingest_all(&small, &actor()).await.unwrap();
    assert_eq!(analyzed().await, 0);
    let config = WorkloadConfig {
        jurisdictions: 3,
        years: 2,
        ..WorkloadConfig::new(7, 600)
    };
    let texts: Vec<String> = generate(&config).map(|n| n.text).collect();
    registry.ingest_all(&texts, &actor()).await.unwrap();
    assert!(registry.database().head_position().await.unwrap() > 10_000);
    // The statistics collector reports asynchronously; give it a moment.
    let mut n = 0;
    for _ in 0..50 {
        n = analyzed().await;
        if n >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(n >= 3, "analyze_count {n}");
}
