//! privprep: raw personal datasets in, consent-filtered, tokenized, training-ready Parquet out,
//! with a tamper-evident lineage record of every run.
//!
//! The flow is file → spec → plan → run: [`spec`] parses the pipeline file strictly, [`plan`]
//! resolves it against the dataset manifest and the data's schema (reporting every problem at
//! once), and [`run`] executes the plan in one streaming pass and records it in [`lineage`].
//! Stages do not import each other; they meet in `plan` and `run`.

pub mod datagen;
pub mod dp;
pub mod emit;
pub mod engine;
pub mod identity;
pub mod ingest;
pub mod lineage;
pub mod pii;
pub mod plan;
pub mod policy;
pub mod run;
pub mod spec;

pub use plan::{build as load_plan, Plan};
pub use run::{run, RunFailure, RunOptions, RunSummary};
pub use spec::{Diagnostic, Diagnostics};

/// Validates a pipeline file and everything it names; returns the plan or every problem found.
pub fn validate(path: &std::path::Path) -> Result<Plan, Diagnostics> {
    plan::build(path)
}
