//! The polars engine: each stage's plan lowered to expressions of one `select` (`policy`,
//! `identity`, `text`), run over polars' streaming scans of the inputs or, for clean CSV
//! inputs, over each chunk the engine's own reader reads ([`csv`]); the string-kernel adapter
//! they all use; and the sink that counts every row by status, keeps what releases need of the
//! kept rows and hands them to a writer thread that encodes the output files, and to the leak
//! gate's thread that judges them meanwhile. The gate's identifier set comes with the job
//! when the pre-scan gathered it (CSV inputs): the gate's thread then searches each batch for
//! it too. Otherwise identifier values are remembered by the engine's threads, in the
//! `select`, not in the sink, and the run searches the written files once the set is whole.
//!
//! Depends on: polars, `plan`/`stages` (plan types), `ingest` (scans), `emit` (writers),
//! `identity`, `policy`, `pii`, `dp::plan` and `dp::release` (the subject key),
//! `lineage::record` (schema), `spec` (message sanitizing), the kernels crate.

pub mod adapter;
pub mod csv;
pub mod identity;
pub mod policy;
pub mod risk;
pub mod text;

use std::collections::HashSet;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use arrow::record_batch::RecordBatch;

use polars::prelude::*;
use privprep_kernels::key::Key;
use privprep_kernels::subject::SubjectHasher;
use privprep_kernels::surrogate::{Emitted, SurrogateWriter, Surrogates};
use privprep_kernels::token::Tokenizer;

use super::{EngineError, Job, ReleaseRows, Streamed, STATUSES};
use crate::dp::release;
use crate::emit::{self, AtomicParquet, ParquetSettings};
use crate::identity::Action;
use crate::ingest::{self, BADCOL, FILE, ROW};
use crate::lineage::record::SchemaField;
use crate::pii::detect::Scanner;
use crate::pii::gate::{DistinctKeys, GateTally, IdentifierSet, ValueHasher};
use crate::pii::redact::{TextStats, TokenFn};
use crate::pii::TextColumnPlan;
use crate::plan::Plan;
use crate::policy::{DropReason, KEPT, QUARANTINED, STATUS};
use adapter::map_str;
use identity::{split_expr, SPLIT};
use text::TextRuntime;

/// The polars streaming engine.
pub struct Polars;

impl super::Engine for Polars {
    fn stream(&self, job: &Job) -> Result<Streamed, EngineError> {
        stream(job)
    }
}

/// Per-status counts and quarantined records, filled batch by batch.
#[derive(Default)]
struct Tally {
    by_status: [u64; STATUSES],
    bad_values: Vec<(u32, u64, i32)>,
    seen: u64,
    /// Per output file, the subject index keys of the rows it received.
    subject_keys: Vec<Vec<u64>>,
}

/// What the sink writes to.
struct Sinks {
    /// To the writer thread: (index of the file, its rows). `None` once the stream ended.
    to_writer: Option<SyncSender<(usize, RecordBatch)>>,
    /// Split code of each file, in the writer thread's order.
    codes: Vec<u8>,
    schema: arrow::datatypes::SchemaRef,
    output_names: Vec<PlSmallStr>,
    split: bool,
}

/// The thread that encodes and compresses the kept rows into the output files, beside the
/// engine's threads: the sink only hands it batches, so one file's encoding never holds up
/// the stream. It hands the files back when its channel closes, or the first error.
///
/// It passes each batch on to the leak gate's thread ([`gate_thread`]), which judges it while
/// this one encodes it.
fn writer_thread(
    mut files: Vec<AtomicParquet>,
    batches: Receiver<(usize, RecordBatch)>,
    to_gate: SyncSender<RecordBatch>,
) -> std::thread::JoinHandle<Result<Vec<AtomicParquet>, emit::EmitError>> {
    std::thread::spawn(move || {
        for (i, batch) in batches {
            // Arrays are shared, not copied. A gate that stopped is found when it is joined.
            let _ = to_gate.send(batch.clone());
            // Dropping the files on an error removes them; dropping the receiver tells the
            // sink to stop.
            files[i].write(&batch)?;
        }
        // Every row is in: write the last row groups out while the run goes on.
        for f in &mut files {
            f.flush_rows()?;
        }
        Ok(files)
    })
}

/// The leak gate's half that runs on the batches written: detector hits, and the identifier
/// values when the set of every input's identifiers is already whole (`ids`).
fn gate_thread(
    batches: Receiver<RecordBatch>,
    scanner: Scanner,
    mut gate: GateTally,
    ids: Option<Arc<IdentifierSet>>,
) -> std::thread::JoinHandle<GateTally> {
    std::thread::spawn(move || {
        // Batches are judged a few together: a column's repeated values are then judged
        // once for more rows, and each judgment's fixed cost is paid less often.
        let (mut held, mut rows) = (Vec::new(), 0);
        for batch in batches {
            rows += batch.num_rows();
            held.push(batch);
            if rows >= GATE_ROWS {
                gate.add_hits_in(&scanner, ids.as_deref(), &held);
                (held, rows) = (Vec::new(), 0);
            }
        }
        if !held.is_empty() {
            gate.add_hits_in(&scanner, ids.as_deref(), &held);
        }
        gate
    })
}

/// Rows the leak gate's thread judges at once (more when a batch is larger).
const GATE_ROWS: usize = 32 * 1024;

fn stream(job: &Job) -> Result<Streamed, EngineError> {
    let plan = job.plan;
    let engine_err = |e: PolarsError| EngineError::Failed(sanitize(&e.to_string(), plan));
    // The surrogates written into texts, so the gate does not take them for leaks.
    let emitted = Arc::new(Emitted::new());
    let texts = text_runtimes(plan, job.key, &emitted)?;
    // Every detector, for the leak gate's first half (the opt-in ones where a column runs
    // them).
    let gate_scanner = plan.pii.gate_scanner(&plan.text)?;
    let synthetic_columns: Vec<String> = plan
        .synthetics
        .iter()
        .flat_map(|t| t.columns.iter().map(|c| c.name.clone()))
        .collect();
    let dp_columns = crate::dp::plan::collected_columns(
        &plan.releases,
        &synthetic_columns,
        &plan.policy.subject_column,
    );
    // Every identifier value of every record, kept or dropped, for the leak gate: gathered by
    // the pre-scan, or keyed and gathered by the engine's threads as they go.
    let id_columns = match job.identifiers {
        Some(_) => Vec::new(),
        None => plan.identifier_columns(),
    };
    let value_hasher = ValueHasher::new();
    let identifiers = Arc::new(DistinctKeys::new());
    let lowered = lower(
        job,
        &texts,
        &dp_columns,
        &id_columns,
        &value_hasher,
        &identifiers,
    )?;
    let lf = lowered.on(scan_inputs(job)?);
    let output_names: Vec<PlSmallStr> = plan
        .output_columns()
        .map(|c| c.name.as_str().into())
        .collect();
    // k-anonymity: the class sizes from a first pass (its own text counters and identifier
    // set, so the run's are counted once), then the status of rows in small classes.
    let (lf, risk) = match &plan.risk {
        None => (lf, None),
        Some(r) => {
            let first = lower(
                job,
                &text_runtimes(plan, job.key, &Arc::new(Emitted::new()))?,
                &[],
                &[],
                &ValueHasher::new(),
                &Arc::new(DistinctKeys::new()),
            )?
            .on(scan_inputs(job)?);
            let classes = risk::count_classes(first, r).map_err(engine_err)?;
            let lf = match r.action {
                crate::stages::risk::RiskAction::Suppress => {
                    lf.with_column(risk::suppress(r, classes.small.clone()))
                }
                crate::stages::risk::RiskAction::Report => lf,
            };
            (lf, Some(classes.record))
        }
    };

    // Writers, one per output file, with the schema of the output columns.
    let mut lf = lf;
    let schema = lf.collect_schema().map_err(engine_err)?;
    let out_schema: Schema = output_names
        .iter()
        .filter_map(|n| schema.get(n).map(|t| Field::new(n.clone(), t.clone())))
        .collect();
    let arrow_schema = emit::arrow_schema(&out_schema)?;
    let schema_desc = arrow_schema
        .fields()
        .iter()
        .map(|f| SchemaField {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
        })
        .collect();
    let settings = ParquetSettings {
        row_group_size: plan.output.row_group_size,
        // The footer's lineage is added when the run finishes the files.
        lineage_json: None,
        encryption: job.encryption.cloned(),
        // Redacted free text.
        plain_columns: plan
            .output_columns()
            .filter(|c| c.action == Action::Redact)
            .map(|c| c.name.clone())
            .collect(),
    };
    let (mut files, mut codes) = (Vec::new(), Vec::new());
    for (_, code, path) in plan.output.files() {
        files.push(AtomicParquet::create(
            &path,
            job.run_id,
            arrow_schema.clone(),
            &settings,
        )?);
        codes.push(code);
    }
    // A few batches in flight at most, so memory stays bounded when encoding is slower.
    let (to_writer, batches) = std::sync::mpsc::sync_channel(4);
    let gate = GateTally::new(
        output_names.iter().map(|n| n.to_string()).collect(),
        plan.gate_exempt(),
        plan.pii.slot_names(),
    )
    .with_surrogate_columns(
        plan.output_columns()
            .filter(|c| matches!(c.action, crate::identity::Action::Surrogate(_)))
            .map(|c| c.name.clone())
            .collect(),
    )
    .with_emitted(emitted.clone());
    let (to_gate, judged) = std::sync::mpsc::sync_channel(4);
    let gate = gate_thread(judged, gate_scanner, gate, job.identifiers.clone());
    let writer = writer_thread(files, batches, to_gate);
    let sinks = Arc::new(Mutex::new(Sinks {
        to_writer: Some(to_writer),
        codes: codes.clone(),
        schema: arrow_schema,
        output_names: output_names.clone(),
        split: plan.output.split.is_some(),
    }));
    let tally = Arc::new(Mutex::new(Tally {
        subject_keys: vec![
            Vec::new();
            if job.subjects.is_some() {
                codes.len()
            } else {
                0
            }
        ],
        ..Tally::default()
    }));
    let release_rows: Arc<Mutex<ReleaseRows>> = Arc::new(Mutex::new(Vec::new()));
    let busy = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = std::time::Instant::now();

    let release_columns: Vec<PlSmallStr> = dp_columns
        .iter()
        .map(|(a, _, _)| PlSmallStr::from(a.as_str()))
        .collect();
    let mut kept_columns = output_names;
    kept_columns.extend(release_columns.iter().cloned());
    kept_columns.push(SPLIT.into());
    if job.subjects.is_some() {
        kept_columns.push(SUBJECT_KEY.into());
    }
    let sink = Sink {
        sinks: sinks.clone(),
        tally: tally.clone(),
        release_rows: release_rows.clone(),
        release_columns,
        kept_columns,
        progress: job.progress.clone(),
        busy: busy.clone(),
    };
    // Clean CSV inputs are read in chunks by the engine's own reader, each chunk through the
    // same stages; anything else, and two-pass runs, by polars' streaming scans.
    let result = if plan.risk.is_none() && csv::readable(job.inputs) {
        let names: Vec<PlSmallStr> = plan
            .source
            .csv_names
            .iter()
            .map(|n| n.as_str().into())
            .collect();
        // Only the columns the steps read (a column the run drops is not read).
        let (lowered, used) = lowered.pruned();
        let wanted = names
            .iter()
            .map(|n| used.as_ref().is_none_or(|u| u.contains(n)))
            .collect();
        let columns = csv::Columns { names, wanted };
        let query = |chunk: DataFrame| -> PolarsResult<DataFrame> {
            lowered
                .on(chunk.lazy())
                .collect_with_engine(Engine::InMemory)
        };
        csv::read(
            job.inputs,
            plan.source.separator,
            &columns,
            polars_core::POOL.current_num_threads(),
            &query,
            &|df| sink.take(df),
        )
    } else {
        // The steps hold the UDFs' shares of the identifier set, which must be let go.
        drop(lowered);
        let callback = PlanCallback::Rust(SpecialEq::new(Arc::new(
            move |df: DataFrame| -> PolarsResult<bool> { sink.take(df) },
        )));
        lf.sink_batches(callback, true, None)
            .and_then(|lf| lf.collect_with_engine(Engine::Streaming))
            .map(|_| ())
    };
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        sink_busy_ms = busy.load(std::sync::atomic::Ordering::Relaxed) / 1000,
        "streamed"
    );
    // The stream is over: closing the channel lets the writer thread finish.
    sinks
        .lock()
        .map_err(|_| EngineError::Poisoned("writer"))?
        .to_writer
        .take();
    let written = writer
        .join()
        .map_err(|_| EngineError::Poisoned("writer thread"))?;
    // The writer's end closed the gate's channel.
    let gate = gate
        .join()
        .map_err(|_| EngineError::Poisoned("leak gate thread"))?;
    let files = match (written, result) {
        // The writer's error, whole, comes first: the engine only saw that it stopped.
        (Err(e), _) => return Err(EngineError::Emit(e)),
        (Ok(_), Err(e)) => return Err(engine_err(e)),
        (Ok(written), Ok(_)) => written,
    };
    let tally = take(&tally, "tally")?;
    let keys = Arc::into_inner(identifiers).ok_or(EngineError::Poisoned("identifier set"))?;
    // The set the run still has to search the written files for, when the engine gathered it.
    let identifiers = job.identifiers.is_none().then(|| {
        let set_started = std::time::Instant::now();
        let identifiers = IdentifierSet::from_distinct(value_hasher, keys);
        tracing::info!(
            elapsed_ms = set_started.elapsed().as_millis() as u64,
            distinct = identifiers.len(),
            "leak gate: identifier set built"
        );
        identifiers
    });
    Ok(Streamed {
        by_status: tally.by_status,
        bad_values: tally.bad_values,
        seen: tally.seen,
        files: codes.into_iter().zip(files).collect(),
        schema: schema_desc,
        identifiers,
        gate,
        release_rows: take(&release_rows, "release rows")?,
        text_stats: texts.iter().map(|t| t.stats.clone()).collect(),
        subject_keys: tally.subject_keys,
        risk,
    })
}

/// Moves a value out of a lock shared with the engine's threads.
fn take<T: Default>(slot: &Mutex<T>, what: &'static str) -> Result<T, EngineError> {
    slot.lock()
        .map(|mut v| std::mem::take(&mut *v))
        .map_err(|_| EngineError::Poisoned(what))
}

/// The sink: counts every row by status, remembers identifier keys and quarantined records,
/// and writes the kept rows (to their split's file).
struct Sink {
    sinks: Arc<Mutex<Sinks>>,
    tally: Arc<Mutex<Tally>>,
    release_rows: Arc<Mutex<ReleaseRows>>,
    release_columns: Vec<PlSmallStr>,
    /// The columns of kept rows the sink passes on: output, release and split columns.
    kept_columns: Vec<PlSmallStr>,
    progress: indicatif::ProgressBar,
    /// Time spent in the sink, which runs one batch at a time (for the log).
    busy: Arc<std::sync::atomic::AtomicU64>,
}

fn poisoned(what: &str) -> PolarsError {
    polars_err!(ComputeError: "{} lock poisoned", what)
}

impl Sink {
    fn take(&self, df: DataFrame) -> PolarsResult<bool> {
        let started = std::time::Instant::now();
        let r = self.take_timed(df);
        self.busy.fetch_add(
            started.elapsed().as_micros() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        r
    }

    fn take_timed(&self, df: DataFrame) -> PolarsResult<bool> {
        self.progress.inc(df.height() as u64);
        let status = df.column(STATUS)?.i32()?.clone();
        self.count(&df, &status)?;
        let kept_mask = status.equal(KEPT as i32);
        if !kept_mask.any() {
            return Ok(false);
        }
        // Only what is written or released is copied.
        let kept = df
            .select(self.kept_columns.iter().cloned())?
            .filter(&kept_mask)?;
        if !self.release_columns.is_empty() {
            let part = kept.select(self.release_columns.iter().cloned())?;
            self.release_rows
                .lock()
                .map_err(|_| poisoned("release rows"))?
                .push(part);
        }
        let s = self.sinks.lock().map_err(|_| poisoned("writer"))?;
        let to_writer = s
            .to_writer
            .as_ref()
            .ok_or_else(|| polars_err!(ComputeError: "a batch came after the stream ended"))?;
        for (i, code) in s.codes.iter().enumerate() {
            let part = if s.split {
                let split = kept.column(SPLIT)?.i32()?;
                kept.filter(&split.equal(*code as i32))?
            } else {
                kept.clone()
            };
            if part.height() == 0 {
                continue;
            }
            self.remember_subjects(i, &part)?;
            let batch = record_batch(&part, &s.schema, &s.output_names)
                .map_err(|e| polars_err!(ComputeError: "{}", e))?;
            // A closed channel means the writer stopped on an error, which it returns.
            to_writer
                .send((i, batch))
                .map_err(|_| polars_err!(ComputeError: "the output writer stopped"))?;
        }
        Ok(false)
    }

    /// Adds the subject keys of `part`, bound for file `i`, to that file's set (when the run
    /// keeps a subject index). A set is compacted (sorted, deduplicated) as it grows, so its
    /// memory follows the subjects, not the rows.
    fn remember_subjects(&self, i: usize, part: &DataFrame) -> PolarsResult<()> {
        let Ok(keys) = part.column(SUBJECT_KEY) else {
            return Ok(());
        };
        let keys = keys.u64()?;
        let mut t = self.tally.lock().map_err(|_| poisoned("tally"))?;
        if let Some(set) = t.subject_keys.get_mut(i) {
            // Before the vector would grow: at most one compaction per doubling.
            if set.len() >= SUBJECT_COMPACT_AT && set.len() + keys.len() > set.capacity() {
                set.sort_unstable();
                set.dedup();
            }
            set.extend(keys.into_iter().flatten());
        }
        Ok(())
    }

    /// Counts one batch by status and notes where its quarantined records are.
    fn count(&self, df: &DataFrame, status: &Int32Chunked) -> PolarsResult<()> {
        let mut t = self.tally.lock().map_err(|_| poisoned("tally"))?;
        t.seen += df.height() as u64;
        for s in status.into_no_null_iter() {
            // An unknown status is not counted, so the run's accounting check fails.
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
        Ok(())
    }
}

/// The output columns of a frame as an Arrow batch of the output schema.
fn record_batch(
    frame: &DataFrame,
    schema: &arrow::datatypes::SchemaRef,
    names: &[PlSmallStr],
) -> Result<RecordBatch, emit::EmitError> {
    let out = frame
        .select(names.iter().cloned())
        .map_err(|e| emit::EmitError::Convert {
            column: "*".into(),
            message: e.to_string(),
        })?;
    emit::to_record_batch(&out, schema)
}

/// Every input, read by polars' scans, one after another.
fn scan_inputs(job: &Job) -> Result<LazyFrame, EngineError> {
    let plan = job.plan;
    let mut scans = Vec::new();
    for (i, input) in job.inputs.iter().enumerate() {
        scans.push(ingest::scan_input(
            input,
            i as u32,
            plan.source.separator,
            &plan.source.csv_names,
            job.scratch,
        )?);
    }
    if scans.len() == 1 {
        Ok(scans.pop().expect("one scan"))
    } else {
        concat(scans, UnionArgs::default())
            .map_err(|e| EngineError::Failed(sanitize(&e.to_string(), plan)))
    }
}

/// One step of the lowered plan.
#[derive(Clone)]
enum Step {
    Select(Vec<Expr>),
    With(Expr),
}

/// The plan's stages as steps of expressions, built once and applied to the inputs' rows as
/// read (every CSV column a string, with `__row` and `__file`): polars' scans of every input,
/// or each chunk of them the engine's CSV reader reads.
struct Lowered(Vec<Step>);

impl Lowered {
    fn on(&self, lf: LazyFrame) -> LazyFrame {
        self.0.iter().fold(lf, |lf, step| match step {
            Step::Select(exprs) => lf.select(exprs.clone()),
            Step::With(expr) => lf.with_column(expr.clone()),
        })
    }

    /// The steps without what no output needs, and the input columns they read: projection
    /// pushdown, done by hand for the engine's CSV reader, so a column the run drops is not
    /// read. The columns are `None` when that cannot be told: every column is read then, and
    /// every step kept.
    fn pruned(self) -> (Lowered, Option<HashSet<PlSmallStr>>) {
        match prune(&self.0) {
            Some((steps, used)) => (Lowered(steps), Some(used)),
            None => (self, None),
        }
    }
}

/// `steps` without the expressions whose output no later step needs, and the columns they
/// read from their input: walking back from the last step's outputs, each step keeps the
/// expressions that give a column needed after it, and needs their roots. `None` when an
/// expression's output cannot be named.
fn prune(steps: &[Step]) -> Option<(Vec<Step>, HashSet<PlSmallStr>)> {
    let mut needed: Option<HashSet<PlSmallStr>> = None;
    let mut kept = Vec::new();
    for step in steps.iter().rev() {
        match step {
            Step::Select(exprs) => {
                let (mut before, mut select) = (HashSet::new(), Vec::new());
                for e in exprs {
                    let name = e.clone().meta().output_name().ok()?;
                    if needed.as_ref().is_none_or(|n| n.contains(&name)) {
                        before.extend(e.clone().meta().root_names());
                        select.push(e.clone());
                    }
                }
                needed = Some(before);
                kept.push(Step::Select(select));
            }
            Step::With(e) => {
                let name = e.clone().meta().output_name().ok()?;
                let n = needed.as_mut()?;
                if n.remove(&name) {
                    n.extend(e.clone().meta().root_names());
                    kept.push(step.clone());
                }
            }
        }
    }
    kept.reverse();
    Some((kept, needed?))
}

/// The plan as steps over every input's rows: type the columns, then one `select` in which
/// each stage adds its expressions: policy (the status column), identity (each output
/// column's action, the split), text (redaction; rows with a `drop_row` hit change status
/// first), the columns releases need and the identifier keys for the gate.
fn lower(
    job: &Job,
    texts: &[Arc<TextRuntime>],
    dp_columns: &[(String, String, bool)],
    id_columns: &[String],
    value_hasher: &ValueHasher,
    identifiers: &Arc<DistinctKeys>,
) -> Result<Lowered, EngineError> {
    let plan = job.plan;
    let conversions: Vec<_> = plan.columns.iter().map(|c| c.conversion.clone()).collect();
    let typed = ingest::typed_columns(&plan.source.manifest, &conversions);
    let mut select = typed.values;
    select.extend([col(ROW), col(FILE)]);
    // Each row its own privacy unit: the unit is the row's place (file, record).
    if plan.policy.row_unit {
        select.push(
            concat_str(
                [
                    col(FILE).cast(DataType::String),
                    col(ROW).cast(DataType::String),
                ],
                ":",
                false,
            )
            .alias(crate::ingest::manifest::ROW_UNIT),
        );
    }
    // Policy.
    let mut steps = vec![
        Step::Select(select),
        Step::With(typed.badcol),
        Step::With(policy::status_expr(&plan.policy, BADCOL, job.erased)),
    ];
    // Identity: the split.
    steps.push(Step::With(match (&plan.output.split, job.key) {
        (Some((train, validation, test)), Some(k)) => split_expr(
            col(plan.policy.subject_column.as_str()),
            k,
            [*train, *validation, *test],
        ),
        _ => lit(0i32).cast(DataType::Int32).alias(SPLIT),
    }));
    // Text: texts with a `drop_row` hit drop their row before anything is transformed.
    let kept_only = |name: &str| {
        when(col(STATUS).eq(lit(KEPT as i32)))
            .then(col(name))
            .otherwise(lit(NULL))
    };
    let context_of =
        |t: &TextColumnPlan| -> Vec<Expr> { t.context.iter().map(|c| col(c.as_str())).collect() };
    for (t, rt) in plan.text.iter().zip(texts) {
        if t.drops_rows() {
            let hit = text::drop_expr(rt.clone(), kept_only(&t.column), context_of(t));
            steps.push(Step::With(
                when(
                    col(STATUS)
                        .eq(lit(KEPT as i32))
                        .and(hit.fill_null(lit(false))),
                )
                .then(lit(DropReason::PiiInText.code() as i32))
                .otherwise(col(STATUS))
                .alias(STATUS),
            ));
        }
    }
    // Releases: their columns, of every row (the sink keeps the kept ones).
    let mut outputs = Vec::new();
    for (alias, source, numeric) in dp_columns {
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
    // Identity and text: each output column. Only kept rows are transformed: values of
    // dropped rows are never processed further.
    for c in plan.output_columns() {
        let input = kept_only(&c.name);
        if c.action == Action::Redact {
            if let Some((t, rt)) = plan
                .text
                .iter()
                .zip(texts)
                .find(|(t, _)| t.column == c.name)
            {
                outputs.push(text::redact_expr(rt.clone(), input, context_of(t)));
            }
        } else if let Some(e) = c.action.expr(&c.name, input, c.ty, job.key)? {
            outputs.push(e);
        }
    }
    // The subject index: each kept row's subject, keyed (8 bytes reach the sink, not the id).
    if let Some(hasher) = job.subjects {
        outputs.push(
            subject_key_expr(hasher, kept_only(&plan.policy.subject_column)).alias(SUBJECT_KEY),
        );
    }
    // The gate: identifier values of every row, kept or dropped, keyed and remembered in
    // parallel; only an empty column reaches the sink.
    for (i, c) in id_columns.iter().enumerate() {
        outputs.push(remember_expr(value_hasher, identifiers, c).alias(id_column_name(i)));
    }
    outputs.extend([col(STATUS), col(ROW), col(FILE), col(BADCOL), col(SPLIT)]);
    steps.push(Step::Select(outputs));
    Ok(Lowered(steps))
}

/// The column of subject index keys.
const SUBJECT_KEY: &str = "__subject_key";

/// A file's gathered subject keys are compacted once they reach this many.
const SUBJECT_COMPACT_AT: usize = 1 << 20;

/// Each row's subject index key (null for a missing subject).
fn subject_key_expr(hasher: &SubjectHasher, subject: Expr) -> Expr {
    let hasher = hasher.clone();
    map_str::<UInt64Type, _>(subject, vec![], move |s, out| {
        for v in s.values() {
            out.append_option(v.and_then(|v| hasher.key(v)));
        }
        Ok(())
    })
}

fn id_column_name(i: usize) -> String {
    format!("__idv{i}")
}

/// Remembers an identifier column's values in the gate's set; the column it gives is all
/// null (no value of it reaches the sink).
fn remember_expr(hasher: &ValueHasher, keys: &Arc<DistinctKeys>, column: &str) -> Expr {
    let (hasher, keys) = (hasher.clone(), keys.clone());
    adapter::visit_str(col(column), move |slice| {
        for arr in slice.downcast_iter() {
            if polars_arrow::array::Array::null_count(arr) == 0 {
                keys.insert_all(&hasher, arr.values_iter());
            } else {
                keys.insert_all(&hasher, arr.iter().flatten());
            }
        }
    })
}

/// Scanner, actions and counters for each text column.
fn text_runtimes(
    plan: &Plan,
    key: Option<&Arc<Key>>,
    emitted: &Arc<Emitted>,
) -> Result<Vec<Arc<TextRuntime>>, EngineError> {
    let tokens = &plan.pipeline.spec.tokens;
    let mut out = Vec::new();
    for t in &plan.text {
        let scanner = plan.pii.scanner(Some(&t.detectors))?;
        let policy = plan.pii.policy(t);
        let token: Option<Arc<TokenFn>> = match key {
            Some(k) if t.tokenizes() => {
                let encoding = crate::stages::token_encoding(tokens.encoding);
                let tokenizer = Tokenizer::new(k, tokens.bits, encoding)?;
                Some(Arc::new(move |v: &str, out: &mut String| {
                    tokenizer.token_into(v, out)
                }))
            }
            _ => None,
        };
        let surrogate = key.map(|k| SurrogateWriter {
            surrogates: Surrogates::new(k),
            emitted: emitted.clone(),
        });
        out.push(Arc::new(TextRuntime {
            column: t.column.clone(),
            stats: Arc::new(TextStats::new(policy.slots())),
            scanner,
            policy,
            token,
            surrogate,
        }));
    }
    Ok(out)
}

/// Rewrites an engine message so it cannot carry a cell value: quoted parts that are not a
/// column name or path of this plan are replaced.
pub fn sanitize(message: &str, plan: &Plan) -> String {
    let known: Vec<String> = plan
        .columns
        .iter()
        .map(|c| c.name.clone())
        .chain(plan.source.files.iter().map(|f| f.display().to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A column only a later step drops, or that no output needs, is not read; a column an
    /// output needs through a replaced column is.
    #[test]
    fn steps_read_only_the_columns_their_outputs_need() {
        let steps = vec![
            Step::Select(vec![
                col("a"),
                col("b").alias("b"),
                col("dropped"),
                (col("c") + col("d")).alias("cd"),
                col("s"),
            ]),
            Step::With(col("s").fill_null(col("a")).alias("s")),
            Step::With(col("b").alias("unused")),
            Step::Select(vec![col("a"), col("cd").alias("out"), col("s")]),
        ];
        let (kept, used) = prune(&steps).expect("named outputs");
        let mut used: Vec<&str> = used.iter().map(|n| n.as_str()).collect();
        used.sort();
        assert_eq!(used, vec!["a", "c", "d", "s"]);
        // The first select keeps what is needed; the step giving `unused` is gone.
        assert_eq!(kept.len(), 3);
        let Step::Select(first) = &kept[0] else {
            panic!("a select first")
        };
        assert_eq!(first.len(), 3);
        // Both give the same frame.
        let df = df!(
            "a" => [1, 2], "b" => [3, 4], "dropped" => [5, 6], "c" => [7, 8], "d" => [9, 10],
            "s" => [None, Some(1)]
        )
        .unwrap();
        let run = |steps: Vec<Step>| Lowered(steps).on(df.clone().lazy()).collect().unwrap();
        assert!(run(steps.clone()).equals_missing(&run(kept)));
        // A column a later step reads through the first select's output is read.
        let steps = vec![
            Step::Select(vec![col("a"), col("e")]),
            Step::With(col("a").fill_null(col("e")).alias("a")),
            Step::Select(vec![col("a")]),
        ];
        let (_, used) = prune(&steps).expect("named outputs");
        assert!(used.contains("a") && used.contains("e"));
    }
}
