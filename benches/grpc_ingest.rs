//! Ingest over gRPC (issue 7): `IngestNotice` from `--streams` clients at once through the
//! real server (`run_server`, as `renmian serve` runs it), next to the same notices through
//! `Registry::ingest` in this process from as many tasks — what the API adds to an ingest.
//! Each path writes into a fresh database already holding the same `--before` notices
//! (loaded with `Registry::ingest_all`), on SQLite and, with `--postgres URL` (a server where
//! a fresh database can be created), on PostgreSQL.
//!
//! ```text
//! cargo bench --bench grpc_ingest -- [--notices K] [--before B] [--streams S] [--seed N]
//!                                    [--postgres URL] [--lookups-in-memory-years Y]
//! ```
//!
//! `--lookups-in-memory-years` is the server's (default 5, as `serve`'s); `0` runs it
//! without the in-memory lookups model and its follower. Bounded by counts; nothing asserts
//! on time.

/// The allocator of the `renmian` binary (`src/main.rs`), so the bench measures what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use renmian::grpc::pb;
use renmian::grpc::pb::registry_client::RegistryClient;
use renmian::grpc::{run_server, ServerConfig};
use renmian::registry::{Actor, Registry};
use renmian::workload::{generate, WorkloadConfig};
use support::{drop_pg, fresh_pg};

struct Options {
    notices: usize,
    before: usize,
    streams: usize,
    seed: u64,
    postgres: Option<String>,
    lookups_in_memory_years: u32,
}

fn options() -> Options {
    let mut o = Options {
        notices: 1000,
        before: 1500,
        streams: 4,
        seed: 1,
        postgres: None,
        lookups_in_memory_years: 5,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--notices" => o.notices = value().parse().expect("--notices K"),
            "--before" => o.before = value().parse().expect("--before B"),
            "--streams" => o.streams = value().parse::<usize>().expect("--streams S").max(1),
            "--seed" => o.seed = value().parse().expect("--seed N"),
            "--postgres" => o.postgres = Some(value()),
            "--lookups-in-memory-years" => {
                o.lookups_in_memory_years = value().parse().expect("--lookups-in-memory-years Y")
            }
            // `cargo bench` passes `--bench` to every bench binary.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

type BoxedIngest = std::pin::Pin<Box<dyn std::future::Future<Output = i64> + Send>>;
/// One stream's way in: sends a notice's text, answers the events it appended.
type Sender = Box<dyn FnMut(String) -> BoxedIngest + Send>;

/// Events appended and seconds taken by one task per sender, notice `i` sent by sender
/// `i mod senders`.
async fn timed(texts: &Arc<Vec<String>>, senders: Vec<Sender>) -> (i64, f64) {
    let streams = senders.len();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (s, mut send) in senders.into_iter().enumerate() {
        let texts = texts.clone();
        tasks.push(tokio::spawn(async move {
            let mut events = 0;
            for text in texts.iter().skip(s).step_by(streams) {
                events += send(text.clone()).await;
            }
            events
        }));
    }
    let mut events = 0;
    for task in tasks {
        events += task.await.expect("ingest task");
    }
    (events, started.elapsed().as_secs_f64())
}

/// A fresh database (SQLite file in `dir`, or on the PostgreSQL server of `admin`) holding
/// the `before` texts.
async fn prepared(
    dir: &std::path::Path,
    admin: Option<&str>,
    what: &str,
    before: &[String],
) -> (String, Arc<Registry>) {
    let url = match admin {
        Some(admin) => fresh_pg(admin, what).await,
        None => format!("sqlite://{}", dir.join(format!("{what}.db")).display()),
    };
    let registry = Arc::new(Registry::open(&url).await.expect("open registry"));
    registry
        .ingest_all(before, &Actor::named("bench"))
        .await
        .expect("load the notices before");
    (url, registry)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bench(options()).await
}

async fn bench(o: Options) -> anyhow::Result<()> {
    let all: Vec<String> = generate(&WorkloadConfig::new(o.seed, o.before + o.notices))
        .map(|n| n.text)
        .collect();
    let (before, measured) = all.split_at(o.before);
    let measured = Arc::new(measured.to_vec());
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    println!("### renmian gRPC ingest benchmark\n");
    println!(
        "- command: `cargo bench --bench grpc_ingest -- {}`",
        args.join(" ")
    );
    println!(
        "- date: {date}; machine: {cpus} CPUs; client and server on the same machine; \
         {} notices on top of {}, {} streams; server lookups model: {} years\n",
        o.notices, o.before, o.streams, o.lookups_in_memory_years
    );
    println!("| backend | path | events | s | events/s | of in-process |");
    println!("|---|---|---:|---:|---:|---:|");
    let dir = tempfile::tempdir()?;
    let mut backends = vec![("SQLite", None)];
    if let Some(admin) = o.postgres.as_deref() {
        backends.push(("PostgreSQL", Some(admin)));
    }
    for (backend, admin) in backends {
        // In process: `Registry::ingest`, one registry shared by the tasks.
        let (local_url, local) = prepared(dir.path(), admin, "local", before).await;
        let senders = (0..o.streams)
            .map(|_| {
                let local = local.clone();
                Box::new(move |text: String| {
                    let local = local.clone();
                    Box::pin(async move {
                        let outcomes = local
                            .ingest(&text, &Actor::named("bench"))
                            .await
                            .expect("ingest");
                        outcomes.iter().map(|r| r.events_appended as i64).sum()
                    }) as BoxedIngest
                }) as Sender
            })
            .collect();
        let (events, seconds) = timed(&measured, senders).await;
        let in_process = events as f64 / seconds;
        println!(
            "| {backend} | `Registry::ingest` | {events} | {seconds:.2} | {in_process:.0} | 100% |"
        );

        // Over gRPC: the server in this process, a client connection per stream.
        let (remote_url, remote) = prepared(dir.path(), admin, "grpc", before).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = ServerConfig {
            lookups_in_memory_years: o.lookups_in_memory_years,
            ..ServerConfig::default()
        };
        let server = tokio::spawn(run_server(remote.clone(), listener, config, async move {
            let _ = stopped.await;
        }));
        let mut senders = Vec::new();
        for _ in 0..o.streams {
            let client = RegistryClient::connect(format!("http://{addr}"))
                .await
                .expect("connect");
            // Answered once the server accepts calls (after its model loaded): not timed.
            client
                .clone()
                .list_events(pb::ListEventsRequest {
                    page_size: 1,
                    ..Default::default()
                })
                .await
                .expect("server up");
            senders.push(Box::new(move |text: String| {
                let mut client = client.clone();
                Box::pin(async move {
                    let response = client
                        .ingest_notice(pb::IngestNoticeRequest {
                            text,
                            ..Default::default()
                        })
                        .await
                        .expect("IngestNotice")
                        .into_inner();
                    response.results.iter().map(|r| r.events_appended).sum()
                }) as BoxedIngest
            }) as Sender);
        }
        let (events, seconds) = timed(&measured, senders).await;
        let rate = events as f64 / seconds;
        println!(
            "| {backend} | `IngestNotice` | {events} | {seconds:.2} | {rate:.0} | {:.0}% |",
            100.0 * rate / in_process
        );
        let _ = stop.send(());
        server.await??;
        if let Some(admin) = admin {
            for url in [&local_url, &remote_url] {
                drop_pg(admin, url).await;
            }
        }
    }
    Ok(())
}
