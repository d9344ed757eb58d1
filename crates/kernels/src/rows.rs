//! A pipeline's row stages over one Arrow batch, for engines that hand over Arrow batches
//! (Spark's `mapInArrow` through the Python wheel): reading typed values, the policy's status,
//! the split, each output column's action, free-text redaction and the subject index keys.
//!
//! [`RowPlan`] is the engine-free part of a resolved plan that rows need, as JSON
//! (`privprep plan FILE --format json` writes it; the CLI resolves the pipeline file and the
//! manifests once, with the same diagnostics, and no second resolver exists to disagree with
//! it). It holds no key and no data value: keys are loaded by the caller, revoked and erased
//! subjects arrive as keyed subject-index hashes ([`crate::subject`]), never as ids.
//!
//! [`RowEngine::apply`] gives back every row of its batch, dropped ones too (their outputs
//! null), with the status column, so the engine counts rows by status and writes the kept
//! ones; the polars engine does the same work as expressions of one `select`, over the same
//! kernels. The rules follow its order exactly: quarantine, then the drop reasons in
//! [`DropReason::ALL`] order, then `drop_row` hits in texts; outputs only for kept rows.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::builder::{
    Date32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, TimestampMicrosecondType,
    UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::gate::{self, DistinctKeys, GateCounts, IdentifierSet, ValueHasher};
use crate::generalize;
use crate::key::Key;
use crate::mask;
use crate::parse;
use crate::pii::redact::{TextPolicy, TextRewriter, TextStats, TokenFn};
use crate::pii::{Scanner, ScannerConfig};
use crate::policy::{self, DropReason, KEPT, QUARANTINED};
use crate::split::Splitter;
use crate::subject::SubjectHasher;
use crate::surrogate::{Emitted, SurrogateKind, SurrogateWriter, Surrogates};
use crate::token::{self, TokenEncoding, Tokenizer};

/// The version of the [`RowPlan`] JSON; a reader refuses any other.
pub const ROW_PLAN_VERSION: u32 = 1;

/// Each row's status code (Int32): 0 kept, 1 quarantined, 2… the drop reasons.
pub const STATUS: &str = policy::STATUS;
/// Each row's split code (Int32): 0 train, 1 validation, 2 test (0 without a split).
pub const SPLIT: &str = "__split";
/// For a quarantined row, the index (manifest order) of the first column whose value did not
/// read as its type (Int32, null otherwise).
pub const BADCOL: &str = "__badcol";
/// Each kept row's subject-index key (UInt64; null for dropped rows or without an index key).
pub const SUBJECT_KEY: &str = "__subject_key";
/// Input columns an engine may add: the input file's index and the record's index in it.
pub const FILE: &str = "__file";
pub const ROW: &str = "__row";

/// The types a manifest declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    String,
    Int64,
    Float64,
    Bool,
    Date,
    Datetime,
}

/// One manifest column: its declared type and, for dates and datetimes, the format text is
/// written in (`None`: ISO 8601 for datetimes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ValueType,
    pub format: Option<String>,
}

/// A consent or provenance rule: a column's value must be one of `allowed`, or the rule's
/// answer is fixed for the whole dataset (dataset-wide consent, a provenance tag).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ValueRule {
    Column {
        column: String,
        allowed: Vec<String>,
    },
    Fixed {
        pass: bool,
    },
}

/// The purpose rule: a column's `separator`-separated list must include `purpose`, or fixed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PurposeRule {
    Column {
        column: String,
        separator: String,
        purpose: String,
    },
    Fixed {
        pass: bool,
    },
}

/// The retention window on the timestamp column: days since 1970-01-01, `start_day`
/// inclusive, `end_day` exclusive; a missing timestamp is outside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    pub column: String,
    pub start_day: i64,
    pub end_day: i64,
}

/// The policy stage's rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRules {
    pub subject_column: String,
    /// Each row its own privacy unit: the subject is `"<file>:<row>"`.
    pub row_unit: bool,
    pub status: ValueRule,
    pub purpose: PurposeRule,
    pub provenance: ValueRule,
    pub retention: Option<Retention>,
    /// Subject-index keys of revoked subjects.
    pub revoked: Vec<u64>,
    /// Subject-index keys of erased subjects.
    pub erased: Vec<u64>,
}

/// What is done to one output column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields, tag = "do")]
pub enum OutputAction {
    Keep,
    Tokenize {
        bits: u32,
        encoding: TokenEncoding,
    },
    Hash,
    Mask {
        keep_last: usize,
    },
    GeneralizeYear,
    GeneralizeMonth,
    GeneralizeNumber {
        width: f64,
    },
    GeneralizePrefix {
        chars: usize,
    },
    Surrogate {
        kind: SurrogateKind,
    },
    /// Written by the text stage ([`TextColumn`] of the same name).
    Redact,
}

/// One output column, in output order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputColumn {
    pub name: String,
    pub action: OutputAction,
}

/// One free-text column's scanner and per-detector actions, as the plan resolved them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextColumn {
    pub column: String,
    /// Identifier columns whose values are looked for in the text.
    pub context: Vec<String>,
    pub scanner: ScannerConfig,
    pub policy: TextPolicy,
}

/// The width and encoding of tokens inside texts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    pub bits: u32,
    pub encoding: TokenEncoding,
}

/// The leak gate's settings: what every output value is scanned for before a commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatePlan {
    /// Every detector a text column runs or the defaults (the gate's scanner).
    pub scanner: ScannerConfig,
    /// Names of the detector slots, for the verdicts.
    pub slot_names: Vec<String>,
    /// Output columns reported without being scanned (identifiers the pipeline keeps).
    pub exempt: Vec<String>,
    /// Output columns only the identifier half judges (surrogate columns).
    pub surrogate_columns: Vec<String>,
    /// String identifier columns: their values of every input row are searched for.
    pub identifier_columns: Vec<String>,
    /// True when a text column writes surrogates (the detectors would take them for leaks
    /// unless the engine remembers them).
    pub text_surrogates: bool,
    /// True when a leak fails the run (`leak_gate = "fail"`); else it warns.
    pub fail: bool,
}

/// The inputs as the plan resolved them (globs expanded, paths absolute), for engines that
/// read them themselves.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcePlan {
    pub files: Vec<String>,
    /// `csv`, `parquet` or `ndjson`.
    pub format: String,
    /// The CSV field separator.
    pub separator: String,
    /// More quarantined rows than this fail the run, before anything is written.
    pub max_bad_rows: u64,
    /// A CSV source's header, in its order (every input has the same): a reader that maps
    /// fields by position must use this order, not the manifest's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub csv_columns: Vec<String>,
}

/// The part of a resolved plan that rows need.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowPlan {
    pub version: u32,
    /// Manifest columns, in manifest order (`__badcol` indexes them).
    pub columns: Vec<InputColumn>,
    pub policy: PolicyRules,
    pub outputs: Vec<OutputColumn>,
    pub texts: Vec<TextColumn>,
    pub text_tokens: TokenSettings,
    /// Fractions of subjects for train, validation and test.
    pub split: Option<[f64; 3]>,
    /// The id (hash prefix) of the run key the plan was made for, when it needs one.
    pub key_id: Option<String>,
    pub gate: GatePlan,
    pub source: SourcePlan,
    /// Input columns the kept rows also carry, as typed values, for what an engine computes
    /// over kept rows apart from the outputs (DP releases): after the subject key, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collect: Vec<CollectColumn>,
}

/// An input column carried with the kept rows ([`RowPlan::collect`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CollectColumn {
    /// The column's name in the engine's output.
    pub alias: String,
    /// The manifest column it carries.
    pub column: String,
    /// As a float64 (numeric values), else as text (as [`Typed::texts`] writes it).
    pub numeric: bool,
}

/// Why rows could not be processed: a plan or batch problem, never a value.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    #[error("the row plan is version {found}; this build reads version {ROW_PLAN_VERSION}\n  = hint: make the plan with the same privprep version as the wheel")]
    Version { found: u32 },
    #[error("the row plan is not valid JSON for this version: {0}")]
    Json(String),
    #[error("the plan needs the run key (key id {0}) and none was given")]
    NoKey(String),
    #[error("the plan drops revoked or erased subjects, which it names by the subject index key, and none was given\n  = hint: pass the key in <state dir>/keys/index.key")]
    NoIndexKey,
    #[error("the run key given has id {given}, the plan was made for {planned}\n  = hint: use the key the plan was resolved with")]
    WrongKey { given: String, planned: String },
    #[error("the batch has no column `{0}`\n  = hint: the batch must hold every manifest column, under its manifest name")]
    MissingColumn(String),
    #[error("column `{column}` is {found} in the batch; a `{want:?}` column must arrive as text or as a type that converts losslessly")]
    Type {
        column: String,
        found: DataType,
        want: ValueType,
    },
    #[error("column `{column}`: {action} of a {ty:?} column is not supported on this engine yet")]
    Unsupported {
        column: String,
        action: &'static str,
        ty: ValueType,
    },
    #[error("each row is its own privacy unit, but the batch has no `{FILE}` and `{ROW}` columns")]
    NoRowPlace,
    #[error("a text detector could not be built: {0}")]
    Scanner(String),
    #[error("the token settings are invalid: {0}")]
    Tokenizer(String),
    #[error("arrow: {0}")]
    Arrow(String),
}

impl RowPlan {
    /// Reads a plan written by `privprep plan --format json`.
    pub fn from_json(text: &str) -> Result<RowPlan, RowError> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version = serde_json::from_str(text).map_err(|e| RowError::Json(e.to_string()))?;
        if v.version != ROW_PLAN_VERSION {
            return Err(RowError::Version { found: v.version });
        }
        serde_json::from_str(text).map_err(|e| RowError::Json(e.to_string()))
    }
}

/// One text column, ready to run.
struct TextRuntime {
    plan: TextColumn,
    scanner: Scanner,
    token: Option<Arc<TokenFn>>,
    surrogate: Option<SurrogateWriter>,
    stats: TextStats,
}

/// One output column's kernel, ready to run.
enum Kernel {
    Keep,
    Str(Arc<TokenFn>),
    Year,
    Month,
    BucketInt(i64),
    BucketFloat(f64),
    Text(usize),
}

/// The row stages of one plan, with its keys loaded; shared by every batch (and thread).
pub struct RowEngine {
    plan: RowPlan,
    kernels: Vec<Kernel>,
    texts: Vec<TextRuntime>,
    splitter: Option<Splitter>,
    index: Option<SubjectHasher>,
    revoked: HashSet<u64>,
    erased: HashSet<u64>,
    emitted: Arc<Emitted>,
}

impl RowEngine {
    /// The engine for `plan` with the run `key` (needed when the plan tokenizes, gives
    /// surrogates or splits) and the subject `index` key (needed for revocations, erasures and
    /// the subject index keys).
    pub fn new(plan: RowPlan, key: Option<&Key>, index: Option<&Key>) -> Result<Self, RowError> {
        if let (Some(planned), Some(k)) = (&plan.key_id, key) {
            if k.id() != *planned {
                return Err(RowError::WrongKey {
                    given: k.id(),
                    planned: planned.clone(),
                });
            }
        }
        let need_key = || match (&plan.key_id, key) {
            (_, Some(k)) => Ok(k),
            (planned, None) => Err(RowError::NoKey(planned.clone().unwrap_or_default())),
        };
        if let (Some(planned), None) = (&plan.key_id, key) {
            return Err(RowError::NoKey(planned.clone()));
        }
        if index.is_none() && !(plan.policy.revoked.is_empty() && plan.policy.erased.is_empty()) {
            return Err(RowError::NoIndexKey);
        }
        let ty_of = |name: &str| plan.columns.iter().find(|c| c.name == name).map(|c| c.ty);
        let mut kernels = Vec::new();
        for out in &plan.outputs {
            let ty = ty_of(&out.name).ok_or_else(|| RowError::MissingColumn(out.name.clone()))?;
            let unsupported = |action| RowError::Unsupported {
                column: out.name.clone(),
                action,
                ty,
            };
            let text_input = |action| {
                if matches!(ty, ValueType::Float64 | ValueType::Datetime) {
                    Err(unsupported(action))
                } else {
                    Ok(())
                }
            };
            let kernel = match &out.action {
                OutputAction::Keep => Kernel::Keep,
                OutputAction::Tokenize { bits, encoding } => {
                    text_input("tokenizing")?;
                    let t = Tokenizer::new(need_key()?, *bits, *encoding)
                        .map_err(|e| RowError::Tokenizer(e.to_string()))?;
                    Kernel::Str(Arc::new(move |v, out| t.token_into(v, out)))
                }
                OutputAction::Surrogate { kind } => {
                    text_input("a surrogate")?;
                    let (s, kind) = (Surrogates::new(need_key()?), *kind);
                    Kernel::Str(Arc::new(move |v, out| s.surrogate_into(kind, v, out)))
                }
                OutputAction::Hash => {
                    text_input("hashing")?;
                    Kernel::Str(Arc::new(token::sha256_hex_into))
                }
                OutputAction::Mask { keep_last } => {
                    text_input("masking")?;
                    let n = *keep_last;
                    Kernel::Str(Arc::new(move |v, out| mask::mask_into(v, n, out)))
                }
                OutputAction::GeneralizePrefix { chars } => {
                    text_input("a prefix")?;
                    let n = *chars;
                    Kernel::Str(Arc::new(move |v, out| generalize::prefix_into(v, n, out)))
                }
                OutputAction::GeneralizeYear | OutputAction::GeneralizeMonth => {
                    if !matches!(ty, ValueType::Date | ValueType::Datetime) {
                        return Err(unsupported("a date generalization"));
                    }
                    if out.action == OutputAction::GeneralizeYear {
                        Kernel::Year
                    } else {
                        Kernel::Month
                    }
                }
                OutputAction::GeneralizeNumber { width } => match ty {
                    ValueType::Int64 => Kernel::BucketInt((width.round() as i64).max(1)),
                    ValueType::Float64 => Kernel::BucketFloat(*width),
                    _ => return Err(unsupported("a numeric generalization")),
                },
                OutputAction::Redact => {
                    let i = plan
                        .texts
                        .iter()
                        .position(|t| t.column == out.name)
                        .ok_or_else(|| RowError::MissingColumn(out.name.clone()))?;
                    Kernel::Text(i)
                }
            };
            kernels.push(kernel);
        }
        let emitted = Arc::new(Emitted::new());
        let mut texts = Vec::new();
        for t in &plan.texts {
            let scanner = Scanner::new(&t.scanner).map_err(|e| RowError::Scanner(e.to_string()))?;
            let token: Option<Arc<TokenFn>> = if t.policy.tokenizes() {
                let s = plan.text_tokens;
                let tokenizer = Tokenizer::new(need_key()?, s.bits, s.encoding)
                    .map_err(|e| RowError::Tokenizer(e.to_string()))?;
                Some(Arc::new(move |v: &str, out: &mut String| {
                    tokenizer.token_into(v, out)
                }))
            } else {
                None
            };
            let surrogate = key.map(|k| SurrogateWriter {
                surrogates: Surrogates::new(k),
                emitted: emitted.clone(),
            });
            texts.push(TextRuntime {
                stats: TextStats::new(t.policy.slots()),
                plan: t.clone(),
                scanner,
                token,
                surrogate,
            });
        }
        let splitter = match plan.split {
            Some(f) => Some(Splitter::new(need_key()?, f)),
            None => None,
        };
        let index = index.map(SubjectHasher::new);
        Ok(RowEngine {
            revoked: plan.policy.revoked.iter().copied().collect(),
            erased: plan.policy.erased.iter().copied().collect(),
            plan,
            kernels,
            texts,
            splitter,
            index,
            emitted,
        })
    }

    /// The plan this engine runs.
    pub fn plan(&self) -> &RowPlan {
        &self.plan
    }

    /// The counts of each text column so far: texts scanned, texts changed, spans per slot,
    /// rows dropped.
    pub fn text_stats(&self) -> Vec<(String, &TextStats)> {
        self.texts
            .iter()
            .map(|t| (t.plan.column.clone(), &t.stats))
            .collect()
    }

    /// The surrogates written into texts (the leak gate does not take them for leaks).
    pub fn emitted(&self) -> &Arc<Emitted> {
        &self.emitted
    }

    /// The schema [`RowEngine::apply`] returns: the output columns, then the status, split,
    /// bad-column and subject-key columns.
    pub fn output_schema(&self) -> Schema {
        let mut fields: Vec<Field> = self
            .plan
            .outputs
            .iter()
            .zip(&self.kernels)
            .map(|(o, k)| {
                let ty = self
                    .plan
                    .columns
                    .iter()
                    .find(|c| c.name == o.name)
                    .map_or(ValueType::String, |c| c.ty);
                let dt = match k {
                    Kernel::Keep => arrow_type(ty),
                    Kernel::Str(_) | Kernel::Text(_) => DataType::Utf8,
                    Kernel::Year => DataType::Int32,
                    Kernel::Month => DataType::Date32,
                    Kernel::BucketInt(_) => DataType::Int64,
                    Kernel::BucketFloat(_) => DataType::Float64,
                };
                Field::new(&o.name, dt, true)
            })
            .collect();
        fields.extend([
            Field::new(STATUS, DataType::Int32, false),
            Field::new(SPLIT, DataType::Int32, false),
            Field::new(BADCOL, DataType::Int32, true),
            Field::new(SUBJECT_KEY, DataType::UInt64, true),
        ]);
        fields.extend(self.plan.collect.iter().map(|c| {
            let ty = if c.numeric {
                DataType::Float64
            } else {
                DataType::Utf8
            };
            Field::new(&c.alias, ty, true)
        }));
        Schema::new(fields)
    }

    /// Every row of `batch` through the row stages: the output columns (null where the row is
    /// not kept), its status, split, bad column and subject key.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, RowError> {
        let n = batch.num_rows();
        // Ingest: each manifest column read as its type; the first bad value quarantines.
        let mut typed: Vec<Typed> = Vec::with_capacity(self.plan.columns.len());
        let mut badcol: Vec<Option<i32>> = vec![None; n];
        for (i, c) in self.plan.columns.iter().enumerate() {
            let array = batch
                .column_by_name(&c.name)
                .ok_or_else(|| RowError::MissingColumn(c.name.clone()))?;
            let (t, bad) = read_column(array, c)?;
            for (row, b) in bad.iter().enumerate() {
                if *b && badcol[row].is_none() {
                    badcol[row] = Some(i as i32);
                }
            }
            typed.push(t);
        }
        let column = |name: &str| -> Result<&Typed, RowError> {
            self.plan
                .columns
                .iter()
                .position(|c| c.name == name)
                .map(|i| &typed[i])
                .ok_or_else(|| RowError::MissingColumn(name.to_string()))
        };
        // The subject as the policy sees it (text; the row's place for row units).
        let p = &self.plan.policy;
        let subjects: Texts = if p.row_unit {
            let (files, rows) = match (batch.column_by_name(FILE), batch.column_by_name(ROW)) {
                (Some(f), Some(r)) => (as_u64s(f)?, as_u64s(r)?),
                _ => return Err(RowError::NoRowPlace),
            };
            files
                .iter()
                .zip(&rows)
                .map(|(f, r)| Some(Cow::Owned(format!("{}:{}", f.unwrap_or(0), r.unwrap_or(0)))))
                .collect()
        } else {
            column(&p.subject_column)?.texts()
        };

        let mut status: Vec<i32> = Vec::with_capacity(n);
        let rule_values = |rule: &ValueRule| -> Result<Option<Texts>, RowError> {
            match rule {
                ValueRule::Column { column: c, .. } => Ok(Some(column(c)?.texts())),
                ValueRule::Fixed { .. } => Ok(None),
            }
        };
        let status_values = rule_values(&p.status)?;
        let provenance_values = rule_values(&p.provenance)?;
        let purpose_values = match &p.purpose {
            PurposeRule::Column { column: c, .. } => Some(column(c)?.texts()),
            PurposeRule::Fixed { .. } => None,
        };
        let retention_days: Option<(Vec<Option<i64>>, &Retention)> = match &p.retention {
            Some(r) => Some((column(&r.column)?.days()?, r)),
            None => None,
        };
        let passes = |rule: &ValueRule, values: &Option<Texts>, row: usize| match (rule, values) {
            (ValueRule::Column { allowed, .. }, Some(v)) => v[row]
                .as_deref()
                .is_some_and(|v| policy::one_of(v, allowed)),
            (ValueRule::Fixed { pass }, _) => *pass,
            _ => false,
        };
        for row in 0..n {
            let subject = subjects[row].as_deref();
            let key = |set: &HashSet<u64>| {
                !set.is_empty()
                    && self
                        .index
                        .as_ref()
                        .and_then(|h| h.key(subject?))
                        .is_some_and(|k| set.contains(&k))
            };
            let purpose_ok = match (&p.purpose, &purpose_values) {
                (
                    PurposeRule::Column {
                        separator, purpose, ..
                    },
                    Some(v),
                ) => v[row]
                    .as_deref()
                    .is_some_and(|v| policy::purposes_include(v, separator, purpose)),
                (PurposeRule::Fixed { pass }, _) => *pass,
                _ => false,
            };
            let retained = match &retention_days {
                Some((days, r)) => days[row].is_some_and(|d| d >= r.start_day && d < r.end_day),
                None => true,
            };
            let code = if badcol[row].is_some() {
                QUARANTINED
            } else if subject.is_none_or(|s| crate::parse::trim(s).is_empty()) {
                DropReason::MissingSubject.code()
            } else if key(&self.erased) {
                DropReason::Erased.code()
            } else if key(&self.revoked) {
                DropReason::Revoked.code()
            } else if !passes(&p.status, &status_values, row) {
                DropReason::ConsentStatus.code()
            } else if !purpose_ok {
                DropReason::ConsentPurpose.code()
            } else if !passes(&p.provenance, &provenance_values, row) {
                DropReason::Provenance.code()
            } else if !retained {
                DropReason::Retention.code()
            } else {
                KEPT
            };
            status.push(code as i32);
        }

        // Texts: a `drop_row` hit drops its (kept) row before anything is transformed.
        let text_inputs: Vec<(Texts, Vec<Texts>)> = self
            .texts
            .iter()
            .map(|t| {
                let text = column(&t.plan.column)?.texts();
                let context = t
                    .plan
                    .context
                    .iter()
                    .map(|c| column(c).map(Typed::texts))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((text, context))
            })
            .collect::<Result<_, RowError>>()?;
        for (t, (text, context)) in self.texts.iter().zip(&text_inputs) {
            if !t.plan.policy.drops_rows() {
                continue;
            }
            let mut rw = TextRewriter::new(&t.scanner, &t.plan.policy, None);
            let mut dropped = 0u64;
            for row in 0..n {
                if status[row] != KEPT as i32 {
                    continue;
                }
                let ctx = context.iter().map(|c| c[row].as_deref());
                if rw.drop_row(text[row].as_deref(), ctx) == Some(true) {
                    status[row] = DropReason::PiiInText.code() as i32;
                    dropped += 1;
                }
            }
            t.stats
                .rows_dropped
                .fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
        }
        let kept: Vec<bool> = status.iter().map(|s| *s == KEPT as i32).collect();

        // Outputs, for kept rows only.
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.kernels.len() + 4);
        for (out, kernel) in self.plan.outputs.iter().zip(&self.kernels) {
            let input = column(&out.name)?;
            let array: ArrayRef = match kernel {
                Kernel::Keep => input.masked(&kept),
                Kernel::Str(f) => {
                    let mut b = StringBuilder::with_capacity(n, 16 * n);
                    let mut buf = String::new();
                    for (row, v) in input.texts().into_iter().enumerate() {
                        match v.filter(|_| kept[row]) {
                            Some(v) => {
                                buf.clear();
                                f(v.as_ref(), &mut buf);
                                b.append_value(&buf);
                            }
                            None => b.append_null(),
                        }
                    }
                    Arc::new(b.finish())
                }
                Kernel::Year | Kernel::Month => {
                    let days = input.days()?;
                    if matches!(kernel, Kernel::Year) {
                        let mut b = Int32Builder::with_capacity(n);
                        for (row, d) in days.iter().enumerate() {
                            b.append_option(d.filter(|_| kept[row]).map(year_of));
                        }
                        Arc::new(b.finish())
                    } else {
                        let mut b = Date32Builder::with_capacity(n);
                        for (row, d) in days.iter().enumerate() {
                            b.append_option(
                                d.filter(|_| kept[row])
                                    .map(|d| generalize::month_start_days(d as i32)),
                            );
                        }
                        Arc::new(b.finish())
                    }
                }
                Kernel::BucketInt(w) => {
                    let Typed::Int(v) = input else {
                        return Err(RowError::Arrow("int64 bucket of a non-integer".into()));
                    };
                    let mut b = Int64Builder::with_capacity(n);
                    for (row, x) in v.iter().enumerate() {
                        b.append_option(
                            x.filter(|_| kept[row])
                                .map(|x| generalize::bucket_i64(x, *w)),
                        );
                    }
                    Arc::new(b.finish())
                }
                Kernel::BucketFloat(w) => {
                    let Typed::Float(v) = input else {
                        return Err(RowError::Arrow("float64 bucket of a non-float".into()));
                    };
                    let mut b = Float64Builder::with_capacity(n);
                    for (row, x) in v.iter().enumerate() {
                        b.append_option(
                            x.filter(|_| kept[row])
                                .map(|x| generalize::bucket_f64(x, *w)),
                        );
                    }
                    Arc::new(b.finish())
                }
                Kernel::Text(i) => {
                    let t = &self.texts[*i];
                    let (text, context) = &text_inputs[*i];
                    let mut rw = TextRewriter::new(&t.scanner, &t.plan.policy, t.token.as_deref())
                        .with_surrogates(t.surrogate.as_ref());
                    let mut b = StringBuilder::with_capacity(n, 64 * n);
                    for row in 0..n {
                        let v = text[row].as_deref().filter(|_| kept[row]);
                        let ctx = context.iter().map(|c| c[row].as_deref());
                        b.append_option(rw.rewrite_row(v, ctx));
                    }
                    rw.add_to(&t.stats);
                    Arc::new(b.finish())
                }
            };
            columns.push(array);
        }
        let split: Vec<i32> = match &self.splitter {
            Some(s) => subjects.iter().map(|v| s.split_of(v.as_deref())).collect(),
            None => vec![0; n],
        };
        let subject_keys: Vec<Option<u64>> = subjects
            .iter()
            .zip(&kept)
            .map(|(s, k)| {
                let h = self.index.as_ref().filter(|_| *k)?;
                h.key(s.as_deref()?)
            })
            .collect();
        columns.push(Arc::new(arrow_array::Int32Array::from(status)));
        columns.push(Arc::new(arrow_array::Int32Array::from(split)));
        columns.push(Arc::new(arrow_array::Int32Array::from(badcol)));
        columns.push(Arc::new(arrow_array::UInt64Array::from(subject_keys)));
        for c in &self.plan.collect {
            let i = self
                .plan
                .columns
                .iter()
                .position(|m| m.name == c.column)
                .ok_or_else(|| RowError::MissingColumn(c.column.clone()))?;
            let array: ArrayRef = if c.numeric {
                let v = typed[i].floats()?;
                Arc::new(arrow_array::Float64Array::from_iter(
                    v.into_iter().zip(&kept).map(|(x, k)| x.filter(|_| *k)),
                ))
            } else {
                let v = typed[i].texts();
                Arc::new(arrow_array::StringArray::from_iter(
                    v.iter()
                        .zip(&kept)
                        .map(|(x, k)| x.as_deref().filter(|_| *k)),
                ))
            };
            columns.push(array);
        }
        RecordBatch::try_new(Arc::new(self.output_schema()), columns)
            .map_err(|e| RowError::Arrow(e.to_string()))
    }
}

/// The leak gate over batches of written rows, for engines whose workers each see a part of
/// the output: the detector half ([`gate::detector_hits`]) and the identifier half
/// ([`gate::identifier_hits`]) on every judged string column, the counts summed by the
/// engine. The identifier set is built from keys every worker gathered from every input row
/// ([`identifier_keys`]) under one [`ValueHasher`] key.
pub struct BatchGate {
    plan: GatePlan,
    scanner: Scanner,
    ids: IdentifierSet,
    /// The surrogates the row engines wrote into texts, which the detectors do not count.
    emitted: Option<Emitted>,
}

/// The keyed values ([`ValueHasher::value_keys`]) of the identifier columns of one batch of
/// input rows, every row (kept or not).
pub fn identifier_keys(
    hasher: &ValueHasher,
    batch: &RecordBatch,
    columns: &[String],
) -> Result<Vec<(u64, Option<u64>)>, RowError> {
    let mut out = Vec::new();
    for c in columns {
        let array = batch
            .column_by_name(c)
            .ok_or_else(|| RowError::MissingColumn(c.clone()))?;
        for v in text_values(array).ok_or_else(|| RowError::Type {
            column: c.clone(),
            found: array.data_type().clone(),
            want: ValueType::String,
        })? {
            out.extend(v.and_then(|v| hasher.value_keys(v)));
        }
    }
    Ok(out)
}

/// The values of a string column (any offset width or view), `None` for another type.
fn text_values(array: &ArrayRef) -> Option<Vec<Option<&str>>> {
    match array.data_type() {
        DataType::Utf8 => Some(array.as_string::<i32>().iter().collect()),
        DataType::LargeUtf8 => Some(array.as_string::<i64>().iter().collect()),
        DataType::Utf8View => Some(array.as_string_view().iter().collect()),
        _ => None,
    }
}

impl BatchGate {
    /// The gate of `plan` over the identifier values gathered as `keys` under `hasher`.
    /// `emitted` are the keys ([`Emitted::keys`]) of every surrogate the row engines wrote
    /// into texts (each engine's [`RowEngine::emitted`]): the detectors do not count those.
    pub fn new(
        plan: &GatePlan,
        hasher: ValueHasher,
        keys: impl IntoIterator<Item = (u64, Option<u64>)>,
        emitted: impl IntoIterator<Item = u64>,
    ) -> Result<BatchGate, RowError> {
        let distinct = DistinctKeys::new();
        distinct.insert_keys(keys);
        let emitted = plan.text_surrogates.then(|| {
            let e = Emitted::new();
            for k in emitted {
                e.insert_key(k);
            }
            e
        });
        Ok(BatchGate {
            scanner: Scanner::new(&plan.scanner).map_err(|e| RowError::Scanner(e.to_string()))?,
            ids: IdentifierSet::from_distinct(hasher, distinct),
            plan: plan.clone(),
            emitted,
        })
    }

    /// The counts of one batch of written rows, per judged column (string columns that are
    /// not exempt), in the batch's column order.
    pub fn check(&self, batch: &RecordBatch) -> Vec<(String, GateCounts)> {
        let slots = self.plan.slot_names.len();
        let mut out = Vec::new();
        for (f, array) in batch.schema_ref().fields().iter().zip(batch.columns()) {
            if self.plan.exempt.contains(f.name()) {
                continue;
            }
            let Some(values) = text_values(array) else {
                continue;
            };
            let mut counts = if self.plan.surrogate_columns.contains(f.name()) {
                GateCounts {
                    scanned: values.iter().flatten().count() as u64,
                    hits: vec![0; slots],
                    ..GateCounts::default()
                }
            } else if let Some(e) = &self.emitted {
                gate::detector_hits_except(&self.scanner, slots, &values, e)
            } else {
                gate::detector_hits(&self.scanner, slots, &values)
            };
            if !self.ids.is_empty() {
                counts.identifier_values =
                    gate::identifier_hits(&self.ids, &values).identifier_values;
            }
            out.push((f.name().clone(), counts));
        }
        out
    }
}

/// The calendar year of a day count since 1970-01-01.
fn year_of(days: i64) -> i32 {
    use chrono::Datelike;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");
    epoch
        .checked_add_signed(chrono::Duration::days(days))
        .map_or(0, |d| d.year())
}

/// The Arrow type of a declared type (as the Parquet writer writes it).
pub fn arrow_type(ty: ValueType) -> DataType {
    match ty {
        ValueType::String => DataType::Utf8,
        ValueType::Int64 => DataType::Int64,
        ValueType::Float64 => DataType::Float64,
        ValueType::Bool => DataType::Boolean,
        ValueType::Date => DataType::Date32,
        ValueType::Datetime => DataType::Timestamp(TimeUnit::Microsecond, None),
    }
}

/// A column's values as text: borrowed from the batch for text columns.
type Texts<'a> = Vec<Option<Cow<'a, str>>>;

/// One column read as its declared type (text borrowed from the batch).
enum Typed<'a> {
    Str(Texts<'a>),
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    /// Days since 1970-01-01.
    Date(Vec<Option<i32>>),
    /// Microseconds since 1970-01-01T00:00:00.
    Datetime(Vec<Option<i64>>),
}

impl<'a> Typed<'a> {
    /// The values as text, as string kernels and predicates see them (the polars engine casts
    /// the same way): integers in decimal, booleans `true`/`false`, dates `YYYY-MM-DD`.
    fn texts(&self) -> Texts<'a> {
        let owned = |s: String| Some(Cow::Owned(s));
        match self {
            Typed::Str(v) => v.clone(),
            Typed::Int(v) => v
                .iter()
                .map(|x| x.and_then(|x| owned(x.to_string())))
                .collect(),
            Typed::Bool(v) => v
                .iter()
                .map(|x| x.and_then(|x| owned(x.to_string())))
                .collect(),
            Typed::Date(v) => v
                .iter()
                .map(|d| d.and_then(|d| owned(day(d as i64).format("%Y-%m-%d").to_string())))
                .collect(),
            Typed::Float(v) => v
                .iter()
                .map(|x| x.and_then(|x| owned(x.to_string())))
                .collect(),
            Typed::Datetime(v) => v
                .iter()
                .map(|x| {
                    x.and_then(chrono::DateTime::from_timestamp_micros)
                        .and_then(|t| {
                            owned(t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string())
                        })
                })
                .collect(),
        }
    }

    /// The values as floats, as the polars engine casts them for releases (booleans 1 and 0).
    fn floats(&self) -> Result<Vec<Option<f64>>, RowError> {
        match self {
            Typed::Int(v) => Ok(v.iter().map(|x| x.map(|x| x as f64)).collect()),
            Typed::Float(v) => Ok(v.clone()),
            Typed::Bool(v) => Ok(v
                .iter()
                .map(|x| x.map(|b| f64::from(u8::from(b))))
                .collect()),
            _ => Err(RowError::Arrow(
                "numeric values of a column that holds no numbers".into(),
            )),
        }
    }

    /// The values as whole days (dates, or datetimes floored to their day).
    fn days(&self) -> Result<Vec<Option<i64>>, RowError> {
        match self {
            Typed::Date(v) => Ok(v.iter().map(|d| d.map(i64::from)).collect()),
            Typed::Datetime(v) => Ok(v
                .iter()
                .map(|x| x.map(|x| x.div_euclid(86_400_000_000)))
                .collect()),
            _ => Err(RowError::Arrow(
                "days of a column that holds no dates".into(),
            )),
        }
    }

    /// The column as Arrow, null where `keep` is false.
    fn masked(&self, keep: &[bool]) -> ArrayRef {
        fn pick<T: Copy>(v: &[Option<T>], keep: &[bool]) -> Vec<Option<T>> {
            v.iter().zip(keep).map(|(x, k)| x.filter(|_| *k)).collect()
        }
        match self {
            Typed::Str(v) => {
                let mut b = StringBuilder::new();
                for (x, k) in v.iter().zip(keep) {
                    b.append_option(x.as_deref().filter(|_| *k));
                }
                Arc::new(b.finish())
            }
            Typed::Int(v) => Arc::new(arrow_array::Int64Array::from(pick(v, keep))),
            Typed::Float(v) => Arc::new(arrow_array::Float64Array::from(pick(v, keep))),
            Typed::Bool(v) => Arc::new(arrow_array::BooleanArray::from(pick(v, keep))),
            Typed::Date(v) => Arc::new(arrow_array::Date32Array::from(pick(v, keep))),
            Typed::Datetime(v) => {
                Arc::new(arrow_array::TimestampMicrosecondArray::from(pick(v, keep)))
            }
        }
    }
}

fn day(days: i64) -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
        .expect("a valid date")
        .checked_add_signed(chrono::Duration::days(days))
        .unwrap_or_default()
}

/// A column of unsigned integers (the file and record indexes).
fn as_u64s(array: &ArrayRef) -> Result<Vec<Option<u64>>, RowError> {
    let ints = integers(array).ok_or_else(|| {
        RowError::Arrow(format!(
            "`{FILE}` and `{ROW}` must be integer columns, found {}",
            array.data_type()
        ))
    })?;
    Ok(ints
        .into_iter()
        .map(|v| v.and_then(|v| u64::try_from(v).ok()))
        .collect())
}

/// Any integer column as i64 values (`None` for another type; u64 beyond i64 wraps).
fn integers(array: &ArrayRef) -> Option<Vec<Option<i64>>> {
    macro_rules! ints {
        ($($t:ty),*) => {
            match array.data_type() {
                $(d if d == &<$t as arrow_array::types::ArrowPrimitiveType>::DATA_TYPE => Some(
                    array.as_primitive::<$t>().iter().map(|v| v.map(|v| v as i64)).collect(),
                ),)*
                _ => None,
            }
        };
    }
    ints!(Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type)
}

/// Reads one batch column as the manifest column's type: text is parsed by the kernels'
/// rules ([`crate::parse`]), typed columns convert losslessly. Also gives, per row, whether a
/// present value failed to read (the row is quarantined).
fn read_column<'a>(
    array: &'a ArrayRef,
    c: &InputColumn,
) -> Result<(Typed<'a>, Vec<bool>), RowError> {
    let n = array.len();
    let type_error = || RowError::Type {
        column: c.name.clone(),
        found: array.data_type().clone(),
        want: c.ty,
    };
    if let Some(text) = text_values(array) {
        let mut bad = vec![false; n];
        // Text is stripped before it is read; an empty value is missing, not bad.
        // Each value read once: its typed value, and whether it was present but unreadable.
        fn read<T>(
            text: &[Option<&str>],
            bad: &mut [bool],
            f: impl Fn(&str) -> Option<T>,
        ) -> Vec<Option<T>> {
            text.iter()
                .zip(bad.iter_mut())
                .map(|(v, bad)| {
                    let v = (*v)?;
                    let got = f(v);
                    *bad = got.is_none() && parse::is_present(v);
                    got
                })
                .collect()
        }
        let typed = match c.ty {
            ValueType::String => {
                return Ok((
                    Typed::Str(text.into_iter().map(|v| v.map(Cow::Borrowed)).collect()),
                    bad,
                ))
            }
            ValueType::Int64 => Typed::Int(read(&text, &mut bad, parse::int64)),
            ValueType::Float64 => Typed::Float(read(&text, &mut bad, parse::float64)),
            ValueType::Bool => Typed::Bool(read(&text, &mut bad, parse::boolean)),
            ValueType::Date => {
                let f = c.format.as_deref().unwrap_or(parse::ISO_DATE);
                Typed::Date(read(&text, &mut bad, |v| parse::date_days(v, f)))
            }
            ValueType::Datetime => {
                let f = c.format.as_deref();
                Typed::Datetime(read(&text, &mut bad, |v| parse::datetime_micros(v, f)))
            }
        };
        return Ok((typed, bad));
    }
    let none = vec![false; n];
    let typed = match (array.data_type(), c.ty) {
        (DataType::Null, ty) => match ty {
            ValueType::String => Typed::Str(vec![None; n]),
            ValueType::Int64 => Typed::Int(vec![None; n]),
            ValueType::Float64 => Typed::Float(vec![None; n]),
            ValueType::Bool => Typed::Bool(vec![None; n]),
            ValueType::Date => Typed::Date(vec![None; n]),
            ValueType::Datetime => Typed::Datetime(vec![None; n]),
        },
        (DataType::Boolean, ValueType::Bool) => Typed::Bool(array.as_boolean().iter().collect()),
        (DataType::Float64 | DataType::Float32, ValueType::Float64) => {
            Typed::Float(if array.data_type() == &DataType::Float64 {
                array.as_primitive::<Float64Type>().iter().collect()
            } else {
                array
                    .as_primitive::<arrow_array::types::Float32Type>()
                    .iter()
                    .map(|v| v.map(f64::from))
                    .collect()
            })
        }
        (DataType::Date32, ValueType::Date) => {
            Typed::Date(array.as_primitive::<Date32Type>().iter().collect())
        }
        (DataType::Date32, ValueType::Datetime) => Typed::Datetime(
            array
                .as_primitive::<Date32Type>()
                .iter()
                .map(|d| d.map(|d| i64::from(d) * 86_400_000_000))
                .collect(),
        ),
        (DataType::Timestamp(unit, _), ValueType::Datetime | ValueType::Date) => {
            let micros: Vec<Option<i64>> = timestamps_micros(array, unit);
            if c.ty == ValueType::Date {
                Typed::Date(
                    micros
                        .iter()
                        .map(|x| x.map(|x| x.div_euclid(86_400_000_000) as i32))
                        .collect(),
                )
            } else {
                Typed::Datetime(micros)
            }
        }
        (_, ValueType::Int64) => Typed::Int(integers(array).ok_or_else(type_error)?),
        (_, ValueType::Float64) => Typed::Float(
            integers(array)
                .ok_or_else(type_error)?
                .into_iter()
                .map(|v| v.map(|v| v as f64))
                .collect(),
        ),
        (_, ValueType::String) => Typed::Str(
            integers(array)
                .ok_or_else(type_error)?
                .into_iter()
                .map(|v| v.map(|v| Cow::Owned(v.to_string())))
                .collect(),
        ),
        _ => return Err(type_error()),
    };
    Ok((typed, none))
}

/// A timestamp column in microseconds.
fn timestamps_micros(array: &ArrayRef, unit: &TimeUnit) -> Vec<Option<i64>> {
    use arrow_array::types::{
        TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
    };
    match unit {
        TimeUnit::Second => array
            .as_primitive::<TimestampSecondType>()
            .iter()
            .map(|v| v.map(|v| v * 1_000_000))
            .collect(),
        TimeUnit::Millisecond => array
            .as_primitive::<TimestampMillisecondType>()
            .iter()
            .map(|v| v.map(|v| v * 1_000))
            .collect(),
        TimeUnit::Microsecond => array
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .collect(),
        TimeUnit::Nanosecond => array
            .as_primitive::<TimestampNanosecondType>()
            .iter()
            .map(|v| v.map(|v| v.div_euclid(1_000)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{
        Date32Array, Int32Array, Int64Array, StringArray, TimestampMillisecondArray, UInt64Array,
    };

    fn plan(row_unit: bool) -> RowPlan {
        let col = |name: &str, ty| InputColumn {
            name: name.into(),
            ty,
            format: None,
        };
        RowPlan {
            version: ROW_PLAN_VERSION,
            columns: vec![
                col("subject", ValueType::String),
                col("n", ValueType::Int64),
                col("born", ValueType::Date),
                col("at", ValueType::Datetime),
            ],
            policy: PolicyRules {
                subject_column: "subject".into(),
                row_unit,
                status: ValueRule::Fixed { pass: true },
                purpose: PurposeRule::Fixed { pass: true },
                provenance: ValueRule::Fixed { pass: true },
                retention: Some(Retention {
                    column: "at".into(),
                    start_day: 0,
                    end_day: 20_000,
                }),
                revoked: vec![],
                erased: vec![],
            },
            outputs: vec![
                OutputColumn {
                    name: "n".into(),
                    action: OutputAction::GeneralizeNumber { width: 10.0 },
                },
                OutputColumn {
                    name: "born".into(),
                    action: OutputAction::GeneralizeYear,
                },
                OutputColumn {
                    name: "at".into(),
                    action: OutputAction::Keep,
                },
            ],
            texts: vec![],
            text_tokens: TokenSettings {
                bits: 128,
                encoding: TokenEncoding::Hex,
            },
            split: None,
            key_id: None,
            gate: GatePlan {
                scanner: ScannerConfig::default(),
                slot_names: vec![],
                exempt: vec![],
                surrogate_columns: vec![],
                identifier_columns: vec![],
                text_surrogates: false,
                fail: true,
            },
            source: SourcePlan {
                files: vec![],
                format: "csv".into(),
                separator: ",".into(),
                max_bad_rows: 0,
                csv_columns: Vec::new(),
            },
            collect: Vec::new(),
        }
    }

    /// Typed columns (as Parquet gives them) convert losslessly: narrower integers, timestamps
    /// in other units; the policy and the actions see the same values as from text.
    #[test]
    fn typed_and_text_inputs_give_the_same_rows() {
        let engine = RowEngine::new(plan(false), None, None).unwrap();
        let typed = RecordBatch::try_from_iter([
            (
                "subject",
                Arc::new(StringArray::from(vec![Some("a"), Some(" "), Some("c")])) as ArrayRef,
            ),
            (
                "n",
                Arc::new(Int32Array::from(vec![17, 23, -5])) as ArrayRef,
            ),
            (
                "born",
                Arc::new(Date32Array::from(vec![0, 400, 800])) as ArrayRef,
            ),
            (
                "at",
                Arc::new(TimestampMillisecondArray::from(vec![
                    86_400_000, 86_400_000, -1,
                ])) as ArrayRef,
            ),
        ])
        .unwrap();
        let text = RecordBatch::try_from_iter([
            (
                "subject",
                Arc::new(StringArray::from(vec![Some("a"), Some(" "), Some("c")])) as ArrayRef,
            ),
            (
                "n",
                Arc::new(StringArray::from(vec!["17", " 23", "-5"])) as ArrayRef,
            ),
            (
                "born",
                Arc::new(StringArray::from(vec![
                    "1970-01-01",
                    "1971-02-05",
                    "1972-03-11",
                ])) as ArrayRef,
            ),
            (
                "at",
                Arc::new(StringArray::from(vec![
                    "1970-01-02T00:00:00",
                    "1970-01-02 00:00:00",
                    "1969-12-31T23:59:59.999",
                ])) as ArrayRef,
            ),
        ])
        .unwrap();
        let a = engine.apply(&typed).unwrap();
        let b = engine.apply(&text).unwrap();
        assert_eq!(a, b);
        let status = a
            .column_by_name(STATUS)
            .unwrap()
            .as_primitive::<Int32Type>();
        // Kept; missing subject; outside the retention window (the day before 1970).
        assert_eq!(
            status.values().to_vec(),
            vec![
                KEPT as i32,
                DropReason::MissingSubject.code() as i32,
                DropReason::Retention.code() as i32
            ]
        );
        let n = a.column_by_name("n").unwrap().as_primitive::<Int64Type>();
        assert_eq!(n.iter().collect::<Vec<_>>(), vec![Some(10), None, None]);
        let born = a
            .column_by_name("born")
            .unwrap()
            .as_primitive::<Int32Type>();
        assert_eq!(born.value(0), 1970);
    }

    /// A value that does not read quarantines its row and names the first bad column; an
    /// empty one is missing, not bad.
    #[test]
    fn bad_values_quarantine_and_empty_ones_are_missing() {
        let engine = RowEngine::new(plan(false), None, None).unwrap();
        let batch = RecordBatch::try_from_iter([
            (
                "subject",
                Arc::new(StringArray::from(vec!["a", "b", "c"])) as ArrayRef,
            ),
            (
                "n",
                Arc::new(StringArray::from(vec![Some("1.5"), Some("  "), None])) as ArrayRef,
            ),
            (
                "born",
                Arc::new(StringArray::from(vec!["1970/01/01", "1970-01-01", "x"])) as ArrayRef,
            ),
            (
                "at",
                Arc::new(StringArray::from(vec!["1970-01-02T00:00:00"; 3])) as ArrayRef,
            ),
        ])
        .unwrap();
        let out = engine.apply(&batch).unwrap();
        let status = out
            .column_by_name(STATUS)
            .unwrap()
            .as_primitive::<Int32Type>();
        assert_eq!(
            status.values().to_vec(),
            vec![QUARANTINED as i32, KEPT as i32, QUARANTINED as i32]
        );
        let bad = out
            .column_by_name(BADCOL)
            .unwrap()
            .as_primitive::<Int32Type>();
        assert_eq!(bad.iter().collect::<Vec<_>>(), vec![Some(1), None, Some(2)]);
    }

    /// Each row its own unit: the subject is the row's place, which the batch must carry.
    #[test]
    fn row_units_need_the_rows_place() {
        let index = Key::parse(&"ab".repeat(32)).unwrap();
        let engine = RowEngine::new(plan(true), None, Some(&index)).unwrap();
        let columns = |with_place: bool| {
            let mut c: Vec<(&str, ArrayRef)> = vec![
                (
                    "subject",
                    Arc::new(StringArray::from(vec![None::<&str>; 2])),
                ),
                ("n", Arc::new(Int64Array::from(vec![1, 2]))),
                ("born", Arc::new(Date32Array::from(vec![1, 2]))),
                ("at", Arc::new(Date32Array::from(vec![5, 6]))),
            ];
            if with_place {
                c.push((FILE, Arc::new(UInt64Array::from(vec![0, 0]))));
                c.push((ROW, Arc::new(UInt64Array::from(vec![7, 8]))));
            }
            RecordBatch::try_from_iter(c).unwrap()
        };
        let err = engine.apply(&columns(false)).unwrap_err();
        assert!(matches!(err, RowError::NoRowPlace), "{err}");
        let out = engine.apply(&columns(true)).unwrap();
        let keys = out
            .column_by_name(SUBJECT_KEY)
            .unwrap()
            .as_primitive::<UInt64Type>();
        let hasher = SubjectHasher::new(&index);
        assert_eq!(keys.value(0), hasher.key("0:7").unwrap());
        assert_ne!(keys.value(0), keys.value(1));
    }
}
