//! `privprep._native`: the kernels' row engine over pyarrow batches.
//!
//! Batches cross through the Arrow C Data Interface (`arrow-pyarrow`): no value is copied on
//! the way in or out, only the engine's own outputs are built. The engine runs with the GIL
//! released, so Python threads (and Spark's Arrow readers) go on beside it. Keys arrive as
//! text from the caller, who read them from a key file or the environment; they are never
//! returned, printed or kept beyond the engine.

use arrow_array::RecordBatch;
use arrow_pyarrow::{FromPyArrow, ToPyArrow};
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

/// The id (hash prefix) of a key's text, as lineage records it.
#[pyfunction]
fn key_id(text: &str) -> PyResult<String> {
    Ok(key(Some(text), "key")?.map(|k| k.id()).unwrap_or_default())
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RowEngine>()?;
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
