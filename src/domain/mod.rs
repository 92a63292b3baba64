//! The registry's domain: what a recorded notice is, the events it produces and the rules
//! that decide them. No IO happens here (no tokio, sqlx or tonic): what the aggregate needs
//! from outside arrives inside the command, so the rules are tested without a database.
//!
//! Reading order: [`ids`] (how notices are identified), [`events`] (the stored facts and
//! their stable names and versions), [`aggregate`] (the notice aggregate that decides them).

pub mod aggregate;
pub mod events;
pub mod ids;
pub mod person;
pub mod posts;

pub use aggregate::{NoticeAggregate, NoticeCommand, NoticeError};
pub use events::{
    FactWithdrawn, NoticeCorrected, NoticeRecorded, NoticeRevoked, PersonSplit, PersonsMerged,
    PostFact, RegistryEvent, EVENT_VERSION,
};
pub use ids::{content_hash, NoticeKey};
pub use person::{PersonAggregate, PersonCommand, PersonError};
