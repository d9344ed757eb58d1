//! Identifying values in, tokens, hashes, masks and generalizations out.
//!
//! This is where the identifiers stage gets its tools: the secret key behind keyed tokens
//! ([`keys`]) and the per-value kernels that tokenize (HMAC-SHA256), hash, mask, cut to a prefix
//! or bucket a number ([`kernels`]). The kernels are plain functions over `&str` and numbers that
//! know nothing of polars, so today's polars adapter ([`stage`]) and a later distributed engine
//! can call the same code and get the same tokens.
//!
//! `keys` and `kernels` depend on nothing else in the crate. `stage` is the engine side: it
//! lowers each column's action onto polars expressions and may use the spec and ingest types.

pub mod kernels;
pub mod keys;
pub mod stage;

pub use kernels::{
    bucket_f64, bucket_i64, mask_into, prefix_into, sha256_hex_into, TokenEncoding, Tokenizer,
    TokenizerError,
};
pub use keys::{
    loose_permissions, resolve_key, Key, KeyError, KeyProblem, KeySource, KEY_ENV, KEY_FILE_ENV,
    MIN_KEY_BYTES,
};
