//! The leak gate: before outputs are committed, every string value in them is scanned again.
//!
//! Redaction can miss: a detector is switched off, a column is kept by mistake, a person's
//! address sits in someone else's ticket. The gate reads back what the run wrote and looks for
//! two things: hits of every detector, and the exact identifier values of the input (names,
//! e-mails, phone numbers, ids of every row read, kept or dropped). Those values are held only
//! as 64-bit keyed hashes of their normalized words, under a key that lives in memory for one
//! run, so the set cannot be reversed or carried away. Counts come out, never values.
//!
//! The hashing, the set and the check of a batch of values are kernels ([`ValueHasher`],
//! [`IdentifierSet`], `privprep_kernels::gate::check_values`), the same on every engine; this
//! module reads the outputs back with arrow-rs and reports per column.

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use privprep_kernels::gate::check_values;
use serde::{Deserialize, Serialize};

use super::detect::Scanner;
use crate::lineage::record::GateResult;

pub use privprep_kernels::gate::{DistinctKeys, GateCounts, IdentifierSet, ValueHasher};

/// The gate: every detector plus the identifier values.
pub struct Gate {
    pub scanner: Scanner,
    pub ids: IdentifierSet,
    /// Names of the detector slots, for reporting (`email`, …, user-defined names).
    pub slot_names: Vec<String>,
}

/// The gate's verdict on one output column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateColumn {
    pub column: String,
    /// `clean`, `leak`, or `exempt` (an identifier column the pipeline keeps as is).
    pub result: GateResult,
    /// Non-null values scanned, over all output files.
    pub values_scanned: u64,
    /// Hits by detector; `identifier_value` counts input identifier values found.
    pub hits: BTreeMap<String, u64>,
}

/// Why the gate could not read an output back.
#[derive(Debug, thiserror::Error)]
#[error("leak gate: cannot read back {path}: {message}")]
pub struct GateError {
    pub path: String,
    pub message: String,
}

impl Gate {
    /// Scans the string columns of `files` (all with the same schema). `exempt` columns are
    /// reported without being scanned.
    pub fn check_files(
        &self,
        files: &[&Path],
        exempt: &[String],
    ) -> Result<Vec<GateColumn>, GateError> {
        let mut by_column: BTreeMap<String, (u64, Vec<u64>, u64)> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        for path in files {
            let err = |message: String| GateError {
                path: path.display().to_string(),
                message,
            };
            let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
            let builder =
                ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| err(e.to_string()))?;
            let schema = builder.schema().clone();
            let wanted: Vec<usize> = schema
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| {
                    matches!(
                        f.data_type(),
                        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                    )
                })
                .map(|(i, _)| i)
                .collect();
            for f in schema.fields() {
                if !order.contains(f.name()) {
                    order.push(f.name().clone());
                }
            }
            if wanted.is_empty() {
                continue;
            }
            let mask = ProjectionMask::roots(builder.parquet_schema(), wanted);
            // Large batches, so each is split across all cores below.
            let reader = builder
                .with_batch_size(64 * 1024)
                .with_projection(mask)
                .build()
                .map_err(|e| err(e.to_string()))?;
            for batch in reader {
                let batch = batch.map_err(|e| err(e.to_string()))?;
                for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
                    if exempt.contains(field.name()) {
                        continue;
                    }
                    let values: Vec<Option<&str>> = match array.data_type() {
                        DataType::Utf8 => array.as_string::<i32>().iter().collect(),
                        DataType::LargeUtf8 => array.as_string::<i64>().iter().collect(),
                        DataType::Utf8View => array.as_string_view().iter().collect(),
                        _ => continue,
                    };
                    let found =
                        check_values(&self.scanner, &self.ids, self.slot_names.len(), &values);
                    let entry = by_column
                        .entry(field.name().clone())
                        .or_insert_with(|| (0, vec![0; self.slot_names.len()], 0));
                    entry.0 += found.scanned;
                    for (a, b) in entry.1.iter_mut().zip(found.hits) {
                        *a += b;
                    }
                    entry.2 += found.identifier_values;
                }
            }
        }
        let mut out = Vec::new();
        for column in order {
            if exempt.contains(&column) {
                out.push(GateColumn {
                    column,
                    result: GateResult::Exempt,
                    values_scanned: 0,
                    hits: BTreeMap::new(),
                });
                continue;
            }
            let Some((scanned, hits, ids)) = by_column.remove(&column) else {
                continue;
            };
            let mut named: BTreeMap<String, u64> = hits
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| (self.slot_names[i].clone(), *n))
                .collect();
            if ids > 0 {
                named.insert("identifier_value".into(), ids);
            }
            out.push(GateColumn {
                column,
                result: if named.is_empty() {
                    GateResult::Clean
                } else {
                    GateResult::Leak
                },
                values_scanned: scanned,
                hits: named,
            });
        }
        Ok(out)
    }
}
