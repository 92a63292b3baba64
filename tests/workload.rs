//! The workload generator against the real parser and registry: every generated notice
//! parses cleanly into exactly the events the generator meant, and the registry's view of
//! the generated history is consistent (no warnings, one holder per one-seat post, the
//! generator's final staffing equals the registry's answers, rebuild reproduces the export).
//! Runs on SQLite, and on PostgreSQL when `RENMIAN_TEST_DATABASE_URL` is set.

mod common;

use std::collections::BTreeSet;

use common::TestDb;
use renmian::projections::export::{export, to_json};
use renmian::projections::QueryError;
use renmian::registry::{Actor, Registry};
use renmian::workload::{generate, is_single_seat, WorkloadConfig};
use sqlx::Row;

/// Four jurisdictions over two years: ~50 notices each, enough history for probations to be
/// confirmed and posts to change hands several times.
fn config(notices: usize) -> WorkloadConfig {
    WorkloadConfig {
        jurisdictions: 4,
        years: 2,
        ..WorkloadConfig::new(20240424, notices)
    }
}

#[test]
fn every_generated_notice_parses_into_the_expected_events() {
    for seed in [1, 2, 3] {
        let config = WorkloadConfig::new(seed, 1500);
        for n in generate(&config) {
            let out = renmian::notice::parse(&n.text);
            assert!(
                out.diagnostics.is_empty(),
                "{}: {:?}\n{}",
                n.file_name,
                out.diagnostics,
                n.text
            );
            assert_eq!(out.notices.len(), 1, "{}\n{}", n.file_name, n.text);
            let parsed = &out.notices[0];
            assert_eq!(
                parsed.events.len() + 1,
                n.expected_events,
                "{}\n{}",
                n.file_name,
                n.text
            );
            assert_eq!(
                parsed.document_number.as_deref(),
                Some(n.document_number.as_str())
            );
            assert_eq!(parsed.issued_on, Some(n.issued_on));
            let jurisdiction = parsed
                .issuer
                .as_deref()
                .and_then(renmian::notice::jurisdiction_of);
            assert_eq!(jurisdiction.as_deref(), Some(n.jurisdiction));
        }
    }
}

async fn registry_agrees_with_the_generator(db: TestDb) {
    let registry = Registry::open(&db.url).await.expect("open registry");
    let actor = Actor::named("workload-test");
    let mut generator = generate(&config(200));
    let mut expected = 0;
    let (mut flagged, mut unflagged) = (0, 0);
    let mut last_date = None;
    for n in generator.by_ref() {
        let outcomes = registry.ingest(&n.text, &actor).await.expect("ingest");
        assert_eq!(outcomes.len(), 1);
        assert_eq!(
            outcomes[0].events_appended, n.expected_events,
            "{}",
            n.file_name
        );
        // The only warnings the generator intends: a person introduced under a name that
        // another jurisdiction already uses may be flagged as a possible same person (同名),
        // once per such name. Any other warning is an inconsistency in the generated history.
        let warnings = &outcomes[0].warnings;
        assert!(
            warnings.len() <= n.shared_names.len()
                && warnings.iter().all(|w| n
                    .shared_names
                    .iter()
                    .any(|name| w.message.contains(name.as_str()))),
            "{}: {:?} (shared names {:?})\n{}",
            n.file_name,
            warnings,
            n.shared_names,
            n.text
        );
        if warnings.len() == n.shared_names.len() {
            flagged += warnings.len();
        } else {
            unflagged += n.shared_names.len() - warnings.len();
        }
        expected += n.expected_events;
        last_date = Some(n.issued_on);
    }
    let last_date = last_date.expect("some notices");
    let pool = registry.database().pool();
    let head = registry.database().head_position().await.unwrap();
    assert_eq!(head, expected as i64);
    let warnings: i64 = sqlx::query("SELECT COUNT(*) AS n FROM rm_notice_warnings")
        .fetch_one(pool)
        .await
        .unwrap()
        .get("n");
    assert_eq!(warnings as usize, flagged);
    // Either every same-name introduction is flagged or none is (a registry keyed by name
    // alone has nothing to flag); never some.
    assert!(
        flagged == 0 || unflagged == 0,
        "{flagged} flagged, {unflagged} not"
    );
    assert!(
        flagged + unflagged > 0,
        "the workload has no same-name collision"
    );
    eprintln!(
        "{}: {head} events, {flagged} same-name warnings",
        db.backend
    );

    // No two tenures of a one-seat post overlap (holds on D: start <= D < end), over the
    // whole history of every one-seat post held at the end.
    let snapshot = generator.snapshot();
    assert!(snapshot.len() > 50);
    let mut checked = 0;
    for post in snapshot.iter().filter(|p| is_single_seat(p.post)) {
        let history = registry
            .queries()
            .post_history(&post.organization, Some(post.post))
            .await
            .expect("post history");
        let mut spans: Vec<(String, String)> = history
            .iter()
            .map(|t| {
                let start = t
                    .start_date
                    .clone()
                    .expect("every tenure has a known start");
                (
                    start,
                    t.end_date.clone().unwrap_or_else(|| "9999-12-31".into()),
                )
            })
            .collect();
        spans.sort();
        for w in spans.windows(2) {
            assert!(
                w[0].1 <= w[1].0,
                "{} {}: {:?} overlaps {:?}",
                post.organization,
                post.post,
                w[0],
                w[1]
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "too few successions to check ({checked})");

    // The generator's final staffing is what the registry answers.
    for post in &snapshot {
        let holders = registry
            .queries()
            .holders(&post.organization, post.post, last_date)
            .await
            .unwrap_or_else(|e| panic!("{} {}: {e}", post.organization, post.post));
        let mut names: Vec<String> = holders.into_iter().map(|t| t.person).collect();
        names.sort();
        assert_eq!(names, post.holders, "{} {}", post.organization, post.post);
        if is_single_seat(post.post) {
            assert_eq!(names.len(), 1);
        }
    }
    // A person's holdings are the posts the generator gave them. Names shared across
    // jurisdictions (deliberate collisions) may be answered together or refused as
    // ambiguous, depending on how the registry identifies people.
    let shared: BTreeSet<String> = generator.shared_names().into_iter().collect();
    let people: BTreeSet<&String> = snapshot.iter().flat_map(|p| &p.holders).collect();
    let mut unique_checked = 0;
    for person in people.iter().take(60) {
        let expected = snapshot
            .iter()
            .filter(|p| p.holders.contains(person))
            .count();
        match registry.queries().holdings(person, last_date).await {
            Ok(holdings) => {
                assert_eq!(holdings.len(), expected, "{person}");
                unique_checked += usize::from(!shared.contains(*person));
            }
            Err(QueryError::Ambiguous { .. }) if shared.contains(*person) => {}
            Err(e) => panic!("{person}: {e}"),
        }
    }
    assert!(unique_checked > 20);

    // Probations were confirmed, some terminated by a removal.
    let confirmed: i64 = sqlx::query(
        "SELECT COUNT(DISTINCT tenure_id) AS n FROM rm_tenures WHERE probation_outcome = 'confirmed'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
    .get("n");
    assert!(confirmed > 5, "only {confirmed} confirmations");

    // Post histories, now and as the registry knew them part-way.
    common::assert_post_histories_read_every_version(&registry, &[head / 4, head / 2]).await;

    let before = to_json(&export(registry.database()).await.unwrap());
    registry.projector().rebuild().await.expect("rebuild");
    let after = to_json(&export(registry.database()).await.unwrap());
    assert!(before == after, "rebuild changed the read models");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_agrees_with_the_generator_sqlite() {
    registry_agrees_with_the_generator(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_agrees_with_the_generator_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    registry_agrees_with_the_generator(db).await;
}

/// The projector decides on a model that a fresh process starts empty and fills from the
/// read models as it needs keys (a *partial* model), while a registry ingesting from empty
/// tables, and every rebuild, use a *complete* one that never reads. Reopening the registry
/// every few notices projects the same workload through partial models only — cold ones,
/// whose reads come from `Model::prefetch` and single-key loads, and warm ones kept between
/// ingests; the read models must come out exactly as a rebuild (complete model) makes them.
async fn partial_models_project_what_a_rebuild_projects(db: TestDb) {
    let actor = Actor::named("workload-test");
    let mut registry = Registry::open(&db.url).await.expect("open registry");
    for (i, n) in generate(&config(120)).enumerate() {
        if i % 7 == 6 || i % 5 == 0 {
            registry.database().close().await;
            registry = Registry::open(&db.url).await.expect("reopen registry");
        }
        registry.ingest(&n.text, &actor).await.expect("ingest");
    }
    let incremental = to_json(&export(registry.database()).await.unwrap());
    registry.projector().rebuild().await.expect("rebuild");
    let rebuilt = to_json(&export(registry.database()).await.unwrap());
    assert!(
        incremental == rebuilt,
        "partial models and a rebuild disagree"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_models_project_what_a_rebuild_projects_sqlite() {
    partial_models_project_what_a_rebuild_projects(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_models_project_what_a_rebuild_projects_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    partial_models_project_what_a_rebuild_projects(db).await;
}

/// A rebuild applies events in memory while the rows of earlier ones are written behind it
/// on the same transaction, and waits for that write before an event that needs SQL
/// (revocations, corrections, merges, splits). With batches and flushes a few events wide,
/// every kind of event falls on both sides of a write in flight and of a batch boundary;
/// the read models must come out exactly as the incremental projection left them.
async fn a_rebuild_writing_behind_projects_what_ingest_projected(db: TestDb) {
    let actor = Actor::named("workload-test");
    let registry = Registry::open(&db.url).await.expect("open registry");
    let notices: Vec<_> = generate(&config(90)).collect();
    let (first, rest) = notices.split_at(60);
    for n in first {
        registry.ingest(&n.text, &actor).await.expect("ingest");
    }
    // Operator actions in the middle of the log, then more notices after them.
    let pool = registry.database().pool();
    let rows = sqlx::query(
        "SELECT person_id, MIN(tenure_id) AS tenure_id FROM rm_tenures WHERE version_to IS NULL \
         AND withdrawn_position IS NULL GROUP BY person_id ORDER BY person_id LIMIT 3",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let (a, b, c): (i64, i64, i64) = (
        rows[0].get("person_id"),
        rows[1].get("person_id"),
        rows[2].get("person_id"),
    );
    assert!(a != b && b != c && a != c, "three people: {a} {b} {c}");
    registry
        .merge_persons(a, b, "同一人", &actor)
        .await
        .expect("merge");
    registry
        .split_person(c, vec![rows[2].get("tenure_id")], "二人同名", &actor)
        .await
        .expect("split");
    registry
        .revoke(&first[7].document_number, "文件撤销", None, &actor)
        .await
        .expect("revoke");
    for n in rest {
        registry.ingest(&n.text, &actor).await.expect("ingest");
    }
    registry
        .revoke(&rest[3].document_number, "文件撤销", None, &actor)
        .await
        .expect("revoke");
    let incremental = to_json(&export(registry.database()).await.unwrap());

    for (batch, flush_rows) in [(2000, 50_000), (16, 40), (3, 1), (1, 7)] {
        registry
            .projector()
            .clone()
            .with_rebuild_sizes(batch, flush_rows)
            .rebuild()
            .await
            .unwrap_or_else(|e| panic!("rebuild in batches of {batch}, {flush_rows} rows: {e}"));
        let rebuilt = to_json(&export(registry.database()).await.unwrap());
        assert!(
            incremental == rebuilt,
            "a rebuild in batches of {batch} events, writing every {flush_rows} rows, disagrees"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_writing_behind_projects_what_ingest_projected_sqlite() {
    a_rebuild_writing_behind_projects_what_ingest_projected(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_writing_behind_projects_what_ingest_projected_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    a_rebuild_writing_behind_projects_what_ingest_projected(db).await;
}
