//! The lineage store: an append-only, hash-chained SQLite file of run records.
//!
//! One file holds every run. Runs append under an immediate (write-locking) transaction, and
//! the file is in WAL mode with a busy timeout, so concurrent runs queue up instead of failing
//! and readers (`list`, `verify`) see a consistent snapshot while a run appends.
//!
//! # Tables
//!
//! The JSON in `runs.record_json` is the source of truth. Every other column repeats part of it
//! so compliance can answer questions with plain SQL; [`Store::verify`] checks that they still
//! agree with the JSON.
//!
//! - `runs`, one row per run: `seq` (chain position 1, 2, …), `run_id` (unique), `status`,
//!   `started_at`, `finished_at`, `pipeline_name`, `pipeline_sha256`, `key_id` (null when no
//!   key was used), `rows_read`, `rows_written`, `quarantined`, `record_json`, `prev_hash`,
//!   `record_hash`.
//! - `run_inputs`, one row per input file: `run_id`, `path`, `dataset_id`, `bytes`, `sha256`,
//!   `rows_read`. Indexed by `dataset_id` and `sha256`.
//! - `run_outputs`, one row per committed output: `run_id`, `path`, `split`, `rows`, `sha256`.
//!   Indexed by `path`.
//! - `run_drops`, one row per drop reason: `run_id`, `reason`, `rows`.
//! - `column_lineage`, one row per output column: `run_id`, `output_column`, `input_columns`
//!   (JSON array text), `transformation`, `masked` (0 or 1).
//! - `run_text_spans`, one row per free-text column and PII type: `run_id`, `text_column`,
//!   `pii_type`, `spans` (how many were replaced; never the values).
//! - `run_leak_gate`, one row per output column the gate judged: `run_id`, `output_column`,
//!   `result` (`clean`, `leak`, `exempt`), `values_scanned`, `hits` (JSON object of counts).
//! - `run_releases`, one row per differentially private release: `run_id`, `name`, `path`,
//!   `sha256`, `rows`, `dataset_id`, `privacy_unit`, `key_source`, `measure`, `epsilon`,
//!   `delta`, `rho` (OpenDP's map at one subject, as spent in the ledger), `global_scale`,
//!   `threshold` (private keys, else NULL). Indexed by `dataset_id`.
//!
//! For example, "which runs used dataset X":
//! `SELECT r.* FROM runs r JOIN run_inputs i USING (run_id) WHERE i.dataset_id = 'X'`.
//! The schema version is kept in `PRAGMA user_version`.
//!
//! # Hash chain
//!
//! `record_hash` is the lowercase hex SHA-256 of `prev_hash`, a newline, and `record_json`
//! (UTF-8); the first record's `prev_hash` is [`GENESIS_HASH`]. Because the hash covers the
//! stored text, anyone can recheck the chain without privprep, e.g.
//! `printf '%s\n%s' "$prev_hash" "$record_json" | sha256sum`.
//!
//! The chain makes edits, deletions and reordering evident; it does not stop someone who
//! rewrites every later record and recomputes the hashes. Keep the head hash that
//! `verify` reports somewhere else (a ticket, a release note) to anchor it.

use std::cmp::Ordering;
use std::num::TryFromIntError;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::record::RunRecord;

/// `prev_hash` of the first record in a store: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Schema version written to `PRAGMA user_version`; bump it with a migration. Every statement
/// of [`SCHEMA`] is idempotent, so migrating is running it again: version 2 added
/// `run_text_spans` and `run_leak_gate`; version 3 added `run_releases`, filled from the
/// stored records when an older store is opened.
const SCHEMA_VERSION: i64 = 3;

/// How long a run waits for another run's append before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

// AUTOINCREMENT makes SQLite remember the highest seq ever used (in `sqlite_sequence`), so
// deleting the newest records leaves a trace that `verify` can see, and a later append cannot
// silently reuse their seq.
const SCHEMA: &str = "
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
);
CREATE TABLE IF NOT EXISTS run_inputs (
    run_id     TEXT    NOT NULL REFERENCES runs (run_id),
    path       TEXT    NOT NULL,
    dataset_id TEXT    NOT NULL,
    bytes      INTEGER NOT NULL,
    sha256     TEXT    NOT NULL,
    rows_read  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS run_outputs (
    run_id TEXT    NOT NULL REFERENCES runs (run_id),
    path   TEXT    NOT NULL,
    split  TEXT    NOT NULL,
    rows   INTEGER NOT NULL,
    sha256 TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS run_drops (
    run_id TEXT    NOT NULL REFERENCES runs (run_id),
    reason TEXT    NOT NULL,
    rows   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS column_lineage (
    run_id         TEXT    NOT NULL REFERENCES runs (run_id),
    output_column  TEXT    NOT NULL,
    input_columns  TEXT    NOT NULL,
    transformation TEXT    NOT NULL,
    masked         INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS run_text_spans (
    run_id   TEXT    NOT NULL REFERENCES runs (run_id),
    text_column TEXT NOT NULL,
    pii_type TEXT    NOT NULL,
    spans    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS run_leak_gate (
    run_id         TEXT    NOT NULL REFERENCES runs (run_id),
    output_column  TEXT    NOT NULL,
    result         TEXT    NOT NULL,
    values_scanned INTEGER NOT NULL,
    hits           TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS run_releases (
    run_id       TEXT    NOT NULL REFERENCES runs (run_id),
    name         TEXT    NOT NULL,
    path         TEXT    NOT NULL,
    sha256       TEXT    NOT NULL,
    rows         INTEGER NOT NULL,
    dataset_id   TEXT    NOT NULL,
    privacy_unit TEXT    NOT NULL,
    key_source   TEXT    NOT NULL,
    measure      TEXT    NOT NULL,
    epsilon      REAL    NOT NULL,
    delta        REAL    NOT NULL,
    rho          REAL    NOT NULL,
    global_scale REAL    NOT NULL,
    threshold    INTEGER
);
CREATE INDEX IF NOT EXISTS run_releases_run_id ON run_releases (run_id);
CREATE INDEX IF NOT EXISTS run_releases_dataset_id ON run_releases (dataset_id);
CREATE INDEX IF NOT EXISTS run_text_spans_run_id ON run_text_spans (run_id);
CREATE INDEX IF NOT EXISTS run_leak_gate_run_id ON run_leak_gate (run_id);
CREATE INDEX IF NOT EXISTS run_inputs_dataset_id ON run_inputs (dataset_id);
CREATE INDEX IF NOT EXISTS run_inputs_sha256 ON run_inputs (sha256);
CREATE INDEX IF NOT EXISTS run_outputs_path ON run_outputs (path);
-- verify and list look child rows up by run.
CREATE INDEX IF NOT EXISTS run_inputs_run_id ON run_inputs (run_id);
CREATE INDEX IF NOT EXISTS run_outputs_run_id ON run_outputs (run_id);
CREATE INDEX IF NOT EXISTS run_drops_run_id ON run_drops (run_id);
CREATE INDEX IF NOT EXISTS column_lineage_run_id ON column_lineage (run_id);
";

/// Columns of `runs` that repeat fields of `record_json`, in the order [`run_columns`] yields
/// their values. Append and verify both go through this list, so they cannot drift apart.
const RUN_COLUMNS: [&str; 10] = [
    "run_id",
    "status",
    "started_at",
    "finished_at",
    "pipeline_name",
    "pipeline_sha256",
    "key_id",
    "rows_read",
    "rows_written",
    "quarantined",
];

/// A table derived from `record_json` (besides `runs`), with its columns after `run_id`.
struct DerivedTable {
    name: &'static str,
    columns: &'static [&'static str],
}

/// The derived tables, in the order [`derived_rows`] yields their rows.
const DERIVED_TABLES: [DerivedTable; 7] = [
    DerivedTable {
        name: "run_inputs",
        columns: &["path", "dataset_id", "bytes", "sha256", "rows_read"],
    },
    DerivedTable {
        name: "run_outputs",
        columns: &["path", "split", "rows", "sha256"],
    },
    DerivedTable {
        name: "run_drops",
        columns: &["reason", "rows"],
    },
    DerivedTable {
        name: "column_lineage",
        columns: &["output_column", "input_columns", "transformation", "masked"],
    },
    DerivedTable {
        name: "run_text_spans",
        columns: &["text_column", "pii_type", "spans"],
    },
    DerivedTable {
        name: "run_leak_gate",
        columns: &["output_column", "result", "values_scanned", "hits"],
    },
    DerivedTable {
        name: "run_releases",
        columns: &[
            "name",
            "path",
            "sha256",
            "rows",
            "dataset_id",
            "privacy_unit",
            "key_source",
            "measure",
            "epsilon",
            "delta",
            "rho",
            "global_scale",
            "threshold",
        ],
    },
];

/// The index of `run_releases` in [`DERIVED_TABLES`] (filled from old records on migration).
const RELEASES_TABLE: usize = 6;

/// Errors from the lineage store. Messages name the store file and never a record's values.
#[derive(Debug, thiserror::Error)]
pub enum LineageError {
    /// The folder that should hold the store could not be created.
    #[error(
        "cannot create the folder for lineage store {} (check that the parent folder exists and is writable)",
        .path.display()
    )]
    CreateDir {
        /// The store file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// An SQLite operation failed.
    #[error("lineage store {}: cannot {action} ({})", .path.display(), sqlite_hint(.source))]
    Sqlite {
        /// The store file.
        path: PathBuf,
        /// What the store was doing, e.g. `append the run`.
        action: &'static str,
        /// The underlying SQLite error.
        #[source]
        source: rusqlite::Error,
    },

    /// The store's schema is newer than this build understands.
    #[error(
        "lineage store {} has schema version {found}, but this privprep reads up to version {supported} (the store was written by a newer privprep; upgrade privprep)",
        .path.display()
    )]
    NewerSchema {
        /// The store file.
        path: PathBuf,
        /// Schema version found in the file.
        found: i64,
        /// Highest schema version this build reads.
        supported: i64,
    },

    /// A run with this id is already in the store.
    #[error(
        "run {run_id} is already in lineage store {} (run ids must be unique; was this run recorded twice?)",
        .path.display()
    )]
    DuplicateRunId {
        /// The store file.
        path: PathBuf,
        /// The run id that is already present.
        run_id: String,
    },

    /// A count in the record does not fit SQLite's signed 64-bit integers.
    #[error(
        "run {run_id} holds a count too large for lineage store {} (SQLite integers stop at 2^63 - 1; is a row or byte count corrupt?)",
        .path.display()
    )]
    CountTooLarge {
        /// The store file.
        path: PathBuf,
        /// The run being appended.
        run_id: String,
    },

    /// The record could not be serialized to JSON.
    #[error("cannot serialize run {run_id} for lineage store {}", .path.display())]
    Serialize {
        /// The store file.
        path: PathBuf,
        /// The run being appended.
        run_id: String,
        /// The underlying serde error.
        #[source]
        source: serde_json::Error,
    },

    /// A stored `record_json` does not parse as a run record.
    #[error(
        "record {seq} (run {run_id}) in lineage store {} is not a valid run record: {detail} (run `privprep lineage verify`; was the store written by a newer privprep?)",
        .path.display()
    )]
    InvalidRecord {
        /// The store file.
        path: PathBuf,
        /// Chain position of the record.
        seq: i64,
        /// Run id as stored in `runs`.
        run_id: String,
        /// Where the JSON failed (kind, line, column), never its content.
        detail: String,
    },

    /// A run id prefix matches more than one run.
    #[error(
        "run id prefix {prefix:?} matches {count} runs in lineage store {} (give more characters of the run id)",
        .path.display()
    )]
    AmbiguousRunId {
        /// The store file.
        path: PathBuf,
        /// The prefix that was looked up.
        prefix: String,
        /// How many runs it matches.
        count: usize,
    },
}

/// A hint for an SQLite failure, chosen by its error code.
fn sqlite_hint(error: &rusqlite::Error) -> String {
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => format!(
            "is another program holding the file? privprep waited {} s for it",
            BUSY_TIMEOUT.as_secs()
        ),
        Some(ErrorCode::NotADatabase) => "is this file a privprep lineage store?".into(),
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            "check that the file and its folder are readable and writable".into()
        }
        Some(ErrorCode::DiskFull) => "the disk is full".into(),
        Some(ErrorCode::DatabaseCorrupt) => "the file is damaged; restore it from a backup".into(),
        _ => match error {
            rusqlite::Error::ToSqlConversionFailure(_) => {
                "a count is too large for SQLite's 64-bit integers".into()
            }
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::InvalidColumnType(..) => {
                "a stored value has the wrong type; run `privprep lineage verify`".into()
            }
            _ => "run `privprep lineage verify` to check the store".into(),
        },
    }
}

/// The store's schema version; an error if a newer privprep wrote it.
fn schema_version(conn: &Connection, path: &Path) -> Result<i64, LineageError> {
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sqlite(path, "read the schema version"))?;
    if found > SCHEMA_VERSION {
        return Err(LineageError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

/// Wraps an SQLite error with the store path and what was being done.
fn sqlite<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(rusqlite::Error) -> LineageError + 'a {
    move |source| LineageError::Sqlite {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// The hash that links a record into the chain: lowercase hex
/// SHA-256(`prev_hash` ‖ `"\n"` ‖ `record_json`).
pub fn record_hash(prev_hash: &str, record_json: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(record_json.as_bytes());
    hex::encode(hasher.finalize())
}

/// One line of [`Store::list`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// Chain position (1, 2, …).
    pub seq: i64,
    /// The run id.
    pub run_id: String,
    /// `succeeded` or `failed`; kept as text so records from newer builds still list.
    pub status: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// Name of the pipeline that ran.
    pub pipeline_name: String,
    /// Rows read from all inputs.
    pub rows_read: u64,
    /// Rows written to all outputs.
    pub rows_written: u64,
    /// Number of committed output files.
    pub outputs: u64,
}

/// A run as stored, with its place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredRun {
    /// Chain position (1, 2, …).
    pub seq: i64,
    /// The record, parsed from `record_json`.
    pub record: RunRecord,
    /// `record_hash` of the previous record, or [`GENESIS_HASH`].
    pub prev_hash: String,
    /// This record's hash, as stored (use [`Store::verify`] to check it).
    pub record_hash: String,
}

/// The first place where the chain or the derived tables disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenRecord {
    /// Chain position of the broken record; `None` for rows that belong to no record.
    pub seq: Option<i64>,
    /// Run id of the broken record, when known.
    pub run_id: Option<String>,
    /// Which check failed, in words; never a value from the record.
    pub reason: String,
}

/// Result of [`Store::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Number of records in the store.
    pub records: u64,
    /// `record_hash` of the newest record; `None` for an empty store.
    pub head_hash: Option<String>,
    /// The first failed check, if any.
    pub first_broken: Option<BrokenRecord>,
}

impl VerifyReport {
    /// True when every record and derived row checked out.
    pub fn is_ok(&self) -> bool {
        self.first_broken.is_none()
    }
}

/// The lineage store, one SQLite file shared by every run.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens the store at `path`, creating its folder, the file and the schema if missing.
    ///
    /// Waits up to 10 s when another run holds the file. Fails with
    /// [`LineageError::NewerSchema`] on a store written by a newer privprep.
    pub fn open(path: &Path) -> Result<Store, LineageError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| LineageError::CreateDir {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let mut conn = Connection::open(path).map_err(sqlite(path, "open the file"))?;
        // Set before anything else so that even switching to WAL waits for other runs.
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sqlite(path, "set the busy timeout"))?;
        // WAL lets readers work while a run appends. The mode is kept in the file; where the
        // file system cannot do WAL, SQLite stays in rollback mode, which is slower but safe.
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
            .map_err(sqlite(path, "switch to WAL mode"))?;
        // FULL: a committed output must not lose its lineage record to a power cut.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sqlite(path, "set synchronous mode"))?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(sqlite(path, "enable foreign keys"))?;

        // Only a new (or older) store needs the write lock; opening an existing one does not.
        if schema_version(&conn, path)? < SCHEMA_VERSION {
            // Immediate, so two runs opening a fresh store do not both create it; read the
            // version again under the lock because another run may have just done so.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sqlite(path, "lock the store to create its schema"))?;
            let found = schema_version(&tx, path)?;
            if found < SCHEMA_VERSION {
                tx.execute_batch(SCHEMA)
                    .map_err(sqlite(path, "create the schema"))?;
                if (1..3).contains(&found) {
                    backfill_releases(&tx)
                        .map_err(sqlite(path, "fill run_releases from the stored records"))?;
                }
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(sqlite(path, "record the schema version"))?;
            }
            tx.commit().map_err(sqlite(path, "create the schema"))?;
        }

        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` to the chain and its derived tables in one transaction, and returns
    /// its `record_hash`.
    ///
    /// Safe to call from several processes at once: appends queue on the file's write lock,
    /// so each links to the record committed just before it. Fails with
    /// [`LineageError::DuplicateRunId`] if the run id is already stored.
    pub fn append(&mut self, record: &RunRecord) -> Result<String, LineageError> {
        let path = self.path.as_path();
        let run_id = &record.run_id;
        // Field order is fixed by the struct and map keys are sorted (BTreeMap), so this text
        // is canonical for the record.
        let record_json =
            serde_json::to_string(record).map_err(|source| LineageError::Serialize {
                path: path.to_path_buf(),
                run_id: run_id.clone(),
                source,
            })?;
        let too_large = |_: TryFromIntError| LineageError::CountTooLarge {
            path: path.to_path_buf(),
            run_id: run_id.clone(),
        };
        let columns = run_columns(record).map_err(too_large)?;
        let derived = derived_rows(record).map_err(too_large)?;

        // Immediate: take the write lock before reading the head, so no other run can append
        // between our read of prev_hash and our insert.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite(path, "lock the store to append the run"))?;

        let exists = tx
            .query_row("SELECT 1 FROM runs WHERE run_id = ?1", [run_id], |_| Ok(()))
            .optional()
            .map_err(sqlite(path, "look up the run id"))?;
        if exists.is_some() {
            return Err(LineageError::DuplicateRunId {
                path: path.to_path_buf(),
                run_id: run_id.clone(),
            });
        }
        let prev_hash: String = tx
            .query_row(
                "SELECT record_hash FROM runs ORDER BY seq DESC LIMIT 1",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(sqlite(path, "read the chain head"))?
            .unwrap_or_else(|| GENESIS_HASH.to_owned());
        let hash = record_hash(&prev_hash, &record_json);

        let insert_run = format!(
            "INSERT INTO runs ({}, record_json, prev_hash, record_hash) VALUES ({})",
            RUN_COLUMNS.join(", "),
            placeholders(RUN_COLUMNS.len() + 3),
        );
        let mut values = columns;
        values.extend([
            Value::Text(record_json),
            Value::Text(prev_hash),
            Value::Text(hash.clone()),
        ]);
        tx.execute(&insert_run, rusqlite::params_from_iter(values))
            .map_err(sqlite(path, "insert the run"))?;

        for (table, rows) in DERIVED_TABLES.iter().zip(derived) {
            let sql = format!(
                "INSERT INTO {} (run_id, {}) VALUES ({})",
                table.name,
                table.columns.join(", "),
                placeholders(table.columns.len() + 1),
            );
            let mut stmt = tx
                .prepare_cached(&sql)
                .map_err(sqlite(path, "prepare the lineage tables insert"))?;
            for row in rows {
                let values = std::iter::once(Value::Text(run_id.clone())).chain(row);
                stmt.execute(rusqlite::params_from_iter(values))
                    .map_err(sqlite(path, "insert into the lineage tables"))?;
            }
        }

        tx.commit().map_err(sqlite(path, "commit the run"))?;
        Ok(hash)
    }

    /// Every run, oldest first, as read from the `runs` table.
    pub fn list(&self) -> Result<Vec<RunSummary>, LineageError> {
        let err = || sqlite(&self.path, "list the runs");
        let mut stmt = self
            .conn
            .prepare(
                "SELECT r.seq, r.run_id, r.status, r.started_at, r.pipeline_name,
                        r.rows_read, r.rows_written,
                        (SELECT count(*) FROM run_outputs o WHERE o.run_id = r.run_id)
                 FROM runs r ORDER BY r.seq",
            )
            .map_err(err())?;
        let rows = stmt
            .query_map([], |row| {
                Ok(RunSummary {
                    seq: row.get(0)?,
                    run_id: row.get(1)?,
                    status: row.get(2)?,
                    started_at: row.get(3)?,
                    pipeline_name: row.get(4)?,
                    rows_read: row.get(5)?,
                    rows_written: row.get(6)?,
                    outputs: row.get(7)?,
                })
            })
            .map_err(err())?;
        rows.collect::<Result<_, _>>().map_err(err())
    }

    /// The run whose id is `run_id`, or else the one run whose id starts with it.
    ///
    /// Returns `Ok(None)` when nothing matches (or `run_id` is empty), and
    /// [`LineageError::AmbiguousRunId`] when a prefix matches several runs. The record is
    /// parsed but not checked against its hash; use [`Store::verify`] for that.
    pub fn get(&self, run_id: &str) -> Result<Option<StoredRun>, LineageError> {
        if run_id.is_empty() {
            return Ok(None);
        }
        let err = || sqlite(&self.path, "look up the run");
        // An exact id wins even when it is also a prefix of other ids.
        let exact: Option<i64> = self
            .conn
            .query_row("SELECT seq FROM runs WHERE run_id = ?1", [run_id], |row| {
                row.get(0)
            })
            .optional()
            .map_err(err())?;
        let seq = match exact {
            Some(seq) => seq,
            None => {
                // substr rather than LIKE, so `%` and `_` in ids are not wildcards.
                let mut stmt = self
                    .conn
                    .prepare(
                        "SELECT seq FROM runs WHERE substr(run_id, 1, length(?1)) = ?1 ORDER BY seq",
                    )
                    .map_err(err())?;
                let matches = stmt
                    .query_map([run_id], |row| row.get::<_, i64>(0))
                    .map_err(err())?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(err())?;
                match matches.as_slice() {
                    [] => return Ok(None),
                    [seq] => *seq,
                    _ => {
                        return Err(LineageError::AmbiguousRunId {
                            path: self.path.clone(),
                            prefix: run_id.to_owned(),
                            count: matches.len(),
                        })
                    }
                }
            }
        };

        let (stored_id, record_json, prev_hash, record_hash): (String, String, String, String) =
            self.conn
                .query_row(
                    "SELECT run_id, record_json, prev_hash, record_hash FROM runs WHERE seq = ?1",
                    [seq],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                )
                .map_err(err())?;
        let record =
            serde_json::from_str(&record_json).map_err(|e| LineageError::InvalidRecord {
                path: self.path.clone(),
                seq,
                run_id: stored_id,
                detail: json_error_detail(&e),
            })?;
        Ok(Some(StoredRun {
            seq,
            record,
            prev_hash,
            record_hash,
        }))
    }

    /// Walks the chain oldest first and reports the first record that fails a check.
    ///
    /// For each record: `seq` continues without a gap, `prev_hash` is the previous record's
    /// `record_hash`, `record_hash` recomputes from `prev_hash` and `record_json`,
    /// `record_json` parses as a [`RunRecord`], the other columns of `runs` equal the JSON, and
    /// the rows of the derived tables equal what the JSON implies. Then: no newest records were
    /// deleted (SQLite's own seq counter is not ahead of the last record), and no derived row
    /// belongs to a run that is not in `runs`.
    ///
    /// A broken chain is a report, not an error; errors are for a store that cannot be read.
    pub fn verify(&self) -> Result<VerifyReport, LineageError> {
        let err = || sqlite(&self.path, "verify the chain");
        // One read transaction gives a consistent snapshot while other runs append.
        let tx = self.conn.unchecked_transaction().map_err(err())?;

        let sql = format!(
            "SELECT seq, {}, record_json, prev_hash, record_hash FROM runs ORDER BY seq",
            RUN_COLUMNS.join(", ")
        );
        let mut stmt = tx.prepare(&sql).map_err(err())?;
        let mut rows = stmt.query([]).map_err(err())?;

        let mut records = 0u64;
        let mut previous: Option<StoredRow> = None;
        let mut first_broken = None;
        while let Some(row) = rows.next().map_err(err())? {
            let current = StoredRow::read(row).map_err(err())?;
            records += 1;
            if first_broken.is_none() {
                let expected_seq = previous.as_ref().map_or(1, |p| p.seq.saturating_add(1));
                if let Some(reason) =
                    check_record(&tx, &current, expected_seq, previous.as_ref()).map_err(err())?
                {
                    first_broken = Some(BrokenRecord {
                        seq: Some(current.seq),
                        run_id: current.columns.first().and_then(as_text).map(str::to_owned),
                        reason,
                    });
                }
            }
            previous = Some(current);
        }
        let last_seq = previous.as_ref().map_or(0, |p| p.seq);
        let head_hash = previous
            .as_ref()
            .and_then(|p| as_text(&p.record_hash))
            .map(str::to_owned);

        if first_broken.is_none() {
            let highest_used: Option<i64> = tx
                .query_row(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'runs'",
                    [],
                    |row| row.get(0),
                )
                .optional()
                .map_err(err())?;
            if highest_used.is_some_and(|highest| highest > last_seq) {
                first_broken = Some(BrokenRecord {
                    seq: Some(last_seq.saturating_add(1)),
                    run_id: None,
                    reason: format!(
                        "record {} is missing (the newest records were deleted)",
                        last_seq.saturating_add(1)
                    ),
                });
            }
        }
        if first_broken.is_none() {
            first_broken = find_orphan_rows(&tx).map_err(err())?;
        }

        Ok(VerifyReport {
            records,
            head_hash,
            first_broken,
        })
    }
}

/// A `runs` row as stored, read as raw SQLite values so a tampered type shows up as a failed
/// check rather than a read error.
struct StoredRow {
    seq: i64,
    /// Values of [`RUN_COLUMNS`], in order.
    columns: Vec<Value>,
    record_json: Value,
    prev_hash: Value,
    record_hash: Value,
}

impl StoredRow {
    /// Reads a row selected as `seq, RUN_COLUMNS…, record_json, prev_hash, record_hash`.
    fn read(row: &Row<'_>) -> rusqlite::Result<StoredRow> {
        let n = RUN_COLUMNS.len();
        Ok(StoredRow {
            seq: row.get(0)?,
            columns: (1..=n).map(|i| row.get(i)).collect::<Result<_, _>>()?,
            record_json: row.get(n + 1)?,
            prev_hash: row.get(n + 2)?,
            record_hash: row.get(n + 3)?,
        })
    }
}

/// Checks one record; returns the reason it is broken, or `None` when it checks out.
fn check_record(
    conn: &Connection,
    row: &StoredRow,
    expected_seq: i64,
    previous: Option<&StoredRow>,
) -> rusqlite::Result<Option<String>> {
    if row.seq > expected_seq {
        return Ok(Some(format!(
            "record {expected_seq} is missing (gap in seq)"
        )));
    }
    if row.seq < expected_seq {
        return Ok(Some("seq does not count up from 1".into()));
    }
    match previous {
        None if as_text(&row.prev_hash) != Some(GENESIS_HASH) => {
            return Ok(Some(
                "prev_hash of the first record is not the genesis hash".into(),
            ));
        }
        Some(prev) if row.prev_hash != prev.record_hash => {
            return Ok(Some(format!(
                "prev_hash does not match record {}",
                prev.seq
            )));
        }
        _ => {}
    }
    let (Some(record_json), Some(prev_hash)) = (as_text(&row.record_json), as_text(&row.prev_hash))
    else {
        return Ok(Some("record_json or prev_hash is not text".into()));
    };
    if as_text(&row.record_hash) != Some(record_hash(prev_hash, record_json).as_str()) {
        return Ok(Some("record_hash does not match its content".into()));
    }
    let Ok(record) = serde_json::from_str::<RunRecord>(record_json) else {
        return Ok(Some("record_json is not a valid run record".into()));
    };

    let Ok(expected) = run_columns(&record) else {
        return Ok(Some(
            "record_json holds a count too large for the store".into(),
        ));
    };
    for ((name, stored), expected) in RUN_COLUMNS.iter().zip(&row.columns).zip(&expected) {
        if stored != expected {
            return Ok(Some(format!(
                "column {name} of runs does not match record_json"
            )));
        }
    }

    let Ok(derived) = derived_rows(&record) else {
        return Ok(Some(
            "record_json holds a count too large for the store".into(),
        ));
    };
    for (table, mut expected) in DERIVED_TABLES.iter().zip(derived) {
        let sql = format!(
            "SELECT {} FROM {} WHERE run_id = ?1",
            table.columns.join(", "),
            table.name
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut stored = stmt
            .query_map([&record.run_id], |r| {
                (0..table.columns.len())
                    .map(|i| r.get::<_, Value>(i))
                    .collect::<rusqlite::Result<Vec<_>>>()
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        // Compare as multisets: row order in a table without an INTEGER PRIMARY KEY is not
        // guaranteed (VACUUM may renumber rowids).
        stored.sort_by(|a, b| cmp_rows(a, b));
        expected.sort_by(|a, b| cmp_rows(a, b));
        if stored != expected {
            return Ok(Some(format!(
                "{} rows do not match record_json",
                table.name
            )));
        }
    }
    Ok(None)
}

/// The first derived row whose run is not in `runs`, e.g. left behind by a deleted record.
fn find_orphan_rows(conn: &Connection) -> rusqlite::Result<Option<BrokenRecord>> {
    for table in &DERIVED_TABLES {
        let sql = format!(
            "SELECT run_id FROM {} WHERE run_id NOT IN (SELECT run_id FROM runs) LIMIT 1",
            table.name
        );
        let orphan: Option<Value> = conn.query_row(&sql, [], |row| row.get(0)).optional()?;
        if let Some(run_id) = orphan {
            return Ok(Some(BrokenRecord {
                seq: None,
                run_id: as_text(&run_id).map(str::to_owned),
                reason: format!("{} has rows for a run that is not in runs", table.name),
            }));
        }
    }
    Ok(None)
}

/// Values of [`RUN_COLUMNS`] for `record`.
fn run_columns(record: &RunRecord) -> Result<Vec<Value>, TryFromIntError> {
    Ok(vec![
        Value::Text(record.run_id.clone()),
        Value::Text(record.status.as_str().to_owned()),
        Value::Text(record.started_at.clone()),
        Value::Text(record.finished_at.clone()),
        Value::Text(record.pipeline_name.clone()),
        Value::Text(record.pipeline_sha256.clone()),
        record.key_id.clone().map_or(Value::Null, Value::Text),
        int(record.rows_read)?,
        int(record.rows_written)?,
        int(record.quarantined)?,
    ])
}

/// Rows of each of [`DERIVED_TABLES`] for `record`, without the `run_id` column.
fn derived_rows(record: &RunRecord) -> Result<[Vec<Vec<Value>>; 7], TryFromIntError> {
    let inputs = record
        .inputs
        .iter()
        .map(|i| {
            Ok(vec![
                Value::Text(i.path.clone()),
                Value::Text(i.dataset_id.clone()),
                int(i.bytes)?,
                Value::Text(i.sha256.clone()),
                int(i.rows_read)?,
            ])
        })
        .collect::<Result<_, TryFromIntError>>()?;
    let outputs = record
        .outputs
        .iter()
        .map(|o| {
            Ok(vec![
                Value::Text(o.path.clone()),
                Value::Text(o.split.clone()),
                int(o.rows)?,
                Value::Text(o.sha256.clone()),
            ])
        })
        .collect::<Result<_, TryFromIntError>>()?;
    let drops = record
        .dropped
        .iter()
        .map(|(reason, rows)| Ok(vec![Value::Text(reason.clone()), int(*rows)?]))
        .collect::<Result<_, TryFromIntError>>()?;
    let columns = record
        .column_lineage
        .iter()
        .map(|c| {
            vec![
                Value::Text(c.output_column.clone()),
                // serde_json::Value's Display is compact JSON and cannot fail.
                Value::Text(serde_json::Value::from(c.input_columns.clone()).to_string()),
                Value::Text(c.transformation.clone()),
                Value::Integer(i64::from(c.masked)),
            ]
        })
        .collect();
    let mut spans = Vec::new();
    for t in &record.text_columns {
        for (kind, n) in &t.spans_replaced {
            spans.push(vec![
                Value::Text(t.column.clone()),
                Value::Text(kind.clone()),
                int(*n)?,
            ]);
        }
    }
    let gate = record
        .leak_gate
        .iter()
        .map(|g| {
            Ok(vec![
                Value::Text(g.column.clone()),
                Value::Text(g.result.clone()),
                int(g.values_scanned)?,
                Value::Text(serde_json::to_string(&g.hits).unwrap_or_default()),
            ])
        })
        .collect::<Result<_, TryFromIntError>>()?;
    let releases = record
        .releases
        .iter()
        .map(|r| {
            Ok(vec![
                Value::Text(r.name.clone()),
                Value::Text(r.path.clone()),
                Value::Text(r.sha256.clone()),
                int(r.rows)?,
                Value::Text(r.dataset_id.clone()),
                Value::Text(r.privacy_unit.clone()),
                Value::Text(r.key_source.clone()),
                Value::Text(r.measure.clone()),
                Value::Real(r.epsilon),
                Value::Real(r.delta),
                Value::Real(r.rho),
                Value::Real(r.global_scale),
                r.threshold
                    .map(|t| Value::Integer(i64::from(t)))
                    .unwrap_or(Value::Null),
            ])
        })
        .collect::<Result<_, TryFromIntError>>()?;
    Ok([inputs, outputs, drops, columns, spans, gate, releases])
}

/// Fills `run_releases` from every stored record (a store older than version 3 has releases in
/// `record_json` only). Records are read, never changed, so the hash chain is untouched.
fn backfill_releases(conn: &Connection) -> rusqlite::Result<()> {
    let records: Vec<String> = conn
        .prepare("SELECT record_json FROM runs ORDER BY seq")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let table = &DERIVED_TABLES[RELEASES_TABLE];
    // Idempotent: the table is derived from the records and nothing else.
    conn.execute(&format!("DELETE FROM {}", table.name), [])?;
    let sql = format!(
        "INSERT INTO {} (run_id, {}) VALUES ({})",
        table.name,
        table.columns.join(", "),
        placeholders(table.columns.len() + 1),
    );
    let mut stmt = conn.prepare(&sql)?;
    for json in records {
        // A record that does not parse is left for `verify` to report.
        let Ok(record) = serde_json::from_str::<RunRecord>(&json) else {
            continue;
        };
        let Ok(derived) = derived_rows(&record) else {
            continue;
        };
        let [_, _, _, _, _, _, releases] = derived;
        for row in releases {
            let values = std::iter::once(Value::Text(record.run_id.clone())).chain(row);
            stmt.execute(rusqlite::params_from_iter(values))?;
        }
    }
    Ok(())
}

fn int(n: u64) -> Result<Value, TryFromIntError> {
    i64::try_from(n).map(Value::Integer)
}

fn as_text(value: &Value) -> Option<&str> {
    match value {
        Value::Text(text) => Some(text),
        _ => None,
    }
}

/// `?1, ?2, …, ?n`.
fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A total order on rows of SQLite values, only so that two row sets can be sorted alike.
fn cmp_rows(a: &[Value], b: &[Value]) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Integer(_) => 1,
            Value::Real(_) => 2,
            Value::Text(_) => 3,
            Value::Blob(_) => 4,
        }
    }
    fn cmp_value(a: &Value, b: &Value) -> Ordering {
        match (a, b) {
            (Value::Integer(x), Value::Integer(y)) => x.cmp(y),
            (Value::Real(x), Value::Real(y)) => x.total_cmp(y),
            (Value::Text(x), Value::Text(y)) => x.cmp(y),
            (Value::Blob(x), Value::Blob(y)) => x.cmp(y),
            _ => rank(a).cmp(&rank(b)),
        }
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| cmp_value(x, y))
        .find(|o| o.is_ne())
        .unwrap_or_else(|| a.len().cmp(&b.len()))
}

/// Where a JSON parse failed, without quoting the JSON (serde messages may echo content).
fn json_error_detail(error: &serde_json::Error) -> String {
    let kind = match error.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected field or type",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    format!("{kind} at line {} column {}", error.line(), error.column())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineage::record::{
        ColumnLineage, InputRecord, LeakGateRecord, OutputRecord, PolicySummary, RunStatus,
        TextColumnRecord,
    };
    use std::collections::BTreeMap;

    fn sample(run_id: &str, n: u64) -> RunRecord {
        RunRecord {
            run_id: run_id.to_owned(),
            status: RunStatus::Succeeded,
            started_at: "2025-01-02T03:04:05Z".into(),
            finished_at: "2025-01-02T03:05:00Z".into(),
            privprep_version: "0.1.0".into(),
            pipeline_name: "patients".into(),
            pipeline_path: "pipelines/patients.toml".into(),
            pipeline_sha256: "ab".repeat(32),
            pipeline_content: "[pipeline]\nname = \"patients\"\n".into(),
            inputs: vec![
                InputRecord {
                    path: "data/a.csv".into(),
                    bytes: 1000 + n,
                    sha256: "cd".repeat(32),
                    rows_read: 60 + n,
                    dataset_id: "clinic-a".into(),
                },
                InputRecord {
                    path: "data/b.csv".into(),
                    bytes: 2000,
                    sha256: "ef".repeat(32),
                    rows_read: 40,
                    dataset_id: "clinic-b".into(),
                },
            ],
            policy: PolicySummary {
                purpose: "research".into(),
                allowed_status: vec!["granted".into()],
                allowed_provenance: vec!["first_party".into()],
                revocation_lists: vec![("revoked.csv".into(), "01".repeat(32), 3)],
                retention_days: Some(365),
                as_of: "2025-01-01".into(),
            },
            rows_per_stage: vec![("read".into(), 100 + n), ("policy".into(), 90 + n)],
            rows_read: 100 + n,
            rows_written: 85 + n,
            dropped: BTreeMap::from([("consent_revoked".into(), 3), ("no_consent".into(), 7)]),
            quarantined: 5,
            quarantine_report: Some("out/quarantine.json".into()),
            column_lineage: vec![
                ColumnLineage {
                    output_column: "patient_token".into(),
                    input_columns: vec!["patient_id".into()],
                    transformation: "tokenize(hmac-sha256, 128 bits, hex)".into(),
                    masked: true,
                },
                ColumnLineage {
                    output_column: "age_band".into(),
                    input_columns: vec!["age".into(), "birth_year".into()],
                    transformation: "generalize(bands of 10)".into(),
                    masked: true,
                },
            ],
            outputs: vec![
                OutputRecord {
                    path: "out/train.parquet".into(),
                    split: "train".into(),
                    rows: 70 + n,
                    sha256: "12".repeat(32),
                    schema: vec![("patient_token".into(), "Utf8".into())],
                },
                OutputRecord {
                    path: "out/test.parquet".into(),
                    split: "test".into(),
                    rows: 15,
                    sha256: "34".repeat(32),
                    schema: vec![("patient_token".into(), "Utf8".into())],
                },
            ],
            key_id: Some("k-1a2b3c4d".into()),
            error: None,
            pii: None,
            text_columns: vec![TextColumnRecord {
                column: "notes".into(),
                detectors: vec!["email".into(), "name".into()],
                context_columns: vec!["patient_name".into()],
                actions: BTreeMap::from([("email".into(), "redact".into())]),
                texts_scanned: 80,
                texts_changed: 12,
                spans_replaced: BTreeMap::from([("email".into(), 9), ("name".into(), 4 + n)]),
                rows_dropped: 0,
            }],
            leak_gate: vec![LeakGateRecord {
                column: "notes".into(),
                result: "clean".into(),
                values_scanned: 85 + n,
                hits: BTreeMap::new(),
            }],
            releases: vec![crate::lineage::record::ReleaseRecord {
                name: "by_country".into(),
                path: "out/by_country.parquet".into(),
                sha256: "d".repeat(64),
                rows: 16,
                dataset_id: "tickets".into(),
                privacy_unit: "subject_id".into(),
                group_by: vec!["country".into()],
                key_source: "public: 16 keys from keys.csv".into(),
                max_rows_per_group: 2,
                max_groups: 1,
                max_rows_per_subject: None,
                max_rows: Some(100_000),
                max_keys: None,
                statistics: vec!["count".into()],
                measure: "approx".into(),
                target: "(ε = 1, δ = 1e-7)".into(),
                epsilon: 0.999_999_7,
                delta: 9.1e-8,
                rho: 0.0,
                global_scale: 3.25 + n as f64,
                threshold: Some(40 + n as u32),
                noise: vec![("count".into(), "Integer Laplace".into(), 3.25, Some(9.7))],
                rank_ci95: Vec::new(),
                mean_ci95: Vec::new(),
            }],
        }
    }

    /// A store with records `run-1`, `run-2`, `run-3`, and its path.
    fn store_with_three() -> (tempfile::TempDir, PathBuf, Vec<String>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lineage.db");
        let mut store = Store::open(&path).expect("open");
        let hashes = (1..=3)
            .map(|n| {
                store
                    .append(&sample(&format!("run-{n}"), n))
                    .expect("append")
            })
            .collect();
        (dir, path, hashes)
    }

    /// A plain connection, as a tamperer with the `sqlite3` shell would use. The bundled
    /// SQLite enforces foreign keys by default; the shell does not.
    fn raw(path: &Path) -> Connection {
        let conn = Connection::open(path).expect("raw open");
        conn.pragma_update(None, "foreign_keys", false)
            .expect("foreign keys off");
        conn
    }

    fn broken(path: &Path) -> BrokenRecord {
        let report = Store::open(path).expect("open").verify().expect("verify");
        report
            .first_broken
            .expect("verify should find the tampering")
    }

    #[test]
    fn record_hash_is_sha256_of_prev_newline_json() {
        // printf '%s\n%s' 000…000 '{}' | sha256sum
        assert_eq!(
            record_hash(GENESIS_HASH, "{}"),
            "5649d09ed68c17156095d175eef152856c5b1a81c117c409c1e00f096aa6838e"
        );
    }

    #[test]
    fn append_list_get_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A missing parent folder is created.
        let path = dir.path().join("nested/deeper/lineage.db");
        let mut store = Store::open(&path).expect("open");
        let first = sample("run-1", 1);
        let mut second = sample("run-2", 2);
        second.status = RunStatus::Failed;
        second.key_id = None;
        second.error = Some("input data/a.csv: row 7: column age is not an integer".into());
        let h1 = store.append(&first).expect("append 1");
        let h2 = store.append(&second).expect("append 2");

        let list = store.list().expect("list");
        assert_eq!(
            list,
            vec![
                RunSummary {
                    seq: 1,
                    run_id: "run-1".into(),
                    status: "succeeded".into(),
                    started_at: "2025-01-02T03:04:05Z".into(),
                    pipeline_name: "patients".into(),
                    rows_read: 101,
                    rows_written: 86,
                    outputs: 2,
                },
                RunSummary {
                    seq: 2,
                    run_id: "run-2".into(),
                    status: "failed".into(),
                    started_at: "2025-01-02T03:04:05Z".into(),
                    pipeline_name: "patients".into(),
                    rows_read: 102,
                    rows_written: 87,
                    outputs: 2,
                },
            ]
        );

        let got1 = store.get("run-1").expect("get").expect("found");
        assert_eq!(got1.seq, 1);
        assert_eq!(got1.record, first);
        assert_eq!(got1.prev_hash, GENESIS_HASH);
        assert_eq!(got1.record_hash, h1);
        let got2 = store.get("run-2").expect("get").expect("found");
        assert_eq!(got2.record, second);
        assert_eq!(got2.prev_hash, h1);
        assert_eq!(got2.record_hash, h2);
        let json = serde_json::to_string(&second).expect("json");
        assert_eq!(h2, record_hash(&h1, &json));

        // The derived tables hold what compliance queries.
        let conn = raw(&path);
        let mut stmt = conn
            .prepare(
                "SELECT DISTINCT run_id FROM run_inputs WHERE dataset_id = 'clinic-a' ORDER BY run_id",
            )
            .expect("prepare");
        let used = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .expect("query")
            .collect::<rusqlite::Result<Vec<_>>>()
            .expect("rows");
        drop(stmt);
        assert_eq!(used, ["run-1", "run-2"]);
        let inputs: String = conn
            .query_row(
                "SELECT input_columns FROM column_lineage WHERE run_id = 'run-1' AND output_column = 'age_band'",
                [],
                |r| r.get(0),
            )
            .expect("query");
        assert_eq!(inputs, r#"["age","birth_year"]"#);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("pragma");
        assert_eq!(mode, "wal");

        // Reopening finds the same chain.
        drop(store);
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.list().expect("list").len(), 2);
        assert!(store.verify().expect("verify").is_ok());
    }

    #[test]
    fn get_accepts_a_unique_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("lineage.db")).expect("open");
        for id in ["2025-abc-1", "2025-abd-2", "x", "x%y", "xy"] {
            store.append(&sample(id, 1)).expect("append");
        }
        let found = |prefix| store.get(prefix).expect("get").map(|r| r.record.run_id);
        assert_eq!(found("2025-abc").as_deref(), Some("2025-abc-1"));
        assert_eq!(found("2025-abd-2").as_deref(), Some("2025-abd-2"));
        // An exact id wins over longer ids that start with it.
        assert_eq!(found("x").as_deref(), Some("x"));
        // `%` is not a wildcard.
        assert_eq!(found("x%").as_deref(), Some("x%y"));
        assert_eq!(found("nope"), None);
        assert_eq!(found(""), None);
        match store.get("2025-ab") {
            Err(LineageError::AmbiguousRunId { count, .. }) => assert_eq!(count, 2),
            other => panic!("expected an ambiguity error, got {other:?}"),
        }
    }

    #[test]
    fn verify_passes_on_an_untouched_chain() {
        let (_dir, path, hashes) = store_with_three();
        let report = Store::open(&path).expect("open").verify().expect("verify");
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.records, 3);
        assert_eq!(
            report.head_hash.as_deref(),
            hashes.last().map(String::as_str)
        );
    }

    #[test]
    fn verify_passes_on_an_empty_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let report = Store::open(&dir.path().join("lineage.db"))
            .expect("open")
            .verify()
            .expect("verify");
        assert_eq!(
            report,
            VerifyReport {
                records: 0,
                head_hash: None,
                first_broken: None
            }
        );
    }

    #[test]
    fn verify_catches_an_edited_record_json() {
        let (_dir, path, _) = store_with_three();
        raw(&path)
            .execute(
                "UPDATE runs SET record_json = replace(record_json, 'clinic-a', 'CANARY-42') WHERE seq = 2",
                [],
            )
            .expect("tamper");
        let b = broken(&path);
        assert_eq!(b.seq, Some(2));
        assert_eq!(b.run_id.as_deref(), Some("run-2"));
        assert_eq!(b.reason, "record_hash does not match its content");
        assert!(!b.reason.contains("CANARY"));
    }

    #[test]
    fn verify_catches_an_edited_rows_written_column() {
        let (_dir, path, _) = store_with_three();
        raw(&path)
            .execute(
                "UPDATE runs SET rows_written = rows_written + 1 WHERE seq = 2",
                [],
            )
            .expect("tamper");
        let b = broken(&path);
        assert_eq!(b.seq, Some(2));
        assert_eq!(
            b.reason,
            "column rows_written of runs does not match record_json"
        );
    }

    #[test]
    fn verify_catches_a_column_with_a_changed_type() {
        let (_dir, path, _) = store_with_three();
        raw(&path)
            .execute("UPDATE runs SET quarantined = 'five' WHERE seq = 3", [])
            .expect("tamper");
        let b = broken(&path);
        assert_eq!(b.seq, Some(3));
        assert_eq!(
            b.reason,
            "column quarantined of runs does not match record_json"
        );
    }

    #[test]
    fn verify_catches_an_edited_run_outputs_row() {
        let (_dir, path, _) = store_with_three();
        raw(&path)
            .execute(
                "UPDATE run_outputs SET path = 'elsewhere.parquet'
                 WHERE run_id = 'run-3' AND split = 'test'",
                [],
            )
            .expect("tamper");
        let b = broken(&path);
        assert_eq!(b.seq, Some(3));
        assert_eq!(b.reason, "run_outputs rows do not match record_json");
    }

    #[test]
    fn a_version_1_store_gains_the_text_tables_and_keeps_verifying() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lineage.db");
        {
            // Records as version 1 wrote them: no text columns, no gate verdicts.
            let mut store = Store::open(&path).expect("open");
            for i in 1..=2 {
                let mut r = sample(&format!("run-{i}"), i);
                r.text_columns.clear();
                r.leak_gate.clear();
                r.releases.clear();
                store.append(&r).expect("append");
            }
        }
        raw(&path)
            .execute_batch(
                "DROP TABLE run_text_spans; DROP TABLE run_leak_gate; DROP TABLE run_releases;
                 PRAGMA user_version = 1;",
            )
            .expect("make it a version 1 store");
        let mut store = Store::open(&path).expect("open and migrate");
        store
            .append(&sample("run-3", 3))
            .expect("append after migration");
        let report = store.verify().expect("verify");
        assert!(report.is_ok(), "{:?}", report.first_broken);
        assert_eq!(report.records, 3);
        let n: i64 = raw(&path)
            .query_row(
                "SELECT COUNT(*) FROM run_text_spans WHERE run_id = 'run-3'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(n, 2);
    }

    #[test]
    fn a_version_2_store_gets_its_releases_table_filled_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lineage.db");
        {
            let mut store = Store::open(&path).expect("open");
            for i in 1..=2 {
                store
                    .append(&sample(&format!("run-{i}"), i))
                    .expect("append");
            }
        }
        raw(&path)
            .execute_batch("DROP TABLE run_releases; PRAGMA user_version = 2;")
            .expect("make it a version 2 store");
        let mut store = Store::open(&path).expect("open and migrate");
        store.append(&sample("run-3", 3)).expect("append");
        let report = store.verify().expect("verify");
        assert!(report.is_ok(), "{:?}", report.first_broken);
        let rows: Vec<(String, f64, Option<i64>)> = raw(&path)
            .prepare("SELECT run_id, global_scale, threshold FROM run_releases ORDER BY run_id")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(
            rows,
            vec![
                ("run-1".to_string(), 4.25, Some(41)),
                ("run-2".to_string(), 5.25, Some(42)),
                ("run-3".to_string(), 6.25, Some(43)),
            ]
        );
    }

    #[test]
    fn verify_catches_an_edited_release_spend() {
        let (_dir, path, _) = store_with_three();
        raw(&path)
            .execute(
                "UPDATE run_releases SET epsilon = 0.1 WHERE run_id = 'run-2'",
                [],
            )
            .expect("tamper");
        let b = broken(&path);
        assert_eq!(b.seq, Some(2));
        assert_eq!(b.reason, "run_releases rows do not match record_json");
    }

    #[test]
    fn verify_catches_an_edited_leak_gate_verdict() {
        let (_dir, path, _) = store_with_three();
        raw(&path)
            .execute(
                "UPDATE run_leak_gate SET result = 'leak' WHERE run_id = 'run-2'",
                [],
            )
            .expect("tamper");
        let b = broken(&path);
        assert_eq!(b.seq, Some(2));
        assert_eq!(b.reason, "run_leak_gate rows do not match record_json");
    }

    #[test]
    fn verify_catches_an_added_derived_row() {
        let (_dir, path, _) = store_with_three();
        raw(&path)
            .execute(
                "INSERT INTO run_drops (run_id, reason, rows) VALUES ('run-1', 'extra', 1)",
                [],
            )
            .expect("tamper");
        let b = broken(&path);
        assert_eq!(b.seq, Some(1));
        assert_eq!(b.reason, "run_drops rows do not match record_json");
    }

    #[test]
    fn verify_catches_a_deleted_middle_record() {
        let (_dir, path, _) = store_with_three();
        raw(&path)
            .execute("DELETE FROM runs WHERE seq = 2", [])
            .expect("tamper");
        let b = broken(&path);
        assert_eq!(b.seq, Some(3));
        assert_eq!(b.reason, "record 2 is missing (gap in seq)");
    }

    #[test]
    fn verify_catches_a_deleted_first_record() {
        let (_dir, path, _) = store_with_three();
        raw(&path)
            .execute("DELETE FROM runs WHERE seq = 1", [])
            .expect("tamper");
        let b = broken(&path);
        assert_eq!(b.seq, Some(2));
        assert_eq!(b.reason, "record 1 is missing (gap in seq)");
    }

    #[test]
    fn verify_catches_deleted_newest_records() {
        let (_dir, path, _) = store_with_three();
        let conn = raw(&path);
        conn.execute("DELETE FROM runs WHERE seq = 3", [])
            .expect("tamper");
        // Remove the derived rows too, so only the counter can tell.
        for table in &DERIVED_TABLES {
            conn.execute(
                &format!("DELETE FROM {} WHERE run_id = 'run-3'", table.name),
                [],
            )
            .expect("tamper");
        }
        let b = broken(&path);
        assert_eq!(b.seq, Some(3));
        assert_eq!(
            b.reason,
            "record 3 is missing (the newest records were deleted)"
        );
    }

    #[test]
    fn verify_catches_rows_of_a_run_that_does_not_exist() {
        let (_dir, path, _) = store_with_three();
        raw(&path)
            .execute(
                "INSERT INTO run_outputs (run_id, path, split, rows, sha256)
                 VALUES ('ghost', 'out/x.parquet', 'all', 1, 'ff')",
                [],
            )
            .expect("tamper");
        let b = broken(&path);
        assert_eq!(b.seq, None);
        assert_eq!(b.run_id.as_deref(), Some("ghost"));
        assert_eq!(
            b.reason,
            "run_outputs has rows for a run that is not in runs"
        );
    }

    #[test]
    fn verify_catches_swapped_record_json() {
        let (_dir, path, _) = store_with_three();
        raw(&path)
            .execute_batch(
                "UPDATE runs SET record_json = CASE seq
                     WHEN 1 THEN (SELECT record_json FROM runs WHERE seq = 2)
                     ELSE (SELECT record_json FROM runs WHERE seq = 1) END
                 WHERE seq IN (1, 2);",
            )
            .expect("tamper");
        let b = broken(&path);
        assert_eq!(b.seq, Some(1));
        assert_eq!(b.reason, "record_hash does not match its content");
    }

    #[test]
    fn verify_catches_reordered_records() {
        // Move whole records (content and hashes) so each still hashes correctly on its own.
        let (_dir, path, _) = store_with_three();
        let cols = "run_id, status, started_at, finished_at, pipeline_name, pipeline_sha256, \
                    key_id, rows_read, rows_written, quarantined, record_json, prev_hash, record_hash";
        raw(&path)
            .execute_batch(&format!(
                "CREATE TEMP TABLE t AS SELECT seq, {cols} FROM runs WHERE seq IN (2, 3);
                 DELETE FROM runs WHERE seq IN (2, 3);
                 INSERT INTO runs (seq, {cols}) SELECT 5 - seq, {cols} FROM t;"
            ))
            .expect("tamper");
        let b = broken(&path);
        assert_eq!(b.seq, Some(2));
        assert_eq!(b.reason, "prev_hash does not match record 1");
    }

    #[test]
    fn duplicate_run_id_is_refused_and_leaves_the_chain_intact() {
        let (_dir, path, _) = store_with_three();
        let mut store = Store::open(&path).expect("open");
        let err = store.append(&sample("run-2", 9)).expect_err("duplicate");
        assert!(
            matches!(err, LineageError::DuplicateRunId { .. }),
            "{err:?}"
        );
        let report = store.verify().expect("verify");
        assert!(report.is_ok());
        assert_eq!(report.records, 3);
    }

    #[test]
    fn a_store_from_a_newer_privprep_is_refused() {
        let (_dir, path, _) = store_with_three();
        raw(&path)
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("bump");
        let err = Store::open(&path).expect_err("newer schema");
        assert!(matches!(err, LineageError::NewerSchema { .. }), "{err:?}");
        assert!(err.to_string().contains("newer privprep"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_store_gives_a_hint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lineage.db");
        std::fs::write(&path, vec![b'x'; 4096]).expect("write");
        let err = Store::open(&path).expect_err("not a database");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("privprep lineage store?"), "{message}");
    }

    #[test]
    fn get_reports_an_unparseable_record_without_quoting_it() {
        let (_dir, path, _) = store_with_three();
        raw(&path)
            .execute(
                r#"UPDATE runs SET record_json = '{"run_id":"CANARY-42"}' WHERE seq = 1"#,
                [],
            )
            .expect("tamper");
        let err = Store::open(&path)
            .expect("open")
            .get("run-1")
            .expect_err("invalid");
        assert!(
            matches!(err, LineageError::InvalidRecord { seq: 1, .. }),
            "{err:?}"
        );
        assert!(!err.to_string().contains("CANARY"), "{err}");
    }

    #[test]
    fn concurrent_appends_from_four_stores_form_one_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lineage.db");
        std::thread::scope(|scope| {
            for t in 0..4 {
                let path = &path;
                scope.spawn(move || {
                    let mut store = Store::open(path).expect("open");
                    for n in 0..5 {
                        store
                            .append(&sample(&format!("run-{t}-{n}"), n))
                            .expect("append");
                    }
                });
            }
        });
        let store = Store::open(&path).expect("open");
        let report = store.verify().expect("verify");
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.records, 20);
        let seqs: Vec<i64> = store.list().expect("list").iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
    }
}
