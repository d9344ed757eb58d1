//! `privprep risk FILE --qi …`: the re-identification risk of any Parquet, CSV or NDJSON file, as the
//! `[risk]` stage measures the rows a run writes: equivalence classes on the quasi-identifiers,
//! the smallest class (the k the file reaches), the classes and rows below a k, and for each
//! sensitive column its l-diversity. One streaming group-by: a count per class, never the rows.

use std::path::Path;

use polars::prelude::*;
use serde::Serialize;

/// What `privprep risk` found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Assessment {
    pub rows: u64,
    pub classes: u64,
    /// The smallest class.
    pub k_reached: u64,
    pub k: u32,
    pub classes_below_k: u64,
    pub rows_below_k: u64,
    /// Per sensitive column: the fewest distinct values in one class.
    pub l_diversity: Vec<(String, u64)>,
}

/// Why a file could not be assessed.
#[derive(Debug, thiserror::Error)]
pub enum RiskError {
    #[error("{path}: {message}\n  = hint: give a Parquet, CSV or NDJSON file and column names it has (an encrypted privprep output cannot be read without its keys)")]
    Read { path: String, message: String },
}

/// Classes of `qis` in the file at `path`, against `k`, with the l-diversity of `sensitive`.
pub fn assess(
    path: &Path,
    qis: &[String],
    k: u32,
    sensitive: &[String],
) -> Result<Assessment, RiskError> {
    let err = |e: PolarsError| RiskError::Read {
        path: path.display().to_string(),
        message: crate::ingest::redact(&e),
    };
    let pl_path = PlPath::new(&path.display().to_string());
    // The format by the file's extension, as `scan` and `[source]` tell it.
    let lf = match crate::SourceFormat::from_path(path) {
        Some(crate::SourceFormat::Csv) => {
            LazyCsvReader::new(pl_path).with_has_header(true).finish()
        }
        Some(crate::SourceFormat::Ndjson) => LazyJsonLineReader::new(pl_path).finish(),
        _ => LazyFrame::scan_parquet(pl_path, ScanArgsParquet::default()),
    }
    .map_err(err)?;
    let mut aggs = vec![len().alias("__n")];
    for (i, s) in sensitive.iter().enumerate() {
        aggs.push(
            col(s.as_str())
                .drop_nulls()
                .n_unique()
                .alias(format!("__l{i}")),
        );
    }
    let df = lf
        .group_by(qis.iter().map(|q| col(q.as_str())).collect::<Vec<_>>())
        .agg(aggs)
        .collect_with_engine(Engine::Streaming)
        .map_err(err)?;
    let sizes = df
        .column("__n")
        .map_err(err)?
        .cast(&DataType::UInt64)
        .map_err(err)?;
    let sizes: Vec<u64> = sizes.u64().map_err(err)?.into_no_null_iter().collect();
    let below: Vec<u64> = sizes
        .iter()
        .copied()
        .filter(|n| *n < u64::from(k))
        .collect();
    let mut l_diversity = Vec::new();
    for (i, s) in sensitive.iter().enumerate() {
        let l = df
            .column(&format!("__l{i}"))
            .map_err(err)?
            .cast(&DataType::UInt64)
            .map_err(err)?;
        let min = l.u64().map_err(err)?.into_no_null_iter().min().unwrap_or(0);
        l_diversity.push((s.clone(), min));
    }
    Ok(Assessment {
        rows: sizes.iter().sum(),
        classes: sizes.len() as u64,
        k_reached: sizes.iter().copied().min().unwrap_or(0),
        k,
        classes_below_k: below.len() as u64,
        rows_below_k: below.iter().sum(),
        l_diversity,
    })
}
