//! The engine layer: runs a plan's stages over the rows and hands back what the run accounts,
//! checks and commits.
//!
//! Polars today ([`polars`]). The kernels (`privprep-kernels`) do the per-value work and know no
//! engine; an engine only walks its columns and hands values to them, so a token or a
//! redaction is byte for byte the same whichever engine ran it.
//!
//! # The contract
//! An engine gets a [`Job`]: the plan, the run key, the inputs as the pre-scan found them
//! (records that cannot be split into fields are already counted and left out) and where to
//! put scratch files. It reads every other record once
//! and returns [`Streamed`]:
//! - `by_status`: how many records ended in each status (kept, quarantined for a value that
//!   does not parse, dropped for each policy or text reason), the first rule that applied;
//! - `bad_values`: where each quarantined record is (file, record, column), never its values;
//! - `files`: the output files with every kept row written, not yet finished or renamed;
//! - `identifiers`: the keyed hashes of the identifier values of every record it read, kept
//!   or dropped, for the leak gate; none when the job brought them ([`Job::identifiers`]);
//! - `gate`: the leak gate's detector hits in every string value it wrote, and the identifier
//!   values of [`Job::identifiers`] found in them (without those, the run adds the identifier
//!   half once `identifiers` is complete);
//! - `release_rows`: the columns DP releases need, of the kept rows only;
//! - `text_stats`: what the redaction of each text column counted.
//!
//! It commits nothing: the run accounts, gates, spends budget and commits (`crate::run`). A
//! second engine implements [`Engine`] with the same meaning for every field.
//!
//! Depends on: `plan` (plan types), `ingest`, `emit`, `pii` (gate kernels), `policy`
//! (statuses), `lineage::record` (schema), the kernels crate; polars in [`polars`], and in
//! [`ReleaseRows`]: the rows DP releases need stay a polars frame, which OpenDP's polars front
//! reads (a second engine hands Arrow batches, converted once at release time).

pub mod polars;

use std::path::Path;
use std::sync::Arc;

use crate::emit::{AtomicParquet, EmitError};
use crate::ingest::{IngestError, InputFile};
use crate::lineage::record::SchemaField;
use crate::pii::gate::{GateTally, IdentifierSet};
use crate::pii::redact::TextStats;
use crate::plan::Plan;
use privprep_kernels::key::Key;
use privprep_kernels::subject::SubjectHasher;

/// Number of statuses a row can end in: kept, quarantined, and one per drop reason.
pub use crate::policy::STATUSES;

/// What an engine is asked to do.
pub struct Job<'a> {
    pub plan: &'a Plan,
    pub run_id: &'a str,
    /// The run key, when the plan needs one (tokens, splits).
    pub key: Option<&'a Arc<Key>>,
    /// Every input, pre-scanned.
    pub inputs: &'a [InputFile],
    /// A folder the engine may write scratch files to; removed after the run.
    pub scratch: &'a Path,
    /// Counts the records of each batch seen.
    pub progress: indicatif::ProgressBar,
    /// The subject index's keyed hash: with it, the engine gathers the keys of the subjects
    /// whose kept rows each output file receives.
    pub subjects: Option<&'a SubjectHasher>,
    /// The store's erasure list: rows of these subjects are dropped as `erased`.
    pub erased: Option<&'a Erased>,
    /// How the data files are encrypted, with the master keys (`[output.encryption]`).
    pub encryption: Option<&'a crate::emit::encryption::Encryption>,
    /// The keyed identifier values of every input record, when the pre-scan gathered them:
    /// the engine then searches every batch it writes for them and gathers none itself.
    pub identifiers: Option<Arc<IdentifierSet>>,
}

/// The erasure list as an engine applies it: the subject index keys of erased subjects, and
/// the hasher that gives a row's subject its key.
#[derive(Clone)]
pub struct Erased {
    pub hasher: SubjectHasher,
    pub keys: Arc<std::collections::HashSet<u64>>,
}

/// What an engine hands back (see the module's contract).
pub struct Streamed {
    pub by_status: [u64; STATUSES],
    /// (file index, record index, column index or -1) of each quarantined record.
    pub bad_values: Vec<(u32, u64, i32)>,
    /// Records the engine saw (every record the pre-scan could split).
    pub seen: u64,
    /// (split code, file) of every output file, written but not finished.
    pub files: Vec<(u8, AtomicParquet)>,
    /// The output schema, as lineage records it.
    pub schema: Vec<SchemaField>,
    /// The identifier values the engine gathered, for the run to search the written files
    /// for; `None` when the job brought them and `gate` already counts them.
    pub identifiers: Option<IdentifierSet>,
    pub gate: GateTally,
    pub release_rows: ReleaseRows,
    /// One per text column of the plan, in plan order.
    pub text_stats: Vec<Arc<TextStats>>,
    /// Per output file (in `files`' order), the subject index keys of its rows, in no order
    /// and possibly repeated; empty without [`Job::subjects`].
    pub subject_keys: Vec<Vec<u64>>,
    /// What k-anonymity found, when the plan has `[risk]`.
    pub risk: Option<crate::lineage::record::RiskRecord>,
}

/// The kept rows' columns DP releases need, as the engine holds them.
pub type ReleaseRows = Vec<::polars::prelude::DataFrame>;

/// An engine.
pub trait Engine {
    fn stream(&self, job: &Job) -> Result<Streamed, EngineError>;
}

/// Why an engine could not stream a plan.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Emit(#[from] EmitError),
    /// The engine's own failure, its message rid of anything that could be a value.
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Action(#[from] polars::identity::ActionError),
    #[error("free-text detectors: {0}")]
    Scanner(#[from] privprep_kernels::pii::detect::ScannerError),
    #[error("free-text tokens: {0}")]
    Tokenizer(#[from] privprep_kernels::token::TokenizerError),
    /// A lock shared with the engine's threads was poisoned by a panic there.
    #[error("the {0} lock was poisoned")]
    Poisoned(&'static str),
}
