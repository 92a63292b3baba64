//! Time done right (issue 5), on SQLite and PostgreSQL: the two time axes together
//! (valid date × recorded position), corrections and revocations as events, effective dates
//! with their precision, the probation lifecycle, succession and one-seat posts.

#[macro_use]
mod common;

use common::{
    actor, assert_post_histories_read_every_version, date, export_json, generated_notice,
    notice_text, revocation_text, seed_text, seeded, TestDb,
};
use renmian::projections::{ProbationStatus, Queries};
use renmian::registry::{Registry, RegistryError};

async fn head(registry: &Registry) -> i64 {
    registry.database().head_position().await.unwrap()
}

/// An operator confirms the seed's 宋勇 in his post on probation, 副主任, on 2024-04-24.
async fn confirm_seed_probation(registry: &Registry) {
    registry
        .confirm_probation(
            "宋勇",
            "湖南五尖山国家森林公园保护中心",
            "副主任",
            date("2024-04-24"),
            &actor(),
        )
        .await
        .unwrap();
}

async fn holder_names(queries: &Queries, org: &str, post: &str, on: &str) -> Vec<String> {
    queries
        .holders(org, post, date(on))
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.person)
        .collect()
}

backend_suite!(
    bitemporal_grid_over_a_correction_and_a_revocation,
    explicit_effective_dates_and_month_precision,
    every_probation_status_and_due_within,
    succession_chain_across_three_notices,
    one_seat_posts_flag_a_second_holder,
    corrections_need_the_explicit_flag_and_a_reason,
    same_name_persons_are_flagged_merged_and_split,
    a_revocation_recorded_first_applies_when_the_notice_arrives,
    every_answer_is_the_same_again_as_of_the_position_it_reported,
);

async fn bitemporal_grid_over_a_correction_and_a_revocation(db: TestDb) {
    let registry = seeded(&db).await;
    let p0 = head(&registry).await;
    let original = notice_text(
        1,
        "2024年3月1日",
        &[
            "王五同志任市教育体育局副局长",
            "免去钟炎夫同志市教育体育局副局长职务",
        ],
    );
    registry.ingest(&original, &actor()).await.unwrap();
    let p1 = head(&registry).await;
    let notice_at = |registry: &Registry| {
        let queries = registry.queries().clone();
        async move { queries.notice("临政人〔2024〕1号").await.unwrap() }
    };
    let recorded = notice_at(&registry).await;
    let corrected = original.replace("王五", "王六");
    let outcome = registry
        .ingest_correction(&corrected, "姓名有误", &actor())
        .await
        .unwrap();
    assert!(outcome[0].corrected);
    // NoticeCorrected, one fact withdrawn (王五), one added (王六); the removal is untouched.
    assert_eq!(outcome[0].events_appended, 3);
    let p2 = head(&registry).await;
    let corrected_view = notice_at(&registry).await;
    assert_eq!(
        (corrected_view.correction_count, corrected_view.event_count),
        (1, 3),
        "the removal, 王五 and 王六: facts are counted as recorded, withdrawn or not"
    );
    let revoking = registry
        .ingest(&revocation_text(9, 1, "2024年4月1日"), &actor())
        .await
        .unwrap();
    assert_eq!(revoking[0].revoked_notices, ["临政人〔2024〕1号"]);
    let p3 = head(&registry).await;

    // rows: valid dates; columns: what the registry held at p0..p3.
    let grid = [
        ("2023-04-01", ["李琪", "李琪", "李琪", "李琪"]),
        ("2023-05-01", ["钟炎夫", "钟炎夫", "钟炎夫", "钟炎夫"]),
        ("2024-03-02", ["钟炎夫", "王五", "王六", "钟炎夫"]),
    ];
    for (on, expected) in grid {
        for (position, want) in [p0, p1, p2, p3].into_iter().zip(expected) {
            let queries = registry.queries().as_of_position(position).unwrap();
            assert_eq!(
                holder_names(&queries, "市教育体育局", "副局长", on).await,
                [want],
                "on {on} as of position {position}"
            );
        }
    }
    // Today's view is the last column, and a recorded timestamp names a position.
    assert_eq!(
        holder_names(registry.queries(), "市教育体育局", "副局长", "2024-03-02").await,
        ["钟炎夫"]
    );
    let events = registry.database().events_after(p1 - 1, 1).await.unwrap();
    let at = registry
        .queries()
        .position_recorded_at(&events[0].recorded_at)
        .await
        .unwrap();
    assert!(at >= p1 && at < p2, "{at} in {p1}..{p2}");
    assert!(registry
        .queries()
        .position_recorded_at("yesterday")
        .await
        .is_err());

    // History keeps every fact, marked with who withdrew it and why.
    let history = registry
        .queries()
        .post_history("市教育体育局", Some("副局长"))
        .await
        .unwrap();
    let wang5 = history.iter().find(|t| t.person == "王五").unwrap();
    assert!(wang5
        .withdrawn_reason
        .as_deref()
        .unwrap()
        .starts_with("corrected: 姓名有误"));
    assert_eq!(wang5.withdrawn_by.as_deref(), Some("test"));
    assert!(wang5.withdrawn_at.is_some());
    let wang6 = history.iter().find(|t| t.person == "王六").unwrap();
    assert!(wang6
        .withdrawn_reason
        .as_deref()
        .unwrap()
        .starts_with("revoked: "));
    assert_eq!(wang6.end_cause.as_deref(), Some("withdrawn"));
    let zhong = history.iter().find(|t| t.person == "钟炎夫").unwrap();
    assert_eq!(zhong.end_date, None, "the revoked removal no longer holds");
    let notice = registry
        .queries()
        .notice("临政人〔2024〕1号")
        .await
        .unwrap();
    assert_eq!(notice.correction_count, 1);
    assert_eq!(notice.revoked_by.as_deref(), Some("临政人〔2024〕9号"));
    let then = registry.queries().as_of_position(p2).unwrap();
    assert_eq!(
        then.notice("临政人〔2024〕1号").await.unwrap().revoked_at,
        None
    );
    // As of a position, the notice is what it was then, text, heading, corrections, facts
    // and events: the same view, read again after the correction and the revocation.
    for (position, view) in [(p1, &recorded), (p2, &corrected_view), (p3, &notice)] {
        let queries = registry.queries().as_of_position(position).unwrap();
        assert_eq!(
            &queries.notice("临政人〔2024〕1号").await.unwrap(),
            view,
            "as of {position}"
        );
    }
    assert!(recorded.source_text.as_deref().unwrap().contains("王五"));
    // The text is the correction's from then on (read from the log: `rm_notices` keeps no
    // copy of it), and the notice's view now is the corrected one.
    for view in [&corrected_view, &notice] {
        let text = view.source_text.as_deref().unwrap();
        assert!(text.contains("王六") && !text.contains("王五"), "{text}");
    }
    assert_eq!(recorded.events.len(), 3);
    // Post histories at every step, withdrawn tenures included.
    assert_post_histories_read_every_version(&registry, &[p0, p1, p2]).await;
    // Rebuilding reproduces every version.
    let before = export_json(&registry).await;
    registry.projector().rebuild().await.unwrap();
    assert_eq!(export_json(&registry).await, before);
    assert_eq!(p3, head(&registry).await);
}

async fn explicit_effective_dates_and_month_precision(db: TestDb) {
    let registry = seeded(&db).await;
    let text = notice_text(
        2,
        "2024年4月20日",
        &["付建新同志自2024年5月1日起任市农业农村局副局长"],
    );
    registry.ingest(&text, &actor()).await.unwrap();
    let q = registry.queries();
    assert!(holder_names(q, "市农业农村局", "副局长", "2024-04-25")
        .await
        .is_empty());
    let holders = q
        .holders("市农业农村局", "副局长", date("2024-05-02"))
        .await
        .unwrap();
    assert_eq!(holders[0].person, "付建新");
    assert_eq!(holders[0].start_date.as_deref(), Some("2024-05-01"));

    let month = notice_text(
        3,
        "2024年5月20日",
        &["李春燕（女）同志任市乡村振兴局副局长（试用期一年）"],
    )
    .replace(
        "。\n\n临湘市人民政府",
        "。\n\n以上任免自2024年6月起执行。\n\n临湘市人民政府",
    );
    registry.ingest(&month, &actor()).await.unwrap();
    let holders = q
        .holders("市乡村振兴局", "副局长", date("2024-06-01"))
        .await
        .unwrap();
    assert_eq!(
        holders[0].start_date.as_deref(),
        Some("2024-06"),
        "month precision kept"
    );
    assert_eq!(holders[0].probation_end.as_deref(), Some("2025-06"));
    assert!(holder_names(q, "市乡村振兴局", "副局长", "2024-05-31")
        .await
        .is_empty());
}

async fn every_probation_status_and_due_within(db: TestDb) {
    let registry = seeded(&db).await;
    // Terminated: 阎炜 removed during the probation.
    registry
        .ingest(
            &notice_text(
                4,
                "2023年10月1日",
                &["免去阎炜同志市库区移民服务中心副主任职务"],
            ),
            &actor(),
        )
        .await
        .unwrap();
    // Confirmed by a notice.
    registry
        .ingest(
            &notice_text(
                5,
                "2024年4月25日",
                &["谢纬霖同志试用期满，正式任市黄盖湖自然保护区管理中心主任"],
            ),
            &actor(),
        )
        .await
        .unwrap();
    // Confirmed by an operator.
    confirm_seed_probation(&registry).await;
    let err = registry
        .confirm_probation(
            "宋勇",
            "湖南五尖山国家森林公园保护中心",
            "副主任",
            date("2024-04-26"),
            &actor(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Conflict(_)), "{err}");
    // The operator's confirmation is a fact of the seed notice, counted from its position on:
    // the notice as of the position before it has one fact fewer, as of it the latest view.
    let confirmed_at = head(&registry).await;
    let seed = |position: i64| {
        let queries = registry.queries().as_of_position(position).unwrap();
        async move { queries.notice("临政人〔2023〕4号").await.unwrap() }
    };
    let latest = registry
        .queries()
        .notice("临政人〔2023〕4号")
        .await
        .unwrap();
    assert_eq!(seed(confirmed_at).await, latest);
    let before = seed(confirmed_at - 1).await;
    assert_eq!(before.event_count + 1, latest.event_count);
    assert_eq!(before.events.len() + 1, latest.events.len());

    let q = registry.queries();
    let status_on = |on: &'static str| async move {
        let mut v: Vec<(String, ProbationStatus)> = q
            .all_probations(date(on))
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.tenure.person, p.status))
            .collect();
        v.sort();
        v
    };
    use ProbationStatus::*;
    assert_eq!(
        status_on("2024-05-01").await,
        [
            ("刘涌".to_string(), Due),
            ("宋勇".to_string(), Confirmed),
            ("彭晓鹏".to_string(), Due),
            ("来勇".to_string(), Due),
            ("谢纬霖".to_string(), Confirmed),
            ("阎炜".to_string(), Terminated),
        ]
    );
    assert!(status_on("2023-05-01")
        .await
        .iter()
        .all(|(_, s)| *s == Running));
    let due_soon = q.probations(date("2024-04-01"), Some(30)).await.unwrap();
    let mut names: Vec<&str> = due_soon.iter().map(|p| p.tenure.person.as_str()).collect();
    names.sort();
    assert_eq!(names, ["刘涌", "宋勇", "彭晓鹏", "来勇", "谢纬霖"]);
    assert!(q
        .probations(date("2024-03-01"), Some(30))
        .await
        .unwrap()
        .is_empty());
    let due = q.probations(date("2024-05-01"), None).await.unwrap();
    assert_eq!(due.len(), 3);
    assert!(due.iter().all(|p| p.status == Due));
}

async fn succession_chain_across_three_notices(db: TestDb) {
    let registry = seeded(&db).await;
    for (n, day, clauses) in [
        (6, "2024年1月10日", vec!["张一同志任市审计局局长"]),
        (
            7,
            "2024年6月1日",
            vec![
                "张二同志任市审计局局长",
                "免去张一同志市审计局局长职务，退休",
            ],
        ),
        (
            8,
            "2025年1月1日",
            vec![
                "免去张二同志市审计局局长职务（另有任用）",
                "张三同志任市审计局局长",
            ],
        ),
    ] {
        registry
            .ingest(&notice_text(n, day, &clauses), &actor())
            .await
            .unwrap();
    }
    let history = registry
        .queries()
        .post_history("市审计局", Some("局长"))
        .await
        .unwrap();
    /// (person, replaced, replaced by, end cause)
    type Link<'a> = (&'a str, Option<i64>, Option<i64>, Option<&'a str>);
    let chain: Vec<Link> = history
        .iter()
        .map(|t| {
            (
                t.person.as_str(),
                t.replaced_tenure_id,
                t.replaced_by_tenure_id,
                t.end_cause.as_deref(),
            )
        })
        .collect();
    let id = |name: &str| history.iter().find(|t| t.person == name).unwrap().tenure_id;
    assert_eq!(
        chain,
        [
            ("张一", None, Some(id("张二")), Some("retired")),
            (
                "张二",
                Some(id("张一")),
                Some(id("张三")),
                Some("reassigned")
            ),
            ("张三", Some(id("张二")), None, None),
        ]
    );
}

async fn one_seat_posts_flag_a_second_holder(db: TestDb) {
    let registry = seeded(&db).await;
    registry
        .ingest(
            &notice_text(10, "2024年1月10日", &["张一同志任市审计局局长"]),
            &actor(),
        )
        .await
        .unwrap();
    let outcome = registry
        .ingest(
            &notice_text(11, "2024年2月10日", &["李四同志任市审计局局长"]),
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!(outcome[0].warnings.len(), 1, "{:?}", outcome[0].warnings);
    assert!(outcome[0].warnings[0]
        .message
        .contains("one-seat post 临湘市审计局 局长 has 2 holders on 2024-02-10"));
    assert_eq!(
        holder_names(registry.queries(), "市审计局", "局长", "2024-03-01").await,
        ["张一", "李四"]
    );
    let flagged = registry
        .queries()
        .holders("市审计局", "局长", date("2024-03-01"))
        .await
        .unwrap();
    assert!(
        flagged.iter().all(|t| t.seat_conflict),
        "flagged in the answer"
    );
    let alone = registry
        .queries()
        .holders("市审计局", "局长", date("2024-01-20"))
        .await
        .unwrap();
    assert!(alone.len() == 1 && !alone[0].seat_conflict);
    // Deputies have many seats; a successor named before the removal in one notice is fine.
    let outcome = registry
        .ingest(
            &notice_text(
                12,
                "2024年3月10日",
                &[
                    "王五同志任市审计局副局长",
                    "赵六同志任市审计局副局长",
                    "钱七同志任市教育体育局局长",
                ],
            ),
            &actor(),
        )
        .await
        .unwrap();
    assert!(outcome[0].warnings.is_empty(), "{:?}", outcome[0].warnings);
}

async fn corrections_need_the_explicit_flag_and_a_reason(db: TestDb) {
    let registry = seeded(&db).await;
    let changed = seed_text().replace("钟炎夫同志任", "钟炎天同志任");
    let err = registry.ingest(&changed, &actor()).await.unwrap_err();
    assert!(err.to_string().contains("--correct"), "{err}");
    let err = registry
        .ingest_correction(&changed, " ", &actor())
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        RegistryError::InvalidArgument {
            field: "reason",
            ..
        }
    ));
    let out = registry
        .ingest_correction(&changed, "人名笔误", &actor())
        .await
        .unwrap();
    assert!(out[0].corrected);
    assert_eq!(out[0].events_appended, 3);
    // The same correction again is already recorded.
    let again = registry
        .ingest_correction(&changed, "人名笔误", &actor())
        .await
        .unwrap();
    assert!(again[0].already_recorded);
    assert!(registry.database().verify().await.unwrap().is_intact());
}

async fn same_name_persons_are_flagged_merged_and_split(db: TestDb) {
    let registry = seeded(&db).await;
    let liu_linxiang = registry.queries().resolve_person("刘辉").await.unwrap();
    // Another 刘辉, named by another jurisdiction's notice.
    let county = "岳阳县人民政府\n关于刘辉同志任职的通知\n岳政人〔2024〕3号\n\n各乡镇人民政府，县直各单位：\n\n\
                  经县人民政府研究决定：\n\n刘辉同志任县财政局局长。\n\n岳阳县人民政府\n2024年2月1日\n";
    let outcome = registry.ingest(county, &actor()).await.unwrap();
    assert_eq!(outcome[0].warnings.len(), 1, "{:?}", outcome[0].warnings);
    assert!(outcome[0].warnings[0]
        .message
        .starts_with("同名: 刘辉 may be #"));
    let before_merge = head(&registry).await;
    let q = registry.queries();
    let records = q.persons("刘辉").await.unwrap();
    assert_eq!(records.len(), 2);
    let liu_county = records[1].person_id;
    assert_eq!(records[1].jurisdiction.as_deref(), Some("岳阳县"));
    let err = q.holdings("刘辉", date("2024-03-01")).await.unwrap_err();
    assert!(err.to_string().contains("ambiguous"), "{err}");
    let county_posts = q
        .holdings(&format!("刘辉#{liu_county}"), date("2024-03-01"))
        .await
        .unwrap();
    assert_eq!(county_posts.len(), 1);
    assert_eq!(county_posts[0].organization, "岳阳县财政局");

    // An operator decides they are one person.
    registry
        .merge_persons(liu_county, liu_linxiang, "同一人，调任", &actor())
        .await
        .unwrap();
    let both = q.holdings("刘辉", date("2024-03-01")).await.unwrap();
    assert_eq!(both.len(), 2);
    assert!(both.iter().all(|t| t.person_id == liu_linxiang));
    assert_eq!(
        q.resolve_person(&format!("#{liu_county}")).await.unwrap(),
        liu_linxiang,
        "a retired record stands for the one it was merged into"
    );
    let err = registry
        .merge_persons(liu_county, liu_linxiang, "again", &actor())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Conflict(_)), "{err}");
    // Before the merge, the registry knew two records.
    let then = q.as_of_position(before_merge).unwrap();
    assert_eq!(then.persons("刘辉").await.unwrap().len(), 2);
    assert!(then.holdings("刘辉", date("2024-03-01")).await.is_err());

    // And then that the county post was someone else's after all.
    let county_tenure = both
        .iter()
        .find(|t| t.organization == "岳阳县财政局")
        .unwrap();
    let new_id = registry
        .split_person(
            liu_linxiang,
            vec![county_tenure.tenure_id],
            "并非同一人",
            &actor(),
        )
        .await
        .unwrap();
    let split = q
        .holdings(&format!("刘辉#{new_id}"), date("2024-03-01"))
        .await
        .unwrap();
    assert_eq!(split.len(), 1);
    assert_eq!(split[0].organization, "岳阳县财政局");
    assert_eq!(
        q.holdings(&format!("#{liu_linxiang}"), date("2024-03-01"))
            .await
            .unwrap()
            .len(),
        1
    );
    let err = registry
        .split_person(liu_linxiang, vec![999_999], "x", &actor())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::NotFound(_)), "{err}");
    // Merged and split, every tenure keeps its post.
    assert_post_histories_read_every_version(&registry, &[before_merge]).await;
    // All of it is events: the read models rebuild identically.
    let before = export_json(&registry).await;
    registry.projector().rebuild().await.unwrap();
    assert_eq!(export_json(&registry).await, before);
}

async fn a_revocation_recorded_first_applies_when_the_notice_arrives(db: TestDb) {
    let registry = seeded(&db).await;
    let out = registry
        .ingest(&revocation_text(9, 1, "2024年4月1日"), &actor())
        .await
        .unwrap();
    assert!(out[0].revoked_notices.is_empty());
    assert!(
        out[0].notes[0].contains("not recorded"),
        "{:?}",
        out[0].notes
    );
    let late = notice_text(1, "2024年3月1日", &["王五同志任市教育体育局副局长"]);
    let out = registry.ingest(&late, &actor()).await.unwrap();
    assert_eq!(
        out[0].notes,
        ["revoked by 临政人〔2024〕9号, recorded earlier"]
    );
    let notice = registry
        .queries()
        .notice("临政人〔2024〕1号")
        .await
        .unwrap();
    assert_eq!(notice.revoked_by.as_deref(), Some("临政人〔2024〕9号"));
    let holders = registry
        .queries()
        .holders("市教育体育局", "副局长", date("2024-03-02"))
        .await
        .unwrap();
    assert_eq!(
        holders
            .iter()
            .map(|t| t.person.as_str())
            .collect::<Vec<_>>(),
        ["钟炎夫"],
        "the revoked appointment does not hold"
    );
}

/// Every question the registry answers, asked of the latest state after each step of a
/// history — generated notices, a correction, a revocation, an operator's confirmation, a
/// same-name merge — and asked again at the end as of the position that answer reported, is
/// answered the same: what the read models hold as of a position never changes once the
/// checkpoint has passed it (ARCHITECTURE.md, `queries.rs`).
async fn every_answer_is_the_same_again_as_of_the_position_it_reported(db: TestDb) {
    const ORGS: [&str; 5] = [
        "市财政局",
        "市交通运输局",
        "市教育体育局",
        "市统计局",
        "市商务局",
    ];
    const NAMES: [&str; 7] = [
        "王伟伟",
        "李芳伟",
        "张娜伟",
        "陈伟芳",
        "宋勇",
        "李琪",
        "刘辉",
    ];
    async fn answers(q: &Queries) -> (i64, Vec<String>) {
        fn shown<T: std::fmt::Debug>(
            answer: Result<T, renmian::projections::QueryError>,
        ) -> String {
            answer.map_or_else(|e| format!("error: {e}"), |v| format!("{v:?}"))
        }
        let listed = q
            .exactly(|q: Queries| async move { q.notices(0, 1000, true).await })
            .await
            .unwrap();
        let mut shown_all = vec![format!("{:?}", listed.value)];
        let on = date("2024-05-01");
        for org in ORGS {
            shown_all.push(shown(q.post_history(org, None).await));
            shown_all.push(shown(q.holders(org, "副局长", on).await));
        }
        for name in NAMES {
            shown_all.push(shown(q.person_history(name).await));
            shown_all.push(shown(q.persons(name).await));
            shown_all.push(shown(q.holdings(name, on).await));
        }
        shown_all.push(shown(q.all_probations(on).await));
        shown_all.push(shown(q.probations(date("2024-04-01"), Some(30)).await));
        (listed.position, shown_all)
    }

    let registry = seeded(&db).await;
    let mut taken = vec![answers(registry.queries()).await];
    for n in 1..=12 {
        registry
            .ingest(&generated_notice(n), &actor())
            .await
            .unwrap();
        taken.push(answers(registry.queries()).await);
    }
    let original = notice_text(70, "2024年3月1日", &["王五同志任市教育体育局副局长"]);
    registry.ingest(&original, &actor()).await.unwrap();
    taken.push(answers(registry.queries()).await);
    let corrected = original.replace("王五", "王六");
    registry
        .ingest_correction(&corrected, "姓名有误", &actor())
        .await
        .unwrap();
    taken.push(answers(registry.queries()).await);
    registry
        .revoke("临政人〔2024〕5号", "撤销", None, &actor())
        .await
        .unwrap();
    taken.push(answers(registry.queries()).await);
    confirm_seed_probation(&registry).await;
    taken.push(answers(registry.queries()).await);
    let county = "岳阳县人民政府\n关于刘辉同志任职的通知\n岳政人〔2024〕3号\n\n各乡镇人民政府，县直各单位：\n\n\
                  经县人民政府研究决定：\n\n刘辉同志任县财政局局长。\n\n岳阳县人民政府\n2024年2月1日\n";
    registry.ingest(county, &actor()).await.unwrap();
    taken.push(answers(registry.queries()).await);
    let records = registry.queries().persons("刘辉").await.unwrap();
    registry
        .merge_persons(
            records[1].person_id,
            records[0].person_id,
            "同一人",
            &actor(),
        )
        .await
        .unwrap();
    taken.push(answers(registry.queries()).await);

    let positions: Vec<i64> = taken.iter().map(|(p, _)| *p).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    for (position, then) in &taken {
        let (at, again) = answers(&registry.queries().as_of_position(*position).unwrap()).await;
        assert_eq!(at, *position);
        for (i, (was, is)) in then.iter().zip(&again).enumerate() {
            assert_eq!(was, is, "answer {i} as of {position}");
        }
    }
}
