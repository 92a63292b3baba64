//! The event-store and projection contract: the same suite runs on SQLite and, when
//! `RENMIAN_TEST_DATABASE_URL` is set, on PostgreSQL (each test on a database of its own).

#[macro_use]
mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use common::{
    actor, date, export_json, generated_notice, notice_text, revocation_text, seed_text, seeded,
    TestDb,
};
use renmian::domain::aggregate::events_for;
use renmian::domain::NoticeKey;
use renmian::projections::{Queries, QueryError};
use renmian::registry::{Actor, Registry, RegistryError};
use renmian::store::{
    AppendObserver, Backend, Database, NewEvent, ObservedTx, StoreError, StoredEvent,
};
use sqlx::Row;

backend_suite!(
    ingesting_the_seed_records_one_notice_and_thirty_facts,
    holders_on_a_date_follow_the_notice,
    organizations_resolve_as_written_canonically_and_by_alias,
    holders_answer_alike_by_every_name_and_refuse_what_they_cannot,
    holdings_include_concurrent_posts,
    probations_of_the_seed_run_for_a_year,
    history_traces_every_fact_to_its_notice_and_line,
    removal_of_an_unrecorded_holder_is_accepted_and_flagged,
    reappointment_of_a_holder_is_a_warning,
    ingest_is_idempotent,
    conflicting_content_is_refused_and_stores_nothing,
    a_text_without_notice_is_refused,
    events_cannot_be_updated_or_deleted,
    rebuild_reproduces_the_incremental_read_models,
    verify_detects_tampering_with_the_exact_position,
    projections_catch_up_after_a_crash_between_append_and_projection,
    an_append_projects_itself_in_its_transaction,
    an_append_hands_its_caller_what_the_read_models_hold,
    concurrent_overlapping_ingests_lose_and_duplicate_nothing,
    queries_refuse_bad_arguments,
    read_connections_cannot_write,
    reads_during_a_rebuild_answer_as_before,
    the_log_reads_alike_natively_and_through_any,
    a_commit_by_any_connection_changes_the_commit_stamp,
    appends_through_several_handles_continue_one_chain,
    an_append_cut_short_stores_nothing_and_the_next_one_continues,
    appends_that_wait_are_committed_together_each_with_its_own_answer,
    a_group_that_fails_answers_each_of_its_appends_alone,
    one_append_of_several_notices_leaves_a_receipt_for_each,
    text_that_the_writes_escape_is_stored_as_written,
    appends_after_a_rebuild_write_into_the_rebuilt_tables,
    an_answer_is_exactly_as_of_the_position_it_reports,
    lookups_of_many_notices_answer_as_lookups_of_each,
);

async fn ingesting_the_seed_records_one_notice_and_thirty_facts(db: TestDb) {
    let registry = Registry::open(&db.url).await.unwrap();
    let outcomes = registry.ingest(&seed_text(), &actor()).await.unwrap();
    assert_eq!(outcomes.len(), 1);
    let o = &outcomes[0];
    assert_eq!(o.document_number.as_deref(), Some("临政人〔2023〕4号"));
    assert!(!o.already_recorded);
    assert_eq!(o.events_appended, 31);
    assert_eq!((o.first_position, o.last_position), (Some(1), Some(31)));
    let events = registry.database().events_after(0, 100).await.unwrap();
    assert_eq!(events.len(), 31);
    assert_eq!(events[0].event_type, "NoticeRecorded");
    assert!(events
        .iter()
        .all(|e| e.event_version == "1" && e.actor == "test"));
    assert!(events
        .iter()
        .all(|e| e.document_number.as_deref() == Some("临政人〔2023〕4号")));
    let positions: Vec<i64> = events.iter().map(|e| e.position).collect();
    assert_eq!(positions, (1..=31).collect::<Vec<_>>());
    // Every fact carries its source line and clause.
    let ding = events
        .iter()
        .find(|e| e.clause.as_deref().is_some_and(|c| c.contains("丁华")))
        .expect("丁华's removal");
    assert_eq!(
        ding.clause.as_deref(),
        Some("免去丁华（女）同志市人力资源和社会保障局副局长、总会计师职务")
    );
    let line = seed_text()
        .lines()
        .position(|l| l.starts_with("免去丁华"))
        .unwrap() as i64
        + 1;
    assert_eq!(ding.source_line, Some(line));
    let view = registry
        .queries()
        .notice("临政人〔2023〕4号")
        .await
        .unwrap();
    assert_eq!(view.event_count, 30);
    assert_eq!(view.issuer.as_deref(), Some("临湘市人民政府"));
    assert_eq!(view.issued_on.as_deref(), Some("2023-04-24"));
    assert_eq!(view.events.len(), 31);
}

async fn holders_on_a_date_follow_the_notice(db: TestDb) {
    let registry = seeded(&db).await;
    let q = registry.queries();
    let after = q
        .holders("临湘市教育体育局", "副局长", date("2023-05-01"))
        .await
        .unwrap();
    assert_eq!(
        after.iter().map(|t| t.person.as_str()).collect::<Vec<_>>(),
        ["钟炎夫"]
    );
    assert_eq!(after[0].start_date.as_deref(), Some("2023-04-24"));
    assert_eq!(
        after[0].appointing_notice.as_deref(),
        Some("临政人〔2023〕4号")
    );
    let before = q
        .holders("临湘市教育体育局", "副局长", date("2023-04-01"))
        .await
        .unwrap();
    assert_eq!(
        before.iter().map(|t| t.person.as_str()).collect::<Vec<_>>(),
        ["李琪"]
    );
    assert_eq!(before[0].start_date, None, "start unknown");
    assert_eq!(before[0].end_date.as_deref(), Some("2023-04-24"));
    // On the day of the notice the new holder holds it.
    let on_the_day = q
        .holders("临湘市教育体育局", "副局长", date("2023-04-24"))
        .await
        .unwrap();
    assert_eq!(on_the_day[0].person, "钟炎夫");
}

async fn organizations_resolve_as_written_canonically_and_by_alias(db: TestDb) {
    let registry = seeded(&db).await;
    let q = registry.queries();
    for name in ["市教育体育局", "临湘市教育体育局", "市教体局"] {
        assert_eq!(
            q.resolve_organization(name).await.unwrap(),
            "临湘市教育体育局",
            "{name}"
        );
    }
    let air_defence = q
        .holders("市人民防空办公室", "主任", date("2023-05-01"))
        .await
        .unwrap();
    assert_eq!(air_defence.len(), 1);
    assert_eq!(air_defence[0].person, "刘辉");
    assert_eq!(air_defence[0].organization, "临湘市国防动员办公室");
    assert!(air_defence[0].concurrent);
    let err = q.resolve_organization("市不存在局").await.unwrap_err();
    assert!(
        matches!(err, renmian::projections::QueryError::NotFound(_)),
        "{err}"
    );
}

/// `holders` answers "now" in one statement when the organization is named as recorded and
/// falls back to resolving first otherwise; both paths, and the as-of path, must agree, and
/// what the fast path cannot decide (a relative name of two jurisdictions, nobody holding,
/// an unknown post) must come out as the general path says.
async fn holders_answer_alike_by_every_name_and_refuse_what_they_cannot(db: TestDb) {
    use renmian::projections::QueryError;
    let registry = seeded(&db).await;
    let q = registry.queries();
    let on = date("2023-05-01");
    let names = |ts: &[renmian::projections::Tenure]| {
        ts.iter().map(|t| t.person.clone()).collect::<Vec<_>>()
    };
    let canonical = q.holders("临湘市教育体育局", "副局长", on).await.unwrap();
    assert_eq!(names(&canonical), ["钟炎夫"]);
    for name in ["市教育体育局", "市教体局", " 临湘市 教育体育局 "] {
        let by_name = q.holders(name, "副局长", on).await.unwrap();
        assert_eq!(by_name, canonical, "{name}");
    }
    let head = registry.database().head_position().await.unwrap();
    let as_of = q.as_of_position(head).unwrap();
    assert_eq!(
        as_of
            .holders("临湘市教育体育局", "副局长", on)
            .await
            .unwrap(),
        canonical
    );
    // Recorded post, nobody holding it on that day: an empty answer, not an error.
    let before = q
        .holders("临湘市审计局", "副局长", date("2023-04-01"))
        .await
        .unwrap();
    assert!(before.is_empty());
    assert_eq!(
        q.holders("市审计局", "副局长", on).await.unwrap().len(),
        1,
        "the same post once filled"
    );
    let err = q
        .holders("临湘市教育体育局", "不存在的职务", on)
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::NotFound(_)), "{err}");
    // 市教育体育局 of a second jurisdiction: the relative name now means two bodies.
    let other = "汨罗市人民政府\n关于王某同志任职的通知\n汨政人〔2024〕2号\n\n各镇人民政府，市直各单位：\n\n\
                 经市人民政府研究决定：\n\n王某同志任市教育体育局局长。\n\n汨罗市人民政府\n2024年2月1日\n";
    registry.ingest(other, &actor()).await.unwrap();
    let err = q.holders("市教育体育局", "副局长", on).await.unwrap_err();
    assert!(matches!(err, QueryError::Ambiguous { .. }), "{err}");
    assert_eq!(
        q.holders("临湘市教育体育局", "副局长", on).await.unwrap(),
        canonical
    );
}

async fn holdings_include_concurrent_posts(db: TestDb) {
    let registry = seeded(&db).await;
    // 刘辉: appointed 主任（兼） of the air-defence office, removed as 董事长 elsewhere.
    let holdings = registry
        .queries()
        .holdings("刘辉", date("2023-05-01"))
        .await
        .unwrap();
    assert_eq!(holdings.len(), 1);
    assert!(holdings[0].concurrent);
    assert_eq!(holdings[0].post, "主任");
    let before = registry
        .queries()
        .holdings("刘辉", date("2023-01-01"))
        .await
        .unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].post, "董事长");
    assert_eq!(before[0].organization, "岳阳惠临投资发展有限公司");
}

async fn probations_of_the_seed_run_for_a_year(db: TestDb) {
    let registry = seeded(&db).await;
    let q = registry.queries();
    let running = q.probations(date("2023-05-01"), None).await.unwrap();
    let people: BTreeSet<&str> = running.iter().map(|p| p.tenure.person.as_str()).collect();
    assert_eq!(
        people,
        BTreeSet::from(["谢纬霖", "阎炜", "宋勇", "彭晓鹏", "刘涌", "来勇"])
    );
    assert!(running
        .iter()
        .all(|p| p.tenure.probation_end.as_deref() == Some("2024-04-24")));
    assert!(running
        .iter()
        .all(|p| p.status == renmian::projections::ProbationStatus::Running));
    let due = q.probations(date("2024-05-01"), None).await.unwrap();
    assert_eq!(due.len(), 6);
    assert!(due
        .iter()
        .all(|p| p.status == renmian::projections::ProbationStatus::Due));
    assert_eq!(
        q.probations(date("2023-05-01"), Some(30))
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        q.probations(date("2024-04-01"), Some(30))
            .await
            .unwrap()
            .len(),
        6
    );
    assert!(q
        .probations(date("2023-01-01"), None)
        .await
        .unwrap()
        .is_empty());
}

async fn history_traces_every_fact_to_its_notice_and_line(db: TestDb) {
    let registry = seeded(&db).await;
    let q = registry.queries();
    let history = q
        .post_history("市教育体育局", Some("副局长"))
        .await
        .unwrap();
    let names: Vec<&str> = history.iter().map(|t| t.person.as_str()).collect();
    // 李琪's tenure (start unknown, ended 2023-04-24) began before 钟炎夫's, which starts
    // that day.
    assert_eq!(names, ["李琪", "钟炎夫"]);
    for t in &history {
        assert!(t.recorded_at.is_some());
        assert!(t.appointing_line.is_some() || t.ending_line.is_some());
    }
    let li = history.iter().find(|t| t.person == "李琪").unwrap();
    assert_eq!(li.ending_notice.as_deref(), Some("临政人〔2023〕4号"));
    assert!(li.ending_clause.as_deref().unwrap().contains("李琪"));
    assert!(li.ended_recorded_at.is_some());
    let person = q.person_history("彭晓鹏").await.unwrap();
    assert_eq!(person.len(), 2);
    let whole_org = q
        .post_history("市振湘实业发展集团有限公司", None)
        .await
        .unwrap();
    assert_eq!(whole_org.len(), 3);
}

async fn removal_of_an_unrecorded_holder_is_accepted_and_flagged(db: TestDb) {
    let registry = seeded(&db).await;
    let view = registry
        .queries()
        .notice("临政人〔2023〕4号")
        .await
        .unwrap();
    // Every removal in the seed is of someone the empty registry never saw appointed.
    let flagged: Vec<&str> = view
        .warnings
        .iter()
        .filter(|w| w.message.contains("was not recorded as holding"))
        .map(|w| w.message.as_str())
        .collect();
    assert_eq!(flagged.len(), 14, "{flagged:#?}");
    assert!(view.warnings.iter().all(|w| w.line.is_some()));
}

async fn reappointment_of_a_holder_is_a_warning(db: TestDb) {
    let registry = seeded(&db).await;
    let text = notice_text(1, "2024年3月1日", &["钟炎夫同志任市教育体育局副局长"]);
    let outcome = registry.ingest(&text, &actor()).await.unwrap();
    assert_eq!(outcome[0].events_appended, 2);
    assert_eq!(outcome[0].warnings.len(), 1, "{:?}", outcome[0].warnings);
    assert!(outcome[0].warnings[0].message.contains("already holds"));
    let holders = registry
        .queries()
        .holders("市教育体育局", "副局长", date("2024-03-02"))
        .await
        .unwrap();
    assert_eq!(holders.len(), 1, "no duplicate tenure");
}

async fn ingest_is_idempotent(db: TestDb) {
    let registry = seeded(&db).await;
    let head = registry.database().head_position().await.unwrap();
    let again = registry.ingest(&seed_text(), &actor()).await.unwrap();
    assert!(again[0].already_recorded);
    assert_eq!(again[0].events_appended, 0);
    assert_eq!(registry.database().head_position().await.unwrap(), head);
    // The same notice with other line breaks is the same notice.
    let reflowed = seed_text().replace("通知  \n", "通知\n\n");
    let again = registry.ingest(&reflowed, &actor()).await.unwrap();
    assert!(again[0].already_recorded);
    assert_eq!(registry.database().head_position().await.unwrap(), head);
}

async fn conflicting_content_is_refused_and_stores_nothing(db: TestDb) {
    let registry = seeded(&db).await;
    let before = export_json(&registry).await;
    let head = registry.database().head_position().await.unwrap();
    let changed = seed_text().replace("钟炎夫同志任", "钟炎天同志任");
    let err = registry.ingest(&changed, &actor()).await.unwrap_err();
    assert!(matches!(err, RegistryError::Conflict(_)), "{err}");
    assert!(err.to_string().contains("临政人〔2023〕4号"), "{err}");
    // A text holding a new notice and the conflicting one stores neither.
    let both = format!(
        "{}\n\n{}",
        notice_text(7, "2024年3月1日", &["王五同志任市财政局副局长"]),
        changed
    );
    assert!(registry.ingest(&both, &actor()).await.is_err());
    assert_eq!(registry.database().head_position().await.unwrap(), head);
    assert_eq!(export_json(&registry).await, before);
}

async fn a_text_without_notice_is_refused(db: TestDb) {
    let registry = Registry::open(&db.url).await.unwrap();
    for text in [
        "",
        "关于印发工作方案的通知\n各单位：请认真组织实施。",
        "\u{0}\u{1}garbage",
    ] {
        let err = registry.ingest(text, &actor()).await.unwrap_err();
        assert!(
            matches!(err, RegistryError::InvalidArgument { field: "text", .. }),
            "{err}"
        );
    }
    assert_eq!(registry.database().head_position().await.unwrap(), 0);
}

async fn events_cannot_be_updated_or_deleted(db: TestDb) {
    let registry = seeded(&db).await;
    let pool = registry.database().pool();
    let update = sqlx::query("UPDATE events SET actor = 'mallory' WHERE position = 1")
        .execute(pool)
        .await;
    assert!(update.unwrap_err().to_string().contains("immutable"));
    let delete = sqlx::query("DELETE FROM events WHERE position = 2")
        .execute(pool)
        .await;
    assert!(delete.unwrap_err().to_string().contains("immutable"));
    if db.backend == "postgres" {
        let truncate = sqlx::query("TRUNCATE events").execute(pool).await;
        assert!(truncate.unwrap_err().to_string().contains("immutable"));
    }
    let row = sqlx::query("SELECT COUNT(*) AS n FROM events")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(row.try_get::<i64, _>("n").unwrap(), 31);
    assert!(registry.database().verify().await.unwrap().is_intact());
}

async fn rebuild_reproduces_the_incremental_read_models(db: TestDb) {
    let registry = seeded(&db).await;
    registry
        .ingest(
            &notice_text(
                2,
                "2024年3月1日",
                &[
                    "谢纬霖同志试用期满，正式任市黄盖湖自然保护区管理中心主任",
                    "免去阎炜同志市库区移民服务中心副主任职务",
                    "钟炎夫同志任市财政局副局长（兼）",
                ],
            ),
            &actor(),
        )
        .await
        .unwrap();
    let incremental = export_json(&registry).await;
    let indexes = index_definitions(&registry).await;
    assert!(indexes.len() > 5, "{indexes:?}");
    let checkpoint = registry.projector().rebuild().await.unwrap();
    assert_eq!(
        checkpoint,
        registry.database().head_position().await.unwrap()
    );
    assert_eq!(export_json(&registry).await, incremental);
    // The indexes a SQLite rebuild drops while it writes are all back, as they were.
    assert_eq!(index_definitions(&registry).await, indexes);
    // Twice, to be sure nothing accumulates.
    registry.projector().rebuild().await.unwrap();
    assert_eq!(export_json(&registry).await, incremental);
    assert_eq!(index_definitions(&registry).await, indexes);
}

/// Every index of the database, by name, with its definition.
async fn index_definitions(registry: &Registry) -> Vec<(String, String)> {
    let sql = match registry.database().backend() {
        Backend::Sqlite => {
            "SELECT name, COALESCE(sql, '') AS def FROM sqlite_master WHERE type = 'index' \
             ORDER BY name"
        }
        Backend::Postgres => {
            "SELECT indexname::text AS name, indexdef AS def FROM pg_indexes \
             WHERE schemaname = current_schema() ORDER BY indexname"
        }
    };
    sqlx::query(sql)
        .fetch_all(registry.database().pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("name"), r.get("def")))
        .collect()
}

async fn verify_detects_tampering_with_the_exact_position(db: TestDb) {
    let registry = seeded(&db).await;
    let report = registry.database().verify().await.unwrap();
    assert!(report.is_intact());
    assert_eq!(report.events, 31);
    let pool = registry.database().pool();
    // Behind renmian's back: lift the guard, edit one row, restore the guard.
    match db.backend {
        "sqlite" => {
            sqlx::query("DROP TRIGGER events_no_update")
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("UPDATE events SET payload = replace(payload, '钟炎夫', '钟炎天') WHERE position = 6")
                .execute(pool)
                .await
                .unwrap();
        }
        _ => {
            sqlx::query("ALTER TABLE events DISABLE TRIGGER events_no_update")
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("UPDATE events SET payload = replace(payload, '钟炎夫', '钟炎天') WHERE position = 6")
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("ALTER TABLE events ENABLE TRIGGER events_no_update")
                .execute(pool)
                .await
                .unwrap();
        }
    }
    let report = registry.database().verify().await.unwrap();
    assert_eq!(report.first_bad_position, Some(6), "{report:?}");
}

/// The events of a one-clause notice as the store would append them, bypassing the registry.
fn raw_events(registry: &Registry, n: u32, clause: &str) -> Vec<NewEvent> {
    let text = notice_text(n, "2024年3月1日", &[clause]);
    let notice = registry.parse(&text).notices.remove(0);
    let aggregate_id = NoticeKey::for_notice(&notice).aggregate_id().to_string();
    events_for(&notice, &[])
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            use cqrs_es::DomainEvent;
            let payload = serde_json::to_value(&e).unwrap();
            let (line, clause) = e.source();
            NewEvent {
                aggregate_type: "notice".into(),
                aggregate_id: aggregate_id.clone(),
                sequence: i as i64 + 1,
                event_type: e.event_type(),
                event_version: e.event_version(),
                payload: payload.to_string(),
                metadata: "{}".into(),
                actor: "crash-test".into(),
                document_number: notice.document_number.clone(),
                source_line: line.map(|l| l as i64),
                clause: clause.map(str::to_string),
            }
        })
        .collect()
}

/// An observer that always fails after writing, standing for a projector bug: its first
/// write opens the savepoint in its own round trip (`ObservedTx::query_text`) or apart
/// (`ObservedTx::transaction`).
struct FailingObserver {
    first_write_as_text: bool,
}

impl AppendObserver for FailingObserver {
    fn appended<'a, 't, 'c>(
        &'a self,
        tx: &'a mut ObservedTx<'t, 'c>,
        _events: &'a [renmian::store::StoredEvent],
    ) -> futures::future::BoxFuture<'a, Result<(), StoreError>>
    where
        't: 'a,
        'c: 'a,
    {
        Box::pin(async move {
            // Its writes must be rolled back with its savepoint.
            if self.first_write_as_text {
                let returned = tx
                    .query_text(
                        "UPDATE projection_checkpoint SET position = 999 RETURNING position",
                    )
                    .await?;
                assert_eq!(returned, 1);
            }
            sqlx::query("UPDATE projection_checkpoint SET position = 998")
                .execute(&mut **tx.transaction().await?)
                .await?;
            Err(StoreError::Corrupt("observer failed".into()))
        })
    }
}

/// An append whose future is dropped inside its transaction (its rows inserted, the log's
/// head taken) stores nothing, and the next append of the same process — on the appending
/// connection that process opens again — continues the chain right after the last commit.
async fn an_append_cut_short_stores_nothing_and_the_next_one_continues(db: TestDb) {
    let registry = seeded(&db).await;
    let bare = Database::connect(&db.url).await.unwrap();
    let gate = GateObserver::closed();
    let observer: Arc<dyn AppendObserver> = gate.clone();
    bare.observe_appends(Arc::downgrade(&observer));
    let cut = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        bare.append(&raw_events(&registry, 3, "王五同志任市财政局副局长")),
    )
    .await;
    assert!(cut.is_err(), "the append was still in its transaction");
    gate.open();
    let rows = raw_events(&registry, 4, "赵六同志任市财政局副局长");
    let stored = bare.append(&rows).await.unwrap();
    assert_eq!(
        stored[0].position, 32,
        "nothing of the cut append was stored"
    );
    assert_eq!(bare.head_position().await.unwrap(), 31 + rows.len() as i64);
    assert!(bare.verify().await.unwrap().is_intact());
    bare.close().await;
    // And the registry's own appends go on after it.
    registry
        .database()
        .append(&raw_events(&registry, 5, "钱七同志任市财政局副局长"))
        .await
        .unwrap();
    assert!(registry.database().verify().await.unwrap().is_intact());
}

async fn an_append_projects_itself_in_its_transaction(db: TestDb) {
    let registry = seeded(&db).await;
    // Through the registry's database: the events and their projection commit together.
    let rows = raw_events(&registry, 3, "王五同志任市财政局副局长");
    registry.database().append(&rows).await.unwrap();
    assert_eq!(registry.projector().checkpoint().await.unwrap(), 33);
    let holders = registry
        .queries()
        .holders("市财政局", "副局长", date("2024-03-02"))
        .await
        .unwrap();
    assert_eq!(holders.len(), 1);
    // A failing observer does not fail the append, and nothing it wrote stays, however it
    // opened its savepoint.
    for (first_write_as_text, sequence, text) in [
        (true, 4, "赵六同志任市财政局副局长"),
        (false, 6, "孙八同志任市财政局副局长"),
    ] {
        let bare = Database::connect(&db.url).await.unwrap();
        let failing: Arc<dyn AppendObserver> = Arc::new(FailingObserver {
            first_write_as_text,
        });
        bare.observe_appends(Arc::downgrade(&failing));
        bare.append(&raw_events(&registry, sequence, text))
            .await
            .unwrap();
        bare.close().await;
        assert_eq!(registry.projector().checkpoint().await.unwrap(), 33);
    }
    // While the read models lag, an append leaves its events to catch-up, in order.
    registry
        .database()
        .append(&raw_events(&registry, 5, "钱七同志任市财政局副局长"))
        .await
        .unwrap();
    assert_eq!(registry.projector().checkpoint().await.unwrap(), 33);
    assert_eq!(registry.projector().catch_up().await.unwrap(), 39);
    let holders = registry
        .queries()
        .holders("市财政局", "副局长", date("2024-03-02"))
        .await
        .unwrap();
    assert_eq!(holders.len(), 4, "{holders:?}");
    let incremental = export_json(&registry).await;
    registry.projector().rebuild().await.unwrap();
    assert_eq!(export_json(&registry).await, incremental);
}

/// The receipt an append's projection leaves for its caller is what the read models then
/// hold for the notice, and the ingest reports from it what a read would have said.
async fn an_append_hands_its_caller_what_the_read_models_hold(db: TestDb) {
    let registry = seeded(&db).await;
    let all = |rows: &[NewEvent]| (1..=rows.len()).collect::<Vec<usize>>();
    // Recorded and projected in one append: a receipt, taken once.
    let rows = raw_events(&registry, 3, "免去王五同志市财政局副局长职务");
    let id = rows[0].aggregate_id.clone();
    let stored = registry.database().append(&rows).await.unwrap();
    let receipt = registry
        .projector()
        .take_receipt(&id, &all(&rows))
        .expect("a receipt of the append");
    let view = registry.queries().notice_summary(&id).await.unwrap();
    let positions: Vec<(usize, i64)> = stored
        .iter()
        .map(|e| (e.sequence as usize, e.position))
        .collect();
    assert_eq!(receipt.events, positions);
    assert_eq!(receipt.title, view.title);
    assert_eq!(receipt.document_number, view.document_number);
    assert_eq!(receipt.warnings, view.warnings);
    assert_eq!(receipt.warnings.len(), 1, "{:?}", receipt.warnings);
    assert!(registry
        .projector()
        .take_receipt(&id, &all(&rows))
        .is_none());
    // Appended while the read models lag: left to catch-up, no receipt.
    let bare = Database::connect(&db.url).await.unwrap();
    bare.append(&raw_events(&registry, 4, "赵六同志任市财政局副局长"))
        .await
        .unwrap();
    bare.close().await;
    let rows = raw_events(&registry, 5, "钱七同志任市财政局副局长");
    registry.database().append(&rows).await.unwrap();
    let lagging = registry
        .projector()
        .take_receipt(&rows[0].aggregate_id, &all(&rows));
    assert!(lagging.is_none(), "{lagging:?}");
    registry.projector().catch_up().await.unwrap();
    // Ingests report what the read models hold, flags included (removals of holders never
    // recorded, second holders of one-seat posts).
    let mut warned = 0;
    for n in 10..60 {
        let out = registry
            .ingest(&generated_notice(n), &actor())
            .await
            .unwrap()
            .remove(0);
        let view = registry
            .queries()
            .notice_summary(&out.notice_id)
            .await
            .unwrap();
        let positions = registry
            .database()
            .event_positions("notice", &out.notice_id, 1)
            .await
            .unwrap();
        let first = positions.first().map(|(_, p)| *p);
        assert_eq!(out.first_position, first);
        assert_eq!(out.last_position, positions.last().map(|(_, p)| *p));
        assert_eq!(out.events_appended, positions.len());
        assert_eq!(out.title, view.title);
        assert_eq!(out.document_number, view.document_number);
        let raised: Vec<_> = view
            .warnings
            .into_iter()
            .filter(|w| first.is_some_and(|f| w.position >= f))
            .collect();
        assert_eq!(out.warnings, raised, "notice {n}");
        warned += out.warnings.len();
        let sequences: Vec<usize> = positions.iter().map(|(s, _)| *s as usize).collect();
        let left = registry
            .projector()
            .take_receipt(&out.notice_id, &sequences);
        assert!(left.is_none(), "the ingest took its receipt: {left:?}");
    }
    assert!(warned > 0, "the notices raised no warning to compare");
}

async fn projections_catch_up_after_a_crash_between_append_and_projection(db: TestDb) {
    let registry = seeded(&db).await;
    let rows = raw_events(&registry, 3, "王五同志任市财政局副局长");
    // A bare connection has no append observer: the append commits without its projection,
    // as when a process dies after the append (or its in-transaction projection failed).
    let bare = Database::connect(&db.url).await.unwrap();
    bare.append(&rows).await.unwrap();
    bare.close().await;
    assert_eq!(registry.projector().checkpoint().await.unwrap(), 31);
    drop(registry);
    let reopened = Registry::open(&db.url).await.unwrap();
    assert_eq!(reopened.projector().checkpoint().await.unwrap(), 33);
    let holders = reopened
        .queries()
        .holders("市财政局", "副局长", date("2024-03-02"))
        .await
        .unwrap();
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].person, "王五");
    // Catching up again applies nothing twice.
    let before = export_json(&reopened).await;
    reopened.projector().catch_up().await.unwrap();
    assert_eq!(export_json(&reopened).await, before);
    let rebuilt = {
        reopened.projector().rebuild().await.unwrap();
        export_json(&reopened).await
    };
    assert_eq!(rebuilt, before);
}

async fn concurrent_overlapping_ingests_lose_and_duplicate_nothing(db: TestDb) {
    let registry = Arc::new(Registry::open(&db.url).await.unwrap());
    const GIVEN: [char; 12] = [
        '伟', '芳', '军', '静', '强', '磊', '洋', '勇', '艳', '杰', '涛', '明',
    ];
    const BUREAUS: [&str; 12] = [
        "财政局",
        "审计局",
        "统计局",
        "商务局",
        "民政局",
        "司法局",
        "水利局",
        "林业局",
        "文化旅游广电体育局",
        "应急管理局",
        "医疗保障局",
        "自然资源局",
    ];
    let notices: Vec<String> = (0..12)
        .map(|i| {
            notice_text(
                100 + i as u32,
                "2024年3月1日",
                &[
                    &format!(
                        "张{}同志任市{}局长",
                        GIVEN[i],
                        BUREAUS[i].trim_end_matches('局').to_string() + "局"
                    ),
                    &format!("免去王{}同志市{}副局长职务", GIVEN[i], BUREAUS[i]),
                ],
            )
        })
        .collect();
    let notices = Arc::new(notices);
    let mut tasks = Vec::new();
    for t in 0..8usize {
        let registry = registry.clone();
        let notices = notices.clone();
        tasks.push(tokio::spawn(async move {
            let mut appended = HashMap::new();
            // Each task ingests an overlapping window of the notices, in its own order.
            for k in 0..6 {
                let i = (t * 2 + k * (1 + t % 3)) % notices.len();
                let outcome = registry
                    .ingest(&notices[i], &Actor::named(format!("task{t}")))
                    .await
                    .expect("concurrent ingest");
                if !outcome[0].already_recorded {
                    *appended.entry(i).or_insert(0) += outcome[0].events_appended;
                }
            }
            appended
        }));
    }
    let mut appended: HashMap<usize, usize> = HashMap::new();
    for task in tasks {
        for (i, n) in task.await.unwrap() {
            assert!(appended.insert(i, n).is_none(), "notice {i} appended twice");
        }
    }
    let total: usize = appended.values().sum();
    assert_eq!(total, appended.len() * 3);
    let events = registry.database().events_after(0, 10_000).await.unwrap();
    assert_eq!(events.len(), total);
    let positions: Vec<i64> = events.iter().map(|e| e.position).collect();
    assert_eq!(
        positions,
        (1..=total as i64).collect::<Vec<_>>(),
        "gap-free"
    );
    // Each notice's events are contiguous and in sequence order (one transaction each).
    for w in events.windows(2) {
        if w[0].aggregate_id == w[1].aggregate_id {
            assert_eq!(w[1].sequence, w[0].sequence + 1);
        }
    }
    assert!(registry.database().verify().await.unwrap().is_intact());
    assert_eq!(
        registry.queries().notice_count().await.unwrap(),
        appended.len() as i64
    );
    let incremental = export_json(&registry).await;
    registry.projector().rebuild().await.unwrap();
    assert_eq!(export_json(&registry).await, incremental);
}

async fn queries_refuse_bad_arguments(db: TestDb) {
    let registry = seeded(&db).await;
    let q = registry.queries();
    let err = q
        .holders("", "副局长", date("2023-05-01"))
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("organization"), "{err}");
    let err = q
        .holders("市教育体育局", " ", date("2023-05-01"))
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("post"), "{err}");
    let err = q.holdings("无此人", date("2023-05-01")).await.unwrap_err();
    assert!(matches!(err, renmian::projections::QueryError::NotFound(_)));
    let err = q
        .holders("市教育体育局", "局长", date("2023-05-01"))
        .await
        .unwrap_err();
    assert!(matches!(err, renmian::projections::QueryError::NotFound(_)));
    assert!(renmian::projections::queries::parse_date("on", "2023/05/01").is_err());
    assert!(q.notice("临政人〔1999〕1号").await.is_err());
}

async fn read_connections_cannot_write(db: TestDb) {
    let registry = seeded(&db).await;
    let database = registry.database();
    let before = export_json(&registry).await;
    let refused = database
        .read_all(sqlx::query(
            "INSERT INTO rm_jurisdictions (jurisdiction) VALUES ('某县')",
        ))
        .await;
    assert!(refused.is_err(), "a read connection wrote");
    let refused = database
        .read_all(sqlx::query("DELETE FROM rm_tenures"))
        .await;
    assert!(refused.is_err(), "a read connection deleted");
    assert_eq!(export_json(&registry).await, before);
    // And they still read.
    let holders = registry
        .queries()
        .holders("市教育体育局", "副局长", date("2023-05-01"))
        .await
        .unwrap();
    assert!(!holders.is_empty());
}

/// A rebuild replaces every read model in one transaction (on SQLite it also drops and
/// recreates their indexes inside it): queries running meanwhile answer from the read
/// models as they were, never fail, and answer the same afterwards.
async fn reads_during_a_rebuild_answer_as_before(db: TestDb) {
    let registry = Arc::new(seeded(&db).await);
    for n in 1..=40 {
        registry
            .ingest(&generated_notice(n), &actor())
            .await
            .unwrap();
    }
    let ask = |registry: Arc<Registry>| async move {
        let holders = registry
            .queries()
            .holders("市财政局", "副局长", date("2024-06-01"))
            .await
            .unwrap();
        let history = registry
            .queries()
            .post_history("市教育体育局", Some("副局长"))
            .await
            .unwrap();
        (
            holders.iter().map(|t| t.tenure_id).collect::<Vec<_>>(),
            history.len(),
        )
    };
    let before = ask(registry.clone()).await;
    assert!(!before.0.is_empty() && before.1 > 0, "{before:?}");
    let rebuilding = {
        let registry = registry.clone();
        tokio::spawn(async move { registry.projector().rebuild().await })
    };
    let mut asked = 0;
    while !rebuilding.is_finished() || asked == 0 {
        assert_eq!(ask(registry.clone()).await, before);
        asked += 1;
    }
    rebuilding.await.unwrap().unwrap();
    eprintln!("{asked} rounds of queries ran while the rebuild did");
    assert_eq!(ask(registry.clone()).await, before);
}

/// `Database::read_log` (a rebuild's reader, on a connection of the driver's own type) reads
/// what `events_after` reads through `Any`, batch after batch, and ends with an empty batch;
/// from a position, only what follows it. It leaves out what a replay does not read: the
/// provenance copies (the payload holds them), the hashes, the aggregate type and the
/// sequence, and nothing else.
async fn the_log_reads_alike_natively_and_through_any(db: TestDb) {
    let registry = seeded(&db).await;
    registry
        .ingest(&generated_notice(1), &actor())
        .await
        .unwrap();
    let database = registry.database();
    let whole = database.events_after(0, 100_000).await.unwrap();
    assert!(whole.len() > 30, "{}", whole.len());
    assert!(whole
        .iter()
        .any(|e| e.document_number.is_some() && e.source_line.is_some() && e.clause.is_some()));
    let all: Vec<StoredEvent> = whole
        .into_iter()
        .map(|e| StoredEvent {
            aggregate_type: String::new(),
            sequence: 0,
            document_number: None,
            source_line: None,
            clause: None,
            prev_hash: String::new(),
            hash: String::new(),
            ..e
        })
        .collect();
    let read = |after: i64| async move {
        let (sender, mut receiver) = tokio::sync::mpsc::channel(1);
        let reading = tokio::spawn({
            let database = database.clone();
            async move { database.read_log(after, 7, sender).await }
        });
        let mut batches = Vec::new();
        while let Some(batch) = receiver.recv().await {
            batches.push(batch.unwrap());
        }
        reading.await.unwrap();
        batches
    };
    let batches = read(0).await;
    assert!(
        batches.last().unwrap().is_empty(),
        "the log ends with an empty batch"
    );
    assert!(batches[..batches.len() - 1]
        .iter()
        .all(|b| !b.is_empty() && b.len() <= 7));
    assert_eq!(batches.concat(), all);
    let from = all[20].position;
    assert_eq!(read(from).await.concat(), all[21..]);
}

/// `Database::commit_stamp` (what lets `serve` answer ListHolders from memory without a
/// statement per request): on SQLite it stays put while nothing commits, and any commit,
/// through another `Database` on the same file (another process) too, changes it. On
/// PostgreSQL there is none and callers ask the database.
async fn a_commit_by_any_connection_changes_the_commit_stamp(db: TestDb) {
    let registry = seeded(&db).await;
    let database = registry.database();
    let stamp = database.commit_stamp();
    if database.backend() == Backend::Postgres {
        assert_eq!(stamp, None);
        return;
    }
    let stamp = stamp.expect("a WAL-mode SQLite database has a stamp");
    registry.queries().notice_count().await.unwrap();
    assert_eq!(
        database.commit_stamp(),
        Some(stamp),
        "a read commits nothing"
    );
    let other = Registry::open(&db.url).await.expect("open");
    assert_eq!(
        database.commit_stamp(),
        Some(stamp),
        "opening commits nothing"
    );
    other
        .ingest(
            &notice_text(2, "2024年3月1日", &["王五同志任市财政局副局长"]),
            &actor(),
        )
        .await
        .unwrap();
    let after_ingest = database.commit_stamp().expect("still a stamp");
    assert_ne!(after_ingest, stamp, "an ingest elsewhere committed");
    let bare = Database::connect(&db.url).await.expect("connect");
    sqlx::query("INSERT INTO rm_jurisdictions (jurisdiction) VALUES ('某县')")
        .execute(bare.pool())
        .await
        .unwrap();
    assert_ne!(
        database.commit_stamp(),
        Some(after_ingest),
        "any commit counts"
    );
}

/// `n` events of one made-up aggregate, as a bare store appends them.
fn bare_events(aggregate_id: &str, n: i64) -> Vec<NewEvent> {
    (1..=n)
        .map(|sequence| NewEvent {
            aggregate_type: "notice".into(),
            aggregate_id: aggregate_id.into(),
            sequence,
            event_type: "NoticeRecorded".into(),
            event_version: "1".into(),
            payload: format!("{{\"n\":{sequence}}}"),
            metadata: "{}".into(),
            actor: "contract".into(),
            document_number: None,
            source_line: None,
            clause: None,
        })
        .collect()
}

/// Two handles on one database (two processes, as far as each can tell) append in turn and
/// then all at once: every append continues the one chain where the last, whoever made it,
/// ended (each handle starts an append from the head its own last append left — on
/// PostgreSQL once it has appended twice in a row — which the other's appends make stale).
async fn appends_through_several_handles_continue_one_chain(db: TestDb) {
    let first = Database::connect(&db.url).await.unwrap();
    let second = Database::connect(&db.url).await.unwrap();
    let mut expected = Vec::new();
    for (i, handle) in [&first, &first, &second, &first, &second, &second, &first]
        .into_iter()
        .enumerate()
    {
        let stored = handle
            .append(&bare_events(&format!("turn-{i}"), 1 + i as i64 % 3))
            .await
            .unwrap();
        assert_eq!(stored[0].position, expected.len() as i64 + 1, "turn {i}");
        expected.extend(stored);
    }
    let mut tasks = Vec::new();
    for t in 0..8 {
        let handle = if t % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut stored = Vec::new();
            for k in 0..5 {
                stored.extend(
                    handle
                        .append(&bare_events(&format!("task-{t}-{k}"), 2))
                        .await?,
                );
            }
            Ok::<_, StoreError>(stored)
        }));
    }
    for task in tasks {
        expected.extend(task.await.unwrap().unwrap());
    }
    expected.sort_by_key(|e| e.position);
    let log = first.events_after(0, 1_000).await.unwrap();
    assert_eq!(log, expected, "every append is stored as it was returned");
    let positions: Vec<i64> = log.iter().map(|e| e.position).collect();
    assert_eq!(positions, (1..=log.len() as i64).collect::<Vec<_>>());
    // `--as-recorded-at` takes the last position recorded by an instant.
    for pair in log.windows(2) {
        assert!(pair[0].recorded_at <= pair[1].recorded_at, "{pair:?}");
    }
    assert!(second.verify().await.unwrap().is_intact());
    assert_eq!(first.head_position().await.unwrap(), log.len() as i64);
    first.close().await;
    second.close().await;
}

/// Work in an append's transaction that notes how many events each append brought, and
/// waits while its gate is closed (standing for a request cut short half-way through its
/// append, or holding the appending connection while others queue).
struct GateObserver {
    closed: std::sync::atomic::AtomicBool,
    seen: std::sync::Mutex<Vec<usize>>,
}

impl GateObserver {
    fn closed() -> Arc<Self> {
        Arc::new(Self {
            closed: std::sync::atomic::AtomicBool::new(true),
            seen: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn open(&self) {
        self.closed
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    fn seen(&self) -> Vec<usize> {
        self.seen.lock().unwrap().clone()
    }
}

impl AppendObserver for GateObserver {
    fn appended<'a, 't, 'c>(
        &'a self,
        _tx: &'a mut ObservedTx<'t, 'c>,
        events: &'a [StoredEvent],
    ) -> futures::future::BoxFuture<'a, Result<(), StoreError>>
    where
        't: 'a,
        'c: 'a,
    {
        self.seen.lock().unwrap().push(events.len());
        Box::pin(async move {
            while self.closed.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Ok(())
        })
    }
}

/// Waits (up to ten seconds) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..2_000 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("timed out waiting until {what}");
}

fn spawn_append(
    db: &Database,
    events: Vec<NewEvent>,
) -> tokio::task::JoinHandle<Result<Vec<StoredEvent>, StoreError>> {
    let db = db.clone();
    tokio::spawn(async move { db.append(&events).await })
}

/// Appends that arrive while another holds the process's appending connection wait, and
/// the first of them to get it commits them all in one transaction (one projection, one
/// commit): each gets back exactly its own events, at consecutive positions in the order
/// they arrived, on one chain.
async fn appends_that_wait_are_committed_together_each_with_its_own_answer(db: TestDb) {
    let bare = Database::connect(&db.url).await.unwrap();
    let gate = GateObserver::closed();
    let observer: Arc<dyn AppendObserver> = gate.clone();
    bare.observe_appends(Arc::downgrade(&observer));
    let first = spawn_append(&bare, bare_events("first", 2));
    until("the first append projects", || gate.seen().len() == 1).await;
    let mut waiting = Vec::new();
    for (i, (id, n)) in [("b", 3), ("c", 1), ("d", 2)].into_iter().enumerate() {
        waiting.push(spawn_append(&bare, bare_events(id, n)));
        until("the append waits", || bare.appends_waiting() == i + 1).await;
    }
    gate.open();
    let first = first.await.unwrap().unwrap();
    let mut answers = Vec::new();
    for append in waiting {
        answers.push(append.await.unwrap().unwrap());
    }
    assert_eq!(
        gate.seen(),
        [2, 6],
        "the three waiting appends projected as one"
    );
    for (answer, (id, from, n)) in answers.iter().zip([("b", 3, 3), ("c", 6, 1), ("d", 7, 2)]) {
        assert!(answer.iter().all(|e| e.aggregate_id == id), "{id}");
        let positions: Vec<i64> = answer.iter().map(|e| e.position).collect();
        assert_eq!(positions, (from..from + n).collect::<Vec<i64>>(), "{id}");
    }
    let times: std::collections::HashSet<&str> = answers
        .iter()
        .flatten()
        .map(|e| e.recorded_at.as_str())
        .collect();
    assert_eq!(times.len(), 1, "one transaction, one time of recording");
    let log = bare.events_after(0, 100).await.unwrap();
    let answered: Vec<StoredEvent> = first.into_iter().chain(answers.concat()).collect();
    assert_eq!(log, answered, "the log holds what each was told");
    assert!(bare.verify().await.unwrap().is_intact());
    assert_eq!(bare.appends_waiting(), 0);
    bare.close().await;
}

/// A group is one transaction, but its appends keep their own outcomes: when one of them
/// conflicts, each goes again alone and that one alone is refused; an append whose caller
/// went away while it waited is not stored at all.
async fn a_group_that_fails_answers_each_of_its_appends_alone(db: TestDb) {
    let bare = Database::connect(&db.url).await.unwrap();
    bare.append(&bare_events("taken", 1)).await.unwrap();
    let gate = GateObserver::closed();
    let observer: Arc<dyn AppendObserver> = gate.clone();
    bare.observe_appends(Arc::downgrade(&observer));
    let first = spawn_append(&bare, bare_events("first", 1));
    until("the first append projects", || gate.seen().len() == 1).await;
    let b = spawn_append(&bare, bare_events("b", 2));
    until("b waits", || bare.appends_waiting() == 1).await;
    let gone = spawn_append(&bare, bare_events("gone", 1));
    until("gone waits", || bare.appends_waiting() == 2).await;
    gone.abort();
    assert!(gone.await.unwrap_err().is_cancelled());
    let conflicting = spawn_append(&bare, bare_events("taken", 1));
    until("the conflicting append waits", || {
        bare.appends_waiting() == 3
    })
    .await;
    let c = spawn_append(&bare, bare_events("c", 1));
    until("c waits", || bare.appends_waiting() == 4).await;
    gate.open();
    first.await.unwrap().unwrap();
    let b = b.await.unwrap().unwrap();
    assert!(matches!(
        conflicting.await.unwrap(),
        Err(StoreError::Conflict)
    ));
    let c = c.await.unwrap().unwrap();
    assert_eq!(
        gate.seen(),
        [1, 2, 1],
        "the group failed before projecting; b and c then went alone"
    );
    assert_eq!((b[0].position, c[0].position), (3, 5));
    let log = bare.events_after(0, 100).await.unwrap();
    let ids: Vec<&str> = log.iter().map(|e| e.aggregate_id.as_str()).collect();
    assert_eq!(ids, ["taken", "first", "b", "b", "c"]);
    assert!(bare.verify().await.unwrap().is_intact());
    bare.close().await;
}

/// One append of several notices' events — what a group appends — leaves a receipt for
/// each notice, as an append of each alone would: its positions, title, document number
/// and warnings, as the read models hold them.
async fn one_append_of_several_notices_leaves_a_receipt_for_each(db: TestDb) {
    let registry = seeded(&db).await;
    let notices = [
        raw_events(&registry, 3, "免去王五同志市财政局副局长职务"),
        raw_events(&registry, 4, "赵六同志任市财政局副局长"),
        raw_events(&registry, 5, "钱七同志任市财政局副局长"),
    ];
    let stored = registry.database().append(&notices.concat()).await.unwrap();
    let mut warnings = 0;
    for rows in &notices {
        let id = &rows[0].aggregate_id;
        let sequences: Vec<usize> = (1..=rows.len()).collect();
        let receipt = registry
            .projector()
            .take_receipt(id, &sequences)
            .expect("a receipt for each notice");
        let positions: Vec<(usize, i64)> = stored
            .iter()
            .filter(|e| &e.aggregate_id == id)
            .map(|e| (e.sequence as usize, e.position))
            .collect();
        assert_eq!(receipt.events, positions);
        let view = registry.queries().notice_summary(id).await.unwrap();
        assert_eq!(receipt.title, view.title);
        assert_eq!(receipt.document_number, view.document_number);
        assert_eq!(receipt.warnings, view.warnings);
        warnings += receipt.warnings.len();
    }
    assert_eq!(
        warnings, 1,
        "the removal of a holder never recorded is flagged"
    );
}

/// The read models store a notice's text, names and notes exactly as written, whichever way
/// its rows travel (on PostgreSQL: an append's rows as JSON in one statement, a rebuild's
/// with `COPY`; each escapes quotes, backslashes, tabs and line ends its own way).
async fn text_that_the_writes_escape_is_stored_as_written(db: TestDb) {
    let registry = Registry::open(&db.url).await.unwrap();
    let text = notice_text(
        7,
        "2024年5月6日",
        &[
            "钟炎夫同志任市教育体育局副局长（\"试\\用\"）",
            "李琪同志任市财政局局长（暂\t\r\u{1}定）",
        ],
    );
    let outcomes = registry.ingest(&text, &actor()).await.unwrap();
    assert_eq!(outcomes.len(), 1);
    let notice = registry
        .queries()
        .notice("临政人〔2024〕7号")
        .await
        .unwrap();
    assert_eq!(notice.source_text.as_deref(), Some(text.trim_end()));
    let incremental = export_json(&registry).await;
    // In tenure rows too: the appointments' notes (the parser drops whitespace from a note;
    // the notice's text above keeps it).
    let notes = |person: &'static str| {
        let registry = &registry;
        async move {
            let held = registry
                .queries()
                .holdings(person, date("2024-05-07"))
                .await
                .unwrap();
            held.into_iter().map(|t| t.note).collect::<Vec<_>>()
        }
    };
    assert_eq!(notes("钟炎夫").await, [Some("\"试\\用\"".to_string())]);
    assert_eq!(notes("李琪").await, [Some("暂\u{1}定".to_string())]);
    registry.projector().rebuild().await.unwrap();
    assert_eq!(export_json(&registry).await, incremental);
}

/// An append after a rebuild, in the same process, writes into the read models the rebuild
/// made (on PostgreSQL new tables swapped in for the old ones, while the appending
/// connection holds its write statement prepared against the old ones) and closes versions
/// the rebuild wrote.
async fn appends_after_a_rebuild_write_into_the_rebuilt_tables(db: TestDb) {
    let registry = seeded(&db).await;
    registry.projector().rebuild().await.unwrap();
    registry
        .ingest(
            &notice_text(
                2,
                "2024年3月1日",
                &[
                    "免去钟炎夫同志市教育体育局副局长职务",
                    "谢纬霖同志试用期满，正式任市黄盖湖自然保护区管理中心主任",
                    "李琪同志任市教育体育局副局长",
                ],
            ),
            &actor(),
        )
        .await
        .unwrap();
    let holders = registry
        .queries()
        .holders("临湘市教育体育局", "副局长", date("2024-03-02"))
        .await
        .unwrap();
    let names: BTreeSet<String> = holders.into_iter().map(|t| t.person).collect();
    assert!(names.contains("李琪"), "{names:?}");
    assert!(!names.contains("钟炎夫"), "{names:?}");
    let incremental = export_json(&registry).await;
    registry.projector().rebuild().await.unwrap();
    assert_eq!(export_json(&registry).await, incremental);
}

/// `Queries::exactly`: an answer of the latest state reports the checkpoint it is exactly as
/// of, and asked again as of it, after later notices, the answer is the same; a notice
/// projected after the question was read (so the answer lacks it) sends the question back
/// to the checkpoint after it; as of a past position the answer reports that position, and
/// past the read models it is refused.
async fn an_answer_is_exactly_as_of_the_position_it_reports(db: TestDb) {
    const ORG: &str = "临湘市教育体育局";
    let registry = seeded(&db).await;
    let queries = registry.queries();
    let history = |q: Queries| async move { q.post_history(ORG, None).await };
    let notices = |q: Queries| async move { q.notices(0, 100, true).await };

    let first = queries.exactly(history).await.unwrap();
    assert_eq!(first.position, 31, "the seed's checkpoint");
    assert_eq!(first.value, queries.post_history(ORG, None).await.unwrap());
    let listed = queries.exactly(notices).await.unwrap();
    assert_eq!((listed.position, listed.value.len()), (31, 1));

    // A notice is ingested (and projected) after the question was read and before the
    // checkpoint is: that answer lacks it, so the question is asked again as of 33.
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let earlier = notice_text(51, "2020年1月1日", &["赵六同志任市教育体育局局长"]);
    let raced = queries
        .exactly(|q: Queries| {
            let (calls, registry, earlier) = (&calls, &registry, &earlier);
            async move {
                let answer = q.post_history(ORG, None).await;
                if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    registry.ingest(earlier, &actor()).await.unwrap();
                }
                answer
            }
        })
        .await
        .unwrap();
    assert_eq!(calls.into_inner(), 2, "read again");
    assert_eq!(raced.position, 33);
    assert_eq!(raced.value.len(), first.value.len() + 1);
    assert_eq!(
        raced.value[0].person, "赵六",
        "the earliest start sorts first"
    );

    // Nothing projected since: read once. As of 31 every answer is still the first one.
    let now = queries.exactly(history).await.unwrap();
    assert_eq!(now, raced);
    let then = queries.as_of_position(31).unwrap();
    assert_eq!(then.exactly(history).await.unwrap(), first);
    assert_eq!(then.exactly(notices).await.unwrap(), listed);

    // Past the read models: what they hold as of it could still change.
    let beyond = queries.as_of_position(34).unwrap().exactly(history).await;
    assert!(
        matches!(
            beyond,
            Err(QueryError::NotReached {
                position: 34,
                checkpoint: 33
            })
        ),
        "{beyond:?}"
    );
}

/// A bulk ingest asks two questions of a few hundred notices at a time — which are in the
/// log, and which document numbers a recorded notice revokes — and gets what asking of each
/// notice gives: exact numbers (临政人〔2024〕1号 is not 11号), however many are asked
/// (more than one statement's worth of each).
async fn lookups_of_many_notices_answer_as_lookups_of_each(db: TestDb) {
    use cqrs_es::Aggregate;
    let registry = Registry::open(&db.url).await.unwrap();
    for text in [
        generated_notice(1),
        generated_notice(11),
        revocation_text(20, 1, "2024年5月1日"),
        revocation_text(21, 1_100, "2024年5月2日"),
    ] {
        registry.ingest(&text, &actor()).await.unwrap();
    }
    let id = |n: u32| {
        let parsed = renmian::notice::parse(&generated_notice(n));
        NoticeKey::for_notice(&parsed.notices[0])
            .aggregate_id()
            .to_string()
    };
    let ids: Vec<String> = (1..=600).map(id).collect();
    let asked: Vec<&str> = ids.iter().map(String::as_str).collect();
    let found = registry
        .database()
        .aggregates_in_log(renmian::domain::NoticeAggregate::TYPE, &asked)
        .await
        .unwrap();
    // The revocations are notices 20 and 21 of the same issuer; nothing recorded 1100.
    assert_eq!(found, [1, 11, 20, 21].map(id).into_iter().collect());
    for (i, asked) in asked.iter().enumerate() {
        let events = registry
            .database()
            .aggregate_events(renmian::domain::NoticeAggregate::TYPE, asked, 0)
            .await
            .unwrap();
        assert_eq!(
            !events.is_empty(),
            found.contains(*asked),
            "notice {}",
            i + 1
        );
    }

    // More numbers than one statement asks about (`IN_LIST_IDS`, 500).
    let numbers: Vec<String> = (1..=1_200)
        .map(|n| format!("临政人〔2024〕{n}号"))
        .collect();
    let asked: Vec<&str> = numbers.iter().map(String::as_str).collect();
    let revoked = registry.queries().revoked_among(&asked).await.unwrap();
    assert_eq!(
        revoked,
        ["临政人〔2024〕1号", "临政人〔2024〕1100号"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    for number in &asked {
        let revoking = registry.queries().notices_revoking(number).await.unwrap();
        assert_eq!(!revoking.is_empty(), revoked.contains(*number), "{number}");
    }
    assert!(registry
        .queries()
        .revoked_among(&[])
        .await
        .unwrap()
        .is_empty());
}
