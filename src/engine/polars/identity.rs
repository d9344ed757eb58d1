//! The identity stage on polars: each output column's action as a lazy expression, and the
//! keyed split column.
//!
//! The per-value work is done by the plain kernels of `privprep-kernels`; string columns
//! are walked by the engine's one adapter ([`crate::engine::polars::adapter`]).

use super::adapter::map_str;
use crate::identity::Action;
use crate::ingest::ColumnType;
use crate::spec::DatePart;
use polars::prelude::*;

use crate::ingest::value_map;
use privprep_kernels::generalize::{self, month_start_days};
use privprep_kernels::key::Key;
use privprep_kernels::mask;
use privprep_kernels::split::Splitter;
use privprep_kernels::surrogate::Surrogates;
use privprep_kernels::token::{self, Tokenizer};
use std::sync::Arc;

/// Why a column's action could not be lowered.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("column `{column}` is tokenized but the run loaded no key\n  = hint: this is a bug in privprep: every plan that tokenizes asks for a key")]
    NoKey { column: String },
    #[error("column `{column}`: {source}")]
    Tokenizer {
        column: String,
        #[source]
        source: privprep_kernels::token::TokenizerError,
    },
}

/// Internal column holding each row's split (0 train, 1 validation, 2 test; Int32 because
/// the engine is built without 8-bit integer types).
pub const SPLIT: &str = "__split";

impl Action {
    /// The output expression for column `name` (None for `Drop` and `Redact`). `input` is the
    /// typed column.
    pub fn expr(
        &self,
        name: &str,
        input: Expr,
        ty: ColumnType,
        key: Option<&Arc<Key>>,
    ) -> Result<Option<Expr>, ActionError> {
        let out = match self {
            // Text columns are built by the text stage; never pass them through from here.
            Action::Drop | Action::Redact => return Ok(None),
            Action::Keep => input,
            Action::Tokenize { bits, encoding } => {
                let key = key.ok_or_else(|| ActionError::NoKey {
                    column: name.to_string(),
                })?;
                let tokenizer = Tokenizer::new(key, *bits, *encoding).map_err(|source| {
                    ActionError::Tokenizer {
                        column: name.to_string(),
                        source,
                    }
                })?;
                let tokenizer = Arc::new(tokenizer);
                map_str_expr(input, move |v, out| tokenizer.token_into(v, out))
            }
            Action::Surrogate(kind) => {
                let key = key.ok_or_else(|| ActionError::NoKey {
                    column: name.to_string(),
                })?;
                let surrogates = Arc::new(Surrogates::new(key));
                let kind = *kind;
                map_str_expr(input, move |v, out| surrogates.surrogate_into(kind, v, out))
            }
            Action::Hash => map_str_expr(input, token::sha256_hex_into),
            Action::Mask { keep_last } => {
                let n = *keep_last;
                map_str_expr(input, move |v, out| mask::mask_into(v, n, out))
            }
            Action::GeneralizePrefix(n) => {
                let n = *n;
                map_str_expr(input, move |v, out| generalize::prefix_into(v, n, out))
            }
            Action::GeneralizeDate(part) => generalize_date(input, ty, *part),
            Action::GeneralizeNumber(w) => generalize_number(input, ty, *w),
        };
        Ok(Some(out.alias(name)))
    }
}

/// Applies a string kernel to every non-null value (non-string inputs are cast to text first).
fn map_str_expr(input: Expr, f: impl Fn(&str, &mut String) + Send + Sync + 'static) -> Expr {
    map_str::<StringType, _>(input, vec![], move |s, out| {
        s.map_kernel(out, &f);
        Ok(())
    })
}

fn generalize_date(input: Expr, ty: ColumnType, part: DatePart) -> Expr {
    let date = if ty == ColumnType::Date {
        input
    } else {
        input.cast(DataType::Date)
    };
    match part {
        DatePart::Year => date.dt().year(),
        DatePart::Month => value_map(
            date,
            |c| {
                let days = c.cast(&DataType::Int32)?;
                let out: Int32Chunked = days.i32()?.apply_values(month_start_days);
                out.into_column().cast(&DataType::Date)
            },
            |_, f| Ok(Field::new(f.name().clone(), DataType::Date)),
        ),
    }
}

fn generalize_number(input: Expr, ty: ColumnType, width: f64) -> Expr {
    if ty == ColumnType::Int64 {
        let w = (width.round() as i64).max(1);
        value_map(
            input,
            move |c| {
                let ca = c.cast(&DataType::Int64)?;
                Ok(ca
                    .i64()?
                    .apply_values(|x| generalize::bucket_i64(x, w))
                    .into_column())
            },
            |_, f| Ok(Field::new(f.name().clone(), DataType::Int64)),
        )
    } else {
        value_map(
            input,
            move |c| {
                let ca = c.cast(&DataType::Float64)?;
                Ok(ca
                    .f64()?
                    .apply_values(|x| generalize::bucket_f64(x, width))
                    .into_column())
            },
            |_, f| Ok(Field::new(f.name().clone(), DataType::Float64)),
        )
    }
}

/// The `__split` expression: 0 train, 1 validation, 2 test, by keyed hash of the subject
/// (trimmed, as the policy sees it, so one person never straddles two splits).
pub fn split_expr(subject: Expr, key: &Key, fractions: [f64; 3]) -> Expr {
    let splitter = Splitter::new(key, fractions);
    map_str::<Int32Type, _>(subject, vec![], move |s, out| {
        s.values()
            .for_each(|v| out.append_value(splitter.split_of(v)));
        Ok(())
    })
    .alias(SPLIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::OutputType;

    /// `explain` names output types without the engine; the names must stay the engine's.
    #[test]
    fn output_type_names_are_the_engines() {
        let pairs = [
            (OutputType::String, DataType::String),
            (OutputType::Int32, DataType::Int32),
            (OutputType::Int64, DataType::Int64),
            (OutputType::Float64, DataType::Float64),
            (OutputType::Bool, DataType::Boolean),
            (OutputType::Date, DataType::Date),
            (
                OutputType::Datetime,
                DataType::Datetime(TimeUnit::Microseconds, None),
            ),
        ];
        for (ours, engine) in pairs {
            assert_eq!(ours.to_string(), engine.to_string());
        }
        for ty in [
            ColumnType::String,
            ColumnType::Int64,
            ColumnType::Float64,
            ColumnType::Bool,
            ColumnType::Date,
            ColumnType::Datetime,
        ] {
            assert_eq!(
                Action::Keep.output_type(ty).to_string(),
                crate::ingest::engine_type(ty).to_string()
            );
        }
    }
}
