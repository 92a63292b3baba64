//! Lookups over gRPC (issue 7): `ListHolders` and `ListHoldings` through the real server at
//! concurrency 1, 16 and 64, next to the ceiling of the same machine in the same run: the
//! server's own `grpc.health.v1.Health/Check`, a trivial unary tonic call through the same
//! stack (HTTP/2, auth guard, layers) that touches no database.
//!
//! ```text
//! cargo bench --bench grpc_lookups -- [--notices K] [--requests N] [--seed S]
//!                                     [--database URL] [--connect HOST:PORT]
//! ```
//!
//! The registry is a temp SQLite file holding K generated notices, or `--database` (ingested
//! into only when empty; e.g. the 1M-event file `registry --keep-sqlite` leaves). The server
//! runs in this process, or is a `renmian serve` on that database at `--connect`.
//! Each level sends N requests from as many client tasks as the level, each on its own
//! HTTP/2 connection, and reports requests/s, p50 and p99. Bounded by counts; nothing
//! asserts on time. The rows "…, min_position" ask the same questions for any state at or
//! after the head the bench started at (as a client passes its last ingest's position):
//! answered without the checkpoint read the latest state needs.

/// The allocator of the `renmian` binary (`src/main.rs`), so the bench measures what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use renmian::grpc::pb;
use renmian::grpc::pb::registry_client::RegistryClient;
use renmian::grpc::{run_server, ServerConfig};
use renmian::registry::{Actor, Registry};
use renmian::workload::{generate, WorkloadConfig};
use sqlx::Row;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

struct Options {
    notices: usize,
    requests: usize,
    seed: u64,
    database: Option<String>,
    connect: Option<std::net::SocketAddr>,
}

fn options() -> Options {
    let mut o = Options {
        notices: 1000,
        requests: 6000,
        seed: 7,
        database: None,
        connect: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--notices" => o.notices = value().parse().expect("--notices K"),
            "--requests" => o.requests = value().parse().expect("--requests N"),
            "--seed" => o.seed = value().parse().expect("--seed S"),
            "--database" => o.database = Some(value()),
            "--connect" => o.connect = Some(connect_address(&value())),
            // `cargo bench` passes `--bench` to every bench binary.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

/// `HOST:PORT`, also written as `http://HOST:PORT` (how `renmian serve` prints it). An
/// address that does not parse stops the bench: it used to be dropped silently, and the
/// bench then measured a server in its own process instead of the one asked for.
fn connect_address(arg: &str) -> std::net::SocketAddr {
    let bare = arg.strip_prefix("http://").unwrap_or(arg);
    bare.trim_end_matches('/')
        .parse()
        .unwrap_or_else(|_| panic!("--connect HOST:PORT (an IP address and port), not {arg}"))
}

/// A query a client sends: which RPC and its arguments (the last: `min_position`, 0 for
/// the latest state).
#[derive(Clone)]
enum Lookup {
    Holders(String, String, i64),
    Holdings(String, i64),
    Health,
}

impl Lookup {
    /// The same question asked for any state at or after `position`.
    fn at_least(&self, position: i64) -> Self {
        match self.clone() {
            Self::Holders(organization, post, _) => Self::Holders(organization, post, position),
            Self::Holdings(person, _) => Self::Holdings(person, position),
            Self::Health => Self::Health,
        }
    }
}

#[derive(Clone)]
struct Level {
    requests: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
}

async fn run_level(
    addr: std::net::SocketAddr,
    lookups: Arc<Vec<Lookup>>,
    concurrency: usize,
    requests: usize,
) -> Level {
    let per_task = requests.div_ceil(concurrency);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let lookups = lookups.clone();
        tasks.push(tokio::spawn(async move {
            let channel = Channel::from_shared(format!("http://{addr}"))
                .expect("uri")
                .connect()
                .await
                .expect("connect");
            let mut registry = RegistryClient::new(channel.clone());
            let mut health = HealthClient::new(channel);
            let mut latencies = Vec::with_capacity(per_task);
            let mut errors = 0;
            for i in 0..per_task {
                let lookup = &lookups[(t * 7919 + i * 31) % lookups.len()];
                let begun = Instant::now();
                let ok = match lookup {
                    Lookup::Holders(organization, post, min_position) => registry
                        .list_holders(pb::ListHoldersRequest {
                            organization: organization.clone(),
                            post: post.clone(),
                            on_date: "2024-06-30".into(),
                            min_position: *min_position,
                            ..Default::default()
                        })
                        .await
                        .is_ok(),
                    Lookup::Holdings(person, min_position) => {
                        // A shared name (同名) is answered INVALID_ARGUMENT: an answer too.
                        let r = registry
                            .list_holdings(pb::ListHoldingsRequest {
                                person: person.clone(),
                                on_date: "2024-06-30".into(),
                                min_position: *min_position,
                                ..Default::default()
                            })
                            .await;
                        r.is_ok() || r.is_err_and(|s| s.code() == tonic::Code::InvalidArgument)
                    }
                    Lookup::Health => health
                        .check(HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                        .is_ok(),
                };
                latencies.push(begun.elapsed());
                if !ok {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut all: Vec<Duration> = Vec::with_capacity(requests);
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await.expect("client task");
        all.extend(latencies);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1e3;
    Level {
        requests: all.len(),
        seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bench(options()).await
}

async fn bench(o: Options) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = o
        .database
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("lookups.db").display()));
    let registry = Arc::new(Registry::open(&url).await?);
    let actor = Actor::named("bench");
    if registry.database().head_position().await? == 0 {
        for notice in generate(&WorkloadConfig::new(o.seed, o.notices)) {
            registry.ingest(&notice.text, &actor).await?;
        }
    }
    let events = registry.database().head_position().await?;

    // Real lookups: posts that have holders, and people that hold posts.
    let pool = registry.database().pool();
    let posts = sqlx::query(
        "SELECT DISTINCT organization, post FROM rm_tenures WHERE version_to IS NULL ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await?;
    let holders: Vec<Lookup> = posts
        .iter()
        .map(|r| Ok(Lookup::Holders(r.try_get(0)?, r.try_get(1)?, 0)))
        .collect::<Result<_, sqlx::Error>>()?;
    let people = sqlx::query("SELECT DISTINCT name FROM rm_persons ORDER BY 1")
        .fetch_all(pool)
        .await?;
    let holdings: Vec<Lookup> = people
        .iter()
        .map(|r| Ok(Lookup::Holdings(r.try_get(0)?, 0)))
        .collect::<Result<_, sqlx::Error>>()?;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // --connect ADDR: a `renmian serve` process on the same database answers instead.
    let (addr, server) = match o.connect {
        Some(addr) => (addr, None),
        None => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let server = tokio::spawn(run_server(
                registry.clone(),
                listener,
                ServerConfig::default(),
                async move {
                    let _ = stopped.await;
                },
            ));
            (addr, Some(server))
        }
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("### renmian gRPC lookup benchmark\n");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    println!(
        "- command: `cargo bench --bench grpc_lookups -- {}`",
        args.join(" ")
    );
    println!("- date: {date}; machine: {cpus} CPUs; client and server on the same machine");
    println!(
        "- registry: {}, {events} events, {} posts, {} names; server {}\n",
        registry.database().display_url(),
        holders.len(),
        holdings.len(),
        if o.connect.is_some() {
            "a separate `renmian serve` process"
        } else {
            "in this process"
        }
    );
    println!("| call | concurrency | req/s | p50 ms | p99 ms | errors | req/s vs Health/Check |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    // Warm-up, untimed: the first connection to a fresh server (and its first calls) cost
    // far more than any later one, and made the first ceiling row meaningless.
    run_level(addr, Arc::new(vec![Lookup::Health]), 1, 200).await;
    run_level(addr, Arc::new(holders.clone()), 1, 200).await;
    for concurrency in [1usize, 16, 64] {
        let ceiling = run_level(
            addr,
            Arc::new(vec![Lookup::Health]),
            concurrency,
            o.requests,
        )
        .await;
        let ceiling_rate = ceiling.requests as f64 / ceiling.seconds;
        // `min_position` = the head when the bench started, as a client passes the
        // position its last ingest returned: no checkpoint read per batch of requests.
        let at_head = |lookups: &[Lookup]| -> Vec<Lookup> {
            lookups.iter().map(|l| l.at_least(events.max(1))).collect()
        };
        for (name, lookups) in [
            ("Health/Check (ceiling)", vec![Lookup::Health]),
            ("ListHolders", holders.clone()),
            ("ListHoldings", holdings.clone()),
            ("ListHolders, min_position", at_head(&holders)),
            ("ListHoldings, min_position", at_head(&holdings)),
        ] {
            let level = if name.starts_with("Health") {
                ceiling.clone()
            } else {
                run_level(addr, Arc::new(lookups), concurrency, o.requests).await
            };
            let rate = level.requests as f64 / level.seconds;
            println!(
                "| {name} | {concurrency} | {rate:.0} | {:.2} | {:.2} | {} | {:.0}% |",
                level.p50_ms,
                level.p99_ms,
                level.errors,
                100.0 * rate / ceiling_rate
            );
        }
    }
    let _ = stop.send(());
    if let Some(server) = server {
        server.await??;
    }
    Ok(())
}
