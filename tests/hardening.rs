//! Reliability and security hardening, end to end: backup and move (`dump-events` /
//! `load-events`, SQLite → PostgreSQL), tampering (writes refused until acknowledged), TLS
//! on `renmian serve`, and PostgreSQL connection loss (UNAVAILABLE, then self-healing).
//!
//! The CLI is the real binary; servers are the real `run_server` (or the binary for TLS).
//! PostgreSQL parts run when `RENMIAN_TEST_DATABASE_URL` is set and print `SKIPPED` otherwise.

mod common;
mod grpc_support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{notice_text, seed_path, TestDb};
use grpc_support::TestServer;
use renmian::grpc::integrity::WRITES_SERVICE_NAME;
use renmian::grpc::pb;
use renmian::grpc::{ServerConfig, SERVICE_NAME};
use renmian::registry::{Registry, RegistryError};
use renmian::store::{Database, DatabaseOptions};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const BIN: &str = env!("CARGO_BIN_EXE_renmian");

fn renmian(url: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--database")
        .arg(url)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run renmian")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(url: &str, args: &[&str]) -> String {
    let out = renmian(url, args);
    assert!(
        out.status.success(),
        "renmian {args:?} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn own_notice(number: u32, clauses: &[&str]) -> String {
    notice_text(number, "2024年3月1日", clauses)
}

fn ingest_request(text: &str) -> pb::IngestNoticeRequest {
    pb::IngestNoticeRequest {
        text: text.into(),
        request_id: String::new(),
        ..Default::default()
    }
}

/// PostgreSQL when configured, else a second SQLite file (the move is then SQLite → SQLite).
async fn target_db() -> TestDb {
    match TestDb::postgres().await {
        Some(db) => db,
        None => TestDb::sqlite(),
    }
}

// ---------------------------------------------------------------------------------------
// Backup and move

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_moves_from_sqlite_to_postgres_intact() {
    let source = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    ok(&source.url, &["ingest", seed_path().to_str().unwrap()]);
    let notices = [
        own_notice(
            101,
            &["张三同志任市财政局副局长", "免去李四同志市财政局副局长职务"],
        ),
        own_notice(102, &["王五同志任市教育体育局局长（试用期一年）"]),
        own_notice(103, &["赵六同志任市交通运输局副局长"]),
    ];
    for (i, text) in notices.iter().enumerate() {
        let path = dir.path().join(format!("n{i}.txt"));
        std::fs::write(&path, text).unwrap();
        ok(&source.url, &["ingest", path.to_str().unwrap()]);
    }
    let dump = dir.path().join("events.jsonl");
    ok(
        &source.url,
        &["dump-events", "--out", dump.to_str().unwrap()],
    );
    // stdout is the default and gives the same bytes.
    let to_stdout = renmian(&source.url, &["dump-events"]);
    assert!(to_stdout.status.success());
    let dumped = std::fs::read_to_string(&dump).unwrap();
    assert_eq!(to_stdout.stdout, dumped.as_bytes());
    let lines = dumped.lines().count();
    assert!(lines > 31, "seed and three notices: {lines} events");

    let target = target_db().await;
    let loaded = ok(&target.url, &["load-events", dump.to_str().unwrap()]);
    assert!(
        loaded.starts_with(&format!("loaded {lines} events (hash chain verified)")),
        "{loaded}"
    );
    let verified = ok(&target.url, &["verify"]);
    assert_eq!(
        verified,
        format!("ok: hash chain intact over {lines} events (head position {lines})\n")
    );
    if target.backend == "postgres" {
        // The log that grew from nothing in one go has the planner's statistics.
        use sqlx::{Connection, Row};
        let mut conn = sqlx::PgConnection::connect(&target.url).await.unwrap();
        let analysed = sqlx::query(
            "SELECT count(*) AS n FROM pg_statistic WHERE starelid = 'events'::regclass",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert!(
            analysed.get::<i64, _>("n") > 0,
            "events not analysed after load-events"
        );
    }
    assert_eq!(
        ok(&target.url, &["export", "--json"]),
        ok(&source.url, &["export", "--json"]),
        "read models rebuilt on {} equal the source's",
        target.backend
    );
    assert_eq!(
        ok(&target.url, &["dump-events"]),
        dumped,
        "the moved log dumps identically"
    );
    // A database that already holds events is refused.
    let again = renmian(&target.url, &["load-events", dump.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already holds events"),
        "{}",
        stderr(&again)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_with_one_edited_line_is_refused_and_nothing_is_stored() {
    let source = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    ok(&source.url, &["ingest", seed_path().to_str().unwrap()]);
    let dump = dir.path().join("events.jsonl");
    ok(
        &source.url,
        &["dump-events", "--out", dump.to_str().unwrap()],
    );
    let edited: Vec<String> = std::fs::read_to_string(&dump)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, line)| {
            if i == 5 {
                assert!(
                    line.contains("钟炎夫"),
                    "position 6 is 钟炎夫's appointment"
                );
                line.replace("钟炎夫", "钟炎天")
            } else {
                line.to_string()
            }
        })
        .collect();
    let forged = dir.path().join("forged.jsonl");
    std::fs::write(&forged, edited.join("\n") + "\n").unwrap();

    let target = target_db().await;
    let out = renmian(&target.url, &["load-events", forged.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("line 6: event at position 6 does not match its hash (edited)"),
        "{}",
        stderr(&out)
    );
    let db = Database::connect(&target.url).await.unwrap();
    assert_eq!(db.head_position().await.unwrap(), 0, "nothing stored");
    assert!(db.events_after(0, 10).await.unwrap().is_empty());

    // Dropping a line breaks the chain at the next one.
    let mut dropped = edited.clone();
    dropped[5] = std::fs::read_to_string(&dump)
        .unwrap()
        .lines()
        .nth(5)
        .unwrap()
        .to_string();
    dropped.remove(10);
    std::fs::write(&forged, dropped.join("\n")).unwrap();
    let out = renmian(&target.url, &["load-events", forged.to_str().unwrap()]);
    assert!(
        stderr(&out)
            .contains("line 11: event at position 12 is out of order (expected position 11)"),
        "{}",
        stderr(&out)
    );
    // Not a dump at all.
    std::fs::write(&forged, "{\"position\": 1}\n").unwrap();
    let out = renmian(&target.url, &["load-events", forged.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("line 1: not an event"),
        "{}",
        stderr(&out)
    );
    assert_eq!(db.head_position().await.unwrap(), 0, "still nothing stored");
}

// ---------------------------------------------------------------------------------------
// Tampering

/// Edits the payload of the event at `position` behind renmian's back (guards lifted and
/// put back, as an attacker with database access would).
async fn tamper(db: &Database, backend: &str, position: i64, from: &str, to: &str) {
    // One connection for the three statements: another SQLite connection could still hold
    // the schema from before the DROP and refuse the CREATE as a duplicate.
    let mut conn = db.pool().acquire().await.unwrap();
    let edit = format!(
        "UPDATE events SET payload = replace(payload, '{from}', '{to}') WHERE position = {position}"
    );
    let statements = if backend == "sqlite" {
        [
            "DROP TRIGGER events_no_update",
            edit.as_str(),
            "CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN \
             SELECT RAISE(ABORT, 'renmian: events are immutable (UPDATE refused)'); END",
        ]
    } else {
        [
            "ALTER TABLE events DISABLE TRIGGER events_no_update",
            edit.as_str(),
            "ALTER TABLE events ENABLE TRIGGER events_no_update",
        ]
    };
    for sql in statements {
        sqlx::query(sql).execute(&mut *conn).await.unwrap();
    }
}

async fn health_of(server: &TestServer, service: &str) -> ServingStatus {
    let mut health = HealthClient::new(server.channel().await);
    let response = health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap();
    ServingStatus::try_from(response.into_inner().status).unwrap()
}

/// Waits (up to 10 s) until health reports `want` for the write side.
async fn await_writes(server: &TestServer, want: ServingStatus) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while health_of(server, WRITES_SERVICE_NAME).await != want {
        assert!(Instant::now() < deadline, "writes never became {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn tampered_logs_refuse_writes_until_acknowledged(db: TestDb) {
    let config = ServerConfig {
        verify_interval: Duration::from_millis(100),
        ..ServerConfig::default()
    };
    let server = TestServer::on_database(&db.url, config.clone(), true).await;
    let mut client = server.client().await;
    client
        .ingest_notice(ingest_request(&own_notice(
            201,
            &["张三同志任市财政局副局长"],
        )))
        .await
        .unwrap();
    assert_eq!(
        health_of(&server, WRITES_SERVICE_NAME).await,
        ServingStatus::Serving
    );

    tamper(
        server.registry.database(),
        db.backend,
        6,
        "钟炎夫",
        "钟炎天",
    )
    .await;
    await_writes(&server, ServingStatus::NotServing).await;
    let err = client
        .ingest_notice(ingest_request(&own_notice(
            202,
            &["李四同志任市财政局局长"],
        )))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("position 6"), "{}", err.message());
    assert!(
        err.message().contains("verify --acknowledge"),
        "{}",
        err.message()
    );
    // Reads keep working, and the service as a whole is still up.
    assert_eq!(
        health_of(&server, SERVICE_NAME).await,
        ServingStatus::Serving
    );
    client
        .list_holders(pb::ListHoldersRequest {
            organization: "市财政局".into(),
            post: "副局长".into(),
            on_date: "2024-05-01".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let out = renmian(&db.url, &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.starts_with(
            "TAMPERED: first bad position 6: content does not match its hash (edited)"
        ),
        "{text}"
    );
    assert!(text.contains("NOT acknowledged"), "{text}");
    // An acknowledgement needs a reason.
    let out = renmian(&db.url, &["verify", "--acknowledge"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let out = renmian(
        &db.url,
        &[
            "verify",
            "--acknowledge",
            "--reason",
            "row 6 restored from the paper notice",
            "--actor",
            "ops:li",
        ],
    );
    let text = stdout(&out);
    assert!(text.contains("acknowledged: position 6"), "{text}");
    assert!(text.contains("acknowledged 20"), "{text}");
    assert!(
        text.contains("by ops:li: row 6 restored from the paper notice"),
        "{text}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "the chain stays broken for auditors"
    );
    await_writes(&server, ServingStatus::Serving).await;
    client
        .ingest_notice(ingest_request(&own_notice(
            202,
            &["李四同志任市财政局局长"],
        )))
        .await
        .unwrap();

    // Acknowledgements are append-only too.
    for sql in [
        "UPDATE integrity_acknowledgements SET reason = 'nothing happened'",
        "DELETE FROM integrity_acknowledgements",
    ] {
        assert!(
            sqlx::query(sql)
                .execute(server.registry.database().pool())
                .await
                .is_err(),
            "{sql} must be refused"
        );
    }

    // A different tampering needs its own acknowledgement.
    tamper(
        server.registry.database(),
        db.backend,
        3,
        "临湘市",
        "临湘县",
    )
    .await;
    await_writes(&server, ServingStatus::NotServing).await;
    let err = client
        .ingest_notice(ingest_request(&own_notice(
            203,
            &["王五同志任市财政局局长"],
        )))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("position 3"), "{}", err.message());
    let head = server.head().await;

    // A restarted server refuses at once, before any periodic check.
    server.shutdown().await.unwrap();
    let restarted = TestServer::on_database(
        &db.url,
        ServerConfig {
            verify_interval: Duration::from_secs(3600),
            ..config
        },
        false,
    )
    .await;
    let mut client = restarted.client().await;
    let err = client
        .ingest_notice(ingest_request(&own_notice(
            203,
            &["王五同志任市财政局局长"],
        )))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(restarted.head().await, head, "refused writes store nothing");
    let report = restarted.registry.database().audit().await.unwrap();
    assert_eq!(
        report
            .anomalies
            .iter()
            .map(|a| (a.position, a.acknowledgement.is_some()))
            .collect::<Vec<_>>(),
        vec![(3, false), (6, true)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tampered_logs_refuse_writes_until_acknowledged_on_sqlite() {
    tampered_logs_refuse_writes_until_acknowledged(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tampered_logs_refuse_writes_until_acknowledged_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        tampered_logs_refuse_writes_until_acknowledged(db).await;
    }
}

// ---------------------------------------------------------------------------------------
// TLS

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child when dropped, so a failing assertion leaves no server behind.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_speaks_tls_with_a_self_signed_certificate() {
    use tonic::transport::{Certificate, Channel, ClientTlsConfig};

    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, key.cert.pem()).unwrap();
    std::fs::write(&key_path, key.signing_key.serialize_pem()).unwrap();
    let db = TestDb::sqlite();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _server = Child(
        Command::new(BIN)
            .args(["--database", &db.url, "serve", "--listen", &listen])
            .args(["--seeds", grpc_support::SEEDS])
            .arg("--tls-cert")
            .arg(&cert_path)
            .arg("--tls-key")
            .arg(&key_path)
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(key.cert.pem()))
        .domain_name("localhost");
    let endpoint = Channel::from_shared(format!("https://{listen}"))
        .unwrap()
        .tls_config(tls)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let channel = loop {
        match endpoint.connect().await {
            Ok(channel) => break channel,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("TLS server never came up: {e:?}"),
        }
    };
    let mut client = pb::registry_client::RegistryClient::new(channel);
    // The seed is loaded before the server listens, so its answer is there at once.
    let holders = client
        .list_holders(pb::ListHoldersRequest {
            organization: "市教育体育局".into(),
            post: "副局长".into(),
            on_date: "2023-05-01".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(holders.tenures[0].person, "钟炎夫");

    // A plaintext client gets nowhere.
    let plain = Channel::from_shared(format!("http://{listen}")).unwrap();
    let refused = match plain.connect().await {
        Err(_) => true,
        Ok(channel) => pb::registry_client::RegistryClient::new(channel)
            .list_notices(pb::ListNoticesRequest::default())
            .await
            .is_err(),
    };
    assert!(refused, "plaintext must not be served on the TLS port");
    // A key without a certificate is a usage error.
    let out = renmian(&db.url, &["serve", "--tls-key", key_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------------------
// Database loss

#[tokio::test]
async fn an_unreachable_database_is_unavailable_not_internal() {
    let bounds = DatabaseOptions {
        acquire_timeout: Duration::from_millis(500),
        ..DatabaseOptions::default()
    };
    // Port 1 on loopback: nothing listens there.
    let err = Database::connect_with("postgres://postgres@127.0.0.1:1/renmian", bounds)
        .await
        .unwrap_err();
    assert!(
        matches!(RegistryError::from(err), RegistryError::Unavailable(_)),
        "a closed port means unavailable"
    );
    let started = Instant::now();
    let err = Registry::open("postgres://postgres@127.0.0.1:1/renmian")
        .await
        .err()
        .expect("no database there");
    assert!(matches!(err, RegistryError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "bounded by the acquire timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_connection_loss_is_unavailable_and_the_server_recovers() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let admin_url = std::env::var("RENMIAN_TEST_DATABASE_URL").unwrap();
    let name = db
        .url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let server = TestServer::on_database(&db.url, ServerConfig::default(), true).await;
    let mut client = server.client().await;
    let holders = || pb::ListHoldersRequest {
        organization: "市教育体育局".into(),
        post: "副局长".into(),
        on_date: "2023-05-01".into(),
        ..Default::default()
    };
    client.list_holders(holders()).await.unwrap();

    // Kill every backend connection of the server's database, over and over, while calls
    // (reads and writes) run.
    let killer = tokio::spawn(async move {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        let mut killed = 0i64;
        for _ in 0..40 {
            let row: (i64,) = sqlx::query_as(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
            killed += row.0;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        killed
    });
    let (mut ok_calls, mut unavailable) = (0, 0);
    let mut number = 300;
    while !killer.is_finished() {
        number += 1;
        let text = own_notice(number, &["张三同志任市财政局副局长"]);
        for result in [
            client.list_holders(holders()).await.map(|_| ()),
            client
                .ingest_notice(ingest_request(&text))
                .await
                .map(|_| ()),
        ] {
            match result {
                Ok(()) => ok_calls += 1,
                Err(status) if status.code() == Code::Unavailable => unavailable += 1,
                Err(status) => panic!("connection loss must be UNAVAILABLE, got {status:?}"),
            }
        }
    }
    let killed = killer.await.unwrap();
    eprintln!(
        "connection loss: {killed} backends killed, {ok_calls} calls ok, {unavailable} UNAVAILABLE"
    );
    assert!(killed > 0);

    // Once the database is left alone, calls succeed again without a restart.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut consecutive = 0;
    while consecutive < 10 {
        match client.list_holders(holders()).await {
            Ok(_) => consecutive += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert!(Instant::now() < deadline, "the server did not recover");
                consecutive = 0;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    client
        .ingest_notice(ingest_request(&own_notice(
            299,
            &["李四同志任市财政局局长"],
        )))
        .await
        .unwrap();
    // Nothing half-written: the chain is intact and projections equal a rebuild.
    let registry = Registry::open(&db.url).await.unwrap();
    assert!(registry.database().verify().await.unwrap().is_intact());
    let before = renmian::projections::export::export(registry.database())
        .await
        .unwrap();
    registry.projector().rebuild().await.unwrap();
    let after = renmian::projections::export::export(registry.database())
        .await
        .unwrap();
    assert_eq!(before, after);
}
