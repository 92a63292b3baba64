// Scratch (not committed): IngestNotice over gRPC from K concurrent clients.
use renmian::grpc::pb;
use renmian::grpc::pb::registry_client::RegistryClient;
use std::time::Instant;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let addr = args[1].clone();
    let dir = args[2].clone();
    let from: usize = args[3].parse()?;
    let count: usize = args[4].parse()?;
    let streams: usize = args[5].parse()?;
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let texts: Vec<String> = files[from..from + count]
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let texts = std::sync::Arc::new(texts);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..streams {
        let texts = texts.clone();
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = RegistryClient::connect(format!("http://{addr}"))
                .await
                .unwrap();
            let mut events = 0i64;
            for i in (s..texts.len()).step_by(streams) {
                let r = c
                    .ingest_notice(pb::IngestNoticeRequest {
                        text: texts[i].clone(),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                events += r.results.iter().map(|r| r.events_appended).sum::<i64>();
            }
            events
        }));
    }
    let mut events = 0;
    for t in tasks {
        events += t.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{count} notices, {events} events in {secs:.2} s: {:.0} events/s",
        events as f64 / secs
    );
    Ok(())
}
