//! Identifying values in, tokens, hashes, masks and generalizations out.
//!
//! This is where the identifiers stage gets its tools. The per-value kernels that tokenize
//! (HMAC-SHA256), hash, mask, cut to a prefix or bucket a number, and the [`Key`] type itself,
//! live in the `privprep-kernels` crate, which knows nothing of polars, so the polars
//! lowering (`engine/polars/identity.rs`) and the Spark engine call the same code and get the
//! same tokens; they are re-exported here. [`action`] is the engine-free plan type of a
//! column's action; [`keys`] finds a run's key (flag, environment, default file).
//!
//! Depends on: `spec` (side files, date parts), `ingest` (column types), the kernels crate.

pub mod action;
pub mod keys;

pub use action::{Action, OutputType, SurrogateKind};

pub use keys::{loose_permissions, resolve_key, KeyError, KeySource, KEY_ENV, KEY_FILE_ENV};
pub use privprep_kernels::generalize::{bucket_f64, bucket_i64, month_start_days, prefix_into};
pub use privprep_kernels::key::{Key, KeyProblem, MIN_KEY_BYTES};
pub use privprep_kernels::mask::mask_into;
pub use privprep_kernels::split::{split_code, Splitter};
pub use privprep_kernels::token::{sha256_hex_into, TokenEncoding, Tokenizer, TokenizerError};
