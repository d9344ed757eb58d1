//! The leak gate: before outputs are committed, every string value in them is scanned again.
//!
//! Redaction can miss: a detector is switched off, a column is kept by mistake, a person's
//! address sits in someone else's ticket. The gate looks for two things in every string value
//! the run wrote: hits of every detector, and the exact identifier values of the input (names,
//! e-mails, phone numbers, ids of every row read, kept or dropped). Those values are held only
//! as 64-bit keyed hashes of their normalized words, under a key that lives in memory for one
//! run, so the set cannot be reversed or carried away. Counts come out, never values.
//!
//! The two halves run apart ([`GateTally`]): detector hits on the batches the engine writes,
//! while they are in memory. The identifier values too when the pre-scan gathered the set of
//! every input's identifiers before the stream (CSV inputs); otherwise only once the stream is
//! over (only then is the set complete), by reading the string columns of the written files
//! back with arrow-rs, and only when there are identifiers to look for. The hashing, the
//! set and the checks of a batch of values are kernels ([`ValueHasher`], [`IdentifierSet`],
//! `privprep_kernels::gate`), the same on every engine.

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;
use privprep_kernels::gate::{detector_hits, identifier_hits};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::detect::Scanner;
use crate::lineage::record::GateResult;

pub use privprep_kernels::gate::{DistinctKeys, GateCounts, IdentifierSet, ValueHasher};

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

fn gate_error(path: &Path, e: impl std::fmt::Display) -> GateError {
    GateError {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The string types the gate judges.
fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Why the gate could not read an output back.
#[derive(Debug, thiserror::Error)]
#[error("leak gate: cannot read back {path}: {message}")]
pub struct GateError {
    pub path: String,
    pub message: String,
}

/// The gate's counts per output column, gathered in its two halves.
pub struct GateTally {
    /// Names of the detector slots, for reporting (`email`, …, user-defined names).
    slot_names: Vec<String>,
    /// Columns reported without being scanned: identifier columns the pipeline keeps as is.
    exempt: Vec<String>,
    /// Columns only the identifier half judges: surrogate columns, whose every value is a
    /// generated e-mail, phone or name that the detectors would find by design.
    surrogates: Vec<String>,
    /// The surrogates the text stage wrote: the detectors' finds of them are not leaks.
    emitted: Option<std::sync::Arc<privprep_kernels::surrogate::Emitted>>,
    /// Every output column, in order.
    order: Vec<String>,
    /// Per scanned column: values scanned, hits by slot, identifier values found.
    by_column: BTreeMap<String, (u64, Vec<u64>, u64)>,
}

impl GateTally {
    /// An empty tally for outputs with `columns` (in order).
    pub fn new(columns: Vec<String>, exempt: Vec<String>, slot_names: Vec<String>) -> GateTally {
        GateTally {
            slot_names,
            exempt,
            surrogates: Vec::new(),
            emitted: None,
            order: columns,
            by_column: BTreeMap::new(),
        }
    }

    /// Does not count the detectors' finds of the surrogates in `emitted`.
    pub fn with_emitted(
        mut self,
        emitted: std::sync::Arc<privprep_kernels::surrogate::Emitted>,
    ) -> GateTally {
        self.emitted = Some(emitted);
        self
    }

    /// Leaves `columns` (surrogate columns) to the identifier half: no input value may appear
    /// in them, but the detectors' finds there are the surrogates themselves.
    pub fn with_surrogate_columns(mut self, columns: Vec<String>) -> GateTally {
        self.surrogates = columns;
        self
    }

    /// The string columns of `batches` (of one schema) that are judged, with their values,
    /// batch after batch.
    fn judged<'b>(
        &self,
        batches: &'b [RecordBatch],
    ) -> impl Iterator<Item = (&'b str, Vec<Option<&'b str>>)> + use<'b, '_> {
        let schema = batches.first().map(|b| b.schema_ref());
        let fields = schema.map_or(&[][..], |s| &s.fields()[..]);
        fields
            .iter()
            .enumerate()
            .filter(|(_, f)| !self.exempt.contains(f.name()))
            .filter_map(move |(i, f)| {
                let mut values: Vec<Option<&str>> = Vec::new();
                for batch in batches {
                    let array = batch.column(i);
                    match array.data_type() {
                        DataType::Utf8 => values.extend(array.as_string::<i32>().iter()),
                        DataType::LargeUtf8 => values.extend(array.as_string::<i64>().iter()),
                        DataType::Utf8View => values.extend(array.as_string_view().iter()),
                        _ => return None,
                    }
                }
                Some((f.name().as_str(), values))
            })
    }

    fn entry(&mut self, column: &str) -> &mut (u64, Vec<u64>, u64) {
        let slots = self.slot_names.len();
        self.by_column
            .entry(column.to_string())
            .or_insert_with(|| (0, vec![0; slots], 0))
    }

    /// Both halves on batches the run writes (of one schema), while they are in memory, each
    /// column's values gathered once for both: detector hits, and the identifier values of
    /// `ids` when the set was whole before the first row was written (gathered by the
    /// pre-scan).
    pub fn add_hits_in(
        &mut self,
        scanner: &Scanner,
        ids: Option<&IdentifierSet>,
        batches: &[RecordBatch],
    ) {
        let ids = ids.filter(|ids| !ids.is_empty());
        let found: Vec<(&str, GateCounts, u64)> = self
            .judged(batches)
            .map(|(column, values)| {
                let found = ids.map_or(0, |ids| identifier_hits(ids, &values).identifier_values);
                (
                    column,
                    self.detector_counts(scanner, column, &values),
                    found,
                )
            })
            .collect();
        for (column, counts, found) in found {
            let entry = self.entry(column);
            entry.0 += counts.scanned;
            for (a, b) in entry.1.iter_mut().zip(counts.hits) {
                *a += b;
            }
            entry.2 += found;
        }
    }

    /// The detector half on one column's values: surrogate columns are only counted, and the
    /// surrogates the text stage wrote are not hits.
    fn detector_counts(
        &self,
        scanner: &Scanner,
        column: &str,
        values: &[Option<&str>],
    ) -> GateCounts {
        let slots = self.slot_names.len();
        if self.surrogates.iter().any(|c| c == column) {
            GateCounts {
                scanned: values.iter().flatten().count() as u64,
                hits: vec![0; slots],
                ..GateCounts::default()
            }
        } else if let Some(e) = &self.emitted {
            privprep_kernels::gate::detector_hits_except(scanner, slots, values, e)
        } else {
            detector_hits(scanner, slots, values)
        }
    }

    /// Per judged column of `batches`: the identifier values of `ids` found in it.
    fn identifiers_in<'b, 'i>(
        &self,
        ids: &'i IdentifierSet,
        batches: &'b [RecordBatch],
    ) -> impl Iterator<Item = (&'b str, u64)> + use<'b, 'i, '_> {
        self.judged(batches)
            .map(|(column, values)| (column, identifier_hits(ids, &values).identifier_values))
    }

    /// The identifier half: the string columns of `files` (all with the same schema) read
    /// back and searched for the values in `ids`. Nothing is read when `ids` is empty.
    /// Encrypted files are read with `decryption`.
    pub fn add_identifier_hits(
        &mut self,
        ids: &IdentifierSet,
        files: &[&Path],
        decryption: Option<std::sync::Arc<parquet::encryption::decrypt::FileDecryptionProperties>>,
    ) -> Result<(), GateError> {
        if ids.is_empty() {
            return Ok(());
        }
        // Each column of each row group is read back and searched on its own, all in
        // parallel: decoding is most of the work, and a run's row groups are few and unequal
        // (a last, short one). Each file's footer is read once.
        let mut jobs: Vec<(&Path, &ArrowReaderMetadata, &ProjectionMask, usize)> = Vec::new();
        let mut files_meta = Vec::new();
        for path in files {
            let file = std::fs::File::open(path).map_err(|e| gate_error(path, e))?;
            let mut options = ArrowReaderOptions::default();
            if let Some(d) = &decryption {
                options = options.with_file_decryption_properties(d.clone());
            }
            let meta =
                ArrowReaderMetadata::load(&file, options).map_err(|e| gate_error(path, e))?;
            let wanted: Vec<usize> = meta
                .schema()
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| !self.exempt.contains(f.name()) && is_text(f.data_type()))
                .map(|(i, _)| i)
                .collect();
            let masks: Vec<ProjectionMask> = wanted
                .into_iter()
                .map(|c| ProjectionMask::roots(meta.parquet_schema(), [c]))
                .collect();
            files_meta.push((*path, meta, masks));
        }
        for (path, meta, masks) in &files_meta {
            let groups = meta.metadata().num_row_groups();
            for g in 0..groups {
                jobs.extend(masks.iter().map(|m| (*path, meta, m, g)));
            }
        }
        let found = jobs
            .par_iter()
            .map(|(path, meta, mask, group)| {
                self.identifiers_in_group(ids, path, meta, mask, *group)
            })
            .collect::<Result<Vec<_>, GateError>>()?;
        for (column, n) in found.into_iter().flatten() {
            self.entry(&column).2 += n;
        }
        Ok(())
    }

    /// Identifier values found in one row group of a written file, by column.
    fn identifiers_in_group(
        &self,
        ids: &IdentifierSet,
        path: &Path,
        meta: &ArrowReaderMetadata,
        mask: &ProjectionMask,
        group: usize,
    ) -> Result<Vec<(String, u64)>, GateError> {
        let file = std::fs::File::open(path).map_err(|e| gate_error(path, e))?;
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta.clone())
            .with_row_groups(vec![group])
            .with_batch_size(64 * 1024)
            .with_projection(mask.clone())
            .build()
            .map_err(|e| gate_error(path, e))?;
        let mut found = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| gate_error(path, e))?;
            found.extend(
                self.identifiers_in(ids, std::slice::from_ref(&batch))
                    .map(|(column, n)| (column.to_string(), n)),
            );
        }
        Ok(found)
    }

    /// The verdict on every output column, in order: exempt columns as such, string columns
    /// with their counts (columns that held no string value are not judged).
    pub fn verdicts(mut self) -> Vec<GateColumn> {
        let mut out = Vec::new();
        for column in std::mem::take(&mut self.order) {
            if self.exempt.contains(&column) {
                out.push(GateColumn {
                    column,
                    result: GateResult::Exempt,
                    values_scanned: 0,
                    hits: BTreeMap::new(),
                });
                continue;
            }
            let Some((scanned, hits, ids)) = self.by_column.remove(&column) else {
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
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, StringArray};
    use arrow::datatypes::{Field, Schema};
    use privprep_kernels::pii::detect::{Kind, ScannerConfig};
    use proptest::prelude::*;
    use std::sync::Arc;

    fn batch(rows: &[(Option<String>, Option<String>)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("code", DataType::Utf8, true),
            Field::new("note", DataType::Utf8, true),
        ]));
        let code: ArrayRef = Arc::new(StringArray::from_iter(rows.iter().map(|r| r.0.clone())));
        let note: ArrayRef = Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1.clone())));
        RecordBatch::try_new(schema, vec![code, note]).unwrap()
    }

    fn tally() -> GateTally {
        let slots = (0..Kind::FIXED.len())
            .map(|s| {
                privprep_kernels::pii::redact::kind_at(s)
                    .as_str()
                    .to_string()
            })
            .collect();
        GateTally::new(vec!["code".into(), "note".into()], Vec::new(), slots)
    }

    /// A note: plain words, sometimes an e-mail address or a remembered identifier.
    fn note() -> impl Strategy<Value = Option<String>> {
        let word = prop::sample::select(vec![
            "the",
            "parcel",
            "late",
            "ana.lima@example.org",
            "Ana Lima",
            "S1234567",
            "refund",
        ]);
        prop::option::weighted(
            0.9,
            prop::collection::vec(word, 0..6).prop_map(|w| w.join(" ")),
        )
    }

    /// A code column of few values (judged value by value once a batch is large).
    fn code() -> impl Strategy<Value = Option<String>> {
        prop::option::weighted(
            0.95,
            prop::sample::select(vec!["US", "DE", "S1234567", "FR"]).prop_map(str::to_string),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// The gate's thread judges batches several at once: the verdicts are those of judging
        /// them one by one (distinct values counted once per judgment, weighed by occurrences).
        #[test]
        fn batches_judged_together_count_as_judged_one_by_one(
            parts in prop::collection::vec(
                prop::collection::vec((code(), note()), 0..3000),
                1..5,
            ),
        ) {
            let scanner = Scanner::new(&ScannerConfig::default()).unwrap();
            let hasher = ValueHasher::new();
            let keys = DistinctKeys::new();
            keys.insert_all(&hasher, ["Ana Lima", "S1234567"]);
            let ids = IdentifierSet::from_distinct(hasher, keys);
            let batches: Vec<RecordBatch> = parts.iter().map(|p| batch(p)).collect();
            let mut together = tally();
            together.add_hits_in(&scanner, Some(&ids), &batches);
            let mut alone = tally();
            for b in &batches {
                alone.add_hits_in(&scanner, Some(&ids), std::slice::from_ref(b));
            }
            let (together, alone) = (together.verdicts(), alone.verdicts());
            let rows: u64 = parts.iter().map(|p| p.len() as u64).sum();
            prop_assert_eq!(&together, &alone);
            // Every non-null value was scanned, and the notes' e-mails were found.
            let notes = parts.iter().flatten().filter(|r| r.1.is_some()).count() as u64;
            prop_assert_eq!(together[1].values_scanned, notes);
            let mails = parts
                .iter()
                .flatten()
                .filter_map(|r| r.1.as_deref())
                .map(|n| n.matches("ana.lima@example.org").count() as u64)
                .sum::<u64>();
            prop_assert_eq!(together[1].hits.get("email").copied().unwrap_or(0), mails);
            prop_assert!(together[0].values_scanned <= rows);
        }
    }
}
