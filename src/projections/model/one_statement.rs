//! PostgreSQL: a flush on a pooled connection — an append's projection, a catch-up, a
//! revocation's writes — as **one statement** instead of one per read-model table.
//!
//! A notice's flush on PostgreSQL was a chain of about ten statements (one per table with
//! rows, the UPDATE closing versions, the event counts), each a round trip waiting for the
//! one before, and each multi-row `VALUES` text differing with its row count, so planned
//! anew at every bind. Here every table's rows travel as one JSON parameter (an array of
//! objects keyed by column), unpacked by `json_populate_recordset` in a data-modifying
//! `WITH` query of their own; the statement's text never changes, so each connection
//! prepares it once and PostgreSQL plans it generically. The sub-statements see one
//! snapshot and touch disjoint rows: new rows of each table, versions written by earlier
//! flushes (closed here; a version superseded before it was written is written closed),
//! event counts of notices written by earlier flushes (a buffered notice's count is in its
//! row). A failure of any part fails the whole statement, as a failed statement of the
//! chain failed the flush.
//!
//! Nothing else changes: the same rows, the same conflict clauses, the same check that
//! every version to close was closed. SQLite has no round trips (a statement is a hand-off
//! to its worker thread) and a statement list there was slower (BENCHMARKS.md, session 13);
//! a PostgreSQL rebuild writes with `COPY` on its own connection.

use std::fmt::Write as _;
use std::sync::OnceLock;

use sqlx::{AnyConnection, Row};

use super::{version_values, Rows, Value, Writes, TENURE_INSERT};
use crate::store::{Backend, StoreError};

/// The tables written from [`Rows`] buffers, in [`Writes::rows_mut`]' order, then the
/// closes, the new versions and the event counts: each its JSON parameter, `$1` to `$11`.
const PARAMETERS: usize = 11;

/// Tables written from [`Rows`] buffers.
const ROWS_TABLES: usize = 8;

impl Writes {
    /// The buffers of rows, in the order their parameters are numbered.
    fn rows_mut(&mut self) -> [&mut Rows; ROWS_TABLES] {
        [
            &mut self.notices,
            &mut self.requests,
            &mut self.warnings,
            &mut self.organizations,
            &mut self.jurisdictions,
            &mut self.aliases,
            &mut self.persons,
            &mut self.posts,
        ]
    }

    /// Writes every row and change as one statement ([`Layout`]) and empties the buffers.
    pub(super) async fn write_in_one_statement(
        &mut self,
        conn: &mut AnyConnection,
    ) -> Result<(), StoreError> {
        let layout = layout();
        let mut parameters: Vec<String> = Vec::with_capacity(PARAMETERS);
        for (rows, keys) in self.rows_mut().into_iter().zip(&layout.keys) {
            let values = rows.cells.chunks_exact(rows.columns).map(super::row_values);
            parameters.push(json_rows(keys, values));
        }
        parameters.push(json_rows(
            &["tenure_id", "version_from", "version_to"],
            self.closes
                .iter()
                .map(|&(id, from, to)| [id, from, to].map(|v| Value::Int(Some(v)))),
        ));
        parameters.push(json_rows(
            &layout.tenure_keys,
            self.tenures.iter().map(version_values),
        ));
        let mut counts: Vec<(&String, &i64)> = self.fact_counts.iter().collect();
        counts.sort();
        parameters.push(json_rows(
            &["notice_id", "n"],
            counts
                .into_iter()
                .map(|(id, n)| [Value::Text(Some(id)), Value::Int(Some(*n))]),
        ));
        let mut query = sqlx::query(&layout.sql);
        for parameter in &parameters {
            query = query.bind(parameter.as_str());
        }
        let closed: i64 = query.fetch_one(conn).await?.try_get("closed")?;
        if closed != self.closes.len() as i64 {
            return Err(StoreError::Corrupt(format!(
                "closed {closed} tenure versions instead of {}",
                self.closes.len()
            )));
        }
        for rows in self.rows_mut() {
            rows.cells.clear();
        }
        self.closes.clear();
        self.tenures.clear();
        self.fact_counts.clear();
        Ok(())
    }
}

/// The statement and the JSON keys of each table's rows, made once from the tables'
/// INSERTs.
struct Layout {
    /// A `WITH` query per table; the count of closed versions is its one row.
    sql: String,
    /// The columns of each [`Rows`] buffer's table, in [`Writes::rows_mut`]' order.
    keys: Vec<Vec<&'static str>>,
    /// The columns of `rm_tenures` ([`TENURE_INSERT`]).
    tenure_keys: Vec<&'static str>,
}

fn layout() -> &'static Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let mut template = Writes::new(Backend::Postgres);
        let mut parts: Vec<String> = Vec::with_capacity(PARAMETERS);
        let mut keys = Vec::with_capacity(ROWS_TABLES);
        for (i, rows) in template.rows_mut().into_iter().enumerate() {
            parts.push(insert_part(i + 1, rows.head, rows.tail));
            keys.push(columns(rows.head));
        }
        parts.push(
            "closed AS (UPDATE rm_tenures t SET version_to = c.version_to \
             FROM json_to_recordset($9::json) AS c(tenure_id BIGINT, version_from BIGINT, \
             version_to BIGINT) \
             WHERE t.tenure_id = c.tenure_id AND t.version_from = c.version_from \
             AND t.version_to IS NULL RETURNING 1)"
                .to_string(),
        );
        parts.push(insert_part(10, TENURE_INSERT, ""));
        parts.push(
            "counted AS (UPDATE rm_notices n SET event_count = n.event_count + f.n \
             FROM json_to_recordset($11::json) AS f(notice_id TEXT, n BIGINT) \
             WHERE n.notice_id = f.notice_id)"
                .to_string(),
        );
        Layout {
            sql: format!(
                "WITH {} SELECT (SELECT count(*) FROM closed) AS closed",
                parts.join(", ")
            ),
            keys,
            tenure_keys: columns(TENURE_INSERT),
        }
    })
}

/// `wN AS (INSERT INTO t (c1, …) SELECT c1, … FROM json_populate_recordset(NULL::t,
/// $N::json) tail)` for `insert` (`INSERT INTO t (c1, …) VALUES`).
fn insert_part(n: usize, insert: &str, tail: &str) -> String {
    let table = table(insert);
    let columns = columns(insert).join(", ");
    format!(
        "w{n} AS (INSERT INTO {table} ({columns}) SELECT {columns} \
         FROM json_populate_recordset(NULL::{table}, ${n}::json){tail})"
    )
}

/// `t` of `INSERT INTO t (c1, …) VALUES`.
fn table(insert: &str) -> &str {
    let target = super::insert_target(insert).unwrap_or_default();
    target.split(['(', ' ']).next().unwrap_or_default()
}

/// `c1, …` of `INSERT INTO t (c1, …) VALUES`, each trimmed.
fn columns(insert: &str) -> Vec<&str> {
    let target = super::insert_target(insert).unwrap_or_default();
    let inside = match (target.find('('), target.rfind(')')) {
        (Some(open), Some(close)) if open < close => &target[open + 1..close],
        _ => "",
    };
    inside
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// `rows` as a JSON array of objects keyed by `columns`.
fn json_rows<'a, R>(columns: &[&str], rows: impl Iterator<Item = R>) -> String
where
    R: IntoIterator<Item = Value<'a>>,
{
    let mut out = String::from("[");
    for (r, row) in rows.enumerate() {
        if r > 0 {
            out.push(',');
        }
        out.push('{');
        for (i, (column, value)) in columns.iter().zip(row).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('"');
            out.push_str(column);
            out.push_str("\":");
            match value {
                Value::Int(Some(v)) => {
                    let _ = write!(out, "{v}");
                }
                Value::Text(Some(v)) => json_string(&mut out, v),
                Value::Int(None) | Value::Text(None) => out.push_str("null"),
            }
        }
        out.push('}');
    }
    out.push(']');
    out
}

/// `s` as a JSON string literal: quotes, backslashes and control characters escaped.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push_str(escape);
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tables_insert_reads_its_rows_from_its_parameter() {
        assert_eq!(
            insert_part(
                4,
                "INSERT INTO rm_organizations (canonical_name, jurisdiction, first_position) VALUES",
                " ON CONFLICT (canonical_name) DO NOTHING"
            ),
            "w4 AS (INSERT INTO rm_organizations (canonical_name, jurisdiction, first_position) \
             SELECT canonical_name, jurisdiction, first_position \
             FROM json_populate_recordset(NULL::rm_organizations, $4::json) \
             ON CONFLICT (canonical_name) DO NOTHING)"
        );
    }

    #[test]
    fn the_statement_numbers_every_parameter_once_and_names_every_table() {
        let sql = &layout().sql;
        for n in 1..=PARAMETERS {
            assert_eq!(
                sql.matches(&format!("${n}::json")).count(),
                1,
                "${n}: {sql}"
            );
        }
        assert!(!sql.contains(&format!("${}", PARAMETERS + 1)));
        // Every read model has rows to write.
        for table in crate::projections::projector::READ_MODEL_TABLES {
            assert!(
                sql.contains(&format!("INSERT INTO {table} (")),
                "{table}: {sql}"
            );
        }
        assert_eq!(layout().tenure_keys.len(), super::super::TENURE_CELLS);
        assert_eq!(layout().keys.len(), ROWS_TABLES);
        for (rows, keys) in Writes::new(Backend::Postgres)
            .rows_mut()
            .into_iter()
            .zip(&layout().keys)
        {
            assert_eq!(keys.len(), rows.columns, "{}", rows.head);
        }
    }

    #[test]
    fn rows_become_objects_keyed_by_column_with_text_escaped() {
        let rows = [
            [Value::Int(Some(-7)), Value::Text(Some("任\"免\\\n\t\u{1}"))],
            [Value::Int(None), Value::Text(None)],
        ];
        let json = json_rows(&["a", "b"], rows.into_iter());
        assert_eq!(
            json,
            r#"[{"a":-7,"b":"任\"免\\\n\t\u0001"},{"a":null,"b":null}]"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed[0]["b"], "任\"免\\\n\t\u{1}");
        assert_eq!(json_rows(&["a"], std::iter::empty::<[Value; 1]>()), "[]");
    }
}
