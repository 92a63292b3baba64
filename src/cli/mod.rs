//! The `renmian` command line: one subcommand per file section below, all going through
//! [`Registry`] so the CLI and the gRPC API give the same answers.
//!
//! Exit codes: 0 success; 1 failure (database, verification); 2 bad input (no notice in the
//! text, malformed argument, conflicting notice).

pub mod table;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::notice;
use crate::projections::{export, queries::parse_date, Probation, Tenure};
use crate::registry::{Actor, IngestOutcome, Registry, RegistryError};
use crate::store::StoredEvent;

/// renmian (任免): an event-sourced registry of government personnel appointments.
#[derive(Debug, Parser)]
#[command(name = "renmian", version, about)]
pub struct Cli {
    /// Database URL: sqlite://PATH (created if missing) or postgres://USER@HOST/DB.
    #[arg(
        long,
        global = true,
        env = "RENMIAN_DATABASE_URL",
        default_value = "sqlite://renmian.db"
    )]
    pub database: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse notices from a file (or - for stdin) and print them as JSON; stores nothing.
    Parse { path: PathBuf },
    /// Record every notice in the given files (all-or-nothing per notice, idempotent).
    Ingest {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Name recorded as the actor of the appended events.
        #[arg(long, default_value = "cli")]
        actor: String,
        #[arg(long)]
        json: bool,
    },
    /// Who holds a post on a date.
    Holders {
        /// Organization as written, canonical or by alias (市教育体育局, 临湘市教育体育局, 市教体局).
        #[arg(long)]
        org: String,
        #[arg(long)]
        post: String,
        #[command(flatten)]
        on: OnDate,
        #[arg(long)]
        json: bool,
    },
    /// Every post a person holds on a date (concurrent posts included).
    Holdings {
        #[arg(long)]
        person: String,
        #[command(flatten)]
        on: OnDate,
        #[arg(long)]
        json: bool,
    },
    /// Tenures of a post, an organization or a person, oldest first, with their notices.
    History {
        #[arg(long, conflicts_with = "person", required_unless_present = "person")]
        org: Option<String>,
        #[arg(long, requires = "org")]
        post: Option<String>,
        #[arg(long)]
        person: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Probations running on a date, and those past their end with no outcome (due).
    Probations {
        #[command(flatten)]
        on: OnDate,
        /// Only probations ending within this many days of --on.
        #[arg(long)]
        due_within: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// Recorded notices, or one notice by document number with its events and warnings.
    Notices {
        /// A document number (文号), e.g. 临政人〔2023〕4号.
        document_number: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The audit log in global order, with provenance.
    Events {
        /// Show events after this position.
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a recorded notice: its facts stop holding, from this record on.
    Revoke {
        /// Document number of the notice to revoke.
        #[arg(long)]
        notice: String,
        #[arg(long)]
        reason: String,
        /// The notice that revokes it, if any.
        #[arg(long)]
        by_notice: Option<String>,
        #[arg(long, default_value = "cli")]
        actor: String,
    },
    /// Deterministic, sorted dump of all read models.
    Export {
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        #[arg(long)]
        csv: bool,
    },
    /// Drop every read model and replay the whole log in global order.
    Rebuild,
    /// Recompute the hash chain; exit 1 naming the first bad position if tampered.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// Run the gRPC server.
    Serve(crate::grpc::ServeArgs),
}

#[derive(Debug, Args)]
pub struct OnDate {
    /// Date (YYYY-MM-DD); defaults to today.
    #[arg(long)]
    on: Option<String>,
}

impl OnDate {
    fn date(&self) -> Result<NaiveDate, RegistryError> {
        match &self.on {
            Some(text) => parse_date("on", text).map_err(Into::into),
            None => Ok(chrono::Local::now().date_naive()),
        }
    }
}

/// Runs the CLI and turns errors into a message on stderr and an exit code.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(err) => {
            let code = match err.downcast_ref::<RegistryError>() {
                Some(
                    RegistryError::InvalidArgument { .. }
                    | RegistryError::Conflict(_)
                    | RegistryError::Ambiguous(_)
                    | RegistryError::NotFound(_),
                ) => 2,
                _ => 1,
            };
            eprintln!("renmian: {err:#}");
            ExitCode::from(code)
        }
    }
}

fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Reads a file (or stdin for `-`) and decodes it (UTF-8 with or without BOM, or GB18030).
fn read_text(path: &PathBuf) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes)?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    }
    notice::decode(&bytes).map_err(|e| {
        anyhow::Error::new(RegistryError::InvalidArgument {
            field: "text",
            message: format!("{}: {e}", path.display()),
        })
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Parse { path } = &cli.command {
        return parse(path);
    }
    if let Command::Serve(args) = cli.command {
        return crate::grpc::serve(&cli.database, args)
            .await
            .map(|()| ExitCode::SUCCESS);
    }
    let registry = Registry::open(&cli.database).await?;
    match cli.command {
        Command::Parse { .. } | Command::Serve(_) => unreachable!("handled above"),
        Command::Ingest { paths, actor, json } => {
            let mut all = Vec::new();
            for path in &paths {
                let text = read_text(path)?;
                let outcomes = registry
                    .ingest(&text, &Actor::named(actor.clone()))
                    .await
                    .with_context(|| format!("{}", path.display()))?;
                all.extend(outcomes);
            }
            if json {
                print_json(&all)?;
            } else {
                print!("{}", describe_ingest(&all));
            }
        }
        Command::Holders {
            org,
            post,
            on,
            json,
        } => {
            let tenures = registry.queries().holders(&org, &post, on.date()?).await?;
            show_tenures(&tenures, json)?;
        }
        Command::Holdings { person, on, json } => {
            let tenures = registry.queries().holdings(&person, on.date()?).await?;
            show_tenures(&tenures, json)?;
        }
        Command::History {
            org,
            post,
            person,
            json,
        } => {
            let tenures = match (org, person) {
                (Some(org), _) => {
                    registry
                        .queries()
                        .post_history(&org, post.as_deref())
                        .await?
                }
                (None, Some(person)) => registry.queries().person_history(&person).await?,
                (None, None) => unreachable!("clap requires --org or --person"),
            };
            show_tenures(&tenures, json)?;
        }
        Command::Probations {
            on,
            due_within,
            json,
        } => {
            let probations = registry
                .queries()
                .probations(on.date()?, due_within)
                .await?;
            show_probations(&probations, json)?;
        }
        Command::Notices {
            document_number,
            json,
        } => match document_number {
            Some(number) => {
                let view = registry.queries().notice(&number).await?;
                if json {
                    print_json(&view)?;
                } else {
                    print!("{}", describe_notice(&view));
                }
            }
            None => {
                let views = registry.queries().notices(0, i64::MAX, false).await?;
                if json {
                    print_json(&views)?;
                } else {
                    let rows = views
                        .iter()
                        .map(|v| {
                            vec![
                                v.document_number.clone().unwrap_or_else(|| "-".into()),
                                v.issued_on.clone().unwrap_or_default(),
                                v.event_count.to_string(),
                                v.warnings.len().to_string(),
                                v.recorded_at.clone(),
                                if v.revoked_position.is_some() {
                                    "revoked"
                                } else {
                                    ""
                                }
                                .to_string(),
                                v.title.clone(),
                            ]
                        })
                        .collect::<Vec<_>>();
                    print!(
                        "{}",
                        table::render(
                            &[
                                "notice",
                                "issued",
                                "events",
                                "warnings",
                                "recorded_at",
                                "status",
                                "title"
                            ],
                            &rows
                        )
                    );
                }
            }
        },
        Command::Events { after, limit, json } => {
            let events = registry.database().events_after(after, limit).await?;
            show_events(&events, json)?;
        }
        Command::Revoke {
            notice,
            reason,
            by_notice,
            actor,
        } => {
            let outcome = registry
                .revoke(&notice, &reason, by_notice, &Actor::named(actor))
                .await?;
            println!(
                "{}: revoked (event at position {})",
                outcome.document_number.unwrap_or(outcome.notice_id),
                outcome.last_position.unwrap_or_default()
            );
        }
        Command::Export { csv, .. } => {
            let tables = export::export(registry.database()).await?;
            if csv {
                print!("{}", export::to_csv(&tables));
            } else {
                print_json(&export::to_json(&tables))?;
            }
        }
        Command::Rebuild => {
            let checkpoint = registry.projector().rebuild().await?;
            println!("rebuilt every read model from {checkpoint} events");
        }
        Command::Verify { json } => {
            let report = registry.database().verify().await?;
            if json {
                print_json(&report)?;
            } else if report.is_intact() {
                println!(
                    "ok: hash chain intact over {} events (head position {})",
                    report.events, report.head_position
                );
            } else {
                println!(
                    "TAMPERED: first bad position {}: {}",
                    report.first_bad_position.unwrap_or_default(),
                    report.problem.clone().unwrap_or_default()
                );
            }
            if !report.is_intact() {
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `renmian parse`: JSON on stdout, or one line on stderr and exit 2 when there is no notice.
fn parse(path: &PathBuf) -> anyhow::Result<ExitCode> {
    let text = match read_text(path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("renmian: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let output = notice::parse(&text);
    if output.notices.is_empty() {
        eprintln!(
            "renmian: {}: no personnel notice (任免通知) found",
            path.display()
        );
        return Ok(ExitCode::from(2));
    }
    print_json(&output)?;
    Ok(ExitCode::SUCCESS)
}

/// Human-readable ingest report: one line per notice, then its warnings.
pub fn describe_ingest(outcomes: &[IngestOutcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        let name = o.document_number.clone().unwrap_or_else(|| o.title.clone());
        if o.already_recorded {
            // Its warnings were printed when it was recorded (and stay in `notices`).
            out.push_str(&format!("{name}: already recorded\n"));
            continue;
        }
        out.push_str(&format!(
            "{name}: {} events appended (positions {}..={})\n",
            o.events_appended,
            o.first_position.unwrap_or_default(),
            o.last_position.unwrap_or_default()
        ));
        for w in &o.warnings {
            let line = w.line.map(|l| format!("line {l}: ")).unwrap_or_default();
            out.push_str(&format!("  warning: {line}{}\n", w.message));
        }
    }
    out
}

fn opt(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "-".into())
}

fn notice_ref(notice: &Option<String>, line: Option<i64>) -> String {
    match (notice, line) {
        (Some(n), Some(l)) => format!("{n}:{l}"),
        (Some(n), None) => n.clone(),
        _ => "-".into(),
    }
}

fn tenure_row(t: &Tenure) -> Vec<String> {
    let mut flags = Vec::new();
    if t.concurrent {
        flags.push("兼".to_string());
    }
    if let Some(end) = &t.probation_end {
        flags.push(format!(
            "试用期至{end}{}",
            t.probation_outcome
                .as_deref()
                .map(|o| format!(" ({o})"))
                .unwrap_or_default()
        ));
    }
    if t.revoked_position.is_some() {
        flags.push("revoked".into());
    }
    vec![
        t.person.clone(),
        t.organization.clone(),
        t.post.clone(),
        t.start_date.clone().unwrap_or_else(|| "?".into()),
        opt(&t.end_date),
        flags.join(" "),
        notice_ref(&t.appointing_notice, t.appointing_line),
        notice_ref(&t.ending_notice, t.ending_line),
    ]
}

const TENURE_HEADER: [&str; 8] = [
    "person",
    "organization",
    "post",
    "start",
    "end",
    "notes",
    "appointed by",
    "ended by",
];

fn show_tenures(tenures: &[Tenure], json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&tenures);
    }
    if tenures.is_empty() {
        println!("(none)");
        return Ok(());
    }
    let rows: Vec<_> = tenures.iter().map(tenure_row).collect();
    print!("{}", table::render(&TENURE_HEADER, &rows));
    Ok(())
}

fn show_probations(probations: &[Probation], json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&probations);
    }
    if probations.is_empty() {
        println!("(none)");
        return Ok(());
    }
    let rows: Vec<_> = probations
        .iter()
        .map(|p| {
            vec![
                p.status.as_str().to_string(),
                p.tenure.person.clone(),
                p.tenure.organization.clone(),
                p.tenure.post.clone(),
                opt(&p.tenure.start_date),
                opt(&p.tenure.probation_end),
                notice_ref(&p.tenure.appointing_notice, p.tenure.appointing_line),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "status",
                "person",
                "organization",
                "post",
                "start",
                "probation end",
                "appointed by"
            ],
            &rows
        )
    );
    Ok(())
}

fn show_events(events: &[StoredEvent], json: bool) -> anyhow::Result<()> {
    if json {
        let views: Vec<_> = events
            .iter()
            .map(|e| {
                let mut v = serde_json::to_value(e)?;
                v["payload"] = serde_json::from_str(&e.payload)?;
                v["metadata"] = serde_json::from_str(&e.metadata)?;
                Ok(v)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        return print_json(&views);
    }
    let rows: Vec<_> = events
        .iter()
        .map(|e| {
            let summary = serde_json::from_str::<serde_json::Value>(&e.payload)
                .ok()
                .and_then(|p| p.as_object().and_then(|o| o.values().next().cloned()))
                .map(|inner| {
                    let field = |k: &str| inner.get(k).and_then(|v| v.as_str()).unwrap_or("");
                    if inner.get("person").is_some() {
                        format!(
                            "{} {}{}",
                            field("person"),
                            field("organization_canonical"),
                            field("post")
                        )
                    } else if inner.get("title").is_some() {
                        field("title").to_string()
                    } else {
                        field("reason").to_string()
                    }
                })
                .unwrap_or_default();
            vec![
                e.position.to_string(),
                e.recorded_at.clone(),
                e.event_type.clone(),
                notice_ref(&e.document_number, e.source_line),
                e.actor.clone(),
                summary,
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "position",
                "recorded_at",
                "event",
                "source",
                "actor",
                "fact"
            ],
            &rows
        )
    );
    Ok(())
}

fn describe_notice(view: &crate::projections::NoticeView) -> String {
    let mut out = format!(
        "{}\n  document number: {}\n  issuer: {}\n  issued on: {}\n  recorded at: {} (position {}, by {})\n  events: {}\n",
        view.title,
        opt(&view.document_number),
        opt(&view.issuer),
        opt(&view.issued_on),
        view.recorded_at,
        view.recorded_position,
        view.actor,
        view.event_count,
    );
    if let Some(at) = &view.revoked_at {
        out.push_str(&format!(
            "  REVOKED at {at} by {}: {}\n",
            opt(&view.revoked_by),
            opt(&view.revoked_reason)
        ));
    }
    for w in &view.warnings {
        let line = w.line.map(|l| format!("line {l}: ")).unwrap_or_default();
        out.push_str(&format!("  warning: {line}{}\n", w.message));
    }
    out
}
