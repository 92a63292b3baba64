//! The cross-process change feed: on PostgreSQL every append notifies
//! [`APPEND_CHANNEL`] with the new head position, inside the appending transaction, so the
//! notification is delivered if and only if the append commits. The sending end is a
//! trigger on the head row's hash update (`migrations/postgres/0004_append_notify.sql`),
//! which both append paths of [`super::log`] end with — no extra round trip while the head
//! row is locked. [`AppendListener`] is the receiving end (`LISTEN renmian_events` on a
//! dedicated connection).
//!
//! Notifications are a wake-up hint, never the data: a receiver always reads the log from
//! the last position it processed, so a lost or coalesced notification delays an event but
//! never drops it. SQLite has no NOTIFY; there [`Database::listen_for_appends`] is `None` and
//! callers rely on polling alone.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use super::{Database, StoreError};

/// The NOTIFY channel of appends; the payload is the new head position (decimal).
pub const APPEND_CHANNEL: &str = "renmian_events";

/// `application_name` of the listening connection (visible in `pg_stat_activity`).
pub const LISTENER_APPLICATION_NAME: &str = "renmian-listener";

/// Longest pause between attempts to re-establish a lost listening connection.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// Where a listener connects: the parsed options of the database URL (with its password,
/// hence the hand-written `Debug`).
#[derive(Clone)]
pub(crate) struct ListenTarget {
    options: PgConnectOptions,
    acquire_timeout: Duration,
}

impl fmt::Debug for ListenTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenTarget")
            .field("host", &self.options.get_host())
            .field("database", &self.options.get_database())
            .finish_non_exhaustive()
    }
}

impl ListenTarget {
    pub(crate) fn parse(url: &str, acquire_timeout: Duration) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::UnsupportedUrl(format!("{}: {e}", super::redact(url))))?
            .application_name(LISTENER_APPLICATION_NAME);
        Ok(Self {
            options,
            acquire_timeout,
        })
    }

    async fn connect(&self) -> Result<PgListener, StoreError> {
        // A pool of one connection: PgListener uses it to re-establish the connection (and
        // re-LISTEN) when it is lost.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(self.acquire_timeout)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with(self.options.clone());
        let connect = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.ignore_pool_close_event(true);
            listener.listen(APPEND_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match tokio::time::timeout(self.acquire_timeout, connect).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(StoreError::Unavailable(
                "timed out connecting the append listener".into(),
            )),
        }
    }
}

/// What an [`AppendListener`] learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendSignal {
    /// Some process committed an append; the head is now at least this position.
    Appended(i64),
    /// The listening connection was lost and is listening again: notifications sent in
    /// between are gone, so whoever waits should look at the log once.
    Resync,
}

/// `LISTEN renmian_events` on a connection of its own, re-established with backoff when
/// lost.
pub struct AppendListener {
    target: ListenTarget,
    listener: Option<PgListener>,
    backoff: Duration,
}

impl fmt::Debug for AppendListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppendListener")
            .field("target", &self.target)
            .field("connected", &self.listener.is_some())
            .finish()
    }
}

impl AppendListener {
    /// The next signal. Never fails: while the database is unreachable it keeps retrying
    /// (logging each failure) and answers [`AppendSignal::Resync`] once listening again.
    /// Not meant to be raced against other futures (a receive cut short mid-message may
    /// leave the connection unusable): run it in a task of its own and forward the signals.
    pub async fn next(&mut self) -> AppendSignal {
        loop {
            let Some(listener) = self.listener.as_mut() else {
                match self.target.connect().await {
                    Ok(listener) => {
                        tracing::info!("append listener listening again");
                        self.listener = Some(listener);
                        self.backoff = MIN_BACKOFF;
                        return AppendSignal::Resync;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?self.backoff, "append listener cannot connect");
                        tokio::time::sleep(self.backoff).await;
                        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            };
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    return match notification.payload().parse::<i64>() {
                        Ok(head) => AppendSignal::Appended(head),
                        // Not ours to interpret; look at the log instead.
                        Err(_) => AppendSignal::Resync,
                    };
                }
                // Lost and already re-established (and re-LISTENed) by PgListener.
                Ok(None) => {
                    tracing::warn!("append listener lost its connection; reconnected");
                    return AppendSignal::Resync;
                }
                // E.g. the backend was terminated (57P01) or the reconnection failed: start
                // over with a fresh connection.
                Err(e) => {
                    tracing::warn!(error = %e, "append listener failed; reconnecting");
                    self.listener = None;
                }
            }
        }
    }
}

impl Database {
    /// A listener for appends committed by any process on this database, already
    /// listening when it is returned; `None` on SQLite, which has no NOTIFY (poll instead).
    pub async fn listen_for_appends(&self) -> Result<Option<AppendListener>, StoreError> {
        let Some(target) = self.listen_target.clone() else {
            return Ok(None);
        };
        let listener = target.connect().await?;
        Ok(Some(AppendListener {
            target,
            listener: Some(listener),
            backoff: MIN_BACKOFF,
        }))
    }
}
