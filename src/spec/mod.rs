//! The pipeline file: strict parsing, diagnostics with spans, and the paths a file names.
//!
//! Parsing is strict (`deny_unknown_fields`, typed enums) so a typo is an error with a line and
//! column, never a silently ignored setting. The file is the `[pipeline]` block plus one section
//! per stage; each stage owns its section's types and checks (`crate::stages`), and this module
//! only puts them together. Checks against manifests and data schemas happen in the stages'
//! resolution. Depends on: the stages' section types (re-exported here), nothing else; the
//! submodules `diag`, `paths` and `sidefile` depend on nothing in the crate.

pub mod diag;
pub mod paths;
pub mod sidefile;

pub use diag::{Diagnostic, Diagnostics};

pub use crate::stages::identity::{TokenEncodingSpec, TokenSpec};
pub use crate::stages::ingest::{SourceFormat, SourceSpec};
pub use crate::stages::output::OutputSpec;
pub use crate::stages::policy::PolicySpec;
pub use crate::stages::release::ReleaseSpec;
pub use crate::stages::text::{LeakGateMode, PiiSpec};

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
    /// k-anonymity of the written rows.
    #[serde(default)]
    pub risk: Option<Spanned<crate::stages::risk::RiskSpec>>,
    pub output: OutputSpec,
    /// Differentially private releases computed from the consented rows.
    #[serde(default)]
    pub release: Vec<Spanned<ReleaseSpec>>,
    /// Differentially private synthetic tables of the consented rows.
    #[serde(default)]
    pub synthetic: Vec<Spanned<crate::stages::synthetic::SyntheticSpec>>,
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

/// `[pipeline]`: name and description.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineMeta {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `[columns]`: read by the identity stage (every action) and the text stage (`redact`).
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
    /// Replace with a plausible value of the same kind, chosen by the run key, so the same
    /// value gets the same surrogate everywhere (`kind`: name, email, phone or id; default from
    /// the column's name).
    Surrogate {
        #[serde(default)]
        kind: Option<SurrogateKindSpec>,
    },
    /// Leave the column out of the output.
    Drop,
    /// Pass the value through unchanged.
    Keep,
}

/// The kind of value a surrogate column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SurrogateKindSpec {
    Name,
    Email,
    Phone,
    Id,
}

/// Date generalization levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatePart {
    Year,
    Month,
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
    /// Replace with a plausible value of the same kind (a name, an e-mail on a reserved
    /// example domain, a phone number), the same one the column action `surrogate` gives.
    Surrogate,
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

    /// A diagnostic at a place in this file.
    pub fn at(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at(&self.path, &self.text, Some(span), message)
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
        Some("every column rule needs action = \"tokenize\", \"hash\", \"mask\", \"generalize\", \"redact\", \"surrogate\", \"drop\" or \"keep\"; check for a misspelled key".to_string())
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

/// Reads and parses a pipeline file and checks its `[pipeline]` block. A file that does not
/// parse is an error; a file that parses comes back with the problems found so far, so the
/// stages' checks (`crate::plan::build`) can add theirs and all are reported together.
pub fn load(path: &Path) -> Result<(PipelineFile, Diagnostics), Diagnostics> {
    let (text, spec) =
        read_toml::<PipelineSpec>(path, "pipeline file").map_err(|d| Diagnostics(vec![d]))?;
    checked(path, text, spec)
}

/// [`load`] of a pipeline file's `text` as it was recorded (in a run's lineage record), with
/// relative paths resolved against the folder of `path`, where the file was.
pub fn load_text(path: &Path, text: String) -> Result<(PipelineFile, Diagnostics), Diagnostics> {
    match toml::from_str::<PipelineSpec>(&text) {
        Ok(spec) => checked(path, text, spec),
        Err(e) => Err(Diagnostics(vec![Diagnostic::at(
            path,
            &text,
            e.span(),
            e.message().trim().to_string(),
        )])),
    }
}

fn checked(
    path: &Path,
    text: String,
    spec: PipelineSpec,
) -> Result<(PipelineFile, Diagnostics), Diagnostics> {
    let file = PipelineFile {
        path: path.to_path_buf(),
        text,
        spec,
    };
    let mut diags = Diagnostics::default();
    let name = &file.spec.pipeline.name;
    if name.get_ref().trim().is_empty() {
        diags.push(
            file.at(name.span(), "pipeline name is empty")
                .hint("give the pipeline a short name, e.g. name = \"tickets_training\""),
        );
    }
    Ok((file, diags))
}

/// Checks of `[columns]` that need only the file. The table is read by two stages (identity
/// and text), so its checks are here, and run after each stage's own.
pub fn check_columns(file: &PipelineFile, diags: &mut Diagnostics) {
    let spec = &file.spec;
    let at = |span: std::ops::Range<usize>, msg: String| file.at(span, msg);
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
pub fn find_key(text: &str, key: &str) -> Option<std::ops::Range<usize>> {
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
