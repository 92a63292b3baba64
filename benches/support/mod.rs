//! Helpers shared by the bench binaries (`#[path]`-included; not a bench of its own).

/// Scratch PostgreSQL databases, the same code the tests use (`tests/common/pg.rs`).
#[path = "../../tests/common/pg.rs"]
mod pg;

/// A new database on the server of `admin`, like the tests' `TestDb::postgres`.
pub async fn fresh_pg(admin: &str, what: &str) -> String {
    pg::create(admin, &format!("renmian_bench_{what}")).await
}

pub use pg::drop as drop_pg;
