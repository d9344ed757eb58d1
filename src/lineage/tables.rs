//! The store's tables and migrations, each defined once.
//!
//! Every SQL table besides `runs` and `budget_ledger` is derived from the records: [`TABLES`]
//! gives each one its name, its columns with their SQL types, its indexes, the schema version
//! that added it and the function that computes its rows from a record. Creating the schema,
//! appending a record, verifying it and filling a new table on migration all read this one
//! list, so they cannot disagree. [`MIGRATIONS`] lists every schema version, the budget
//! ledger's included; opening an older store runs the steps it has not had yet, in order.

use std::num::TryFromIntError;

use rusqlite::types::Value;
use rusqlite::Connection;

use super::ledger_table;
use super::record::RunRecord;

/// The schema version of a store after every migration.
pub(super) const SCHEMA_VERSION: i64 = 5;

// AUTOINCREMENT makes SQLite remember the highest seq ever used (in `sqlite_sequence`), so
// deleting the newest records leaves a trace that `verify` can see, and a later append cannot
// silently reuse their seq.
const RUNS: &str = "
CREATE TABLE IF NOT EXISTS runs (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id          TEXT    NOT NULL UNIQUE,
    status          TEXT    NOT NULL,
    started_at      TEXT    NOT NULL,
    finished_at     TEXT    NOT NULL,
    pipeline_name   TEXT    NOT NULL,
    pipeline_sha256 TEXT    NOT NULL,
    key_id          TEXT,
    rows_read       INTEGER NOT NULL,
    rows_written    INTEGER NOT NULL,
    quarantined     INTEGER NOT NULL,
    record_json     TEXT    NOT NULL,
    prev_hash       TEXT    NOT NULL,
    record_hash     TEXT    NOT NULL
);";

/// Rows of one derived table for one record, without the `run_id` column.
pub(super) type Rows = Result<Vec<Vec<Value>>, TryFromIntError>;

/// A table derived from `record_json`.
pub(super) struct Table {
    pub name: &'static str,
    /// Columns after `run_id`: name and SQL type.
    pub columns: &'static [(&'static str, &'static str)],
    /// Columns with an index of their own (`run_id` always has one: verify and list look rows
    /// up by run).
    pub indexes: &'static [&'static str],
    /// The schema version that added the table.
    pub since: i64,
    /// The rows a record implies, in column order.
    pub rows: fn(&RunRecord) -> Rows,
}

impl Table {
    /// Column names after `run_id`.
    pub fn column_names(&self) -> Vec<&'static str> {
        self.columns.iter().map(|(n, _)| *n).collect()
    }

    /// `CREATE TABLE` and `CREATE INDEX` statements.
    fn create_sql(&self) -> String {
        let mut sql = format!(
            "CREATE TABLE IF NOT EXISTS {} (\n    run_id TEXT NOT NULL REFERENCES runs (run_id)",
            self.name
        );
        for (name, ty) in self.columns {
            sql.push_str(&format!(",\n    {name} {ty}"));
        }
        sql.push_str("\n);\n");
        for column in std::iter::once(&"run_id").chain(self.indexes) {
            sql.push_str(&format!(
                "CREATE INDEX IF NOT EXISTS {t}_{column} ON {t} ({column});\n",
                t = self.name
            ));
        }
        sql
    }

    /// `INSERT` of one row (`run_id` first).
    pub fn insert_sql(&self) -> String {
        let n = self.columns.len() + 1;
        format!(
            "INSERT INTO {} (run_id, {}) VALUES ({})",
            self.name,
            self.column_names().join(", "),
            (1..=n)
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

const TEXT: &str = "TEXT NOT NULL";
const INT: &str = "INTEGER NOT NULL";
const REAL: &str = "REAL NOT NULL";

/// Every derived table.
pub(super) const TABLES: [Table; 10] = [
    Table {
        name: "run_inputs",
        columns: &[
            ("path", TEXT),
            ("dataset_id", TEXT),
            ("bytes", INT),
            ("sha256", TEXT),
            ("rows_read", INT),
        ],
        indexes: &["dataset_id", "sha256"],
        since: 1,
        rows: input_rows,
    },
    Table {
        name: "run_outputs",
        columns: &[
            ("path", TEXT),
            ("split", TEXT),
            ("rows", INT),
            ("sha256", TEXT),
        ],
        indexes: &["path"],
        since: 1,
        rows: output_rows,
    },
    Table {
        name: "run_drops",
        columns: &[("reason", TEXT), ("rows", INT)],
        indexes: &[],
        since: 1,
        rows: drop_rows,
    },
    Table {
        name: "column_lineage",
        columns: &[
            ("output_column", TEXT),
            ("input_columns", TEXT),
            ("transformation", TEXT),
            ("masked", INT),
        ],
        indexes: &[],
        since: 1,
        rows: column_rows,
    },
    Table {
        name: "run_text_spans",
        columns: &[("text_column", TEXT), ("pii_type", TEXT), ("spans", INT)],
        indexes: &[],
        since: 2,
        rows: span_rows,
    },
    Table {
        name: "run_leak_gate",
        columns: &[
            ("output_column", TEXT),
            ("result", TEXT),
            ("values_scanned", INT),
            ("hits", TEXT),
        ],
        indexes: &[],
        since: 2,
        rows: gate_rows,
    },
    Table {
        name: "run_releases",
        columns: &[
            ("name", TEXT),
            ("path", TEXT),
            ("sha256", TEXT),
            ("rows", INT),
            ("dataset_id", TEXT),
            ("privacy_unit", TEXT),
            ("key_source", TEXT),
            ("measure", TEXT),
            ("epsilon", REAL),
            ("delta", REAL),
            ("rho", REAL),
            ("global_scale", REAL),
            ("threshold", "INTEGER"),
        ],
        indexes: &["dataset_id"],
        since: 3,
        rows: release_rows,
    },
    Table {
        name: "run_synthetics",
        columns: &[
            ("name", TEXT),
            ("path", TEXT),
            ("sha256", TEXT),
            ("rows", INT),
            ("dataset_id", TEXT),
            ("privacy_unit", TEXT),
            ("columns", TEXT),
            ("method", TEXT),
            ("edges", TEXT),
            ("target", TEXT),
            ("rho", REAL),
            ("seed", TEXT),
        ],
        indexes: &["dataset_id"],
        since: 5,
        rows: synthetic_rows,
    },
    Table {
        name: "erased_subjects",
        columns: &[("subject_key", TEXT)],
        indexes: &["subject_key"],
        since: 5,
        rows: erased_subject_rows,
    },
    Table {
        name: "output_changes",
        columns: &[
            ("path", TEXT),
            ("source_run", TEXT),
            ("kind", TEXT),
            ("action", TEXT),
            ("old_sha256", TEXT),
            ("new_sha256", "TEXT"),
            ("rows_before", INT),
            ("rows_after", "INTEGER"),
            ("note", "TEXT"),
        ],
        indexes: &["path"],
        since: 5,
        rows: output_change_rows,
    },
];

/// One schema version: the derived tables it adds (those whose `since` is this version) and
/// anything else it changes.
pub(super) struct Migration {
    pub version: i64,
    /// What the step does, in words.
    pub what: &'static str,
    /// Changes beyond creating and filling the version's derived tables.
    extra: Option<fn(&Connection) -> rusqlite::Result<()>>,
}

/// Every schema version, oldest first. A new version is one entry here (and `since` on its
/// tables); [`SCHEMA_VERSION`] is the last entry's.
pub(super) const MIGRATIONS: [Migration; 5] = [
    Migration {
        version: 1,
        what: "the runs table and the input, output, drop and column lineage tables",
        extra: Some(create_runs),
    },
    Migration {
        version: 2,
        what: "run_text_spans and run_leak_gate",
        extra: None,
    },
    Migration {
        version: 3,
        what: "run_releases, filled from the stored records",
        extra: None,
    },
    Migration {
        version: 4,
        what: "the budget ledger as a hash chain of the store (entries of an older store are chained as they are)",
        extra: Some(chain_ledger),
    },
    Migration {
        version: 5,
        what: "run_synthetics, erased_subjects and output_changes (synthetic tables, erasures, retention sweeps, key rotations)",
        extra: None,
    },
];

fn create_runs(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(RUNS)
}

/// Before version 4 the ledger made its own table, without a chain: its entries are chained as
/// they are, then the table gets its final shape.
fn chain_ledger(conn: &Connection) -> rusqlite::Result<()> {
    if ledger_table::exists(conn)? {
        ledger_table::chain_unchained_rows(conn)?;
    }
    conn.execute_batch(ledger_table::SCHEMA)
}

/// Brings a store at version `found` up to `target` (inside the caller's transaction): each
/// missing step creates its tables, fills them from the stored records, and makes its other
/// changes. Derived tables hold only what the records say, so filling them is idempotent.
pub(super) fn migrate(conn: &Connection, found: i64, target: i64) -> rusqlite::Result<()> {
    for m in MIGRATIONS
        .iter()
        .filter(|m| m.version > found && m.version <= target)
    {
        if found > 0 {
            tracing::info!(version = m.version, "lineage store: adding {}", m.what);
        }
        // Foreign keys are checked when rows are written, so the order of creation is free.
        if let Some(extra) = m.extra {
            extra(conn)?;
        }
        for t in TABLES.iter().filter(|t| t.since == m.version) {
            conn.execute_batch(&t.create_sql())?;
            if found > 0 {
                backfill(conn, t)?;
            }
        }
    }
    conn.pragma_update(None, "user_version", target)
}

/// Fills `table` from every stored record. Records are read, never changed, so the hash chain
/// is untouched; a record that does not parse is left for `verify` to report.
fn backfill(conn: &Connection, table: &Table) -> rusqlite::Result<()> {
    let records: Vec<String> = conn
        .prepare("SELECT record_json FROM runs ORDER BY seq")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    conn.execute(&format!("DELETE FROM {}", table.name), [])?;
    let mut stmt = conn.prepare(&table.insert_sql())?;
    for json in records {
        let Ok(record) = serde_json::from_str::<RunRecord>(&json) else {
            continue;
        };
        let Ok(rows) = (table.rows)(&record) else {
            continue;
        };
        for row in rows {
            let values = std::iter::once(Value::Text(record.run_id.clone())).chain(row);
            stmt.execute(rusqlite::params_from_iter(values))?;
        }
    }
    Ok(())
}

pub(super) fn int(n: u64) -> Result<Value, TryFromIntError> {
    i64::try_from(n).map(Value::Integer)
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn input_rows(record: &RunRecord) -> Rows {
    record
        .inputs
        .iter()
        .map(|i| {
            Ok(vec![
                text(&i.path),
                text(&i.dataset_id),
                int(i.bytes)?,
                text(&i.sha256),
                int(i.rows_read)?,
            ])
        })
        .collect()
}

fn output_rows(record: &RunRecord) -> Rows {
    record
        .outputs
        .iter()
        .map(|o| {
            Ok(vec![
                text(&o.path),
                text(&o.split),
                int(o.rows)?,
                text(&o.sha256),
            ])
        })
        .collect()
}

fn drop_rows(record: &RunRecord) -> Rows {
    record
        .dropped
        .iter()
        .map(|(reason, rows)| Ok(vec![text(reason), int(*rows)?]))
        .collect()
}

fn column_rows(record: &RunRecord) -> Rows {
    Ok(record
        .column_lineage
        .iter()
        .map(|c| {
            vec![
                text(&c.output_column),
                // serde_json::Value's Display is compact JSON and cannot fail.
                Value::Text(serde_json::Value::from(c.input_columns.clone()).to_string()),
                text(&c.transformation),
                Value::Integer(i64::from(c.masked)),
            ]
        })
        .collect())
}

fn span_rows(record: &RunRecord) -> Rows {
    let mut out = Vec::new();
    for t in &record.text_columns {
        for (kind, n) in &t.spans_replaced {
            out.push(vec![text(&t.column), text(kind), int(*n)?]);
        }
    }
    Ok(out)
}

fn gate_rows(record: &RunRecord) -> Rows {
    record
        .leak_gate
        .iter()
        .map(|g| {
            Ok(vec![
                text(&g.column),
                text(g.result.as_str()),
                int(g.values_scanned)?,
                Value::Text(serde_json::to_string(&g.hits).unwrap_or_default()),
            ])
        })
        .collect()
}

fn release_rows(record: &RunRecord) -> Rows {
    record
        .releases
        .iter()
        .map(|r| {
            Ok(vec![
                text(&r.name),
                text(&r.path),
                text(&r.sha256),
                int(r.rows)?,
                text(&r.dataset_id),
                text(&r.privacy_unit),
                text(&r.key_source),
                text(r.measure.as_str()),
                Value::Real(r.epsilon),
                Value::Real(r.delta),
                Value::Real(r.rho),
                Value::Real(r.global_scale),
                r.threshold
                    .map(|t| Value::Integer(i64::from(t)))
                    .unwrap_or(Value::Null),
            ])
        })
        .collect()
}

fn synthetic_rows(record: &RunRecord) -> Rows {
    record
        .synthetics
        .iter()
        .map(|t| {
            Ok(vec![
                text(&t.name),
                text(&t.path),
                text(&t.sha256),
                int(t.rows)?,
                text(&t.dataset_id),
                text(&t.privacy_unit),
                Value::Text(serde_json::to_string(&t.columns).unwrap_or_default()),
                text(&t.method),
                Value::Text(serde_json::to_string(&t.edges).unwrap_or_default()),
                text(&t.target),
                Value::Real(t.rho),
                // The seed as text: a u64 does not fit SQLite's integers.
                text(&t.seed.to_string()),
            ])
        })
        .collect()
}

fn erased_subject_rows(record: &RunRecord) -> Rows {
    Ok(record
        .erasure
        .iter()
        .flat_map(|e| e.subjects.iter().map(|k| vec![text(k)]))
        .collect())
}

fn output_change_rows(record: &RunRecord) -> Rows {
    let optional = |s: &Option<String>| s.as_deref().map(text).unwrap_or(Value::Null);
    record
        .output_changes()
        .map(|o| {
            Ok(vec![
                text(&o.path),
                text(&o.run_id),
                text(record.kind()),
                text(&o.action),
                text(&o.old_sha256),
                optional(&o.new_sha256),
                int(o.rows_before)?,
                match o.rows_after {
                    Some(n) => int(n)?,
                    None => Value::Null,
                },
                optional(&o.note),
            ])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_migration_is_the_schema_version_and_every_table_has_one() {
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SCHEMA_VERSION));
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.what);
        }
        for t in &TABLES {
            assert!(
                MIGRATIONS.iter().any(|m| m.version == t.since),
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn a_fresh_schema_has_every_table_with_its_columns() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn, 0, SCHEMA_VERSION).unwrap();
        for t in &TABLES {
            let cols: Vec<String> = conn
                .prepare(&format!("SELECT name FROM pragma_table_info('{}')", t.name))
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let mut want = vec!["run_id"];
            want.extend(t.column_names());
            assert_eq!(cols, want, "{}", t.name);
        }
        assert!(ledger_table::exists(&conn).unwrap());
    }
}
