//! Upcasters: how events stored under an older `event_version` are brought to the current
//! shape on load. Every event type is at version 1, so the list is empty; when a payload
//! changes, add a `SemanticVersionEventUpcaster` here (and a test that loads the old JSON)
//! instead of editing the event in place.

use cqrs_es::persist::EventUpcaster;

/// The upcasters applied, in order, to every event read from the log.
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    Vec::new()
}
