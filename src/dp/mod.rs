//! Differential privacy: the privacy-budget ledger (and, built on it, DP releases).
//!
//! Numbers released about people must come with a formal guarantee, and the total loss on
//! each dataset must be tracked across every run. [`ledger`] records each spend per dataset and
//! privacy unit in the lineage store, checking the dataset's cap in the same write-locked
//! transaction, so concurrent runs cannot overspend. Noise itself only ever comes from OpenDP.
//!
//! Depends on: `lineage` (the ledger is a chained table of the lineage store; releases record
//! their noise in lineage types).

pub mod ledger;
pub mod plan;
pub mod release;

pub use ledger::{DatasetBudget, Ledger, LedgerError, Loss, SpendRequest, Spent};
