//! The gRPC server (`renmian serve`): the only module that knows protobuf types.
//!
//! - [`pb`]: code generated from `proto/renmian/v1/registry.proto` by `build.rs`.
//! - [`service`]: the `renmian.v1.Registry` handlers, calling [`Registry`] only.
//! - [`convert`]: domain ⇄ protobuf conversions.
//! - [`error`]: the one table from registry errors to gRPC statuses.
//! - [`paging`]: opaque, request-bound page tokens.
//! - [`auth`] and [`guard`]: bearer tokens, the actor recorded for a caller, the request log.
//! - [`integrity`]: the write gate, closed while the log holds unacknowledged tampering.
//! - [`feed`]: the change feed — wakes WatchEvents followers and catches the read models
//!   up when any process (PostgreSQL NOTIFY) or the poll shows that the log advanced.
//!
//! [`run_server`] takes a bound listener and a shutdown future (as mini-redis does), so tests
//! run the real server on port 0; [`serve`] adds the command-line concerns: opening the
//! database, seeding an empty one, binding, and SIGINT/SIGTERM.
//!
//! Architecture invariant: handlers hold no state of their own beyond the watch
//! notification; every answer comes from the registry, so the CLI and the API agree, and
//! several servers on one PostgreSQL database are interchangeable (see ARCHITECTURE.md,
//! "Scale-out and the road to national scale").

pub mod auth;
mod convert;
pub mod error;
mod feed;
mod guard;
pub mod integrity;
mod paging;
mod service;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::notice;
use crate::registry::{Actor, Registry, RegistryError};
use auth::{AccessPolicy, Token};
use guard::Guarded;
use integrity::{WriteGate, WRITES_SERVICE_NAME};
use service::RegistryService;

/// Code generated from the protobuf definitions.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("renmian.v1");

    /// The encoded descriptor set of `renmian.v1`, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("renmian_descriptor");
}

/// The fully-qualified name of the service, as health checks and reflection know it.
pub const SERVICE_NAME: &str = "renmian.v1.Registry";

/// Actor recorded for the seed notices ingested into an empty database.
const SEED_ACTOR: &str = "seed";

/// `renmian serve`: the gRPC API.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. A non-loopback address needs a token or --insecure-open.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Bearer token for reads, NAME:SECRET or SECRET (named "read"). Reads then need it
    /// (or the write token).
    #[arg(long, env = "RENMIAN_READ_TOKEN", hide_env_values = true, value_parser = auth::parse_read_token)]
    pub read_token: Option<Token>,
    /// Bearer token for writes, NAME:SECRET or SECRET (named "write"). IngestNotice then
    /// needs it; it also grants reads. NAME is recorded as the actor (token:NAME).
    #[arg(long, env = "RENMIAN_WRITE_TOKEN", hide_env_values = true, value_parser = auth::parse_write_token)]
    pub write_token: Option<Token>,
    /// Allow listening on a non-loopback address without any token.
    #[arg(long)]
    pub insecure_open: bool,
    /// Largest accepted request message, in bytes; larger ones get RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Deadline for one unary call, in seconds (streams are not cut).
    #[arg(long, default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// Notices ingested (every .md and .txt file, in name order) when the database has no
    /// notice yet.
    #[arg(long, default_value = "seeds")]
    pub seeds: PathBuf,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// How often the server re-verifies the hash chain, in seconds. Writes are refused while
    /// it finds tampering no operator has acknowledged (`renmian verify --acknowledge`).
    #[arg(long, default_value_t = 300)]
    pub verify_interval_secs: u64,
    /// ListHolders and ListHoldings for dates from January 1st this many years back on are
    /// answered from a copy of the tenures kept in memory (brought up to the database's
    /// projection checkpoint on every call); earlier dates, and 0, go to the database.
    #[arg(long, default_value_t = 5)]
    pub lookups_in_memory_years: u32,
}

/// A TLS certificate chain and its private key, PEM-encoded.
#[derive(Clone)]
pub struct TlsPem {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPem")
            .field("cert_bytes", &self.cert.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// What [`run_server`] needs besides the registry and the listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub access: AccessPolicy,
    /// Allow a non-loopback listener without tokens.
    pub insecure_open: bool,
    pub max_request_bytes: usize,
    pub request_timeout: Duration,
    /// How often the change feed looks at the log head for events written by other
    /// processes: the only source on SQLite, the fallback for a lost notification on
    /// PostgreSQL (where `LISTEN renmian_events` announces them at once). It also retries
    /// a failed projection catch-up.
    pub watch_poll_interval: Duration,
    /// How often the hash chain is re-verified for the write gate.
    pub verify_interval: Duration,
    /// Serve TLS with this identity; plaintext when `None`.
    pub tls: Option<TlsPem>,
    /// ListHolders and ListHoldings for dates from January 1st this many years back on come
    /// from memory (`projections::resident`); 0 keeps them on the database.
    pub lookups_in_memory_years: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            access: AccessPolicy::default(),
            insecure_open: false,
            max_request_bytes: 4 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            watch_poll_interval: Duration::from_millis(250),
            verify_interval: Duration::from_secs(300),
            tls: None,
            lookups_in_memory_years: 5,
        }
    }
}

impl From<&ServeArgs> for ServerConfig {
    fn from(args: &ServeArgs) -> Self {
        Self {
            access: AccessPolicy {
                read: args.read_token.clone(),
                write: args.write_token.clone(),
            },
            insecure_open: args.insecure_open,
            max_request_bytes: args.max_request_bytes,
            request_timeout: Duration::from_secs(args.request_timeout_secs.max(1)),
            verify_interval: Duration::from_secs(args.verify_interval_secs.max(1)),
            lookups_in_memory_years: args.lookups_in_memory_years,
            ..Self::default()
        }
    }
}

impl ServerConfig {
    /// Refuses an open (token-less) server on an address other machines can reach.
    pub fn check_exposure(&self, addr: SocketAddr) -> anyhow::Result<()> {
        if self.access.is_open() && !addr.ip().is_loopback() && !self.insecure_open {
            anyhow::bail!(
                "refusing to listen on {addr} without a token: anyone who can reach it could \
                 read and write the registry. Set --write-token/--read-token (or \
                 RENMIAN_WRITE_TOKEN/RENMIAN_READ_TOKEN), listen on 127.0.0.1, or pass \
                 --insecure-open"
            );
        }
        Ok(())
    }
}

/// `renmian serve`: opens the database, seeds it when empty, and serves until SIGINT or
/// SIGTERM.
pub async fn serve(database: &str, args: ServeArgs) -> anyhow::Result<()> {
    let mut config = ServerConfig::from(&args);
    config.check_exposure(args.listen)?;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        config.tls = Some(TlsPem {
            cert: read(cert)?,
            key: read(key)?,
        });
    }
    let registry = Arc::new(Registry::open(database).await?);
    seed_if_empty(&registry, &args.seeds).await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let served = run_server(registry.clone(), listener, config, shutdown_signal()).await;
    // As the CLI does after every command (on SQLite the last connection to close
    // checkpoints the write-ahead log into the file and removes it), but bounded: a task
    // still holding a connection must not keep a stopping server alive.
    if tokio::time::timeout(CLOSE_WAIT, registry.database().close())
        .await
        .is_err()
    {
        tracing::warn!("the database did not close within {CLOSE_WAIT:?}; exiting anyway");
    }
    served
}

/// Longest wait for the database to close when the server stops.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The first day whose holders and holdings `serve` answers from memory: January 1st,
/// `years` years back; with 0, a date no question reaches.
fn lookups_horizon(years: u32) -> chrono::NaiveDate {
    use chrono::Datelike;
    if years == 0 {
        return chrono::NaiveDate::MAX;
    }
    let year = chrono::Local::now().year() - i32::try_from(years.min(9999)).unwrap_or(9999);
    chrono::NaiveDate::from_ymd_opt(year, 1, 1).unwrap_or(chrono::NaiveDate::MIN)
}

/// Serves the registry on `listener` until `shutdown` completes, then lets in-flight calls
/// finish (open WatchEvents streams end with UNAVAILABLE so clients resume elsewhere).
pub async fn run_server(
    registry: Arc<Registry>,
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    config.check_exposure(addr)?;
    let policy = Arc::new(config.access.clone());
    let limit = config.max_request_bytes;

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(SERVICE_NAME, tonic_health::ServingStatus::Serving)
        .await;
    // Audit before accepting the first write; then the monitor keeps the verdict fresh.
    let gate = WriteGate::default();
    gate.refresh(registry.database(), &health).await?;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    // grpcurl 1.8 speaks only v1alpha reflection.
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let (stop, stopping) = tokio::sync::watch::channel(false);
    // Listening (PostgreSQL) before the first call is accepted: an event committed by any
    // process after this point wakes the followers without waiting for a poll.
    let head_advanced = feed::start(
        registry.clone(),
        config.watch_poll_interval,
        stopping.clone(),
    )
    .await?;
    tokio::spawn(integrity::monitor(
        gate.clone(),
        registry.database().clone(),
        health.clone(),
        config.verify_interval,
        stopping.clone(),
    ));
    // ListHolders and ListHoldings from memory once loaded; until then (or if loading
    // fails) from the database.
    let resident = registry.resident_tenures(lookups_horizon(config.lookups_in_memory_years));
    if config.lookups_in_memory_years > 0 {
        if let Err(e) = resident.load().await {
            tracing::warn!("lookups answered from the database: loading tenures failed: {e}");
        }
        tokio::spawn(feed::follow_log_with_lookups_model(
            resident.clone(),
            head_advanced.subscribe(),
            config.watch_poll_interval,
            stopping.clone(),
        ));
    }
    let registry_service = pb::registry_server::RegistryServer::new(RegistryService::new(
        registry.clone(),
        head_advanced,
        stopping,
        gate,
        resident,
    ))
    .max_decoding_message_size(limit);

    let events = registry.database().head_position().await?;
    tracing::info!(
        address = %addr,
        database = registry.database().display_url(),
        events,
        auth = if config.access.is_open() { "off" } else { "on" },
        tls = config.tls.is_some(),
        writes = WRITES_SERVICE_NAME,
        "renmian gRPC server listening"
    );

    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = Server::builder();
    if let Some(tls) = &config.tls {
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(&tls.cert, &tls.key)))
            .context("invalid TLS certificate or key")?;
    }
    builder
        // HTTP/1.1 and the grpc-web layer let a browser call the API without a proxy; CORS
        // lets a page from another origin do so. Any origin may: access is governed by
        // bearer tokens, which a browser never sends on its own (no cookies are used).
        .accept_http1(true)
        .timeout(config.request_timeout)
        .layer(cors())
        .layer(tonic_web::GrpcWebLayer::new())
        .add_service(Guarded::new(registry_service, policy.clone(), limit))
        .add_service(Guarded::new(health_service, policy.clone(), limit))
        .add_service(Guarded::new(reflection_v1, policy.clone(), limit))
        .add_service(Guarded::new(reflection_v1alpha, policy.clone(), limit))
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = stop.send(true);
        })
        .await?;
    Ok(())
}

/// CORS for gRPC-Web from browser pages: preflights are answered, the gRPC headers and
/// trailers are exposed to the page.
fn cors() -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer, ExposeHeaders};
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods(AllowMethods::list([
            tonic::codegen::http::Method::POST,
            tonic::codegen::http::Method::OPTIONS,
        ]))
        .allow_headers(AllowHeaders::any())
        .expose_headers(ExposeHeaders::list([
            tonic::codegen::http::HeaderName::from_static("grpc-status"),
            tonic::codegen::http::HeaderName::from_static("grpc-message"),
            tonic::codegen::http::HeaderName::from_static("grpc-status-details-bin"),
        ]))
        .max_age(std::time::Duration::from_secs(24 * 60 * 60))
}

/// Ingests every `.md`/`.txt` file of `dir`, in name order, when no notice is recorded yet,
/// so a first `renmian serve` answers questions at once. Idempotent like any ingest.
pub async fn seed_if_empty(registry: &Registry, dir: &Path) -> anyhow::Result<()> {
    if registry.queries().notice_count().await? > 0 {
        return Ok(());
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "no seed notices");
            return Ok(());
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|x| x.to_str()), Some("md" | "txt"))
        })
        .collect();
    files.sort();
    for path in files {
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let text =
            notice::decode(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let outcomes = match registry.ingest(&text, &Actor::named(SEED_ACTOR)).await {
            Ok(outcomes) => outcomes,
            // A stray document without a notice should not keep the server from starting.
            Err(RegistryError::InvalidArgument { message, .. }) => {
                tracing::warn!(file = %path.display(), %message, "seed file skipped");
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("seeding from {}", path.display())),
        };
        tracing::info!(
            file = %path.display(),
            notices = outcomes.len(),
            events = outcomes.iter().map(|o| o.events_appended).sum::<usize>(),
            "seeded"
        );
    }
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (what service managers send).
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// Resolves once the server is asked to stop (or the sender of `stopping` is gone): the
/// shutdown arm of every background task's `select!`.
pub(crate) async fn stop_requested(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}
