//! The `renmian` command line: one subcommand per file section below, all going through
//! [`Registry`] so the CLI and the gRPC API give the same answers.
//!
//! Exit codes: 0 success; 1 failure (database, verification); 2 bad input (no notice in the
//! text, malformed argument, conflicting notice).

mod gen;
pub mod table;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::notice;
use crate::projections::{export, queries::parse_date, Probation, Queries, Tenure};
use crate::registry::{Actor, IngestOutcome, Registry, RegistryError};
use crate::store::{dump, StoredEvent};

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
        /// Accept a notice already recorded with other content as a corrected re-issue,
        /// for this reason (recorded as correction events; nothing is edited).
        #[arg(long, value_name = "REASON")]
        correct: Option<String>,
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
        #[command(flatten)]
        as_of: AsOf,
        #[arg(long)]
        json: bool,
    },
    /// Every post a person holds on a date (concurrent posts included).
    Holdings {
        #[arg(long)]
        person: String,
        #[command(flatten)]
        on: OnDate,
        #[command(flatten)]
        as_of: AsOf,
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
        #[command(flatten)]
        as_of: AsOf,
        #[arg(long)]
        json: bool,
    },
    /// Probations running on a date, and those past their end with no outcome (due).
    Probations {
        #[command(flatten)]
        on: OnDate,
        /// Only probations ending within this many days of --on.
        #[arg(long, conflicts_with = "all")]
        due_within: Option<u32>,
        /// Every probation with its status on --on (running, due, confirmed, terminated).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        as_of: AsOf,
        #[arg(long)]
        json: bool,
    },
    /// Record an operator's confirmation of a probation (试用期满，正式任职) no notice stated.
    Confirm {
        #[arg(long)]
        person: String,
        #[arg(long)]
        org: String,
        #[arg(long)]
        post: String,
        /// Date the confirmation takes effect (YYYY-MM-DD); defaults to today.
        #[command(flatten)]
        on: OnDate,
        #[arg(long, default_value = "cli")]
        actor: String,
    },
    /// Person records: list those of a name, merge two (同名 resolved), split one.
    #[command(subcommand)]
    Person(PersonCommandLine),
    /// Recorded notices, or one notice by document number with its events and warnings.
    Notices {
        /// A document number (文号), e.g. 临政人〔2023〕4号.
        document_number: Option<String>,
        #[command(flatten)]
        as_of: AsOf,
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
        /// Record that an operator has seen every anomaly found now, so the server accepts
        /// writes again (the anomalies stay reported; a later, different one needs a new
        /// acknowledgement).
        #[arg(long, requires = "reason")]
        acknowledge: bool,
        /// Why the anomalies are acknowledged (stored with the acknowledgement).
        #[arg(long, requires = "acknowledge")]
        reason: Option<String>,
        /// Name recorded as the actor of the acknowledgement.
        #[arg(long, default_value = "cli")]
        actor: String,
    },
    /// Write the event log as JSON Lines (one stored event per line, in global order, with
    /// its hashes): a backup, or the way to move to another database.
    DumpEvents {
        /// Output file; standard output when absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Load a dump written by dump-events into an empty database: the whole hash chain is
    /// checked before anything is stored, then the read models are rebuilt.
    LoadEvents { path: PathBuf },
    /// Run the gRPC server.
    Serve(crate::grpc::ServeArgs),
    /// Write a deterministic, realistic workload of generated notices, one file each.
    GenNotices(gen::GenNoticesArgs),
}

#[derive(Debug, Args)]
pub struct OnDate {
    /// Date (YYYY-MM-DD); defaults to today.
    #[arg(long)]
    on: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PersonCommandLine {
    /// The person records of a name, with their ids and jurisdictions.
    List {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Record that two person records are one person; the first is retired.
    Merge {
        /// The record to retire (its id, e.g. 35).
        #[arg(long)]
        person: i64,
        /// The record that remains.
        #[arg(long)]
        into: i64,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value = "cli")]
        actor: String,
    },
    /// Record that some tenures of a person record belong to another person of that name.
    Split {
        #[arg(long)]
        person: i64,
        /// Tenure ids (comma-separated) that move to a new person record.
        #[arg(long, value_delimiter = ',', required = true)]
        tenures: Vec<i64>,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value = "cli")]
        actor: String,
    },
}

/// The recorded-time axis: answer as the registry knew it at a past point.
#[derive(Debug, Args)]
pub struct AsOf {
    /// Answer as of this event position (what the registry held right after it).
    #[arg(long, conflicts_with = "as_recorded_at")]
    as_of_position: Option<i64>,
    /// Answer as of this UTC time (RFC 3339, e.g. 2026-11-28T10:00:00Z).
    #[arg(long)]
    as_recorded_at: Option<String>,
}

impl AsOf {
    /// The queries to use: the registry's current view or its view at that point. A
    /// position the read models have not reached is refused, as the API refuses it: what
    /// they hold as of it could still change.
    async fn queries(&self, registry: &Registry) -> Result<Queries, RegistryError> {
        let now = registry.queries();
        let position = match (&self.as_of_position, &self.as_recorded_at) {
            (Some(p), _) => *p,
            (None, Some(t)) => now.position_recorded_at(t).await?,
            (None, None) => return Ok(now.clone()),
        };
        Ok(now.as_of_reached(position).await?)
    }
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
                    | RegistryError::NotFound(_)
                    | RegistryError::NotReached { .. },
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
    if let Command::GenNotices(args) = &cli.command {
        return gen::run(args);
    }
    if let Command::Serve(args) = cli.command {
        return crate::grpc::serve(&cli.database, args)
            .await
            .map(|()| ExitCode::SUCCESS);
    }
    let registry = Registry::open(&cli.database).await?;
    let done = execute(&registry, cli.command).await;
    // Closed before the process exits: on SQLite the last connection to close checkpoints
    // the write-ahead log into the database file and removes it, so the file alone (a
    // copy, a backup) holds everything this command wrote.
    registry.database().close().await;
    done
}

/// Runs a command that needs the registry.
async fn execute(registry: &Registry, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Parse { .. } | Command::Serve(_) | Command::GenNotices(_) => {
            unreachable!("handled above")
        }
        Command::Ingest {
            paths,
            actor,
            correct,
            json,
        } => {
            let actor = Actor::named(actor);
            let texts = paths.iter().map(read_text).collect::<Result<Vec<_>, _>>()?;
            let all = match &correct {
                Some(reason) => {
                    let mut all = Vec::new();
                    for (path, text) in paths.iter().zip(&texts) {
                        let outcomes = registry
                            .ingest_correction(text, reason, &actor)
                            .await
                            .with_context(|| format!("{}", path.display()))?;
                        all.extend(outcomes);
                    }
                    all
                }
                // Files in order, as if one after the other, appended in batches.
                None => registry.ingest_all(&texts, &actor).await.map_err(|e| {
                    anyhow::Error::new(e.error).context(format!("{}", paths[e.index].display()))
                })?,
            };
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
            as_of,
            json,
        } => {
            let queries = as_of.queries(registry).await?;
            let tenures = queries.holders(&org, &post, on.date()?).await?;
            show_tenures(&tenures, json)?;
        }
        Command::Holdings {
            person,
            on,
            as_of,
            json,
        } => {
            let queries = as_of.queries(registry).await?;
            let tenures = queries.holdings(&person, on.date()?).await?;
            show_tenures(&tenures, json)?;
        }
        Command::History {
            org,
            post,
            person,
            as_of,
            json,
        } => {
            let queries = as_of.queries(registry).await?;
            let tenures = match (org, person) {
                (Some(org), _) => queries.post_history(&org, post.as_deref()).await?,
                (None, Some(person)) => queries.person_history(&person).await?,
                (None, None) => unreachable!("clap requires --org or --person"),
            };
            show_tenures(&tenures, json)?;
        }
        Command::Probations {
            on,
            due_within,
            all,
            as_of,
            json,
        } => {
            let queries = as_of.queries(registry).await?;
            let probations = if all {
                queries.all_probations(on.date()?).await?
            } else {
                queries.probations(on.date()?, due_within).await?
            };
            show_probations(&probations, json)?;
        }
        Command::Confirm {
            person,
            org,
            post,
            on,
            actor,
        } => {
            let outcome = registry
                .confirm_probation(&person, &org, &post, on.date()?, &Actor::named(actor))
                .await?;
            println!(
                "{person}: probation in {org} {post} confirmed (event at position {})",
                outcome.last_position.unwrap_or_default()
            );
        }
        Command::Person(PersonCommandLine::List { name, json }) => {
            let records = registry.queries().persons(&name).await?;
            if json {
                print_json(&records)?;
            } else {
                let rows: Vec<_> = records
                    .iter()
                    .map(|p| {
                        vec![
                            format!("#{}", p.person_id),
                            p.name.clone(),
                            opt(&p.gender),
                            opt(&p.jurisdiction),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table::render(&["id", "name", "gender", "jurisdiction"], &rows)
                );
            }
        }
        Command::Person(PersonCommandLine::Merge {
            person,
            into,
            reason,
            actor,
        }) => {
            let position = registry
                .merge_persons(person, into, &reason, &Actor::named(actor))
                .await?;
            println!("person #{person} merged into #{into} (event at position {position})");
        }
        Command::Person(PersonCommandLine::Split {
            person,
            tenures,
            reason,
            actor,
        }) => {
            let position = registry
                .split_person(person, tenures, &reason, &Actor::named(actor))
                .await?;
            println!("tenures moved from person #{person} to new person #{position}");
        }
        Command::Notices {
            document_number,
            as_of,
            json,
        } => match document_number {
            Some(number) => {
                let view = as_of.queries(registry).await?.notice(&number).await?;
                if json {
                    print_json(&view)?;
                } else {
                    print!("{}", describe_notice(&view));
                }
            }
            None => {
                let views = as_of
                    .queries(registry)
                    .await?
                    .notices(0, i64::MAX, false)
                    .await?;
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
        Command::DumpEvents { out } => {
            let count = match &out {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    dump::dump(registry.database(), &mut std::io::BufWriter::new(file)).await?
                }
                None => dump::dump(registry.database(), &mut std::io::stdout().lock()).await?,
            };
            eprintln!("dumped {count} events");
        }
        Command::LoadEvents { path } => {
            let count = dump::load(registry.database(), &path)
                .await
                .with_context(|| format!("{}", path.display()))?;
            let checkpoint = registry.projector().rebuild().await?;
            println!(
                "loaded {count} events (hash chain verified); rebuilt every read model from {checkpoint} events"
            );
        }
        Command::Rebuild => {
            let checkpoint = registry.projector().rebuild().await?;
            println!("rebuilt every read model from {checkpoint} events");
        }
        Command::Verify {
            json,
            acknowledge,
            reason,
            actor,
        } => {
            if acknowledge {
                let reason = reason.unwrap_or_default();
                if reason.trim().is_empty() {
                    return Err(RegistryError::InvalidArgument {
                        field: "reason",
                        message: "an acknowledgement needs a reason".into(),
                    }
                    .into());
                }
                let recorded = registry
                    .database()
                    .acknowledge(reason.trim(), &actor)
                    .await?;
                if recorded.is_empty() {
                    println!("nothing to acknowledge: no unacknowledged anomaly");
                }
                for a in &recorded {
                    println!(
                        "acknowledged: position {}: {} (head position {})",
                        a.position, a.problem, a.head_position
                    );
                }
            }
            let report = registry.database().verify().await?;
            let audit = registry.database().audit().await?;
            if json {
                print_json(&serde_json::json!({
                    "events": report.events,
                    "head_position": report.head_position,
                    "first_bad_position": report.first_bad_position,
                    "problem": report.problem,
                    "anomalies": audit.anomalies,
                    "writes_refused": audit.first_unacknowledged().is_some(),
                }))?;
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
                for a in &audit.anomalies {
                    match &a.acknowledgement {
                        Some(ack) => println!(
                            "  position {}: {} — acknowledged {} by {}: {}",
                            a.position, a.problem, ack.acknowledged_at, ack.actor, ack.reason
                        ),
                        None => println!(
                            "  position {}: {} — NOT acknowledged: the server refuses writes \
                             until `renmian verify --acknowledge --reason TEXT`",
                            a.position, a.problem
                        ),
                    }
                }
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
            "{name}: {}{} events appended (positions {}..={})\n",
            if o.corrected { "corrected, " } else { "" },
            o.events_appended,
            o.first_position.unwrap_or_default(),
            o.last_position.unwrap_or_default()
        ));
        for number in &o.revoked_notices {
            out.push_str(&format!("  revoked {number}\n"));
        }
        for note in &o.notes {
            out.push_str(&format!("  note: {note}\n"));
        }
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
    if t.seat_conflict {
        flags.push("⚠ one-seat post, several holders".to_string());
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
    if let Some(reason) = &t.withdrawn_reason {
        flags.push(format!("withdrawn ({reason})"));
    } else if let Some(cause) = t.end_cause.as_deref().filter(|c| *c != "removed") {
        flags.push(cause.to_string());
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
    if let Some(at) = &view.corrected_at {
        out.push_str(&format!(
            "  corrected {} time(s), last at {at}: {}\n",
            view.correction_count,
            opt(&view.corrected_reason)
        ));
    }
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
