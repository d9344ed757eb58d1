//! `privprep lineage sql`: read-only SQL over the lineage store.
//!
//! Compliance asks questions the fixed commands do not foresee ("which runs read dataset X last
//! quarter?", "how much budget went on country counts?"). The store is SQLite, so the answer is
//! one `SELECT`. This module runs it on a connection that cannot write:
//!
//! - the file is opened read-only (`SQLITE_OPEN_READ_ONLY`), so SQLite itself refuses writes;
//! - a statement that would write (`DELETE`, `UPDATE`, `INSERT`, `DROP`, `CREATE`, `VACUUM`…)
//!   is refused before it runs, naming it;
//! - `ATTACH` is refused (the connection may attach no database), so no other file is opened or
//!   created;
//! - one statement per call.
//!
//! [`VIEWS`] are temporary views created on that connection for the common questions; they
//! change nothing in the file.

use std::path::{Path, PathBuf};

use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

/// A view compliance queries by name: its name, what it answers, and its `SELECT`.
pub struct View {
    pub name: &'static str,
    pub about: &'static str,
    sql: &'static str,
    /// The schema version whose tables it reads (a store not yet migrated to it, which this
    /// read-only connection cannot migrate, goes without the view).
    since: i64,
}

/// The views every `lineage sql` connection has.
pub const VIEWS: &[View] = &[
    View {
        name: "runs_per_dataset",
        about: "per input dataset: runs that read it (succeeded and not), first and last, rows read",
        sql: "SELECT i.dataset_id AS dataset_id,
                 COUNT(DISTINCT r.run_id) AS runs,
                 COUNT(DISTINCT CASE WHEN r.status = 'succeeded' THEN r.run_id END) AS succeeded,
                 COUNT(DISTINCT CASE WHEN r.status <> 'succeeded' THEN r.run_id END) AS not_succeeded,
                 MIN(r.started_at) AS first_started,
                 MAX(r.finished_at) AS last_finished,
                 SUM(i.rows_read) AS rows_read
              FROM run_inputs i JOIN runs r ON r.run_id = i.run_id
              GROUP BY i.dataset_id",
        since: 1,
    },
    View {
        name: "outputs_per_run",
        about: "every file a run wrote (data files by split, and DP releases), with rows and SHA-256",
        sql: "SELECT r.seq AS seq, r.run_id AS run_id, r.pipeline_name AS pipeline,
                 r.status AS status, r.finished_at AS finished_at, 'data' AS kind,
                 o.split AS name, o.path AS path, o.rows AS rows, o.sha256 AS sha256
              FROM runs r JOIN run_outputs o ON o.run_id = r.run_id
              UNION ALL
              SELECT r.seq, r.run_id, r.pipeline_name, r.status, r.finished_at, 'release',
                 e.name, e.path, e.rows, e.sha256
              FROM runs r JOIN run_releases e ON e.run_id = r.run_id",
        since: 1,
    },
    View {
        name: "drops_per_run",
        about: "rows each run dropped, by reason (consent, provenance, revoked, retention, pii_in_text…)",
        sql: "SELECT r.seq AS seq, r.run_id AS run_id, r.pipeline_name AS pipeline,
                 d.reason AS reason, d.rows AS rows
              FROM runs r JOIN run_drops d ON d.run_id = r.run_id",
        since: 1,
    },
    View {
        name: "spends_per_dataset",
        about: "privacy budget spent per dataset, privacy unit and measure, from the budget ledger",
        sql: "SELECT dataset_id, privacy_unit, measure, COUNT(*) AS spends,
                 SUM(epsilon) AS epsilon, SUM(delta) AS delta, SUM(rho) AS rho,
                 MIN(recorded_at) AS first_spend, MAX(recorded_at) AS last_spend
              FROM budget_ledger
              GROUP BY dataset_id, privacy_unit, measure",
        since: 1,
    },
    View {
        name: "synthetic_tables",
        about: "every DP synthetic table: run, pipeline, status, key id, the table (path, SHA-256, rows, columns, method, tree edges, ρ spent, seed), and each input it was made from with its dataset and SHA-256",
        sql: "SELECT r.seq AS seq, r.run_id AS run_id, r.pipeline_name AS pipeline,
                 r.status AS status, t.name AS name, t.path AS path, t.sha256 AS sha256,
                 t.rows AS rows, t.dataset_id AS dataset_id, t.privacy_unit AS privacy_unit,
                 t.columns AS columns, t.method AS method, t.edges AS edges,
                 t.target AS target, t.rho AS rho, t.seed AS seed,
                 i.path AS input, i.sha256 AS input_sha256
              FROM runs r JOIN run_synthetics t ON t.run_id = r.run_id
                          JOIN run_inputs i ON i.run_id = r.run_id",
        since: 5,
    },
    View {
        name: "surrogates",
        about: "every `surrogate` output column of a run: run, pipeline, key id, the datasets it read (with their SHA-256) and the kind of surrogate",
        sql: "SELECT r.seq AS seq, r.run_id AS run_id, r.pipeline_name AS pipeline,
                 r.status AS status, r.key_id AS key_id, c.output_column AS column_name,
                 c.transformation AS transformation, i.dataset_id AS dataset_id,
                 i.path AS input, i.sha256 AS input_sha256
              FROM runs r JOIN column_lineage c ON c.run_id = r.run_id
                          JOIN run_inputs i ON i.run_id = r.run_id
              WHERE c.transformation LIKE 'surrogate%'",
        since: 1,
    },
    View {
        name: "erasures",
        about: "per erasure (`subject forget` or `sweep`) and output: what was done to the file (regenerated, deleted, unregenerable, release, gone), its rows and SHA-256 before and after",
        sql: "SELECT r.seq AS seq, r.run_id AS erasure_id, r.status AS status,
                 r.started_at AS requested_at, r.pipeline_name AS command,
                 (SELECT COUNT(*) FROM erased_subjects s WHERE s.run_id = r.run_id) AS subjects,
                 o.path AS path, o.source_run AS source_run, o.action AS action,
                 o.rows_before AS rows_before, o.rows_after AS rows_after,
                 o.old_sha256 AS old_sha256, o.new_sha256 AS new_sha256, o.note AS note
              FROM runs r JOIN output_changes o ON o.run_id = r.run_id
              WHERE o.kind = 'erasure'",
        since: 5,
    },
];

/// What a query returned: column names and rows of JSON values (text, numbers, null; a blob
/// as hex text).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// Why a query did not run or failed. Messages quote the query's own words, never a value.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("lineage store {}: cannot open it to read: {error}", .path.display())]
    Open {
        path: PathBuf,
        error: rusqlite::Error,
    },
    #[error("refused: `{verb}` would change the lineage store or open another file\n  = hint: `privprep lineage sql` only reads; the store changes only through privprep's own commands, which keep its hash chain")]
    Writes { verb: String },
    #[error("refused: ATTACH opens another database\n  = hint: `privprep lineage sql` reads this store only")]
    Attach,
    #[error("one statement at a time\n  = hint: run each SELECT on its own")]
    Several,
    #[error("the query failed: {message}\n  = hint: the views are {}; the tables are runs, run_inputs, run_outputs, run_drops, column_lineage, run_text_spans, run_leak_gate, run_releases, run_synthetics, erased_subjects, output_changes and budget_ledger", view_names())]
    Query { message: String },
}

fn view_names() -> String {
    VIEWS.iter().map(|v| v.name).collect::<Vec<_>>().join(", ")
}

/// Runs one read-only `sql` statement on the store at `path`.
pub fn query(path: &Path, sql: &str) -> Result<Answer, SqlError> {
    let open_error = |error| SqlError::Open {
        path: path.to_path_buf(),
        error,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_error)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(open_error)?;
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)
        .map_err(open_error)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(open_error)?;
    for v in VIEWS.iter().filter(|v| v.since <= version) {
        conn.execute_batch(&format!("CREATE TEMP VIEW {} AS {};", v.name, v.sql))
            .map_err(open_error)?;
    }
    let failed = |e: rusqlite::Error| match e {
        rusqlite::Error::MultipleStatement => SqlError::Several,
        e if e.to_string().contains("too many attached databases") => SqlError::Attach,
        e => SqlError::Query {
            message: e.to_string(),
        },
    };
    let mut stmt = conn.prepare(sql).map_err(failed)?;
    if !stmt.readonly() {
        return Err(SqlError::Writes {
            verb: first_word(sql),
        });
    }
    let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
    let n = columns.len();
    let mut rows = Vec::new();
    let mut cursor = stmt.query([]).map_err(failed)?;
    while let Some(row) = cursor.next().map_err(failed)? {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(json_of(row.get_ref(i).map_err(failed)?));
        }
        rows.push(out);
    }
    Ok(Answer { columns, rows })
}

/// The statement's first keyword, for messages ("DELETE"), skipping comments.
fn first_word(sql: &str) -> String {
    let mut rest = sql.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, t)| t).trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, t)| t).trim_start();
        } else {
            break;
        }
    }
    rest.split(|c: char| !c.is_alphanumeric() && c != '_')
        .next()
        .unwrap_or("")
        .to_uppercase()
}

fn json_of(v: ValueRef<'_>) -> serde_json::Value {
    match v {
        ValueRef::Null => serde_json::Value::Null,
        ValueRef::Integer(i) => i.into(),
        ValueRef::Real(f) => {
            serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)
        }
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
        ValueRef::Blob(b) => hex::encode(b).into(),
    }
}

impl Answer {
    /// One JSON object per row, keyed by column name, in an array.
    pub fn to_json(&self) -> serde_json::Value {
        self.rows
            .iter()
            .map(|row| {
                self.columns
                    .iter()
                    .cloned()
                    .zip(row.iter().cloned())
                    .collect::<serde_json::Map<_, _>>()
                    .into()
            })
            .collect::<Vec<serde_json::Value>>()
            .into()
    }

    /// RFC 4180 CSV with a header line.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        let mut line = |fields: &mut dyn Iterator<Item = String>| {
            let quoted: Vec<String> = fields.map(|f| csv_field(&f)).collect();
            out.push_str(&quoted.join(","));
            out.push('\n');
        };
        line(&mut self.columns.iter().cloned());
        for row in &self.rows {
            line(&mut row.iter().map(cell));
        }
        out
    }

    /// Aligned columns for a terminal, with the row count last.
    pub fn to_table(&self) -> String {
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(cell).collect())
            .collect();
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                cells
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain(std::iter::once(self.columns[i].chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |values: &[String]| {
            let mut s = values
                .iter()
                .zip(&widths)
                .map(|(v, w)| format!("{v:<w$}"))
                .collect::<Vec<_>>()
                .join("  ");
            s.truncate(s.trim_end().len());
            s.push('\n');
            s
        };
        let mut out = line(&self.columns);
        out.push_str(&line(
            &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
        ));
        for r in &cells {
            out.push_str(&line(r));
        }
        out.push_str(&format!(
            "({} row{})\n",
            self.rows.len(),
            if self.rows.len() == 1 { "" } else { "s" }
        ));
        out
    }
}

/// One CSV field: quoted (with inner quotes doubled) when it holds a comma, a quote or a line
/// break.
fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_owned()
    }
}

/// A value as one text cell: text as it is, null empty, numbers as JSON writes them.
fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_keyword_skips_comments() {
        assert_eq!(first_word("  delete from runs"), "DELETE");
        assert_eq!(first_word("-- note\n/* x */ Update runs set x=1"), "UPDATE");
        assert_eq!(first_word(""), "");
    }

    #[test]
    fn answers_render_as_table_csv_and_json() {
        let a = Answer {
            columns: vec!["name".into(), "rows".into()],
            rows: vec![
                vec!["a, \"b\"".into(), 3.into()],
                vec![serde_json::Value::Null, 12.into()],
            ],
        };
        assert_eq!(a.to_csv(), "name,rows\n\"a, \"\"b\"\"\",3\n,12\n");
        assert_eq!(
            a.to_table(),
            "name    rows\n------  ----\na, \"b\"  3\n        12\n(2 rows)\n"
        );
        assert_eq!(
            a.to_json(),
            serde_json::json!([{"name": "a, \"b\"", "rows": 3}, {"name": null, "rows": 12}])
        );
    }
}
