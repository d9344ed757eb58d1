//! Subject rights over what privprep wrote: which committed outputs hold a data subject.
//!
//! Every succeeded run lists, per output, the set of subjects its rows came from (the subject
//! index, [`crate::lineage::index`]). `privprep subject find` hashes the requested id with the
//! store's index key and looks it up in every set: a binary search of a few reads per output,
//! so a store of a hundred outputs of a million subjects each answers at once. The id itself is
//! never stored or printed: reports name a subject by its position in the request and by its
//! keyed hash.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::identity::keys::{resolve_index_key, KeyError};
use crate::lineage::{index, LineageError, RunRecord, Store};
use privprep_kernels::subject::SubjectHasher;

mod forget;
pub use forget::{forget, sweep, ForgetError};

/// One output that holds a subject.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Holding {
    /// Chain position and id of the run that wrote it.
    pub seq: i64,
    pub run_id: String,
    pub pipeline: String,
    pub finished_at: String,
    /// The datasets the run read.
    pub datasets: Vec<String>,
    /// The policy's purpose, and the key the run used (its id).
    pub purpose: String,
    pub key_id: Option<String>,
    /// `data` (a data file, `split` names which) or `release`.
    pub kind: String,
    pub split: Option<String>,
    pub path: String,
    /// Whether the file is still there, and still the file the run wrote (its SHA-256).
    pub exists: bool,
    pub unchanged: bool,
    /// The later run that wrote the same path, when one did: the file there now is that
    /// run's (which is listed too if it holds the subject).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
}

/// What was found of one requested subject.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Finding {
    /// 1-based position of the id in the request (the id itself is not repeated).
    pub subject: usize,
    /// The subject's keyed hash in the index, hex: the same id always gives the same one.
    pub key: String,
    pub holdings: Vec<Holding>,
    /// Every erasure of the subject so far, oldest first.
    pub erasures: Vec<ErasureDone>,
}

/// An erasure that named a subject.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ErasureDone {
    pub erasure_id: String,
    /// `forget` or `sweep`.
    pub command: String,
    pub requested_at: String,
    /// `succeeded` or `failed` (a failed erasure still put the subject on the erasure list).
    pub status: String,
    /// Outputs it regenerated, deleted, or could not regenerate.
    pub regenerated: usize,
    pub deleted: usize,
    pub unregenerable: usize,
}

/// Why a search could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error(transparent)]
    Lineage(#[from] LineageError),
    #[error("subject index key: {0}")]
    Key(#[from] KeyError),
    #[error("subject set {} of run {run_id}: {error}\n  = hint: `privprep lineage verify` checks every set against its record", .path.display())]
    Set {
        run_id: String,
        path: PathBuf,
        error: std::io::Error,
    },
}

/// One output holding a subject, before its file is checked: (record index, output, kind).
type Held = (usize, String, String);

/// Every committed output of the store that holds each of `ids` (empty ids find nothing).
pub fn find(store: &Store, state_dir: &Path, ids: &[String]) -> Result<Vec<Finding>, FindError> {
    let hasher = SubjectHasher::new(&resolve_index_key(state_dir)?);
    let records = store.indexed_records()?;
    find_in(&records, &index::index_dir(store.path()), &hasher, ids)
}

/// [`find`] over the indexed `records` whose sets are in `dir`. Each set file is read once for
/// all ids, and each output found is checked once (exists, SHA-256 as recorded), the files in
/// parallel.
fn find_in(
    records: &[(i64, RunRecord)],
    dir: &Path,
    hasher: &SubjectHasher,
    ids: &[String],
) -> Result<Vec<Finding>, FindError> {
    use rayon::prelude::*;
    use std::collections::HashMap;
    let keys: Vec<Option<u64>> = ids.iter().map(|id| hasher.key(id)).collect();
    let mut held: Vec<Vec<Held>> = vec![Vec::new(); ids.len()];
    // The releases of a run share one set file.
    let mut read: HashMap<&str, Vec<bool>> = HashMap::new();
    for (r, (_, record)) in records.iter().enumerate() {
        for set in &record.subject_index {
            if !read.contains_key(set.file.as_str()) {
                let path = dir.join(&set.file);
                let holds = index::set_holds(&path, &keys).map_err(|error| FindError::Set {
                    run_id: record.run_id.clone(),
                    path,
                    error,
                })?;
                read.insert(set.file.as_str(), holds);
            }
            for (n, holds) in read[set.file.as_str()].iter().enumerate() {
                if *holds {
                    held[n].push((r, set.output.clone(), set.kind.clone()));
                }
            }
        }
    }
    let mut paths: Vec<&str> = held
        .iter()
        .flat_map(|h| h.iter().map(|(_, output, _)| output.as_str()))
        .collect();
    paths.sort_unstable();
    paths.dedup();
    let checked: HashMap<&str, Option<String>> = paths
        .par_iter()
        .map(|p| (*p, crate::emit::sha256_file(Path::new(p)).ok()))
        .collect();
    // The run (or erasure, sweep, rotation) that last wrote or deleted each path.
    let last = crate::lineage::record::last_touches(records.iter().map(|(_, r)| r));
    Ok(keys
        .iter()
        .zip(&held)
        .enumerate()
        .map(|(n, (key, held))| Finding {
            subject: n + 1,
            key: key.map(|k| format!("{k:016x}")).unwrap_or_default(),
            erasures: key.map(|k| erasures_of(records, k)).unwrap_or_default(),
            holdings: held
                .iter()
                .map(|(r, output, kind)| {
                    let (seq, record) = &records[*r];
                    let mut h = holding(
                        *seq,
                        record,
                        output,
                        kind,
                        checked.get(output.as_str()).cloned().flatten(),
                    );
                    h.replaced_by = last
                        .get(output.as_str())
                        .map(|t| &t.record.run_id)
                        .filter(|id| **id != record.run_id)
                        .cloned();
                    h
                })
                .collect(),
        })
        .collect())
}

/// The erasures among `records` that named the subject whose index key is `key`.
fn erasures_of(records: &[(i64, RunRecord)], key: u64) -> Vec<ErasureDone> {
    let hex = format!("{key:016x}");
    records
        .iter()
        .filter_map(|(_, r)| r.erasure.as_ref().map(|e| (r, e)))
        .filter(|(_, e)| e.subjects.contains(&hex))
        .map(|(r, e)| {
            let count = |action: &str| e.outputs.iter().filter(|o| o.action == action).count();
            ErasureDone {
                erasure_id: r.run_id.clone(),
                command: e.command.clone(),
                requested_at: e.requested_at.clone(),
                status: r.status.as_str().to_string(),
                regenerated: count("regenerated"),
                deleted: count("deleted"),
                unregenerable: count("unregenerable"),
            }
        })
        .collect()
}

/// The facts of one output of `record` that holds a subject; `sha256` is the file's now
/// (`None`: gone).
fn holding(
    seq: i64,
    record: &RunRecord,
    output: &str,
    kind: &str,
    sha256: Option<String>,
) -> Holding {
    let split = match kind {
        "data" => record
            .outputs
            .iter()
            .find(|o| o.path == output)
            .map(|o| o.split.clone()),
        _ => None,
    };
    let recorded = record.recorded_file(output).map(|(sha, _)| sha);
    let exists = sha256.is_some();
    let unchanged = sha256.is_some_and(|s| Some(s.as_str()) == recorded);
    let mut datasets: Vec<String> = record.inputs.iter().map(|i| i.dataset_id.clone()).collect();
    datasets.sort();
    datasets.dedup();
    Holding {
        seq,
        run_id: record.run_id.clone(),
        pipeline: record.pipeline_name.clone(),
        finished_at: record.finished_at.clone(),
        datasets,
        purpose: record.policy.purpose.clone(),
        key_id: record.key_id.clone(),
        kind: kind.to_string(),
        split,
        path: output.to_string(),
        exists,
        unchanged,
        replaced_by: None,
    }
}

/// The findings for a terminal: per subject, each output holding it, or that none does.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        if f.key.is_empty() {
            out.push_str(&format!(
                "subject {}: empty id, nothing to find\n",
                f.subject
            ));
            continue;
        }
        let erasures: String = f
            .erasures
            .iter()
            .map(|e| {
                format!(
                    "  erased by {} {} ({}, {}): {} regenerated, {} deleted, {} unregenerable\n",
                    e.command,
                    e.erasure_id,
                    e.requested_at,
                    e.status,
                    e.regenerated,
                    e.deleted,
                    e.unregenerable
                )
            })
            .collect();
        if f.holdings.is_empty() {
            out.push_str(&format!(
                "subject {} (key {}): in no committed output\n{erasures}",
                f.subject, f.key
            ));
            continue;
        }
        out.push_str(&format!(
            "subject {} (key {}): in {} output(s)\n",
            f.subject,
            f.key,
            f.holdings.len()
        ));
        for h in &f.holdings {
            let replaced;
            let state = match (&h.replaced_by, h.exists, h.unchanged) {
                (Some(run), _, _) => {
                    replaced = format!("replaced by run {run}");
                    replaced.as_str()
                }
                (None, false, _) => "gone",
                (None, true, false) => "changed since",
                (None, true, true) => "present",
            };
            out.push_str(&format!(
                "  {} {:<10} {}  run {} ({}, {}), datasets {}, purpose {}, key {}  [{}]\n",
                h.kind,
                h.split.as_deref().unwrap_or("-"),
                h.path,
                h.run_id,
                h.pipeline,
                h.finished_at,
                h.datasets.join(","),
                h.purpose,
                h.key_id.as_deref().unwrap_or("-"),
                state
            ));
        }
        out.push_str(&erasures);
    }
    out
}

/// One output of an access request: its facts, and the subject's rows in it (or why they
/// cannot be picked out).
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    #[serde(flatten)]
    pub holding: Holding,
    /// The subject's rows, one JSON object each, as the file holds them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<Vec<serde_json::Value>>,
    /// Why the rows are not here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_unavailable: Option<String>,
}

/// The answer to an access request: every output that holds the subject, with its rows.
#[derive(Debug, Clone, Serialize)]
pub struct Bundle {
    /// The subject's keyed hash in the index (the id is the requester's to add).
    pub subject_key: String,
    pub generated_at: String,
    pub privprep_version: String,
    pub outputs: Vec<Exported>,
}

/// Why an export could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Find(#[from] FindError),
    #[error("output {path}: cannot read the subject's rows: {message}")]
    Read { path: String, message: String },
}

/// The access request for subject `id`: every committed output that holds it, and from each
/// existing data file the rows that are the subject's, found by the value the subject column
/// holds there (the id, its hash, or its token under `key`, which must be the run's key).
pub fn export(
    store: &Store,
    state_dir: &Path,
    id: &str,
    key: Option<&crate::identity::Key>,
) -> Result<Bundle, ExportError> {
    let records = store.indexed_records().map_err(FindError::from)?;
    export_from(&records, store, state_dir, id, key)
}

/// [`export`] over the store's indexed `records`, already read.
fn export_from(
    records: &[(i64, RunRecord)],
    store: &Store,
    state_dir: &Path,
    id: &str,
    key: Option<&crate::identity::Key>,
) -> Result<Bundle, ExportError> {
    let hasher = SubjectHasher::new(&resolve_index_key(state_dir).map_err(FindError::from)?);
    let dir = index::index_dir(store.path());
    let finding = find_in(records, &dir, &hasher, &[id.to_owned()])?
        .pop()
        .unwrap_or(Finding {
            subject: 1,
            key: String::new(),
            holdings: Vec::new(),
            erasures: Vec::new(),
        });
    let mut outputs = Vec::new();
    for holding in finding.holdings {
        // Every holding comes from one of `records`; a file an erasure regenerated is read as
        // the run it was regenerated from wrote it.
        let record = records
            .iter()
            .find(|(seq, _)| *seq == holding.seq)
            .map(|(_, r)| source_record(records, r, &holding.path));
        let picked = match record {
            Some(record) => pick(&holding, record, (id.trim(), state_dir), key)?,
            None => Err("the run's record is gone".to_string()),
        };
        let (rows, rows_unavailable) = match picked {
            Ok(rows) => (Some(rows), None),
            Err(why) => (None, Some(why)),
        };
        outputs.push(Exported {
            holding,
            rows,
            rows_unavailable,
        });
    }
    Ok(Bundle {
        subject_key: finding.key,
        generated_at: chrono::Utc::now().to_rfc3339(),
        privprep_version: env!("CARGO_PKG_VERSION").to_string(),
        outputs,
    })
}

/// One distinct surrogate in a subject's rows, and how many of the rows hold it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SurrogateValue {
    pub surrogate: String,
    pub rows: u64,
}

/// One output that holds the subject and has a surrogate column made from the asked column.
#[derive(Debug, Clone, Serialize)]
pub struct SurrogateHolding {
    pub run_id: String,
    pub path: String,
    /// The key the run's surrogates are drawn under (its id).
    pub key_id: Option<String>,
    /// The output column and how the run made it (e.g. `surrogate(email, hmac-sha256)`).
    pub column: String,
    pub transformation: String,
    /// The subject's rows in the file, and the distinct surrogates they hold; `None` when the
    /// rows could not be picked (`rows_unavailable` says why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub surrogates: Option<Vec<SurrogateValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_unavailable: Option<String>,
}

/// What `privprep surrogate ID --column C` answers: in every output that holds subject `id`,
/// the surrogates the subject's rows hold in the columns the run made from input column `C`
/// with `surrogate`. The rows are picked as `subject export` picks them (the subject column
/// tokenized or replaced needs the run's key); the source is not read again, and no input
/// value is shown.
#[derive(Debug, Clone, Serialize)]
pub struct SurrogateAnswer {
    pub subject_key: String,
    pub column: String,
    pub outputs: Vec<SurrogateHolding>,
}

/// The surrogates of subject `id`'s value of input column `column`, in every output holding
/// the subject (see [`SurrogateAnswer`]).
pub fn surrogates_of(
    store: &Store,
    state_dir: &Path,
    id: &str,
    column: &str,
    key: Option<&crate::identity::Key>,
) -> Result<SurrogateAnswer, ExportError> {
    let records = store.indexed_records().map_err(FindError::from)?;
    let bundle = export_from(&records, store, state_dir, id, key)?;
    let mut outputs = Vec::new();
    for o in bundle.outputs {
        // DP releases and synthetic tables hold no subject's rows.
        if o.holding.kind != "data" {
            continue;
        }
        let Some(holder) = records
            .iter()
            .find(|(seq, _)| *seq == o.holding.seq)
            .map(|(_, r)| r)
        else {
            continue;
        };
        let record = source_record(&records, holder, &o.holding.path);
        let made = record.column_lineage.iter().filter(|c| {
            c.transformation.starts_with("surrogate") && c.input_columns.iter().any(|i| i == column)
        });
        for lineage in made {
            let surrogates = o.rows.as_ref().map(|rows| {
                let mut counts: BTreeMap<String, u64> = BTreeMap::new();
                for r in rows {
                    match &r[&lineage.output_column] {
                        serde_json::Value::Null => {}
                        serde_json::Value::String(v) => *counts.entry(v.clone()).or_default() += 1,
                        v => *counts.entry(v.to_string()).or_default() += 1,
                    }
                }
                counts
                    .into_iter()
                    .map(|(surrogate, rows)| SurrogateValue { surrogate, rows })
                    .collect()
            });
            outputs.push(SurrogateHolding {
                rows: o.rows.as_ref().map(|r| r.len() as u64),
                run_id: o.holding.run_id.clone(),
                path: o.holding.path.clone(),
                // A file an erasure regenerated holds the surrogates of its source run's key.
                key_id: record.key_id.clone(),
                column: lineage.output_column.clone(),
                transformation: lineage.transformation.clone(),
                surrogates,
                rows_unavailable: o.rows_unavailable.clone(),
            });
        }
    }
    Ok(SurrogateAnswer {
        subject_key: bundle.subject_key,
        column: column.to_string(),
        outputs,
    })
}

/// The run whose pipeline wrote `holder`'s file at `path`: `holder`, or the run an erasure
/// regenerated (or a rotation re-encrypted) it from.
fn source_record<'a>(
    records: &'a [(i64, RunRecord)],
    holder: &'a RunRecord,
    path: &str,
) -> &'a RunRecord {
    let source = holder.source_run_of(path);
    records
        .iter()
        .find(|(_, r)| r.run_id == source)
        .map(|(_, r)| r)
        .unwrap_or(holder)
}

/// The subject's rows of one holding, or why they cannot be picked.
fn pick(
    holding: &Holding,
    record: &RunRecord,
    (id, state_dir): (&str, &Path),
    key: Option<&crate::identity::Key>,
) -> Result<Result<Vec<serde_json::Value>, String>, ExportError> {
    use crate::identity::{TokenEncoding, Tokenizer};
    if holding.kind != "data" {
        return Ok(Err("a DP release holds noisy aggregates, not rows; its privacy guarantee bounds what it reveals about any one subject".into()));
    }
    if !holding.exists {
        return Ok(Err("the file is gone".into()));
    }
    let Some(column) = record.subject_column.as_ref() else {
        return Ok(Err(
            "the run's record does not say how the subject column was written".into(),
        ));
    };
    let Some(output) = column.output.as_deref() else {
        return Ok(Err("the pipeline dropped the subject column: the subject's rows cannot be told apart from others'".into()));
    };
    let value = match column.action.as_str() {
        "keep" => id.to_string(),
        "hash" => {
            let mut out = String::new();
            crate::identity::sha256_hex_into(id, &mut out);
            out
        }
        "surrogate" => {
            let Some(key) = key.filter(|k| record.key_id.as_deref() == Some(k.id().as_str()))
            else {
                return Ok(Err(format!(
                    "the subject column holds surrogates of key {}; give that key (--key-file, or the environment) to pick the rows",
                    record.key_id.as_deref().unwrap_or("-")
                )));
            };
            let kind = column
                .surrogate_kind
                .as_deref()
                .and_then(privprep_kernels::surrogate::SurrogateKind::parse)
                .unwrap_or(privprep_kernels::surrogate::SurrogateKind::Id);
            privprep_kernels::surrogate::Surrogates::new(key).surrogate(kind, id)
        }
        "tokenize" => {
            let Some(key) = key.filter(|k| record.key_id.as_deref() == Some(k.id().as_str()))
            else {
                return Ok(Err(format!(
                    "the subject column holds tokens of key {}; give that key (--key-file, or the environment) to pick the rows",
                    record.key_id.as_deref().unwrap_or("-")
                )));
            };
            let encoding = match column.token_encoding.as_deref() {
                Some("base64url") => TokenEncoding::Base64Url,
                _ => TokenEncoding::Hex,
            };
            let tokenizer = Tokenizer::new(key, column.token_bits.unwrap_or(128), encoding)
                .map_err(|e| ExportError::Read {
                    path: holding.path.clone(),
                    message: e.to_string(),
                })?;
            let mut out = String::new();
            tokenizer.token_into(id, &mut out);
            out
        }
        _ => {
            return Ok(Err(
                "the subject column is masked or generalized: its rows cannot be told apart".into(),
            ))
        }
    };
    // An encrypted file is read with its master keys, when they are here.
    let footer = crate::inspect::privprep_footer(Path::new(&holding.path));
    let encryption: Option<crate::emit::encryption::EncryptionRecord> =
        footer.and_then(|f| serde_json::from_value(f["encryption"].clone()).ok());
    match encryption {
        None => rows_where(&holding.path, output, &value).map(Ok),
        Some(e) => {
            let mut keys = crate::emit::encryption::MasterKeys::new();
            for r in [&e.footer_key, &e.column_key] {
                match crate::identity::keys::resolve_master_key(&r.id, state_dir, false) {
                    Ok((k, _)) if k.id() == r.fingerprint => keys.insert(&r.id, k),
                    _ => {
                        return Ok(Err(format!(
                            "the file is encrypted and master key `{}` (fingerprint {}) is not available here",
                            r.id, r.fingerprint
                        )))
                    }
                }
            }
            encrypted_rows_where(&holding.path, output, &value, &keys).map(Ok)
        }
    }
}

/// The rows of the encrypted Parquet file at `path` whose `column` is `value`, read with
/// `keys`, as JSON objects (numbers and booleans as such, other values as text).
fn encrypted_rows_where(
    path: &str,
    column: &str,
    value: &str,
    keys: &crate::emit::encryption::MasterKeys,
) -> Result<Vec<serde_json::Value>, ExportError> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Float64Type, Int64Type};
    let err = |message: String| ExportError::Read {
        path: path.to_string(),
        message,
    };
    let reader = keys
        .reader(Path::new(path))
        .map_err(err)?
        .build()
        .map_err(|e| err(e.to_string()))?;
    let cast = |a: &arrow::array::ArrayRef, t: &DataType| {
        arrow::compute::cast(a, t).map_err(|e| err(e.to_string()))
    };
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| err(e.to_string()))?;
        let Some(key) = batch.column_by_name(column) else {
            return Err(err(format!("no column `{column}`")));
        };
        let key = cast(key, &DataType::Utf8)?;
        let key = key.as_string::<i32>();
        let picked: Vec<usize> = (0..batch.num_rows())
            .filter(|i| !key.is_null(*i) && key.value(*i) == value)
            .collect();
        if picked.is_empty() {
            continue;
        }
        let mut objects = vec![serde_json::Map::new(); picked.len()];
        for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
            // The picked rows of one column: numbers and booleans as such, the rest as text.
            fn at<A: Array>(
                a: &A,
                picked: &[usize],
                value: impl Fn(usize) -> serde_json::Value,
            ) -> Vec<serde_json::Value> {
                picked
                    .iter()
                    .map(|i| {
                        if a.is_null(*i) {
                            serde_json::Value::Null
                        } else {
                            value(*i)
                        }
                    })
                    .collect()
            }
            let values = match array.data_type() {
                t if t.is_integer() => {
                    let a = cast(array, &DataType::Int64)?;
                    let a = a.as_primitive::<Int64Type>();
                    at(a, &picked, |i| a.value(i).into())
                }
                t if t.is_floating() => {
                    let a = cast(array, &DataType::Float64)?;
                    let a = a.as_primitive::<Float64Type>();
                    at(a, &picked, |i| a.value(i).into())
                }
                DataType::Boolean => {
                    let a = array.as_boolean();
                    at(a, &picked, |i| a.value(i).into())
                }
                _ => {
                    let a = cast(array, &DataType::Utf8)?;
                    let a = a.as_string::<i32>();
                    at(a, &picked, |i| a.value(i).into())
                }
            };
            for (o, v) in objects.iter_mut().zip(values) {
                o.insert(field.name().clone(), v);
            }
        }
        rows.extend(objects.into_iter().map(serde_json::Value::Object));
    }
    Ok(rows)
}

/// The rows of the Parquet file at `path` whose `column` is `value`, as JSON objects.
fn rows_where(
    path: &str,
    column: &str,
    value: &str,
) -> Result<Vec<serde_json::Value>, ExportError> {
    use polars::prelude::*;
    let err = |e: PolarsError| ExportError::Read {
        path: path.to_string(),
        message: crate::ingest::redact(&e),
    };
    let mut df = LazyFrame::scan_parquet(PlPath::new(path), ScanArgsParquet::default())
        .map_err(err)?
        .filter(
            col(column)
                .cast(DataType::String)
                .eq(lit(value.to_string())),
        )
        .collect()
        .map_err(err)?;
    let mut buf = Vec::new();
    JsonWriter::new(&mut buf)
        .with_json_format(JsonFormat::Json)
        .finish(&mut df)
        .map_err(err)?;
    let rows: serde_json::Value = serde_json::from_slice(&buf).map_err(|e| ExportError::Read {
        path: path.to_string(),
        message: e.to_string(),
    })?;
    Ok(rows.as_array().cloned().unwrap_or_default())
}
