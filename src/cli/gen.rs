//! `renmian gen-notices`: writes a generated workload ([`crate::workload`]) as one text file
//! per notice, for benchmarks and for trying the registry on a realistic history.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::workload::{generate, max_jurisdictions, WorkloadConfig};

#[derive(Debug, Args)]
pub struct GenNoticesArgs {
    /// Fixes the output: the same seed and counts always write the same files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of notices (40000 ≈ 1M events).
    #[arg(long, default_value_t = 1000)]
    pub notices: usize,
    /// Directory to write to (created if missing); files are named `NNNNNN-place-year-n.txt`
    /// and sort in date order, so `renmian ingest DIR/*` replays the history in order.
    #[arg(long)]
    pub out: PathBuf,
    /// Use only the first N built-in jurisdictions (default: all).
    #[arg(long)]
    pub jurisdictions: Option<usize>,
    /// Years the notices span, ending 2024-12-31 (default: about 30 notices per
    /// jurisdiction a year).
    #[arg(long)]
    pub years: Option<u32>,
}

pub fn run(args: &GenNoticesArgs) -> anyhow::Result<ExitCode> {
    let mut config = WorkloadConfig::new(args.seed, args.notices);
    if let Some(j) = args.jurisdictions {
        anyhow::ensure!(
            (1..=max_jurisdictions()).contains(&j),
            "--jurisdictions must be 1..={}",
            max_jurisdictions()
        );
        config.jurisdictions = j;
    }
    if let Some(y) = args.years {
        anyhow::ensure!(y >= 1, "--years must be at least 1");
        config.years = y;
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut files = 0usize;
    let mut events = 0usize;
    for notice in generate(&config) {
        let path = args.out.join(&notice.file_name);
        std::fs::write(&path, &notice.text)
            .with_context(|| format!("cannot write {}", path.display()))?;
        files += 1;
        events += notice.expected_events;
    }
    eprintln!(
        "wrote {files} notices ({events} events when ingested) to {}",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
