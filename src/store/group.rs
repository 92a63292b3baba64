//! Appends that arrive while another is under way, committed together (group commit).
//!
//! A process appends through one connection, one append at a time
//! ([`connections`](super::connections)). An append that finds the connection free and
//! nobody waiting runs alone, as before. One that finds it busy puts its events in the
//! [`Waiting`] queue and waits for either an answer or the connection; whichever waiting
//! append gets the connection takes the queue's appends ([`Waiting::take`]) and appends them
//! in one transaction: one head update, one projection (its reads and writes for all of
//! them), one commit — the fixed part of an append, which is most of it, is paid once for
//! the group (BENCHMARKS.md, session 22). Each append still gets back exactly its own
//! events, at consecutive positions in the order the group took them.
//!
//! Invariants:
//! - **All-or-nothing per append.** A group is one transaction. If it fails, which append
//!   made it fail is not known (a conflict on one aggregate, a row refused), so each of its
//!   appends goes again alone on the same connection and gets its own answer: a conflict
//!   is reported to the append that conflicts and to no other.
//! - **An append whose caller went away before its group began is not stored**: the group
//!   skips a request whose answer nobody waits for ([`Waiting::take`]). One whose caller
//!   goes away after is committed or not with its group, as an append cut short after its
//!   commit was sent.
//! - **A group cut short stores nothing** (its transaction dies with the connection, as a
//!   single append's does), and the appends it had taken learn it (their answer channel
//!   closes) and queue again.
//! - Appends that project and appends that do not (`append_unobserved`) are never grouped
//!   together.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::oneshot;

use super::log::{NewEvent, StoredEvent};
use super::StoreError;

/// At most this many appends in one group: the projector keeps 64 receipts for callers
/// to take after the commit (`Projector::take_receipt`), and a group's appends each leave
/// one.
pub(crate) const GROUP_APPENDS: usize = 32;

/// At most this many events in one group (unless its first append alone has more): a group
/// holds the log's head until it commits.
pub(crate) const GROUP_EVENTS: usize = 4_000;

/// The answer to one waiting append: its events as stored, or why not.
pub(crate) type Answer = Result<Vec<StoredEvent>, StoreError>;

/// One append waiting for the appending connection.
pub(crate) struct Request {
    pub(crate) events: Vec<NewEvent>,
    pub(crate) observe: bool,
    pub(crate) answer: oneshot::Sender<Answer>,
}

/// The appends of one process waiting for its appending connection, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    queue: Mutex<VecDeque<Request>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("events", &self.events.len())
            .field("observe", &self.observe)
            .finish()
    }
}

impl Waiting {
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Queued appends, including any whose caller has gone away since.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Queues an append; the receiver gets its answer.
    pub(crate) fn push(&self, events: Vec<NewEvent>, observe: bool) -> oneshot::Receiver<Answer> {
        let (answer, receiver) = oneshot::channel();
        self.lock().push_back(Request {
            events,
            observe,
            answer,
        });
        receiver
    }

    /// The next group, oldest first: the first append still awaited, and after it those
    /// that project as it does, up to [`GROUP_APPENDS`] appends and [`GROUP_EVENTS`]
    /// events. Appends nobody awaits any more are dropped; the others stay queued.
    pub(crate) fn take(&self) -> Vec<Request> {
        let mut queue = self.lock();
        queue.retain(|request| !request.answer.is_closed());
        let Some(observe) = queue.front().map(|request| request.observe) else {
            return Vec::new();
        };
        let mut group: Vec<Request> = Vec::new();
        let mut events = 0;
        let mut left = VecDeque::with_capacity(queue.len());
        while let Some(request) = queue.pop_front() {
            let fits = group.is_empty()
                || (group.len() < GROUP_APPENDS && events + request.events.len() <= GROUP_EVENTS);
            if request.observe == observe && fits {
                events += request.events.len();
                group.push(request);
            } else {
                left.push_back(request);
            }
        }
        *queue = left;
        group
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Request>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The events of a group's appends, one after the other, and how many each has.
pub(crate) fn concatenate(group: &mut [Request]) -> (Vec<NewEvent>, Vec<usize>) {
    let total = group.iter().map(|r| r.events.len()).sum();
    let mut events = Vec::with_capacity(total);
    let mut counts = Vec::with_capacity(group.len());
    for request in group {
        counts.push(request.events.len());
        events.append(&mut request.events);
    }
    (events, counts)
}

/// Gives each of a group's appends its part of `events` (made by [`concatenate`] with
/// `counts`, or stored from it, in the same order).
pub(crate) fn split<T>(events: Vec<T>, counts: &[usize]) -> Vec<Vec<T>> {
    let mut events = events.into_iter();
    counts
        .iter()
        .map(|&n| events.by_ref().take(n).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(aggregate_id: &str) -> NewEvent {
        NewEvent::sample(aggregate_id)
    }

    fn events(n: usize) -> Vec<NewEvent> {
        (0..n).map(|i| event(&format!("a{i}"))).collect()
    }

    #[test]
    fn a_group_takes_the_awaited_appends_of_the_first_ones_kind_in_order() {
        let waiting = Waiting::default();
        let gone = waiting.push(events(1), true);
        let first = waiting.push(events(2), true);
        let unobserved = waiting.push(events(1), false);
        let second = waiting.push(events(3), true);
        drop(gone);
        let group = waiting.take();
        assert_eq!(
            group.iter().map(|r| r.events.len()).collect::<Vec<_>>(),
            [2, 3],
            "the append nobody awaits is dropped, the unobserved one left"
        );
        assert!(group.iter().all(|r| r.observe));
        let next = waiting.take();
        assert_eq!(next.len(), 1);
        assert!(!next[0].observe);
        assert!(waiting.is_empty());
        drop((first, unobserved, second));
    }

    #[test]
    fn a_group_stops_at_its_bounds_but_never_leaves_its_first_append_behind() {
        let waiting = Waiting::default();
        let _big = waiting.push(events(GROUP_EVENTS + 1), true);
        let _small = waiting.push(events(1), true);
        assert_eq!(
            waiting.take().len(),
            1,
            "the oversized first append goes alone"
        );
        assert_eq!(waiting.take().len(), 1);

        let receivers: Vec<_> = (0..GROUP_APPENDS + 1)
            .map(|_| waiting.push(events(1), true))
            .collect();
        assert_eq!(waiting.take().len(), GROUP_APPENDS);
        assert_eq!(waiting.take().len(), 1);
        drop(receivers);
    }

    #[test]
    fn split_gives_each_append_its_own_events_back() {
        let waiting = Waiting::default();
        let _a = waiting.push(events(2), true);
        let _b = waiting.push(events(0), true);
        let _c = waiting.push(events(1), true);
        let mut group = waiting.take();
        let (all, counts) = concatenate(&mut group);
        assert_eq!(counts, [2, 0, 1]);
        let ids: Vec<String> = all.iter().map(|e| e.aggregate_id.clone()).collect();
        assert_eq!(split(ids, &counts), [vec!["a0", "a1"], vec![], vec!["a0"]]);
    }
}
