//! The polars engine: each stage's plan lowered to expressions of one streaming `select`
//! (`policy`, `identity`, `text`), the string-kernel adapter they all use, and the sink that
//! feeds the writers and collects what the run needs of every row.

pub mod adapter;
pub mod identity;
pub mod policy;
pub mod text;

use std::sync::{Arc, Mutex};

use polars::prelude::*;
use privprep_kernels::key::Key;
use privprep_kernels::token::Tokenizer;

use super::{EngineError, Job, ReleaseRows, Streamed, STATUSES};
use crate::dp::release;
use crate::emit::{self, AtomicParquet, ParquetSettings};
use crate::identity::Action;
use crate::ingest::{self, ColumnClass, ColumnType, BADCOL, FILE, ROW};
use crate::lineage::record::SchemaField;
use crate::pii::gate::{DistinctKeys, IdentifierSet, ValueHasher};
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
struct Tally {
    by_status: [u64; STATUSES],
    bad_values: Vec<(u32, u64, i32)>,
    seen: u64,
}

/// What the sink writes to.
struct Sinks {
    writers: Vec<(u8, AtomicParquet)>,
    schema: arrow::datatypes::SchemaRef,
    output_names: Vec<PlSmallStr>,
    split: bool,
    /// The writer's error, kept whole (the engine only passes a message on).
    error: Option<emit::EmitError>,
}

fn stream(job: &Job) -> Result<Streamed, EngineError> {
    let plan = job.plan;
    let engine_err = |e: PolarsError| EngineError::Failed(sanitize(&e.to_string(), plan));
    let texts = text_runtimes(plan, job.key)?;
    let dp_columns = crate::dp::plan::release_columns(&plan.releases, &plan.policy.subject_column);
    let id_columns = identifier_columns(plan);
    let value_hasher = ValueHasher::new();
    let lf = lower(job, &texts, &dp_columns, &id_columns, &value_hasher)?;
    let output_names: Vec<PlSmallStr> = plan
        .output_columns()
        .map(|c| c.name.as_str().into())
        .collect();

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
        lineage_json: job.footer.clone(),
    };
    let mut writers = Vec::new();
    for (_, code, path) in plan.output.files() {
        let w = AtomicParquet::create(&path, job.run_id, arrow_schema.clone(), &settings)?;
        writers.push((code, w));
    }
    let sinks = Arc::new(Mutex::new(Sinks {
        writers,
        schema: arrow_schema,
        output_names,
        split: plan.output.split.is_some(),
        error: None,
    }));
    let tally = Arc::new(Mutex::new(Tally {
        by_status: [0; STATUSES],
        bad_values: Vec::new(),
        seen: 0,
    }));
    let identifiers = Arc::new(Mutex::new(DistinctKeys::new()));
    let release_rows: Arc<Mutex<ReleaseRows>> = Arc::new(Mutex::new(Vec::new()));

    let sink = Sink {
        sinks: sinks.clone(),
        tally: tally.clone(),
        identifiers: identifiers.clone(),
        n_ids: id_columns.len(),
        release_rows: release_rows.clone(),
        release_columns: dp_columns
            .iter()
            .map(|(a, _, _)| PlSmallStr::from(a.as_str()))
            .collect(),
        progress: job.progress.clone(),
    };
    let callback = PlanCallback::Rust(SpecialEq::new(Arc::new(
        move |df: DataFrame| -> PolarsResult<bool> { sink.take(df) },
    )));
    let result = lf
        .sink_batches(callback, true, None)
        .and_then(|lf| lf.collect_with_engine(Engine::Streaming));
    let mut sinks = take(&sinks, "writer")?;
    if let Err(e) = result {
        return Err(match sinks.error.take() {
            Some(e) => EngineError::Emit(e),
            None => engine_err(e),
        });
    }
    let tally = take(&tally, "tally")?;
    let keys = take(&identifiers, "identifier key list")?;
    let set_started = std::time::Instant::now();
    let identifiers = IdentifierSet::from_distinct(value_hasher, keys);
    tracing::info!(
        elapsed_ms = set_started.elapsed().as_millis() as u64,
        distinct = identifiers.len(),
        "leak gate: identifier set built"
    );
    Ok(Streamed {
        by_status: tally.by_status,
        bad_values: tally.bad_values,
        seen: tally.seen,
        files: std::mem::take(&mut sinks.writers),
        schema: schema_desc,
        identifiers,
        release_rows: take(&release_rows, "release rows")?,
        text_stats: texts.iter().map(|t| t.stats.clone()).collect(),
    })
}

/// Moves a value out of a lock shared with the engine's threads.
fn take<T: Default>(slot: &Mutex<T>, what: &'static str) -> Result<T, EngineError> {
    slot.lock()
        .map(|mut v| std::mem::take(&mut *v))
        .map_err(|_| EngineError::Poisoned(what))
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            by_status: [0; STATUSES],
            bad_values: Vec::new(),
            seen: 0,
        }
    }
}

impl Default for Sinks {
    fn default() -> Self {
        Sinks {
            writers: Vec::new(),
            schema: Arc::new(arrow::datatypes::Schema::empty()),
            output_names: Vec::new(),
            split: false,
            error: None,
        }
    }
}

/// The sink: counts every row by status, remembers identifier keys and quarantined records,
/// and writes the kept rows (to their split's file).
struct Sink {
    sinks: Arc<Mutex<Sinks>>,
    tally: Arc<Mutex<Tally>>,
    identifiers: Arc<Mutex<DistinctKeys>>,
    n_ids: usize,
    release_rows: Arc<Mutex<ReleaseRows>>,
    release_columns: Vec<PlSmallStr>,
    progress: indicatif::ProgressBar,
}

fn poisoned(what: &str) -> PolarsError {
    polars_err!(ComputeError: "{} lock poisoned", what)
}

impl Sink {
    fn take(&self, df: DataFrame) -> PolarsResult<bool> {
        self.progress.inc(df.height() as u64);
        self.remember_identifiers(&df)?;
        let status = df.column(STATUS)?.i32()?.clone();
        self.count(&df, &status)?;
        let kept_mask = status.equal(KEPT as i32);
        if !kept_mask.any() {
            return Ok(false);
        }
        let kept = df.filter(&kept_mask)?;
        if !self.release_columns.is_empty() {
            let part = kept.select(self.release_columns.iter().cloned())?;
            self.release_rows
                .lock()
                .map_err(|_| poisoned("release rows"))?
                .push(part);
        }
        let mut s = self.sinks.lock().map_err(|_| poisoned("writer"))?;
        let sinks = &mut *s;
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
            sinks.error = Some(e);
            return Err(polars_err!(ComputeError: "{}", msg));
        }
        Ok(false)
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

    /// Adds one batch's identifier keys to the gate's set.
    fn remember_identifiers(&self, df: &DataFrame) -> PolarsResult<()> {
        if self.n_ids == 0 {
            return Ok(());
        }
        let mut keys = self
            .identifiers
            .lock()
            .map_err(|_| poisoned("identifier key list"))?;
        for i in 0..self.n_ids {
            keys.extend(df.column(&id_column_name(i))?.u64()?.into_iter().flatten());
        }
        Ok(())
    }
}

/// Writes the output columns of a frame to one file.
fn write(
    frame: &DataFrame,
    w: &mut AtomicParquet,
    schema: &arrow::datatypes::SchemaRef,
    names: &[PlSmallStr],
) -> Result<(), emit::EmitError> {
    let out = frame
        .select(names.iter().cloned())
        .map_err(|e| emit::EmitError::Convert {
            column: "*".into(),
            message: e.to_string(),
        })?;
    let batch = emit::to_record_batch(&out, schema)?;
    w.write(&batch)
}

/// The lazy plan: read every input, type its columns, then one `select` in which each stage
/// adds its expressions: policy (the status column), identity (each output column's action,
/// the split), text (redaction; rows with a `drop_row` hit change status first), the columns
/// releases need and the identifier keys for the gate.
fn lower(
    job: &Job,
    texts: &[Arc<TextRuntime>],
    dp_columns: &[(String, String, bool)],
    id_columns: &[String],
    value_hasher: &ValueHasher,
) -> Result<LazyFrame, EngineError> {
    let plan = job.plan;
    // Ingest.
    let mut scans = Vec::new();
    for (i, input) in job.inputs.iter().enumerate() {
        scans.push(ingest::scan_input(
            input,
            i as u32,
            plan.separator,
            &plan.csv_names,
            job.scratch,
        )?);
    }
    let lf = if scans.len() == 1 {
        scans.pop().expect("one scan")
    } else {
        concat(scans, UnionArgs::default())
            .map_err(|e| EngineError::Failed(sanitize(&e.to_string(), plan)))?
    };
    let conversions: Vec<_> = plan.columns.iter().map(|c| c.conversion.clone()).collect();
    let (typed, badcol) = ingest::typed_columns(&plan.manifest, &conversions);
    let mut select = typed;
    select.extend([col(ROW), col(FILE), badcol]);
    // Policy.
    let lf = lf
        .select(select)
        .with_column(policy::status_expr(&plan.policy, BADCOL));
    // Identity: the split.
    let mut lf = match (&plan.output.split, job.key) {
        (Some((train, validation, test)), Some(k)) => lf.with_column(split_expr(
            col(plan.policy.subject_column.as_str()),
            k,
            [*train, *validation, *test],
        )),
        _ => lf.with_column(lit(0i32).cast(DataType::Int32).alias(SPLIT)),
    };
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
    // The gate: identifier values of every row, kept or dropped, hashed in parallel; only the
    // keyed hashes reach the sink.
    for (i, c) in id_columns.iter().enumerate() {
        outputs.push(id_key_expr(value_hasher, c).alias(id_column_name(i)));
    }
    outputs.extend([col(STATUS), col(ROW), col(FILE), col(BADCOL), col(SPLIT)]);
    Ok(lf.select(outputs))
}

fn id_column_name(i: usize) -> String {
    format!("__idv{i}")
}

/// String identifier columns: their values of every input row feed the leak gate.
fn identifier_columns(plan: &Plan) -> Vec<String> {
    // Text columns search the same string identifier columns by default, so what the gate
    // calls a leak is something a redact rule can remove.
    plan.columns
        .iter()
        .filter(|c| c.class == ColumnClass::Identifier && c.ty == ColumnType::String)
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

/// Scanner, actions and counters for each text column.
fn text_runtimes(
    plan: &Plan,
    key: Option<&Arc<Key>>,
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
        out.push(Arc::new(TextRuntime {
            column: t.column.clone(),
            stats: Arc::new(TextStats::new(policy.slots())),
            scanner,
            policy,
            token,
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
