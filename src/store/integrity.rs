//! Integrity of the event log beyond its first broken link: every anomaly in the hash chain,
//! and operators' acknowledgements of them.
//!
//! [`Database::verify`](super::Database::verify) answers the auditor's question ("was the log
//! edited, and where first?"). A running server needs a second answer: "is there tampering
//! that nobody has looked at yet?" — writes are refused until an operator acknowledges it
//! (`renmian verify --acknowledge --reason …`). [`Database::audit`] therefore walks the whole
//! chain, resuming after each anomaly from the stored hashes, and lists every anomaly with a
//! fingerprint of exactly what was found. An acknowledgement covers one (position,
//! fingerprint) pair, so a later, different edit — elsewhere, or of the same row again — is a
//! new anomaly that needs its own acknowledgement. Acknowledgements are rows of the
//! append-only `integrity_acknowledgements` table (migration 0003), evidence in their own right.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::log::{now_utc, GENESIS_HASH};
use super::{Database, StoreError};

/// Anomalies listed in one report; more are only counted, since one is enough to refuse
/// writes and an operator fixes them from the first.
const MAX_LISTED_ANOMALIES: usize = 1000;

/// Events read per page while walking the chain.
const PAGE: i64 = 5000;

/// One place where the stored log does not match its hash chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    /// The first position the anomaly concerns.
    pub position: i64,
    pub problem: String,
    /// sha256 over what was found there (kind, positions, hashes as stored and recomputed).
    pub fingerprint: String,
    /// The acknowledgement covering exactly this anomaly, if an operator gave one.
    pub acknowledgement: Option<Acknowledgement>,
}

/// An operator's statement that they have seen an anomaly (`verify --acknowledge`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Acknowledgement {
    pub position: i64,
    pub fingerprint: String,
    pub problem: String,
    /// The log head when the acknowledgement was recorded.
    pub head_position: i64,
    pub head_hash: String,
    pub acknowledged_at: String,
    pub actor: String,
    pub reason: String,
}

impl Acknowledgement {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            position: row.try_get("position")?,
            fingerprint: row.try_get("fingerprint")?,
            problem: row.try_get("problem")?,
            head_position: row.try_get("head_position")?,
            head_hash: row.try_get("head_hash")?,
            acknowledged_at: row.try_get("acknowledged_at")?,
            actor: row.try_get("actor")?,
            reason: row.try_get("reason")?,
        })
    }
}

/// Result of [`Database::audit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntegrityReport {
    /// Event rows read.
    pub events: i64,
    /// The position the log head row names.
    pub head_position: i64,
    /// Every anomaly, in position order (at most [`MAX_LISTED_ANOMALIES`]).
    pub anomalies: Vec<Anomaly>,
    /// Anomalies found beyond those listed.
    pub unlisted_anomalies: usize,
    /// Good events before the first anomaly (all events when there is none).
    pub verified_before_first_anomaly: i64,
}

impl IntegrityReport {
    /// No anomaly at all: the chain is exactly as renmian wrote it.
    pub fn is_intact(&self) -> bool {
        self.anomalies.is_empty()
    }

    /// The first anomaly no operator has acknowledged; writes are refused while there is one.
    /// Anomalies beyond the listed ones cannot be acknowledged one by one, so while there
    /// are any the last listed one stands for them (the log needs restoring, not notes).
    pub fn first_unacknowledged(&self) -> Option<&Anomaly> {
        self.anomalies
            .iter()
            .find(|a| a.acknowledgement.is_none())
            .or_else(|| {
                self.anomalies
                    .last()
                    .filter(|_| self.unlisted_anomalies > 0)
            })
    }
}

fn fingerprint(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        // Length-prefixed, so no two different part lists hash the same bytes.
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Collects anomalies while the chain is walked.
struct Findings {
    listed: Vec<Anomaly>,
    unlisted: usize,
    verified_before_first: Option<i64>,
}

impl Findings {
    fn add(&mut self, position: i64, problem: String, parts: &[&str], verified: i64) {
        self.verified_before_first.get_or_insert(verified);
        if self.listed.len() >= MAX_LISTED_ANOMALIES {
            self.unlisted += 1;
            return;
        }
        self.listed.push(Anomaly {
            position,
            problem,
            fingerprint: fingerprint(parts),
            acknowledgement: None,
        });
    }
}

impl Database {
    /// Walks the whole chain and lists every anomaly, each marked with the acknowledgement
    /// that covers it. After an anomaly the walk resumes from the hashes as stored, so one
    /// edit is one anomaly, not a cascade over every later event.
    pub async fn audit(&self) -> Result<IntegrityReport, StoreError> {
        let mut findings = Findings {
            listed: Vec::new(),
            unlisted: 0,
            verified_before_first: None,
        };
        let mut prev_hash = GENESIS_HASH.to_string();
        let mut expected = 1i64;
        let mut rows = 0i64;
        let mut verified = 0i64;
        let mut after = 0i64;
        loop {
            let page = self.events_after(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.position;
            for e in &page {
                rows += 1;
                if e.position != expected {
                    // Rows `expected..e.position` are gone; the chain resumes at `e`. The
                    // fingerprint has the same parts as a deletion at the tail (below), so
                    // an acknowledged tail deletion stays acknowledged after new appends.
                    let problem = if e.position == expected + 1 {
                        format!("event at position {expected} is missing")
                    } else {
                        format!(
                            "events at positions {expected}..={} are missing",
                            e.position - 1
                        )
                    };
                    findings.add(
                        expected,
                        problem,
                        &[
                            "missing",
                            &expected.to_string(),
                            &e.position.to_string(),
                            &prev_hash,
                            &e.prev_hash,
                        ],
                        verified,
                    );
                    prev_hash = e.prev_hash.clone();
                    expected = e.position;
                }
                let recomputed = e.compute_hash();
                if e.prev_hash != prev_hash {
                    findings.add(
                        e.position,
                        "prev_hash does not match the previous event's hash".into(),
                        &[
                            "relinked",
                            &e.position.to_string(),
                            &prev_hash,
                            &e.prev_hash,
                            &recomputed,
                            &e.hash,
                        ],
                        verified,
                    );
                } else if recomputed != e.hash {
                    findings.add(
                        e.position,
                        "content does not match its hash (edited)".into(),
                        &["edited", &e.position.to_string(), &recomputed, &e.hash],
                        verified,
                    );
                } else {
                    verified += 1;
                }
                prev_hash = e.hash.clone();
                expected += 1;
            }
        }
        let (head_position, head_hash) = self.head().await?;
        let chain_end = expected - 1;
        if head_position != chain_end || head_hash != prev_hash {
            let problem = format!(
                "log head says position {head_position} but the chain ends at {chain_end} (events deleted?)"
            );
            if head_position > chain_end {
                findings.add(
                    expected,
                    problem,
                    &[
                        "missing",
                        &expected.to_string(),
                        &(head_position + 1).to_string(),
                        &prev_hash,
                        &head_hash,
                    ],
                    verified,
                );
            } else {
                findings.add(
                    (chain_end + 1).min(head_position.max(1)),
                    problem,
                    &[
                        "head",
                        &head_position.to_string(),
                        &head_hash,
                        &chain_end.to_string(),
                        &prev_hash,
                    ],
                    verified,
                );
            }
        }
        let mut anomalies = findings.listed;
        if !anomalies.is_empty() {
            let acknowledgements = self.acknowledgements().await?;
            for anomaly in &mut anomalies {
                anomaly.acknowledgement = acknowledgements
                    .iter()
                    .find(|a| {
                        a.position == anomaly.position && a.fingerprint == anomaly.fingerprint
                    })
                    .cloned();
            }
        }
        Ok(IntegrityReport {
            events: rows,
            head_position,
            anomalies,
            unlisted_anomalies: findings.unlisted,
            verified_before_first_anomaly: findings.verified_before_first.unwrap_or(verified),
        })
    }

    /// Records an acknowledgement for every anomaly [`audit`](Self::audit) finds
    /// unacknowledged, in one transaction, and returns them (empty when there was nothing to
    /// acknowledge). Acknowledging does not repair anything: `verify` keeps reporting the
    /// anomaly; only the refusal of writes ends.
    pub async fn acknowledge(
        &self,
        reason: &str,
        actor: &str,
    ) -> Result<Vec<Acknowledgement>, StoreError> {
        let report = self.audit().await?;
        let (head_position, head_hash) = self.head().await?;
        let acknowledged_at = now_utc();
        let mut tx = self.pool().begin().await?;
        let mut recorded = Vec::new();
        for anomaly in report
            .anomalies
            .iter()
            .filter(|a| a.acknowledgement.is_none())
        {
            let ack = Acknowledgement {
                position: anomaly.position,
                fingerprint: anomaly.fingerprint.clone(),
                problem: anomaly.problem.clone(),
                head_position,
                head_hash: head_hash.clone(),
                acknowledged_at: acknowledged_at.clone(),
                actor: actor.to_string(),
                reason: reason.to_string(),
            };
            sqlx::query(
                "INSERT INTO integrity_acknowledgements (position, fingerprint, problem, \
                 head_position, head_hash, acknowledged_at, actor, reason) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(ack.position)
            .bind(&ack.fingerprint)
            .bind(&ack.problem)
            .bind(ack.head_position)
            .bind(&ack.head_hash)
            .bind(&ack.acknowledged_at)
            .bind(&ack.actor)
            .bind(&ack.reason)
            .execute(&mut *tx)
            .await?;
            recorded.push(ack);
        }
        tx.commit().await?;
        Ok(recorded)
    }

    /// Every acknowledgement ever recorded, oldest first.
    pub async fn acknowledgements(&self) -> Result<Vec<Acknowledgement>, StoreError> {
        let rows = sqlx::query(
            "SELECT position, fingerprint, problem, head_position, head_hash, acknowledged_at, \
             actor, reason FROM integrity_acknowledgements ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(Acknowledgement::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// The log head row: last position and hash.
    async fn head(&self) -> Result<(i64, String), StoreError> {
        let row = sqlx::query("SELECT position, hash FROM event_log_head WHERE id = 1")
            .fetch_one(self.pool())
            .await?;
        Ok((row.try_get("position")?, row.try_get("hash")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_separate_their_parts() {
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
        assert_eq!(fingerprint(&["x"]), fingerprint(&["x"]));
    }
}
