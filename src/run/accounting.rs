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
        record.rows_read = self.rows_read;
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
    /// 1-based line where the record starts (absent where the engine that read the file
    /// does not know lines, as on Spark).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// 0-based data record index in the file (absent where the engine could not know it: a
    /// Spark Connect server without file metadata that read the file in parts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<u64>,
    pub column: Option<String>,
    pub error: String,
}

impl std::fmt::Display for QuarantineEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.record) {
            (Some(line), _) => write!(f, "{}:{line}", self.file)?,
            (None, Some(record)) => write!(f, "{} record {record}", self.file)?,
            (None, None) => write!(f, "{}", self.file)?,
        }
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
                line: Some(b.line),
                record: Some(b.record),
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
            line: Some(input.scan.line_of(r)),
            record: Some(r),
            column: column.map(|c| c.name.clone()),
            error: match column {
                Some(c) if c.ty.is_temporal() => format!(
                    "value is not a {} in the format {}",
                    c.ty.as_str(),
                    plan.source
                        .manifest
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emit::{AtomicParquet, ParquetSettings};
    use crate::engine::STATUSES;
    use crate::ingest::prescan::{BadRecord, PreScan};
    use crate::pii::gate::GateTally;
    use std::sync::Arc;

    fn plan(dir: &std::path::Path) -> Plan {
        crate::plan::build(&crate::plan::tests::pipeline(dir, |t| t)).expect("plan")
    }

    /// An output file holding `rows` rows.
    fn file(dir: &std::path::Path, rows: usize) -> (u8, AtomicParquet) {
        use arrow::array::Int64Array;
        use arrow::datatypes::{DataType, Field, Schema};
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let settings = ParquetSettings {
            row_group_size: 1024,
            lineage_json: Some("{}".into()),
            encryption: None,
            plain_columns: Vec::new(),
        };
        let mut w = AtomicParquet::create(&dir.join("o.parquet"), "run", schema.clone(), &settings)
            .unwrap();
        let column = Arc::new(Int64Array::from_iter_values(0..rows as i64));
        w.write(&arrow::record_batch::RecordBatch::try_new(schema, vec![column]).unwrap())
            .unwrap();
        (0, w)
    }

    fn input(plan: &Plan, records: u64, bad: u64) -> ingest::InputFile {
        let mut scan = PreScan::without_lines(10, "00".into(), records);
        scan.bad = (0..bad)
            .map(|i| BadRecord {
                record: i,
                line: i + 1,
                column: None,
                error: "wrong number of fields".into(),
            })
            .collect();
        ingest::InputFile {
            path: plan.source.files[0].clone(),
            format: plan.source.format,
            scan,
        }
    }

    /// What an engine would hand back: `kept` rows in a file, the rest by status.
    fn streamed(dir: &std::path::Path, by_status: [u64; STATUSES], seen: u64) -> Streamed {
        Streamed {
            by_status,
            bad_values: (0..by_status[QUARANTINED as usize])
                .map(|r| (0, 100 + r, 0))
                .collect(),
            seen,
            files: vec![file(dir, by_status[KEPT as usize] as usize)],
            schema: Vec::new(),
            identifiers: None,
            gate: GateTally::new(Vec::new(), Vec::new(), Vec::new()),
            release_rows: Vec::new(),
            text_stats: Vec::new(),
            subject_keys: Vec::new(),
            risk: None,
        }
    }

    #[test]
    fn counts_that_add_up_are_recorded_by_reason() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan(dir.path());
        let mut by_status = [0; STATUSES];
        by_status[KEPT as usize] = 70;
        by_status[DropReason::Revoked.code() as usize] = 20;
        by_status[QUARANTINED as usize] = 3;
        let s = streamed(dir.path(), by_status, 93);
        let counts = account(&plan, &[input(&plan, 100, 7)], &s).expect("adds up");
        assert_eq!(
            (counts.rows_read, counts.written, counts.quarantined),
            (100, 70, 10)
        );
        assert_eq!(counts.dropped.len(), 1, "only reasons that dropped rows");
        assert_eq!(counts.dropped[DropReason::Revoked.as_str()], 20);
        let report = counts.report.as_deref().expect("a quarantine report");
        assert_eq!(report.lines().count(), 10);
        assert!(counts.too_many_bad(&plan), "max_bad_rows = 0");
        let mut record = RunRecord::begin("r", "t", "n", "p", "s", "x");
        counts.record(&mut record);
        assert_eq!(record.quarantined, 10);
        let stages: Vec<(String, u64)> = record
            .rows_per_stage
            .iter()
            .map(|s| (s.stage.clone(), s.rows))
            .collect();
        assert_eq!(
            stages,
            [
                ("read".to_string(), 100),
                ("parsed".to_string(), 90),
                ("policy".to_string(), 70),
                ("written".to_string(), 70)
            ]
        );
        let error = counts.too_many_bad_error(&plan).to_string();
        assert!(error.starts_with("10 rows could not be parsed"), "{error}");
    }

    #[test]
    fn counts_that_do_not_add_up_fail_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan(dir.path());
        let mut by_status = [0; STATUSES];
        by_status[KEPT as usize] = 70;
        by_status[DropReason::Revoked.code() as usize] = 20;
        // A row the engine never reported.
        let s = streamed(dir.path(), by_status, 90);
        assert!(matches!(
            account(&plan, &[input(&plan, 91, 0)], &s),
            Err(RunError::Accounting { read: 91, .. })
        ));
        // Every row seen, but the file holds fewer rows than were kept.
        let mut s = streamed(dir.path(), by_status, 90);
        s.files = vec![file(dir.path(), 69)];
        assert!(matches!(
            account(&plan, &[input(&plan, 90, 0)], &s),
            Err(RunError::Accounting { written: 70, .. })
        ));
        // A clean run has no report.
        let s = streamed(dir.path(), by_status, 90);
        let counts = account(&plan, &[input(&plan, 90, 0)], &s).expect("adds up");
        assert!(counts.report.is_none() && !counts.too_many_bad(&plan));
    }
}
