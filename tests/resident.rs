//! The tenures read model kept in process memory (`projections::resident`, what `serve`
//! answers ListHolders and ListHoldings from) against the SQL queries it stands in for: the
//! same answer and the same errors for every recorded post on dates across the history, for
//! organizations named canonically, by alias, as written (市X, qualified by jurisdiction,
//! possibly ambiguous) and not at all, and for persons named by name (同名: ambiguous), by
//! `#id` and `name#id` (right and wrong), merged and split; and, after writes through
//! *another* registry on the same database (another server), at once: a request that starts
//! after the write was acknowledged sees it. On
//! SQLite, and on PostgreSQL when `RENMIAN_TEST_DATABASE_URL` is set.

mod common;

use chrono::NaiveDate;
use common::{actor, notice_text, TestDb};
use renmian::projections::resident::ResidentTenures;
use renmian::projections::{Freshness, QueryError, Tenure};
use renmian::registry::Registry;
use renmian::workload::{generate, WorkloadConfig};
use sqlx::Row;

fn texts() -> Vec<String> {
    let config = WorkloadConfig {
        jurisdictions: 3,
        years: 3,
        ..WorkloadConfig::new(20261128, 150)
    };
    generate(&config).map(|n| n.text).collect()
}

async fn strings(registry: &Registry, sql: &str) -> Vec<String> {
    registry
        .database()
        .read_all(sqlx::query(sql))
        .await
        .expect(sql)
        .iter()
        .map(|r| r.try_get::<String, _>(0).expect("a text column"))
        .collect()
}

/// Every recorded post, as (organization, post).
async fn recorded_posts(registry: &Registry) -> Vec<(String, String)> {
    let rows = registry
        .database()
        .read_all(sqlx::query(
            "SELECT organization, post FROM rm_posts ORDER BY organization, post",
        ))
        .await
        .expect("posts");
    rows.iter()
        .map(|r| (r.get("organization"), r.get("post")))
        .collect()
}

/// Dates across the history: every 7th distinct start date, and one before and after all.
async fn dates(registry: &Registry) -> Vec<NaiveDate> {
    let starts = strings(
        registry,
        "SELECT DISTINCT start_date FROM rm_tenures WHERE start_date IS NOT NULL ORDER BY 1",
    )
    .await;
    let mut dates: Vec<NaiveDate> = starts.iter().step_by(7).map(|d| common::date(d)).collect();
    dates.push(common::date("1990-01-01"));
    dates.push(common::date("2099-12-31"));
    dates
}

fn outcome(result: Result<Vec<Tenure>, QueryError>) -> Result<Vec<Tenure>, String> {
    result.map_err(|e| e.to_string())
}

/// Asks both for each (organization as named, post) on each date; returns how many answers
/// named at least one holder (so a test can tell it compared something).
async fn same_answers(
    resident: &ResidentTenures,
    sql: &Registry,
    questions: &[(String, String)],
    dates: &[NaiveDate],
) -> usize {
    let mut with_holders = 0;
    for (organization, post) in questions {
        for on in dates {
            let expected = outcome(sql.queries().holders(organization, post, *on).await);
            let got = outcome(resident.holders(organization, post, *on).await);
            assert_eq!(
                got, expected,
                "holders of {post:?} at {organization:?} on {on}"
            );
            with_holders += usize::from(expected.is_ok_and(|t| !t.is_empty()));
        }
    }
    with_holders
}

/// Asks both for the holdings of each person (as named) on each date; returns how many
/// answers named at least one tenure.
async fn same_holdings(
    resident: &ResidentTenures,
    sql: &Registry,
    persons: &[String],
    dates: &[NaiveDate],
) -> usize {
    let mut with_tenures = 0;
    for person in persons {
        for on in dates {
            let expected = outcome(sql.queries().holdings(person, *on).await);
            let got = outcome(resident.holdings(person, *on).await);
            assert_eq!(got, expected, "holdings of {person:?} on {on}");
            with_tenures += usize::from(expected.is_ok_and(|t| !t.is_empty()));
        }
    }
    with_tenures
}

/// Persons as callers name them: every third name, every fifth record as `#id` and as
/// `name#id`, a wrong `name#id`, an unknown name and id, and malformed ones.
async fn person_questions(registry: &Registry) -> Vec<String> {
    let mut names: Vec<String> =
        strings(registry, "SELECT DISTINCT name FROM rm_persons ORDER BY 1")
            .await
            .into_iter()
            .step_by(3)
            .collect();
    let rows = registry
        .database()
        .read_all(sqlx::query(
            "SELECT person_id, name FROM rm_persons ORDER BY person_id",
        ))
        .await
        .expect("persons");
    for r in rows.iter().step_by(5) {
        let id: i64 = r.get("person_id");
        let name: String = r.get("name");
        names.push(format!("#{id}"));
        names.push(format!("{name}#{id}"));
        names.push(format!("无此人#{id}"));
    }
    names.extend(["无此人", "#999999999", "#", "王伟#x", " ", ""].map(String::from));
    names
}

async fn resident_tenures_answer_as_the_database_does(db: TestDb) {
    let texts = texts();
    let (first, rest) = texts.split_at(100);
    let writer = Registry::open(&db.url).await.expect("open");
    writer.ingest_all(first, &actor()).await.expect("ingest");

    // The server's registry and its model: loaded once, then fenced per request.
    let server = Registry::open(&db.url).await.expect("open");
    // Tenures that held on 2023-01-01 or later are kept; earlier dates go to the database.
    let resident = server.resident_tenures(common::date("2023-01-01"));
    resident.load().await.expect("load");
    assert!(resident.loaded());

    let dates = dates(&server).await;
    let posts = recorded_posts(&server).await;
    assert!(posts.len() > 50, "{} posts", posts.len());
    let compared = same_answers(&resident, &server, &posts, &dates).await;
    assert!(compared > 100, "only {compared} answers with holders");
    let holdings_dates = [
        common::date("2020-06-30"),
        common::date("2024-06-30"),
        common::date("2099-12-31"),
    ];
    let compared = same_holdings(
        &resident,
        &server,
        &person_questions(&server).await,
        &holdings_dates,
    )
    .await;
    assert!(compared > 100, "only {compared} holdings with tenures");
    // The first load in reads of 7 rows comes out the same; this model loads afresh when
    // more than 100 events behind (checked again at the end, after many more).
    let chunked = server
        .resident_tenures(common::date("2023-01-01"))
        .with_load_chunk(7)
        .with_reload_after(100);
    chunked.load().await.expect("load");
    same_answers(&chunked, &server, &posts, &[common::date("2024-06-30")]).await;

    // Organizations as callers name them: aliases, as written in notices (relative names
    // qualified by every jurisdiction, ambiguous across three), and unknown or empty names,
    // with one post of each and one that is not recorded.
    let mut names = strings(
        &server,
        "SELECT DISTINCT alias FROM rm_organization_aliases",
    )
    .await;
    names.extend(
        strings(
            &server,
            "SELECT DISTINCT organization_as_written FROM rm_tenures ORDER BY 1",
        )
        .await,
    );
    names.extend(["无此单位".to_string(), " ".to_string(), String::new()]);
    let mut questions = Vec::new();
    for name in &names {
        for post in ["局长", "副局长", "主任", "无此职务", ""] {
            questions.push((name.clone(), post.to_string()));
        }
    }
    let today = [common::date("2024-06-30")];
    same_answers(&resident, &server, &questions, &today).await;

    // The last notice the models loaded: revoked below, its tenures must leave them.
    let notice_id = strings(
        &server,
        "SELECT notice_id FROM rm_notices ORDER BY recorded_position DESC",
    )
    .await
    .remove(0);

    // Writes through the other registry (another server): each is answered at once,
    // without waiting for a notification.
    let last_day = [common::date("2099-12-31"), common::date("2024-12-31")];
    for text in rest.iter().take(8) {
        writer.ingest(text, &actor()).await.expect("ingest");
        let before = resident.position();
        same_answers(
            &resident,
            &server,
            &recorded_posts(&server).await,
            &last_day,
        )
        .await;
        assert!(
            resident.position() > before,
            "the model moved with the write"
        );
    }
    // A revocation withdraws tenures, a removal of someone never recorded opens one with an
    // unknown start, a new organization and post appear.
    writer
        .revoke(&notice_id, "测试撤销", None, &actor())
        .await
        .expect("revoke");
    writer
        .ingest(
            &notice_text(
                9101,
                "2024年12月1日",
                &["免去路人甲同志市统计局局长职务", "王新同志任市新设局局长"],
            ),
            &actor(),
        )
        .await
        .expect("ingest");
    writer
        .ingest_all(&rest[8..], &actor())
        .await
        .expect("ingest the rest");
    // Two records of one name merged (the name stops being ambiguous, `#id` of the merged
    // one means the other), and a person's current tenure split off to a new record.
    let shared = server
        .database()
        .read_all(sqlx::query(
            "SELECT name, MIN(person_id) AS a, MAX(person_id) AS b FROM rm_persons \
             WHERE merged_into IS NULL GROUP BY name HAVING COUNT(*) > 1 ORDER BY 2",
        ))
        .await
        .expect("shared names");
    let (a, b): (i64, i64) = (shared[0].get("a"), shared[0].get("b"));
    writer
        .merge_persons(a, b, "同一人", &actor())
        .await
        .expect("merge");
    let held = server
        .database()
        .read_all(sqlx::query(
            "SELECT person_id, tenure_id FROM rm_tenures WHERE version_to IS NULL \
             AND end_date IS NULL AND withdrawn_position IS NULL ORDER BY tenure_id DESC",
        ))
        .await
        .expect("open tenures");
    let (split_person, split_tenure): (i64, i64) =
        (held[0].get("person_id"), held[0].get("tenure_id"));
    let new_person = writer
        .split_person(split_person, vec![split_tenure], "不是同一人", &actor())
        .await
        .expect("split");
    let mut persons = person_questions(&server).await;
    for id in [a, b, split_person, new_person] {
        persons.push(format!("#{id}"));
    }
    persons.push(shared[0].get("name"));
    let compared = same_holdings(&resident, &server, &persons, &holdings_dates).await;
    assert!(compared > 100, "only {compared} holdings with tenures");
    assert_eq!(
        outcome(
            resident
                .holdings(&format!("#{a}"), common::date("2099-12-31"))
                .await
        ),
        outcome(
            resident
                .holdings(&format!("#{b}"), common::date("2099-12-31"))
                .await
        ),
        "a merged record stands for the one it was merged into"
    );

    let posts = recorded_posts(&server).await;
    let compared = same_answers(&resident, &server, &posts, &dates).await;
    assert!(compared > 100, "only {compared} answers with holders");
    assert_eq!(
        outcome(
            resident
                .holders("市新设局", "局长", common::date("2024-12-31"))
                .await
        )
        .map(|t| t.into_iter().map(|t| t.person).collect::<Vec<_>>()),
        Ok(vec!["王新".to_string()])
    );
    let recent = [common::date("2024-06-30"), common::date("2099-12-31")];
    same_answers(&chunked, &server, &posts, &recent).await;
    same_holdings(&chunked, &server, &persons, &recent).await;
    let (from_memory, from_database) = resident.answered();
    assert!(
        from_memory > 1000 && from_database > 1000,
        "{from_memory} answers from memory, {from_database} from the database"
    );
}

/// Until its first load, the model answers from the database (and starts loading).
async fn an_unloaded_model_answers_from_the_database(db: TestDb) {
    let registry = Registry::open(&db.url).await.expect("open");
    registry
        .ingest(
            &notice_text(9201, "2024年3月1日", &["李四同志任市统计局局长"]),
            &actor(),
        )
        .await
        .expect("ingest");
    let resident = registry.resident_tenures(common::date("2000-01-01"));
    let on = common::date("2024-06-30");
    let answer = resident
        .holders("市统计局", "局长", on)
        .await
        .expect("holders");
    assert_eq!(
        answer,
        registry
            .queries()
            .holders("市统计局", "局长", on)
            .await
            .unwrap()
    );
    assert_eq!(answer.len(), 1);
    for _ in 0..500 {
        if resident.loaded() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(resident.loaded(), "the first use started the load");
    assert_eq!(
        resident.holders("市统计局", "局长", on).await.unwrap(),
        answer
    );
}

/// Records a notice of one clause; returns its last event's position.
async fn record(registry: &Registry, number: u32, date: &str, clause: &str) -> i64 {
    registry
        .ingest(&notice_text(number, date, &[clause]), &actor())
        .await
        .expect("ingest")
        .remove(0)
        .last_position
        .expect("appended")
}

/// Who the model says holds 副局长 at 市统计局 on 2024-06-30 (or its error's text).
async fn deputies(resident: &ResidentTenures, freshness: Freshness) -> Result<Vec<String>, String> {
    let on = common::date("2024-06-30");
    resident
        .holders_with("市统计局", "副局长", on, freshness)
        .await
        .map(|answer| answer.value.into_iter().map(|t| t.person).collect())
        .map_err(|e| e.to_string())
}

/// Asked for at least a position the model has passed, the model answers as it stands,
/// without reading the checkpoint: a write through another server after it is not in the
/// answer until the model follows the log (or a request for the latest state fences). A
/// position past the read models is an error on both paths (memory and database), never
/// an older answer.
async fn an_answer_at_least_a_position_needs_no_checkpoint_read(db: TestDb) {
    let writer = Registry::open(&db.url).await.expect("open");
    let first = record(&writer, 9301, "2024年3月1日", "李四同志任市统计局局长").await;
    let server = Registry::open(&db.url).await.expect("open");
    let resident = server.resident_tenures(common::date("2020-01-01"));
    resident.load().await.expect("load");
    let on = common::date("2024-06-30");
    let not_recorded = Err("no post \"副局长\" is recorded at 临湘市统计局".to_string());
    assert_eq!(
        deputies(&resident, Freshness::AtLeast(first)).await,
        not_recorded
    );

    // Another server records a deputy; the model has not heard of it.
    let second = record(&writer, 9302, "2024年4月1日", "王五同志任市统计局副局长").await;
    assert!(second > first);
    assert_eq!(
        deputies(&resident, Freshness::AtLeast(first)).await,
        not_recorded,
        "a position the model passed: answered as the model stands, no checkpoint read"
    );
    assert_eq!(resident.position(), first);
    let stale = resident
        .holdings_with("李四", on, Freshness::AtLeast(first))
        .await
        .unwrap();
    assert_eq!(
        stale.position, first,
        "the answer says which position it reflects"
    );
    // The writer's own position: read-your-writes, the model brought there first.
    assert_eq!(
        deputies(&resident, Freshness::AtLeast(second)).await,
        Ok(vec!["王五".to_string()])
    );
    assert_eq!(resident.position(), second);
    let holdings = resident
        .holdings_with("王五", on, Freshness::AtLeast(second))
        .await
        .unwrap();
    assert_eq!(holdings.position, second);
    assert_eq!(
        holdings.value,
        server.queries().holdings("王五", on).await.unwrap()
    );

    // A third write: following the log brings the model to it without any request.
    record(&writer, 9303, "2024年5月1日", "赵六同志任市统计局副局长").await;
    assert_eq!(
        deputies(&resident, Freshness::AtLeast(first)).await,
        Ok(vec!["王五".to_string()])
    );
    resident.follow().await.expect("follow");
    let both = Ok(vec!["王五".to_string(), "赵六".to_string()]);
    assert_eq!(deputies(&resident, Freshness::AtLeast(first)).await, both);
    assert_eq!(deputies(&resident, Freshness::Latest).await, both);
    assert_eq!(
        resident.holders("市统计局", "副局长", on).await.unwrap(),
        server
            .queries()
            .holders("市统计局", "副局长", on)
            .await
            .unwrap()
    );

    // Past the read models: from memory and from the database (a date before the
    // horizon), the same error naming both positions.
    let head = resident.position();
    for date in [on, common::date("2019-06-30")] {
        match resident
            .holders_with("市统计局", "副局长", date, Freshness::AtLeast(head + 1))
            .await
        {
            Err(QueryError::NotReached {
                position,
                checkpoint,
            }) => assert_eq!((position, checkpoint), (head + 1, head), "{date}"),
            other => panic!("{date}: {other:?}"),
        }
        assert!(matches!(
            resident
                .holdings_with("王五", date, Freshness::AtLeast(head + 1))
                .await,
            Err(QueryError::NotReached { .. })
        ));
    }
    // Before the horizon, a position reached: the database's answer, reflecting at least
    // the checkpoint read before it.
    let early = common::date("2019-06-30");
    let answer = resident
        .holders_with("市统计局", "副局长", early, Freshness::AtLeast(head))
        .await
        .unwrap();
    assert_eq!(answer.position, head);
    assert_eq!(
        answer.value,
        server
            .queries()
            .holders("市统计局", "副局长", early)
            .await
            .unwrap()
    );

    // A model nobody asked since it last followed is left where it is by `follow`, and the
    // next question fences first: a quiet spell never leaves a stale answer behind.
    resident.follow().await.expect("follow");
    resident.follow().await.expect("follow");
    let before = resident.position();
    let fourth = record(&writer, 9304, "2024年6月1日", "孙七同志任市统计局副局长").await;
    resident.follow().await.expect("follow");
    assert_eq!(resident.position(), before, "nobody asked: not followed");
    assert_eq!(
        deputies(&resident, Freshness::AtLeast(first)).await,
        Ok(["王五", "赵六", "孙七"].map(String::from).to_vec())
    );
    assert_eq!(resident.position(), fourth);
    // Asked again: following resumes.
    record(&writer, 9305, "2024年6月2日", "周八同志任市统计局副局长").await;
    resident.follow().await.expect("follow");
    assert!(resident.position() > fourth, "asked since: followed");
}

backend_suite!(
    resident_tenures_answer_as_the_database_does,
    an_unloaded_model_answers_from_the_database,
    an_answer_at_least_a_position_needs_no_checkpoint_read
);
