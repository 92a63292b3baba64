//! Load: 32 concurrent gRPC clients (each on its own connection) mix ingests — distinct
//! notices, and shared ones that eight clients send at once — with queries (ListHolders,
//! ListHoldings, ListEvents), while three WatchEvents followers follow the log from position
//! 0. Afterwards: no error but the expected ones (ABORTED under contention, retried), no
//! duplicate or missing event (each notice has exactly 1 + its clauses events, and the
//! appended counts reported to clients add up to the log), positions gap-free 1..=N, and
//! every follower received every position exactly once, in order.
//!
//! SQLite always; PostgreSQL when `RENMIAN_TEST_DATABASE_URL` is set. A bigger run:
//! `RENMIAN_LOAD_ROUNDS=50 cargo test --release --test load -- --nocapture`.

mod common;
mod grpc_support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{expectation, generated_notice, TestDb};
use grpc_support::TestServer;
use renmian::grpc::pb;
use renmian::grpc::ServerConfig;
use sqlx::Row;
use tokio_stream::StreamExt;
use tonic::Code;

const CLIENTS: u32 = 32;
const FOLLOWERS: usize = 3;
/// Shared notices; in each round, four of them are each sent by eight clients at once.
const SHARED: u32 = 12;
const SHARED_BASE: u32 = 50_000;
const DEFAULT_ROUNDS: u32 = 6;

#[derive(Default)]
struct ClientReport {
    calls: u64,
    aborted_retries: u64,
    appended: i64,
}

/// Ingests `text`, retrying the expected ABORTED (too many concurrent writers to one notice).
async fn ingest(
    client: &mut pb::registry_client::RegistryClient<tonic::transport::Channel>,
    text: String,
    report: &mut ClientReport,
) {
    loop {
        report.calls += 1;
        let request = pb::IngestNoticeRequest {
            text: text.clone(),
            request_id: String::new(),
            ..Default::default()
        };
        match client.ingest_notice(request).await {
            Ok(response) => {
                report.appended += response
                    .into_inner()
                    .results
                    .iter()
                    .map(|r| r.events_appended)
                    .sum::<i64>();
                return;
            }
            Err(status) if status.code() == Code::Aborted => report.aborted_retries += 1,
            Err(status) => panic!("unexpected error under load: {status:?}"),
        }
    }
}

/// The ListHolders every client sends: 市财政局's 副局长 on 2024-05-01.
fn holders_request() -> pb::ListHoldersRequest {
    pb::ListHoldersRequest {
        organization: "市财政局".into(),
        post: "副局长".into(),
        on_date: "2024-05-01".into(),
        ..Default::default()
    }
}

async fn run_load(server: TestServer, backend: &str) {
    let rounds: u32 = std::env::var("RENMIAN_LOAD_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS);
    let started = Instant::now();
    // Followers stop once they have seen `target` (set when the clients are done).
    let target = Arc::new(AtomicI64::new(i64::MAX));
    let mut followers = Vec::new();
    for _ in 0..FOLLOWERS {
        let mut client = server.client().await;
        let target = target.clone();
        followers.push(tokio::spawn(async move {
            let mut stream = client
                .watch_events(pb::WatchEventsRequest { after_position: 0 })
                .await
                .unwrap()
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
        }));
    }

    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let mut client = server.client().await;
        clients.push(tokio::spawn(async move {
            let mut report = ClientReport::default();
            for round in 0..rounds {
                let distinct = c * rounds + round + 1;
                ingest(&mut client, generated_notice(distinct), &mut report).await;
                // Eight clients send each shared notice, at about the same time.
                let shared = SHARED_BASE + (round * 4 + c / 8) % SHARED;
                ingest(&mut client, generated_notice(shared), &mut report).await;
                let on_date = "2024-05-01".to_string();
                let holders = client.list_holders(holders_request()).await;
                // 市财政局 is recorded once a notice naming it is: this client's notices so
                // far may not, nor anyone else's yet (seen on PostgreSQL). Afterwards it is.
                if let Err(status) = holders {
                    assert_eq!(status.code(), Code::NotFound, "{status:?}");
                }
                let holdings = client
                    .list_holdings(pb::ListHoldingsRequest {
                        person: "王伟伟".into(),
                        on_date,
                        ..Default::default()
                    })
                    .await;
                // The person may not be recorded yet; that is the only acceptable error.
                if let Err(status) = holdings {
                    assert_eq!(status.code(), Code::NotFound, "{status:?}");
                }
                client
                    .list_events(pb::ListEventsRequest {
                        after_position: i64::from(round) * 10,
                        page_size: 50,
                        ..Default::default()
                    })
                    .await
                    .expect("ListEvents");
                report.calls += 3;
            }
            report
        }));
    }
    let mut reports = Vec::new();
    for client in clients {
        reports.push(client.await.expect("client task"));
    }
    let head = server.head().await;
    target.store(head, Ordering::SeqCst);
    server
        .client()
        .await
        .list_holders(holders_request())
        .await
        .expect("ListHolders once the notices naming 市财政局 are recorded");
    let clients_done = started.elapsed();

    // The log: gap-free positions, and each notice exactly once, complete.
    let events = server
        .registry
        .database()
        .events_after(0, i64::MAX)
        .await
        .unwrap();
    let positions: Vec<i64> = events.iter().map(|e| e.position).collect();
    assert_eq!(positions, (1..=head).collect::<Vec<_>>(), "gap-free 1..=N");
    let rows = sqlx::query("SELECT aggregate_id, COUNT(*) AS n FROM events GROUP BY aggregate_id")
        .fetch_all(server.registry.database().pool())
        .await
        .unwrap();
    let stored: HashMap<String, i64> = rows
        .iter()
        .map(|r| (r.get::<String, _>("aggregate_id"), r.get::<i64, _>("n")))
        .collect();
    let numbers: HashSet<u32> = (1..=CLIENTS * rounds)
        .chain((0..rounds.min(3) * 4).map(|k| SHARED_BASE + k % SHARED))
        .collect();
    let mut expected_total = 0;
    for &n in &numbers {
        let (id, expected) = expectation(&generated_notice(n));
        assert_eq!(stored.get(&id), Some(&expected), "notice {n}");
        expected_total += expected;
    }
    assert_eq!(stored.len(), numbers.len(), "no other aggregates");
    assert_eq!(head, expected_total, "no duplicate event");
    let appended: i64 = reports.iter().map(|r| r.appended).sum();
    assert_eq!(
        appended, head,
        "clients were told about every event exactly once"
    );

    for follower in followers {
        let seen = tokio::time::timeout(Duration::from_secs(60), follower)
            .await
            .expect("followers catch up within 60 s")
            .expect("follower task");
        assert_eq!(seen, positions, "every position exactly once, in order");
    }
    let calls: u64 = reports.iter().map(|r| r.calls).sum();
    let aborted: u64 = reports.iter().map(|r| r.aborted_retries).sum();
    eprintln!(
        "load on {backend}: {CLIENTS} clients x {rounds} rounds, {calls} calls \
         ({aborted} ABORTED retried), {} notices, {head} events, {FOLLOWERS} followers; \
         clients done in {:.1} s, total {:.1} s",
        numbers.len(),
        clients_done.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

fn config() -> ServerConfig {
    ServerConfig {
        watch_poll_interval: Duration::from_millis(100),
        ..ServerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_lose_and_duplicate_nothing_on_sqlite() {
    let server = TestServer::start(config(), false).await;
    run_load(server, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_lose_and_duplicate_nothing_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let server = TestServer::on_database(&db.url, config(), false).await;
    run_load(server, "postgres").await;
}
