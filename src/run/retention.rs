//! Retention of outputs: `privprep retention sweep` deletes every committed output past the
//! expiry its run gave it (`[output] retain_days`), with the run's quarantine report, and
//! records the deletions as one `retention` record.
//!
//! Only the file a path holds now counts: the newest record that wrote the path (a run, or an
//! erasure or rotation that rewrote it) gives its expiry. The deletions go through the staged
//! commit's journal like a run's renames, so a sweep killed midway is finished by the next
//! command, and deleting a file that is already gone is harmless.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::commit::{Journaled, StagedCommit};
use super::{new_run_id, RunOptions};
use crate::lineage::record::{OutputChange, RetentionRecord, RunRecord};
use crate::lineage::{LineageError, Store};

/// What a sweep did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct SweepSummary {
    /// The sweep's record id (`None` for a dry run).
    pub sweep_id: Option<String>,
    pub as_of: String,
    pub dry_run: bool,
    pub outputs: Vec<OutputChange>,
    pub quarantine_reports: Vec<String>,
    pub record_hash: Option<String>,
}

/// Why a sweep failed; nothing was deleted unless the message says it was recorded.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Lineage(#[from] LineageError),
    #[error("retention sweep failed: {0}")]
    Commit(String),
}

/// One path's newest state: the record that wrote it, and the output's expiry and SHA-256
/// there; `None` once a record deleted it.
type Newest<'a> = Option<(&'a RunRecord, Option<&'a str>, &'a str, u64)>;

/// Deletes (or lists, `dry_run`) every output whose expiry is at or before `as_of`.
pub fn sweep(
    opts: &RunOptions,
    as_of: chrono::DateTime<chrono::Utc>,
    dry_run: bool,
) -> Result<SweepSummary, SweepError> {
    let mut store = Store::open(&opts.lineage_db)?;
    super::recover_interrupted(&opts.state_dir, &mut store);
    let records = store.indexed_records()?;
    let as_of_text = as_of.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);

    // The file at every path now (the record that last wrote it), and the newest run
    // naming each quarantine report.
    let last = crate::lineage::record::last_touches(records.iter().map(|(_, r)| r));
    let mut newest: BTreeMap<&str, Newest> = BTreeMap::new();
    for (path, touch) in &last {
        let state = match touch.record.outputs.iter().find(|o| o.path == *path) {
            Some(o) if !touch.deleted => Some((
                touch.record,
                o.expires_at.as_deref(),
                o.sha256.as_str(),
                o.rows,
            )),
            _ => None,
        };
        newest.insert(path, state);
    }
    let mut reports: BTreeMap<&str, &RunRecord> = BTreeMap::new();
    for (_, r) in &records {
        if let Some(q) = &r.quarantine_report {
            reports.insert(q, r);
        }
    }
    let expired = |e: Option<&str>| {
        e.and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
            .is_some_and(|e| e <= as_of)
    };
    let mut outputs = Vec::new();
    let mut expired_runs: Vec<&str> = Vec::new();
    for (path, state) in &newest {
        let Some((r, expires, sha, rows)) = state else {
            continue;
        };
        if !expired(*expires) {
            continue;
        }
        expired_runs.push(&r.run_id);
        let exists = Path::new(path).exists();
        outputs.push(OutputChange {
            path: path.to_string(),
            run_id: r.source_run_of(path).to_string(),
            action: if exists { "deleted" } else { "gone" }.into(),
            old_sha256: sha.to_string(),
            new_sha256: None,
            rows_before: *rows,
            rows_after: None,
            note: Some(format!("expired at {}", expires.unwrap_or("-"))),
        });
    }
    // A run's quarantine report goes with its expired outputs, if no later run rewrote it.
    let quarantine_reports: Vec<String> = reports
        .iter()
        .filter(|(q, r)| expired_runs.contains(&r.run_id.as_str()) && Path::new(q).exists())
        .map(|(q, _)| q.to_string())
        .collect();
    if dry_run || (outputs.is_empty() && quarantine_reports.is_empty()) {
        return Ok(SweepSummary {
            sweep_id: None,
            as_of: as_of_text,
            dry_run,
            outputs,
            quarantine_reports,
            record_hash: None,
        });
    }

    let id = new_run_id();
    let now = chrono::Utc::now().to_rfc3339();
    let mut record = RunRecord::begin(&id, &now, "retention sweep", "", "", "");
    record.retention = Some(RetentionRecord {
        as_of: as_of_text.clone(),
        outputs: outputs.clone(),
    });
    let journaled = Journaled::begin(&opts.state_dir, &record, Vec::new())
        .map_err(|e| SweepError::Commit(e.to_string()))?;
    let mut staged = StagedCommit::new();
    for o in outputs.iter().filter(|o| o.action == "deleted") {
        staged.remove(Path::new(&o.path));
    }
    for q in &quarantine_reports {
        staged.remove(&PathBuf::from(q));
    }
    let (_, hash) = journaled
        .commit(&opts.state_dir, staged, record, &mut store)
        .map_err(|e| SweepError::Commit(e.to_string()))?;
    Ok(SweepSummary {
        sweep_id: Some(id),
        as_of: as_of_text,
        dry_run,
        outputs,
        quarantine_reports,
        record_hash: Some(hash),
    })
}
