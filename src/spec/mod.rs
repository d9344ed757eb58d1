//! The pipeline file: typed structs, strict parsing, and the first (structural) validation.
//!
//! Parsing is strict (`deny_unknown_fields`, typed enums) so a typo is an error with a line and
//! column, never a silently ignored setting. Checks against manifests and data schemas happen in
//! `plan`; this module knows nothing of data. Depends on: nothing else in the crate.

pub mod diag;
pub mod paths;
pub mod sidefile;

pub use diag::{Diagnostic, Diagnostics};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A parsed pipeline file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    pub pipeline: PipelineMeta,
    pub source: SourceSpec,
    pub policy: PolicySpec,
    #[serde(default)]
    pub tokens: TokenSpec,
    /// Output column rules keyed by input column name.
    #[serde(default)]
    pub columns: BTreeMap<Spanned<String>, Spanned<ColumnRule>>,
    /// Free-text PII detection settings shared by every `redact` column.
    #[serde(default)]
    pub pii: PiiSpec,
    pub output: OutputSpec,
    /// Differentially private releases computed from the consented rows.
    #[serde(default)]
    pub release: Vec<Spanned<ReleaseSpec>>,
}

/// `[[release]]`: one table of differentially private statistics.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSpec {
    /// Release name, used in lineage and the ledger.
    pub name: Spanned<String>,
    /// Output Parquet file, relative to the pipeline file.
    pub path: Spanned<String>,
    /// Columns to group by (none: one row for the whole dataset).
    #[serde(default)]
    pub group_by: Vec<Spanned<String>>,
    /// `public` (every key of the key list appears) or `private` (keys found in the data,
    /// released above a noisy threshold; needs δ > 0).
    #[serde(default)]
    pub keys: Option<Spanned<KeySetSpec>>,
    /// Public keys: a file with one key per line (or a CSV whose header names the group
    /// column); default the manifest's `values` of the group column.
    #[serde(default)]
    pub key_file: Option<Spanned<String>>,
    /// At most this many rows of one subject count in one group.
    #[serde(default)]
    pub max_rows_per_group: Option<Spanned<u32>>,
    /// Instead of the two bounds above: at most this many rows of one subject count in all,
    /// in whatever groups they fall (one truncation, and the cheapest to run).
    #[serde(default)]
    pub max_rows_per_subject: Option<Spanned<u32>>,
    /// At most this many groups one subject contributes to.
    #[serde(default)]
    pub max_groups: Option<Spanned<u32>>,
    /// A public upper bound on the consented rows the release reads (so on any group's size).
    /// OpenDP's float sums need it; it must not come from the data. Required with sum/mean.
    #[serde(default)]
    pub max_rows: Option<Spanned<u32>>,
    /// Private keys with sum/mean: a public upper bound on the number of distinct keys.
    #[serde(default)]
    pub max_keys: Option<Spanned<u32>>,
    /// The privacy target: `{ epsilon }`, `{ epsilon, delta }` or `{ rho }`.
    pub privacy: Spanned<PrivacySpec>,
    /// The statistics.
    pub aggregates: Spanned<Vec<AggregateSpec>>,
}

/// Where the group keys of a release come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySetSpec {
    Public,
    Private,
}

/// A privacy target or cap.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PrivacySpec {
    #[serde(default)]
    pub epsilon: Option<f64>,
    #[serde(default)]
    pub delta: Option<f64>,
    #[serde(default)]
    pub rho: Option<f64>,
}

/// One statistic of a release.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateSpec {
    /// `count`, `sum`, `mean`, `quantile` or `median`.
    pub kind: AggregateKind,
    /// The column (not for `count`).
    #[serde(default)]
    pub column: Option<String>,
    /// `[lower, upper]` clamp for `sum` and `mean`.
    #[serde(default)]
    pub bounds: Option<[f64; 2]>,
    /// Candidate values for `quantile` and `median`.
    #[serde(default)]
    pub candidates: Option<Vec<f64>>,
    /// The quantile, 0 to 1 (`median` is 0.5).
    #[serde(default)]
    pub alpha: Option<f64>,
}

/// Statistics a release may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AggregateKind {
    Count,
    Sum,
    Mean,
    Quantile,
    Median,
}

/// `[pii]`: detectors, lists and the leak gate.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PiiSpec {
    /// Phone numbering plans (ISO 3166 alpha-2) that phone numbers are validated against.
    #[serde(default)]
    pub regions: Option<Spanned<Vec<String>>>,
    /// Values never flagged, e.g. the support desk's own address.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Terms always flagged (detector `deny`).
    #[serde(default)]
    pub deny: Vec<String>,
    /// A file of terms always flagged, one per line; lineage keeps its hash, not its terms.
    #[serde(default)]
    pub deny_file: Option<Spanned<String>>,
    /// Replacement labels by detector name, e.g. `email = "[E-MAIL]"`.
    #[serde(default)]
    pub labels: BTreeMap<Spanned<String>, Spanned<String>>,
    /// What the output leak gate does on a hit: `fail` (default) or `warn`.
    #[serde(default)]
    pub leak_gate: LeakGateMode,
    /// User-defined detectors.
    #[serde(default)]
    pub detector: Vec<Spanned<DetectorSpec>>,
}

/// `[[pii.detector]]`: a regular expression with an optional validator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorSpec {
    /// Detector name, used in `detectors`, `actions`, labels and lineage.
    pub name: Spanned<String>,
    /// Regular expression (Rust `regex` syntax) matched against the text.
    pub pattern: Spanned<String>,
    /// Check a match must pass: `luhn`, `mod97` or `ssn`; default none.
    #[serde(default)]
    pub validator: Option<ValidatorSpec>,
    /// Replacement label, default `[NAME]` of the detector in upper case.
    #[serde(default)]
    pub label: Option<String>,
}

/// Validators a user-defined detector may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidatorSpec {
    None,
    Luhn,
    Mod97,
    Ssn,
}

/// What the leak gate does when an output holds PII.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LeakGateMode {
    /// The run fails and nothing is committed.
    #[default]
    Fail,
    /// The run commits and warns.
    Warn,
}

/// What is done with one PII hit inside a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TextActionSpec {
    /// Replace with a label such as `[EMAIL]`.
    Redact,
    /// Replace with the label and the value's keyed token, `[EMAIL:3f9a…]`.
    Tokenize,
    /// Keep the last `keep_last` characters, star the rest.
    Mask,
    /// Drop the whole row.
    DropRow,
}

/// `[pipeline]`: name and description.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineMeta {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `[source]`: where the rows come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// A file, a glob, or a list of them, relative to the pipeline file.
    pub path: Spanned<OneOrMany>,
    /// File format; taken from the extension when absent.
    #[serde(default)]
    pub format: Option<Spanned<SourceFormat>>,
    /// Dataset manifest; defaults to `manifest.toml` beside the first data file.
    #[serde(default)]
    pub manifest: Option<Spanned<String>>,
    /// CSV field separator (one ASCII character), default `,`.
    #[serde(default)]
    pub separator: Option<Spanned<String>>,
}

/// A single string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The strings, in order.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    Csv,
    Parquet,
    Ndjson,
}

impl SourceFormat {
    /// The format a file extension stands for.
    pub fn from_path(path: &Path) -> Option<SourceFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(SourceFormat::Csv),
            "parquet" | "pq" => Some(SourceFormat::Parquet),
            "ndjson" | "jsonl" => Some(SourceFormat::Ndjson),
            _ => None,
        }
    }
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceFormat::Csv => "csv",
            SourceFormat::Parquet => "parquet",
            SourceFormat::Ndjson => "ndjson",
        }
    }
}

/// `[policy]`: which rows may be processed at all.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// The processing purpose a row's consent must include, e.g. `training`.
    pub purpose: Spanned<String>,
    /// Consent statuses valid for processing; default `["given"]`.
    #[serde(default)]
    pub allowed_status: Option<Spanned<Vec<String>>>,
    /// Provenance tags allowed in; required, so that scraped data is never let in by default.
    pub allowed_provenance: Spanned<Vec<String>>,
    /// Revocation lists (CSV with a header naming the subject column, or one id per line).
    #[serde(default)]
    pub revocations: Vec<Spanned<String>>,
    /// Keep rows whose timestamp is at most this many days before `as_of`.
    #[serde(default)]
    pub retention_days: Option<Spanned<u32>>,
    /// Reference date `YYYY-MM-DD` for retention; default today (UTC).
    #[serde(default)]
    pub as_of: Option<Spanned<String>>,
}

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

/// What to do with one column. Exactly one action per column.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum ColumnRule {
    /// Keyed HMAC-SHA256 token.
    Tokenize {
        #[serde(default)]
        bits: Option<u32>,
        #[serde(default)]
        encoding: Option<TokenEncodingSpec>,
    },
    /// Unkeyed SHA-256; needs `allow_unkeyed = true` because low-entropy values can be
    /// reversed by a dictionary.
    Hash {
        #[serde(default)]
        allow_unkeyed: bool,
    },
    /// Keep the last `keep_last` characters, replace the rest with `*`.
    Mask { keep_last: usize },
    /// Coarsen: dates `to = "year" | "month"`, numbers `width = W`, strings `prefix = N`.
    Generalize {
        #[serde(default)]
        to: Option<DatePart>,
        #[serde(default)]
        width: Option<f64>,
        #[serde(default)]
        prefix: Option<usize>,
    },
    /// Find PII in free text and replace each hit (see [`TextActionSpec`]).
    Redact {
        /// Detectors to run (built-in names, `name`, `deny`, user-defined); default all.
        #[serde(default)]
        detectors: Option<Vec<String>>,
        /// Identifier columns of the same row whose values are searched for in the text;
        /// default every identifier column of the manifest.
        #[serde(default)]
        context: Option<Vec<String>>,
        /// Action for hits of detectors without their own, default `redact`.
        #[serde(default)]
        default_action: Option<TextActionSpec>,
        /// Actions by detector name.
        #[serde(default)]
        actions: BTreeMap<String, TextActionSpec>,
        /// Characters `mask` keeps, default 4.
        #[serde(default)]
        keep_last: Option<usize>,
    },
    /// Leave the column out of the output.
    Drop,
    /// Pass the value through unchanged.
    Keep,
}

/// Date generalization levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatePart {
    Year,
    Month,
}

/// `[output]`: where and how the Parquet is written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Output Parquet file, relative to the pipeline file. With a split, the split name is put
    /// before the extension (`tickets.train.parquet`).
    pub path: Spanned<String>,
    /// Rows per row group, default 131072.
    #[serde(default)]
    pub row_group_size: Option<Spanned<usize>>,
    /// How many unparseable rows may be quarantined before the run fails; default 0.
    #[serde(default)]
    pub max_bad_rows: u64,
    /// Quarantine report path; default `<output stem>.quarantine.jsonl` beside the output.
    #[serde(default)]
    pub quarantine: Option<Spanned<String>>,
    /// Subject-disjoint splits.
    #[serde(default)]
    pub split: Option<Spanned<SplitSpec>>,
}

/// `[output.split]` fractions; they must sum to 1.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    pub train: f64,
    #[serde(default)]
    pub validation: f64,
    #[serde(default)]
    pub test: f64,
}

/// A pipeline file read from disk: its path, its text and (when it parsed) its spec.
#[derive(Debug, Clone)]
pub struct PipelineFile {
    pub path: PathBuf,
    pub text: String,
    pub spec: PipelineSpec,
}

impl PipelineFile {
    /// Folder that relative paths in the file are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        base_dir(&self.path)
    }
}

/// Folder of a file, `.` for a bare file name.
pub fn base_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `rel` resolved against `base`, with `.` and `..` folded away lexically so paths in messages
/// and lineage read as a user would write them (`datasets/x.csv`, not `pipelines/../datasets/x.csv`).
pub fn resolve(base: &Path, rel: &str) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in base.join(rel).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Reads a TOML file into `T`, turning read and parse errors into a located diagnostic.
/// Only regular files of at most 16 MiB are read (see [`sidefile`]): a FIFO is not waited on.
pub fn read_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
) -> Result<(String, T), Diagnostic> {
    let kind = sidefile::SideFile {
        what,
        limit: sidefile::PIPELINE.limit,
    };
    let text = sidefile::read_to_string(path, kind).map_err(|e| match e {
        sidefile::SideFileError::Io { source, .. } => {
            Diagnostic::file(path, format!("cannot read {what}: {source}"))
                .hint("check the path; relative paths are resolved against the folder of the file that names them")
        }
        other => Diagnostic::file(path, other.to_string()).hint(kind.hint()),
    })?;
    match toml::from_str::<T>(&text) {
        Ok(v) => Ok((text, v)),
        Err(e) => {
            let message = e.message().trim().to_string();
            let hint = toml_hint(&message, what);
            let mut d = Diagnostic::at(path, &text, e.span(), message);
            if let Some(h) = hint {
                d = d.hint(h);
            }
            Err(d)
        }
    }
}

fn toml_hint(message: &str, what: &str) -> Option<String> {
    if message.contains("unknown field") {
        Some(format!(
            "remove the field or fix its spelling; see the {what} reference in README.md"
        ))
    } else if message.contains("missing field `action`") {
        Some("every column rule needs action = \"tokenize\", \"hash\", \"mask\", \"generalize\", \"redact\", \"drop\" or \"keep\"; check for a misspelled key".to_string())
    } else if message.contains("missing field") {
        Some(format!(
            "add the field; see the {what} reference in README.md"
        ))
    } else if message.contains("unknown variant") {
        Some("use one of the listed values".to_string())
    } else {
        None
    }
}

/// Reads and parses a pipeline file, then runs the structural checks. A file that does not
/// parse is an error; a file that parses comes back with every structural problem found, so
/// the checks against manifests can still run and all problems are reported together.
pub fn load(path: &Path) -> Result<(PipelineFile, Diagnostics), Diagnostics> {
    let (text, spec) =
        read_toml::<PipelineSpec>(path, "pipeline file").map_err(|d| Diagnostics(vec![d]))?;
    let file = PipelineFile {
        path: path.to_path_buf(),
        text,
        spec,
    };
    let mut diags = Diagnostics::default();
    check_structure(&file, &mut diags);
    Ok((file, diags))
}

/// Checks that need only the pipeline file itself.
fn check_structure(file: &PipelineFile, diags: &mut Diagnostics) {
    let spec = &file.spec;
    let at = |span: std::ops::Range<usize>, msg: String| {
        Diagnostic::at(&file.path, &file.text, Some(span), msg)
    };
    if spec.pipeline.name.get_ref().trim().is_empty() {
        diags.push(
            at(spec.pipeline.name.span(), "pipeline name is empty".into())
                .hint("give the pipeline a short name, e.g. name = \"tickets_training\""),
        );
    }
    if spec.policy.purpose.get_ref().trim().is_empty() {
        diags.push(
            at(spec.policy.purpose.span(), "policy purpose is empty".into()).hint(
                "name the processing purpose rows must consent to, e.g. purpose = \"training\"",
            ),
        );
    }
    if spec.policy.allowed_provenance.get_ref().is_empty() {
        diags.push(
            at(
                spec.policy.allowed_provenance.span(),
                "allowed_provenance is empty, so every row would be dropped".into(),
            )
            .hint("list the provenance tags you may use, e.g. [\"app\", \"web\"]"),
        );
    }
    if let Some(status) = &spec.policy.allowed_status {
        if status.get_ref().is_empty() {
            diags.push(
                at(
                    status.span(),
                    "allowed_status is empty, so every row would be dropped".into(),
                )
                .hint("the usual value is [\"given\"]"),
            );
        }
    }
    if let Some(as_of) = &spec.policy.as_of {
        if chrono::NaiveDate::parse_from_str(as_of.get_ref(), "%Y-%m-%d").is_err() {
            diags.push(
                at(as_of.span(), "as_of is not a date".into())
                    .hint("write it as YYYY-MM-DD, e.g. as_of = \"2026-11-01\""),
            );
        }
    }
    if let Some(days) = &spec.policy.retention_days {
        if *days.get_ref() == 0 {
            diags.push(
                at(days.span(), "retention_days = 0 keeps no row".into())
                    .hint("give the retention window in days, or remove the key for no limit"),
            );
        }
    }
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
    if let Some(sep) = &spec.source.separator {
        if sep.get_ref().len() != 1 || !sep.get_ref().is_ascii() {
            diags.push(
                at(sep.span(), "separator must be one ASCII character".into())
                    .hint("e.g. separator = \";\" or separator = \"\\t\""),
            );
        }
    }
    if let Some(rg) = &spec.output.row_group_size {
        if *rg.get_ref() == 0 {
            diags.push(
                at(rg.span(), "row_group_size must be positive".into())
                    .hint("the default is 131072 rows"),
            );
        }
    }
    if !spec.output.path.get_ref().ends_with(".parquet") {
        diags.push(
            at(
                spec.output.path.span(),
                "output path must end in .parquet".into(),
            )
            .hint("e.g. path = \"../out/tickets.parquet\""),
        );
    }
    if let Some(split) = &spec.output.split {
        let s = split.get_ref();
        let parts = [s.train, s.validation, s.test];
        if parts.iter().any(|f| !(0.0..=1.0).contains(f) || f.is_nan())
            || (parts.iter().sum::<f64>() - 1.0).abs() > 1e-9
        {
            diags.push(
                at(
                    split.span(),
                    format!(
                        "split fractions must be between 0 and 1 and sum to 1 (they sum to {})",
                        parts.iter().sum::<f64>()
                    ),
                )
                .hint("e.g. train = 0.8, validation = 0.1, test = 0.1"),
            );
        }
    }
    for (name, rule) in &spec.columns {
        let span = rule.span();
        match rule.get_ref() {
            ColumnRule::Tokenize { bits: Some(b), .. } if !valid_bits(*b) => {
                diags.push(
                    at(
                        span,
                        format!(
                            "column `{}`: token length {b} bits is not supported",
                            name.get_ref()
                        ),
                    )
                    .hint("use a multiple of 8 from 32 to 256"),
                );
            }
            ColumnRule::Hash {
                allow_unkeyed: false,
            } => {
                diags.push(at(span, format!("column `{}`: unkeyed hash needs an explicit opt-in", name.get_ref())).hint("unkeyed SHA-256 of names, emails or phone numbers can be reversed by a dictionary; prefer action = \"tokenize\", or add allow_unkeyed = true if the values have high entropy"));
            }
            ColumnRule::Generalize { to, width, prefix } => {
                let n = to.is_some() as u8 + width.is_some() as u8 + prefix.is_some() as u8;
                if n != 1 {
                    diags.push(at(span, format!("column `{}`: generalize needs exactly one of `to`, `width`, `prefix`", name.get_ref())).hint("dates: to = \"year\" or \"month\"; numbers: width = 10; strings: prefix = 3"));
                } else if let Some(w) = width {
                    if !(*w > 0.0 && w.is_finite()) {
                        diags.push(
                            at(
                                span,
                                format!(
                                    "column `{}`: bucket width must be positive",
                                    name.get_ref()
                                ),
                            )
                            .hint("e.g. width = 10"),
                        );
                    }
                } else if prefix == &Some(0) {
                    diags.push(
                        at(
                            span,
                            format!(
                                "column `{}`: a prefix of 0 characters keeps nothing",
                                name.get_ref()
                            ),
                        )
                        .hint("use action = \"drop\" to leave the column out"),
                    );
                }
            }
            _ => {}
        }
    }
}

/// Span of the first `key =` in the text, for problems serde does not give a span for.
fn find_key(text: &str, key: &str) -> Option<std::ops::Range<usize>> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix(key) {
            if rest.trim_start().starts_with('=') {
                let start = offset + (line.len() - trimmed.len());
                return Some(start..start + key.len());
            }
        }
        offset += line.len();
    }
    None
}

/// Token lengths we support.
pub fn valid_bits(bits: u32) -> bool {
    bits.is_multiple_of(8) && (32..=256).contains(&bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_folds_dots() {
        assert_eq!(
            resolve(Path::new("pipelines"), "../datasets/a.csv"),
            PathBuf::from("datasets/a.csv")
        );
        assert_eq!(resolve(Path::new("."), "a.csv"), PathBuf::from("a.csv"));
        assert_eq!(
            resolve(Path::new("."), "../x/a.csv"),
            PathBuf::from("../x/a.csv")
        );
        assert_eq!(
            resolve(Path::new("/srv/p"), "./d/../e.csv"),
            PathBuf::from("/srv/p/e.csv")
        );
    }
}
