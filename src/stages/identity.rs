//! Stage `identity`: `[columns]` and `[tokens]`, what is done to each column (keep, drop,
//! keyed token, hash, mask, generalize, redact), resolved against the manifest's classes with
//! privacy by default: a column that is not public and has no rule is an error. The actions
//! are `crate::identity::Action`; the polars lowering is `engine/polars/identity.rs`.

use serde::Deserialize;

use super::{ColumnPlan, Halt, Plan, Resolution, Stage};
use crate::identity::Action;
use crate::ingest::{ColumnClass, ColumnType};
use crate::lineage::record::{ColumnLineage, RunRecord};
use crate::spec::diag::did_you_mean;
use crate::spec::{find_key, valid_bits, ColumnRule, Diagnostic, Diagnostics, PipelineFile};

pub const STAGE: Stage = Stage {
    name: "identity",
    check,
    resolve,
    explain,
    record,
};

/// `[tokens]`: defaults for `tokenize` rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// Token length in bits (multiple of 8, 32 to 256), default 128.
    #[serde(default = "default_bits")]
    pub bits: u32,
    /// `hex` (default) or `base64url`.
    #[serde(default)]
    pub encoding: TokenEncodingSpec,
}

impl Default for TokenSpec {
    fn default() -> Self {
        TokenSpec {
            bits: default_bits(),
            encoding: TokenEncodingSpec::Hex,
        }
    }
}

fn default_bits() -> u32 {
    128
}

/// Token text encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenEncodingSpec {
    #[default]
    Hex,
    Base64url,
}

/// `[tokens]`; the rules of `[columns]` are checked by `spec::check_columns`.
fn check(file: &PipelineFile, diags: &mut Diagnostics) {
    let spec = &file.spec;
    if !valid_bits(spec.tokens.bits) {
        diags.push(
            Diagnostic::at(
                &file.path,
                &file.text,
                find_key(&file.text, "bits"),
                format!("token length {} bits is not supported", spec.tokens.bits),
            )
            .hint("use a multiple of 8 from 32 to 256; 128 is the default"),
        );
    }
}

fn resolve(r: &mut Resolution) -> Result<(), Halt> {
    let file = r.file;
    let s = &file.spec;
    let diags = &mut r.diags;
    let Some(super::Source {
        manifest,
        conversions,
        ..
    }) = &r.source
    else {
        return Err(Halt);
    };
    let at = |span: std::ops::Range<usize>, msg: String| file.at(span, msg);
    // Column rules.
    for name in s.columns.keys() {
        if manifest.column(name.get_ref()).is_none() {
            let hint = did_you_mean(
                name.get_ref(),
                &manifest.column_names(),
                "the manifest's columns are",
            );
            diags.push(
                at(
                    name.span(),
                    format!("column `{}` is not in the manifest", name.get_ref()),
                )
                .hint(hint),
            );
        }
    }
    let mut columns = Vec::new();
    for (c, conversion) in manifest.spec.columns.iter().zip(conversions) {
        let name = c.name.get_ref();
        let ty = *c.ty.get_ref();
        let class = *c.class.get_ref();
        let rule = s
            .columns
            .iter()
            .find(|(k, _)| k.get_ref() == name)
            .map(|(_, v)| v);
        let action = match rule {
            None if class == ColumnClass::Public => Action::Keep,
            None => {
                let (rule, alternative) = match class {
                    ColumnClass::Identifier => ("{ action = \"tokenize\" }", "or drop it"),
                    ColumnClass::QuasiIdentifier => ("{ action = \"drop\" }", "or generalize it"),
                    ColumnClass::FreeText => ("{ action = \"redact\" }", "or drop it"),
                    _ => (
                        "{ action = \"drop\" }",
                        "or keep it if the purpose needs it",
                    ),
                };
                diags.push(
                    manifest
                        .diag(c.name.span(), format!("column `{name}` is classed {} but the pipeline gives it no action", class.as_str()))
                        .hint(format!("privacy by default: add `{name} = {rule}` ({alternative}) under [columns] in {}", file.path.display())),
                );
                continue;
            }
            Some(rule) => {
                let err = |msg: String, hint: &str| {
                    at(
                        rule.span(),
                        format!("column `{name}` ({}): {msg}", ty.as_str()),
                    )
                    .hint(hint.to_string())
                };
                match rule.get_ref() {
                    ColumnRule::Tokenize { bits, encoding } => Action::Tokenize {
                        bits: bits.unwrap_or(s.tokens.bits),
                        encoding: super::token_encoding(encoding.unwrap_or(s.tokens.encoding)),
                    },
                    ColumnRule::Hash { .. } => Action::Hash,
                    ColumnRule::Mask { keep_last } => {
                        if ty != ColumnType::String {
                            diags.push(err(
                                "mask works on text".into(),
                                "use generalize for numbers and dates",
                            ));
                        }
                        Action::Mask {
                            keep_last: *keep_last,
                        }
                    }
                    ColumnRule::Generalize { to: Some(part), .. } => {
                        if !ty.is_temporal() {
                            diags.push(err(
                                "`to` generalizes dates, but this column is not a date".into(),
                                "use width = N for numbers, prefix = N for text",
                            ));
                        }
                        Action::GeneralizeDate(*part)
                    }
                    ColumnRule::Generalize { width: Some(w), .. } => {
                        if !ty.is_numeric() {
                            diags.push(err(
                                "`width` generalizes numbers, but this column is not numeric"
                                    .into(),
                                "use to = \"year\" for dates, prefix = N for text",
                            ));
                        }
                        Action::GeneralizeNumber(*w)
                    }
                    ColumnRule::Generalize { prefix, .. } => {
                        if ty != ColumnType::String {
                            diags.push(err(
                                "`prefix` generalizes text, but this column is not text".into(),
                                "use to = \"year\" for dates, width = N for numbers",
                            ));
                        }
                        Action::GeneralizePrefix(prefix.unwrap_or(1))
                    }
                    ColumnRule::Redact { .. } => {
                        // The rule's detectors, actions and context are the text stage's.
                        if ty != ColumnType::String {
                            diags.push(err(
                                "redact works on text".into(),
                                "redact is for free-text columns; use tokenize or generalize here",
                            ));
                        }
                        Action::Redact
                    }
                    ColumnRule::Surrogate { kind } => {
                        if ty != ColumnType::String {
                            diags.push(err(
                                "surrogate works on text".into(),
                                "use tokenize or generalize for numbers and dates",
                            ));
                        }
                        Action::Surrogate(surrogate_kind(*kind, name))
                    }
                    ColumnRule::Drop => Action::Drop,
                    ColumnRule::Keep => Action::Keep,
                }
            }
        };
        if class == ColumnClass::FreeText && !matches!(action, Action::Redact | Action::Drop) {
            if let Some(rule) = rule {
                diags.push(
                    at(
                        rule.span(),
                        format!(
                            "column `{name}` is classed free_text, which needs a redaction rule"
                        ),
                    )
                    .hint(format!(
                        "free text hides personal data anywhere in it: use `{name} = {{ action = \"redact\" }}`, or drop the column"
                    )),
                );
            }
        }
        columns.push(ColumnPlan {
            name: name.clone(),
            ty,
            class,
            action,
            explicit: rule.is_some(),
            conversion: conversion.clone(),
        });
    }
    // A pipeline whose outputs are DP releases or synthetic tables may leave every column out
    // of its data file (which then holds only the row count): no copy of the real rows.
    let dp_only = !file.spec.synthetic.is_empty() || !file.spec.release.is_empty();
    if !columns.is_empty() && columns.iter().all(|c| c.action == Action::Drop) && !dp_only {
        diags.push(
            Diagnostic::file(
                &file.path,
                "every column is dropped, so the output would have no columns",
            )
            .hint("keep at least one column, or make the pipeline's outputs DP releases or synthetic tables"),
        );
    }

    r.columns = Some(columns);
    Ok(())
}

fn explain(plan: &Plan, out: &mut super::Explained) {
    out.columns = plan
        .columns
        .iter()
        .map(|c| super::ExplainedColumn {
            column: c.name.clone(),
            from: c.name.clone(),
            class: c.class.as_str().into(),
            input_type: c.ty.as_str().into(),
            output_type: (c.action != Action::Drop)
                .then(|| format!("{}", c.action.output_type(c.ty))),
            transformation: if c.explicit || c.action == Action::Drop {
                plan.describe_column(c)
            } else {
                "kept as is (public in the manifest)".into()
            },
            unsafe_raw: c.is_unsafe(),
        })
        .collect();
    for c in plan.columns.iter().filter(|c| c.is_unsafe()) {
        out.warnings.push(format!("UNSAFE: column `{}` is classed {} and is kept as is: raw personal data will be in the output", c.name, c.class.as_str()));
    }
}

fn record(plan: &Plan, record: &mut RunRecord) {
    record.column_lineage = plan
        .output_columns()
        .map(|c| ColumnLineage {
            output_column: c.name.clone(),
            input_columns: vec![c.name.clone()],
            transformation: plan.describe_column(c),
            masked: c.action.masks(),
        })
        .collect();
}

/// The surrogate kind the rule names, else the one the column's name suggests.
fn surrogate_kind(
    spec: Option<crate::spec::SurrogateKindSpec>,
    column: &str,
) -> crate::identity::SurrogateKind {
    use crate::identity::SurrogateKind as K;
    use crate::spec::SurrogateKindSpec as S;
    match spec {
        Some(S::Name) => K::Name,
        Some(S::Email) => K::Email,
        Some(S::Phone) => K::Phone,
        Some(S::Id) => K::Id,
        None => {
            let c = column.to_lowercase();
            if c.contains("mail") {
                K::Email
            } else if c.contains("phone") || c.contains("tel") || c.contains("mobile") {
                K::Phone
            } else if c.contains("name") {
                K::Name
            } else {
                K::Id
            }
        }
    }
}
