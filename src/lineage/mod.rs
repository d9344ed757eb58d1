//! Lineage: what each run did, kept where compliance can query it and trust it.
//!
//! Every run, succeeded or failed, ends as one [`RunRecord`] appended to an SQLite store. The
//! store is append-only and hash-chained: each record carries the SHA-256 of the one before it,
//! so `privprep lineage verify` detects any edit, deletion or reordering (invariant 8). Records
//! are also spread over plain tables (inputs, outputs, drops, column lineage) so compliance can
//! answer "which runs used dataset X" with SQL. The privacy budget ledger lives in the same
//! file, chained on its own and cross-checked with the records ([`ledger_table`]), and the
//! store's head is recorded outside the file ([`anchor`]), so a deleted or rolled-back store is
//! noticed instead of silently starting afresh.
//!
//! This module depends on nothing else in the crate: each stage adds its part of the record
//! (`stages`), the run adds what happened and appends it here; `dp::ledger` decides what may
//! be spent and records it here.

pub mod anchor;
pub mod index;
pub mod ledger_table;
pub mod openlineage;
pub mod record;
pub mod sql;
pub mod store;
mod tables;

pub use record::{
    BudgetSpend, ColumnLineage, InputRecord, OutputRecord, PolicySummary, RunRecord, RunStatus,
    SubjectColumnRecord, SubjectSetRecord,
};
pub use store::{
    record_hash, BrokenRecord, InitOutcome, LedgerTransaction, LineageError, RunListing, Store,
    StoredRun, VerifyReport, GENESIS_HASH,
};
