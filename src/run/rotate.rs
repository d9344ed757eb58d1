//! Key rotation: `privprep keys rotate-encryption OLD NEW [FILES…]` re-encrypts outputs whose
//! footer or columns were encrypted under master key `OLD` so that they are under `NEW`.
//!
//! Each file is read with the keys it was written with (the old key is checked against the
//! fingerprint the file lists before anything is written), and written again with fresh data
//! keys under the new master key, the same rows, row groups and lineage footer (its encryption
//! entry updated). All files are committed at once with one `rotation` record, through the
//! staged commit and journal: a rotation killed midway leaves every old file or every new one.
//! Without `FILES`, every current output of the lineage store that uses `OLD` is rotated.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::commit::{Journaled, StagedCommit};
use super::{new_run_id, RunOptions};
use crate::emit::encryption::{Encryption, EncryptionRecord, KeyRef, MasterKeys};
use crate::emit::{self, AtomicParquet, ParquetSettings};
use crate::identity::keys;
use crate::lineage::record::{OutputChange, RotationRecord, RunRecord};
use crate::lineage::{LineageError, Store};

/// What a rotation did.
#[derive(Debug, Clone, Serialize)]
pub struct RotationSummary {
    pub rotation_id: String,
    pub old_key: KeyRef,
    pub new_key: KeyRef,
    pub outputs: Vec<OutputChange>,
    pub record_hash: String,
}

/// Why a rotation was not made. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(transparent)]
    Lineage(#[from] LineageError),
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{0}")]
    Usage(String),
    #[error("key rotation failed: {0}")]
    Commit(String),
}

/// Re-encrypts `files` (or every current output using `old`) under master key `new`.
pub fn rotate(
    opts: &RunOptions,
    old: &str,
    new: &str,
    files: &[PathBuf],
) -> Result<RotationSummary, RotateError> {
    if old == new {
        return Err(RotateError::Usage(
            "OLD and NEW name the same master key\n  = hint: name a new key id, e.g. privprep-columns-2027".into(),
        ));
    }
    let mut store = Store::open(&opts.lineage_db)?;
    super::recover_interrupted(&opts.state_dir, &mut store);
    let records = store.indexed_records()?;
    let old_key = std::sync::Arc::new(keys::resolve_master_key(old, &opts.state_dir, false)?.0);
    let (new_key, source) = keys::resolve_master_key(new, &opts.state_dir, true)?;
    let new_key = std::sync::Arc::new(new_key);
    if let keys::KeySource::Created(p) = &source {
        eprintln!(
            "privprep: created master key `{new}` at {} (mode 0600)",
            p.display()
        );
    }
    let old_ref = KeyRef {
        id: old.into(),
        fingerprint: old_key.id(),
    };
    let new_ref = KeyRef {
        id: new.into(),
        fingerprint: new_key.id(),
    };

    // The files: named, or every current output whose record encrypted it with `old`.
    let last = crate::lineage::record::last_touches(records.iter().map(|(_, r)| r));
    let current = |path: &str| -> Option<&RunRecord> {
        last.get(path).filter(|t| !t.deleted).map(|t| t.record)
    };
    // Each file with its privprep footer (read once).
    let footer_of = |p: &str| crate::inspect::privprep_footer(Path::new(p));
    let targets: Vec<(String, Option<serde_json::Value>)> = if files.is_empty() {
        let mut paths: Vec<&str> = last
            .iter()
            .filter(|(p, t)| !t.deleted && t.record.outputs.iter().any(|o| o.path == **p))
            .map(|(p, _)| *p)
            .collect();
        paths.sort_unstable();
        paths
            .into_iter()
            .filter_map(|p| footer_of(p).map(|f| (p.to_string(), Some(f))))
            .filter(|(_, f)| {
                f.as_ref()
                    .and_then(|f| {
                        serde_json::from_value::<EncryptionRecord>(f["encryption"].clone()).ok()
                    })
                    .is_some_and(|e| e.footer_key.id == old || e.column_key.id == old)
            })
            .collect()
    } else {
        files
            .iter()
            .map(|f| {
                let p = f.display().to_string();
                let footer = footer_of(&p);
                (p, footer)
            })
            .collect()
    };

    // Check every file before writing any: its keys, and the old key's fingerprint.
    let mut plans = Vec::new();
    for (path, footer) in targets {
        let err = |message: String| RotateError::File {
            path: path.clone(),
            message,
        };
        let footer =
            footer.ok_or_else(|| err("not a privprep output (no privprep footer)".into()))?;
        let enc: EncryptionRecord = serde_json::from_value(footer["encryption"].clone())
            .map_err(|_| err("not encrypted".into()))?;
        let mut keys = MasterKeys::new();
        for r in [&enc.footer_key, &enc.column_key] {
            if r.id == old {
                if r.fingerprint != old_ref.fingerprint {
                    return Err(err(format!(
                        "master key `{old}` here has fingerprint {}, but the file was encrypted with {}: it is not the file's key\n  = hint: give the key the file was written with (PRIVPREP_MASTER_KEY_<ID> or its key file); nothing was changed",
                        old_ref.fingerprint, r.fingerprint
                    )));
                }
                keys.insert_shared(old, old_key.clone());
            } else if keys.get(&r.id).is_none() {
                let (k, _) = keys::resolve_master_key(&r.id, &opts.state_dir, false)?;
                keys.insert(&r.id, k);
            }
        }
        if enc.footer_key.id != old && enc.column_key.id != old {
            return Err(err(format!(
                "is not encrypted under master key `{old}` (its keys are `{}` and `{}`)",
                enc.footer_key.id, enc.column_key.id
            )));
        }
        keys.insert_shared(new, new_key.clone());
        let swap = |r: &KeyRef| {
            if r.id == old {
                new_ref.clone()
            } else {
                r.clone()
            }
        };
        let record = EncryptionRecord {
            algorithm: enc.algorithm.clone(),
            footer_key: swap(&enc.footer_key),
            column_key: swap(&enc.column_key),
            columns: enc.columns.clone(),
        };
        plans.push((path.clone(), footer, keys, record));
    }
    if plans.is_empty() {
        return Err(RotateError::Usage(format!(
            "no current output is encrypted under master key `{old}`"
        )));
    }

    let id = new_run_id();
    let temps: Vec<PathBuf> = plans
        .iter()
        .map(|(p, ..)| emit::tmp_path_for(Path::new(p), &id))
        .collect();
    let mut record = RunRecord::begin(
        &id,
        &chrono::Utc::now().to_rfc3339(),
        "keys rotate-encryption",
        "",
        "",
        "",
    );
    let journaled = Journaled::begin(&opts.state_dir, &record, temps)
        .map_err(|e| RotateError::Commit(e.to_string()))?;
    let mut staged = StagedCommit::new();
    let mut changes = Vec::new();
    for (path, mut footer, keys, enc) in plans {
        let (rows, sha256) = reencrypt(Path::new(&path), &id, &mut footer, &keys, enc, &mut staged)
            .map_err(|message| RotateError::File {
                path: path.clone(),
                message,
            })?;
        let holder = current(&path);
        let old_sha = holder
            .and_then(|h| h.outputs.iter().find(|o| o.path == path))
            .map(|o| o.sha256.clone())
            .unwrap_or_default();
        if let Some(h) = holder {
            if let Some(o) = h.outputs.iter().find(|o| o.path == path) {
                let mut o = o.clone();
                o.sha256 = sha256.clone();
                record.outputs.push(o);
            }
            // The subjects are the same: the rotation lists the same sets.
            record
                .subject_index
                .extend(h.subject_index.iter().filter(|s| s.output == path).cloned());
        }
        changes.push(OutputChange {
            path: path.clone(),
            run_id: holder
                .map(|h| h.source_run_of(&path).to_string())
                .unwrap_or_default(),
            action: "re-encrypted".into(),
            old_sha256: old_sha,
            new_sha256: Some(sha256),
            rows_before: rows,
            rows_after: Some(rows),
            note: None,
        });
    }
    record.rotation = Some(RotationRecord {
        old_key: old_ref.clone(),
        new_key: new_ref.clone(),
        outputs: changes.clone(),
    });
    let (_, record_hash) = journaled
        .commit(&opts.state_dir, staged, record, &mut store)
        .map_err(|e| RotateError::Commit(e.to_string()))?;
    Ok(RotationSummary {
        rotation_id: id,
        old_key: old_ref,
        new_key: new_ref,
        outputs: changes,
        record_hash,
    })
}

/// Reads `path` with `keys` and stages it written again under `enc`; returns (rows, SHA-256).
fn reencrypt(
    path: &Path,
    id: &str,
    footer: &mut serde_json::Value,
    keys: &MasterKeys,
    enc: EncryptionRecord,
    staged: &mut StagedCommit,
) -> Result<(u64, String), String> {
    let builder = keys.reader(path)?;
    let schema = builder.schema().clone();
    let group_rows = builder
        .metadata()
        .row_groups()
        .first()
        .map(|g| g.num_rows().max(1) as usize)
        .unwrap_or(131_072);
    let reader = builder.build().map_err(|e| e.to_string())?;
    footer["encryption"] = serde_json::to_value(&enc).map_err(|e| e.to_string())?;
    let settings = ParquetSettings {
        row_group_size: group_rows,
        lineage_json: Some(footer.to_string()),
        encryption: Some(Encryption {
            record: enc,
            keys: keys.clone(),
        }),
        plain_columns: Vec::new(),
    };
    let mut w = AtomicParquet::create(path, id, schema, &settings).map_err(|e| e.to_string())?;
    for batch in reader {
        w.write(&batch.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let sha = w.finish().map_err(|e| e.to_string())?;
    let rows = w.rows();
    staged.add_parquet(w, sha.clone());
    Ok((rows, sha))
}
