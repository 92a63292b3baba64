//! The server's change feed: learns that the log advanced — through an ingest in this
//! process, a PostgreSQL notification from any process, or the periodic poll — and
//! 1. bumps `head_advanced`, the watch channel every WatchEvents follower waits on;
//! 2. wakes the projection worker, which catches the read models up when the log is ahead
//!    of the projection checkpoint (events appended by a process that died before
//!    projecting them, a `load-events` run, an ingest whose catch-up failed).
//!
//! Three tasks, all ending when the server stops:
//! - the listener (PostgreSQL only) forwards [`AppendSignal`]s from `LISTEN renmian_events`;
//!   it reconnects by itself and then sends one `Resync`;
//! - the feed turns signals and poll ticks into bumps, coalescing bursts (a notification at
//!   or below a head it already announced is dropped);
//! - the projection worker runs `Projector::catch_up` when woken and the checkpoint lags.
//!
//! Followers always read the log from the last position they sent, so a bump is only a
//! hint: a lost notification costs at most one poll interval, never an event.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};

use super::stop_requested;
use crate::projections::resident::ResidentTenures;
use crate::registry::Registry;
use crate::store::{AppendListener, AppendSignal, StoreError};

/// Least time from one refresh of the lookups model to the next (see
/// [`follow_log_with_lookups_model`]): under a stream of ingests at most ten refreshes a
/// second, each a checkpoint read and a few index range reads beside the appends. The
/// first change after a quiet spell is followed at once.
const FOLLOW_SPACING: Duration = Duration::from_millis(100);

/// Signals buffered between the listener and the feed; a full buffer only delays the
/// listener (notifications queue up in PostgreSQL meanwhile).
const SIGNAL_BUFFER: usize = 64;

/// Starts the feed of `registry` and returns the sender followers subscribe to (and that
/// in-process ingests bump). On PostgreSQL the listening connection is established before
/// this returns, so an event committed after it is announced without waiting for a poll.
pub(crate) async fn start(
    registry: Arc<Registry>,
    poll_interval: Duration,
    stopping: watch::Receiver<bool>,
) -> Result<watch::Sender<u64>, StoreError> {
    let head_advanced = watch::channel(0u64).0;
    let listener = registry.database().listen_for_appends().await?;
    let signals = listener.map(|listener| {
        let (tx, rx) = mpsc::channel(SIGNAL_BUFFER);
        tokio::spawn(forward(listener, tx, stopping.clone()));
        rx
    });
    let projection_due = Arc::new(Notify::new());
    tokio::spawn(project(
        registry.clone(),
        projection_due.clone(),
        stopping.clone(),
    ));
    let last_head = registry.database().head_position().await?;
    tokio::spawn(
        Feed {
            registry,
            head_advanced: head_advanced.clone(),
            projection_due,
            last_head,
        }
        .run(signals, poll_interval, stopping),
    );
    Ok(head_advanced)
}

/// The listener task: the only owner of the [`AppendListener`], so a receive is never cut
/// short except at shutdown.
async fn forward(
    mut listener: AppendListener,
    signals: mpsc::Sender<AppendSignal>,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = stop_requested(&mut stopping) => return,
            signal = listener.next() => {
                if signals.send(signal).await.is_err() {
                    return;
                }
            }
        }
    }
}

struct Feed {
    registry: Arc<Registry>,
    head_advanced: watch::Sender<u64>,
    projection_due: Arc<Notify>,
    /// The highest head announced to followers.
    last_head: i64,
}

impl Feed {
    async fn run(
        mut self,
        mut signals: Option<mpsc::Receiver<AppendSignal>>,
        poll_interval: Duration,
        mut stopping: watch::Receiver<bool>,
    ) {
        let mut poll = tokio::time::interval(poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let signal = tokio::select! {
                () = stop_requested(&mut stopping) => return,
                signal = recv(&mut signals) => signal,
                _ = poll.tick() => None,
            };
            match signal {
                Some(AppendSignal::Appended(head)) => {
                    // Coalesce a burst: everything already queued is announced at once.
                    let mut head = head;
                    let mut resync = false;
                    if let Some(rx) = signals.as_mut() {
                        while let Ok(next) = rx.try_recv() {
                            match next {
                                AppendSignal::Appended(h) => head = head.max(h),
                                AppendSignal::Resync => resync = true,
                            }
                        }
                    }
                    if resync {
                        self.look_at_the_log().await;
                    } else if head > self.last_head {
                        self.announce(head);
                    }
                }
                Some(AppendSignal::Resync) => self.look_at_the_log().await,
                // The poll: the fallback for SQLite and for a lost notification.
                None => {
                    self.look_at_the_log().await;
                    // Also retries a catch-up that failed, even if the head did not move.
                    self.projection_due.notify_one();
                }
            }
        }
    }

    /// Reads the head; announces it when it moved (always after a resync, cheaply).
    async fn look_at_the_log(&mut self) {
        match self.registry.database().head_position().await {
            Ok(head) if head != self.last_head => self.announce(head),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "change feed cannot read the log head"),
        }
    }

    fn announce(&mut self, head: i64) {
        self.last_head = head;
        self.head_advanced.send_modify(|n| *n = n.wrapping_add(1));
        self.projection_due.notify_one();
    }
}

/// Waits for the next signal; forever when there is no listener (SQLite) or it ended.
async fn recv(signals: &mut Option<mpsc::Receiver<AppendSignal>>) -> Option<AppendSignal> {
    match signals {
        Some(rx) => match rx.recv().await {
            Some(signal) => Some(signal),
            None => {
                *signals = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// Keeps the in-memory lookups model at the checkpoint while it is asked questions
/// ([`ResidentTenures::follow`]): a refresh whenever the feed announces a new head and at
/// every poll (events another process projected later than it appended them announce
/// nothing), so ListHolders and ListHoldings asked for a
/// `min_position` it already passed answer at once, a notification (plus at most
/// [`FOLLOW_SPACING`]) or at most a poll behind the log. Requests for the latest state
/// still fence on their own.
pub(crate) async fn follow_log_with_lookups_model(
    resident: ResidentTenures,
    mut head_advanced: watch::Receiver<u64>,
    poll_interval: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    let mut poll = tokio::time::interval(poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Said once when following starts failing and once when it works again, not at every
    // poll while the database is down.
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop_requested(&mut stopping) => return,
            changed = head_advanced.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = poll.tick() => {}
        }
        let started = tokio::time::Instant::now();
        match resident.follow().await {
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "lookups model cannot follow the log; retrying at every poll (requests for the latest state still refresh it)");
            }
            Ok(()) if failing => {
                failing = false;
                tracing::info!("lookups model follows the log again");
            }
            _ => {}
        }
        // Under a stream of ingests the refreshes would run back to back, each a few reads
        // beside the appends; spaced out, one catches up everything since the last.
        tokio::time::sleep_until(started + FOLLOW_SPACING).await;
    }
}

/// The projection worker: catches the read models up whenever woken and the checkpoint is
/// behind the head. The projector serialises on the checkpoint row, so this may race the
/// catch-up of an ingest (here or in another process) without applying anything twice.
async fn project(registry: Arc<Registry>, due: Arc<Notify>, mut stopping: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = stop_requested(&mut stopping) => return,
            () = due.notified() => {}
        }
        let lagging = async {
            let head = registry.database().head_position().await?;
            let checkpoint = registry.projector().checkpoint().await?;
            Ok::<_, StoreError>(checkpoint < head)
        };
        match lagging.await {
            Ok(false) => {}
            Ok(true) => match registry.projector().catch_up().await {
                Ok(checkpoint) => {
                    tracing::debug!(checkpoint, "read models caught up with the log")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "read models cannot catch up; retrying at the next poll")
                }
            },
            Err(e) => tracing::warn!(error = %e, "cannot compare the log with the read models"),
        }
    }
}
