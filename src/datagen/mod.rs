//! `privprep datagen`: synthetic personal datasets with known ground truth.
//!
//! privprep's tests, examples and benches need data that looks personal (names, contact
//! details, consent flags, free text full of PII) but belongs to nobody, and whose every
//! property is known: which spans of the free text are PII, which subjects revoked consent,
//! which records are malformed. This module makes such a dataset, a support-ticket table, from a
//! seed, so that any test can regenerate exactly the data it needs instead of checking data in.
//!
//! [`generate`] writes into one folder:
//! - `tickets.csv` or `tickets.parquet`: the table (16 columns; see `manifest.toml`);
//! - `pii_spans.jsonl`: every PII value planted in `body`, as byte offsets, with its type;
//! - `revocations.csv`: subjects (about 3%) who revoked consent;
//! - `manifest.toml`: provenance and column classes, as privprep's ingest reads them;
//! - `bad_rows.json`: only with [`DatagenOptions::bad_rows`], the malformed records.
//!
//! In the CSV, a missing value is an empty field and an empty string is a quoted `""` (only
//! `consent_purposes` has both); in Parquet, missing values are nulls.
//!
//! The same options give byte-identical files. Rows are streamed to disk; memory grows with the
//! number of subjects (under 50 bytes each, rows/4 of them), not with rows.
//!
//! Dependencies: `rand`/`rand_distr` (data generation is what they are for here; privacy noise
//! never comes from them), `arrow`/`parquet`, `serde`, `chrono`. No other privprep module is
//! used, and pipeline stages must not use this one.

mod body;
mod files;
mod generate;
mod names;
mod output;
mod pii;
mod population;
mod random;
mod text;
mod tickets;

#[cfg(test)]
mod tests;

pub use generate::{generate, DataFormat, DatagenError, DatagenOptions, DatagenSummary, MAX_ROWS};
