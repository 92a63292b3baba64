//! Crash safety: the real `renmian serve` binary receives a stream of ingests and is killed
//! with SIGKILL at random moments, then restarted. After every kill:
//! - `renmian verify` passes (the hash chain is intact);
//! - every notice sent is fully present or absent: its aggregate has 0 events or exactly
//!   1 + its clauses, never a part;
//! - every ingest acknowledged with OK is present;
//! - the read models (after the recovery any start does) equal a fresh `rebuild`.
//!
//! SQLite always; PostgreSQL when `RENMIAN_TEST_DATABASE_URL` is set. Bounded for CI
//! (15 kills per backend); a long run: `RENMIAN_CRASH_KILLS=200 cargo test --release --test
//! crash -- --nocapture` (`RENMIAN_CRASH_SEED` replays a run).

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{expectation, generated_notice, TestDb};
use renmian::grpc::pb;
use renmian::grpc::pb::registry_client::RegistryClient;
use renmian::projections::export::export;
use renmian::registry::Registry;
use sqlx::Row;
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_renmian");
const DEFAULT_KILLS: usize = 15;
/// Concurrent clients streaming ingests at the server.
const WRITERS: usize = 4;

/// A small deterministic generator (xorshift64*), so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Connects to the server, waiting for it to listen (up to 30 s).
async fn connect(addr: &str) -> RegistryClient<Channel> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
        {
            Ok(channel) => return RegistryClient::new(channel),
            Err(e) => {
                assert!(Instant::now() < deadline, "server never listened: {e:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[derive(Default)]
struct Totals {
    kills: usize,
    sent: usize,
    acknowledged: usize,
    events: i64,
}

async fn crash_repeatedly(db: TestDb) -> Totals {
    let kills: usize = std::env::var("RENMIAN_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_KILLS);
    let seed: u64 = std::env::var("RENMIAN_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!(
        "crash test on {}: {kills} kills, RENMIAN_CRASH_SEED={seed}",
        db.backend
    );
    let mut rng = Rng(seed);
    let empty_seeds = tempfile::tempdir().unwrap();
    let next_number = Arc::new(AtomicU32::new(1));
    let acknowledged: Arc<Mutex<Vec<u32>>> = Arc::default();
    let mut totals = Totals::default();
    for cycle in 0..kills {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new(BIN)
            .args(["--database", &db.url, "serve", "--listen", &addr])
            .arg("--seeds")
            .arg(empty_seeds.path())
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn renmian serve");
        // One kill in five lands during start-up (migrations, catch-up); the rest while
        // ingests stream in.
        let early = rng.below(5) == 0;
        let mut writers = Vec::new();
        if early {
            tokio::time::sleep(Duration::from_millis(rng.below(150))).await;
        } else {
            let client = connect(&addr).await;
            for _ in 0..WRITERS {
                let mut client = client.clone();
                let next_number = next_number.clone();
                let acknowledged = acknowledged.clone();
                writers.push(tokio::spawn(async move {
                    loop {
                        let n = next_number.fetch_add(1, Ordering::SeqCst);
                        let request = pb::IngestNoticeRequest {
                            text: generated_notice(n),
                            request_id: String::new(),
                            ..Default::default()
                        };
                        let call = client.ingest_notice(request);
                        match tokio::time::timeout(Duration::from_secs(10), call).await {
                            Ok(Ok(_)) => acknowledged.lock().unwrap().push(n),
                            // The server died under us: this notice may or may not be there.
                            Ok(Err(_)) | Err(_) => return,
                        }
                    }
                }));
            }
            tokio::time::sleep(Duration::from_millis(20 + rng.below(600))).await;
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        // PostgreSQL: a backend of the dead server may still be running the COMMIT it was
        // sent; checking before it ends would race with that commit.
        wait_for_other_sessions_to_end(&db).await;
        totals.kills += 1;
        for writer in writers {
            writer.await.unwrap();
        }
        let sent = next_number.load(Ordering::SeqCst) - 1;
        let acknowledged_so_far = acknowledged.lock().unwrap().clone();
        check_after_crash(&db.url, sent, &acknowledged_so_far, cycle).await;
    }
    let registry = Registry::open(&db.url).await.unwrap();
    totals.sent = (next_number.load(Ordering::SeqCst) - 1) as usize;
    totals.acknowledged = acknowledged.lock().unwrap().len();
    totals.events = registry.database().head_position().await.unwrap();
    eprintln!(
        "crash test on {}: {} kills, {} notices sent, {} acknowledged, {} events stored",
        db.backend, totals.kills, totals.sent, totals.acknowledged, totals.events
    );
    totals
}

/// Waits (up to 30 s) until no other session is connected to the test's PostgreSQL
/// database. Nothing to wait for on SQLite: the killed process's writes died with it.
async fn wait_for_other_sessions_to_end(db: &TestDb) {
    if db.backend != "postgres" {
        return;
    }
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let others: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND backend_type = 'client backend'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if others == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{others} sessions of the killed server are still connected after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    conn.close().await.ok();
}

async fn check_after_crash(url: &str, sent: u32, acknowledged: &[u32], cycle: usize) {
    let verify = Command::new(BIN)
        .args(["--database", url, "verify"])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "cycle {cycle}: verify failed: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    // Opening catches the projections up: the recovery every start performs.
    let registry = Registry::open(url).await.unwrap();
    let rows = sqlx::query("SELECT aggregate_id, COUNT(*) AS n FROM events GROUP BY aggregate_id")
        .fetch_all(registry.database().pool())
        .await
        .unwrap();
    let stored: HashMap<String, i64> = rows
        .iter()
        .map(|r| (r.get::<String, _>("aggregate_id"), r.get::<i64, _>("n")))
        .collect();
    let mut present = 0;
    for n in 1..=sent {
        let (id, expected) = expectation(&generated_notice(n));
        let found = stored.get(&id).copied().unwrap_or(0);
        assert!(
            found == 0 || found == expected,
            "cycle {cycle}: notice {n} is partial: {found} of {expected} events"
        );
        present += usize::from(found > 0);
    }
    for &n in acknowledged {
        let (id, expected) = expectation(&generated_notice(n));
        assert_eq!(
            stored.get(&id).copied(),
            Some(expected),
            "cycle {cycle}: acknowledged notice {n} is missing"
        );
    }
    assert_eq!(
        stored.len(),
        present,
        "cycle {cycle}: no unknown aggregates"
    );
    let projected = export(registry.database()).await.unwrap();
    registry.projector().rebuild().await.unwrap();
    let rebuilt = export(registry.database()).await.unwrap();
    assert_eq!(
        projected, rebuilt,
        "cycle {cycle}: projections differ from a rebuild"
    );
    registry.database().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_ingest_on_sqlite() {
    let totals = crash_repeatedly(TestDb::sqlite()).await;
    assert!(totals.kills >= 1 && totals.acknowledged > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_ingest_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        let totals = crash_repeatedly(db).await;
        assert!(totals.kills >= 1 && totals.acknowledged > 0);
    }
}
