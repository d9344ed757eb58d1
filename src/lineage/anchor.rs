//! The anchor: the store's head, recorded in a small file beside it.
//!
//! A hash chain shows edits inside the store, but not a store that was deleted, emptied or
//! replaced by an older copy: that store is a valid chain, only a shorter one (and its budget
//! ledger has less spent). So after every append and every spend the store writes its head to
//! `<folder>/<file stem>.anchor` (for `.privprep/lineage.db`: `.privprep/lineage.anchor`,
//! beside `.privprep/keys/`), and every open and every write checks the store against it
//! (invariant 8: a store that existed is never silently re-created).
//!
//! The anchor only moves forward: it is rewritten while holding the store's write lock (so
//! writers of the anchor queue like writers of the store), from what is committed in the store
//! at that moment, and only when the store still holds what the anchor recorded. It is written
//! to `<stem>.anchor.tmp`, synced and renamed, so a reader sees the old anchor or the new one. It may lag behind the store (a crash right after a commit)
//! but is never ahead of it, so it cannot raise a false alarm. Only `privprep lineage init`
//! rewrites it backwards, and notes in it that it did.
//!
//! Someone who can delete the anchor and the store together can still start afresh unseen;
//! keep a copy of the anchor (or the head hash `privprep lineage verify` prints) elsewhere.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

/// Version of the anchor file's format.
const FORMAT: u32 = 1;

/// Where the store's chain ends: what the anchor records and what is compared with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// `seq` of the newest record (the number of records in an unbroken chain).
    pub records: u64,
    /// `record_hash` of that record; `None` for a store without records.
    pub head_hash: Option<String>,
    /// `id` of the newest budget ledger entry; 0 for an empty ledger.
    pub ledger_last_id: u64,
    /// `entry_hash` of that entry; `None` for an empty ledger.
    pub ledger_head: Option<String>,
}

/// Each time `privprep lineage init` set the anchor back or started it afresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitNote {
    /// RFC 3339 UTC.
    pub at: String,
    /// `new` (a new, empty store took the place of a missing one) or `adopt` (the store as it
    /// was, e.g. an older backup, became the anchored one).
    pub kind: String,
    /// What the anchor held before; `None` when there was no readable anchor.
    pub previous: Option<Head>,
}

/// The anchor file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// Format version of this file.
    pub format: u32,
    /// File name of the store it anchors.
    pub store: String,
    #[serde(flatten)]
    pub head: Head,
    /// When the anchor was last written (RFC 3339 UTC).
    pub updated_at: String,
    /// Every `privprep lineage init` on this store, oldest first.
    #[serde(default)]
    pub inits: Vec<InitNote>,
}

impl Anchor {
    /// An anchor for `store` at `head`, keeping the init notes of `previous`.
    pub fn new(store: &Path, head: Head, previous: Option<&Anchor>) -> Anchor {
        Anchor {
            format: FORMAT,
            store: store
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            head,
            updated_at: chrono::Utc::now().to_rfc3339(),
            inits: previous.map(|a| a.inits.clone()).unwrap_or_default(),
        }
    }
}

/// The anchor file of the store at `store`: `<folder>/<file stem>.anchor`.
pub fn anchor_path(store: &Path) -> PathBuf {
    sibling(store, "anchor")
}

/// Every file the anchor keeps beside the store (the anchor and its temporary file), so a run
/// can refuse outputs that would land on one of them.
pub fn anchor_files(store: &Path) -> Vec<PathBuf> {
    vec![anchor_path(store), sibling(store, "anchor.tmp")]
}

fn sibling(store: &Path, extension: &str) -> PathBuf {
    let stem = store
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let folder = match store.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    folder.join(format!("{stem}.{extension}"))
}

/// Why the anchor file could not be read, in words (never its content).
pub type ReadError = String;

/// The anchor of the store at `store`, `None` when there is none.
pub fn read(store: &Path) -> Result<Option<Anchor>, ReadError> {
    let path = anchor_path(store);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read it ({})", e.kind())),
    };
    serde_json::from_str::<Anchor>(&text)
        .map(Some)
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Eof => "it is truncated".to_string(),
            _ => format!(
                "it is not an anchor (error at line {} column {})",
                e.line(),
                e.column()
            ),
        })
}

/// Replaces the anchor atomically: temporary file, fsync, rename, fsync of the folder.
/// Call with the store's write lock held (`BEGIN IMMEDIATE`), so writers queue.
pub fn write(store: &Path, anchor: &Anchor) -> std::io::Result<()> {
    let target = anchor_path(store);
    let tmp = sibling(store, "anchor.tmp");
    let mut text = serde_json::to_vec_pretty(anchor).map_err(std::io::Error::other)?;
    text.push(b'\n');
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
    }
    if let Err(e) = std::fs::rename(&tmp, &target) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Some(folder) = target.parent() {
        // Makes the rename itself durable; not every platform can open a folder.
        if let Ok(dir) = File::open(folder) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// The store's head as committed (read inside whatever transaction `conn` is in).
pub fn current_head(conn: &Connection) -> rusqlite::Result<Head> {
    let runs: Option<(i64, Value)> = conn
        .query_row(
            "SELECT seq, record_hash FROM runs ORDER BY seq DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let ledger: Option<(i64, Value)> = if super::ledger_table::exists(conn)? {
        conn.query_row(
            "SELECT id, entry_hash FROM budget_ledger ORDER BY id DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?
    } else {
        None
    };
    let position = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(Head {
        records: runs.as_ref().map_or(0, |(seq, _)| position(*seq)),
        head_hash: runs.and_then(|(_, h)| text(&h)),
        ledger_last_id: ledger.as_ref().map_or(0, |(id, _)| position(*id)),
        ledger_head: ledger.and_then(|(_, h)| text(&h)),
    })
}

/// Whether the store still holds what `head` recorded: the record at its position with its
/// hash, and the same for the ledger. Returns the reason it does not, in words.
pub fn mismatch(conn: &Connection, head: &Head) -> rusqlite::Result<Option<String>> {
    if head.records > 0 {
        let seq = i64::try_from(head.records).unwrap_or(i64::MAX);
        let stored: Option<Value> = conn
            .query_row(
                "SELECT record_hash FROM runs WHERE seq = ?1",
                [seq],
                |row| row.get(0),
            )
            .optional()?;
        match stored {
            None => {
                let count: i64 = conn.query_row("SELECT count(*) FROM runs", [], |r| r.get(0))?;
                return Ok(Some(format!(
                    "the anchor recorded {} record(s), the store holds {count}",
                    head.records
                )));
            }
            Some(hash) if text(&hash) != head.head_hash => {
                return Ok(Some(format!(
                    "record {} is not the one the anchor recorded",
                    head.records
                )));
            }
            Some(_) => {}
        }
    }
    if head.ledger_last_id > 0 {
        if !super::ledger_table::exists(conn)? {
            return Ok(Some(format!(
                "the anchor recorded {} budget ledger entr(ies), and the budget_ledger table is missing",
                head.ledger_last_id
            )));
        }
        let id = i64::try_from(head.ledger_last_id).unwrap_or(i64::MAX);
        let stored: Option<Value> = conn
            .query_row(
                "SELECT entry_hash FROM budget_ledger WHERE id = ?1",
                [id],
                |row| row.get(0),
            )
            .optional()?;
        match stored {
            None => {
                return Ok(Some(format!(
                    "budget ledger entry {id}, which the anchor recorded, is missing"
                )));
            }
            Some(hash) if text(&hash) != head.ledger_head => {
                return Ok(Some(format!(
                    "budget ledger entry {id} is not the one the anchor recorded"
                )));
            }
            Some(_) => {}
        }
    }
    Ok(None)
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::Text(t) => Some(t.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_files_sit_beside_the_store() {
        assert_eq!(
            anchor_path(Path::new(".privprep/lineage.db")),
            Path::new(".privprep/lineage.anchor")
        );
        assert_eq!(
            anchor_path(Path::new("lineage.db")),
            Path::new("./lineage.anchor")
        );
        assert_eq!(
            anchor_files(Path::new("/s/store")),
            [
                Path::new("/s/store.anchor"),
                Path::new("/s/store.anchor.tmp")
            ]
        );
    }

    #[test]
    fn an_anchor_round_trips_and_a_damaged_one_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("lineage.db");
        assert_eq!(read(&store), Ok(None));
        let head = Head {
            records: 3,
            head_hash: Some("ab".repeat(32)),
            ledger_last_id: 2,
            ledger_head: Some("cd".repeat(32)),
        };
        let anchor = Anchor::new(&store, head, None);
        write(&store, &anchor).expect("write");
        assert_eq!(read(&store), Ok(Some(anchor)));
        assert!(!sibling(&store, "anchor.tmp").exists());
        std::fs::write(anchor_path(&store), "{\"format\": 1, \"sto").expect("damage");
        let err = read(&store).expect_err("damaged");
        assert_eq!(err, "it is truncated");
    }
}
