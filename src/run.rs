//! Executes a plan: one streaming pass from the inputs to committed Parquet and a lineage record.
//!
//! The engine computes, per row, a status (kept, quarantined, or dropped for one reason) and the
//! transformed output columns; batches arrive here in order, are counted by status, and the kept
//! rows are written to temporary files. Only when every row is accounted for, the leak gate has
//! passed and the budget is spent does the staged commit ([`commit`]) make every file visible
//! together with the run's record. A run that dies leaves a journal entry ([`journal`]) that the
//! next command turns into a `failed` record, or, if the commit had begun, finishes.
//! Depends on: every stage, `plan`, `emit`, `lineage`, `dp`.

use crate::dp::release;
use crate::emit::{self, AtomicParquet, ParquetSettings};
use crate::engine::polars::adapter::map_str;
use crate::identity::keys::{self, Key};
use crate::identity::stage::{split_expr, SPLIT};
use crate::identity::Action;
use crate::identity::{TokenEncoding, Tokenizer};
use crate::ingest::ColumnClass;
use crate::ingest::{self, BADCOL, FILE, ROW};
use crate::lineage::record::{
    ColumnLineage, CustomDetectorRecord, FileRef, GateMode, GateResult, InputRecord,
    LeakGateRecord, MeanHalfWidths, OutputRecord, PiiSummary, PolicySummary, ReleaseRecord,
    RevocationListRecord, RunRecord, RunStatus, SchemaField, StageRows, TextColumnRecord,
};
use crate::lineage::store::Store;
use crate::pii::gate::{DistinctKeys, Gate, IdentifierSet, ValueHasher};
use crate::pii::stage::TextRuntime;
use crate::pii::{self, TextColumnPlan};
use crate::plan::Plan;
use crate::policy::{DropReason, KEPT, QUARANTINED, STATUS};
use crate::spec::{LeakGateMode, TokenEncodingSpec};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
    Action(#[from] crate::identity::stage::ActionError),
    #[error("free-text detectors: {0}")]
    Scanner(#[from] privprep_kernels::pii::detect::ScannerError),
    #[error("free-text tokens: {0}")]
    Tokenizer(#[from] privprep_kernels::token::TokenizerError),
    /// A lock shared with the engine's threads was poisoned by a panic there.
    #[error("internal error: the {0} lock was poisoned by a failed engine thread\n  = hint: this is a bug in privprep; nothing was committed")]
    Poisoned(&'static str),
    #[error("{0}")]
    PathCollision(String),
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

mod commit;
mod journal;

use commit::StagedCommit;
pub use commit::{recover_interrupted, CommitError, FAULT_ENV};
use journal::{Journal, Pending};

/// Per-status row counts and quarantined rows, filled batch by batch.
#[derive(Default)]
struct Tally {
    by_status: [u64; 2 + DropReason::ALL.len()],
    /// (file index, record index, column index) of rows whose values did not parse.
    bad_values: Vec<(u32, u64, i32)>,
    seen: u64,
}

struct Sinks {
    writers: Vec<(u8, AtomicParquet)>,
    schema: arrow::datatypes::SchemaRef,
    output_names: Vec<PlSmallStr>,
    split: bool,
}

/// Runs the plan and records it. On failure the error is recorded in lineage too.
pub fn run(plan: &Plan, opts: &RunOptions) -> Result<RunSummary, Box<RunFailure>> {
    let started = std::time::Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339();
    let run_id = new_run_id();
    let pipeline_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        plan.pipeline.text.as_bytes(),
    ));
    let mut record = RunRecord::begin(
        &run_id,
        &started_at,
        &plan.name,
        &plan.pipeline.path.display().to_string(),
        &pipeline_sha256,
        &plan.pipeline.text,
    );
    record.policy = policy_summary(plan);
    record.pii = Some(pii_summary(plan));
    record.column_lineage = column_lineage(plan);
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
            let error = RunError::Lineage {
                path: opts.lineage_db.display().to_string(),
                message: e.to_string(),
            };
            return Err(fail(&mut record, error, None));
        }
    };
    recover_interrupted(&opts.state_dir, &mut store);

    // No path the run writes may be a file it reads or owns; checked again here, just before
    // anything is written, because files and symlinks may have changed since `validate`.
    let collisions = path_collisions(plan, opts);
    if !collisions.is_empty() {
        let error = RunError::PathCollision(collisions.join("\n"));
        return Err(fail(&mut record, error, Some(&mut store)));
    }

    // Journal first, so a killed run is still accounted for.
    let temp_files: Vec<PathBuf> = plan
        .output
        .files()
        .iter()
        .map(|(_, _, p)| emit::tmp_path_for(p, &run_id))
        .chain([
            emit::tmp_path_for(&plan.output.quarantine_path, &run_id),
            scratch_path(&opts.state_dir, &run_id),
        ])
        .chain(
            plan.releases
                .iter()
                .map(|r| emit::tmp_path_for(&r.path, &run_id)),
        )
        .collect();
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

    let result = execute(plan, opts, &run_id, &mut record);
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
        }
    }
}

fn policy_summary(plan: &Plan) -> PolicySummary {
    PolicySummary {
        purpose: plan.policy.purpose.clone(),
        allowed_status: plan.policy.allowed_status.clone(),
        allowed_provenance: plan.policy.allowed_provenance.clone(),
        revocation_lists: plan
            .policy
            .revocations
            .iter()
            .map(|l| RevocationListRecord {
                path: l.path.display().to_string(),
                sha256: l.sha256.clone(),
                entries: l.ids.len() as u64,
            })
            .collect(),
        retention_days: plan.policy.retention_days,
        as_of: plan.policy.as_of.to_string(),
    }
}

fn column_lineage(plan: &Plan) -> Vec<ColumnLineage> {
    plan.output_columns()
        .map(|c| ColumnLineage {
            output_column: c.name.clone(),
            input_columns: vec![c.name.clone()],
            transformation: plan.describe_column(c),
            masked: c.action.masks(),
        })
        .collect()
}

/// Rewrites an engine message so it cannot carry a cell value: quoted parts that are not a
/// column name or path of this plan are replaced.
fn sanitize(message: &str, plan: &Plan) -> String {
    let known: Vec<String> = plan
        .columns
        .iter()
        .map(|c| c.name.clone())
        .chain(plan.files.iter().map(|f| f.display().to_string()))
        .collect();
    crate::spec::diag::redact_quoted(message, |inner| {
        known.iter().any(|k| k == inner)
            || INTERNAL_COLUMNS.contains(&inner)
            || is_dtype_name(inner)
    })
}

/// Column names the run adds; they may appear in engine messages.
const INTERNAL_COLUMNS: [&str; 5] = [STATUS, ROW, FILE, BADCOL, SPLIT];

/// Engine type names (`u64`, `str`, `datetime[μs]`…) are not values and help users.
fn is_dtype_name(s: &str) -> bool {
    const NAMES: [&str; 22] = [
        "i8", "i16", "i32", "i64", "i128", "u8", "u16", "u32", "u64", "f32", "f64", "str", "bool",
        "date", "time", "null", "binary", "datetime", "duration", "list", "struct", "decimal",
    ];
    let head = s.split(['[', '(']).next().unwrap_or("");
    NAMES.contains(&head) && s.len() <= 40
}

fn execute(
    plan: &Plan,
    opts: &RunOptions,
    run_id: &str,
    record: &mut RunRecord,
) -> Result<StagedCommit, RunError> {
    let progress = progress_bar(opts.progress);
    // Key.
    let key: Option<Arc<Key>> = if plan.needs_key() {
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
                progress.suspend(|| eprintln!("privprep: warning: key file {} is readable by other users; run: chmod 600 {}", p.display(), p.display()));
            }
        }
        Some(Arc::new(key))
    } else {
        None
    };
    let key_id = key.as_ref().map(|k| k.id());
    record.key_id = key_id.clone();

    // Pre-scan: hashes, record counts, records that cannot be split into fields.
    progress.set_message("hashing and checking inputs");
    let mut inputs = Vec::new();
    for f in &plan.files {
        let input = ingest::prescan(f, plan.format, plan.separator)?;
        tracing::info!(file = %f.display(), records = input.scan.records, unparseable = input.scan.bad.len(), "input scanned");
        inputs.push(input);
    }
    record.inputs = inputs
        .iter()
        .map(|i| InputRecord {
            path: i.path.display().to_string(),
            bytes: i.scan.bytes,
            sha256: i.scan.sha256.clone(),
            rows_read: i.scan.records,
            dataset_id: plan.manifest.dataset_id().to_string(),
        })
        .collect();
    let rows_read: u64 = inputs.iter().map(|i| i.scan.records).sum();
    let structural_bad: u64 = inputs.iter().map(|i| i.scan.bad.len() as u64).sum();
    record.rows_read = rows_read;

    // DP releases are calibrated before any row is read: their privacy cost is known, and a
    // release OpenDP refuses fails the run before it starts. Group sizes are bounded by each
    // release's public max_rows, never by counting the data.
    let prepared = plan
        .releases
        .iter()
        .map(release::prepare)
        .collect::<Result<Vec<_>, _>>()?;

    // The lazy plan.
    let scratch = scratch_dir(&opts.state_dir, run_id).map_err(|source| emit::EmitError::Io {
        path: opts.state_dir.display().to_string(),
        source,
    })?;
    let mut scans = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        scans.push(ingest::scan_input(
            input,
            i as u32,
            plan.separator,
            &plan.csv_names,
            scratch.path(),
        )?);
    }
    let lf = if scans.len() == 1 {
        scans.pop().expect("one scan")
    } else {
        concat(scans, UnionArgs::default())
            .map_err(|e| RunError::Engine(sanitize(&e.to_string(), plan)))?
    };
    let conversions: Vec<_> = plan.columns.iter().map(|c| c.conversion.clone()).collect();
    let (typed, badcol) = ingest::typed_columns(&plan.manifest, &conversions);
    let mut select = typed;
    select.extend([col(ROW), col(FILE), badcol]);
    let lf = lf
        .select(select)
        .with_column(plan.policy.status_expr(BADCOL));
    let lf = match (&plan.output.split, &key) {
        (Some((train, validation, test)), Some(k)) => lf.with_column(split_expr(
            col(plan.policy.subject_column.as_str()),
            k,
            [*train, *validation, *test],
        )),
        _ => lf.with_column(lit(0i32).cast(DataType::Int32).alias(SPLIT)),
    };
    // Free text: texts with a `drop_row` hit drop their row before anything is transformed.
    let texts = text_runtimes(plan, key.as_ref())?;
    // Built before any file is written, so a scanner problem cannot strand temporary files.
    let gate_scanner = plan.pii.scanner(None)?;
    let kept_only = |name: &str| {
        when(col(STATUS).eq(lit(KEPT as i32)))
            .then(col(name))
            .otherwise(lit(NULL))
    };
    let context_of =
        |t: &TextColumnPlan| -> Vec<Expr> { t.context.iter().map(|c| col(c.as_str())).collect() };
    let mut lf = lf;
    for (t, rt) in plan.text.iter().zip(&texts) {
        if t.drops_rows() {
            let hit = pii::stage::drop_expr(rt.clone(), kept_only(&t.column), context_of(t));
            lf = lf.with_column(
                when(
                    col(STATUS)
                        .eq(lit(KEPT as i32))
                        .and(hit.fill_null(lit(false))),
                )
                .then(lit(DropReason::PiiInText.code() as i32))
                .otherwise(col(STATUS))
                .alias(STATUS),
            );
        }
    }
    let mut outputs = Vec::new();
    let dp_columns = dp_columns(plan);
    for (alias, source, numeric) in &dp_columns {
        let e = col(source.as_str());
        outputs.push(if *numeric {
            e.cast(DataType::Float64).alias(alias.as_str())
        } else if alias == release::SUBJECT {
            // Keyed in the engine: 8 bytes per row reach the sink instead of the subject text.
            release::subject_key(e.cast(DataType::String).str().strip_chars(lit(NULL)))
                .alias(alias.as_str())
        } else {
            e.cast(DataType::String).alias(alias.as_str())
        });
    }
    for c in plan.output_columns() {
        // Transform only rows that are kept: values of dropped rows are never processed further.
        let input = kept_only(&c.name);
        if c.action == Action::Redact {
            if let Some((t, rt)) = plan
                .text
                .iter()
                .zip(&texts)
                .find(|(t, _)| t.column == c.name)
            {
                outputs.push(pii::stage::redact_expr(rt.clone(), input, context_of(t)));
            }
        } else if let Some(e) = c.action.expr(&c.name, input, c.ty, key.as_ref())? {
            outputs.push(e);
        }
    }
    let output_names: Vec<PlSmallStr> = plan
        .output_columns()
        .map(|c| c.name.as_str().into())
        .collect();
    // Identifier values of every row, kept or dropped, are hashed (in the engine, in
    // parallel) for the leak gate; only the keyed hashes reach the sink.
    let id_columns = identifier_columns(plan);
    let value_hasher = ValueHasher::new();
    for (i, c) in id_columns.iter().enumerate() {
        outputs.push(id_key_expr(&value_hasher, c).alias(id_column_name(i)));
    }
    outputs.extend([col(STATUS), col(ROW), col(FILE), col(BADCOL), col(SPLIT)]);
    let mut lf = lf.select(outputs);

    // Writers.
    let schema = lf
        .collect_schema()
        .map_err(|e| RunError::Engine(sanitize(&e.to_string(), plan)))?;
    let out_schema: polars::prelude::Schema = output_names
        .iter()
        .filter_map(|n| schema.get(n).map(|t| Field::new(n.clone(), t.clone())))
        .collect();
    let arrow_schema = emit::arrow_schema(&out_schema)?;
    let schema_desc: Vec<SchemaField> = arrow_schema
        .fields()
        .iter()
        .map(|f| SchemaField {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
        })
        .collect();
    let settings = ParquetSettings {
        row_group_size: plan.output.row_group_size,
        lineage_json: footer_json(plan, run_id, record),
    };
    let mut writers = Vec::new();
    for (_, code, path) in plan.output.files() {
        writers.push((
            code,
            AtomicParquet::create(&path, run_id, arrow_schema.clone(), &settings)?,
        ));
    }
    let sinks = Arc::new(Mutex::new(Sinks {
        writers,
        schema: arrow_schema,
        output_names,
        split: plan.output.split.is_some(),
    }));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let write_error: Arc<Mutex<Option<emit::EmitError>>> = Arc::new(Mutex::new(None));

    progress.set_message("processing");
    // Keys are appended in the sink (cheap, sequential) and turned into a set once at the end.
    let identifiers: Arc<Mutex<DistinctKeys>> = Arc::new(Mutex::new(DistinctKeys::new()));
    let (sinks_cb, tally_cb, err_cb, bar, ids_cb) = (
        sinks.clone(),
        tally.clone(),
        write_error.clone(),
        progress.clone(),
        identifiers.clone(),
    );
    let n_ids = id_columns.len();
    let dp_rows: Arc<Mutex<Vec<DataFrame>>> = Arc::new(Mutex::new(Vec::new()));
    let dp_cb = (dp_columns.clone(), dp_rows.clone());
    let callback = PlanCallback::Rust(SpecialEq::new(Arc::new(
        move |df: DataFrame| -> PolarsResult<bool> {
            bar.inc(df.height() as u64);
            remember_identifiers(&df, n_ids, &ids_cb)?;
            let status = df.column(STATUS)?.i32()?.clone();
            {
                let mut t = tally_cb
                    .lock()
                    .map_err(|_| polars_err!(ComputeError: "tally lock poisoned"))?;
                t.seen += df.height() as u64;
                for s in status.into_no_null_iter() {
                    // An unknown status is not counted, so the accounting check fails the run.
                    if let Some(n) = usize::try_from(s).ok().and_then(|s| t.by_status.get_mut(s)) {
                        *n += 1;
                    }
                }
                let bad_mask = status.equal(QUARANTINED as i32);
                if bad_mask.any() {
                    let bad = df.filter(&bad_mask)?;
                    let files = bad.column(FILE)?.u32()?.clone();
                    let rows = bad.column(ROW)?.u64()?.clone();
                    let cols = bad.column(BADCOL)?.i32()?.clone();
                    for ((f, r), c) in files
                        .into_no_null_iter()
                        .zip(rows.into_no_null_iter())
                        .zip(cols.iter())
                    {
                        t.bad_values.push((f, r, c.unwrap_or(-1)));
                    }
                }
            }
            let kept_mask = status.equal(KEPT as i32);
            if !kept_mask.any() {
                return Ok(false);
            }
            let kept = df.filter(&kept_mask)?;
            if !dp_cb.0.is_empty() {
                let part =
                    kept.select(dp_cb.0.iter().map(|(a, _, _)| PlSmallStr::from(a.as_str())))?;
                dp_cb
                    .1
                    .lock()
                    .map_err(|_| polars_err!(ComputeError: "release rows lock poisoned"))?
                    .push(part);
            }
            let mut s = sinks_cb
                .lock()
                .map_err(|_| polars_err!(ComputeError: "writer lock poisoned"))?;
            let sinks = &mut *s;
            let write = |frame: &DataFrame,
                         w: &mut AtomicParquet,
                         schema: &arrow::datatypes::SchemaRef,
                         names: &[PlSmallStr]|
             -> Result<(), emit::EmitError> {
                let out =
                    frame
                        .select(names.iter().cloned())
                        .map_err(|e| emit::EmitError::Convert {
                            column: "*".into(),
                            message: e.to_string(),
                        })?;
                let batch = emit::to_record_batch(&out, schema)?;
                w.write(&batch)
            };
            let result = if sinks.split {
                let split = kept.column(SPLIT)?.i32()?.clone();
                let mut r = Ok(());
                for (code, w) in sinks.writers.iter_mut() {
                    let part = kept.filter(&split.equal(*code as i32))?;
                    if part.height() > 0 {
                        r = write(&part, w, &sinks.schema, &sinks.output_names);
                        if r.is_err() {
                            break;
                        }
                    }
                }
                r
            } else {
                let (_, w) = &mut sinks.writers[0];
                write(&kept, w, &sinks.schema, &sinks.output_names)
            };
            if let Err(e) = result {
                let msg = e.to_string();
                if let Ok(mut slot) = err_cb.lock() {
                    *slot = Some(e);
                }
                return Err(polars_err!(ComputeError: "{}", msg));
            }
            Ok(false)
        },
    )));
    let engine_result = lf
        .sink_batches(callback, true, None)
        .and_then(|lf| lf.collect_with_engine(Engine::Streaming));
    progress.finish_and_clear();
    let abort = |sinks: Arc<Mutex<Sinks>>| {
        if let Ok(mut s) = sinks.lock() {
            for (_, w) in s.writers.drain(..) {
                w.abort();
            }
        }
    };
    if let Err(e) = engine_result {
        abort(sinks);
        if let Some(e) = write_error.lock().ok().and_then(|mut s| s.take()) {
            return Err(RunError::Emit(e));
        }
        return Err(RunError::Engine(sanitize(&e.to_string(), plan)));
    }

    // Accounting.
    let tally = std::mem::take(&mut *tally.lock().map_err(|_| RunError::Poisoned("tally"))?);
    let written = tally.by_status[KEPT as usize];
    let quarantined = structural_bad + tally.by_status[QUARANTINED as usize];
    let mut dropped = BTreeMap::new();
    for r in DropReason::ALL {
        let n = tally.by_status[r.code() as usize];
        if n > 0 {
            dropped.insert(r.as_str().to_string(), n);
        }
    }
    let dropped_total: u64 = dropped.values().sum();
    record.dropped = dropped;
    record.quarantined = quarantined;
    let stage = |stage: &str, rows: u64| StageRows {
        stage: stage.into(),
        rows,
    };
    record.rows_per_stage = vec![
        stage("read", rows_read),
        stage("parsed", rows_read - quarantined.min(rows_read)),
        stage("policy", written),
        stage("written", written),
    ];

    // Quarantine report: where and why, never what. It is committed with the outputs, except
    // when too many rows are bad: then it is what the user needs to fix the data.
    let report = (quarantined > 0).then(|| quarantine_report(plan, &inputs, &tally.bad_values));
    if let Some(report) = &report {
        if quarantined > plan.output.max_bad_rows {
            abort(sinks);
            emit::write_atomic(&plan.output.quarantine_path, run_id, report.as_bytes())?;
            record.quarantine_report = Some(plan.output.quarantine_path.display().to_string());
            let first = report
                .lines()
                .next()
                .and_then(|l| serde_json::from_str::<QuarantineEntry>(l).ok())
                .map(|q| q.to_string())
                .unwrap_or_default();
            return Err(RunError::TooManyBadRows {
                count: quarantined,
                max: plan.output.max_bad_rows,
                first,
                report: plan.output.quarantine_path.display().to_string(),
            });
        }
    }
    let rows_in_files: u64 = sinks
        .lock()
        .map(|s| s.writers.iter().map(|(_, w)| w.rows()).sum())
        .unwrap_or(u64::MAX);
    if rows_read != written + dropped_total + quarantined
        || tally.seen + structural_bad != rows_read
        || rows_in_files != written
    {
        abort(sinks);
        return Err(RunError::Accounting {
            read: rows_read,
            written,
            dropped: dropped_total,
            quarantined,
        });
    }

    // Finish every file before any is renamed, so either all outputs change or none.
    let mut finished = Vec::new();
    {
        let mut s = sinks.lock().map_err(|_| RunError::Poisoned("writer"))?;
        let writers: Vec<(u8, AtomicParquet)> = s.writers.drain(..).collect();
        let names: BTreeMap<u8, &str> = plan
            .output
            .files()
            .iter()
            .map(|(n, c, _)| (*c, *n))
            .collect();
        let mut failed = None;
        for (code, mut w) in writers {
            if failed.is_some() {
                w.abort();
                continue;
            }
            match w.finish() {
                Ok(sha) => finished.push((
                    names.get(&code).copied().unwrap_or("all").to_string(),
                    sha,
                    w,
                )),
                Err(e) => {
                    failed = Some(e);
                    w.abort();
                }
            }
        }
        if let Some(e) = failed {
            for (_, _, w) in finished {
                w.abort();
            }
            return Err(e.into());
        }
    }
    record.text_columns = text_records(plan, &texts);

    // Leak gate: read back what was written, before anything becomes visible.
    // Writers dropped on an early return remove their temporary files.
    let keys = identifiers
        .lock()
        .map(|mut keys| std::mem::take(&mut *keys))
        .map_err(|_| RunError::Poisoned("identifier key list"))?;
    let set_started = std::time::Instant::now();
    let identifiers = IdentifierSet::from_distinct(value_hasher, keys);
    tracing::info!(
        elapsed_ms = set_started.elapsed().as_millis() as u64,
        distinct = identifiers.len(),
        "leak gate: identifier set built"
    );
    let gate = Gate {
        scanner: gate_scanner,
        ids: identifiers,
        slot_names: plan.pii.slot_names(),
    };
    progress.set_message("leak gate");
    let tmp_files: Vec<&Path> = finished.iter().map(|(_, _, w)| w.tmp_path()).collect();
    let gate_started = std::time::Instant::now();
    let checked = gate.check_files(&tmp_files, &gate_exempt(plan));
    tracing::info!(
        elapsed_ms = gate_started.elapsed().as_millis() as u64,
        identifier_values = gate.ids.len(),
        "leak gate checked the outputs"
    );
    let verdicts = match checked {
        Ok(v) => v,
        Err(e) => {
            for (_, _, w) in finished {
                w.abort();
            }
            return Err(RunError::Engine(sanitize(&e.to_string(), plan)));
        }
    };
    drop(gate);
    record.leak_gate = verdicts
        .into_iter()
        .map(|v| LeakGateRecord {
            column: v.column,
            result: v.result,
            values_scanned: v.values_scanned,
            hits: v.hits,
        })
        .collect();
    let leaks: Vec<String> = record
        .leak_gate
        .iter()
        .filter(|g| g.result == GateResult::Leak)
        .map(|g| {
            format!(
                "`{}` ({})",
                g.column,
                g.hits
                    .iter()
                    .map(|(k, n)| format!("{n} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect();
    if !leaks.is_empty() {
        match plan.pii.gate {
            LeakGateMode::Fail => {
                for (_, _, w) in finished {
                    w.abort();
                }
                return Err(RunError::Leak {
                    columns: leaks.join("; "),
                });
            }
            LeakGateMode::Warn => {
                tracing::warn!("leak gate found personal data in {}", leaks.join("; "));
                eprintln!("privprep: warning: leak gate found personal data in {}; committed anyway because leak_gate = \"warn\"", leaks.join("; "));
            }
        }
    }

    // Everything finished so far becomes part of one staged commit: from here on, any early
    // return drops it, and with it every temporary file.
    let mut staged = StagedCommit::new();
    for (split, sha, w) in finished {
        record.outputs.push(OutputRecord {
            path: w.path().display().to_string(),
            split,
            rows: w.rows(),
            sha256: sha.clone(),
            schema: schema_desc.clone(),
        });
        staged.add_parquet(w, sha);
    }

    // DP releases: spend first (cap check and spend in one transaction), then release.
    if !prepared.is_empty() {
        let parts = std::mem::take(
            &mut *dp_rows
                .lock()
                .map_err(|_| RunError::Poisoned("release rows"))?,
        );
        for (rec, w) in run_releases(plan, opts, run_id, &prepared, parts, &dp_columns)? {
            let sha = rec.sha256.clone();
            record.releases.push(rec);
            staged.add_parquet(w, sha);
        }
    }

    if let Some(report) = &report {
        staged.add_bytes(&plan.output.quarantine_path, run_id, report.as_bytes())?;
        record.quarantine_report = Some(plan.output.quarantine_path.display().to_string());
    }
    record.rows_written = written;
    Ok(staged)
}

/// Internal columns carrying what releases need to the sink: (alias, source column, numeric).
fn dp_columns(plan: &Plan) -> Vec<(String, String, bool)> {
    if plan.releases.is_empty() {
        return Vec::new();
    }
    // The subject as the policy sees it (trimmed), so one person is one privacy unit.
    let mut out = vec![(
        release::SUBJECT.to_string(),
        plan.policy.subject_column.clone(),
        false,
    )];
    for r in &plan.releases {
        for g in &r.group_by {
            let alias = format!("__dpg_{g}");
            if !out.iter().any(|(a, _, _)| *a == alias) {
                out.push((alias, g.clone(), false));
            }
        }
        for v in r.value_columns() {
            let alias = format!("__dpv_{v}");
            if !out.iter().any(|(a, _, _)| *a == alias) {
                out.push((alias, v.clone(), true));
            }
        }
    }
    out
}

/// Spends the budget of every release in one ledger transaction, then runs them on the
/// consented rows and writes each to a temporary file next to its target.
fn run_releases(
    plan: &Plan,
    opts: &RunOptions,
    run_id: &str,
    prepared: &[release::Prepared],
    parts: Vec<DataFrame>,
    dp_columns: &[(String, String, bool)],
) -> Result<Vec<(ReleaseRecord, AtomicParquet)>, RunError> {
    use crate::dp::ledger::{Ledger, Loss, SpendRequest};
    let dataset = plan.manifest.dataset_id().to_string();
    let unit = plan.policy.subject_column.clone();
    // Without a cap the ledger still records every spend; nothing is refused.
    let cap = plan.budget_cap;
    let requests: Vec<SpendRequest> = plan
        .releases
        .iter()
        .zip(prepared)
        .map(|(r, p)| SpendRequest {
            release: r.name.clone(),
            loss: p.calibrated.spend,
        })
        .collect();
    // The consented rows, with the plan's column names.
    let empty = || {
        DataFrame::empty_with_schema(&Schema::from_iter(dp_columns.iter().map(|(a, _, n)| {
            Field::new(
                a.as_str().into(),
                if *n {
                    DataType::Float64
                } else if a == release::SUBJECT {
                    DataType::UInt64
                } else {
                    DataType::String
                },
            )
        })))
    };
    let mut frame = empty();
    for part in parts {
        frame.vstack_mut(&part).map_err(|e| {
            RunError::Engine(sanitize(
                &format!("collecting the consented rows: {e}"),
                plan,
            ))
        })?;
    }
    for (alias, source, _) in dp_columns.iter().skip(1) {
        frame.rename(alias, source.as_str().into()).map_err(|e| {
            RunError::Engine(sanitize(
                &format!("collecting the consented rows: {e}"),
                plan,
            ))
        })?;
    }
    // The noise of sums was fixed for at most max_rows rows: more would void the guarantee.
    // Checked before any budget is spent or anything released.
    for r in &plan.releases {
        if let Some(max_rows) = r.max_rows.filter(|m| frame.height() as u64 > u64::from(*m)) {
            return Err(RunError::ReleaseBound(format!(
                "release `{}`: the consented rows are more than its public bound max_rows = {max_rows}; nothing was spent or released\n  = hint: raise max_rows in the release (it is public and fixed before the data is read, so set it above any size the dataset can reach)",
                r.name
            )));
        }
        if let Some(max_keys) = r.max_keys {
            let keys = frame
                .clone()
                .lazy()
                .group_by(
                    r.group_by
                        .iter()
                        .map(|g| col(g.as_str()))
                        .collect::<Vec<_>>(),
                )
                .agg([len()])
                .collect()
                .map_err(|e| {
                    RunError::Engine(sanitize(&format!("release `{}`: {e}", r.name), plan))
                })?
                .height();
            if keys as u64 > u64::from(max_keys) {
                return Err(RunError::ReleaseBound(format!(
                    "release `{}`: the consented rows have more distinct keys than its public bound max_keys = {max_keys}; nothing was spent or released\n  = hint: raise max_keys in the release (it is public: set it from what the column can hold, not from the data)",
                    r.name
                )));
            }
        }
    }
    let mut ledger = Ledger::open(&opts.lineage_db)?;
    ledger.spend(&dataset, &unit, run_id, cap.as_ref(), &requests)?;

    let mut files = Vec::new();
    for (r, p) in plan.releases.iter().zip(prepared) {
        let mut keep: Vec<PlSmallStr> = vec![release::SUBJECT.into()];
        keep.extend(r.group_by.iter().map(|g| PlSmallStr::from(g.as_str())));
        keep.extend(
            r.value_columns()
                .iter()
                .map(|v| PlSmallStr::from(v.as_str())),
        );
        let input = frame
            .select(keep)
            .map_err(|e| RunError::Engine(sanitize(&format!("release `{}`: {e}", r.name), plan)))?;
        let table = p.run(r, input.lazy())?;
        let schema = emit::arrow_schema(table.schema())?;
        let (e, d, rho) = match p.calibrated.spend {
            Loss::Pure { epsilon } => (epsilon, 0.0, 0.0),
            Loss::Approx { epsilon, delta } => (epsilon, delta, 0.0),
            Loss::Zcdp { rho } => (0.0, 0.0, rho),
        };
        let mut rec = ReleaseRecord {
            name: r.name.clone(),
            path: r.path.display().to_string(),
            sha256: String::new(),
            rows: table.height() as u64,
            dataset_id: dataset.clone(),
            privacy_unit: unit.clone(),
            group_by: r.group_by.clone(),
            key_source: match &r.keys {
                release::Keys::Public { source, rows } => {
                    format!("public: {} keys from {source}", rows.len())
                }
                release::Keys::Private => format!(
                    "private: groups released when their noisy count exceeds {}",
                    p.calibrated.threshold.unwrap_or(0)
                ),
                release::Keys::Whole => "none (no group_by)".into(),
            },
            max_rows_per_group: r.max_rows_per_group,
            max_groups: r.max_groups,
            max_rows_per_subject: r.max_rows_per_subject,
            max_rows: r.max_rows,
            max_keys: r.max_keys,
            statistics: r.statistics.iter().map(describe_statistic).collect(),
            measure: p.calibrated.spend.kind(),
            target: r.target.to_string(),
            epsilon: e,
            delta: d,
            rho,
            global_scale: p.calibrated.global_scale,
            threshold: p.calibrated.threshold,
            noise: p.calibrated.noise.clone(),
            rank_ci95: p.calibrated.rank_ci95.clone(),
            mean_ci95: mean_half_widths(r, &table),
        };
        let settings = ParquetSettings {
            row_group_size: 65_536,
            lineage_json: serde_json::json!({
                "run_id": run_id,
                "privprep_version": env!("CARGO_PKG_VERSION"),
                "release": &rec,
            })
            .to_string(),
        };
        let mut w = AtomicParquet::create(&r.path, run_id, schema.clone(), &settings)?;
        w.write(&emit::to_record_batch(&table, &schema)?)?;
        rec.sha256 = w.finish()?;
        files.push((rec, w));
    }
    Ok(files)
}

/// Each mean's smallest and largest half-width over the released rows (post-processing of
/// the noisy counts, so nothing beyond the release itself).
fn mean_half_widths(r: &release::ReleasePlan, table: &DataFrame) -> Vec<MeanHalfWidths> {
    r.statistics
        .iter()
        .filter_map(|s| match s {
            release::Statistic::Mean { .. } => {
                let name = release::output_column(s);
                let ci = table
                    .column(&format!("{name}_ci95"))
                    .ok()?
                    .f64()
                    .ok()?
                    .clone();
                Some(MeanHalfWidths {
                    min: ci.min()?,
                    max: ci.max()?,
                    column: name,
                })
            }
            _ => None,
        })
        .collect()
}

/// A statistic in words, with its bounds or candidates.
fn describe_statistic(s: &release::Statistic) -> String {
    match s {
        release::Statistic::Count => "count".into(),
        release::Statistic::Sum {
            column,
            lower,
            upper,
        } => format!("sum({column}) clamped to [{lower}, {upper}], a missing value counts as {}", (lower + upper) / 2.0),
        release::Statistic::Mean {
            column,
            lower,
            upper,
        } => format!("mean({column}) clamped to [{lower}, {upper}] (noisy sum / noisy count), a missing value counts as {}", (lower + upper) / 2.0),
        release::Statistic::Quantile {
            column,
            alpha,
            candidates,
        } => format!(
            "quantile({column}, {alpha}) over {} candidates from {} to {}, a missing value counts as {}",
            candidates.len(),
            candidates.first().unwrap_or(&0.0),
            candidates.last().unwrap_or(&0.0),
            release::missing_candidate(candidates)
        ),
    }
}

/// Footer metadata: enough to find the run in lineage and check the inputs.
fn footer_json(plan: &Plan, run_id: &str, record: &RunRecord) -> String {
    serde_json::json!({
        "run_id": run_id,
        "privprep_version": env!("CARGO_PKG_VERSION"),
        "pipeline": plan.name,
        "pipeline_sha256": record.pipeline_sha256,
        "dataset_id": plan.manifest.dataset_id(),
        "inputs": record.inputs.iter().map(|i| serde_json::json!({"path": i.path, "sha256": i.sha256, "rows": i.rows_read})).collect::<Vec<_>>(),
        "key_id": record.key_id,
        "policy": record.policy,
        "columns": record.column_lineage,
    })
    .to_string()
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

/// Name of the internal column carrying identifier column `i` to the sink.
fn id_column_name(i: usize) -> String {
    format!("__idv{i}")
}

/// String identifier columns: their values of every input row feed the leak gate.
fn identifier_columns(plan: &Plan) -> Vec<String> {
    // Text columns search the same string identifier columns by default, so what the gate
    // calls a leak is something a redact rule can remove.
    plan.columns
        .iter()
        .filter(|c| c.class == ColumnClass::Identifier && c.ty == crate::ingest::ColumnType::String)
        .map(|c| c.name.clone())
        .collect()
}

/// Output columns the gate does not judge: identifier columns the pipeline explicitly keeps
/// as they are (`explain` marks them UNSAFE); everything else must come out clean.
fn gate_exempt(plan: &Plan) -> Vec<String> {
    plan.output_columns()
        .filter(|c| c.explicit && c.action == Action::Keep && c.class == ColumnClass::Identifier)
        .map(|c| c.name.clone())
        .collect()
}

/// The keyed hash of an identifier column's values (null when too short to remember).
fn id_key_expr(hasher: &ValueHasher, column: &str) -> Expr {
    let hasher = hasher.clone();
    map_str::<UInt64Type, _>(col(column), vec![], move |s, out| {
        s.values()
            .for_each(|v| out.append_option(v.and_then(|v| hasher.value_key(v))));
        Ok(())
    })
}

/// Appends one batch's identifier keys for the gate.
fn remember_identifiers(df: &DataFrame, n: usize, keys: &Mutex<DistinctKeys>) -> PolarsResult<()> {
    if n == 0 {
        return Ok(());
    }
    let mut keys = keys
        .lock()
        .map_err(|_| polars_err!(ComputeError: "identifier key list lock poisoned"))?;
    for i in 0..n {
        keys.extend(df.column(&id_column_name(i))?.u64()?.into_iter().flatten());
    }
    Ok(())
}

/// Scanner, actions and counters for each text column.
fn text_runtimes(plan: &Plan, key: Option<&Arc<Key>>) -> Result<Vec<Arc<TextRuntime>>, RunError> {
    let tokens = &plan.pipeline.spec.tokens;
    let mut out = Vec::new();
    for t in &plan.text {
        let scanner = plan.pii.scanner(Some(&t.detectors))?;
        let policy = plan.pii.policy(t);
        let token: Option<Arc<pii::redact::TokenFn>> = match key {
            Some(k) if t.tokenizes() => {
                let encoding = match tokens.encoding {
                    TokenEncodingSpec::Hex => TokenEncoding::Hex,
                    TokenEncodingSpec::Base64url => TokenEncoding::Base64Url,
                };
                let tokenizer = Tokenizer::new(k, tokens.bits, encoding)?;
                Some(Arc::new(move |v: &str, out: &mut String| {
                    tokenizer.token_into(v, out)
                }))
            }
            _ => None,
        };
        out.push(Arc::new(TextRuntime {
            column: t.column.clone(),
            stats: pii::redact::TextStats::new(policy.slots()),
            scanner,
            policy,
            token,
        }));
    }
    Ok(out)
}

/// Lineage of each text column: detectors, actions and counts.
fn text_records(plan: &Plan, texts: &[Arc<TextRuntime>]) -> Vec<TextColumnRecord> {
    let names = plan.pii.slot_names();
    plan.text
        .iter()
        .zip(texts)
        .map(|(t, rt)| TextColumnRecord {
            column: t.column.clone(),
            detectors: t.detectors.clone(),
            context_columns: t.context.clone(),
            actions: t
                .detectors
                .iter()
                .map(|d| (d.clone(), t.action_for(d).describe()))
                .collect(),
            texts_scanned: rt.stats.texts.load(std::sync::atomic::Ordering::Relaxed),
            texts_changed: rt
                .stats
                .texts_changed
                .load(std::sync::atomic::Ordering::Relaxed),
            spans_replaced: rt
                .stats
                .span_counts()
                .into_iter()
                .enumerate()
                .filter(|(_, n)| *n > 0)
                .map(|(i, n)| (names.get(i).cloned().unwrap_or_default(), n))
                .collect(),
            rows_dropped: rt
                .stats
                .rows_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
        })
        .collect()
}

fn pii_summary(plan: &Plan) -> PiiSummary {
    let p = &plan.pii;
    PiiSummary {
        phone_regions: p.regions.clone(),
        allow_values: p.allow.len() as u64,
        deny_terms: p.deny.len() as u64,
        deny_file: p.deny_file.as_ref().map(|(f, sha, _)| FileRef {
            path: f.display().to_string(),
            sha256: sha.clone(),
        }),
        custom_detectors: p
            .custom
            .iter()
            .map(|c| CustomDetectorRecord {
                name: c.detector.name.clone(),
                pattern: c.detector.pattern.clone(),
            })
            .collect(),
        leak_gate: match p.gate {
            LeakGateMode::Fail => GateMode::Fail,
            LeakGateMode::Warn => GateMode::Warn,
        },
    }
}
