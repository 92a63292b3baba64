//! renmian (任免) turns Chinese government appointment and removal notices (任免通知) into
//! immutable events and answers HR's and auditors' questions from projections of them.
//!
//! Modules in reading order:
//! - [`notice`]: the pure parser, text → notices + diagnostics (no IO).
//! - [`domain`]: event types and the notice aggregate (cqrs-es), no IO.
//! - [`store`]: the sqlx event log for SQLite and PostgreSQL (positions, hash chain).
//! - [`projections`]: read models, rebuild, queries, export.
//! - [`registry`]: the application service used by the CLI and the gRPC API.
//! - [`grpc`]: the tonic server; the only module that knows protobuf types.
//! - [`cli`]: the `renmian` command line.

pub mod cli;
pub mod domain;
pub mod grpc;
pub mod notice;
pub mod projections;
pub mod registry;
pub mod store;
pub mod workload;
