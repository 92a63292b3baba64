//! Helpers shared by the bench binaries (`#[path]`-included; not a bench of its own).

use sqlx::Connection;

/// A new database on the server of `admin`, like the tests' `TestDb::postgres`.
pub async fn fresh_pg(admin: &str, what: &str) -> String {
    let name = format!("renmian_bench_{what}_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .expect("connect to the PostgreSQL admin URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create bench database");
    conn.close().await.ok();
    let (base, query) = match admin.find('?') {
        Some(q) => (&admin[..q], &admin[q..]),
        None => (admin, ""),
    };
    let base = match base.rfind('/') {
        Some(i) if i > base.find("://").map_or(0, |s| s + 2) => &base[..i],
        _ => base,
    };
    format!("{base}/{name}{query}")
}

pub async fn drop_pg(admin: &str, url: &str) {
    let name = url
        .rsplit('/')
        .next()
        .and_then(|s| s.split('?').next())
        .unwrap_or_default();
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
    }
}
