//! Accounting: every record read is written, dropped for one reason, or quarantined, and
//! the counts say so exactly; the quarantine report says where and why, never what.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::RunError;
use crate::engine::Streamed;
use crate::ingest;
use crate::lineage::record::{RunRecord, StageRows};
use crate::plan::Plan;
use crate::policy::{DropReason, KEPT, QUARANTINED};

/// A run's row counts, checked.
pub(super) struct Counts {
    pub rows_read: u64,
    pub written: u64,
    pub quarantined: u64,
    pub dropped: BTreeMap<String, u64>,
    /// The quarantine report (JSON lines), when a record was quarantined.
    pub report: Option<String>,
}

/// Counts the engine's statuses; fails when read ≠ written + dropped + quarantined, or the
/// files do not hold the written rows.
pub(super) fn account(
    plan: &Plan,
    inputs: &[ingest::InputFile],
    streamed: &Streamed,
) -> Result<Counts, RunError> {
    let rows_read: u64 = inputs.iter().map(|i| i.scan.records).sum();
    let structural_bad: u64 = inputs.iter().map(|i| i.scan.bad.len() as u64).sum();
    let written = streamed.by_status[KEPT as usize];
    let quarantined = structural_bad + streamed.by_status[QUARANTINED as usize];
    let mut dropped = BTreeMap::new();
    for r in DropReason::ALL {
        let n = streamed.by_status[r.code() as usize];
        if n > 0 {
            dropped.insert(r.as_str().to_string(), n);
        }
    }
    let dropped_total: u64 = dropped.values().sum();
    let rows_in_files: u64 = streamed.files.iter().map(|(_, w)| w.rows()).sum();
    if rows_read != written + dropped_total + quarantined
        || streamed.seen + structural_bad != rows_read
        || rows_in_files != written
    {
        return Err(RunError::Accounting {
            read: rows_read,
            written,
            dropped: dropped_total,
            quarantined,
        });
    }
    let report = (quarantined > 0).then(|| quarantine_report(plan, inputs, &streamed.bad_values));
    Ok(Counts {
        rows_read,
        written,
        quarantined,
        dropped,
        report,
    })
}

impl Counts {
    /// Puts the counts in the lineage record (rows written only once committed).
    pub fn record(&self, record: &mut RunRecord) {
        record.dropped = self.dropped.clone();
        record.quarantined = self.quarantined;
        let stage = |stage: &str, rows: u64| StageRows {
            stage: stage.into(),
            rows,
        };
        record.rows_per_stage = vec![
            stage("read", self.rows_read),
            stage(
                "parsed",
                self.rows_read - self.quarantined.min(self.rows_read),
            ),
            stage("policy", self.written),
            stage("written", self.written),
        ];
    }

    /// True when more records were quarantined than `[output] max_bad_rows` allows.
    pub fn too_many_bad(&self, plan: &Plan) -> bool {
        self.quarantined > plan.output.max_bad_rows
    }

    /// The error of a run with too many bad records, naming the first.
    pub fn too_many_bad_error(&self, plan: &Plan) -> RunError {
        let first = self
            .report
            .as_deref()
            .and_then(|r| r.lines().next())
            .and_then(|l| serde_json::from_str::<QuarantineEntry>(l).ok())
            .map(|q| q.to_string())
            .unwrap_or_default();
        RunError::TooManyBadRows {
            count: self.quarantined,
            max: plan.output.max_bad_rows,
            first,
            report: plan.output.quarantine_path.display().to_string(),
        }
    }
}

/// One line of the quarantine report.
#[derive(Debug, Serialize, Deserialize)]
pub struct QuarantineEntry {
    pub file: String,
    pub line: u64,
    /// 0-based data record index in the file.
    pub record: u64,
    pub column: Option<String>,
    pub error: String,
}

impl std::fmt::Display for QuarantineEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if let Some(c) = &self.column {
            write!(f, " column `{c}`")?;
        }
        write!(f, ": {}", self.error)
    }
}

fn quarantine_report(
    plan: &Plan,
    inputs: &[ingest::InputFile],
    bad_values: &[(u32, u64, i32)],
) -> String {
    let mut entries: Vec<QuarantineEntry> = Vec::new();
    for input in inputs {
        for b in &input.scan.bad {
            entries.push(QuarantineEntry {
                file: input.path.display().to_string(),
                line: b.line,
                record: b.record,
                column: b.column.clone(),
                error: b.error.clone(),
            });
        }
    }
    for &(f, r, c) in bad_values {
        let input = &inputs[f as usize];
        let column = plan.columns.get(c.max(0) as usize);
        entries.push(QuarantineEntry {
            file: input.path.display().to_string(),
            line: input.scan.line_of(r),
            record: r,
            column: column.map(|c| c.name.clone()),
            error: match column {
                Some(c) if c.ty.is_temporal() => format!(
                    "value is not a {} in the format {}",
                    c.ty.as_str(),
                    plan.manifest
                        .column(&c.name)
                        .map(|m| m.temporal_format().to_string())
                        .unwrap_or_default()
                ),
                Some(c) => format!("value is not a valid {}", c.ty.as_str()),
                None => "value did not parse".into(),
            },
        });
    }
    entries.sort_by(|a, b| (a.file.as_str(), a.record).cmp(&(b.file.as_str(), b.record)));
    let mut out = String::new();
    for e in entries {
        out.push_str(&serde_json::to_string(&e).unwrap_or_default());
        out.push('\n');
    }
    out
}
