//! `privprep inspect FILE`: what a Parquet file is, from its footer and the lineage store,
//! without reading a value.
//!
//! A privprep output says what it is in its footer (`privprep.lineage`: sanitized, the run,
//! each column's class and what was done to it, the split, the expiry, the encryption's key
//! ids). Encrypted outputs keep a plaintext, signed footer, so all of this reads without
//! keys; the master keys, when present here, are checked against the fingerprints the footer
//! lists, and a wrong one is an error naming its id. The lineage store tells whether the file
//! is still the one its run recorded.

use std::path::Path;

use parquet::file::metadata::ParquetMetaDataReader;
use serde::Serialize;

use crate::emit::encryption::{EncryptionRecord, KeyRef, MasterKeys};
use crate::identity::keys;
use crate::lineage::Store;

/// One column of the file.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InspectedColumn {
    pub name: String,
    /// The manifest's class of the column it came from (privprep outputs).
    pub class: Option<String>,
    /// What was done to it, in words (privprep outputs).
    pub transformation: Option<String>,
    pub encrypted: bool,
}

/// What `inspect` found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Inspection {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
    pub rows: i64,
    pub row_groups: usize,
    /// `sanitized` for a privprep output; `None` for any other file.
    pub privprep_output: Option<String>,
    pub run_id: Option<String>,
    pub pipeline: Option<String>,
    pub dataset_id: Option<String>,
    pub split: Option<String>,
    pub expires_at: Option<String>,
    pub expired: bool,
    pub columns: Vec<InspectedColumn>,
    pub encryption: Option<EncryptionStatus>,
    /// The file against its lineage record: `matches its record`, `differs from its record`,
    /// `replaced by <run>`, or `not in this lineage store`.
    pub lineage: Option<String>,
}

/// The encryption of the file and whether the keys here open it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EncryptionStatus {
    #[serde(flatten)]
    pub record: EncryptionRecord,
    /// Per master key: `available`, `not available here`, or `wrong key (fingerprint …)`.
    pub keys: Vec<(String, String)>,
}

/// Why a file could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{path}: {message}\n  = hint: inspect reads Parquet files")]
    Read { path: String, message: String },
}

/// The privprep footer of the Parquet file at `path`, if it has one (read without keys).
pub fn privprep_footer(path: &Path) -> Option<serde_json::Value> {
    let file = std::fs::File::open(path).ok()?;
    let meta = ParquetMetaDataReader::new().parse_and_finish(&file).ok()?;
    footer_of(&meta)
}

fn footer_of(meta: &parquet::file::metadata::ParquetMetaData) -> Option<serde_json::Value> {
    let kv = meta.file_metadata().key_value_metadata()?;
    let json = kv
        .iter()
        .find(|k| k.key == crate::emit::LINEAGE_KEY)?
        .value
        .as_deref()?;
    serde_json::from_str(json).ok()
}

/// Inspects the file at `path`; `store` (when there is one) says whether it is still what its
/// run recorded, and master keys are looked up in `state_dir` (never created).
pub fn inspect(
    path: &Path,
    store: Option<&Store>,
    state_dir: &Path,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Inspection, InspectError> {
    let err = |message: String| InspectError::Read {
        path: path.display().to_string(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|e| err(format!("not a readable Parquet file: {e}")))?;
    let sha256 = crate::emit::sha256_file(path).map_err(|e| err(e.to_string()))?;
    let footer = footer_of(&meta);
    let text = |k: &str| {
        footer
            .as_ref()
            .and_then(|f| f[k].as_str())
            .map(str::to_owned)
    };
    let encryption: Option<EncryptionRecord> = footer
        .as_ref()
        .and_then(|f| serde_json::from_value(f["encryption"].clone()).ok());
    let encrypted: Vec<String> = meta
        .row_groups()
        .first()
        .map(|rg| {
            rg.columns()
                .iter()
                .filter(|c| c.crypto_metadata().is_some())
                .map(|c| c.column_path().string())
                .collect()
        })
        .unwrap_or_default();
    let columns = meta
        .file_metadata()
        .schema_descr()
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| {
            let name = f.name().to_string();
            let lineage = footer.as_ref().and_then(|ft| {
                ft["columns"]
                    .as_array()?
                    .iter()
                    .find(|c| c["output_column"] == name.as_str())
                    .cloned()
            });
            InspectedColumn {
                class: footer
                    .as_ref()
                    .and_then(|ft| ft["column_classes"][&name].as_str())
                    .map(str::to_owned),
                transformation: lineage
                    .and_then(|l| l["transformation"].as_str().map(str::to_owned)),
                encrypted: encrypted.contains(&name),
                name,
            }
        })
        .collect();
    let expires_at = text("expires_at");
    let expired = expires_at
        .as_deref()
        .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
        .is_some_and(|e| e <= now);
    let encryption = encryption.map(|record| {
        let keys = key_status(&record, state_dir, path);
        EncryptionStatus { record, keys }
    });
    let lineage = store.map(|s| lineage_status(s, path, &sha256));
    Ok(Inspection {
        path: path.display().to_string(),
        bytes,
        sha256,
        rows: meta.file_metadata().num_rows(),
        row_groups: meta.num_row_groups(),
        privprep_output: text("privprep_output")
            .or_else(|| footer.as_ref().map(|_| "sanitized".to_string())),
        run_id: text("run_id"),
        pipeline: text("pipeline"),
        dataset_id: text("dataset_id"),
        split: text("split"),
        expires_at,
        expired,
        columns,
        encryption,
        lineage,
    })
}

/// Each master key of `record`: whether the key here is the one the file was written with,
/// and, when both are, whether they open the file.
fn key_status(record: &EncryptionRecord, state_dir: &Path, path: &Path) -> Vec<(String, String)> {
    let mut keys = MasterKeys::new();
    let mut out = Vec::new();
    let mut refs: Vec<&KeyRef> = vec![&record.footer_key];
    if record.column_key.id != record.footer_key.id {
        refs.push(&record.column_key);
    }
    let mut all_match = true;
    for r in refs {
        match keys::resolve_master_key(&r.id, state_dir, false) {
            Ok((key, _)) if key.id() == r.fingerprint => {
                keys.insert(&r.id, key);
                out.push((r.id.clone(), "available".to_string()));
            }
            Ok((key, _)) => {
                all_match = false;
                out.push((
                    r.id.clone(),
                    format!(
                        "wrong key: the key here has fingerprint {}, the file was written with {}",
                        key.id(),
                        r.fingerprint
                    ),
                ));
            }
            Err(_) => {
                all_match = false;
                out.push((r.id.clone(), "not available here".to_string()));
            }
        }
    }
    if all_match {
        if let Err(e) = open_with(path, &keys) {
            for k in &mut out {
                k.1 = format!("does not open the file: {e}");
            }
        }
    }
    out
}

/// Reads the first row group of `path` with `keys`.
fn open_with(path: &Path, keys: &MasterKeys) -> Result<(), String> {
    let reader = keys
        .reader(path)?
        .with_row_groups(vec![0])
        .build()
        .map_err(|e| e.to_string())?;
    for batch in reader {
        batch.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The file against the newest record that wrote (or deleted) its path.
fn lineage_status(store: &Store, path: &Path, sha256: &str) -> String {
    let Ok(records) = store.indexed_records() else {
        return "the lineage store cannot be read".into();
    };
    let same = |p: &str| {
        let (a, b) = (Path::new(p), path);
        a == b
            || std::fs::canonicalize(a)
                .ok()
                .zip(std::fs::canonicalize(b).ok())
                .is_some_and(|(x, y)| x == y)
    };
    let mut newest = None;
    for (_, r) in &records {
        if let Some(o) = r.outputs.iter().find(|o| same(&o.path)) {
            newest = Some((r.run_id.clone(), Some(o.sha256.clone())));
        }
        if r.output_changes()
            .any(|c| same(&c.path) && c.action == "deleted")
        {
            newest = Some((r.run_id.clone(), None));
        }
    }
    match newest {
        None => "not in this lineage store".into(),
        Some((run, Some(recorded))) if recorded == sha256 => {
            format!("matches its record (run {run})")
        }
        Some((run, Some(_))) => {
            format!("differs from its record (run {run}): changed since it was written")
        }
        Some((run, None)) => format!("deleted by {run}, yet a file is there"),
    }
}

/// The inspection for a terminal.
pub fn render(i: &Inspection) -> String {
    let mut out = format!("{}\n", i.path);
    let mut line = |k: &str, v: String| out.push_str(&format!("  {k:<14} {v}\n"));
    line(
        "size",
        format!(
            "{} bytes, {} rows in {} row group(s)",
            i.bytes, i.rows, i.row_groups
        ),
    );
    line("sha256", i.sha256.clone());
    match &i.privprep_output {
        Some(kind) => line(
            "privprep",
            format!(
                "{kind} output of run {} (pipeline {}, dataset {})",
                i.run_id.as_deref().unwrap_or("-"),
                i.pipeline.as_deref().unwrap_or("-"),
                i.dataset_id.as_deref().unwrap_or("-")
            ),
        ),
        None => line(
            "privprep",
            "not a privprep output (no privprep footer)".into(),
        ),
    }
    if let Some(s) = &i.split {
        line("split", s.clone());
    }
    line(
        "expires",
        match (&i.expires_at, i.expired) {
            (Some(e), true) => format!("{e} (expired: `privprep retention sweep` deletes it)"),
            (Some(e), false) => e.clone(),
            (None, _) => "never (no retain_days)".into(),
        },
    );
    match &i.encryption {
        None => line("encryption", "none".into()),
        Some(e) => {
            line(
                "encryption",
                format!(
                    "{}, footer plaintext and signed; {} column(s) encrypted",
                    e.record.algorithm,
                    e.record.columns.len()
                ),
            );
            for (role, k) in [
                ("footer key", &e.record.footer_key),
                ("column key", &e.record.column_key),
            ] {
                let status = e
                    .keys
                    .iter()
                    .find(|(id, _)| *id == k.id)
                    .map(|(_, s)| s.as_str())
                    .unwrap_or("-");
                line(
                    role,
                    format!("`{}` fingerprint {}: {status}", k.id, k.fingerprint),
                );
            }
        }
    }
    if let Some(l) = &i.lineage {
        line("lineage", l.clone());
    }
    out.push_str("  columns\n");
    for c in &i.columns {
        out.push_str(&format!(
            "    {:<22} {:<17} {}{}\n",
            c.name,
            c.class.as_deref().unwrap_or("-"),
            c.transformation.as_deref().unwrap_or("-"),
            if c.encrypted { "  [encrypted]" } else { "" }
        ));
    }
    out
}

/// Whether an inspection found a master key that is not the file's.
pub fn wrong_keys(i: &Inspection) -> Vec<String> {
    i.encryption
        .iter()
        .flat_map(|e| &e.keys)
        .filter(|(_, s)| s.starts_with("wrong key") || s.starts_with("does not open"))
        .map(|(id, s)| format!("master key `{id}`: {s}"))
        .collect()
}
