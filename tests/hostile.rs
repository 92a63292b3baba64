//! Hostile input against `IngestNotice`, through the library (`Registry::ingest`, property
//! tests) and through gRPC (hand-made cases): arbitrary strings, NUL bytes, deep garbage,
//! SQL-looking names, a 10,000-clause notice, oversized messages and invalid UTF-8 on the
//! wire. Each gets a clear error or a correct result, and on error the database is unchanged
//! (same head position, same export). The parser's own property tests are in
//! `src/notice/mod.rs`.
//!
//! A bigger run: `RENMIAN_HOSTILE_CASES=5000 cargo test --release --test hostile`.

mod common;
mod grpc_support;

use std::time::{Duration, Instant};

use common::{expectation, notice_text, seed_text, TestDb};
use grpc_support::TestServer;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use renmian::grpc::pb;
use renmian::grpc::ServerConfig;
use renmian::projections::export::export;
use renmian::registry::{Actor, Registry, RegistryError};
use sqlx::Row;
use tonic::Code;

const DEFAULT_CASES: u32 = 256;

/// Fragments hostile inputs are assembled from: notice grammar, SQL, control characters,
/// brackets, mixed scripts.
const FRAGMENTS: &[&str] = &[
    "临湘市人民政府",
    "关于人员职务任免的通知",
    "(临政人〔2024〕900号)",
    "经市人民政府研究决定：",
    "同志任",
    "免去",
    "职务",
    "市财政局",
    "副局长",
    "（试用期一年）",
    "兼",
    "；",
    "。",
    "\n",
    "\r\n",
    "\0",
    "'; DROP TABLE events; --",
    "\" OR 1=1 --",
    "$1",
    "%s%n",
    "（（（（",
    "））））",
    "〔",
    "〕",
    "\u{feff}",
    "\u{202e}",
    "🙂",
    "2024年3月1日",
    "二〇二四年三月一日",
    "张三",
    "李四",
];

async fn state(registry: &Registry) -> (i64, String) {
    let head = registry.database().head_position().await.unwrap();
    let tables = export(registry.database()).await.unwrap();
    (head, serde_json::to_string(&tables).unwrap())
}

/// Ingests `text` and checks the outcome: a clear error with the database unchanged, or
/// every notice stored completely.
async fn check_ingest(registry: &Registry, text: &str) {
    let before = state(registry).await;
    match registry.ingest(text, &Actor::named("hostile")).await {
        Ok(outcomes) => {
            let parsed = registry.parse(text);
            assert_eq!(outcomes.len(), parsed.notices.len());
            for (outcome, notice) in outcomes.iter().zip(&parsed.notices) {
                let stored = registry
                    .database()
                    .aggregate_events("notice", &outcome.notice_id, 0)
                    .await
                    .unwrap();
                assert_eq!(
                    stored.len(),
                    1 + notice.events.len(),
                    "a stored notice is complete"
                );
            }
        }
        Err(RegistryError::InvalidArgument { .. } | RegistryError::Conflict(_)) => {
            assert_eq!(
                state(registry).await,
                before,
                "an error leaves the database unchanged"
            );
        }
        Err(other) => panic!("unclear error for hostile input {text:?}: {other:?}"),
    }
}

fn cases() -> u32 {
    std::env::var("RENMIAN_HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// Arbitrary text: any Unicode, fragments of notices and attacks, or a notice frame around
/// garbage clauses (whose document number repeats across cases, so conflicts occur too).
fn hostile_text() -> impl Strategy<Value = String> {
    let fragments = prop::collection::vec(prop::sample::select(FRAGMENTS), 0..60)
        .prop_map(|parts| parts.concat());
    let framed = (
        0u32..4,
        prop::collection::vec(
            prop_oneof![
                "\\PC{0,40}",
                prop::collection::vec(prop::sample::select(FRAGMENTS), 0..8)
                    .prop_map(|p| p.concat()),
            ],
            1..6,
        ),
    )
        .prop_map(|(n, clauses)| {
            let clauses: Vec<&str> = clauses.iter().map(String::as_str).collect();
            notice_text(900 + n, "2024年3月1日", &clauses)
        });
    prop_oneof![
        any::<String>(),
        "\\PC{0,200}",
        fragments,
        framed,
        prop::collection::vec(any::<char>(), 0..300).prop_map(|c| c.into_iter().collect()),
    ]
}

#[test]
fn hostile_text_gets_a_clear_error_or_a_complete_record() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let db = TestDb::sqlite();
    let registry = runtime.block_on(async {
        let registry = Registry::open(&db.url).await.unwrap();
        registry
            .ingest(&seed_text(), &Actor::named("seed"))
            .await
            .unwrap();
        registry
    });
    let started = Instant::now();
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&hostile_text(), |text| {
            runtime.block_on(check_ingest(&registry, &text));
            Ok(())
        })
        .unwrap();
    let verified = runtime.block_on(registry.database().verify()).unwrap();
    assert!(verified.is_intact());
    eprintln!(
        "hostile text: {} cases in {:.1} s, {} events stored",
        cases(),
        started.elapsed().as_secs_f64(),
        verified.events
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_garbage_and_nul_bytes_end_quickly_with_a_clear_answer() {
    let db = TestDb::sqlite();
    let registry = Registry::open(&db.url).await.unwrap();
    let deep_brackets = format!("{}{}", "（".repeat(100_000), "）".repeat(100_000));
    let nul_notice = notice_text(
        950,
        "2024年3月1日",
        &[
            "张\0三同志任市财政局副局长",
            "\0\0\0",
            "李四同志任市\0财政局局长",
        ],
    );
    let mut cjk_noise = String::new();
    for i in 0..300_000u32 {
        cjk_noise.push(char::from_u32(0x4e00 + (i * 7919) % 20_000).unwrap());
        if i % 97 == 0 {
            cjk_noise.push_str("同志任");
        }
    }
    let many_lines = "免去\n".repeat(100_000);
    for text in [
        deep_brackets,
        nul_notice,
        cjk_noise,
        many_lines,
        "\0".repeat(10_000),
    ] {
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(60), check_ingest(&registry, &text))
            .await
            .expect("no hang");
        eprintln!(
            "{} bytes: {:.2} s",
            text.len(),
            started.elapsed().as_secs_f64()
        );
    }
}

/// The notice used for SQL-looking names: the SQL survives as written in the stored text,
/// the clauses and the organizations, and the tables are all still there.
fn sql_notice() -> String {
    notice_text(
        960,
        "2024年3月1日",
        &[
            "钱七同志任'DROP TABLE events --局副局长",
            "孙八同志任市DROP TABLE events--局局长",
            "Robert'); DROP TABLE events; --同志任市财政局副局长",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sql_looking_names_are_stored_and_returned_verbatim() {
    let server = TestServer::start(ServerConfig::default(), true).await;
    let mut client = server.client().await;
    let text = sql_notice();
    let parsed = renmian::notice::parse(&text);
    let facts = &parsed.notices[0].events;
    assert_eq!(
        facts.len(),
        2,
        "two clauses name an organization made of SQL"
    );
    client
        .ingest_notice(pb::IngestNoticeRequest {
            text: text.clone(),
            request_id: "sql'; DROP TABLE events; --".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let notice = client
        .get_notice(pb::GetNoticeRequest {
            document_number: "临政人〔2024〕960号".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        notice
            .source_text
            .contains("Robert'); DROP TABLE events; --同志任"),
        "the text is stored and returned verbatim"
    );
    for fact in facts {
        let holdings = client
            .list_holdings(pb::ListHoldingsRequest {
                person: fact.person.clone(),
                on_date: "2024-05-01".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            holdings.tenures[0].organization,
            fact.organization_canonical
        );
        assert!(holdings.tenures[0].organization.contains("DROP"));
    }
    let pool = server.registry.database().pool();
    let clauses: Vec<String> = sqlx::query("SELECT clause FROM events WHERE clause LIKE '%DROP%'")
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("clause"))
        .collect();
    assert_eq!(
        clauses,
        vec![
            "钱七同志任'DROP TABLE events --局副局长".to_string(),
            "孙八同志任市DROP TABLE events--局局长".to_string(),
        ]
    );
    assert!(server
        .registry
        .database()
        .verify()
        .await
        .unwrap()
        .is_intact());
    let (_, expected) = expectation(&text);
    assert_eq!(server.head().await, 31 + expected, "seed plus this notice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_thousand_clause_notice_is_recorded_whole_in_bounded_time_and_memory() {
    const SURNAMES: &str = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗";
    const GIVEN: &str = "伟芳娜敏静丽强磊军洋勇艳杰涛明超秀霞平刚桂英华玉兰萍红娟建国志";
    let surnames: Vec<char> = SURNAMES.chars().collect();
    let given: Vec<char> = GIVEN.chars().collect();
    let clauses: Vec<String> = (0..10_000)
        .map(|i| {
            let name: String = [
                surnames[i % surnames.len()],
                given[(i / surnames.len()) % given.len()],
                given[(i / (surnames.len() * given.len())) % given.len()],
            ]
            .iter()
            .collect();
            format!("{name}同志任市财政局副局长")
        })
        .collect();
    let clauses: Vec<&str> = clauses.iter().map(String::as_str).collect();
    let text = notice_text(970, "2024年3月1日", &clauses);
    let db = TestDb::sqlite();
    let registry = Registry::open(&db.url).await.unwrap();
    let rss_before = peak_rss_kib();
    let started = Instant::now();
    let outcomes = registry.ingest(&text, &Actor::named("bulk")).await.unwrap();
    let elapsed = started.elapsed();
    let rss_after = peak_rss_kib();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].events_appended, 10_001);
    assert_eq!(registry.database().head_position().await.unwrap(), 10_001);
    assert_eq!(
        registry
            .queries()
            .notice("临政人〔2024〕970号")
            .await
            .unwrap()
            .event_count,
        10_000
    );
    assert!(elapsed < Duration::from_secs(120), "took {elapsed:?}");
    let growth_mib = rss_after.saturating_sub(rss_before) / 1024;
    assert!(growth_mib < 512, "peak memory grew by {growth_mib} MiB");
    eprintln!(
        "10,000 clauses ({} KiB of text): {:.1} s, peak RSS +{growth_mib} MiB",
        text.len() / 1024,
        elapsed.as_secs_f64()
    );
}

/// Peak resident set size of this process (Linux), in KiB; 0 where unknown.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// `IngestNoticeRequest` with its string field as raw bytes, to put invalid UTF-8 on the wire.
#[derive(Clone, PartialEq, prost::Message)]
struct RawIngestRequest {
    #[prost(bytes = "vec", tag = "1")]
    text: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_grpc_requests_get_clean_errors_and_store_nothing() {
    let server = TestServer::start(
        ServerConfig {
            max_request_bytes: 1024 * 1024,
            ..ServerConfig::default()
        },
        true,
    )
    .await;
    let head = server.head().await;
    let before = serde_json::to_string(&export(server.registry.database()).await.unwrap()).unwrap();

    // Invalid UTF-8 in a string field.
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.unwrap();
    let mut bytes = notice_text(980, "2024年3月1日", &["张三同志任市财政局副局长"]).into_bytes();
    bytes.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    let err = grpc
        .unary(
            tonic::Request::new(RawIngestRequest { text: bytes }),
            tonic::codegen::http::uri::PathAndQuery::from_static(
                "/renmian.v1.Registry/IngestNotice",
            ),
            tonic_prost::ProstCodec::<RawIngestRequest, pb::IngestNoticeResponse>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("UTF-8"), "{}", err.message());

    let mut client = server.client().await;
    // Oversized.
    let huge = "任".repeat(2 * 1024 * 1024);
    let err = client
        .ingest_notice(pb::IngestNoticeRequest {
            text: huge,
            request_id: String::new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    // NUL bytes and garbage through the API.
    for text in ["\0\0\0", "'; DROP TABLE events; --", "（（（（（（（（"] {
        let err = client
            .ingest_notice(pb::IngestNoticeRequest {
                text: text.into(),
                request_id: String::new(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    // A request id far over the limit.
    let err = client
        .ingest_notice(pb::IngestNoticeRequest {
            text: notice_text(981, "2024年3月1日", &["张三同志任市财政局副局长"]),
            request_id: "x".repeat(10_000),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(server.head().await, head, "errors stored nothing");
    let after = serde_json::to_string(&export(server.registry.database()).await.unwrap()).unwrap();
    assert_eq!(after, before, "errors changed no read model");
    // The server is fine afterwards.
    client
        .ingest_notice(pb::IngestNoticeRequest {
            text: notice_text(982, "2024年3月1日", &["李四同志任市财政局局长"]),
            request_id: String::new(),
            ..Default::default()
        })
        .await
        .unwrap();
}
