//! The budget ledger's table in the lineage store, chained like the runs.
//!
//! `crate::dp::ledger` decides what a release may spend; this module keeps the spends so that
//! nobody edits, deletes or rewrites one unnoticed. `budget_ledger`, one row per spend: `id`
//! (AUTOINCREMENT, so SQLite remembers the highest id ever used), `dataset_id`,
//! `privacy_unit`, `run_id`, `release`, `measure`, `epsilon`, `delta`, `rho`, `cap` (the
//! dataset's cap when it was spent, as JSON text, or `none`), `recorded_at`, `prev_hash`,
//! `entry_hash`.
//!
//! `entry_hash` is the lowercase hex SHA-256 of `prev_hash`, a newline and the entry's
//! canonical text; the first entry's `prev_hash` is the genesis hash. The canonical text is
//! the JSON object `{"id":…,"dataset_id":…,"privacy_unit":…,"run_id":…,"release":…,
//! "measure":…,"epsilon":…,"delta":…,"rho":…,"cap":…,"recorded_at":…}` with the keys in that
//! order, no spaces, and numbers as serde_json writes an f64 (shortest text that reads back
//! the same; `0.0` for zero).
//!
//! Three checks tie the ledger down: the chain (an edited, deleted or reordered entry breaks
//! it), SQLite's id counter (deleted newest entries), and the run records: each record appended
//! since the ledger is chained lists its run's spends with their `entry_hash`
//! ([`BudgetSpend`]), so a ledger rewritten with recomputed hashes no longer matches the records
//! (whose own chain and the anchor hold them in place). A ledger row whose run has no record
//! yet belongs to a run in progress and is allowed.

use std::collections::BTreeMap;

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::record::{BudgetSpend, RunRecord};
use super::store::{BrokenRecord, GENESIS_HASH};

/// Creates the table (part of the store's schema; only migrations run it).
pub(super) const SCHEMA: &str = "
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
    recorded_at  TEXT    NOT NULL,
    prev_hash    TEXT    NOT NULL,
    entry_hash   TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS budget_ledger_dataset ON budget_ledger (dataset_id);
CREATE INDEX IF NOT EXISTS budget_ledger_run_id ON budget_ledger (run_id);
";

const COLUMNS: &str = "id, dataset_id, privacy_unit, run_id, release, measure, epsilon, delta, \
                       rho, cap, recorded_at, prev_hash, entry_hash";

/// One spend, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerEntry {
    pub dataset_id: String,
    pub privacy_unit: String,
    pub run_id: String,
    pub release: String,
    /// `pure`, `approx` or `zcdp`.
    pub measure: String,
    pub epsilon: f64,
    pub delta: f64,
    pub rho: f64,
    /// The dataset's cap at the time, as JSON text, or `none`.
    pub cap: String,
    /// RFC 3339 UTC.
    pub recorded_at: String,
}

/// A ledger entry as stored, with its place in the ledger's chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredLedgerEntry {
    pub id: i64,
    #[serde(flatten)]
    pub entry: LedgerEntry,
    pub prev_hash: String,
    pub entry_hash: String,
}

impl StoredLedgerEntry {
    fn spend(&self) -> BudgetSpend {
        BudgetSpend {
            ledger_id: self.id,
            entry_hash: self.entry_hash.clone(),
            dataset_id: self.entry.dataset_id.clone(),
            release: self.entry.release.clone(),
            measure: self.entry.measure.clone(),
            epsilon: self.entry.epsilon,
            delta: self.entry.delta,
            rho: self.entry.rho,
        }
    }
}

/// The canonical text of an entry (see the module documentation).
pub fn canonical_text(id: i64, entry: &LedgerEntry) -> String {
    #[derive(Serialize)]
    struct Canonical<'a> {
        id: i64,
        #[serde(flatten)]
        entry: &'a LedgerEntry,
    }
    // Field order is fixed by the structs; serializing plain strings and numbers cannot fail.
    serde_json::to_string(&Canonical { id, entry }).unwrap_or_default()
}

/// lowercase hex SHA-256(`prev_hash` ‖ `"\n"` ‖ canonical text).
pub fn entry_hash(prev_hash: &str, id: i64, entry: &LedgerEntry) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical_text(id, entry).as_bytes());
    hex::encode(hasher.finalize())
}

/// Whether the store has the table.
pub fn exists(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'budget_ledger'",
        [],
        |_| Ok(()),
    )
    .optional()
    .map(|found| found.is_some())
}

/// Adds the chain to a ledger written before version 4 (no `prev_hash`, `entry_hash`):
/// its rows are chained as they are, oldest first.
pub(super) fn chain_unchained_rows(conn: &Connection) -> rusqlite::Result<()> {
    let has_chain: bool = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('budget_ledger') WHERE name = 'entry_hash'",
        [],
        |row| row.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if has_chain {
        return Ok(());
    }
    conn.execute_batch(
        "ALTER TABLE budget_ledger ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
         ALTER TABLE budget_ledger ADD COLUMN entry_hash TEXT NOT NULL DEFAULT '';",
    )?;
    let rows = read(conn, None, None)?;
    let mut prev = GENESIS_HASH.to_owned();
    let mut update =
        conn.prepare("UPDATE budget_ledger SET prev_hash = ?1, entry_hash = ?2 WHERE id = ?3")?;
    for row in rows {
        let hash = entry_hash(&prev, row.id, &row.entry);
        update.execute(params![prev, hash, row.id])?;
        prev = hash;
    }
    Ok(())
}

/// Entries oldest first, of one dataset and/or one run, or all.
pub(super) fn read(
    conn: &Connection,
    dataset: Option<&str>,
    run_id: Option<&str>,
) -> rusqlite::Result<Vec<StoredLedgerEntry>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM budget_ledger
         WHERE (?1 IS NULL OR dataset_id = ?1) AND (?2 IS NULL OR run_id = ?2) ORDER BY id"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(params![dataset, run_id], typed)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

fn typed(row: &Row<'_>) -> rusqlite::Result<StoredLedgerEntry> {
    Ok(StoredLedgerEntry {
        id: row.get(0)?,
        entry: LedgerEntry {
            dataset_id: row.get(1)?,
            privacy_unit: row.get(2)?,
            run_id: row.get(3)?,
            release: row.get(4)?,
            measure: row.get(5)?,
            epsilon: row.get(6)?,
            delta: row.get(7)?,
            rho: row.get(8)?,
            cap: row.get(9)?,
            recorded_at: row.get(10)?,
        },
        prev_hash: row.get(11)?,
        entry_hash: row.get(12)?,
    })
}

/// The spends of `run_id`, oldest first, as its record lists them.
pub(super) fn spends_of_run(conn: &Connection, run_id: &str) -> rusqlite::Result<Vec<BudgetSpend>> {
    Ok(read(conn, None, Some(run_id))?
        .iter()
        .map(StoredLedgerEntry::spend)
        .collect())
}

/// Appends `entry` to the chain; call inside a write-locked transaction.
pub(super) fn insert(
    conn: &Connection,
    entry: &LedgerEntry,
) -> rusqlite::Result<StoredLedgerEntry> {
    let (last_id, prev_hash): (i64, String) = conn
        .query_row(
            "SELECT id, entry_hash FROM budget_ledger ORDER BY id DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, GENESIS_HASH.to_owned()));
    // The id is chosen here because the hash covers it; AUTOINCREMENT's counter follows.
    let used: i64 = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'budget_ledger'",
            [],
            |row| row.get(0),
        )
        .optional()?
        .unwrap_or(0);
    let id = last_id.max(used) + 1;
    let hash = entry_hash(&prev_hash, id, entry);
    conn.execute(
        &format!("INSERT INTO budget_ledger ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
        params![
            id,
            entry.dataset_id,
            entry.privacy_unit,
            entry.run_id,
            entry.release,
            entry.measure,
            entry.epsilon,
            entry.delta,
            entry.rho,
            entry.cap,
            entry.recorded_at,
            prev_hash,
            hash
        ],
    )?;
    Ok(StoredLedgerEntry {
        id,
        entry: entry.clone(),
        prev_hash,
        entry_hash: hash,
    })
}

/// What [`check`] found.
#[derive(Debug, Default)]
pub(super) struct LedgerCheck {
    pub entries: u64,
    pub head: Option<String>,
    pub broken: Option<BrokenRecord>,
}

/// Walks the ledger's chain, its id counter and its agreement with the run records; reports
/// the first failed check. Run it inside one transaction.
pub(super) fn check(conn: &Connection) -> rusqlite::Result<LedgerCheck> {
    let mut out = LedgerCheck::default();
    if !exists(conn)? {
        out.broken = Some(broken(
            None,
            None,
            "the budget_ledger table is missing".into(),
        ));
        return Ok(out);
    }
    let mut previous: Option<(i64, String)> = None;
    let mut by_run: BTreeMap<String, Vec<BudgetSpend>> = BTreeMap::new();
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM budget_ledger ORDER BY id"))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        out.entries += 1;
        let id: i64 = row.get(0)?;
        let stored_hash: Value = row.get(12)?;
        let run_id = match row.get::<_, Value>(3)? {
            Value::Text(t) => Some(t),
            _ => None,
        };
        let reason = match typed(row) {
            Err(_) => Some("a column of the entry has the wrong type".to_string()),
            Ok(entry) => {
                let expected_prev = previous.as_ref().map_or(GENESIS_HASH, |(_, h)| h.as_str());
                let reason = if entry.prev_hash != expected_prev {
                    Some(match &previous {
                        None if id > 1 => format!("ledger entry {} is missing (gap in id)", id - 1),
                        None => "prev_hash of the first entry is not the genesis hash".to_string(),
                        Some((p, _)) if id > p + 1 => {
                            format!("ledger entry {} is missing (gap in id)", p + 1)
                        }
                        Some((p, _)) => format!("prev_hash does not match ledger entry {p}"),
                    })
                } else if entry.entry_hash != entry_hash(&entry.prev_hash, id, &entry.entry) {
                    Some("entry_hash does not match its content".to_string())
                } else {
                    None
                };
                by_run
                    .entry(entry.entry.run_id.clone())
                    .or_default()
                    .push(entry.spend());
                reason
            }
        };
        if let (Some(reason), None) = (reason, &out.broken) {
            out.broken = Some(broken(Some(id), run_id, reason));
        }
        let hash = match stored_hash {
            Value::Text(t) => t,
            _ => String::new(),
        };
        previous = Some((id, hash));
    }
    drop(rows);
    drop(stmt);
    let last_id = previous.as_ref().map_or(0, |(id, _)| *id);
    out.head = previous.map(|(_, h)| h);
    if out.broken.is_some() {
        return Ok(out);
    }

    let highest_used: Option<i64> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'budget_ledger'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    if highest_used.is_some_and(|highest| highest > last_id) {
        out.broken = Some(broken(
            Some(last_id + 1),
            None,
            format!(
                "ledger entry {} is missing (the newest entries were deleted)",
                last_id + 1
            ),
        ));
        return Ok(out);
    }

    // Every record that lists its spends lists exactly the ledger's rows of its run.
    let mut stmt = conn.prepare_cached("SELECT seq, record_json FROM runs ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let Value::Text(json) = row.get::<_, Value>(1)? else {
            continue; // the runs walk of verify reports it
        };
        let Ok(record) = serde_json::from_str::<RunRecord>(&json) else {
            continue;
        };
        let Some(listed) = &record.budget_spends else {
            continue; // appended before the ledger was chained
        };
        let in_ledger = by_run.get(&record.run_id).map_or(&[][..], Vec::as_slice);
        if !same_spends(listed, in_ledger) {
            out.broken = Some(BrokenRecord {
                seq: Some(seq),
                run_id: Some(record.run_id.clone()),
                ledger_entry: None,
                reason: "budget_spends of the record do not match the budget ledger".into(),
            });
            return Ok(out);
        }
    }
    Ok(out)
}

fn broken(ledger_entry: Option<i64>, run_id: Option<String>, reason: String) -> BrokenRecord {
    BrokenRecord {
        seq: None,
        run_id,
        ledger_entry,
        reason,
    }
}

/// Equal spends; the numbers may differ in their last bit, because serde_json's default
/// float parsing of the record is not always exact (the `entry_hash` binds the exact values).
fn same_spends(listed: &[BudgetSpend], in_ledger: &[BudgetSpend]) -> bool {
    let close =
        |a: f64, b: f64| a == b || (a - b).abs() <= 4.0 * f64::EPSILON * a.abs().max(b.abs());
    listed.len() == in_ledger.len()
        && listed.iter().zip(in_ledger).all(|(a, b)| {
            a.ledger_id == b.ledger_id
                && a.entry_hash == b.entry_hash
                && a.dataset_id == b.dataset_id
                && a.release == b.release
                && a.measure == b.measure
                && close(a.epsilon, b.epsilon)
                && close(a.delta, b.delta)
                && close(a.rho, b.rho)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text_is_fixed_json() {
        let e = LedgerEntry {
            dataset_id: "d".into(),
            privacy_unit: "u".into(),
            run_id: "r".into(),
            release: "a".into(),
            measure: "pure".into(),
            epsilon: 0.5,
            delta: 0.0,
            rho: 0.0,
            cap: r#"{"measure":"pure","epsilon":1.0}"#.into(),
            recorded_at: "2025-01-02T03:04:05+00:00".into(),
        };
        assert_eq!(
            canonical_text(7, &e),
            r#"{"id":7,"dataset_id":"d","privacy_unit":"u","run_id":"r","release":"a","measure":"pure","epsilon":0.5,"delta":0.0,"rho":0.0,"cap":"{\"measure\":\"pure\",\"epsilon\":1.0}","recorded_at":"2025-01-02T03:04:05+00:00"}"#
        );
        let mut h = Sha256::new();
        h.update(GENESIS_HASH.as_bytes());
        h.update(b"\n");
        h.update(canonical_text(7, &e).as_bytes());
        assert_eq!(entry_hash(GENESIS_HASH, 7, &e), hex::encode(h.finalize()));
    }
}
