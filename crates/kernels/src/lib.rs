//! privprep's per-value kernels: values in, values out, the same on every engine.
//!
//! Every engine privprep runs on (polars today, Spark through a Python wheel) must produce the
//! same token, mask, redaction and split for the same value and key, byte for byte (design
//! invariant 10). The only way to be sure is one implementation: this crate holds every
//! per-value function, and the engines only walk their own columns and call it.
//!
//! It depends on neither polars nor OpenDP, and does no I/O, so it builds in minutes instead of
//! the half hour polars takes, and the wheel can embed it. Its entry points work over `&str`
//! (appending to a caller's buffer, so an engine writes a whole column into one reused
//! `String`) and, in [`array`](mod@array), over Arrow string arrays from `arrow-array` (the
//! arrow-rs version privprep's Parquet writer uses, so the types are the same).
//!
//! - [`key`]: the secret key behind keyed tokens (parsing, generation, the key id).
//! - [`token`]: keyed tokens (HMAC-SHA256) and plain SHA-256 hashes.
//! - [`mask`], [`generalize`]: masks, prefixes, numeric buckets, month starts.
//! - [`split`]: the keyed assignment of subjects to train/validation/test.
//! - [`pii`]: the PII scanner, its validators and phone plans, and redaction.
//! - [`gate`]: keyed hashes of identifier values, for the output leak gate.
//! - [`policy`]: per-value consent predicates (purposes, allowed values).
//! - [`parse`]: typed values read out of text, by the rules that quarantine a row.
//! - [`temporal`]: ISO 8601 / RFC 3339 datetimes read in one pass.
//! - [`subject`]: keyed hashes of subject ids and the sorted sets of the subject index.
//! - [`array`](mod@array): the kernels over whole Arrow string arrays; nulls stay null.
//! - [`csv`]: CSV records split into fields by the rules of polars' reader.
//! - [`rows`]: a plan's row stages over one Arrow batch (the engine of the Python wheel).

pub mod array;
pub mod csv;
pub mod gate;
pub mod generalize;
pub mod key;
pub mod mask;
pub mod parse;
pub mod pii;
pub mod policy;
pub mod risk;
pub mod rows;
pub mod split;
pub mod subject;
pub mod surrogate;
pub mod temporal;
pub mod token;

pub use key::{Key, KeyProblem};
pub use token::{TokenEncoding, Tokenizer, TokenizerError};
