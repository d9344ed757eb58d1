//! A run's life: one streaming pass from the inputs to committed Parquet and a lineage record.
//!
//! `execute` reads as the data flow: load the key, pre-scan the inputs, calibrate the DP
//! releases, let the engine stream every stage over the rows (`crate::engine`: per row a
//! status, kept, quarantined or dropped for one reason, and the output columns, written to
//! temporary files), account for every row (`accounting`), finish the files, run the leak
//! gate, then spend the budget and compute the releases (`releases`). Only then does the
//! staged commit (`commit`) make every file visible together with the run's record. A run
//! that dies leaves a journal entry (`journal`) that the next command turns into a `failed`
//! record, or, if the commit had begun, finishes.
//!
//! Depends on: `engine`, `plan`, `stages` (lineage fragments), `emit`, `lineage`, `dp`,
//! `identity::keys`.

use crate::dp::release;
use crate::emit::encryption::{Encryption, EncryptionRecord, MasterKeys};
use crate::emit::{self, AtomicParquet};
use crate::engine::polars::{sanitize, Polars};
use crate::engine::{Engine, EngineError, Erased, Job, Streamed};
use crate::identity::keys::{self, Key};
use crate::ingest;
use crate::ingest::prescan::IdGather;
use crate::lineage;
use crate::lineage::record::{
    GateResult, LeakGateRecord, OutputRecord, ReleaseRecord, RunRecord, RunStatus, TextColumnRecord,
};
use crate::lineage::record::{SubjectColumnRecord, SubjectSetRecord};
use crate::lineage::store::Store;
use crate::pii::gate::{DistinctKeys, GateTally, IdentifierSet, ValueHasher};
use crate::pii::redact::TextStats;
use crate::plan::Plan;
use crate::spec::{LeakGateMode, SourceFormat};
use crate::stages;
use parquet::encryption::decrypt::FileDecryptionProperties;
use privprep_kernels::subject::{self, SubjectHasher};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use accounting::QuarantineEntry;

/// Where a run keeps its state and how it reports.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `--key-file`, if given.
    pub key_file: Option<PathBuf>,
    /// State folder (keys, lineage, journal), default `.privprep`.
    pub state_dir: PathBuf,
    /// Lineage store path, default `<state_dir>/lineage.db`.
    pub lineage_db: PathBuf,
    /// Show a progress spinner on stderr.
    pub progress: bool,
}

impl RunOptions {
    /// Options with the default lineage store inside `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        let state_dir = state_dir.into();
        RunOptions {
            key_file: None,
            lineage_db: state_dir.join("lineage.db"),
            state_dir,
            progress: false,
        }
    }
}

/// One committed output, as scripts see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutputSummary {
    pub path: String,
    pub split: String,
    pub rows: u64,
    pub sha256: String,
}

/// The run summary printed at the end (`--format json` prints exactly this).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunSummary {
    pub run_id: String,
    pub status: String,
    pub pipeline: String,
    pub rows_read: u64,
    pub rows_written: u64,
    pub dropped: BTreeMap<String, u64>,
    pub quarantined: u64,
    pub quarantine_report: Option<String>,
    pub outputs: Vec<OutputSummary>,
    pub key_id: Option<String>,
    pub lineage_db: String,
    pub record_hash: Option<String>,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub error: Option<String>,
    /// Per free-text column: spans replaced by type, texts changed, rows dropped.
    #[serde(default)]
    pub text_columns: Vec<TextColumnRecord>,
    /// Per output column: the leak gate's verdict and hit counts.
    #[serde(default)]
    pub leak_gate: Vec<LeakGateRecord>,
    /// Differentially private releases: file, spend, noise and accuracy.
    #[serde(default)]
    pub releases: Vec<ReleaseRecord>,
    /// k-anonymity (`[risk]`): k reached, classes and rows below k, l-diversity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<crate::lineage::record::RiskRecord>,
    /// DP synthetic tables: file, rows, model, spend and the data owner's report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synthetics: Vec<crate::lineage::record::SyntheticRecord>,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    #[error(transparent)]
    Emit(#[from] emit::EmitError),
    // The message comes from the store and names it already (say it once).
    #[error("{message}")]
    Lineage { path: String, message: String },
    #[error(
        "the engine failed: {0}\n  = hint: the message above names the file or column involved"
    )]
    Engine(String),
    #[error("{count} rows could not be parsed, more than max_bad_rows = {max} (first: {first})\n  = hint: see the quarantine report {report}; fix the data or raise [output] max_bad_rows")]
    TooManyBadRows {
        count: u64,
        max: u64,
        first: String,
        report: String,
    },
    #[error("leak gate: personal data found in the output: {columns}\n  = hint: nothing was committed. Redact these columns (action = \"redact\"), drop them, or widen their detectors; `privprep lineage show` lists the gate's counts per column")]
    Leak { columns: String },
    /// A release OpenDP refused or failed to compute.
    #[error(transparent)]
    Release(#[from] release::ReleaseError),
    /// A release's public bound does not hold for the data (checked before any spend).
    #[error("{0}")]
    ReleaseBound(String),
    #[error(transparent)]
    Budget(#[from] crate::dp::ledger::LedgerError),
    #[error(transparent)]
    Action(#[from] crate::engine::polars::identity::ActionError),
    #[error("free-text detectors: {0}")]
    Scanner(#[from] privprep_kernels::pii::detect::ScannerError),
    #[error("free-text tokens: {0}")]
    Tokenizer(#[from] privprep_kernels::token::TokenizerError),
    /// A lock shared with the engine's threads was poisoned by a panic there.
    #[error("internal error: the {0} lock was poisoned by a failed engine thread\n  = hint: this is a bug in privprep; nothing was committed")]
    Poisoned(&'static str),
    #[error("{0}")]
    PathCollision(String),
    /// An engine outside this binary failed, or gave a result that does not hold.
    #[error("{0}")]
    External(String),
    #[error("{path}: cannot write the run journal: {source}\n  = hint: the journal lets the next command account for a killed run; check that the state folder is writable")]
    Journal {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("row accounting does not add up: read {read} ≠ written {written} + dropped {dropped} + quarantined {quarantined}\n  = hint: this is a bug in privprep; the outputs were not committed")]
    Accounting {
        read: u64,
        written: u64,
        dropped: u64,
        quarantined: u64,
    },
}

impl RunError {
    /// The lineage store of `opts` failed with `e`.
    pub(crate) fn lineage(opts: &RunOptions, e: impl ToString) -> RunError {
        RunError::Lineage {
            path: opts.lineage_db.display().to_string(),
            message: e.to_string(),
        }
    }
}

impl From<EngineError> for RunError {
    /// An engine's errors keep their kind (and message) in the run's.
    fn from(e: EngineError) -> RunError {
        match e {
            EngineError::Ingest(e) => RunError::Ingest(e),
            EngineError::Emit(e) => RunError::Emit(e),
            EngineError::Failed(m) => RunError::Engine(m),
            EngineError::Action(e) => RunError::Action(e),
            EngineError::Scanner(e) => RunError::Scanner(e),
            EngineError::Tokenizer(e) => RunError::Tokenizer(e),
            EngineError::Poisoned(what) => RunError::Poisoned(what),
        }
    }
}

/// A run that failed, with what was recorded about it.
#[derive(Debug)]
pub struct RunFailure {
    pub error: RunError,
    pub summary: RunSummary,
}

impl std::fmt::Display for RunFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "run {} failed: {}", self.summary.run_id, self.error)
    }
}

impl std::error::Error for RunFailure {}

/// A fresh run id: UTC time plus random hex, sortable and unique.
pub fn new_run_id() -> String {
    let now = chrono::Utc::now();
    format!(
        "{}-{:06x}",
        now.format("%Y%m%dT%H%M%SZ"),
        rand::random::<u32>() & 0xff_ffff
    )
}

mod accounting;
mod commit;
mod erase;
pub mod external;
mod journal;
mod releases;
pub mod retention;
pub mod rotate;
mod synthetic;

use commit::StagedCommit;
pub use commit::{recover_interrupted, CommitError, FAULT_ENV};
pub use erase::{erase, Affected, EraseError, ErasureRequest, ErasureSummary};
use journal::{Journal, Pending};

/// Runs the plan and records it. On failure the error is recorded in lineage too.
pub fn run(plan: &Plan, opts: &RunOptions) -> Result<RunSummary, Box<RunFailure>> {
    let started = std::time::Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339();
    let run_id = new_run_id();
    let mut record = begin_record(plan, &run_id, &started_at, "polars");
    let fail = |record: &mut RunRecord, error: RunError, store: Option<&mut Store>| {
        record.mark_failed(error.to_string());
        if record.finished_at.is_empty() {
            record.finished_at = chrono::Utc::now().to_rfc3339();
        }
        let record_hash = store.and_then(|s| s.append(record).ok());
        let summary =
            RunSummary::from_record(record, &opts.lineage_db, record_hash, started.elapsed());
        Box::new(RunFailure { error, summary })
    };
    let mut store = match Store::open(&opts.lineage_db) {
        Ok(s) => s,
        Err(e) => {
            let error = RunError::lineage(opts, e);
            return Err(fail(&mut record, error, None));
        }
    };
    recover_interrupted(&opts.state_dir, &mut store);

    if let Some(uri) = plan.source.remote.first() {
        let error = RunError::External(format!(
            "{}: the source is a URI (`{uri}`), which this binary does not read\n  = hint: run the pipeline on Spark (`python -m privprep.spark {}`), or give local paths",
            plan.pipeline.path.display(),
            plan.pipeline.path.display()
        ));
        return Err(fail(&mut record, error, Some(&mut store)));
    }
    // No path the run writes may be a file it reads or owns; checked again here, just before
    // anything is written, because files and symlinks may have changed since `validate`.
    let collisions = path_collisions(plan, opts);
    if !collisions.is_empty() {
        let error = RunError::PathCollision(collisions.join("\n"));
        return Err(fail(&mut record, error, Some(&mut store)));
    }

    let erased = match store.erased_keys() {
        Ok(keys) => Arc::new(keys),
        Err(e) => {
            let error = RunError::lineage(opts, e);
            return Err(fail(&mut record, error, Some(&mut store)));
        }
    };

    // Journal first, so a killed run is still accounted for.
    let temp_files = temp_files(plan, opts, &run_id);
    let journal = Journal::new(&opts.state_dir, &run_id);
    let mut pending = Pending {
        pid: std::process::id(),
        started: journal::own_start_time(),
        record: record.clone(),
        temp_files,
        commit: None,
    };
    if let Err(e) = journal.write(&pending) {
        let error = RunError::Journal {
            path: journal.path().display().to_string(),
            source: e,
        };
        return Err(fail(&mut record, error, Some(&mut store)));
    }

    let result = execute(plan, opts, &run_id, &mut record, &erased);
    record.finished_at = chrono::Utc::now().to_rfc3339();
    let result = result.and_then(|staged| {
        let mut done = record.clone();
        done.status = RunStatus::Succeeded;
        let hash = staged
            .commit(&opts.state_dir, &journal, &mut pending, &done, &mut store)
            .map_err(RunError::Commit)?;
        record = done;
        Ok(hash)
    });
    match result {
        Ok(hash) => Ok(RunSummary::from_record(
            &record,
            &opts.lineage_db,
            Some(hash),
            started.elapsed(),
        )),
        Err(error) => {
            let failure = fail(&mut record, error, Some(&mut store));
            if failure.summary.record_hash.is_some() {
                let _ = journal.remove();
            }
            Err(failure)
        }
    }
}

/// SHA-256 of the pipeline file's text, lowercase hex.
fn pipeline_sha256(plan: &Plan) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        plan.pipeline.text.as_bytes(),
    ))
}

/// The record of a run of `plan` on `engine` that has just started (status `failed` until it
/// commits), with the plan's own part filled in.
fn begin_record(plan: &Plan, run_id: &str, started_at: &str, engine: &str) -> RunRecord {
    let mut record = RunRecord::begin(
        run_id,
        started_at,
        &plan.name,
        &plan.pipeline.path.display().to_string(),
        &pipeline_sha256(plan),
        &plan.pipeline.text,
    );
    plan.record_into(&mut record);
    record.engine = Some(engine.to_string());
    record
}

/// Every temporary file or folder a run of `plan` may make, for its journal entry.
fn temp_files(plan: &Plan, opts: &RunOptions, run_id: &str) -> Vec<PathBuf> {
    // The subject index's sets: one per data file, and one for the releases.
    let dir = lineage::index::index_dir(&opts.lineage_db);
    let sets = (0..=plan.output.files().len())
        .map(|n| emit::tmp_path_for(&dir.join(lineage::index::set_file_name(run_id, n)), run_id));
    plan.output
        .files()
        .iter()
        .map(|(_, _, p)| emit::tmp_path_for(p, run_id))
        .chain([
            emit::tmp_path_for(&plan.output.quarantine_path, run_id),
            scratch_path(&opts.state_dir, run_id),
        ])
        .chain(
            plan.releases
                .iter()
                .map(|r| emit::tmp_path_for(&r.path, run_id)),
        )
        .chain(plan.synthetics.iter().flat_map(|t| {
            [
                emit::tmp_path_for(&t.path, run_id),
                emit::tmp_path_for(&t.report, run_id),
            ]
        }))
        .chain(sets)
        .collect()
}

/// Every write of the run that lands on a file it reads, owns or writes twice, in words.
fn path_collisions(plan: &Plan, opts: &RunOptions) -> Vec<String> {
    write_collisions(plan, opts)
        .0
        .iter()
        .map(|d| d.to_string())
        .collect()
}

/// The pipeline's written paths that name a file the run reads or owns (inputs, lists, the
/// lineage store, the key file…) or another of its outputs, as diagnostics at the pipeline
/// file's lines. `validate` and `run` report them before anything is written.
pub fn write_collisions(plan: &Plan, opts: &RunOptions) -> crate::spec::Diagnostics {
    let mut paths = plan.paths.clone();
    paths.extend(state_paths(opts));
    crate::spec::Diagnostics(crate::plan::collision_diagnostics(&plan.pipeline, &paths))
}

/// The files a run owns outside the pipeline file: the lineage store (and what SQLite and the
/// anchor keep beside it), the key file, the journal.
pub fn state_paths(opts: &RunOptions) -> Vec<crate::spec::paths::NamedPath> {
    use crate::spec::paths::NamedPath;
    let db = &opts.lineage_db;
    let mut out = vec![NamedPath::read("the lineage store", db.clone(), None)];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = db.clone().into_os_string();
        p.push(suffix);
        out.push(NamedPath::read(
            "the lineage store's SQLite files",
            p.into(),
            None,
        ));
    }
    for p in crate::lineage::anchor::anchor_files(db) {
        out.push(NamedPath::read("the lineage store's anchor", p, None));
    }
    let key = opts
        .key_file
        .clone()
        .or_else(|| std::env::var_os("PRIVPREP_KEY_FILE").map(PathBuf::from))
        .unwrap_or_else(|| opts.state_dir.join("keys").join("default.key"));
    out.push(NamedPath::read("the key file", key, None));
    for id in [
        crate::stages::output::DEFAULT_FOOTER_KEY,
        crate::stages::output::DEFAULT_COLUMN_KEY,
    ] {
        out.push(NamedPath::read(
            "a master key file",
            keys::master_key_path(id, &opts.state_dir),
            None,
        ));
    }
    out.push(NamedPath::read(
        "the commit lock",
        opts.state_dir.join("commit.lock"),
        None,
    ));
    out
}

impl RunSummary {
    /// The summary scripts see, derived from the lineage record so the two cannot disagree.
    fn from_record(
        r: &RunRecord,
        lineage_db: &Path,
        record_hash: Option<String>,
        elapsed: std::time::Duration,
    ) -> RunSummary {
        RunSummary {
            run_id: r.run_id.clone(),
            status: r.status.as_str().to_string(),
            pipeline: r.pipeline_name.clone(),
            rows_read: r.rows_read,
            rows_written: r.rows_written,
            dropped: r.dropped.clone(),
            quarantined: r.quarantined,
            quarantine_report: r.quarantine_report.clone(),
            outputs: r
                .outputs
                .iter()
                .map(|o| OutputSummary {
                    path: o.path.clone(),
                    split: o.split.clone(),
                    rows: o.rows,
                    sha256: o.sha256.clone(),
                })
                .collect(),
            key_id: r.key_id.clone(),
            lineage_db: lineage_db.display().to_string(),
            record_hash,
            started_at: r.started_at.clone(),
            finished_at: r.finished_at.clone(),
            duration_ms: elapsed.as_millis() as u64,
            error: r.error.clone(),
            text_columns: r.text_columns.clone(),
            leak_gate: r.leak_gate.clone(),
            releases: r.releases.clone(),
            risk: r.risk.clone(),
            synthetics: r.synthetics.clone(),
        }
    }
}

/// The plan's row stages for engines outside this binary (`privprep plan --format json`), with
/// the run key's id and, under the subject index key, the revoked subjects and the store's
/// erased ones. Keys are resolved (and created on first use) as a run resolves them, so the
/// plan and the run that follows agree; no key is in the result.
pub fn row_plan(
    plan: &Plan,
    opts: &RunOptions,
) -> Result<privprep_kernels::rows::RowPlan, RunError> {
    let quiet = indicatif::ProgressBar::hidden();
    let key = load_key(plan, opts, &quiet)?;
    let (index_key, source) = keys::resolve_index_key_source(&opts.state_dir)?;
    if let keys::KeySource::Created(p) = &source {
        eprintln!("privprep: created the subject index key at {} (mode 0600). Keep it with the lineage store: `privprep subject find` reads the index with it.", p.display());
    }
    // A store that does not exist yet has erased nobody; none is created for a plan.
    let erased = if opts.lineage_db.exists() {
        Store::open(&opts.lineage_db)
            .and_then(|s| s.erased_keys())
            .map_err(|e| RunError::lineage(opts, e))?
    } else {
        HashSet::new()
    };
    Ok(plan.row_plan(
        key.map(|k| k.id()),
        &SubjectHasher::new(&index_key),
        &erased,
    ))
}

/// One run, in the order of the data flow: key, read, calibrate, stream, account, finish,
/// gate, stage, release. Anything that fails returns early; what was written so far is owned
/// by values whose drop removes it (writers, the staged commit, the scratch folder).
fn execute(
    plan: &Plan,
    opts: &RunOptions,
    run_id: &str,
    record: &mut RunRecord,
    erased: &Arc<HashSet<u64>>,
) -> Result<StagedCommit, RunError> {
    let progress = progress_bar(opts.progress);
    let key = load_key(plan, opts, &progress)?;
    record.key_id = key.as_ref().map(|k| k.id());

    // Read: count every input's records, find those that cannot be split into fields; hash
    // every input beside the run (the hashes are needed only once the outputs are written).
    progress.set_message("checking inputs");
    let hashing = ingest::hash_inputs(&plan.source.files);
    let (mut inputs, identifiers) = prescan(plan)?;
    record.rows_read = inputs.iter().map(|i| i.scan.records).sum();

    // DP releases are calibrated before any row is read (their privacy cost is known, and a
    // release OpenDP refuses fails the run before it starts); then every stage streams over
    // the rows on the engine, and kept rows go to the writers.
    let (index_key, source) = keys::resolve_index_key_source(&opts.state_dir)?;
    if let keys::KeySource::Created(p) = &source {
        progress.suspend(|| eprintln!("privprep: created the subject index key at {} (mode 0600). Keep it with the lineage store: `privprep subject find` reads the index with it.", p.display()));
    }
    let encryption = encryption(plan, opts, &progress)?;
    record.encryption = encryption.as_ref().map(|e| e.record.clone());
    let subjects = SubjectHasher::new(&index_key);
    let erased = Erased {
        hasher: subjects.clone(),
        keys: erased.clone(),
    };
    let streamed = calibrate_and_stream(
        plan,
        opts,
        run_id,
        key.as_ref(),
        (&subjects, &erased, encryption.as_ref()),
        (&inputs, identifiers),
        &progress,
    );
    progress.finish_and_clear();
    // The inputs are in the record whether or not the stream succeeded.
    hashing.attach(&mut inputs)?;
    record.inputs = stages::ingest::input_records(plan, &inputs);
    let (prepared, streamed) = streamed?;

    record.risk = streamed.risk.clone();
    // Account: read = written + dropped + quarantined, or nothing is committed.
    let counts = accounting::account(plan, &inputs, &streamed)?;
    counts.record(record);
    if let Some(report) = counts.report.as_ref().filter(|_| counts.too_many_bad(plan)) {
        // Then the report is what the user needs to fix the data: it is written alone.
        emit::write_atomic(&plan.output.quarantine_path, run_id, report.as_bytes())?;
        record.quarantine_report = Some(plan.output.quarantine_path.display().to_string());
        return Err(counts.too_many_bad_error(plan));
    }

    // Finish every file before any is renamed, so either all outputs change or none.
    let mut subject_sets = streamed.subject_keys;
    let finished = finish_files(
        plan,
        streamed.files,
        footer_json(plan, &record.run_id, record),
    )?;
    let stats: Vec<&TextStats> = streamed.text_stats.iter().map(|s| s.as_ref()).collect();
    record.text_columns = stages::text::text_records(plan, &stats);

    // Leak gate: the engine counted detector hits as it wrote, and identifier values when the
    // pre-scan gathered them; else those of every input are searched for in what was written.
    // Either way, before anything becomes visible.
    progress.set_message("leak gate");
    let tmp_files: Vec<&Path> = finished.iter().map(|f| f.writer.tmp_path()).collect();
    leak_gate(
        plan,
        streamed.gate,
        (
            streamed.identifiers.as_ref(),
            encryption.as_ref().map(|e| e.keys.decryption()),
        ),
        &tmp_files,
        record,
    )?;

    // Stage: from here on, any early return drops the staged commit and every temporary file.
    let mut staged = StagedCommit::new();
    for f in finished {
        record.outputs.push(OutputRecord {
            path: f.writer.path().display().to_string(),
            split: f.split,
            rows: f.writer.rows(),
            sha256: f.sha256.clone(),
            schema: streamed.schema.clone(),
            expires_at: expires_at(plan, record),
        });
        staged.add_parquet(f.writer, f.sha256);
    }

    // DP releases: spend first (cap check and spend in one transaction), then release.
    let rows = streamed.release_rows;
    if !prepared.is_empty() {
        for (rec, w) in releases::run(plan, opts, run_id, &prepared, rows.clone())? {
            let sha = rec.sha256.clone();
            record.releases.push(rec);
            staged.add_parquet(w, sha);
        }
    }
    // DP synthetic tables: spend (under the cap), then measure, fit and sample.
    if !plan.synthetics.is_empty() {
        record.synthetics = synthetic::run(plan, opts, run_id, &rows, &mut staged)?;
    }
    if let Some(report) = &counts.report {
        staged.add_bytes(&plan.output.quarantine_path, run_id, report.as_bytes())?;
        record.quarantine_report = Some(plan.output.quarantine_path.display().to_string());
    }
    stage_subject_index(opts, run_id, &mut subject_sets, record, &mut staged)?;
    record.subject_column = Some(subject_column(plan));
    record.rows_written = counts.written;
    Ok(staged)
}

/// When the run's data files expire (`[output] retain_days` after the run started).
fn expires_at(plan: &Plan, record: &RunRecord) -> Option<String> {
    let days = plan.output.retain_days?;
    let started = chrono::DateTime::parse_from_rfc3339(&record.started_at).ok()?;
    let at = started.with_timezone(&chrono::Utc) + chrono::Duration::days(i64::from(days));
    Some(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// How the subject column appears in the data files.
fn subject_column(plan: &Plan) -> SubjectColumnRecord {
    use crate::identity::{Action, TokenEncoding};
    let input = plan.policy.subject_column.clone();
    let action = plan
        .columns
        .iter()
        .find(|c| c.name == input)
        .map(|c| c.action.clone());
    let (output, action, bits, encoding) = match action {
        Some(Action::Keep) => (Some(input.clone()), "keep", None, None),
        Some(Action::Tokenize { bits, encoding }) => (
            Some(input.clone()),
            "tokenize",
            Some(bits),
            Some(match encoding {
                TokenEncoding::Hex => "hex",
                TokenEncoding::Base64Url => "base64url",
            }),
        ),
        Some(Action::Hash) => (Some(input.clone()), "hash", None, None),
        Some(Action::Surrogate(_)) => (Some(input.clone()), "surrogate", None, None),
        Some(Action::Drop) | None => (None, "drop", None, None),
        Some(_) => (Some(input.clone()), "other", None, None),
    };
    let surrogate_kind = plan.columns.iter().find_map(|c| match &c.action {
        Action::Surrogate(k) if c.name == input => Some(k.as_str().to_string()),
        _ => None,
    });
    SubjectColumnRecord {
        input,
        output,
        action: action.into(),
        token_bits: bits,
        token_encoding: encoding.map(str::to_owned),
        surrogate_kind,
    }
}

/// Stages the subject index of the run's outputs beside the store, and lists each set in the
/// record: one set per data file (in `record.outputs`' order, as the engine gathered them),
/// and one for the releases, which every kept row fed.
fn stage_subject_index(
    opts: &RunOptions,
    run_id: &str,
    sets: &mut [Vec<u64>],
    record: &mut RunRecord,
    staged: &mut StagedCommit,
) -> Result<(), RunError> {
    let dir = lineage::index::index_dir(&opts.lineage_db);
    std::fs::create_dir_all(&dir).map_err(|source| emit::EmitError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    // The `n`-th set of the run, as the record lists it for `output`.
    let mut stage = |n: usize, keys: &mut Vec<u64>, output: &str, kind: &str| {
        let bytes = subject::encode(keys);
        let file = lineage::index::set_file_name(run_id, n);
        let sha256 = staged.add_bytes(&dir.join(&file), run_id, &bytes)?;
        Ok::<_, RunError>(SubjectSetRecord {
            output: output.to_string(),
            kind: kind.to_string(),
            subjects: keys.len() as u64,
            file,
            sha256,
        })
    };
    let releases = !record.releases.is_empty() || !record.synthetics.is_empty();
    let mut index = Vec::new();
    let mut all = Vec::new();
    for (n, output) in record.outputs.iter().enumerate() {
        let mut keys = sets.get_mut(n).map(std::mem::take).unwrap_or_default();
        index.push(stage(n, &mut keys, &output.path, "data")?);
        // Sorted and distinct now.
        all.extend_from_slice(&keys);
    }
    if releases {
        // Staging the releases' set sorts and deduplicates `all`.
        let set = stage(record.outputs.len(), &mut all, "", "release")?;
        index.extend(record.releases.iter().map(|r| SubjectSetRecord {
            output: r.path.clone(),
            ..set.clone()
        }));
        index.extend(record.synthetics.iter().map(|t| SubjectSetRecord {
            output: t.path.clone(),
            kind: "synthetic".into(),
            ..set.clone()
        }));
    } else {
        all.sort_unstable();
    }
    record.subject_index = index;
    // The commit refuses them if one was erased while the run went on.
    staged.guard_subjects(all);
    Ok(())
}

/// Calibrates every DP release (group sizes are bounded by each release's public max_rows,
/// never by counting the data), then streams the plan on the engine.
fn calibrate_and_stream(
    plan: &Plan,
    opts: &RunOptions,
    run_id: &str,
    key: Option<&Arc<Key>>,
    (subjects, erased, encryption): (&SubjectHasher, &Erased, Option<&Encryption>),
    (inputs, identifiers): (&[ingest::InputFile], Option<IdentifierSet>),
    progress: &indicatif::ProgressBar,
) -> Result<(Vec<release::Prepared>, Streamed), RunError> {
    let prepared = plan
        .releases
        .iter()
        .map(release::prepare)
        .collect::<Result<Vec<_>, _>>()?;
    let scratch = scratch_dir(&opts.state_dir, run_id).map_err(|source| emit::EmitError::Io {
        path: opts.state_dir.display().to_string(),
        source,
    })?;
    progress.set_message("processing");
    let streamed = Polars.stream(&Job {
        plan,
        run_id,
        key,
        inputs,
        scratch: scratch.path(),
        progress: progress.clone(),
        subjects: Some(subjects),
        erased: Some(erased),
        encryption,
        identifiers: identifiers.map(Arc::new),
    })?;
    Ok((prepared, streamed))
}

/// The master keys and record of `[output.encryption]`, when the plan encrypts; says on stderr
/// where a key was created.
fn encryption(
    plan: &Plan,
    opts: &RunOptions,
    progress: &indicatif::ProgressBar,
) -> Result<Option<Encryption>, RunError> {
    let Some(e) = &plan.output.encryption else {
        return Ok(None);
    };
    let mut keys = MasterKeys::new();
    for id in [&e.footer_key, &e.column_key] {
        if keys.get(id).is_some() {
            continue;
        }
        let (key, source) = keys::resolve_master_key(id, &opts.state_dir, true)?;
        if let keys::KeySource::Created(p) = &source {
            progress.suspend(|| eprintln!("privprep: created master key `{id}` at {} (mode 0600). Keep it apart from the outputs: without it the encrypted columns cannot be read.", p.display()));
        }
        keys.insert(id, key);
    }
    let key_ref = |id: &str| keys.key_ref(id).expect("inserted above");
    let record = EncryptionRecord {
        algorithm: "AES_GCM_V1".into(),
        footer_key: key_ref(&e.footer_key),
        column_key: key_ref(&e.column_key),
        columns: e.columns.clone(),
    };
    Ok(Some(Encryption { record, keys }))
}

/// The run key, when the plan needs one; warns (without values) about a created or loosely
/// protected key file.
fn load_key(
    plan: &Plan,
    opts: &RunOptions,
    progress: &indicatif::ProgressBar,
) -> Result<Option<Arc<Key>>, RunError> {
    if !plan.needs_key() {
        return Ok(None);
    }
    let (key, source) = keys::resolve_key(opts.key_file.as_deref(), &opts.state_dir)?;
    if let keys::KeySource::Created(p) = &source {
        progress.suspend(|| eprintln!("privprep: no key configured; created a new random key at {} (mode 0600). Keep it: the same key gives the same tokens.", p.display()));
    }
    tracing::info!(key_source = %source.describe(), "key loaded");
    if let keys::KeySource::Flag(p)
    | keys::KeySource::EnvFile(p)
    | keys::KeySource::DefaultFile(p) = &source
    {
        if keys::loose_permissions(p) {
            progress.suspend(|| {
                eprintln!(
                    "privprep: warning: key file {} is readable by other users; run: chmod 600 {}",
                    p.display(),
                    p.display()
                )
            });
        }
    }
    Ok(Some(Arc::new(key)))
}

/// Every input, counted and checked for records that cannot be split into fields. CSV inputs
/// also give the leak gate's identifier set: the pre-scan keys their identifier fields as it
/// splits them, so the set is whole before the first row is written (other formats leave it
/// to the engine: `None`).
fn prescan(plan: &Plan) -> Result<(Vec<ingest::InputFile>, Option<IdentifierSet>), RunError> {
    // The identifier columns' places among the CSV fields (the engine reads fields by place).
    let fields: Option<Vec<usize>> = match plan.source.format {
        SourceFormat::Csv => plan
            .identifier_columns()
            .iter()
            .map(|c| plan.source.csv_names.iter().position(|n| n == c))
            .collect(),
        _ => None,
    };
    let fields = fields.filter(|f| !f.is_empty());
    let (hasher, keys) = (ValueHasher::new(), DistinctKeys::new());
    let mut inputs = Vec::new();
    for f in &plan.source.files {
        let ids = fields.as_deref().map(|fields| IdGather {
            fields,
            hasher: &hasher,
            keys: &keys,
        });
        let input = ingest::prescan(f, plan.source.format, plan.source.separator, ids)?;
        tracing::info!(file = %f.display(), records = input.scan.records, unparseable = input.scan.bad.len(), "input scanned");
        inputs.push(input);
    }
    let identifiers = fields.map(|_| {
        let set = IdentifierSet::from_distinct(hasher, keys);
        tracing::info!(distinct = set.len(), "leak gate: identifier set gathered");
        set
    });
    Ok((inputs, identifiers))
}

/// A finished output file, not yet renamed.
struct Finished {
    split: String,
    sha256: String,
    writer: AtomicParquet,
}

/// Finishes every output file, with the lineage JSON in its footer; on the first failure every
/// file is dropped (and removed).
fn finish_files(
    plan: &Plan,
    files: Vec<(u8, AtomicParquet)>,
    footer: serde_json::Value,
) -> Result<Vec<Finished>, RunError> {
    let names: BTreeMap<u8, &str> = plan
        .output
        .files()
        .iter()
        .map(|(n, c, _)| (*c, *n))
        .collect();
    let mut finished = Vec::new();
    for (code, mut writer) in files {
        let split = names.get(&code).copied().unwrap_or("all").to_string();
        let mut footer = footer.clone();
        footer["split"] = split.clone().into();
        writer.set_lineage(footer.to_string());
        let sha256 = writer.finish()?;
        finished.push(Finished {
            split,
            sha256,
            writer,
        });
    }
    Ok(finished)
}

/// Runs the leak gate over the finished files and records its verdicts; a leak fails the run
/// (or warns, when the pipeline says so).
fn leak_gate(
    plan: &Plan,
    mut gate: GateTally,
    (identifiers, decryption): (
        Option<&IdentifierSet>,
        Option<Arc<FileDecryptionProperties>>,
    ),
    files: &[&Path],
    record: &mut RunRecord,
) -> Result<(), RunError> {
    if let Some(identifiers) = identifiers {
        let started = std::time::Instant::now();
        gate.add_identifier_hits(identifiers, files, decryption)
            .map_err(|e| RunError::Engine(sanitize(&e.to_string(), plan)))?;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            identifier_values = identifiers.len(),
            "leak gate searched the written files"
        );
    }
    let verdicts = gate.verdicts();
    record.leak_gate = verdicts
        .into_iter()
        .map(|v| LeakGateRecord {
            column: v.column,
            result: v.result,
            values_scanned: v.values_scanned,
            hits: v.hits,
        })
        .collect();
    judge_leaks(plan, record)
}

/// The run's outcome from the gate's verdicts in `record`: under `leak_gate = "fail"` a leak
/// fails the run; under `"warn"` it is reported and the run goes on.
fn judge_leaks(plan: &Plan, record: &RunRecord) -> Result<(), RunError> {
    let leaks: Vec<String> = record
        .leak_gate
        .iter()
        .filter(|g| g.result == GateResult::Leak)
        .map(|g| {
            let hits: Vec<String> = g.hits.iter().map(|(k, n)| format!("{n} {k}")).collect();
            format!("`{}` ({})", g.column, hits.join(", "))
        })
        .collect();
    if !leaks.is_empty() {
        match plan.pii.gate {
            LeakGateMode::Fail => {
                return Err(RunError::Leak {
                    columns: leaks.join("; "),
                })
            }
            LeakGateMode::Warn => {
                tracing::warn!("leak gate found personal data in {}", leaks.join("; "));
                eprintln!("privprep: warning: leak gate found personal data in {}; committed anyway because leak_gate = \"warn\"", leaks.join("; "));
            }
        }
    }
    Ok(())
}

/// Footer metadata: the file says what it is (a sanitized privprep output, each column's class
/// and what was done to it, its expiry, how it is encrypted) and is enough to find the run in
/// lineage and check the inputs. `finish_files` adds the file's split.
fn footer_json(plan: &Plan, run_id: &str, record: &RunRecord) -> serde_json::Value {
    let classes: BTreeMap<&str, &str> = plan
        .output_columns()
        .map(|c| (c.name.as_str(), c.class.as_str()))
        .collect();
    serde_json::json!({
        "privprep_output": "sanitized",
        "run_id": run_id,
        "privprep_version": env!("CARGO_PKG_VERSION"),
        "pipeline": plan.name,
        "pipeline_sha256": record.pipeline_sha256,
        "dataset_id": plan.source.manifest.dataset_id(),
        "inputs": record.inputs.iter().map(|i| serde_json::json!({"path": i.path, "sha256": i.sha256, "rows": i.rows_read})).collect::<Vec<_>>(),
        "key_id": record.key_id,
        "policy": record.policy,
        "column_classes": classes,
        "columns": record.column_lineage,
        "expires_at": expires_at(plan, record),
        "encryption": record.encryption,
    })
}

fn progress_bar(enabled: bool) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} {msg}: {human_pos} rows ({per_sec}) {elapsed}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Path of a run's scratch folder (cleaned copies of inputs); listed in the journal so a
/// killed run's copy is removed by recovery.
fn scratch_path(state_dir: &Path, run_id: &str) -> PathBuf {
    state_dir.join("tmp").join(run_id)
}

/// A scratch folder inside the state dir, removed on drop.
fn scratch_dir(state_dir: &Path, run_id: &str) -> std::io::Result<ScratchDir> {
    let p = scratch_path(state_dir, run_id);
    std::fs::create_dir_all(&p)?;
    Ok(ScratchDir(p))
}

struct ScratchDir(PathBuf);

impl ScratchDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
