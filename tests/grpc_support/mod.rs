//! The gRPC test harness: the real server (`run_server`) on 127.0.0.1:0 over a SQLite file
//! of its own, optionally seeded from `seeds/` exactly as `renmian serve` seeds it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use renmian::grpc::pb::registry_client::RegistryClient;
use renmian::grpc::{run_server, seed_if_empty, ServerConfig};
use renmian::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/seeds");

/// A running server; dropping it stops the server and deletes its database.
pub struct TestServer {
    pub addr: SocketAddr,
    pub registry: Arc<Registry>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A seeded server with `config`.
    pub async fn seeded(config: ServerConfig) -> Self {
        Self::start(config, true).await
    }

    pub async fn start(config: ServerConfig, seed: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("renmian.db").display());
        let mut server = Self::on_database(&url, config, seed).await;
        server._dir = Some(dir);
        server
    }

    /// A server over the database at `url` (which the caller keeps alive), e.g. a
    /// PostgreSQL database from `common::TestDb`.
    pub async fn on_database(url: &str, config: ServerConfig, seed: bool) -> Self {
        let registry = Arc::new(Registry::open(url).await.expect("open registry"));
        if seed {
            seed_if_empty(&registry, Path::new(SEEDS))
                .await
                .expect("seed");
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run_server(registry.clone(), listener, config, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            registry,
            stop: Some(stop),
            task: Some(task),
            _dir: None,
        }
    }

    pub async fn channel(&self) -> Channel {
        // The server task may not have reached accept() yet; the listener is already bound,
        // so the connection simply waits in the backlog.
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    pub async fn client(&self) -> RegistryClient<Channel> {
        RegistryClient::new(self.channel().await).max_decoding_message_size(64 * 1024 * 1024)
    }

    /// Position of the last stored event.
    pub async fn head(&self) -> i64 {
        self.registry
            .database()
            .head_position()
            .await
            .expect("head")
    }

    /// Stops the server gracefully and returns how `run_server` ended.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("running");
        tokio::time::timeout(std::time::Duration::from_secs(10), task)
            .await
            .expect("server stops within 10 s")
            .expect("server task")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A GetPostHistory request for every post of `organization`: `page_size` tenures from
/// `page_token`, as of `position` (0: the latest state).
pub fn post_history(
    organization: &str,
    page_size: i32,
    page_token: String,
    position: i64,
) -> renmian::grpc::pb::GetPostHistoryRequest {
    renmian::grpc::pb::GetPostHistoryRequest {
        organization: organization.into(),
        page_size,
        page_token,
        as_of: (position > 0).then_some(renmian::grpc::pb::AsOf {
            position,
            ..Default::default()
        }),
        ..Default::default()
    }
}
