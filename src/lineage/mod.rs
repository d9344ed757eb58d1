//! Lineage: what each run did, kept where compliance can query it and trust it.
//!
//! Every run, succeeded or failed, ends as one [`RunRecord`] appended to an SQLite store. The
//! store is append-only and hash-chained: each record carries the SHA-256 of the one before it,
//! so `privprep lineage verify` detects any edit, deletion or reordering (invariant 8). Records
//! are also spread over plain tables (inputs, outputs, drops, column lineage) so compliance can
//! answer "which runs used dataset X" with SQL.
//!
//! This module depends on nothing else in the crate: stages hand their facts to `lib.rs`, which
//! builds the record and appends it here.

pub mod record;
pub mod store;

pub use record::{ColumnLineage, InputRecord, OutputRecord, PolicySummary, RunRecord, RunStatus};
pub use store::{
    record_hash, BrokenRecord, LineageError, RunSummary, Store, StoredRun, VerifyReport,
    GENESIS_HASH,
};
