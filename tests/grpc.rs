//! The gRPC API end to end: the real server on port 0 over a fresh SQLite file, seeded from
//! `seeds/` as `renmian serve` does, called through the generated tonic client — every
//! RPC, every error path, streaming resume, auth on and off, health, reflection and
//! gRPC-Web.

mod common;
mod grpc_support;

use std::collections::HashSet;
use std::time::Duration;

use grpc_support::TestServer;
use renmian::grpc::auth::{parse_read_token, parse_write_token, AccessPolicy};
use renmian::grpc::pb;
use renmian::grpc::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

const SEED_NUMBER: &str = "临政人〔2023〕4号";

fn config() -> ServerConfig {
    ServerConfig {
        // Short, so the test for events written behind the server's back stays quick.
        watch_poll_interval: Duration::from_millis(100),
        ..ServerConfig::default()
    }
}

fn holders(org: &str, post: &str, on: &str) -> pb::ListHoldersRequest {
    pb::ListHoldersRequest {
        organization: org.into(),
        post: post.into(),
        on_date: on.into(),
        ..Default::default()
    }
}

/// Events that are personnel facts (what `Notice.event_count` counts).
fn facts(events: &[pb::Event]) -> i64 {
    events
        .iter()
        .filter(|e| e.event_type != "NoticeRecorded")
        .count() as i64
}

fn persons(tenures: &[pb::Tenure]) -> Vec<&str> {
    tenures.iter().map(|t| t.person.as_str()).collect()
}

/// A notice of our own, in the seed's genre (临政人〔2024〕`number`号).
fn own_notice(number: u32, clauses: &[&str]) -> String {
    common::notice_text(number, "2024年3月1日", clauses)
}

fn ingest(text: &str, request_id: &str) -> pb::IngestNoticeRequest {
    pb::IngestNoticeRequest {
        text: text.into(),
        request_id: request_id.into(),
        ..Default::default()
    }
}

fn with_token<T>(message: T, secret: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {secret}").parse().unwrap());
    request
}

/// The field named by the status's BadRequest detail.
fn violated_field(status: &Status) -> String {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = status.get_error_details();
    let bad_request = details
        .bad_request()
        .unwrap_or_else(|| panic!("no BadRequest detail in {status:?}"));
    bad_request.field_violations[0].field.clone()
}

#[tokio::test]
async fn tenure_questions_are_answered_from_the_seed() {
    let server = TestServer::seeded(config()).await;
    let mut client = server.client().await;

    let after = client
        .list_holders(holders("市教育体育局", "副局长", "2023-05-01"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(persons(&after.tenures), ["钟炎夫"]);
    let t = &after.tenures[0];
    assert_eq!(t.organization, "临湘市教育体育局");
    assert_eq!(t.start_date.as_deref(), Some("2023-04-24"));
    assert_eq!(t.end_date, None);
    assert_eq!(t.appointed_by.as_ref().unwrap().notice, SEED_NUMBER);
    assert!(after.next_page_token.is_empty());

    let before = client
        .list_holders(holders("市教育体育局", "副局长", "2023-04-01"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(persons(&before.tenures), ["李琪"]);

    // An alias of 市国防动员办公室, and no date: today.
    let today = client
        .list_holders(holders("市人民防空办公室", "主任", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(persons(&today.tenures), ["刘辉"]);
    assert!(today.tenures[0].concurrent);

    let probations = client
        .list_probations(pb::ListProbationsRequest {
            on_date: "2023-05-01".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(probations.probations.len(), 6, "{probations:?}");
    assert!(probations.probations.iter().all(|p| {
        p.status == pb::probation::Status::Running as i32
            && p.tenure.as_ref().unwrap().probation_months == Some(12)
    }));
    let due_soon = client
        .list_probations(pb::ListProbationsRequest {
            on_date: "2023-05-01".into(),
            due_within_days: Some(30),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        due_soon.probations.is_empty(),
        "a year's probation is not due within 30 days"
    );

    let holdings = client
        .list_holdings(pb::ListHoldingsRequest {
            person: "刘辉".into(),
            on_date: "2023-05-01".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let posts: Vec<_> = holdings
        .tenures
        .iter()
        .map(|t| (t.post.as_str(), t.concurrent))
        .collect();
    assert!(posts.contains(&("主任", true)), "{posts:?}");
    assert!(
        !posts.contains(&("董事长", false)),
        "removed from 董事长: {posts:?}"
    );

    let post_history = client
        .get_post_history(pb::GetPostHistoryRequest {
            organization: "市教育体育局".into(),
            post: "副局长".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(persons(&post_history.tenures), ["李琪", "钟炎夫"]);
    let ended = &post_history.tenures[0];
    assert_eq!(ended.end_date.as_deref(), Some("2023-04-24"));
    assert_eq!(ended.ended_by.as_ref().unwrap().notice, SEED_NUMBER);

    let whole_org = client
        .get_post_history(pb::GetPostHistoryRequest {
            organization: "临湘市教育体育局".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(whole_org.tenures.len() >= 2);

    let person = client
        .get_person_history(pb::GetPersonHistoryRequest {
            person: "刘辉".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut posts: Vec<_> = person.tenures.iter().map(|t| t.post.as_str()).collect();
    posts.sort();
    assert_eq!(posts, ["主任", "董事长"]);
}

#[tokio::test]
async fn small_pages_walk_every_list_exactly_once() {
    let server = TestServer::seeded(config()).await;
    let mut client = server.client().await;
    client
        .ingest_notice(ingest(&own_notice(31, &["张三同志任市财政局副局长"]), ""))
        .await
        .unwrap();

    // ListNotices, one notice per page.
    let mut token = String::new();
    let mut numbers = Vec::new();
    loop {
        let page = client
            .list_notices(pb::ListNoticesRequest {
                page_size: 1,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.notices.len() <= 1);
        for n in &page.notices {
            assert!(
                !n.source_text.is_empty(),
                "notices come with their source text"
            );
            assert_eq!(facts(&n.events), n.event_count, "and with their events");
            numbers.push(n.document_number.clone());
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(numbers, [SEED_NUMBER, "临政人〔2024〕31号"]);

    // GetPostHistory of a whole organization, one tenure per page, against one big page.
    let request = |page_token: String| pb::GetPostHistoryRequest {
        organization: "市人力资源和社会保障局".into(),
        post: String::new(),
        page_size: 1,
        page_token,
        ..Default::default()
    };
    let all = client
        .get_post_history(pb::GetPostHistoryRequest {
            page_size: 1000,
            ..request(String::new())
        })
        .await
        .unwrap()
        .into_inner()
        .tenures;
    assert!(all.len() >= 3, "{all:?}");
    let mut walked = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .get_post_history(request(token))
            .await
            .unwrap()
            .into_inner();
        walked.extend(page.tenures);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(walked, all);

    // ListEvents pages by position: contiguous, no repeats, ending at the head.
    let mut positions = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_events(pb::ListEventsRequest {
                page_size: 7,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        positions.extend(page.events.iter().map(|e| e.position));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let head = server.head().await;
    assert_eq!(positions, (1..=head).collect::<Vec<_>>());
    let tail = client
        .list_events(pb::ListEventsRequest {
            after_position: head - 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        tail.events.iter().map(|e| e.position).collect::<Vec<_>>(),
        [head - 1, head]
    );
    assert!(tail.next_page_token.is_empty());
}

/// Listings read from the database report the position they are exactly as of, and their
/// next_page_token pins the following pages there: a notice recorded between two pages,
/// whose tenure sorts before every other (and so would shift every offset), changes no page
/// of a listing already begun, and as of the position it reported a listing is the same
/// later, on any server. Past the read models, OUT_OF_RANGE.
#[tokio::test]
async fn a_listings_pages_stay_at_the_position_of_its_first() {
    let server = TestServer::seeded(config()).await;
    let mut client = server.client().await;
    let history = |page_size: i32, page_token: String, position: i64| {
        grpc_support::post_history("市教育体育局", page_size, page_token, position)
    };
    let head = server.head().await;
    let whole = client
        .get_post_history(history(1000, String::new(), 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(whole.position, head);
    assert_eq!(persons(&whole.tenures), ["李琪", "钟炎夫"]);
    let first = client
        .get_post_history(history(1, String::new(), 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.position, head);

    let earlier = common::notice_text(52, "2020年1月1日", &["赵六同志任市教育体育局局长"]);
    client.ingest_notice(ingest(&earlier, "")).await.unwrap();
    let mut walked = first.tenures;
    let mut token = first.next_page_token;
    while !token.is_empty() {
        let page = client
            .get_post_history(history(1, token, 0))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.position, head, "every page as of the first");
        walked.extend(page.tenures);
        token = page.next_page_token;
    }
    assert_eq!(walked, whole.tenures);

    let now = client
        .get_post_history(history(1000, String::new(), 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.position, server.head().await);
    assert_eq!(persons(&now.tenures), ["赵六", "李琪", "钟炎夫"]);
    let cited = client
        .get_post_history(history(1000, String::new(), head))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((cited.tenures, cited.position), (whole.tenures, head));

    // ListNotices alike: the notice recorded after its first page is on no later page.
    let head = server.head().await;
    let notices = |page_token: String| pb::ListNoticesRequest {
        page_size: 1,
        page_token,
        ..Default::default()
    };
    let page = client
        .list_notices(notices(String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.position, head);
    client
        .ingest_notice(ingest(&own_notice(53, &["钱七同志任市审计局局长"]), ""))
        .await
        .unwrap();
    let next = client
        .list_notices(notices(page.next_page_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.notices[0].document_number, "临政人〔2024〕52号");
    assert_eq!(next.position, head);
    assert!(
        next.next_page_token.is_empty(),
        "53 came after the listing's position"
    );

    // ListHolders alike, though answered from the lookups model: its next page is read as
    // of the position the first reported, and an appointment with an earlier start, which
    // sorts first, does not move it.
    client
        .ingest_notice(ingest(
            &own_notice(
                54,
                &["张三同志任市财政局副局长", "李四同志任市财政局副局长"],
            ),
            "",
        ))
        .await
        .unwrap();
    let deputies = |page_token: String| pb::ListHoldersRequest {
        page_size: 1,
        page_token,
        ..holders("市财政局", "副局长", "2024-06-30")
    };
    let first = client
        .list_holders(deputies(String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.position, server.head().await);
    let earlier = common::notice_text(55, "2020年1月1日", &["王五同志任市财政局副局长"]);
    client.ingest_notice(ingest(&earlier, "")).await.unwrap();
    let second = client
        .list_holders(deputies(first.next_page_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.position, first.position);
    assert!(second.next_page_token.is_empty());
    let walked: Vec<_> = first.tenures.into_iter().chain(second.tenures).collect();
    assert_eq!(persons(&walked), ["张三", "李四"]);
    let now = client
        .list_holders(holders("市财政局", "副局长", "2024-06-30"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(persons(&now.tenures), ["王五", "张三", "李四"]);
    // Asked as of the first page's position, page by page: the same two, every page
    // reporting that position, though 王五 now sorts first.
    let as_of = |page_token: String| pb::ListHoldersRequest {
        as_of: Some(pb::AsOf {
            position: first.position,
            recorded_at: String::new(),
        }),
        ..deputies(page_token)
    };
    let mut cited = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_holders(as_of(token))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.position, first.position);
        cited.extend(page.tenures);
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(cited, walked);

    // The other listings report theirs; past the read models is out of range.
    let head = server.head().await;
    let persons = client
        .list_persons(pb::ListPersonsRequest {
            name: "李琪".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let person_history = client
        .get_person_history(pb::GetPersonHistoryRequest {
            person: "李琪".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let probations = client
        .list_probations(pb::ListProbationsRequest {
            on_date: "2023-05-01".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        [
            persons.position,
            person_history.position,
            probations.position
        ],
        [head; 3]
    );
    let err = client
        .get_post_history(history(10, String::new(), head + 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
}

#[tokio::test]
async fn get_notice_returns_events_warnings_and_source_text() {
    let server = TestServer::seeded(config()).await;
    let mut client = server.client().await;
    let notice = client
        .get_notice(pb::GetNoticeRequest {
            document_number: SEED_NUMBER.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(notice.title, "临湘市人民政府关于袁飞龙等同志职务任免的通知");
    assert_eq!(notice.issuer, "临湘市人民政府");
    assert_eq!(notice.issued_on, "2023-04-24");
    assert_eq!(notice.actor, "seed");
    assert!(notice
        .source_text
        .contains("钟炎夫同志任市教育体育局副局长"));
    assert_eq!(notice.events[0].event_type, "NoticeRecorded");
    assert_eq!(facts(&notice.events), notice.event_count);
    assert_eq!(
        notice.event_count, 30,
        "the seed notice's clauses say 30 things"
    );
    assert!(notice.revocation.is_none());
    let sequences: Vec<i64> = notice.events.iter().map(|e| e.sequence).collect();
    assert_eq!(
        sequences,
        (1..=notice.events.len() as i64).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn parse_notice_is_a_dry_run() {
    let server = TestServer::seeded(config()).await;
    let mut client = server.client().await;
    let head = server.head().await;
    let parsed = client
        .parse_notice(pb::ParseNoticeRequest {
            text: own_notice(
                32,
                &[
                    "王五同志任市审计局局长（试用期一年）",
                    "免去赵六同志市审计局局长职务",
                ],
            ),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(parsed.notices.len(), 1);
    let n = &parsed.notices[0];
    assert_eq!(n.document_number, "临政人〔2024〕32号");
    assert_eq!(n.issued_on, "2024-03-01");
    assert_eq!(n.content_hash.len(), 64);
    let kinds: Vec<_> = n
        .events
        .iter()
        .map(|e| (e.person.as_str(), e.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("王五", pb::parsed_event::Kind::Appointment as i32),
            ("赵六", pb::parsed_event::Kind::Removal as i32)
        ]
    );
    assert_eq!(n.events[0].probation_months, Some(12));
    assert_eq!(server.head().await, head, "parsing stores nothing");
}

#[tokio::test]
async fn ingest_is_idempotent_on_the_notice_and_on_the_request_id() {
    let server = TestServer::seeded(config()).await;
    let mut client = server.client().await;
    let text = own_notice(
        41,
        &["张三同志任市财政局副局长", "免去李四同志市财政局副局长职务"],
    );

    let head = server.head().await;
    let first = client
        .ingest_notice(ingest(&text, "req-1"))
        .await
        .unwrap()
        .into_inner();
    let r = &first.results[0];
    assert!(!r.already_recorded);
    assert_eq!(r.document_number, "临政人〔2024〕41号");
    assert_eq!(r.events_appended, 3, "the notice and its two clauses");
    assert_eq!(r.first_position, Some(head + 1));
    assert_eq!(r.last_position, Some(head + 3));
    let head = server.head().await;

    // The same notice again, by another request or by none: already recorded.
    for request_id in ["", "req-2", "req-1"] {
        let again = client
            .ingest_notice(ingest(&text, request_id))
            .await
            .unwrap()
            .into_inner();
        assert!(again.results[0].already_recorded, "{request_id:?}");
        assert_eq!(again.results[0].events_appended, 0);
        assert_eq!(again.results[0].notice_id, r.notice_id);
    }
    assert_eq!(server.head().await, head);

    // The request id with other content is refused, and nothing is stored.
    let other = own_notice(42, &["王五同志任市审计局局长"]);
    let err = client
        .ingest_notice(ingest(&other, "req-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("request_id"));
    assert_eq!(server.head().await, head);

    // The same document number with other content: refused, nothing stored.
    let conflicting = own_notice(41, &["张三同志任市财政局局长"]);
    let err = client
        .ingest_notice(ingest(&conflicting, ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(server.head().await, head);

    // The other text under a fresh request id is fine.
    let ok = client
        .ingest_notice(ingest(&other, "req-3"))
        .await
        .unwrap()
        .into_inner();
    assert!(!ok.results[0].already_recorded);
    assert!(server.head().await > head);
}

/// `min_position`: an ingest's last position read back at once (read-your-writes), a
/// write behind the server's back reaching such answers without any request asking for the
/// latest state (the lookups model follows the log at every poll), a position past the
/// read models refused with OUT_OF_RANGE, and bad values named.
#[tokio::test]
async fn lookups_may_ask_for_at_least_a_position() {
    let db = common::TestDb::sqlite();
    let server = TestServer::on_database(&db.url, config(), true).await;
    let mut client = server.client().await;
    let at_least = |org: &str, post: &str, position: i64| pb::ListHoldersRequest {
        min_position: position,
        ..holders(org, post, "2024-06-30")
    };
    let written = client
        .ingest_notice(ingest(&own_notice(61, &["王五同志任市统计局局长"]), ""))
        .await
        .unwrap()
        .into_inner();
    let position = written.results[0].last_position.expect("appended");
    let chief = client
        .list_holders(at_least("市统计局", "局长", position))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(persons(&chief.tenures), ["王五"]);
    assert!(
        chief.position >= position,
        "{} < {position}",
        chief.position
    );
    let holdings = client
        .list_holdings(pb::ListHoldingsRequest {
            person: "王五".into(),
            on_date: "2024-06-30".into(),
            min_position: position,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(holdings.tenures.len(), 1);
    assert!(holdings.position >= position);
    // As of a past point: exactly as of that point.
    let past = client
        .list_holders(pb::ListHoldersRequest {
            as_of: Some(pb::AsOf {
                position,
                recorded_at: String::new(),
            }),
            ..holders("市统计局", "局长", "2024-06-30")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (persons(&past.tenures), past.position),
        (vec!["王五"], position)
    );

    // Another process records a deputy; asked for at least position 1, the server answers
    // as its model stands, and the model follows the log by itself.
    let elsewhere = renmian::registry::Registry::open(&db.url)
        .await
        .expect("open");
    elsewhere
        .ingest(
            &own_notice(62, &["赵六同志任市统计局副局长"]),
            &common::actor(),
        )
        .await
        .expect("ingest elsewhere");
    let started = std::time::Instant::now();
    loop {
        match client.list_holders(at_least("市统计局", "副局长", 1)).await {
            Ok(r) if persons(&r.get_ref().tenures) == ["赵六"] => {
                // The answer reflects the other process's write.
                assert_eq!(r.get_ref().position, server.head().await);
                break;
            }
            Ok(_) => {}
            Err(status) if status.code() == Code::NotFound => {}
            Err(status) => panic!("{status:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the lookups model did not follow the log"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let head = server.head().await;
    let err = client
        .list_holders(at_least("市统计局", "局长", head + 1000))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(
        err.message().contains(&(head + 1000).to_string()),
        "{err:?}"
    );
    let info = err
        .get_error_details()
        .error_info()
        .cloned()
        .expect("ErrorInfo");
    assert_eq!(info.reason, "POSITION_NOT_REACHED");
    assert_eq!(info.metadata["position"], (head + 1000).to_string());
    assert_eq!(info.metadata["checkpoint"], head.to_string());
    let err = client
        .list_holders(at_least("市统计局", "局长", -1))
        .await
        .unwrap_err();
    assert_eq!(violated_field(&err), "min_position");
    let err = client
        .list_holdings(pb::ListHoldingsRequest {
            person: "王五".into(),
            min_position: position,
            as_of: Some(pb::AsOf {
                position,
                recorded_at: String::new(),
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_field(&err), "min_position");
}

#[tokio::test]
async fn bad_requests_name_the_field_and_unknowns_are_not_found() {
    let server = TestServer::seeded(config()).await;
    let mut client = server.client().await;
    let head = server.head().await;

    let err = client
        .list_holders(holders("市教育体育局", "副局长", "2023/05/01"))
        .await
        .unwrap_err();
    assert_eq!(violated_field(&err), "on_date");
    let err = client
        .list_probations(pb::ListProbationsRequest {
            on_date: "yesterday".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_field(&err), "on_date");
    let err = client
        .list_holders(holders("  ", "副局长", "2023-05-01"))
        .await
        .unwrap_err();
    assert_eq!(violated_field(&err), "organization");
    let err = client
        .list_holdings(pb::ListHoldingsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(violated_field(&err), "person");
    let err = client
        .get_notice(pb::GetNoticeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(violated_field(&err), "document_number");

    let prose = "这是一段没有任免内容的文字。";
    let err = client.ingest_notice(ingest(prose, "r")).await.unwrap_err();
    assert_eq!(violated_field(&err), "text");
    let err = client
        .parse_notice(pb::ParseNoticeRequest { text: prose.into() })
        .await
        .unwrap_err();
    assert_eq!(violated_field(&err), "text");
    let err = client
        .ingest_notice(ingest(
            &own_notice(51, &["张三同志任市财政局副局长"]),
            &"x".repeat(200),
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_field(&err), "request_id");

    let err = client
        .list_notices(pb::ListNoticesRequest {
            page_size: 1,
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_field(&err), "page_token");
    let err = client
        .list_notices(pb::ListNoticesRequest {
            page_size: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_field(&err), "page_size");
    // A token from another list is refused too, not silently reinterpreted.
    let events_token = client
        .list_events(pb::ListEventsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    assert!(!events_token.is_empty());
    let err = client
        .list_notices(pb::ListNoticesRequest {
            page_size: 1,
            page_token: events_token,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_field(&err), "page_token");
    let err = client
        .list_events(pb::ListEventsRequest {
            after_position: -5,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_field(&err), "after_position");

    let err = client
        .get_notice(pb::GetNoticeRequest {
            document_number: "临政人〔1999〕1号".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .list_holders(holders("市不存在局", "局长", "2023-05-01"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .get_person_history(pb::GetPersonHistoryRequest {
            person: "无名氏".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    assert_eq!(server.head().await, head, "no failed call stored anything");
}

#[tokio::test]
async fn oversized_requests_are_refused_with_resource_exhausted() {
    let server = TestServer::start(
        ServerConfig {
            max_request_bytes: 16 * 1024,
            ..config()
        },
        false,
    )
    .await;
    let mut client = server.client().await;
    let clauses: Vec<String> = (0..600)
        .map(|i| format!("张{i}同志任市财政局副局长"))
        .collect();
    let clauses: Vec<&str> = clauses.iter().map(String::as_str).collect();
    let text = own_notice(61, &clauses);
    assert!(text.len() > 16 * 1024);
    let err = client.ingest_notice(ingest(&text, "")).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(server.head().await, 0);
    // The connection is still good, and a small request still works.
    let small = own_notice(62, &["张三同志任市财政局副局长"]);
    client.ingest_notice(ingest(&small, "")).await.unwrap();
    assert!(server.head().await > 0);
}

/// Reads `n` events from a stream, failing if they do not arrive within 10 s.
async fn take(stream: &mut tonic::Streaming<pb::Event>, n: usize) -> Vec<pb::Event> {
    let mut events = Vec::with_capacity(n);
    while events.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("event within 10 s")
            .expect("stream open")
            .expect("event");
        events.push(next);
    }
    events
}

/// Asserts nothing more arrives on the stream for a while (several poll intervals).
async fn assert_quiet(stream: &mut tonic::Streaming<pb::Event>) {
    let extra = tokio::time::timeout(Duration::from_millis(600), stream.next()).await;
    assert!(extra.is_err(), "unexpected extra item: {extra:?}");
}

#[tokio::test]
async fn watch_events_resumes_without_gaps_or_duplicates() {
    let server = TestServer::seeded(config()).await;
    let mut client = server.client().await;
    let head = server.head().await;
    assert!(head > 10, "the seed yields more than 10 events");

    // Read the first ten, then drop the stream (a disconnect).
    let mut stream = client
        .watch_events(pb::WatchEventsRequest { after_position: 0 })
        .await
        .unwrap()
        .into_inner();
    let first = take(&mut stream, 10).await;
    drop(stream);
    let resume_at = first.last().unwrap().position;

    // Resume after the last one received: the rest of the log, then live events.
    let mut stream = client
        .watch_events(pb::WatchEventsRequest {
            after_position: resume_at,
        })
        .await
        .unwrap()
        .into_inner();
    let rest = take(&mut stream, (head - resume_at) as usize).await;
    assert_quiet(&mut stream).await;

    // A new notice through the API: exactly its events arrive (in-process notification).
    let outcome = client
        .ingest_notice(ingest(&own_notice(71, &["张三同志任市财政局副局长"]), ""))
        .await
        .unwrap()
        .into_inner();
    let appended = outcome.results[0].events_appended as usize;
    let live = take(&mut stream, appended).await;
    assert_quiet(&mut stream).await;

    // A notice written behind the server's back (another process would do the same):
    // the poll finds it.
    let direct = server
        .registry
        .ingest(
            &own_notice(72, &["王五同志任市审计局局长"]),
            &renmian::registry::Actor::named("other-process"),
        )
        .await
        .unwrap();
    let polled = take(&mut stream, direct[0].events_appended).await;
    assert_quiet(&mut stream).await;
    assert!(polled.iter().all(|e| e.actor == "other-process"));

    let positions: Vec<i64> = first
        .iter()
        .chain(&rest)
        .chain(&live)
        .chain(&polled)
        .map(|e| e.position)
        .collect();
    assert_eq!(positions, (1..=server.head().await).collect::<Vec<_>>());
    // The stream carries the stored events verbatim, hash chain included.
    assert!(first
        .windows(2)
        .all(|w| w[1].prev_hash == w[0].hash && w[1].position == w[0].position + 1));
}

#[tokio::test]
async fn shutdown_ends_watch_streams_and_the_server() {
    let server = TestServer::seeded(config()).await;
    let mut client = server.client().await;
    let head = server.head().await;
    let mut stream = client
        .watch_events(pb::WatchEventsRequest {
            after_position: head,
        })
        .await
        .unwrap()
        .into_inner();
    server.shutdown().await.expect("clean shutdown");
    let end = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("the stream ends");
    match end {
        Some(Err(status)) => assert_eq!(status.code(), Code::Unavailable),
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }
}

fn policy(read: Option<&str>, write: Option<&str>) -> ServerConfig {
    ServerConfig {
        access: AccessPolicy {
            read: read.map(|t| parse_read_token(t).unwrap()),
            write: write.map(|t| parse_write_token(t).unwrap()),
        },
        ..config()
    }
}

#[tokio::test]
async fn tokens_guard_writes_and_reads_and_name_the_actor() {
    let server = TestServer::seeded(policy(Some("audit:r-secret-1"), Some("etl:w-secret-2"))).await;
    let mut client = server.client().await;
    let read = || holders("市教育体育局", "副局长", "2023-05-01");

    let err = client.list_holders(read()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = client
        .list_holders(with_token(read(), "wrong"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    for secret in ["r-secret-1", "w-secret-2"] {
        let ok = client
            .list_holders(with_token(read(), secret))
            .await
            .unwrap();
        assert_eq!(persons(&ok.into_inner().tenures), ["钟炎夫"]);
    }
    let err = client
        .watch_events(pb::WatchEventsRequest { after_position: 0 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "streams are guarded too");

    let head = server.head().await;
    let text = own_notice(81, &["张三同志任市财政局副局长"]);
    let err = client.ingest_notice(ingest(&text, "")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = client
        .ingest_notice(with_token(ingest(&text, ""), "r-secret-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(server.head().await, head, "refused writes store nothing");

    let ok = client
        .ingest_notice(with_token(ingest(&text, "req-auth"), "w-secret-2"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.results[0].events_appended, 2);
    let events = server
        .registry
        .database()
        .events_after(head, 100)
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    for e in &events {
        assert_eq!(e.actor, "token:etl");
        assert!(!e.metadata.contains("w-secret-2") && !e.payload.contains("w-secret-2"));
        assert!(
            e.metadata.contains("req-auth"),
            "the request id is kept: {}",
            e.metadata
        );
    }

    // Health and reflection stay open.
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_write_token_alone_leaves_reads_open() {
    let server = TestServer::seeded(policy(None, Some("w-only"))).await;
    let mut client = server.client().await;
    client
        .list_holders(holders("市教育体育局", "副局长", "2023-05-01"))
        .await
        .unwrap();
    let text = own_notice(82, &["张三同志任市财政局副局长"]);
    let err = client.ingest_notice(ingest(&text, "")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    client
        .ingest_notice(with_token(ingest(&text, ""), "w-only"))
        .await
        .unwrap();
    let head = server.head().await;
    let last = server
        .registry
        .database()
        .events_after(head - 1, 1)
        .await
        .unwrap();
    assert_eq!(
        last[0].actor, "token:write",
        "a bare secret is named after its flag"
    );
}

#[tokio::test]
async fn without_tokens_calls_are_anonymous() {
    let server = TestServer::seeded(config()).await;
    let mut client = server.client().await;
    let head = server.head().await;
    client
        .ingest_notice(ingest(&own_notice(83, &["张三同志任市财政局副局长"]), ""))
        .await
        .unwrap();
    let events = server
        .registry
        .database()
        .events_after(head, 100)
        .await
        .unwrap();
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e.actor == "grpc:anonymous"));
}

#[tokio::test]
async fn an_open_server_refuses_a_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("r.db").display());
    let registry = std::sync::Arc::new(renmian::registry::Registry::open(&url).await.unwrap());
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = renmian::grpc::run_server(registry.clone(), listener, config(), async {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--insecure-open"), "{err}");

    // With a token, or with --insecure-open, it serves (and stops on the signal).
    for config in [
        policy(None, Some("w")),
        ServerConfig {
            insecure_open: true,
            ..config()
        },
    ] {
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        renmian::grpc::run_server(registry.clone(), listener, config, async {})
            .await
            .expect("serves, then stops at once");
    }
}

#[tokio::test]
async fn health_reports_serving() {
    let server = TestServer::start(config(), false).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    for service in ["", "renmian.v1.Registry"] {
        let response = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            response.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    let err = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_the_services() {
    use tonic_reflection::pb::{v1, v1alpha};
    let server = TestServer::start(config(), false).await;

    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected reflection answer {response:?}");
    };
    let names: HashSet<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains("renmian.v1.Registry"), "{names:?}");
    assert!(names.contains("grpc.health.v1.Health"), "{names:?}");

    // v1alpha (what grpcurl 1.8 uses) can also describe our file.
    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "renmian.v1.Registry".into(),
            ),
        ),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    assert!(
        matches!(
            response.message_response,
            Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(ref f))
                if !f.file_descriptor_proto.is_empty()
        ),
        "{response:?}"
    );
}

/// A browser's call: gRPC-Web over HTTP/1.1, spoken by hand on a plain TCP socket.
#[tokio::test]
async fn grpc_web_answers_over_http1() {
    use prost::Message;
    let server = TestServer::seeded(config()).await;
    let message = holders("市教育体育局", "副局长", "2023-05-01").encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let head = format!(
        "POST /renmian.v1.Registry/ListHolders HTTP/1.1\r\nhost: {}\r\n\
         content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\naccept: application/grpc-web+proto\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        server.addr,
        body.len()
    );
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&body).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut response))
        .await
        .expect("answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: application/grpc-web+proto"),
        "{text}"
    );
    assert!(text.contains("钟炎夫"), "{text}");
    // gRPC-Web puts the trailers in the body.
    assert!(text.contains("grpc-status:0"), "{text}");
}

/// A page from another origin: the browser's CORS preflight is answered, and the real call
/// carries the headers that let the page read the gRPC status.
#[tokio::test]
async fn grpc_web_from_another_origin_passes_cors() {
    let server = TestServer::seeded(config()).await;
    let exchange = |request: String| async move {
        let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut response))
            .await
            .expect("answer within 10 s")
            .unwrap();
        String::from_utf8_lossy(&response).to_ascii_lowercase()
    };
    let preflight = exchange(format!(
        "OPTIONS /renmian.v1.Registry/ListHolders HTTP/1.1\r\nhost: {}\r\n\
         origin: https://hr.example.gov.cn\r\naccess-control-request-method: POST\r\n\
         access-control-request-headers: content-type,x-grpc-web,authorization\r\n\
         connection: close\r\n\r\n",
        server.addr
    ))
    .await;
    assert!(preflight.starts_with("http/1.1 200"), "{preflight}");
    assert!(
        preflight.contains("access-control-allow-origin: *"),
        "{preflight}"
    );
    assert!(
        preflight.contains("access-control-allow-methods"),
        "{preflight}"
    );
    assert!(
        preflight.contains("authorization")
            || preflight.contains("access-control-allow-headers: *"),
        "{preflight}"
    );
    use prost::Message;
    let message = holders("市教育体育局", "副局长", "2023-05-01").encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let head = format!(
        "POST /renmian.v1.Registry/ListHolders HTTP/1.1\r\nhost: {}\r\norigin: https://hr.example.gov.cn\r\n\
         content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        server.addr,
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(&body);
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    socket.write_all(&request).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut response))
        .await
        .expect("answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&response).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("access-control-allow-origin: *"), "{text}");
    assert!(text.contains("access-control-expose-headers"), "{text}");
    assert!(text.contains("grpc-status:0"), "{text}");
}
