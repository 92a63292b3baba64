//! The write gate: the server refuses writes while the event log holds tampering that no
//! operator has acknowledged, and says so in health.
//!
//! Auditing the chain reads the whole log, so it is not done per request: the server audits
//! at start and then every `--verify-interval-secs` ([`monitor`]), and writes consult the
//! cached verdict ([`WriteGate::check`]). Reads stay available throughout — a tampered log is
//! exactly when auditors need to read it. Health reports the verdict as the service
//! [`WRITES_SERVICE_NAME`]: NOT_SERVING while writes are refused.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::registry::RegistryError;
use crate::store::{Database, StoreError};

/// The health-checking name of the write side of `renmian.v1.Registry`.
pub const WRITES_SERVICE_NAME: &str = "renmian.v1.Registry.Writes";

/// The cached verdict of the last audit, shared by the handlers and the monitor.
#[derive(Debug, Clone, Default)]
pub struct WriteGate {
    /// `Some(message)` while writes are refused.
    refusal: Arc<RwLock<Option<String>>>,
}

impl WriteGate {
    /// `Ok` when writes are accepted; the refusal otherwise.
    pub fn check(&self) -> Result<(), RegistryError> {
        match self.refusal.read().map(|r| r.clone()) {
            Ok(None) => Ok(()),
            Ok(Some(message)) => Err(RegistryError::IntegrityBroken(message)),
            // A poisoned lock means a panic while updating: refuse rather than guess.
            Err(_) => Err(RegistryError::Internal("write gate lock poisoned".into())),
        }
    }

    /// Audits the log and updates the verdict and health. Returns whether writes are
    /// accepted.
    pub async fn refresh(
        &self,
        db: &Database,
        health: &HealthReporter,
    ) -> Result<bool, StoreError> {
        let report = db.audit().await?;
        let refusal = report.first_unacknowledged().map(|a| {
            format!(
                "writes are refused: the event log was altered behind renmian's back at \
                 position {} ({}) and no operator has acknowledged it; run `renmian verify`, \
                 then `renmian verify --acknowledge --reason TEXT`",
                a.position, a.problem
            )
        });
        let open = refusal.is_none();
        let changed = {
            let mut guard = self
                .refusal
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let changed = *guard != refusal;
            *guard = refusal.clone();
            changed
        };
        if changed {
            match &refusal {
                Some(message) => tracing::error!(%message, "integrity check failed"),
                None => tracing::info!(
                    events = report.events,
                    anomalies = report.anomalies.len(),
                    "integrity check passed; writes accepted"
                ),
            }
        }
        let status = if open {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        health.set_service_status(WRITES_SERVICE_NAME, status).await;
        Ok(open)
    }
}

/// Re-audits every `interval` until `stopping` turns true. A failed audit (database down)
/// keeps the previous verdict: the gate neither opens nor closes on missing information.
pub async fn monitor(
    gate: WriteGate,
    db: Database,
    health: HealthReporter,
    interval: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once; the server audited just before starting us.
    ticks.tick().await;
    loop {
        tokio::select! {
            () = super::stop_requested(&mut stopping) => return,
            _ = ticks.tick() => {
                if let Err(e) = gate.refresh(&db, &health).await {
                    tracing::warn!(error = %e, "integrity check could not run; keeping the last verdict");
                }
            }
        }
    }
}
