//! privprep: raw personal datasets in, consent-filtered, tokenized, training-ready Parquet out,
//! with a tamper-evident lineage record of every run.
//!
//! The flow is file → spec → plan → run: `spec` parses the pipeline file strictly, [`plan`]
//! resolves it stage by stage (`stages`: ingest, policy, identity, text, output, release)
//! against the dataset manifest and the data's schema, reporting every problem at once;
//! [`run`] executes the plan on an [`engine`] in one streaming pass, accounts for every row,
//! gates and commits, and records it in [`lineage`]. Stages do not import each other; they
//! meet in `plan` and `run`.

pub mod datagen;
pub mod dp;
pub mod emit;
pub mod engine;
pub mod identity;
pub mod ingest;
pub mod inspect;
pub mod lineage;
pub mod pii;
pub mod plan;
pub mod policy;
pub mod risk;
pub mod run;
mod spec;
mod stages;
pub mod subjects;
pub mod synth;

// The public face: what the command line (and a program embedding privprep) uses. The pipeline
// file's parsing (`spec`) and the stages' resolution (`stages`) are reached only through
// `plan`; the other modules stay public for the integration tests and benches, which exercise
// kernels, readers and writers on their own.

/// Pipelines: validate and plan.
pub use plan::{build as load_plan, Plan};
pub use spec::{Diagnostic, Diagnostics, SourceFormat};

/// Runs and their summaries.
pub use policy::DropReason;
pub use run::{
    recover_interrupted, row_plan, run, write_collisions, RunFailure, RunOptions, RunSummary,
};

/// Lineage: the store, its records and verdicts.
pub use lineage::record::{GateResult, LeakGateRecord, Measure, RunRecord};
pub use lineage::store::Store;

/// The privacy budget.
pub use dp::{DatasetBudget, Ledger, Loss};

/// Sample data and PII profiling of files.
pub use datagen::{generate as datagen, DataFormat, DatagenOptions};
pub use pii::phone::DEFAULT_REGIONS as DEFAULT_PHONE_REGIONS;
pub use pii::profile::{scan, ScanOptions};

/// Validates a pipeline file and everything it names; returns the plan or every problem found.
pub fn validate(path: &std::path::Path) -> Result<Plan, Diagnostics> {
    plan::build(path)
}
