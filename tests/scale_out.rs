//! Scale-out on PostgreSQL: two servers, each with its own `Registry` and connection pool
//! (as two `renmian serve` processes would have), over one database.
//!
//! `two_servers_on_one_database_agree_and_both_feeds_deliver_everything`:
//! 1. events appended by a third process that never projects them (`append_verbatim`, like a
//!    writer that died before its catch-up) reach both servers' read models through the
//!    change feed;
//! 2. 8 clients per server ingest concurrently — distinct notices and shared ones that eight
//!    clients (four per server) send at once — and after each acknowledged ingest read the
//!    notice back from the *other* server;
//! 3. afterwards: positions 1..=N gap-free, every notice's events exactly once, the chain
//!    verifies, the projection checkpoint is at the head, both servers answer ListEvents,
//!    ListNotices, ListHolders and ListHoldings identically, and a WatchEvents follower on
//!    each server received every position exactly once, in order;
//! 4. an event written through one server reaches a follower on the other within 10 s with
//!    the poll effectively off (one hour), so by NOTIFY alone — also after the listening
//!    connections were killed (`pg_terminate_backend`), which exercises reconnect + resync.
//!
//! `a_listing_paged_through_both_servers_stays_at_the_position_of_its_first`: pages asked of
//! the two servers in turn, notices ingested through both between them, are all answered as
//! of the first page's position and make up the listing as of it on either server.
//!
//! `append_throughput_one_vs_two_writers` (ignored; prints numbers, asserts no timing):
//! `RENMIAN_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!  cargo test --release --test scale_out -- --ignored --nocapture`
//!
//! PostgreSQL only: skipped, with a message, without `RENMIAN_TEST_DATABASE_URL`.

mod common;
mod grpc_support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{expectation, generated_notice, TestDb};
use grpc_support::TestServer;
use renmian::grpc::pb;
use renmian::grpc::pb::registry_client::RegistryClient;
use renmian::grpc::ServerConfig;
use renmian::registry::{Actor, Registry};
use renmian::store::{Database, NewEvent};
use sqlx::Row;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

const CLIENTS_PER_SERVER: u32 = 8;
const DEFAULT_ROUNDS: u32 = 4;
const SHARED_BASE: u32 = 60_000;
/// Notices each sent by four clients of each server in the same round.
const SHARED: u32 = 8;
const ORPHAN: u32 = 90_001;
/// How long an event may take to reach a follower or a read model on the other server.
const ARRIVAL: Duration = Duration::from_secs(10);

type Client = RegistryClient<Channel>;

/// The poll is the fallback; at one hour it never fires during the test, so every
/// cross-server wake-up below comes from NOTIFY (or the listener's resync).
fn config() -> ServerConfig {
    ServerConfig {
        watch_poll_interval: Duration::from_secs(3600),
        ..ServerConfig::default()
    }
}

/// Ingests `text`, retrying ABORTED (too many concurrent writers to one notice); returns the
/// events this call appended.
async fn ingest(client: &mut Client, text: &str) -> i64 {
    loop {
        let request = pb::IngestNoticeRequest {
            text: text.to_string(),
            ..Default::default()
        };
        match client.ingest_notice(request).await {
            Ok(response) => {
                return response
                    .into_inner()
                    .results
                    .iter()
                    .map(|r| r.events_appended)
                    .sum()
            }
            Err(status) if status.code() == Code::Aborted => continue,
            Err(status) => panic!("unexpected ingest error: {status:?}"),
        }
    }
}

async fn get_notice(client: &mut Client, id: &str) -> Result<pb::Notice, tonic::Status> {
    client
        .get_notice(pb::GetNoticeRequest {
            document_number: id.to_string(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

/// A follower from position 0 that stops once it has seen `target`.
fn follow(mut client: Client, target: Arc<AtomicI64>) -> tokio::task::JoinHandle<Vec<i64>> {
    tokio::spawn(async move {
        let mut stream = client
            .watch_events(pb::WatchEventsRequest { after_position: 0 })
            .await
            .expect("WatchEvents")
            .into_inner();
        let mut positions = Vec::new();
        while positions.last().copied().unwrap_or(0) < target.load(Ordering::SeqCst) {
            match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
                Ok(Some(event)) => positions.push(event.expect("watch event").position),
                Ok(None) => panic!("watch stream ended"),
                Err(_) => {} // idle; look at the target again
            }
        }
        positions
    })
}

/// The next event of `stream`, within [`ARRIVAL`].
async fn next_within(
    stream: &mut tonic::Streaming<pb::Event>,
    what: &str,
) -> (pb::Event, Duration) {
    let started = Instant::now();
    let event = tokio::time::timeout(ARRIVAL, stream.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: no event within {ARRIVAL:?}"))
        .expect("stream open")
        .expect("event");
    (event, started.elapsed())
}

/// Every event through ListEvents, page by page.
async fn all_events(client: &mut Client) -> Vec<pb::Event> {
    let mut events = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_events(pb::ListEventsRequest {
                page_size: 500,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .expect("ListEvents")
            .into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return events;
        }
        page_token = page.next_page_token;
    }
}

/// A comparable rendering of an answer: the message, or the status code and message.
fn answer<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> String {
    match result {
        Ok(response) => format!("{:?}", response.into_inner()),
        Err(status) => format!("{:?}: {}", status.code(), status.message()),
    }
}

/// Both servers' answers to the same read queries.
async fn read_answers(client: &mut Client) -> Vec<String> {
    let mut answers = Vec::new();
    answers.push(format!("{:?}", all_events(client).await));
    answers.push(answer(
        client
            .list_notices(pb::ListNoticesRequest {
                page_size: 1000,
                ..Default::default()
            })
            .await,
    ));
    for (organization, post) in [
        ("市财政局", "副局长"),
        ("市交通运输局", "局长"),
        ("市教育体育局", "副局长"),
        ("市统计局", "副局长"),
        ("市商务局", "局长"),
    ] {
        for on_date in ["2024-02-01", "2024-05-01"] {
            answers.push(answer(
                client
                    .list_holders(pb::ListHoldersRequest {
                        organization: organization.into(),
                        post: post.into(),
                        on_date: on_date.into(),
                        ..Default::default()
                    })
                    .await,
            ));
        }
    }
    for person in ["王伟伟", "李芳伟", "张娜伟", "陈伟芳", "周丽伟"] {
        answers.push(answer(
            client
                .list_holdings(pb::ListHoldingsRequest {
                    person: person.into(),
                    on_date: "2024-05-01".into(),
                    ..Default::default()
                })
                .await,
        ));
    }
    answers
}

/// Waits until `id` is readable on `client` (the change feed projected it).
async fn readable_within(client: &mut Client, id: &str, what: &str) -> Duration {
    let started = Instant::now();
    loop {
        match get_notice(client, id).await {
            Ok(_) => return started.elapsed(),
            Err(status) if status.code() == Code::NotFound => {
                assert!(
                    started.elapsed() < ARRIVAL,
                    "{what}: not readable within {ARRIVAL:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("{what}: {status:?}"),
        }
    }
}

/// `min_position` across servers: the position an ingest through B returned, asked of A,
/// is answered with that write at once (A's lookups model is brought there); a later write
/// through B reaches A's answers for an older position by NOTIFY alone (the poll is off and
/// no request asks for the latest state).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_acknowledged_by_one_server_is_read_back_through_another() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let a = TestServer::on_database(&db.url, config(), false).await;
    let b = TestServer::on_database(&db.url, config(), false).await;
    let (mut a, mut b) = (a.client().await, b.client().await);
    let on_date = "2024-06-30".to_string();
    let holders = |post: &str, min_position| pb::ListHoldersRequest {
        organization: "市统计局".into(),
        post: post.into(),
        on_date: on_date.clone(),
        min_position,
        ..Default::default()
    };
    let persons = |r: pb::ListHoldersResponse| -> Vec<String> {
        r.tenures.into_iter().map(|t| t.person).collect()
    };
    for (round, chief) in (0u32..).zip(["王一", "李二", "张三"]) {
        let written = b
            .ingest_notice(pb::IngestNoticeRequest {
                text: common::notice_text(
                    9400 + round,
                    "2024年3月1日",
                    &[&format!("{chief}同志任市统计局局长")],
                ),
                ..Default::default()
            })
            .await
            .expect("ingest through B")
            .into_inner();
        let position = written.results[0].last_position.expect("appended");
        let answer = a
            .list_holders(holders("局长", position))
            .await
            .expect("read back through A")
            .into_inner();
        let seen = answer.position;
        assert!(seen >= position, "round {round}: {seen} < {position}");
        assert!(
            persons(answer).contains(&chief.to_string()),
            "round {round}: position {position} acknowledged by B, not in A's answer"
        );
        // The position A's answer reflects, asked of B: never an older answer.
        let again = b
            .list_holders(holders("局长", seen))
            .await
            .expect("monotonic read through B")
            .into_inner();
        assert!(again.position >= seen);
        assert!(persons(again).contains(&chief.to_string()));
    }
    let started = Instant::now();
    b.ingest_notice(pb::IngestNoticeRequest {
        text: common::notice_text(9410, "2024年4月1日", &["赵六同志任市统计局副局长"]),
        ..Default::default()
    })
    .await
    .expect("ingest through B");
    loop {
        match a.list_holders(holders("副局长", 1)).await {
            Ok(r) => {
                if persons(r.into_inner()) == ["赵六"] {
                    break;
                }
            }
            Err(status) if status.code() == Code::NotFound => {}
            Err(status) => panic!("{status:?}"),
        }
        assert!(
            started.elapsed() < ARRIVAL,
            "A's lookups model did not follow B's write"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "scale-out: a write through B in A's answers for an older position after {:?}",
        started.elapsed()
    );
}

/// A listing paged through both servers in turn while notices are ingested through both
/// between its pages: every page is answered as of the position of the first, whichever
/// server answers it, and together they are the listing as of that position on either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_paged_through_both_servers_stays_at_the_position_of_its_first() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let a = TestServer::on_database(&db.url, config(), false).await;
    let b = TestServer::on_database(&db.url, config(), false).await;
    let mut clients = [a.client().await, b.client().await];
    const NAMES: [&str; 5] = ["一", "二", "三", "四", "五"];
    for (n, name) in NAMES.iter().enumerate() {
        let text = common::notice_text(
            9500 + n as u32,
            &format!("2024年{}月1日", n + 1),
            &[&format!("孙{name}同志任市统计局副局长")],
        );
        ingest(&mut clients[n % 2], &text).await;
    }
    let history = |page_size: i32, page_token: String, position: i64| {
        grpc_support::post_history("市统计局", page_size, page_token, position)
    };
    let listing = |client: &mut Client| {
        let mut client = client.clone();
        async move {
            let mut tokens = vec![String::new()];
            let (mut tenures, mut positions) = (Vec::new(), Vec::new());
            while let Some(token) = tokens.pop() {
                let page = client
                    .get_post_history(history(2, token, 0))
                    .await
                    .expect("a page")
                    .into_inner();
                tenures.extend(page.tenures);
                positions.push(page.position);
                tokens.extend(Some(page.next_page_token).filter(|t| !t.is_empty()));
            }
            (tenures, positions)
        }
    };
    let (all_now, _) = listing(&mut clients[0]).await;
    assert_eq!(all_now.len(), 5, "three pages: {all_now:?}");

    let first = clients[0]
        .get_post_history(history(2, String::new(), 0))
        .await
        .expect("first page, on A")
        .into_inner();
    let at = first.position;
    let (mut tenures, mut token, mut turn) = (first.tenures, first.next_page_token, 1);
    while !token.is_empty() {
        // Between two pages a notice through the other server: one that appoints at the
        // organization before every tenure it has, so that any offset would move.
        let text = common::notice_text(
            9600 + turn as u32,
            "2000年1月1日",
            &[&format!("钱{}同志任市统计局副局长", NAMES[turn])],
        );
        ingest(&mut clients[(turn + 1) % 2], &text).await;
        let page = clients[turn % 2]
            .get_post_history(history(2, token, 0))
            .await
            .expect("next page, on the other server")
            .into_inner();
        assert_eq!(page.position, at, "page {turn}");
        tenures.extend(page.tenures);
        token = page.next_page_token;
        turn += 1;
    }
    for client in &mut clients {
        let cited = client
            .get_post_history(history(1000, String::new(), at))
            .await
            .expect("the listing as of its position")
            .into_inner();
        assert_eq!(cited.tenures, tenures);
    }
    assert_eq!(
        tenures, all_now,
        "what both servers listed before the notices"
    );
    let (latest, positions) = listing(&mut clients[1]).await;
    assert_eq!(
        latest.len(),
        all_now.len() + turn - 1,
        "the new tenures, later"
    );
    assert!(positions.iter().all(|&p| p > at && p == positions[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_database_agree_and_both_feeds_deliver_everything() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let rounds: u32 = std::env::var("RENMIAN_SCALE_OUT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS);
    let started = Instant::now();
    let a = TestServer::on_database(&db.url, config(), false).await;
    let b = TestServer::on_database(&db.url, config(), false).await;
    assert!(
        !Arc::ptr_eq(&a.registry, &b.registry),
        "two registries, two pools"
    );
    let servers = [&a, &b];
    // One answered call per server: it is accepting, so it is listening.
    for server in servers {
        server
            .client()
            .await
            .list_events(pb::ListEventsRequest::default())
            .await
            .expect("server up");
    }

    // 1. A writer in a third process appends and dies before projecting: the feed of each
    //    server learns of it by NOTIFY and catches the shared read models up.
    let orphan_text = generated_notice(ORPHAN);
    let (orphan_id, orphan_events) = expectation(&orphan_text);
    let source = TestDb::sqlite();
    let source_registry = Registry::open(&source.url).await.expect("source registry");
    source_registry
        .ingest(&orphan_text, &Actor::named("elsewhere"))
        .await
        .expect("ingest elsewhere");
    let orphan = source_registry
        .database()
        .events_after(0, i64::MAX)
        .await
        .expect("read source log");
    assert_eq!(orphan.len() as i64, orphan_events);
    let third = Database::connect(&db.url).await.expect("third process");
    third.append_verbatim(&orphan).await.expect("append only");
    third.close().await;
    for (name, server) in [("A", &a), ("B", &b)] {
        let took = readable_within(
            &mut server.client().await,
            &orphan_id,
            &format!("unprojected events on server {name}"),
        )
        .await;
        eprintln!(
            "scale-out: events appended without projection readable on {name} after {took:?}"
        );
    }

    // 2. Followers on both servers, then 8 writers per server.
    let target = Arc::new(AtomicI64::new(i64::MAX));
    let followers = [
        follow(a.client().await, target.clone()),
        follow(b.client().await, target.clone()),
    ];
    let mut writers = Vec::new();
    for (s, (server, other)) in [(&a, &b), (&b, &a)].into_iter().enumerate() {
        for c in 0..CLIENTS_PER_SERVER {
            let mut client = server.client().await;
            let mut other = other.client().await;
            writers.push(tokio::spawn(async move {
                let mut appended = 0;
                let mut numbers = Vec::new();
                for round in 0..rounds {
                    let distinct = 1 + (s as u32 * CLIENTS_PER_SERVER + c) * rounds + round;
                    let shared = SHARED_BASE + (round * 2 + c / 4) % SHARED;
                    for n in [distinct, shared] {
                        let text = generated_notice(n);
                        appended += ingest(&mut client, &text).await;
                        numbers.push(n);
                        // Read-after-acknowledge on the other server: the read models live
                        // in the shared database and the writer projected before answering.
                        let (id, _) = expectation(&text);
                        get_notice(&mut other, &id).await.unwrap_or_else(|e| {
                            panic!("notice {n} acknowledged by one server, not on the other: {e:?}")
                        });
                    }
                }
                (appended, numbers)
            }));
        }
    }
    let mut appended = 0;
    let mut numbers = HashSet::new();
    for writer in writers {
        let (n, seen) = writer.await.expect("writer");
        appended += n;
        numbers.extend(seen);
    }
    let writes_done = started.elapsed();

    // 3. The log, the projections, the answers, the feeds.
    let database = a.registry.database();
    let head = database.head_position().await.expect("head");
    target.store(head, Ordering::SeqCst);
    let positions: Vec<i64> = database
        .events_after(0, i64::MAX)
        .await
        .expect("log")
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(positions, (1..=head).collect::<Vec<_>>(), "gap-free 1..=N");
    let rows = sqlx::query("SELECT aggregate_id, COUNT(*) AS n FROM events GROUP BY aggregate_id")
        .fetch_all(database.pool())
        .await
        .expect("count");
    let stored: HashMap<String, i64> = rows
        .iter()
        .map(|r| (r.get::<String, _>("aggregate_id"), r.get::<i64, _>("n")))
        .collect();
    let mut expected_total = orphan_events;
    for &n in &numbers {
        let (id, expected) = expectation(&generated_notice(n));
        assert_eq!(stored.get(&id), Some(&expected), "notice {n} exactly once");
        expected_total += expected;
    }
    assert_eq!(stored.get(&orphan_id), Some(&orphan_events));
    assert_eq!(stored.len(), numbers.len() + 1, "no other aggregates");
    assert_eq!(head, expected_total, "no duplicate event");
    assert_eq!(
        appended,
        head - orphan_events,
        "writers were told about every event exactly once"
    );
    let report = database.verify().await.expect("verify");
    assert!(report.is_intact(), "{report:?}");
    for server in servers {
        assert_eq!(
            server.registry.projector().checkpoint().await.expect("cp"),
            head,
            "every event projected"
        );
    }
    let answers_a = read_answers(&mut a.client().await).await;
    let answers_b = read_answers(&mut b.client().await).await;
    assert_eq!(answers_a.len(), answers_b.len());
    for (i, (x, y)) in answers_a.iter().zip(&answers_b).enumerate() {
        assert_eq!(x, y, "answer {i} differs between the servers");
    }
    assert!(
        answers_a
            .iter()
            .skip(2)
            .any(|a| a.contains("tenures: [Tenure")),
        "the compared holder queries found someone"
    );
    for (name, follower) in ["A", "B"].into_iter().zip(followers) {
        let seen = tokio::time::timeout(ARRIVAL, follower)
            .await
            .unwrap_or_else(|_| panic!("follower on {name} caught up within {ARRIVAL:?}"))
            .expect("follower task");
        assert_eq!(
            seen, positions,
            "follower on {name}: every position exactly once, in order"
        );
    }
    let feeds_done = started.elapsed();

    // 4. Cross-server delivery by NOTIFY alone, and after the listeners lost their
    //    connections.
    let mut watch_a = a
        .client()
        .await
        .watch_events(pb::WatchEventsRequest {
            after_position: head,
        })
        .await
        .expect("watch A")
        .into_inner();
    let mut via_b = b.client().await;
    let text = generated_notice(ORPHAN + 1);
    let (id, events) = expectation(&text);
    let sent = Instant::now();
    assert_eq!(ingest(&mut via_b, &text).await, events);
    let (event, _) = next_within(&mut watch_a, "write on B, follower on A").await;
    let notified = sent.elapsed();
    assert_eq!(event.position, head + 1);
    let mut last = head + 1;
    for _ in 1..events {
        let (event, _) = next_within(&mut watch_a, "rest of the notice").await;
        last += 1;
        assert_eq!(event.position, last);
    }
    get_notice(&mut a.client().await, &id)
        .await
        .expect("readable on A");

    let killed = sqlx::query(
        "SELECT COUNT(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
         WHERE application_name = $1 AND datname = current_database()",
    )
    .bind(renmian::store::notify::LISTENER_APPLICATION_NAME)
    .fetch_one(database.pool())
    .await
    .expect("terminate listeners")
    .get::<i64, _>("n");
    assert_eq!(killed, 2, "one listening connection per server");
    let text = generated_notice(ORPHAN + 2);
    let (_, events) = expectation(&text);
    let sent = Instant::now();
    assert_eq!(ingest(&mut via_b, &text).await, events);
    let (event, _) = next_within(&mut watch_a, "write on B after the kill").await;
    let resynced = sent.elapsed();
    assert_eq!(event.position, last + 1);
    let reconnected = Instant::now();
    loop {
        let n = sqlx::query(
            "SELECT COUNT(*) AS n FROM pg_stat_activity \
             WHERE application_name = $1 AND datname = current_database()",
        )
        .bind(renmian::store::notify::LISTENER_APPLICATION_NAME)
        .fetch_one(database.pool())
        .await
        .expect("listeners")
        .get::<i64, _>("n");
        if n == 2 {
            break;
        }
        assert!(
            reconnected.elapsed() < ARRIVAL,
            "listeners reconnect within {ARRIVAL:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    eprintln!(
        "scale-out: 2 servers x {CLIENTS_PER_SERVER} writers x {rounds} rounds, {} notices, \
         {head} events; writes done in {:.1} s, both feeds complete at {:.1} s; \
         ingest on B to event on A's follower {notified:?} (by NOTIFY), {resynced:?} right after \
         the listeners were killed; total {:.1} s",
        numbers.len() + 1,
        writes_done.as_secs_f64(),
        feeds_done.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    drop(watch_a);
    a.shutdown().await.expect("A stops");
    b.shutdown().await.expect("B stops");
}

/// Synthetic events for the append benchmark: `count` events of one new aggregate.
fn synthetic(writer: usize, n: usize, count: usize) -> Vec<NewEvent> {
    (0..count)
        .map(|i| NewEvent {
            aggregate_type: "bench".into(),
            aggregate_id: format!("w{writer}-n{n}"),
            sequence: i as i64 + 1,
            event_type: "Bench".into(),
            event_version: "1".into(),
            payload: format!("{{\"n\":{n},\"text\":\"{}\"}}", "市财政局副局长".repeat(8)),
            metadata: "{}".into(),
            actor: "bench".into(),
            document_number: None,
            source_line: None,
            clause: None,
        })
        .collect()
}

/// One measurement on a fresh database: `appends` appends of `events_per_append` events
/// from `writers` processes (own pools) with `tasks` concurrent tasks each, with or without
/// the NOTIFY trigger. Seconds taken.
async fn raw_append(
    writers: usize,
    tasks: usize,
    appends: usize,
    events_per_append: usize,
    notify: bool,
) -> f64 {
    let db = TestDb::postgres().await.expect("database");
    let mut databases = Vec::new();
    for _ in 0..writers {
        databases.push(Database::connect(&db.url).await.expect("connect"));
    }
    if !notify {
        sqlx::query("ALTER TABLE event_log_head DISABLE TRIGGER event_log_head_notify")
            .execute(databases[0].pool())
            .await
            .expect("disable the NOTIFY trigger");
    }
    let share = appends / writers / tasks;
    let started = Instant::now();
    let mut running = Vec::new();
    for (w, database) in databases.iter().enumerate() {
        for t in 0..tasks {
            let database = database.clone();
            running.push(tokio::spawn(async move {
                for n in 0..share {
                    let events = synthetic(w, t * share + n, events_per_append);
                    database.append(&events).await.expect("append");
                }
            }));
        }
    }
    for task in running {
        task.await.expect("append task");
    }
    let secs = started.elapsed().as_secs_f64();
    let head = databases[0].head_position().await.expect("head");
    assert_eq!(head as usize, share * writers * tasks * events_per_append);
    assert!(databases[0].verify().await.expect("verify").is_intact());
    for database in &databases {
        database.close().await;
    }
    secs
}

/// One measurement on a fresh database: `notices` generated notices ingested (parse, append,
/// project) by `writers` registries (own pools) with `tasks` concurrent tasks each.
async fn ingest_run(writers: usize, tasks: usize, notices: usize) -> (f64, i64) {
    let db = TestDb::postgres().await.expect("database");
    let mut registries = Vec::new();
    for _ in 0..writers {
        registries.push(Arc::new(Registry::open(&db.url).await.expect("open")));
    }
    let per_task = notices / writers / tasks;
    let started = Instant::now();
    let mut running = Vec::new();
    for (w, registry) in registries.iter().enumerate() {
        for t in 0..tasks {
            let registry = registry.clone();
            running.push(tokio::spawn(async move {
                for k in 0..per_task {
                    let n = 1 + ((w * tasks + t) * per_task + k) as u32;
                    loop {
                        match registry
                            .ingest(&generated_notice(n), &Actor::named("bench"))
                            .await
                        {
                            Ok(_) => break,
                            Err(renmian::registry::RegistryError::Contention) => continue,
                            Err(e) => panic!("ingest: {e}"),
                        }
                    }
                }
            }));
        }
    }
    for task in running {
        task.await.expect("ingest task");
    }
    let secs = started.elapsed().as_secs_f64();
    let head = registries[0]
        .database()
        .head_position()
        .await
        .expect("head");
    (secs, head)
}

fn median_and_best(mut rates: Vec<f64>) -> (f64, f64) {
    rates.sort_by(f64::total_cmp);
    (rates[rates.len() / 2], rates[rates.len() - 1])
}

/// Append and ingest throughput with one, two and four writer processes (separate pools)
/// on one PostgreSQL database. Each configuration runs `RENMIAN_BENCH_REPEAT` times (3),
/// interleaved with the others so background load spreads evenly; prints the median and
/// the best rate. Asserts only correctness.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn append_throughput_one_vs_two_writers() {
    if std::env::var("RENMIAN_TEST_DATABASE_URL").is_err() {
        common::say_skipped("on PostgreSQL: RENMIAN_TEST_DATABASE_URL is not set");
        return;
    }
    let repeat: usize = std::env::var("RENMIAN_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    // (writer processes, tasks each, appends in all, events per append): notice-sized
    // appends from more and more concurrent writers, then the same events in big batches.
    // The last two rows repeat two of the first without the NOTIFY trigger: its cost.
    let appends = [
        (1usize, 1usize, 3200usize, 4usize, true),
        (1, 8, 3200, 4, true),
        (2, 8, 3200, 4, true),
        (4, 8, 3200, 4, true),
        (1, 1, 64, 200, true),
        (2, 8, 64, 200, true),
        (1, 1, 3200, 4, false),
        (2, 8, 3200, 4, false),
    ];
    let ingests = [(1usize, 8usize, 400usize), (2, 8, 400)];
    let mut append_rates = vec![Vec::new(); appends.len()];
    let mut ingest_rates = vec![Vec::new(); ingests.len()];
    let mut ingest_events = vec![0; ingests.len()];
    for _ in 0..repeat {
        for (i, &(writers, tasks, n, per, notify)) in appends.iter().enumerate() {
            let secs = raw_append(writers, tasks, n, per, notify).await;
            append_rates[i].push(n as f64 / secs);
        }
        for (i, &(writers, tasks, notices)) in ingests.iter().enumerate() {
            let (secs, events) = ingest_run(writers, tasks, notices).await;
            ingest_rates[i].push(notices as f64 / secs);
            ingest_events[i] = events;
        }
    }
    eprintln!(
        "PostgreSQL append throughput, {} cores, {repeat} runs each (median / best):",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for (&(writers, tasks, n, per, notify), rates) in appends.iter().zip(append_rates) {
        let (median, best) = median_and_best(rates);
        let trigger = if notify {
            ""
        } else {
            " WITHOUT the NOTIFY trigger"
        };
        eprintln!(
            "  raw append, {writers} process(es) x {tasks} task(s), {n} appends of {per} \
             events{trigger}: {median:.0} / {best:.0} appends/s = {:.0} / {:.0} events/s",
            median * per as f64,
            best * per as f64
        );
    }
    for ((&(writers, tasks, notices), rates), events) in
        ingests.iter().zip(ingest_rates).zip(ingest_events)
    {
        let (median, best) = median_and_best(rates);
        let per = events as f64 / notices as f64;
        eprintln!(
            "  ingest (parse + append + project), {writers} process(es) x {tasks} tasks, \
             {notices} notices ({events} events): {median:.0} / {best:.0} notices/s = \
             {:.0} / {:.0} events/s",
            median * per,
            best * per
        );
    }
}
