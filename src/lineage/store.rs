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
//! - `budget_ledger`, one row per privacy budget spend, chained on its own; see
//!   [`super::ledger_table`]. It is not derived from the records: runs spend before they are
//!   recorded. Each record appended since version 4 lists its run's spends (`budget_spends`),
//!   and [`Store::verify`] checks that the two agree.
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
//! rewrites every later record and recomputes the hashes, or who puts an older copy of the
//! whole file back. For that the store records its head outside the file, in the anchor beside
//! it ([`super::anchor`]): [`Store::open`] refuses a store that is missing or empty while its
//! anchor says it held records, and a store that no longer holds what the anchor recorded.
//! Only `privprep lineage init` ([`Store::init`]) starts a store afresh or accepts an older copy,
//! and the anchor keeps a note that it did. Keep the head hash that `verify` reports somewhere
//! else too (a ticket, a release note).

use std::cmp::Ordering;
use std::num::TryFromIntError;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, Transaction, TransactionBehavior};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::anchor::{self, Anchor, Head, InitNote};
use super::ledger_table::{self, LedgerEntry, StoredLedgerEntry};
use super::record::{BudgetSpend, RunRecord};

/// `prev_hash` of the first record in a store: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

// The schema version is kept in `PRAGMA user_version`; `tables::MIGRATIONS` lists every step.
// Migrations run only while `user_version` is below `SCHEMA_VERSION`, so a table dropped from a
// current store stays missing and `verify` reports it.
use super::tables::{self, SCHEMA_VERSION, TABLES};

/// How long a run waits for another run's append before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

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
    ///
    /// The message says what went wrong in its own words (e.g. "the disk is full") instead of
    /// chaining SQLite's message, so it is said once.
    #[error("lineage store {}: cannot {action}: {}", .path.display(), sqlite_reason(.error))]
    Sqlite {
        /// The store file.
        path: PathBuf,
        /// What the store was doing, e.g. `append the run`.
        action: &'static str,
        /// The underlying SQLite error.
        error: rusqlite::Error,
    },

    /// The store file is missing or empty, but its anchor says it held a chain.
    #[error(
        "lineage store {} is missing or empty, but its anchor {} says it held {} record(s) (head {}) and {} budget ledger entr(ies)\n  = hint: restore the store from a backup; or, to start a new, empty store in its place, run `privprep lineage init` (the anchor keeps a note that you did)",
        .path.display(), .anchor.display(), .head.records,
        .head.head_hash.as_deref().unwrap_or("-"), .head.ledger_last_id
    )]
    StoreMissing {
        /// The store file.
        path: PathBuf,
        /// The anchor file.
        anchor: PathBuf,
        /// What the anchor recorded.
        head: Head,
    },

    /// The store no longer holds what its anchor recorded.
    #[error(
        "lineage store {} does not match its anchor {}: {reason}; the store was rolled back to an older copy, or replaced\n  = hint: put the newest copy of the store back; or, to keep the store as it is now, run `privprep lineage init --adopt` (the anchor keeps a note that you did)",
        .path.display(), .anchor.display()
    )]
    AnchorMismatch {
        /// The store file.
        path: PathBuf,
        /// The anchor file.
        anchor: PathBuf,
        /// What differs, in words.
        reason: String,
    },

    /// The anchor file cannot be read.
    #[error(
        "the anchor {} of lineage store {} cannot be used: {reason}\n  = hint: the anchor records the store's head so that a lost or rolled-back store is noticed; restore it from a backup, or run `privprep lineage init --adopt` to anchor the store as it is now",
        .anchor.display(), .path.display()
    )]
    AnchorUnreadable {
        /// The store file.
        path: PathBuf,
        /// The anchor file.
        anchor: PathBuf,
        /// Why, in words (never the file's content).
        reason: String,
    },

    /// The anchor could not be written where it must be (`lineage init`).
    #[error(
        "cannot write the anchor {} of lineage store {} ({})\n  = hint: check that the folder is writable and the disk is not full",
        .anchor.display(), .path.display(), .error.kind()
    )]
    AnchorWrite {
        /// The store file.
        path: PathBuf,
        /// The anchor file.
        anchor: PathBuf,
        /// The underlying I/O error.
        error: std::io::Error,
    },

    /// The budget ledger fails its integrity check, so nothing may be spent or shown from it.
    #[error(
        "the budget ledger in lineage store {} fails its integrity check at {}: {}\n  = hint: no budget is spent or reported from a ledger that fails this check; run `privprep lineage verify` for details, and restore the store from a backup",
        .path.display(), .broken.location(), .broken.reason
    )]
    LedgerBroken {
        /// The store file.
        path: PathBuf,
        /// The first failed check.
        broken: BrokenRecord,
    },

    /// `privprep lineage init` would overwrite or invent something.
    #[error("cannot initialize lineage store {}: {reason}\n  = hint: {hint}", .path.display())]
    InitRefused {
        /// The store file.
        path: PathBuf,
        /// Why not, in words.
        reason: String,
        /// What to do instead.
        hint: &'static str,
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

/// What an SQLite failure means, and a hint, chosen by its error code: `<what>\n  = hint: …`.
fn sqlite_reason(error: &rusqlite::Error) -> String {
    let (what, hint): (String, String) = match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => (
            "another program holds the file".into(),
            format!(
                "privprep waited {} s for it; is another run, or an sqlite3 shell, holding the store?",
                BUSY_TIMEOUT.as_secs()
            ),
        ),
        Some(ErrorCode::NotADatabase) => (
            "the file is not an SQLite database".into(),
            "is this file a privprep lineage store?".into(),
        ),
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => (
            "the file cannot be opened for writing".into(),
            "check that the file and its folder are readable and writable".into(),
        ),
        Some(ErrorCode::DiskFull) => (
            "the disk is full".into(),
            "free space on the disk that holds the store, then run again".into(),
        ),
        Some(ErrorCode::DatabaseCorrupt) => (
            "the file is damaged".into(),
            "restore it from a backup".into(),
        ),
        _ => match error {
            rusqlite::Error::ToSqlConversionFailure(_) => (
                "a count is too large for SQLite's 64-bit integers".into(),
                "is a row or byte count corrupt?".into(),
            ),
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::InvalidColumnType(..) => (
                "a stored value has the wrong type".into(),
                "run `privprep lineage verify`".into(),
            ),
            // SQLite's own messages name tables and columns, never stored values.
            other => (
                other.to_string(),
                "run `privprep lineage verify` to check the store".into(),
            ),
        },
    };
    format!("{what}\n  = hint: {hint}")
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
    move |error| LineageError::Sqlite {
        path: path.to_path_buf(),
        action,
        error,
    }
}

/// Puts the store in WAL mode, waiting up to [`BUSY_TIMEOUT`] for other programs.
///
/// SQLite returns "busy" for this pragma at once, without calling the busy handler, when
/// waiting could deadlock (another connection is between its read and its write lock), which
/// happens when several runs open a new store together. So the wait is done here: read the
/// mode (no lock needed once the file is in WAL), and retry the switch with a short pause.
fn switch_to_wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(2);
    loop {
        let attempt = conn
            .pragma_query_value(None, "journal_mode", |row| row.get::<_, String>(0))
            .and_then(|mode| {
                if mode.eq_ignore_ascii_case("wal") {
                    Ok(mode)
                } else {
                    conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
                }
            });
        match attempt {
            Ok(_) => return Ok(()),
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// What is wrong with the first subject set `record` lists whose file (in `dir`) is missing or
/// differs from the SHA-256 the record holds: an edited, truncated or swapped set would make
/// `subject find` lie.
fn subject_set_problem(record: &RunRecord, dir: &Path) -> Option<String> {
    let mut seen: Vec<&str> = Vec::new();
    for set in &record.subject_index {
        // The releases of a run share one file.
        if seen.contains(&set.file.as_str()) {
            continue;
        }
        seen.push(&set.file);
        match std::fs::read(dir.join(&set.file)) {
            Err(_) => {
                return Some(format!(
                    "its subject set {} is missing from {}",
                    set.file,
                    dir.display()
                ))
            }
            Ok(bytes) if hex::encode(Sha256::digest(&bytes)) != set.sha256 => {
                return Some(format!(
                    "its subject set {} differs from the SHA-256 the record holds",
                    set.file
                ))
            }
            Ok(_) => {}
        }
    }
    None
}

/// The anchor of the store at `path`, as an error when it cannot be read.
fn read_anchor(path: &Path) -> Result<Option<Anchor>, LineageError> {
    anchor::read(path).map_err(|reason| LineageError::AnchorUnreadable {
        path: path.to_path_buf(),
        anchor: anchor::anchor_path(path),
        reason,
    })
}

/// True when there is no store file, or an empty one (which SQLite would take for a new store).
/// Other errors (e.g. permissions) are left for SQLite to report.
fn file_is_missing_or_empty(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(m) => m.is_file() && m.len() == 0,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// What [`Store::init`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InitOutcome {
    /// The anchor file written.
    pub anchor: PathBuf,
    /// The store's head as anchored now.
    pub head: Head,
    /// What the anchor held before, if there was a readable anchor.
    pub replaced: Option<Head>,
    /// True for `--adopt` (the store was kept as it is), false for a new store.
    pub adopted: bool,
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
pub struct RunListing {
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

/// The first place where the chain, the derived tables, the budget ledger or the anchor
/// disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenRecord {
    /// Chain position of the broken record; `None` for rows that belong to no record.
    pub seq: Option<i64>,
    /// Run id of the broken record, when known.
    pub run_id: Option<String>,
    /// `id` of the broken budget ledger entry, when the ledger's chain is what broke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_entry: Option<i64>,
    /// Which check failed, in words; never a value from the record.
    pub reason: String,
}

impl BrokenRecord {
    /// Where it broke, in words: `record 2 (run …)`, `budget ledger entry 3 (run …)`, …
    pub fn location(&self) -> String {
        let run = self
            .run_id
            .as_deref()
            .map(|r| format!(" (run {r})"))
            .unwrap_or_default();
        match (self.ledger_entry, self.seq) {
            (Some(id), _) => format!("budget ledger entry {id}{run}"),
            (None, Some(seq)) => format!("record {seq}{run}"),
            (None, None) => match &self.run_id {
                Some(r) => format!("rows of run {r}"),
                None => "the store as a whole".into(),
            },
        }
    }
}

/// Result of [`Store::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Number of records in the store.
    pub records: u64,
    /// `record_hash` of the newest record; `None` for an empty store.
    pub head_hash: Option<String>,
    /// Number of budget ledger entries.
    pub ledger_entries: u64,
    /// `entry_hash` of the newest ledger entry; `None` for an empty ledger.
    pub ledger_head: Option<String>,
    /// The anchor the store was checked against; `None` when there is none (it could not be
    /// written, e.g. in a read-only folder).
    pub anchor: Option<PathBuf>,
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
    /// [`LineageError::NewerSchema`] on a store written by a newer privprep; with
    /// [`LineageError::StoreMissing`] when the file is missing or empty but its anchor says a
    /// store was there; with [`LineageError::AnchorMismatch`] when the store no longer holds
    /// what the anchor recorded. A store without an anchor (new, or older than anchors) gets
    /// one.
    pub fn open(path: &Path) -> Result<Store, LineageError> {
        Store::open_checked(path, true)
    }

    /// [`Store::open`] for reading what is there: a store that disagrees with its anchor is
    /// opened anyway, and [`Store::verify`] reports it (appends and spends still refuse it).
    /// A missing store is still an error: there is nothing to read.
    pub fn open_to_inspect(path: &Path) -> Result<Store, LineageError> {
        Store::open_checked(path, false)
    }

    fn open_checked(path: &Path, strict: bool) -> Result<Store, LineageError> {
        let anchor = read_anchor(path)?;
        if let Some(a) = &anchor {
            if file_is_missing_or_empty(path) {
                return Err(LineageError::StoreMissing {
                    path: path.to_path_buf(),
                    anchor: anchor::anchor_path(path),
                    head: a.head.clone(),
                });
            }
        }
        let store = Store::connect(path)?;
        match &anchor {
            None => store.update_anchor(),
            Some(a) if strict => store.check_anchor(&store.conn, a)?,
            Some(_) => {}
        }
        Ok(store)
    }

    /// Opens (creating if need be) and migrates the file, with no anchor check.
    fn connect(path: &Path) -> Result<Store, LineageError> {
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
        switch_to_wal(&conn).map_err(sqlite(path, "switch to WAL mode"))?;
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
                tables::migrate(&tx, found, SCHEMA_VERSION)
                    .map_err(sqlite(path, "bring the schema up to date"))?;
            }
            tx.commit().map_err(sqlite(path, "create the schema"))?;
        }

        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Creates a store where none is, or accepts the store as it is, and records it in the
    /// anchor: what `privprep lineage init` does, the one way to set the anchor back.
    ///
    /// Without `adopt`: the file must be missing or empty (it is never overwritten); a new,
    /// empty store is created, and the anchor notes what it held before. With `adopt`: the
    /// file must be a store whose chain and ledger verify; it is anchored as it is (after an
    /// older backup was put back, or when the anchor was lost).
    pub fn init(path: &Path, adopt: bool) -> Result<(Store, InitOutcome), LineageError> {
        let refuse = |reason: String, hint: &'static str| LineageError::InitRefused {
            path: path.to_path_buf(),
            reason,
            hint,
        };
        // A damaged anchor is what `init --adopt` is for; a new store needs no old anchor.
        let previous = read_anchor(path).ok().flatten();
        let empty = file_is_missing_or_empty(path);
        if !adopt && !empty {
            return Err(refuse(
                "the file exists and is not empty, and `lineage init` never overwrites a store".into(),
                "to keep this store as it is (e.g. an older backup you put back), run `privprep lineage init --adopt`; to start afresh, move the file away first",
            ));
        }
        if adopt && empty {
            return Err(refuse(
                "there is no store to adopt (the file is missing or empty)".into(),
                "run `privprep lineage init` without --adopt to create a new, empty store",
            ));
        }
        if !adopt {
            let mut wal = path.as_os_str().to_owned();
            wal.push("-wal");
            let wal = PathBuf::from(wal);
            if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
                return Err(refuse(
                    format!(
                        "its write-ahead log {} is still there and may hold part of the lost store",
                        wal.display()
                    ),
                    "move the -wal file away (keep it: it may help restore the store), then run `privprep lineage init` again",
                ));
            }
        }
        let store = Store::connect(path)?;
        if adopt {
            let report = store.verify_with(false)?;
            if let Some(b) = report.first_broken {
                return Err(refuse(
                    format!("it fails verification at {}: {}", b.location(), b.reason),
                    "only a store whose chain and ledger verify can be adopted; restore a good copy from a backup",
                ));
            }
        }
        // The write lock keeps other anchor writers out until ours is in place.
        let tx = Transaction::new_unchecked(&store.conn, TransactionBehavior::Immediate)
            .map_err(sqlite(path, "lock the store to write its anchor"))?;
        let head = anchor::current_head(&tx).map_err(sqlite(path, "read the chain head"))?;
        let mut written = Anchor::new(path, head.clone(), previous.as_ref());
        written.inits.push(InitNote {
            at: written.updated_at.clone(),
            kind: if adopt { "adopt" } else { "new" }.into(),
            previous: previous.as_ref().map(|a| a.head.clone()),
        });
        let anchor_file = anchor::anchor_path(path);
        let write_error = |error| LineageError::AnchorWrite {
            path: path.to_path_buf(),
            anchor: anchor_file.clone(),
            error,
        };
        anchor::write(path, &written).map_err(write_error)?;
        drop(tx); // nothing was written to the store: rolled back
        Ok((
            store,
            InitOutcome {
                anchor: anchor_file,
                head,
                replaced: previous.map(|a| a.head),
                adopted: adopt,
            },
        ))
    }

    /// Fails with [`LineageError::AnchorMismatch`] when the store (as `conn` sees it) no
    /// longer holds what `anchor` recorded.
    fn check_anchor(&self, conn: &Connection, anchor: &Anchor) -> Result<(), LineageError> {
        let path = self.path.as_path();
        match anchor::mismatch(conn, &anchor.head)
            .map_err(sqlite(path, "compare the store with its anchor"))?
        {
            None => Ok(()),
            Some(reason) => Err(LineageError::AnchorMismatch {
                path: path.to_path_buf(),
                anchor: anchor::anchor_path(path),
                reason,
            }),
        }
    }

    /// Checks the store against its anchor inside a write transaction, before a write.
    fn check_anchor_for_write(&self, conn: &Connection) -> Result<(), LineageError> {
        match read_anchor(&self.path)? {
            Some(a) => self.check_anchor(conn, &a),
            None => Ok(()),
        }
    }

    /// Moves the anchor forward to what is committed now. Never fails the caller: the commit
    /// it follows is done; an anchor that lags only weakens the check until the next write.
    fn update_anchor(&self) {
        if let Err(e) = self.try_update_anchor() {
            tracing::warn!(
                "cannot update the anchor {} of lineage store {}: {e}; a lost or rolled-back store is noticed only up to the last anchored record",
                anchor::anchor_path(&self.path).display(),
                self.path.display()
            );
        }
    }

    fn try_update_anchor(&self) -> Result<(), String> {
        // Under the store's write lock (nothing is written to the store; the transaction rolls
        // back): anchor writers queue, and whoever writes last writes the newest committed head.
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(|e| sqlite_reason(&e))?;
        let existing = anchor::read(&self.path)?;
        let head = anchor::current_head(&tx).map_err(|e| sqlite_reason(&e))?;
        if let Some(a) = &existing {
            if a.head == head {
                return Ok(());
            }
            // A store that disagrees with its anchor is left for `verify` and `lineage init`.
            if anchor::mismatch(&tx, &a.head)
                .map_err(|e| sqlite_reason(&e))?
                .is_some()
            {
                return Ok(());
            }
        }
        let written = anchor::write(
            &self.path,
            &Anchor::new(&self.path, head, existing.as_ref()),
        )
        .map_err(|e| format!("cannot write it ({})", e.kind()));
        drop(tx);
        written
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` to the chain and its derived tables in one transaction, and returns
    /// its `record_hash`.
    ///
    /// The record's `budget_spends` is set here, under the same lock, to the budget ledger's
    /// entries of the run (whatever the caller put there is replaced), so every record says
    /// what its run spent, whether it succeeded, failed or was recovered after a crash.
    ///
    /// Safe to call from several processes at once: appends queue on the file's write lock,
    /// so each links to the record committed just before it. Fails with
    /// [`LineageError::DuplicateRunId`] if the run id is already stored, and with
    /// [`LineageError::AnchorMismatch`] on a store that no longer holds what its anchor
    /// recorded (a record appended there would fork the history).
    pub fn append(&mut self, record: &RunRecord) -> Result<String, LineageError> {
        let hash = self.append_locked(record)?;
        self.update_anchor();
        Ok(hash)
    }

    fn append_locked(&self, record: &RunRecord) -> Result<String, LineageError> {
        let path = self.path.as_path();
        let run_id = &record.run_id;
        let too_large = |_: TryFromIntError| LineageError::CountTooLarge {
            path: path.to_path_buf(),
            run_id: run_id.clone(),
        };
        // Immediate: take the write lock before reading the head, so no other run can append
        // between our read of prev_hash and our insert.
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(sqlite(path, "lock the store to append the run"))?;
        self.check_anchor_for_write(&tx)?;

        let spends = ledger_table::spends_of_run(&tx, run_id)
            .map_err(sqlite(path, "read the run's budget spends"))?;
        let mut record = record.clone();
        record.budget_spends = Some(spends);
        // Field order is fixed by the struct and map keys are sorted (BTreeMap), so this text
        // is canonical for the record.
        let record_json =
            serde_json::to_string(&record).map_err(|source| LineageError::Serialize {
                path: path.to_path_buf(),
                run_id: run_id.clone(),
                source,
            })?;
        // The columns and tables hold the record as `verify` reads it back: parsed from this
        // text. (A float the parser does not give back bit for bit, such as 999999.9999999999,
        // would otherwise fail verification of a store nobody touched.)
        let stored: RunRecord =
            serde_json::from_str(&record_json).map_err(|source| LineageError::Serialize {
                path: path.to_path_buf(),
                run_id: run_id.clone(),
                source,
            })?;
        let columns = run_columns(&stored).map_err(too_large)?;
        let derived = derived_rows(&stored).map_err(too_large)?;

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

        for (table, rows) in TABLES.iter().zip(derived) {
            let mut stmt = tx
                .prepare_cached(&table.insert_sql())
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
    pub fn list(&self) -> Result<Vec<RunListing>, LineageError> {
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
                Ok(RunListing {
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

    /// Every succeeded record that lists a subject index, oldest first, with its chain
    /// position. Records are parsed, not checked against their hashes ([`Store::verify`]).
    pub fn indexed_records(&self) -> Result<Vec<(i64, RunRecord)>, LineageError> {
        let err = || sqlite(&self.path, "read the subject index of the runs");
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, record_json FROM runs
                 WHERE (status = 'succeeded' AND (instr(record_json, '\"subject_index\"') > 0
                                               OR run_id IN (SELECT run_id FROM output_changes)))
                    OR run_id IN (SELECT run_id FROM erased_subjects)
                 ORDER BY seq",
            )
            .map_err(err())?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err())?;
        Ok(rows
            .into_iter()
            .filter_map(|(seq, json)| serde_json::from_str(&json).ok().map(|r| (seq, r)))
            .collect())
    }

    /// The subject index keys of every subject ever erased (by a `forget` or `sweep`, whether
    /// or not it could regenerate everything): every run drops their rows as `erased`.
    pub fn erased_keys(&self) -> Result<std::collections::HashSet<u64>, LineageError> {
        let err = || sqlite(&self.path, "read the erasure list");
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT subject_key FROM erased_subjects")
            .map_err(err())?;
        let keys = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err())?;
        Ok(keys
            .iter()
            .filter_map(|k| u64::from_str_radix(k, 16).ok())
            .collect())
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
    /// belongs to a run that is not in `runs`. Then the budget ledger: its own chain and id
    /// counter, and that every record listing its spends lists exactly the ledger's entries
    /// of its run. Last, that the store holds what its anchor recorded.
    ///
    /// A broken chain is a report, not an error; errors are for a store that cannot be read.
    pub fn verify(&self) -> Result<VerifyReport, LineageError> {
        self.verify_with(true)
    }

    fn verify_with(&self, check_anchor: bool) -> Result<VerifyReport, LineageError> {
        let err = || sqlite(&self.path, "verify the chain");
        // One read transaction gives a consistent snapshot while other runs append.
        let tx = self.conn.unchecked_transaction().map_err(err())?;

        let sql = format!(
            "SELECT seq, {}, record_json, prev_hash, record_hash FROM runs ORDER BY seq",
            RUN_COLUMNS.join(", ")
        );
        let mut stmt = tx.prepare(&sql).map_err(err())?;
        let mut rows = stmt.query([]).map_err(err())?;

        let index_dir = super::index::index_dir(&self.path);
        let mut records = 0u64;
        let mut previous: Option<StoredRow> = None;
        let mut first_broken = None;
        while let Some(row) = rows.next().map_err(err())? {
            let current = StoredRow::read(row).map_err(err())?;
            records += 1;
            if first_broken.is_none() {
                let expected_seq = previous.as_ref().map_or(1, |p| p.seq.saturating_add(1));
                if let Some(reason) =
                    check_record(&tx, &current, expected_seq, previous.as_ref(), &index_dir)
                        .map_err(err())?
                {
                    first_broken = Some(BrokenRecord {
                        seq: Some(current.seq),
                        run_id: current.columns.first().and_then(as_text).map(str::to_owned),
                        ledger_entry: None,
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
                    ledger_entry: None,
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
        let ledger = ledger_table::check(&tx).map_err(err())?;
        if first_broken.is_none() {
            first_broken = ledger.broken;
        }

        let anchor_file = anchor::anchor_path(&self.path);
        let anchor = match anchor::read(&self.path) {
            Ok(anchor) => anchor,
            // `lineage init --adopt` verifies without the anchor, which may be damaged.
            Err(_) if !check_anchor => None,
            Err(reason) => {
                first_broken.get_or_insert_with(|| BrokenRecord {
                    seq: None,
                    run_id: None,
                    ledger_entry: None,
                    reason: format!("the anchor cannot be used: {reason}"),
                });
                None
            }
        };
        if let (Some(a), true, None) = (&anchor, check_anchor, &first_broken) {
            if let Some(reason) = anchor::mismatch(&tx, &a.head).map_err(err())? {
                first_broken = Some(BrokenRecord {
                    seq: None,
                    run_id: None,
                    ledger_entry: None,
                    reason: format!(
                        "the store does not match its anchor ({reason}); it was rolled back to an older copy, or replaced"
                    ),
                });
            }
        }

        Ok(VerifyReport {
            records,
            head_hash,
            ledger_entries: ledger.entries,
            ledger_head: ledger.head,
            anchor: anchor.map(|_| anchor_file),
            first_broken,
        })
    }

    /// The budget ledger under the store's write lock, for one spend: checks the ledger (its
    /// chain, its id counter, its agreement with the records) and the anchor first, and
    /// refuses with [`LineageError::LedgerBroken`] or [`LineageError::AnchorMismatch`] when
    /// one fails. Nothing is written until [`LedgerTransaction::commit`].
    pub fn ledger_transaction<'a>(&'a mut self) -> Result<LedgerTransaction<'a>, LineageError> {
        let store: &'a Store = self;
        let path = store.path.as_path();
        let tx = Transaction::new_unchecked(&store.conn, TransactionBehavior::Immediate)
            .map_err(sqlite(path, "lock the budget ledger"))?;
        store.check_ledger(&tx)?;
        store.check_anchor_for_write(&tx)?;
        Ok(LedgerTransaction { store, tx })
    }

    /// The budget ledger's entries, oldest first (of one dataset, or all), after the same
    /// checks as [`Store::ledger_transaction`]: a ledger that fails them is not read.
    pub fn ledger_entries(
        &self,
        dataset: Option<&str>,
    ) -> Result<Vec<StoredLedgerEntry>, LineageError> {
        let path = self.path.as_path();
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(sqlite(path, "read the budget ledger"))?;
        self.check_ledger(&tx)?;
        self.check_anchor_for_write(&tx)?;
        ledger_table::read(&tx, dataset, None).map_err(sqlite(path, "read the budget ledger"))
    }

    /// The budget ledger's entries of `run_id`, as its record lists them. [`Store::append`]
    /// fills `budget_spends` with this; call it only to show the spends before that.
    pub fn budget_spends_of(&self, run_id: &str) -> Result<Vec<BudgetSpend>, LineageError> {
        ledger_table::spends_of_run(&self.conn, run_id)
            .map_err(sqlite(&self.path, "read the run's budget spends"))
    }

    fn check_ledger(&self, conn: &Connection) -> Result<(), LineageError> {
        let path = self.path.as_path();
        let check = ledger_table::check(conn).map_err(sqlite(path, "check the budget ledger"))?;
        match check.broken {
            None => Ok(()),
            Some(broken) => Err(LineageError::LedgerBroken {
                path: path.to_path_buf(),
                broken,
            }),
        }
    }
}

/// The budget ledger under the store's write lock; see [`Store::ledger_transaction`].
pub struct LedgerTransaction<'a> {
    store: &'a Store,
    tx: Transaction<'a>,
}

impl LedgerTransaction<'_> {
    /// Entries of `dataset`, oldest first.
    pub fn entries(&self, dataset: &str) -> Result<Vec<StoredLedgerEntry>, LineageError> {
        ledger_table::read(&self.tx, Some(dataset), None)
            .map_err(sqlite(&self.store.path, "read past spends"))
    }

    /// Whether `run_id` already has a record (its spends are then closed).
    pub fn has_record(&self, run_id: &str) -> Result<bool, LineageError> {
        self.tx
            .query_row("SELECT 1 FROM runs WHERE run_id = ?1", [run_id], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
            .map_err(sqlite(&self.store.path, "look up the run id"))
    }

    /// Adds `entry` to the ledger's chain (visible to others after [`Self::commit`]).
    pub fn insert(&self, entry: &LedgerEntry) -> Result<StoredLedgerEntry, LineageError> {
        ledger_table::insert(&self.tx, entry).map_err(sqlite(&self.store.path, "record the spend"))
    }

    /// Commits every insert, then moves the anchor forward.
    pub fn commit(self) -> Result<(), LineageError> {
        self.tx
            .commit()
            .map_err(sqlite(&self.store.path, "commit the spend"))?;
        self.store.update_anchor();
        Ok(())
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

/// Checks one record (its chain link, hash, columns, derived rows, and the subject sets in
/// `index_dir` it lists); returns the reason it is broken, or `None` when it checks out.
fn check_record(
    conn: &Connection,
    row: &StoredRow,
    expected_seq: i64,
    previous: Option<&StoredRow>,
    index_dir: &Path,
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
    for (table, mut expected) in TABLES.iter().zip(derived) {
        let sql = format!(
            "SELECT {} FROM {} WHERE run_id = ?1",
            table.column_names().join(", "),
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
    Ok(subject_set_problem(&record, index_dir))
}

/// The first derived row whose run is not in `runs`, e.g. left behind by a deleted record.
fn find_orphan_rows(conn: &Connection) -> rusqlite::Result<Option<BrokenRecord>> {
    for table in &TABLES {
        let sql = format!(
            "SELECT run_id FROM {} WHERE run_id NOT IN (SELECT run_id FROM runs) LIMIT 1",
            table.name
        );
        let orphan: Option<Value> = conn.query_row(&sql, [], |row| row.get(0)).optional()?;
        if let Some(run_id) = orphan {
            return Ok(Some(BrokenRecord {
                seq: None,
                run_id: as_text(&run_id).map(str::to_owned),
                ledger_entry: None,
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

/// Rows of each of [`TABLES`] for `record`, in the list's order.
fn derived_rows(record: &RunRecord) -> Result<Vec<Vec<Vec<Value>>>, TryFromIntError> {
    TABLES.iter().map(|t| (t.rows)(record)).collect()
}

use tables::int;

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
        ColumnLineage, GateResult, InputRecord, LeakGateRecord, Measure, NoiseRecord, OutputRecord,
        PolicySummary, RevocationListRecord, RunStatus, SchemaField, StageRows, TextColumnRecord,
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
                revocation_lists: vec![RevocationListRecord {
                    path: "revoked.csv".into(),
                    sha256: "01".repeat(32),
                    entries: 3,
                }],
                retention_days: Some(365),
                as_of: "2025-01-01".into(),
                ..PolicySummary::default()
            },
            rows_per_stage: vec![
                StageRows {
                    stage: "read".into(),
                    rows: 100 + n,
                },
                StageRows {
                    stage: "policy".into(),
                    rows: 90 + n,
                },
            ],
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
                    schema: vec![SchemaField {
                        name: "patient_token".into(),
                        data_type: "Utf8".into(),
                    }],
                    expires_at: None,
                },
                OutputRecord {
                    path: "out/test.parquet".into(),
                    split: "test".into(),
                    rows: 15,
                    sha256: "34".repeat(32),
                    schema: vec![SchemaField {
                        name: "patient_token".into(),
                        data_type: "Utf8".into(),
                    }],
                    expires_at: None,
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
                result: GateResult::Clean,
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
                measure: Measure::Approx,
                target: "(ε = 1, δ = 1e-7)".into(),
                epsilon: 0.999_999_7,
                delta: 9.1e-8,
                rho: 0.0,
                global_scale: 3.25 + n as f64,
                threshold: Some(40 + n as u32),
                noise: vec![NoiseRecord {
                    column: "count".into(),
                    distribution: "Integer Laplace".into(),
                    scale: 3.25,
                    ci95: Some(9.7),
                }],
                rank_ci95: Vec::new(),
                mean_ci95: Vec::new(),
            }],
            // As the store sets it for a run without spends.
            budget_spends: Some(Vec::new()),
            ..RunRecord::begin("", "", "", "", "", "")
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
        let report = Store::open_to_inspect(path)
            .expect("open")
            .verify()
            .expect("verify");
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

    /// Regression: runs opening a new store together failed with "cannot switch to WAL mode",
    /// because SQLite answers that pragma "busy" without waiting when waiting could deadlock.
    #[test]
    fn many_openers_of_a_new_store_all_get_it_in_wal_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        for round in 0..8 {
            let path = dir.path().join(format!("round{round}/lineage.db"));
            let start = std::sync::Barrier::new(12);
            let modes: Vec<String> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..12)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            let store = Store::open(&path).expect("open");
                            store
                                .conn
                                .pragma_query_value(None, "journal_mode", |r| r.get(0))
                                .expect("mode")
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("join"))
                    .collect()
            });
            assert!(modes.iter().all(|m| m == "wal"), "round {round}: {modes:?}");
        }
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
                RunListing {
                    seq: 1,
                    run_id: "run-1".into(),
                    status: "succeeded".into(),
                    started_at: "2025-01-02T03:04:05Z".into(),
                    pipeline_name: "patients".into(),
                    rows_read: 101,
                    rows_written: 86,
                    outputs: 2,
                },
                RunListing {
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

    /// Floats whose decimal text the JSON parser does not give back bit for bit (16 or more
    /// significant digits) must not make an untouched store fail verification.
    #[test]
    fn verify_passes_with_floats_of_many_digits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lineage.db");
        let mut store = Store::open(&path).expect("open");
        let mut r = sample("run-1", 1);
        let base = r.releases[0].clone();
        let mut bits = 0x3ff0_0000_0000_0001u64;
        r.releases = (0..40)
            .map(|i| {
                bits = bits
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                // Doubles in [2^19, 2^20) with random low bits: long shortest forms.
                let odd = f64::from_bits((bits >> 12) | 0x4120_0000_0000_0000);
                let mut x = base.clone();
                x.name = format!("r{i}");
                x.rho = if i == 0 { 999_999.999_999_999_9 } else { odd };
                x.global_scale = odd / 7.0;
                x.epsilon = 0.003_999_993_338_696_981 * f64::from(i + 1);
                x
            })
            .collect();
        store.append(&r).expect("append");
        let report = store.verify().expect("verify");
        assert!(report.is_ok(), "{report:?}");
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
                ledger_entries: 0,
                ledger_head: None,
                anchor: Some(dir.path().join("lineage.anchor")),
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
        for table in &TABLES {
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

    // ---- budget ledger, anchor, init, messages ----

    /// Records a spend of `epsilon` by `run_id` through the store's ledger transaction.
    fn spend(store: &mut Store, run_id: &str, release: &str, epsilon: f64) -> StoredLedgerEntry {
        let tx = store.ledger_transaction().expect("ledger transaction");
        let entry = tx
            .insert(&LedgerEntry {
                dataset_id: "tickets".into(),
                privacy_unit: "subject_id".into(),
                run_id: run_id.into(),
                release: release.into(),
                measure: "pure".into(),
                epsilon,
                delta: 0.0,
                rho: 0.0,
                cap: r#"{"measure":"pure","epsilon":6.0}"#.into(),
                recorded_at: "2025-01-02T03:04:05+00:00".into(),
            })
            .expect("insert");
        tx.commit().expect("commit");
        entry
    }

    /// Three records, each after its run spent ε = 2 (two releases of 1.0).
    fn store_with_spends() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lineage.db");
        let mut store = Store::open(&path).expect("open");
        for n in 1..=3 {
            let run_id = format!("run-{n}");
            spend(&mut store, &run_id, "by_country", 1.0);
            spend(&mut store, &run_id, "by_age", 1.0);
            store.append(&sample(&run_id, n)).expect("append");
        }
        (dir, path)
    }

    fn remove_store(path: &Path) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
    }

    fn ledger_broken(path: &Path) -> BrokenRecord {
        let b = broken(path);
        assert!(
            b.ledger_entry.is_some() || b.reason.contains("budget"),
            "{b:?}"
        );
        b
    }

    #[test]
    fn disk_full_error_says_the_disk_is_full_once() {
        let path = PathBuf::from("/data/.privprep/lineage.db");
        let err = LineageError::Sqlite {
            path: path.clone(),
            action: "switch to WAL mode",
            error: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                Some("database or disk is full".into()),
            ),
        };
        let message = err.to_string();
        assert_eq!(
            message,
            "lineage store /data/.privprep/lineage.db: cannot switch to WAL mode: the disk is full\n  = hint: free space on the disk that holds the store, then run again"
        );
        assert_eq!(message.matches("lineage.db").count(), 1, "{message}");
        assert_eq!(message.matches("full").count(), 1, "{message}");
        // Nothing more is chained below it (anyhow's `{:#}` would repeat SQLite's words).
        assert!(std::error::Error::source(&err).is_none());
    }

    #[test]
    fn deleted_store_is_not_silently_recreated() {
        let (_dir, path, hashes) = store_with_three();
        remove_store(&path);
        let err = Store::open(&path).expect_err("a deleted store must not be re-created");
        match &err {
            LineageError::StoreMissing { head, .. } => {
                assert_eq!(head.records, 3);
                assert_eq!(head.head_hash.as_deref(), hashes.last().map(String::as_str));
            }
            other => panic!("expected StoreMissing, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains("3 record(s)"), "{message}");
        assert!(message.contains("privprep lineage init"), "{message}");
        assert!(!path.exists(), "the store file was re-created");
        // Inspecting does not re-create it either.
        assert!(matches!(
            Store::open_to_inspect(&path),
            Err(LineageError::StoreMissing { .. })
        ));
        assert!(!path.exists());
    }

    #[test]
    fn zero_byte_store_is_not_silently_recreated() {
        let (_dir, path, _) = store_with_three();
        remove_store(&path);
        std::fs::write(&path, b"").expect("empty file");
        let err = Store::open(&path).expect_err("an emptied store must not be re-created");
        assert!(matches!(err, LineageError::StoreMissing { .. }), "{err:?}");
        assert_eq!(std::fs::metadata(&path).expect("file").len(), 0);
    }

    #[test]
    fn rolled_back_store_is_refused_and_verify_names_the_anchor() {
        let (dir, path) = store_with_spends();
        let old = dir.path().join("old.db");
        std::fs::copy(&path, &old).expect("copy");
        {
            let mut store = Store::open(&path).expect("open");
            spend(&mut store, "run-4", "by_country", 1.0);
            store.append(&sample("run-4", 4)).expect("append");
        }
        // Put the older copy back (its budget had 2 less spent).
        remove_store(&path);
        std::fs::copy(&old, &path).expect("roll back");

        let err = Store::open(&path).expect_err("rolled back");
        assert!(
            matches!(err, LineageError::AnchorMismatch { .. }),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("the anchor recorded 4 record(s), the store holds 3"),
            "{message}"
        );
        assert!(message.contains("lineage init --adopt"), "{message}");
        // Inspecting works, verify reports it, and writes still refuse.
        let mut store = Store::open_to_inspect(&path).expect("inspect");
        let report = store.verify().expect("verify");
        let b = report.first_broken.expect("broken");
        assert!(b.reason.contains("does not match its anchor"), "{b:?}");
        assert!(matches!(
            store.append(&sample("run-5", 5)),
            Err(LineageError::AnchorMismatch { .. })
        ));
        assert!(matches!(
            store.ledger_transaction().map(|_| ()),
            Err(LineageError::AnchorMismatch { .. })
        ));
        assert!(matches!(
            store.ledger_entries(None),
            Err(LineageError::AnchorMismatch { .. })
        ));
        // The anchor did not move back.
        let a = anchor::read(&path).expect("read").expect("anchor");
        assert_eq!(a.head.records, 4);
    }

    #[test]
    fn lineage_init_recreates_after_a_missing_store_and_notes_it() {
        let (_dir, path) = store_with_spends();
        remove_store(&path);
        let (store, outcome) = Store::init(&path, false).expect("init");
        assert!(!outcome.adopted);
        assert_eq!(outcome.head.records, 0);
        let replaced = outcome.replaced.expect("the old head is noted");
        assert_eq!(replaced.records, 3);
        assert_eq!(replaced.ledger_last_id, 6);
        assert!(store.verify().expect("verify").is_ok());
        drop(store);
        let a = anchor::read(&path).expect("read").expect("anchor");
        assert_eq!(a.inits.len(), 1);
        assert_eq!(a.inits[0].kind, "new");
        assert_eq!(a.inits[0].previous.as_ref().map(|h| h.records), Some(3));
        // From now on the new store opens, and a new record moves the anchor on.
        let mut store = Store::open(&path).expect("open");
        store.append(&sample("run-9", 9)).expect("append");
        let a = anchor::read(&path).expect("read").expect("anchor");
        assert_eq!((a.head.records, a.inits.len()), (1, 1));
    }

    #[test]
    fn lineage_init_never_overwrites_a_store_and_adopt_accepts_an_older_copy() {
        let (dir, path) = store_with_spends();
        let err = Store::init(&path, false).expect_err("never overwrite");
        assert!(matches!(err, LineageError::InitRefused { .. }), "{err:?}");
        assert!(err.to_string().contains("--adopt"), "{err}");
        assert_eq!(
            Store::open(&path)
                .expect("open")
                .list()
                .expect("list")
                .len(),
            3
        );

        let old = dir.path().join("old.db");
        std::fs::copy(&path, &old).expect("copy");
        Store::open(&path)
            .expect("open")
            .append(&sample("run-4", 4))
            .expect("append");
        remove_store(&path);
        std::fs::copy(&old, &path).expect("roll back");
        assert!(Store::open(&path).is_err());
        let (_, outcome) = Store::init(&path, true).expect("adopt");
        assert!(outcome.adopted);
        assert_eq!(outcome.head.records, 3);
        assert_eq!(outcome.replaced.map(|h| h.records), Some(4));
        let store = Store::open(&path).expect("open after adopting");
        assert!(store.verify().expect("verify").is_ok());

        // A store that fails verification is not adopted.
        drop(store);
        raw(&path)
            .execute("UPDATE budget_ledger SET epsilon = 0.01 WHERE id = 1", [])
            .expect("tamper");
        let err = Store::init(&path, true).expect_err("broken store");
        assert!(err.to_string().contains("budget ledger entry 1"), "{err}");
    }

    #[test]
    fn append_lists_the_runs_spends_in_its_record() {
        let (_dir, path) = store_with_spends();
        let store = Store::open(&path).expect("open");
        let r2 = store.get("run-2").expect("get").expect("found").record;
        let spends = r2.budget_spends.expect("listed");
        assert_eq!(
            spends
                .iter()
                .map(|s| (s.ledger_id, s.release.as_str()))
                .collect::<Vec<_>>(),
            [(3, "by_country"), (4, "by_age")]
        );
        assert_eq!(spends, store.budget_spends_of("run-2").expect("spends"));
        let report = store.verify().expect("verify");
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.ledger_entries, 6);
        let a = anchor::read(&path).expect("read").expect("anchor");
        assert_eq!(a.head.records, 3);
        assert_eq!(a.head.ledger_last_id, 6);
        assert_eq!(a.head.ledger_head, report.ledger_head);
        assert_eq!(a.head.head_hash, report.head_hash);
    }

    #[test]
    fn ledger_edit_is_detected_by_verify_and_refused_by_spend() {
        let (_dir, path) = store_with_spends();
        raw(&path)
            .execute("UPDATE budget_ledger SET epsilon = 0.01", [])
            .expect("tamper");
        let b = ledger_broken(&path);
        assert_eq!(b.ledger_entry, Some(1));
        assert_eq!(b.run_id.as_deref(), Some("run-1"));
        assert_eq!(b.reason, "entry_hash does not match its content");
        let mut store = Store::open(&path).expect("open");
        let err = store.ledger_transaction().map(|_| ()).expect_err("refused");
        assert!(matches!(err, LineageError::LedgerBroken { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("budget ledger entry 1 (run run-1)"),
            "{message}"
        );
        assert!(message.contains("privprep lineage verify"), "{message}");
        assert!(!message.contains("0.01"), "{message}");
        assert!(matches!(
            store.ledger_entries(None),
            Err(LineageError::LedgerBroken { .. })
        ));
    }

    #[test]
    fn edited_cap_text_is_detected() {
        let (_dir, path) = store_with_spends();
        raw(&path)
            .execute(
                r#"UPDATE budget_ledger SET cap = '{"measure":"pure","epsilon":60.0}' WHERE id = 6"#,
                [],
            )
            .expect("tamper");
        let b = ledger_broken(&path);
        assert_eq!(b.ledger_entry, Some(6));
        assert_eq!(b.reason, "entry_hash does not match its content");
    }

    #[test]
    fn deleted_ledger_entries_are_detected() {
        let (_dir, path) = store_with_spends();
        raw(&path)
            .execute("DELETE FROM budget_ledger WHERE id = 3", [])
            .expect("tamper");
        let b = ledger_broken(&path);
        assert_eq!(b.ledger_entry, Some(4));
        assert_eq!(b.reason, "ledger entry 3 is missing (gap in id)");

        let (_dir, path) = store_with_spends();
        raw(&path)
            .execute("DELETE FROM budget_ledger WHERE id = 1", [])
            .expect("tamper");
        assert_eq!(
            ledger_broken(&path).reason,
            "ledger entry 1 is missing (gap in id)"
        );

        // The newest entries: SQLite's counter remembers them.
        let (_dir, path) = store_with_spends();
        raw(&path)
            .execute("DELETE FROM budget_ledger WHERE id >= 5", [])
            .expect("tamper");
        let b = ledger_broken(&path);
        assert_eq!(
            b.reason,
            "ledger entry 5 is missing (the newest entries were deleted)"
        );

        // And with the counter set back too, the records and the anchor still tell.
        let (_dir, path) = store_with_spends();
        raw(&path)
            .execute_batch(
                "DELETE FROM budget_ledger WHERE id >= 5;
                 UPDATE sqlite_sequence SET seq = 4 WHERE name = 'budget_ledger';",
            )
            .expect("tamper");
        let b = broken(&path);
        assert_eq!(b.seq, Some(3));
        assert_eq!(
            b.reason,
            "budget_spends of the record do not match the budget ledger"
        );
        assert!(matches!(
            Store::open(&path),
            Err(LineageError::AnchorMismatch { .. })
        ));
    }

    #[test]
    fn rewritten_ledger_with_recomputed_hashes_disagrees_with_the_records() {
        let (_dir, path) = store_with_spends();
        let conn = raw(&path);
        let mut rows = ledger_table::read(&conn, None, None).expect("read");
        let mut prev = GENESIS_HASH.to_owned();
        for row in &mut rows {
            row.entry.epsilon = 0.01;
            let hash = ledger_table::entry_hash(&prev, row.id, &row.entry);
            conn.execute(
                "UPDATE budget_ledger SET epsilon = ?1, prev_hash = ?2, entry_hash = ?3 WHERE id = ?4",
                rusqlite::params![0.01, prev, hash, row.id],
            )
            .expect("tamper");
            prev = hash;
        }
        drop(conn);
        let b = broken(&path);
        assert_eq!(b.seq, Some(1));
        assert_eq!(b.run_id.as_deref(), Some("run-1"));
        assert_eq!(
            b.reason,
            "budget_spends of the record do not match the budget ledger"
        );
        let mut store = Store::open_to_inspect(&path).expect("inspect");
        assert!(store.ledger_transaction().is_err());
    }

    #[test]
    fn dropped_ledger_table_is_not_silently_recreated() {
        let (_dir, path) = store_with_spends();
        raw(&path)
            .execute("DROP TABLE budget_ledger", [])
            .expect("tamper");
        // The anchor knows the ledger had entries.
        let err = Store::open(&path).expect_err("refused");
        assert!(
            err.to_string().contains("budget_ledger table is missing"),
            "{err}"
        );
        let b = broken(&path);
        assert_eq!(b.reason, "the budget_ledger table is missing");
        let mut store = Store::open_to_inspect(&path).expect("inspect");
        assert!(store.ledger_transaction().is_err());
        let conn = raw(&path);
        assert!(
            !ledger_table::exists(&conn).expect("look"),
            "the table came back"
        );

        // Without entries in the anchor, the store opens, but the table stays missing and
        // spends are refused.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lineage.db");
        Store::open(&path).expect("open");
        raw(&path)
            .execute("DROP TABLE budget_ledger", [])
            .expect("tamper");
        let mut store = Store::open(&path).expect("open");
        let err = store.ledger_transaction().map(|_| ()).expect_err("refused");
        assert!(
            err.to_string().contains("budget_ledger table is missing"),
            "{err}"
        );
        assert!(!ledger_table::exists(&raw(&path)).expect("look"));
    }

    /// The budget ledger as privprep before version 4 created it.
    const V3_LEDGER: &str = "
        CREATE TABLE IF NOT EXISTS budget_ledger (
            id           INTEGER PRIMARY KEY AUTOINCREMENT,
            dataset_id   TEXT    NOT NULL,
            privacy_unit TEXT    NOT NULL,
            run_id       TEXT    NOT NULL,
            release      TEXT    NOT NULL,
            measure      TEXT    NOT NULL,
            epsilon      REAL    NOT NULL,
            delta        REAL    NOT NULL,
            rho          REAL    NOT NULL,
            cap          TEXT    NOT NULL,
            recorded_at  TEXT    NOT NULL
        );
        CREATE INDEX IF NOT EXISTS budget_ledger_dataset ON budget_ledger (dataset_id);";

    fn v3_spend(conn: &Connection, run_id: &str, epsilon: f64) {
        conn.execute(
            "INSERT INTO budget_ledger (dataset_id, privacy_unit, run_id, release, measure, epsilon, delta, rho, cap, recorded_at)
             VALUES ('tickets', 'subject_id', ?1, 'by_country', 'pure', ?2, 0.0, 0.0, '{\"measure\":\"pure\",\"epsilon\":6.0}', '2025-01-02T03:04:05+00:00')",
            rusqlite::params![run_id, epsilon],
        )
        .expect("v3 spend");
    }

    /// Appends `record` as a version 3 privprep did: no `budget_spends` in its JSON.
    /// A record as privprep wrote it before schema 4: these parts were JSON arrays.
    fn v3_json(record: &RunRecord) -> String {
        use serde_json::Value as J;
        /// Turns the list of objects at `parent[key]` (when present) into arrays of `fields`.
        fn tuples(parent: &mut J, key: &str, fields: &[&str]) {
            if let Some(J::Array(items)) = parent.get_mut(key) {
                for item in items {
                    if let J::Object(o) = item {
                        *item = J::Array(fields.iter().map(|f| o[*f].clone()).collect());
                    }
                }
            }
        }
        let mut v = serde_json::to_value(record).expect("json");
        for o in v["outputs"].as_array_mut().expect("outputs") {
            tuples(o, "schema", &["name", "data_type"]);
        }
        tuples(
            &mut v["policy"],
            "revocation_lists",
            &["path", "sha256", "entries"],
        );
        tuples(&mut v, "rows_per_stage", &["stage", "rows"]);
        if let Some(pii) = v.get_mut("pii").filter(|p| p.is_object()) {
            tuples(pii, "custom_detectors", &["name", "pattern"]);
            if let Some(J::Object(o)) = pii.get("deny_file").cloned() {
                pii["deny_file"] = J::Array(vec![o["path"].clone(), o["sha256"].clone()]);
            }
        }
        for r in v["releases"].as_array_mut().expect("releases") {
            tuples(r, "noise", &["column", "distribution", "scale", "ci95"]);
            tuples(r, "rank_ci95", &["column", "rows"]);
            tuples(r, "mean_ci95", &["column", "min", "max"]);
        }
        let json = v.to_string();
        assert!(json.contains("[\"read\","), "old shape: {json}");
        json
    }

    fn v3_append(conn: &Connection, record: &RunRecord) {
        let mut record = record.clone();
        record.budget_spends = None;
        let prev: String = conn
            .query_row(
                "SELECT record_hash FROM runs ORDER BY seq DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .expect("head")
            .unwrap_or_else(|| GENESIS_HASH.to_owned());
        let json = v3_json(&record);
        assert!(!json.contains("budget_spends"));
        let hash = record_hash(&prev, &json);
        let mut values = run_columns(&record).expect("columns");
        values.extend([Value::Text(json), Value::Text(prev), Value::Text(hash)]);
        conn.execute(
            &format!(
                "INSERT INTO runs ({}, record_json, prev_hash, record_hash) VALUES ({})",
                RUN_COLUMNS.join(", "),
                placeholders(RUN_COLUMNS.len() + 3)
            ),
            rusqlite::params_from_iter(values),
        )
        .expect("insert run");
        for (table, rows) in TABLES.iter().zip(derived_rows(&record).expect("rows")) {
            for row in rows {
                let values = std::iter::once(Value::Text(record.run_id.clone())).chain(row);
                conn.execute(
                    &format!(
                        "INSERT INTO {} (run_id, {}) VALUES ({})",
                        table.name,
                        table.column_names().join(", "),
                        placeholders(table.columns.len() + 1)
                    ),
                    rusqlite::params_from_iter(values),
                )
                .expect("insert derived");
            }
        }
    }

    #[test]
    fn a_version_3_store_gets_its_ledger_chained_and_keeps_verifying() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lineage.db");
        {
            let conn = Connection::open(&path).expect("create");
            tables::migrate(&conn, 0, 3).expect("v3 tables");
            conn.execute_batch(V3_LEDGER).expect("v3 ledger");
            conn.pragma_update(None, "user_version", 3)
                .expect("version");
            v3_spend(&conn, "run-1", 1.0);
            v3_spend(&conn, "run-1", 0.5);
            v3_append(&conn, &sample("run-1", 1));
            v3_spend(&conn, "run-2", 2.0);
            v3_append(&conn, &sample("run-2", 2));
        }
        assert!(!anchor::anchor_path(&path).exists());
        let mut store = Store::open(&path).expect("open and migrate");
        let report = store.verify().expect("verify");
        assert!(report.is_ok(), "{:?}", report.first_broken);
        assert_eq!((report.records, report.ledger_entries), (2, 3));
        // The old entries are chained as they were; the old records list no spends.
        let entries = store.ledger_entries(None).expect("entries");
        assert_eq!(entries[0].prev_hash, GENESIS_HASH);
        assert_eq!(entries[2].prev_hash, entries[1].entry_hash);
        assert_eq!(
            entries.iter().map(|e| e.entry.epsilon).collect::<Vec<_>>(),
            [1.0, 0.5, 2.0]
        );
        assert_eq!(
            store
                .get("run-1")
                .expect("get")
                .expect("found")
                .record
                .budget_spends,
            None
        );
        // The store now has an anchor and carries on with chained spends.
        assert_eq!(
            anchor::read(&path)
                .expect("read")
                .map(|a| a.head.ledger_last_id),
            Some(3)
        );
        spend(&mut store, "run-3", "by_country", 1.0);
        store.append(&sample("run-3", 3)).expect("append");
        assert!(store.verify().expect("verify").is_ok());
        assert_eq!(
            store
                .get("run-3")
                .expect("get")
                .expect("found")
                .record
                .budget_spends
                .map(|s| s.len()),
            Some(1)
        );
        // An old entry edited after the migration is caught.
        drop(store);
        raw(&path)
            .execute("UPDATE budget_ledger SET epsilon = 0.01 WHERE id = 2", [])
            .expect("tamper");
        assert_eq!(ledger_broken(&path).ledger_entry, Some(2));
    }

    #[test]
    fn a_ledger_only_store_from_an_old_budget_command_migrates() {
        // An old `privprep budget` run first made the file with just the ledger, version 0.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lineage.db");
        {
            let conn = Connection::open(&path).expect("create");
            conn.execute_batch(V3_LEDGER).expect("v3 ledger");
            v3_spend(&conn, "run-1", 1.0);
        }
        let store = Store::open(&path).expect("open and migrate");
        let report = store.verify().expect("verify");
        assert!(report.is_ok(), "{:?}", report.first_broken);
        assert_eq!((report.records, report.ledger_entries), (0, 1));
    }
}
