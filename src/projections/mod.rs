//! Read models, projected from the event log and disposable.
//!
//! - [`projector`]: applies events in global order to the `rm_*` tables, with a checkpoint
//!   (last applied position) updated in the same transaction, so no event is missed or applied
//!   twice, also across a crash between append and projection; [`Projector::rebuild`] drops
//!   every read model and replays the whole log.
//! - [`queries`]: the HR and audit questions (holders, holdings, history, probations,
//!   notices), shared by the CLI and the gRPC API.
//! - [`resident`]: the holders read model kept in process memory for `serve`, fenced by
//!   a checkpoint read per batch of requests so it answers as fresh as the database.
//! - [`export`]: a deterministic dump of every read model, to prove rebuild identity.
//!
//! Architecture invariant: read models are written only by the projector; a rebuild from the
//! log produces a byte-identical export.

pub mod export;
mod model;
pub mod projector;
pub mod queries;
pub mod resident;
mod shadow;

pub use projector::{Prebuild, Prebuilt, Projector, CHECKPOINT};
pub use queries::{
    NoticeView, NoticeWarning, PersonRecord, Probation, ProbationStatus, Queries, QueryError,
    Tenure,
};
pub use resident::Freshness;
pub use shadow::{STAGE_LOCK_CLASS, STAGE_PREFIX};
