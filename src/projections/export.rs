//! A deterministic dump of every read model: tables in a fixed order, rows sorted by every
//! column, values typed. Two exports are equal exactly when the read models are, which is
//! how rebuild identity is checked.

use serde_json::{Map, Value};
use sqlx::{Column, Row};

use super::projector::READ_MODEL_TABLES;
use crate::store::{Backend, Database, StoreError};

/// One table of an export: column names and rows of values.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExportedTable {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// Reads every read model (plus the projection checkpoint), all from one snapshot: a
/// server projecting meanwhile cannot make the export show a tenure without its notice.
pub async fn export(db: &Database) -> Result<Vec<ExportedTable>, StoreError> {
    let mut tx = db.pool().begin().await?;
    if db.backend() == Backend::Postgres {
        // READ COMMITTED would take a new snapshot per statement (per table).
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
    }
    // SQLite (WAL): a read transaction sees one snapshot from its first read on.
    let mut tables = Vec::new();
    for name in READ_MODEL_TABLES
        .iter()
        .copied()
        .chain(std::iter::once("projection_checkpoint"))
    {
        let rows = sqlx::query(&format!("SELECT * FROM {name}"))
            .fetch_all(&mut *tx)
            .await?;
        let mut columns: Vec<String> = Vec::new();
        let mut values: Vec<Vec<Value>> = Vec::with_capacity(rows.len());
        for row in &rows {
            if columns.is_empty() {
                columns = row.columns().iter().map(|c| c.name().to_string()).collect();
            }
            let mut out = Vec::with_capacity(columns.len());
            for i in 0..row.columns().len() {
                // Columns are either integers or text; NULL decodes as None for both.
                let value = match row.try_get::<Option<i64>, _>(i) {
                    Ok(Some(n)) => Value::from(n),
                    Ok(None) => Value::Null,
                    Err(_) => row
                        .try_get::<Option<String>, _>(i)?
                        .map(Value::from)
                        .unwrap_or(Value::Null),
                };
                out.push(value);
            }
            values.push(out);
        }
        if columns.is_empty() {
            columns = table_columns(db, name).await?;
        }
        values.sort_by_key(|row| serde_json::to_string(row).unwrap_or_default());
        tables.push(ExportedTable {
            name: name.to_string(),
            columns,
            rows: values,
        });
    }
    tx.commit().await?;
    Ok(tables)
}

/// Column names of an empty table (`SELECT *` returns no row to read them from).
async fn table_columns(db: &Database, table: &str) -> Result<Vec<String>, StoreError> {
    use sqlx::Executor;
    let described = db
        .pool()
        .describe(&format!("SELECT * FROM {table}"))
        .await?;
    Ok(described
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect())
}

/// The export as one JSON document: `{table: [{column: value}]}`.
pub fn to_json(tables: &[ExportedTable]) -> Value {
    let mut doc = Map::new();
    for t in tables {
        let rows = t
            .rows
            .iter()
            .map(|r| {
                Value::Object(
                    t.columns
                        .iter()
                        .cloned()
                        .zip(r.iter().cloned())
                        .collect::<Map<_, _>>(),
                )
            })
            .collect();
        doc.insert(t.name.clone(), Value::Array(rows));
    }
    Value::Object(doc)
}

/// The export as CSV: per table a `# table` line, a header and the rows (RFC 4180 quoting).
pub fn to_csv(tables: &[ExportedTable]) -> String {
    fn field(v: &Value) -> String {
        let s = match v {
            Value::Null => return String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s
        }
    }
    let mut out = String::new();
    for t in tables {
        out.push_str(&format!("# {}\n", t.name));
        out.push_str(&t.columns.join(","));
        out.push('\n');
        for r in &t.rows {
            out.push_str(&r.iter().map(field).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_fields_that_need_it() {
        let t = ExportedTable {
            name: "x".into(),
            columns: vec!["a".into(), "b".into()],
            rows: vec![vec![Value::from("1,2"), Value::Null]],
        };
        assert_eq!(to_csv(&[t]), "# x\na,b\n\"1,2\",\n");
    }
}
