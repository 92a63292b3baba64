//! gRPC server (in progress).

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: String,
}

pub async fn serve(_database: &str, _args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("serve is not built yet")
}
