//! `privprep._native`: the kernels' row engine over pyarrow batches.
//!
//! Batches cross through the Arrow C Data Interface (`arrow-pyarrow`): no value is copied on
//! the way in or out, only the engine's own outputs are built. The engine runs with the GIL
//! released, so Python threads (and Spark's Arrow readers) go on beside it. Keys arrive as
//! text from the caller, who read them from a key file or the environment; they are never
//! returned, printed or kept beyond the engine.

use arrow_array::RecordBatch;
use arrow_pyarrow::{FromPyArrow, ToPyArrow};
use privprep_kernels::gate::ValueHasher;
use privprep_kernels::key::Key;
use privprep_kernels::rows::{self, RowPlan};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The row stages of one plan (`privprep plan FILE --format json`), with its keys loaded.
#[pyclass(frozen, module = "privprep._native")]
struct RowEngine {
    inner: rows::RowEngine,
}

fn key(text: Option<&str>, what: &str) -> PyResult<Option<Key>> {
    text.map(|t| {
        Key::parse(t.trim()).map_err(|e| PyValueError::new_err(format!("the {what}: {e}")))
    })
    .transpose()
}

fn value_error(e: rows::RowError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

#[pymethods]
impl RowEngine {
    /// `plan_json`: the plan as `privprep plan` prints it. `key`: the run key's text (hex or
    /// base64, as in a key file), needed when the plan tokenizes, splits or gives
    /// surrogates. `index_key`: the subject index key's text (`<state dir>/keys/index.key`),
    /// needed for revocations, erasures and subject-index keys.
    #[new]
    #[pyo3(signature = (plan_json, key=None, index_key=None))]
    fn new(plan_json: &str, key: Option<&str>, index_key: Option<&str>) -> PyResult<Self> {
        let plan = RowPlan::from_json(plan_json).map_err(value_error)?;
        let run_key = self::key(key, "run key")?;
        let index = self::key(index_key, "subject index key")?;
        let inner =
            rows::RowEngine::new(plan, run_key.as_ref(), index.as_ref()).map_err(value_error)?;
        Ok(RowEngine { inner })
    }

    /// Every row of a `pyarrow.RecordBatch` through the row stages: the output columns (null
    /// where the row is not kept), then `__status`, `__split`, `__badcol`, `__subject_key`.
    fn apply<'py>(
        &self,
        py: Python<'py>,
        batch: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let batch = RecordBatch::from_pyarrow_bound(batch)?;
        let out = py
            .detach(|| self.inner.apply(&batch))
            .map_err(value_error)?;
        out.to_pyarrow(py)
    }

    /// The schema `apply` returns, as a `pyarrow.Schema`.
    fn output_schema<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.inner.output_schema().to_pyarrow(py)
    }

    /// The keys of every surrogate this engine wrote into texts, for the leak gate (`Gate`).
    fn emitted_keys(&self) -> Vec<u64> {
        self.inner.emitted().keys()
    }

    /// Per text column: (column, texts scanned, texts changed, spans replaced per detector
    /// slot, rows dropped), counted over every batch this engine applied.
    fn text_stats(&self) -> Vec<(String, u64, u64, Vec<u64>, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        self.inner
            .text_stats()
            .into_iter()
            .map(|(c, s)| {
                (
                    c,
                    s.texts.load(Relaxed),
                    s.texts_changed.load(Relaxed),
                    s.span_counts(),
                    s.rows_dropped.load(Relaxed),
                )
            })
            .collect()
    }
}

/// The keyed values of a batch's identifier columns (every row, kept or not), as a batch of
/// `key` and `first` (the first word's hash of a value of several words) int64 columns: the
/// 64 bits of each unsigned key, as Spark has no unsigned type. `seed` is the run's two
/// 64-bit gate keys, drawn once on the driver.
#[pyfunction]
fn identifier_keys<'py>(
    py: Python<'py>,
    seed: (u64, u64),
    batch: &Bound<'py, PyAny>,
    columns: Vec<String>,
) -> PyResult<Bound<'py, PyAny>> {
    use arrow_array::Int64Array;
    let batch = RecordBatch::from_pyarrow_bound(batch)?;
    let hasher = ValueHasher::from_seed([seed.0, seed.1]);
    let keys = py
        .detach(|| rows::identifier_keys(&hasher, &batch, &columns))
        .map_err(value_error)?;
    let key: Int64Array = keys.iter().map(|(k, _)| Some(*k as i64)).collect();
    let first: Int64Array = keys.iter().map(|(_, f)| f.map(|f| f as i64)).collect();
    let out = RecordBatch::try_from_iter([
        ("key", std::sync::Arc::new(key) as arrow_array::ArrayRef),
        ("first", std::sync::Arc::new(first) as arrow_array::ArrayRef),
    ])
    .map_err(|e| PyValueError::new_err(e.to_string()))?;
    out.to_pyarrow(py)
}

/// One column's gate counts: (column, values scanned, hits per slot, identifier values).
type ColumnCounts = (String, u64, Vec<u64>, u64);

/// The leak gate over batches of written rows: built from the plan, the run's gate keys and
/// every identifier value's keys (as [`identifier_keys`] gave them, distinct).
#[pyclass(frozen, module = "privprep._native")]
struct Gate {
    inner: rows::BatchGate,
}

#[pymethods]
impl Gate {
    /// `emitted`: the keys of the surrogates the row engines wrote into texts
    /// (`RowEngine.emitted_keys`), which the detectors do not count.
    #[new]
    #[pyo3(signature = (plan_json, seed, keys, emitted = Vec::new()))]
    ///
    /// `keys`: a list of `(key, first)` pairs, or a `pyarrow.Table` of int64 columns `key` and
    /// `first` (as `identifier_keys` gives them).
    fn new(
        plan_json: &str,
        seed: (u64, u64),
        keys: &Bound<'_, PyAny>,
        emitted: Vec<u64>,
    ) -> PyResult<Self> {
        let plan = RowPlan::from_json(plan_json).map_err(value_error)?;
        let hasher = ValueHasher::from_seed([seed.0, seed.1]);
        let pairs: Vec<(u64, Option<u64>)> = match keys.extract::<Vec<(i64, Option<i64>)>>() {
            Ok(list) => list
                .into_iter()
                .map(|(k, f)| (k as u64, f.map(|f| f as u64)))
                .collect(),
            Err(_) => arrow_keys(keys)?,
        };
        let inner =
            rows::BatchGate::new(&plan.gate, hasher, pairs, emitted).map_err(value_error)?;
        Ok(Gate { inner })
    }

    /// Per judged column of a batch of written rows: (column, values scanned, detector hits
    /// per slot, input identifier values found).
    fn check(&self, py: Python<'_>, batch: &Bound<'_, PyAny>) -> PyResult<Vec<ColumnCounts>> {
        let batch = RecordBatch::from_pyarrow_bound(batch)?;
        Ok(py
            .detach(|| self.inner.check(&batch))
            .into_iter()
            .map(|(c, n)| (c, n.scanned, n.hits, n.identifier_values))
            .collect())
    }
}

/// `(key, first)` pairs from a `pyarrow.Table` (or `RecordBatch`) of int64 columns `key` and
/// `first`.
fn arrow_keys(keys: &Bound<'_, PyAny>) -> PyResult<Vec<(u64, Option<u64>)>> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::Array;
    let batches: Vec<RecordBatch> = if keys.hasattr("to_batches")? {
        keys.call_method0("to_batches")?
            .try_iter()?
            .map(|b| RecordBatch::from_pyarrow_bound(&b?))
            .collect::<PyResult<_>>()?
    } else {
        vec![RecordBatch::from_pyarrow_bound(keys)?]
    };
    let mut out = Vec::new();
    for b in batches {
        let column = |name: &str| {
            b.column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<Int64Type>().cloned())
                .ok_or_else(|| {
                    PyValueError::new_err(format!("gate keys need an int64 column `{name}`"))
                })
        };
        let (k, f) = (column("key")?, column("first")?);
        for i in 0..b.num_rows() {
            if k.is_null(i) {
                continue;
            }
            let first = (!f.is_null(i)).then(|| f.value(i) as u64);
            out.push((k.value(i) as u64, first));
        }
    }
    Ok(out)
}

/// The id (hash prefix) of a key's text, as lineage records it.
#[pyfunction]
fn key_id(text: &str) -> PyResult<String> {
    Ok(key(Some(text), "key")?.map(|k| k.id()).unwrap_or_default())
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RowEngine>()?;
    m.add_class::<Gate>()?;
    m.add_function(wrap_pyfunction!(identifier_keys, m)?)?;
    m.add_function(wrap_pyfunction!(key_id, m)?)?;
    m.add("ROW_PLAN_VERSION", rows::ROW_PLAN_VERSION)?;
    m.add("STATUS", rows::STATUS)?;
    m.add("SPLIT", rows::SPLIT)?;
    m.add("BADCOL", rows::BADCOL)?;
    m.add("SUBJECT_KEY", rows::SUBJECT_KEY)?;
    let reasons: Vec<(u8, &str)> = privprep_kernels::policy::DropReason::ALL
        .iter()
        .map(|r| (r.code(), r.as_str()))
        .collect();
    m.add("DROP_REASONS", reasons)?;
    Ok(())
}
