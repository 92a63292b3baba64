//! Scratch PostgreSQL databases: one per test or bench run, created on the server an admin
//! URL names and dropped afterwards. The one copy of this code: `tests/common` declares it,
//! the benches (`benches/support`) and `store::log`'s unit tests `#[path]`-include it.

use sqlx::Connection;

/// Creates an empty database `{prefix}_{uuid}` on the server of `admin` and returns its
/// URL: `admin` with its database replaced, its query (`?sslmode=…`, `?host=/run/…`) kept.
pub async fn create(admin: &str, prefix: &str) -> String {
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .unwrap_or_else(|e| panic!("connect to the PostgreSQL admin URL {admin}: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("create database {name}: {e}"));
    conn.close().await.ok();
    url_of(admin, &name)
}

/// Drops the database `url` names (made by [`create`]), through `admin`; best effort.
pub async fn drop(admin: &str, url: &str) {
    let name = database_of(url);
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
    }
}

/// `admin` with the database `name` instead of its own (or of none).
pub fn url_of(admin: &str, name: &str) -> String {
    let (base, query) = admin.split_at(admin.find('?').unwrap_or(admin.len()));
    let authority = base.find("://").map_or(0, |s| s + 3);
    let server = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    format!("{server}/{name}{query}")
}

/// The database a URL made by [`url_of`] names.
pub fn database_of(url: &str) -> &str {
    let base = &url[..url.find('?').unwrap_or(url.len())];
    base.rsplit('/').next().unwrap_or_default()
}
