//! What the identifiers stage does to one column, as the plan holds it: the action, its words
//! for lineage and `explain`, and the type of what comes out. Engine-free: the polars lowering
//! is in `engine/polars/identity.rs`, and another engine lowers the same plan.
//! Depends on: `ingest` (column types), `spec` (date parts), the kernels crate (token encoding).

use crate::ingest::ColumnType;
use crate::spec::DatePart;
pub use privprep_kernels::surrogate::SurrogateKind;
use privprep_kernels::token::TokenEncoding;

/// The type of an output column, named as `explain` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputType {
    String,
    Int32,
    Int64,
    Float64,
    Bool,
    Date,
    /// Microseconds, no time zone.
    Datetime,
}

impl std::fmt::Display for OutputType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutputType::String => "str",
            OutputType::Int32 => "i32",
            OutputType::Int64 => "i64",
            OutputType::Float64 => "f64",
            OutputType::Bool => "bool",
            OutputType::Date => "date",
            OutputType::Datetime => "datetime[μs]",
        })
    }
}

/// What is done to one column, resolved against its type.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Tokenize {
        bits: u32,
        encoding: TokenEncoding,
    },
    Hash,
    Mask {
        keep_last: usize,
    },
    GeneralizeDate(DatePart),
    GeneralizeNumber(f64),
    GeneralizePrefix(usize),
    /// A plausible value of the same kind, keyed by the run key.
    Surrogate(SurrogateKind),
    /// Free text rewritten by the text stage; this stage only knows its output is text.
    Redact,
    Drop,
    Keep,
}

impl Action {
    /// The transformation in words, as lineage and `explain` show it.
    pub fn describe(&self) -> String {
        match self {
            Action::Tokenize { bits, encoding } => format!(
                "tokenize (HMAC-SHA256 with the run key, {bits} bits, {})",
                match encoding {
                    TokenEncoding::Hex => "hex",
                    TokenEncoding::Base64Url => "base64url",
                }
            ),
            Action::Hash => "hash (unkeyed SHA-256, hex)".into(),
            Action::Mask { keep_last } => format!("mask (keep the last {keep_last} characters)"),
            Action::GeneralizeDate(DatePart::Year) => "generalize to the year".into(),
            Action::GeneralizeDate(DatePart::Month) => {
                "generalize to the first day of the month".into()
            }
            Action::GeneralizeNumber(w) => {
                format!("generalize to buckets of width {w} (lower bound)")
            }
            Action::GeneralizePrefix(n) => format!("generalize to the first {n} characters"),
            Action::Surrogate(k) => format!(
                "surrogate (a plausible {}, chosen with the run key; the same value always gets the same one)",
                k.as_str()
            ),
            Action::Redact => "PII in the text replaced".into(),
            Action::Drop => "dropped".into(),
            Action::Keep => "kept as is".into(),
        }
    }

    /// True when the output no longer holds the raw value.
    pub fn masks(&self) -> bool {
        !matches!(self, Action::Keep | Action::Drop)
    }

    /// True when the action needs the run key.
    pub fn needs_key(&self) -> bool {
        matches!(self, Action::Tokenize { .. } | Action::Surrogate(_))
    }

    /// Type of the output column.
    pub fn output_type(&self, input: ColumnType) -> OutputType {
        match self {
            Action::Tokenize { .. }
            | Action::Hash
            | Action::Mask { .. }
            | Action::GeneralizePrefix(_)
            | Action::Surrogate(_)
            | Action::Redact => OutputType::String,
            Action::GeneralizeDate(DatePart::Year) => OutputType::Int32,
            Action::GeneralizeDate(DatePart::Month) => OutputType::Date,
            Action::GeneralizeNumber(_) | Action::Drop | Action::Keep => match input {
                ColumnType::String => OutputType::String,
                ColumnType::Int64 => OutputType::Int64,
                ColumnType::Float64 => OutputType::Float64,
                ColumnType::Bool => OutputType::Bool,
                ColumnType::Date => OutputType::Date,
                ColumnType::Datetime => OutputType::Datetime,
            },
        }
    }
}
