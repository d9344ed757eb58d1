//! The plan's row stages as the kernels' engine-free [`RowPlan`]: what
//! `privprep plan FILE --format json` prints for engines outside this binary (the Spark engine
//! of the Python wheel), so the pipeline file and its manifests are resolved here once, with
//! the same diagnostics, and the wheel never needs a second resolver.
//!
//! The plan holds no key and no data value: revoked and erased subjects are given as keyed
//! subject-index hashes, never as ids.

use std::collections::HashSet;

use privprep_kernels::rows::{
    CollectColumn, GatePlan, InputColumn, OutputAction, OutputColumn, PolicyRules, PurposeRule,
    Retention, RowPlan, SourcePlan, TextColumn, TokenSettings, ValueRule, ValueType,
    ROW_PLAN_VERSION,
};
use privprep_kernels::subject::SubjectHasher;

use super::Plan;
use crate::identity::Action;
use crate::ingest::ColumnType;
use crate::pii::TextAction;
use crate::policy::Provenance;
use crate::spec::{DatePart, LeakGateMode};

/// The kernels' type of a manifest type.
pub fn value_type(t: ColumnType) -> ValueType {
    match t {
        ColumnType::String => ValueType::String,
        ColumnType::Int64 => ValueType::Int64,
        ColumnType::Float64 => ValueType::Float64,
        ColumnType::Bool => ValueType::Bool,
        ColumnType::Date => ValueType::Date,
        ColumnType::Datetime => ValueType::Datetime,
    }
}

impl Plan {
    /// The row stages of this plan for the kernels' row engine. `key_id` is the run key's id
    /// (when the plan needs a key); `index` hashes the revoked ids; `erased` are the store's
    /// erased subject keys under the same index key.
    pub fn row_plan(
        &self,
        key_id: Option<String>,
        index: &SubjectHasher,
        erased: &HashSet<u64>,
    ) -> RowPlan {
        let manifest = &self.source.manifest;
        let columns = manifest
            .spec
            .columns
            .iter()
            .map(|c| InputColumn {
                name: c.name.get_ref().clone(),
                ty: value_type(*c.ty.get_ref()),
                format: match c.ty.get_ref() {
                    ColumnType::Date => Some(c.temporal_format().to_string()),
                    ColumnType::Datetime => c.format.clone(),
                    _ => None,
                },
            })
            .collect();
        let p = &self.policy;
        let status = match (&p.status_column, &p.dataset_consent) {
            (Some(c), _) => ValueRule::Column {
                column: c.clone(),
                allowed: p.allowed_status.clone(),
            },
            (None, d) => ValueRule::Fixed { pass: d.is_some() },
        };
        let purpose = match (&p.purposes_column, &p.dataset_consent) {
            (Some(c), _) => PurposeRule::Column {
                column: c.clone(),
                separator: p.purpose_separator.clone(),
                purpose: p.purpose.clone(),
            },
            (None, Some(d)) => PurposeRule::Fixed {
                pass: d.purposes.iter().any(|x| x == &p.purpose),
            },
            (None, None) => PurposeRule::Fixed { pass: false },
        };
        let provenance = match &p.provenance {
            Provenance::Column(c) => ValueRule::Column {
                column: c.clone(),
                allowed: p.allowed_provenance.clone(),
            },
            Provenance::Tag(t) => ValueRule::Fixed {
                pass: crate::policy::one_of(t, &p.allowed_provenance),
            },
        };
        let retention = match (p.retention_days, &p.timestamp) {
            (Some(days), Some((column, _))) => {
                let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");
                let end_day = (p.as_of - epoch).num_days() + 1;
                Some(Retention {
                    column: column.clone(),
                    start_day: end_day - 1 - i64::from(days),
                    end_day,
                })
            }
            _ => None,
        };
        let mut revoked: Vec<u64> = p
            .revoked_ids()
            .iter()
            .filter_map(|id| index.key(id))
            .collect();
        revoked.sort_unstable();
        revoked.dedup();
        let mut erased: Vec<u64> = erased.iter().copied().collect();
        erased.sort_unstable();

        let mut outputs = Vec::new();
        for c in self.output_columns() {
            let action = match &c.action {
                Action::Drop => continue,
                Action::Redact if self.text_rule(&c.name).is_none() => continue,
                Action::Redact => OutputAction::Redact,
                Action::Keep => OutputAction::Keep,
                Action::Tokenize { bits, encoding } => OutputAction::Tokenize {
                    bits: *bits,
                    encoding: *encoding,
                },
                Action::Hash => OutputAction::Hash,
                Action::Mask { keep_last } => OutputAction::Mask {
                    keep_last: *keep_last,
                },
                Action::GeneralizeDate(DatePart::Year) => OutputAction::GeneralizeYear,
                Action::GeneralizeDate(DatePart::Month) => OutputAction::GeneralizeMonth,
                Action::GeneralizeNumber(width) => OutputAction::GeneralizeNumber { width: *width },
                Action::GeneralizePrefix(chars) => OutputAction::GeneralizePrefix { chars: *chars },
                Action::Surrogate(kind) => OutputAction::Surrogate { kind: *kind },
            };
            outputs.push(OutputColumn {
                name: c.name.clone(),
                action,
            });
        }
        let texts = self
            .text
            .iter()
            .map(|t| TextColumn {
                column: t.column.clone(),
                context: t.context.clone(),
                scanner: self.pii.scanner_config(Some(&t.detectors)),
                policy: self.pii.policy(t),
            })
            .collect();
        let tokens = &self.pipeline.spec.tokens;
        RowPlan {
            version: ROW_PLAN_VERSION,
            columns,
            policy: PolicyRules {
                subject_column: p.subject_column.clone(),
                row_unit: p.row_unit,
                status,
                purpose,
                provenance,
                retention,
                revoked,
                erased,
            },
            outputs,
            texts,
            text_tokens: TokenSettings {
                bits: tokens.bits,
                encoding: crate::stages::token_encoding(tokens.encoding),
            },
            split: self.output.split.map(|(a, b, c)| [a, b, c]),
            key_id,
            gate: GatePlan {
                scanner: self.pii.gate_scanner_config(&self.text),
                slot_names: self.pii.slot_names(),
                exempt: self.gate_exempt(),
                surrogate_columns: self
                    .output_columns()
                    .filter(|c| matches!(c.action, Action::Surrogate(_)))
                    .map(|c| c.name.clone())
                    .collect(),
                identifier_columns: self.identifier_columns(),
                text_surrogates: self.text.iter().any(|t| {
                    t.default_action == TextAction::Surrogate
                        || t.actions.values().any(|a| *a == TextAction::Surrogate)
                }),
                fail: self.pii.gate == LeakGateMode::Fail,
            },
            source: SourcePlan {
                files: self
                    .source
                    .files
                    .iter()
                    .map(|f| std::path::absolute(f).unwrap_or_else(|_| f.clone()))
                    .map(|f| f.display().to_string())
                    .chain(self.source.remote.iter().cloned())
                    .collect(),
                format: self.source.format.as_str().to_string(),
                separator: char::from(self.source.separator).to_string(),
                max_bad_rows: self.output.max_bad_rows,
                csv_columns: self.source.csv_names.clone(),
            },
            // What the releases read of each kept row; the subject is the subject key.
            collect: crate::dp::plan::release_columns(&self.releases, &p.subject_column)
                .into_iter()
                .skip(1)
                .map(|(alias, column, numeric)| CollectColumn {
                    alias,
                    column,
                    numeric,
                })
                .collect(),
        }
    }
}
