//! Backup and move: the event log as JSON Lines (`renmian dump-events`), and loading such a
//! dump into an empty database (`renmian load-events`) — the way to move from the embedded
//! SQLite file to PostgreSQL.
//!
//! A dump is one [`StoredEvent`] per line, in global order, with its hashes, so it carries
//! its own proof: loading re-checks the whole chain before storing anything (a dump with one
//! edited line is refused naming that line and position, and the database stays empty), then
//! appends in batches through [`Database::append_verbatim`], which checks every batch again
//! against the head it continues. Read models are not dumped; they are rebuilt from the log.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use super::log::GENESIS_HASH;
use super::{Backend, Database, StoreError, StoredEvent};

/// Events per database page while dumping and per transaction while loading.
const BATCH: usize = 1000;

/// Errors of dumping and loading, with the line of the dump they concern.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// Reading the dump or writing the output failed. Handle: check the file.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A line is not a stored event. Handle: the dump is damaged; use another copy.
    #[error("line {line}: not an event of a renmian dump: {message}")]
    Malformed { line: usize, message: String },
    /// A line does not continue the hash chain (edited, reordered, missing or foreign
    /// events). Nothing was stored. Handle: the dump is damaged or forged; use another copy.
    #[error("line {line}: event at position {position} {problem}; nothing was stored")]
    Chain {
        line: usize,
        position: i64,
        problem: String,
    },
    /// The target database already holds events. Handle: load into a new, empty database.
    #[error(
        "the database already holds events (head position {head_position}); load-events only \
         fills an empty database"
    )]
    NotEmpty { head_position: i64 },
    /// The database failed. Handle: as for [`StoreError`].
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for DumpError {
    fn from(err: sqlx::Error) -> Self {
        Self::Store(err.into())
    }
}

/// Writes every event, in position order, one JSON object per line. Returns the count.
pub async fn dump(db: &Database, out: &mut impl Write) -> Result<u64, DumpError> {
    let mut after = 0;
    let mut count = 0u64;
    loop {
        let page = db.events_after(after, BATCH as i64).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for event in &page {
            serde_json::to_writer(&mut *out, event).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
            count += 1;
        }
    }
    out.flush()?;
    Ok(count)
}

/// Loads the dump at `path` into `db`, which must hold no event. The whole chain is checked
/// before anything is stored. Returns the number of events loaded; the caller rebuilds the
/// read models.
pub async fn load(db: &Database, path: &Path) -> Result<u64, DumpError> {
    let head_position = db.head_position().await?;
    if head_position != 0 || !db.events_after(0, 1).await?.is_empty() {
        return Err(DumpError::NotEmpty { head_position });
    }
    // Pass 1: the whole chain, without storing anything.
    let mut prev_hash = GENESIS_HASH.to_string();
    for (expected, item) in (1i64..).zip(EventLines::open(path)?) {
        let (line, event) = item?;
        let problem = if event.position != expected {
            Some(format!("is out of order (expected position {expected})"))
        } else if event.prev_hash != prev_hash {
            Some("does not link to the previous event's hash".to_string())
        } else if event.compute_hash() != event.hash {
            Some("does not match its hash (edited)".to_string())
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(DumpError::Chain {
                line,
                position: event.position,
                problem,
            });
        }
        prev_hash = event.hash;
    }
    // Pass 2: store batch by batch (memory stays bounded by one batch); append_verbatim
    // re-checks each batch against the head it continues.
    let mut batch = Vec::with_capacity(BATCH);
    let mut loaded = 0u64;
    for item in EventLines::open(path)? {
        batch.push(item?.1);
        if batch.len() == BATCH {
            db.append_verbatim(&batch).await?;
            loaded += batch.len() as u64;
            batch.clear();
        }
    }
    db.append_verbatim(&batch).await?;
    loaded += batch.len() as u64;
    // PostgreSQL: the planner's statistics of a log that grew from nothing in one go (best
    // effort: autovacuum does it too, later).
    if db.backend() == Backend::Postgres {
        if let Err(e) = sqlx::raw_sql("ANALYZE events").execute(db.pool()).await {
            tracing::warn!(error = %e, "ANALYZE events failed; autovacuum will do it");
        }
    }
    Ok(loaded)
}

/// The non-blank lines of a dump, parsed, with their 1-based line numbers.
struct EventLines {
    lines: std::io::Lines<BufReader<std::fs::File>>,
    line_number: usize,
}

impl EventLines {
    fn open(path: &Path) -> Result<Self, DumpError> {
        Ok(Self {
            lines: BufReader::new(std::fs::File::open(path)?).lines(),
            line_number: 0,
        })
    }
}

impl Iterator for EventLines {
    type Item = Result<(usize, StoredEvent), DumpError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = self.lines.next()?;
            self.line_number += 1;
            let line_number = self.line_number;
            let malformed = |message: String| DumpError::Malformed {
                line: line_number,
                message,
            };
            let line = match line {
                Ok(line) => line,
                Err(e) => return Some(Err(malformed(e.to_string()))),
            };
            if line.trim().is_empty() {
                continue;
            }
            return Some(
                serde_json::from_str(&line)
                    .map(|event| (line_number, event))
                    .map_err(|e| malformed(e.to_string())),
            );
        }
    }
}
