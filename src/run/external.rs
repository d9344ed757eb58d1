//! Runs on an engine outside this binary (the Spark engine of the Python wheel).
//!
//! The CLI stays the one resolver of plans and the one writer of the lineage store. A run on
//! another engine has three steps:
//! 1. [`begin`] (`privprep external begin`): plans the pipeline, writes the run's journal entry
//!    under the engine process's id (so the next command records the run as failed and removes
//!    its staging if that process dies) and answers with the row plan and where each output is
//!    to be staged: a hidden folder beside each output path, a hidden file beside the
//!    quarantine report, and a scratch folder in the state folder;
//! 2. the engine runs the row stages, counts rows by status, runs the leak gate, writes each
//!    output as a Parquet folder into its staging place and the subject keys of each output into
//!    the scratch folder, and describes what it did in a [`Finished`] document;
//! 3. [`commit`] (`privprep external commit`): checks the document against the files (rows in
//!    the Parquet footers, rows read per input, accounting, the quarantine cap, the gate's
//!    verdicts under the pipeline's gate mode), hashes the inputs and the folders, writes each
//!    folder's `_privprep.json`, builds the subject index and commits every folder with the
//!    run's record (`engine` = the engine's name) through the same staged commit as a run.
//!
//! Depends on: `commit`, `journal`, `accounting`, `lineage`, `emit`, `ingest`.

use super::accounting::{Counts, QuarantineEntry};
use super::commit::{recover_interrupted, remove_path, remove_temp_files, StagedCommit};
use super::journal::{self, Journal, Pending};
use super::{
    expires_at, footer_json, judge_leaks, path_collisions, pipeline_sha256, row_plan, scratch_path,
    stage_subject_index, subject_column, temp_files, RunError, RunFailure, RunOptions, RunSummary,
};
use crate::emit;
use crate::ingest::prescan;
use crate::lineage::record::{
    InputRecord, LeakGateRecord, OutputRecord, RunRecord, RunStatus, SchemaField,
};
use crate::lineage::store::Store;
use crate::pii::redact::TextStats;
use crate::plan::Plan;
use crate::policy::DropReason;
use crate::stages;
use privprep_kernels::rows::RowPlan;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Engines that may run a pipeline through `privprep external`.
pub const ENGINES: [&str; 1] = ["spark"];

/// One output of a run on another engine: where it goes and where the engine stages it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedOutput {
    /// `all`, `train`, `validation` or `test`.
    pub split: String,
    /// The split code of the row engine's `__split` column.
    pub code: u8,
    pub path: PathBuf,
    /// A folder the engine creates and fills (Parquet part files); renamed to `path`.
    pub staging: PathBuf,
}

/// One DP release as the engine computes its exact aggregates: the rows kept per subject
/// (the truncation OpenDP analysed on the polars path, in the rows' input order), then per
/// group the row count and each clamped sum. The CLI adds OpenDP's noise on the driver.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseJob {
    pub name: String,
    /// (the row engine's column, the group column's name), per group column.
    pub keys: Vec<(String, String)>,
    /// The sums and means: the row engine's value column, the aggregate's name, the bounds.
    pub sums: Vec<SumJob>,
    /// The quantiles: per candidate, the rows below it and above it.
    #[serde(default)]
    pub quantiles: Vec<QuantileJob>,
    /// At most this many rows per subject and group…
    pub max_rows_per_group: u32,
    /// …in at most this many groups per subject (the first by key order);
    pub max_groups: u32,
    /// or instead at most this many rows per subject in all.
    pub max_rows_per_subject: Option<u32>,
}

/// A quantile a release needs ([`ReleaseJob::quantiles`]): per group and candidate `i`, the
/// rows whose value is below it (`<name>__lt<i>`) and above it (`<name>__gt<i>`), a missing
/// or NaN value counting as `missing`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuantileJob {
    pub value: String,
    pub name: String,
    pub candidates: Vec<f64>,
    pub missing: f64,
}

/// A clamped sum a release needs ([`ReleaseJob::sums`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SumJob {
    pub value: String,
    pub name: String,
    pub lower: f64,
    pub upper: f64,
}

/// What the engine measured of a release's input: the consented rows and their distinct keys
/// (checked against the release's public `max_rows` and `max_keys`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseSizes {
    pub rows: u64,
    pub keys: u64,
}

/// [`begin`]'s answer: everything the engine needs, and no key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Begun {
    pub run_id: String,
    pub engine: String,
    pub started_at: String,
    pub pipeline: String,
    pub plan: RowPlan,
    pub outputs: Vec<StagedOutput>,
    /// Where the quarantine report goes and the file the engine writes it to (JSON lines,
    /// one [`QuarantineEntry`] each), when a row was quarantined.
    pub quarantine: StagedOutput,
    /// A folder the engine may use; the subject keys go to `<scratch>/subjects`, each
    /// release's aggregates to `<scratch>/releases/<n>` (Parquet).
    pub scratch: PathBuf,
    #[serde(default)]
    pub releases: Vec<ReleaseJob>,
}

/// Rows of one input file as the engine read them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputRows {
    pub path: String,
    pub rows: u64,
}

/// One free-text column's counts, summed over the engine's workers (in the plan's order).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextCounts {
    pub texts: u64,
    pub texts_changed: u64,
    /// Replaced spans by detector slot.
    pub spans: Vec<u64>,
    pub rows_dropped: u64,
}

/// What the engine did, for [`commit`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finished {
    pub run_id: String,
    /// The engine failed: the run is recorded as failed with this message (which names
    /// files, rows and columns, never values) and nothing is committed.
    #[serde(default)]
    pub error: Option<String>,
    /// Records read, counted on the sources apart from the row stages.
    #[serde(default)]
    pub rows_read: u64,
    #[serde(default)]
    pub inputs: Vec<InputRows>,
    /// Rows by status: `kept`, `quarantined` and each drop reason's name.
    #[serde(default)]
    pub statuses: BTreeMap<String, u64>,
    #[serde(default)]
    pub text_columns: Vec<TextCounts>,
    #[serde(default)]
    pub leak_gate: Vec<LeakGateRecord>,
    /// Per release of the plan, in order.
    #[serde(default)]
    pub releases: Vec<ReleaseSizes>,
}

/// What a run on another engine cannot do yet, as an error naming the pipeline's table.
fn unsupported(plan: &Plan, engine: &str) -> Result<(), RunError> {
    let missing = [
        (!plan.synthetics.is_empty(), "[[synthetic]] tables"),
        (plan.risk.is_some(), "[risk] (k-anonymity)"),
        (plan.output.encryption.is_some(), "[output.encryption]"),
    ];
    match missing.iter().find(|(on, _)| *on) {
        Some((_, what)) => Err(RunError::External(format!(
            "{}: the {engine} engine does not run {what} yet\n  = hint: run this pipeline with `privprep run`, or move that part into a pipeline of its own",
            plan.pipeline.path.display()
        ))),
        None => Ok(()),
    }
}

/// Starts a run of `plan` on `engine`, whose process is `pid`: journals it and gives the
/// engine its plan and staging places. Nothing is recorded until [`commit`] (or until the next
/// command finds `pid` gone and records the run as failed).
pub fn begin(plan: &Plan, opts: &RunOptions, engine: &str, pid: u32) -> Result<Begun, RunError> {
    if !ENGINES.contains(&engine) {
        return Err(RunError::External(format!(
            "unknown engine `{engine}`\n  = hint: engines: {}",
            ENGINES.join(", ")
        )));
    }
    unsupported(plan, engine)?;
    let collisions = path_collisions(plan, opts);
    if !collisions.is_empty() {
        return Err(RunError::PathCollision(collisions.join("\n")));
    }
    let mut store = Store::open(&opts.lineage_db).map_err(|e| RunError::lineage(opts, e))?;
    recover_interrupted(&opts.state_dir, &mut store);
    let rows = row_plan(plan, opts)?;
    // A release OpenDP refuses fails here, before the engine starts.
    for r in &plan.releases {
        crate::dp::release::prepare(r)?;
    }

    let run_id = super::new_run_id();
    let started_at = chrono::Utc::now().to_rfc3339();
    let mut record = super::begin_record(plan, &run_id, &started_at, engine);
    record.key_id = rows.key_id.clone();

    let BegunPaths {
        outputs,
        quarantine,
        scratch,
    } = BegunPaths::of(plan, opts, &run_id);
    // The folders the engine stages into, as a run on this binary makes them.
    let folders = outputs
        .iter()
        .chain([&quarantine])
        .map(|o: &StagedOutput| crate::spec::base_dir(&o.staging))
        .chain([scratch.clone()]);
    for dir in folders {
        std::fs::create_dir_all(&dir).map_err(|source| emit::EmitError::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let journal = Journal::new(&opts.state_dir, &run_id);
    let pending = Pending {
        pid,
        started: journal::start_time(pid),
        record,
        // The same temporary paths as a run on this binary: the staging folders are the
        // outputs' temporary paths.
        temp_files: temp_files(plan, opts, &run_id),
        commit: None,
    };
    journal
        .write(&pending)
        .map_err(|source| RunError::Journal {
            path: journal.path().display().to_string(),
            source,
        })?;
    Ok(Begun {
        run_id,
        engine: engine.to_string(),
        started_at,
        pipeline: plan.pipeline.path.display().to_string(),
        plan: rows,
        outputs,
        quarantine,
        scratch,
        releases: plan.releases.iter().map(release_job).collect(),
    })
}

fn release_job(r: &crate::dp::release::ReleasePlan) -> ReleaseJob {
    use crate::dp::plan::{group_alias, value_alias};
    use crate::dp::release::{stat_column, Statistic};
    ReleaseJob {
        name: r.name.clone(),
        keys: r
            .group_by
            .iter()
            .map(|g| (group_alias(g), g.clone()))
            .collect(),
        sums: r
            .statistics
            .iter()
            .filter_map(|s| {
                let (column, lower, upper) = s.clamped()?;
                Some(SumJob {
                    value: value_alias(column),
                    name: stat_column(s),
                    lower,
                    upper,
                })
            })
            .collect(),
        quantiles: r
            .statistics
            .iter()
            .filter_map(|s| match s {
                Statistic::Quantile {
                    column, candidates, ..
                } => Some(QuantileJob {
                    value: value_alias(column),
                    name: stat_column(s),
                    candidates: candidates.clone(),
                    missing: crate::dp::release::missing_candidate(candidates),
                }),
                _ => None,
            })
            .collect(),
        max_rows_per_group: r.max_rows_per_group,
        max_groups: r.max_groups,
        max_rows_per_subject: r.max_rows_per_subject,
    }
}

/// Checks what the engine did and commits its outputs with the run's record; on failure the
/// run is recorded as failed and nothing of it is left in place. `plan` is the pipeline planned
/// again, or why it no longer plans (then the run is recorded as failed with that error).
pub fn commit(
    plan: Result<&Plan, RunError>,
    opts: &RunOptions,
    finished: &Finished,
) -> Result<RunSummary, Box<RunFailure>> {
    let journal = Journal::new(&opts.state_dir, &finished.run_id);
    let summary = |r: &RunRecord, hash: Option<String>| {
        let elapsed = chrono::DateTime::parse_from_rfc3339(&r.started_at)
            .ok()
            .and_then(|t| {
                (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                    .to_std()
                    .ok()
            })
            .unwrap_or_default();
        RunSummary::from_record(r, &opts.lineage_db, hash, elapsed)
    };
    let Some(mut pending) = journal.read() else {
        let mut record = RunRecord::begin(&finished.run_id, "", "", "", "", "");
        record.mark_failed("no run in progress");
        let error = RunError::External(format!(
            "no run `{}` is in progress in {}\n  = hint: start one with `privprep external begin`; a run whose engine process ended was already recorded as failed",
            finished.run_id,
            opts.state_dir.display()
        ));
        let summary = summary(&record, None);
        return Err(Box::new(RunFailure { error, summary }));
    };
    let mut record = pending.record.clone();
    let mut store = match Store::open(&opts.lineage_db) {
        Ok(s) => s,
        Err(e) => {
            let error = RunError::lineage(opts, e);
            let summary = summary(&record, None);
            return Err(Box::new(RunFailure { error, summary }));
        }
    };
    // The engine's own error, if any, is what the record says.
    let plan = match &finished.error {
        Some(e) => Err(RunError::External(e.clone())),
        None => plan,
    };
    let result = plan.and_then(|plan| check_and_stage(plan, opts, finished, &mut record));
    let result = result.and_then(|staged| {
        record.finished_at = chrono::Utc::now().to_rfc3339();
        let mut done = record.clone();
        done.status = RunStatus::Succeeded;
        let hash = staged
            .commit(&opts.state_dir, &journal, &mut pending, &done, &mut store)
            .map_err(RunError::Commit)?;
        record = done;
        Ok(hash)
    });
    // The engine's scratch (its result and the subject keys) is of no use after the commit.
    remove_path(&scratch_path(&opts.state_dir, &finished.run_id));
    match result {
        Ok(hash) => Ok(summary(&record, Some(hash))),
        Err(error) => {
            record.mark_failed(error.to_string());
            if record.finished_at.is_empty() {
                record.finished_at = chrono::Utc::now().to_rfc3339();
            }
            remove_temp_files(&pending.temp_files);
            let hash = store.append(&record).ok();
            if hash.is_some() {
                let _ = journal.remove();
            }
            let summary = summary(&record, hash);
            Err(Box::new(RunFailure { error, summary }))
        }
    }
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> RunError + '_ {
    move |source| {
        RunError::Emit(emit::EmitError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

/// Everything [`commit`] checks before it stages: the record filled in, the staged commit.
fn check_and_stage(
    plan: &Plan,
    opts: &RunOptions,
    finished: &Finished,
    record: &mut RunRecord,
) -> Result<StagedCommit, RunError> {
    if pipeline_sha256(plan) != record.pipeline_sha256 {
        return Err(RunError::External(format!(
            "{}: the pipeline file changed while the engine ran\n  = hint: run it again; nothing was committed",
            plan.pipeline.path.display()
        )));
    }
    let run_id = record.run_id.clone();
    let begun = BegunPaths::of(plan, opts, &run_id);

    // Inputs: hashed here (the engine read them), with the rows the engine read from each.
    let mut rows_by_file: BTreeMap<&str, u64> = BTreeMap::new();
    for i in &finished.inputs {
        *rows_by_file.entry(i.path.as_str()).or_default() += i.rows;
    }
    let mut inputs = Vec::new();
    if !plan.source.remote.is_empty() {
        // URIs: the files are those the engine found, by the rows it read from each; they
        // are not hashed (this binary does not read them).
        for (path, rows) in std::mem::take(&mut rows_by_file) {
            if !crate::stages::ingest::is_uri(path) {
                return Err(RunError::External(format!(
                    "the engine read `{path}`, which is not a URI of the plan's source\n  = hint: this is a bug in the engine; nothing was committed"
                )));
            }
            inputs.push(InputRecord {
                path: path.to_string(),
                bytes: 0,
                sha256: String::new(),
                rows_read: rows,
                dataset_id: plan.source.manifest.dataset_id().to_string(),
            });
        }
    }
    for f in &plan.source.files {
        let (bytes, sha256) = prescan::hash_file(f).map_err(io_error(f))?;
        // The engine names each input as the row plan did (an absolute path).
        let absolute = std::path::absolute(f).unwrap_or_else(|_| f.clone());
        inputs.push(InputRecord {
            rows_read: rows_by_file
                .remove(absolute.display().to_string().as_str())
                .unwrap_or(0),
            path: f.display().to_string(),
            bytes,
            sha256,
            dataset_id: plan.source.manifest.dataset_id().to_string(),
        });
    }
    if let Some((path, _)) = rows_by_file.iter().next() {
        return Err(RunError::External(format!(
            "the engine read `{path}`, which is not an input of the plan\n  = hint: this is a bug in the engine; nothing was committed"
        )));
    }
    record.inputs = inputs;
    let per_file: u64 = record.inputs.iter().map(|i| i.rows_read).sum();

    // Accounting: read = kept + dropped + quarantined, each counted by the engine.
    let mut dropped = BTreeMap::new();
    let (mut written, mut quarantined) = (0, 0);
    for (status, &n) in &finished.statuses {
        match status.as_str() {
            "kept" => written = n,
            "quarantined" => quarantined = n,
            other if DropReason::ALL.iter().any(|r| r.as_str() == other) => {
                if n > 0 {
                    dropped.insert(other.to_string(), n);
                }
            }
            other => {
                return Err(RunError::External(format!(
                    "the engine counted rows of an unknown status `{other}`\n  = hint: the engine and the CLI are of different versions; nothing was committed"
                )))
            }
        }
    }
    let dropped_total: u64 = dropped.values().sum();
    let report = read_report(&begun.quarantine.staging)?;
    if finished.rows_read != written + dropped_total + quarantined
        || per_file != finished.rows_read
        || report.as_ref().map_or(0, |r| r.lines().count() as u64) != quarantined
    {
        return Err(RunError::Accounting {
            read: finished.rows_read,
            written,
            dropped: dropped_total,
            quarantined,
        });
    }
    let counts = Counts {
        rows_read: finished.rows_read,
        written,
        quarantined,
        dropped,
        report,
    };
    counts.record(record);
    let quarantine_path = plan.output.quarantine_path.display().to_string();
    if counts.too_many_bad(plan) {
        // The report is what the user needs to fix the data: it goes in place alone.
        std::fs::rename(&begun.quarantine.staging, &plan.output.quarantine_path)
            .map_err(io_error(&plan.output.quarantine_path))?;
        record.quarantine_report = Some(quarantine_path);
        return Err(counts.too_many_bad_error(plan));
    }

    // Text columns and the gate's verdicts, judged under the pipeline's gate mode.
    if finished.text_columns.len() != plan.text.len() {
        return Err(RunError::External(format!(
            "the engine counted {} free-text columns, the plan has {}\n  = hint: the engine and the CLI are of different versions; nothing was committed",
            finished.text_columns.len(),
            plan.text.len()
        )));
    }
    let slots = plan.pii.slot_names().len();
    let stats: Vec<TextStats> = finished
        .text_columns
        .iter()
        .map(|t| {
            let s = TextStats::new(slots);
            s.add(t.texts, t.texts_changed, &t.spans);
            s.rows_dropped
                .fetch_add(t.rows_dropped, std::sync::atomic::Ordering::Relaxed);
            s
        })
        .collect();
    record.text_columns = stages::text::text_records(plan, &stats.iter().collect::<Vec<_>>());
    record.leak_gate = finished.leak_gate.clone();
    judge_leaks(plan, record)?;

    // The folders: Hadoop's marker files go, each gets its `_privprep.json`, and the rows in
    // their Parquet footers must be the rows kept.
    let footer = footer_json(plan, &run_id, record);
    let mut staged = StagedCommit::new();
    let mut in_files = 0;
    for out in &begun.outputs {
        let (rows, schema) = finish_folder(&out.staging, &footer, &out.split)?;
        in_files += rows;
        let sha256 = emit::sha256_file(&out.staging).map_err(io_error(&out.staging))?;
        record.outputs.push(OutputRecord {
            path: out.path.display().to_string(),
            split: out.split.clone(),
            rows,
            sha256: sha256.clone(),
            schema,
            expires_at: expires_at(plan, record),
        });
        staged.add_path(out.staging.clone(), out.path.clone(), sha256);
    }
    if in_files != written {
        return Err(RunError::Accounting {
            read: finished.rows_read,
            written: in_files,
            dropped: dropped_total,
            quarantined,
        });
    }
    // DP releases: spend first (cap check and spend in one transaction), then OpenDP's noise
    // on the engine's exact aggregates.
    if !plan.releases.is_empty() {
        if finished.releases.len() != plan.releases.len() {
            return Err(RunError::External(format!(
                "the engine computed {} releases, the plan has {}\n  = hint: the engine and the CLI are of different versions; nothing was committed",
                finished.releases.len(),
                plan.releases.len()
            )));
        }
        let prepared = plan
            .releases
            .iter()
            .map(crate::dp::release::prepare)
            .collect::<Result<Vec<_>, _>>()?;
        let sizes: Vec<(u64, u64)> = finished.releases.iter().map(|r| (r.rows, r.keys)).collect();
        super::releases::check_bounds(plan, &sizes)?;
        super::releases::spend(plan, opts, &run_id, &prepared)?;
        for (n, (r, p)) in plan.releases.iter().zip(&prepared).enumerate() {
            let dir = begun.scratch.join("releases").join(n.to_string());
            let table = p.run_on_aggregates(r, read_aggregates(&dir)?)?;
            let (rec, w) = super::releases::write_release(plan, &run_id, r, p, &table)?;
            let sha = rec.sha256.clone();
            record.releases.push(rec);
            staged.add_parquet(w, sha);
        }
    }
    if counts.report.is_some() {
        let staging = &begun.quarantine.staging;
        let sha256 = emit::sha256_file(staging).map_err(io_error(staging))?;
        staged.add_path(staging.clone(), plan.output.quarantine_path.clone(), sha256);
        record.quarantine_report = Some(quarantine_path);
    }

    // The subject index: one set per output, from the keys the engine wrote.
    let mut sets = subject_sets(&begun.scratch.join("subjects"), &begun.outputs)?;
    stage_subject_index(opts, &run_id, &mut sets, record, &mut staged)?;
    record.subject_column = Some(subject_column(plan));
    record.rows_written = counts.written;
    Ok(staged)
}

/// The staging places [`begin`] gave for a run (derived again, not trusted from the engine).
struct BegunPaths {
    outputs: Vec<StagedOutput>,
    quarantine: StagedOutput,
    scratch: PathBuf,
}

impl BegunPaths {
    fn of(plan: &Plan, opts: &RunOptions, run_id: &str) -> BegunPaths {
        let staged = |split: &str, code: u8, path: PathBuf| StagedOutput {
            split: split.to_string(),
            code,
            staging: emit::tmp_path_for(&path, run_id),
            path,
        };
        BegunPaths {
            outputs: plan
                .output
                .files()
                .into_iter()
                .map(|(split, code, path)| staged(split, code, path))
                .collect(),
            quarantine: staged("quarantine", 0, plan.output.quarantine_path.clone()),
            scratch: scratch_path(&opts.state_dir, run_id),
        }
    }
}

/// The quarantine report the engine staged, checked line by line (an entry names a file,
/// a record and a column, never a value).
fn read_report(path: &Path) -> Result<Option<String>, RunError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path)(e)),
    };
    for (n, line) in text.lines().enumerate() {
        if serde_json::from_str::<QuarantineEntry>(line).is_err() {
            return Err(RunError::External(format!(
                "{}:{}: not a quarantine entry\n  = hint: this is a bug in the engine; nothing was committed",
                path.display(),
                n + 1
            )));
        }
    }
    Ok((!text.is_empty()).then_some(text))
}

/// Cleans a staged Parquet folder (Hadoop's `_SUCCESS` and `.crc` files go), writes its
/// `_privprep.json`, and gives the rows in its Parquet footers and its schema.
fn finish_folder(
    dir: &Path,
    footer: &serde_json::Value,
    split: &str,
) -> Result<(u64, Vec<SchemaField>), RunError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    if !dir.is_dir() {
        return Err(RunError::External(format!(
            "{}: the engine did not write this output\n  = hint: this is a bug in the engine; nothing was committed",
            dir.display()
        )));
    }
    let files = emit::folder_files(dir).map_err(io_error(dir))?;
    let mut rows = 0;
    let mut schema = None;
    for (name, path) in &files {
        let base = name.rsplit('/').next().unwrap_or(name);
        if base == "_SUCCESS" || (base.starts_with('.') && base.ends_with(".crc")) {
            std::fs::remove_file(path).map_err(io_error(path))?;
            continue;
        }
        if !base.ends_with(".parquet") {
            return Err(RunError::External(format!(
                "{}: not a Parquet file in the output folder\n  = hint: this is a bug in the engine; nothing was committed",
                path.display()
            )));
        }
        let file = std::fs::File::open(path).map_err(io_error(path))?;
        let reader = SerializedFileReader::new(file).map_err(|e| {
            RunError::External(format!("{}: not a Parquet file: {e}", path.display()))
        })?;
        let meta = reader.metadata().file_metadata();
        rows += meta.num_rows() as u64;
        if schema.is_none() {
            let arrow = parquet::arrow::parquet_to_arrow_schema(meta.schema_descr(), None)
                .map_err(|e| {
                    RunError::External(format!("{}: unreadable schema: {e}", path.display()))
                })?;
            schema = Some(
                arrow
                    .fields()
                    .iter()
                    .map(|f| SchemaField {
                        name: f.name().clone(),
                        data_type: f.data_type().to_string(),
                    })
                    .collect(),
            );
        }
    }
    let mut meta = footer.clone();
    meta["split"] = serde_json::Value::from(split);
    meta["rows"] = serde_json::Value::from(rows);
    let bytes = serde_json::to_vec_pretty(&meta).unwrap_or_default();
    let at = dir.join("_privprep.json");
    std::fs::write(&at, bytes)
        .and_then(|_| std::fs::File::open(&at)?.sync_all())
        .and_then(|_| std::fs::File::open(dir)?.sync_all())
        .map_err(io_error(&at))?;
    Ok((rows, schema.unwrap_or_default()))
}

/// The subject keys of each output (in `outputs`' order), sorted and distinct, from the
/// Parquet folder the engine wrote: columns `split` (the split code) and `key` (the subject
/// index key's 64 bits).
fn subject_sets(dir: &Path, outputs: &[StagedOutput]) -> Result<Vec<Vec<u64>>, RunError> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int32Type, Int64Type};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut sets = vec![Vec::new(); outputs.len()];
    if !dir.is_dir() {
        return Ok(sets);
    }
    let bad = |path: &Path, what: String| {
        RunError::External(format!(
            "{}: {what}\n  = hint: this is a bug in the engine; nothing was committed",
            path.display()
        ))
    };
    for (name, path) in emit::folder_files(dir).map_err(io_error(dir))? {
        if !name.ends_with(".parquet") {
            continue;
        }
        let file = std::fs::File::open(&path).map_err(io_error(&path))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| bad(&path, e.to_string()))?;
        for batch in reader {
            let batch = batch.map_err(|e| bad(&path, e.to_string()))?;
            let (Some(split), Some(key)) =
                (batch.column_by_name("split"), batch.column_by_name("key"))
            else {
                return Err(bad(&path, "no `split` and `key` columns".into()));
            };
            let (Some(split), Some(key)) = (
                split.as_primitive_opt::<Int32Type>(),
                key.as_primitive_opt::<Int64Type>(),
            ) else {
                return Err(bad(&path, "`split` must be int32 and `key` int64".into()));
            };
            for i in 0..batch.num_rows() {
                if split.is_null(i) || key.is_null(i) {
                    continue;
                }
                let code = split.value(i);
                let Some(n) = outputs.iter().position(|o| i32::from(o.code) == code) else {
                    return Err(bad(&path, format!("split code {code} is not an output's")));
                };
                sets[n].push(key.value(i) as u64);
            }
        }
    }
    for s in &mut sets {
        s.sort_unstable();
        s.dedup();
    }
    Ok(sets)
}

/// A release's aggregates as the engine wrote them (a Parquet folder), in one frame.
fn read_aggregates(dir: &Path) -> Result<polars::prelude::DataFrame, RunError> {
    use polars::prelude::*;
    let bad = |what: String| {
        RunError::External(format!(
            "{}: {what}\n  = hint: this is a bug in the engine; nothing was committed",
            dir.display()
        ))
    };
    let mut frame: Option<DataFrame> = None;
    for (name, path) in emit::folder_files(dir).map_err(io_error(dir))? {
        if !name.ends_with(".parquet") {
            continue;
        }
        let file = std::fs::File::open(&path).map_err(io_error(&path))?;
        let part = ParquetReader::new(file)
            .finish()
            .map_err(|e| bad(e.to_string()))?;
        match frame.as_mut() {
            None => frame = Some(part),
            Some(f) => {
                f.vstack_mut(&part).map_err(|e| bad(e.to_string()))?;
            }
        }
    }
    frame.ok_or_else(|| bad("no aggregates were written".into()))
}
