//! Dataset manifests: who owns a dataset, where it came from, and what class each column is.

use crate::spec::{read_toml, Diagnostic, Diagnostics};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Logical column types a manifest may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    String,
    Int64,
    Float64,
    Bool,
    Date,
    Datetime,
}

impl ColumnType {
    /// Lowercase name as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Int64 => "int64",
            ColumnType::Float64 => "float64",
            ColumnType::Bool => "bool",
            ColumnType::Date => "date",
            ColumnType::Datetime => "datetime",
        }
    }
    /// True for int64 and float64.
    pub fn is_numeric(self) -> bool {
        matches!(self, ColumnType::Int64 | ColumnType::Float64)
    }
    /// True for date and datetime.
    pub fn is_temporal(self) -> bool {
        matches!(self, ColumnType::Date | ColumnType::Datetime)
    }
}

/// Privacy classes of columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnClass {
    /// Names a person directly (name, email, phone, account id).
    Identifier,
    /// Identifies in combination (birth date, zip, country).
    QuasiIdentifier,
    /// Personal data worth protecting in itself (health, ratings, income).
    Sensitive,
    /// Free text that may hold any of the above.
    FreeText,
    /// Not personal; may pass through.
    Public,
}

impl ColumnClass {
    /// snake_case name as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnClass::Identifier => "identifier",
            ColumnClass::QuasiIdentifier => "quasi_identifier",
            ColumnClass::Sensitive => "sensitive",
            ColumnClass::FreeText => "free_text",
            ColumnClass::Public => "public",
        }
    }
}

/// One `[[columns]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestColumn {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub ty: Spanned<ColumnType>,
    pub class: Spanned<ColumnClass>,
    #[serde(default)]
    pub description: Option<String>,
    /// chrono format for date/datetime columns. Without one, dates are `%Y-%m-%d` and datetimes
    /// ISO 8601 / RFC 3339: `2026-02-23T18:54:44`, with a space for the `T`, a fraction of a
    /// second, and `Z` or an offset (converted to UTC) all accepted.
    #[serde(default)]
    pub format: Option<String>,
    /// The column's public domain (every value it may take), e.g. ISO country codes. A DP
    /// release grouped by this column may use it as its public key set.
    #[serde(default)]
    pub values: Option<Vec<String>>,
}

/// How a datetime column without a `format` is read, as errors name it.
pub const DEFAULT_DATETIME: &str = "ISO 8601 (e.g. 2026-02-23T18:54:44, 2026-02-23 18:54:44.5, 2026-02-23T18:54:44Z or 2026-02-23T18:54:44+01:00)";

impl ManifestColumn {
    /// The parse format for temporal columns, as errors name it.
    pub fn temporal_format(&self) -> &str {
        match (&self.format, self.ty.get_ref()) {
            (Some(f), _) => f,
            (None, ColumnType::Date) => "%Y-%m-%d",
            (None, _) => DEFAULT_DATETIME,
        }
    }
}

/// Consent that holds for every row of a dataset (a research table under a legal basis).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatasetConsent {
    /// The legal basis, in words (e.g. "GDPR art. 89 research, ethics approval 2024-117").
    pub basis: String,
    /// The purposes the dataset may be used for.
    pub purposes: Vec<String>,
}

/// The internal column that names each row when each row is its own privacy unit.
pub const ROW_UNIT: &str = "__row_unit";

/// A dataset manifest as written beside the data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestSpec {
    pub dataset_id: Spanned<String>,
    pub owner: String,
    pub license: String,
    pub origin: String,
    pub collected_at: String,
    /// Column holding the data subject (the privacy unit)…
    #[serde(default)]
    pub subject_column: Option<Spanned<String>>,
    /// …or `"row"`: each row is its own privacy unit (research tables without a subject id).
    #[serde(default)]
    pub privacy_unit: Option<Spanned<String>>,
    /// Column holding each row's provenance tag…
    #[serde(default)]
    pub provenance_column: Option<Spanned<String>>,
    /// …or one tag for the whole dataset.
    #[serde(default)]
    pub provenance_tag: Option<Spanned<String>>,
    /// Columns holding each row's consent purposes and status…
    #[serde(default)]
    pub consent_purposes_column: Option<Spanned<String>>,
    #[serde(default)]
    pub consent_status_column: Option<Spanned<String>>,
    /// …or consent for the whole dataset, under a stated legal basis.
    #[serde(default)]
    pub consent: Option<Spanned<DatasetConsent>>,
    /// Column the retention window is checked against.
    #[serde(default)]
    pub timestamp_column: Option<Spanned<String>>,
    /// Separator between consent purposes, default `;`.
    #[serde(default = "default_separator")]
    pub purpose_separator: String,
    /// Cap on the total privacy loss of all DP releases of this dataset, across all runs:
    /// `{ epsilon }`, `{ epsilon, delta }` or `{ rho }`.
    #[serde(default)]
    pub privacy_budget: Option<Spanned<crate::spec::PrivacySpec>>,
    /// Days outputs made from this dataset are kept, unless the pipeline's `[output]
    /// retain_days` says otherwise.
    #[serde(default)]
    pub retain_days: Option<u32>,
    pub columns: Vec<ManifestColumn>,
}

fn default_separator() -> String {
    ";".to_string()
}

/// A manifest with the file it came from, checked for internal consistency.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub path: PathBuf,
    pub text: String,
    pub spec: ManifestSpec,
}

impl Manifest {
    /// Reads, parses and checks a manifest; every problem is reported.
    pub fn load(path: &Path) -> Result<Manifest, Diagnostics> {
        let (text, spec) =
            read_toml::<ManifestSpec>(path, "manifest").map_err(|d| Diagnostics(vec![d]))?;
        let m = Manifest {
            path: path.to_path_buf(),
            text,
            spec,
        };
        let diags = m.check();
        if diags.is_empty() {
            Ok(m)
        } else {
            Err(diags)
        }
    }

    /// A diagnostic at a span of this manifest.
    pub fn diag(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at(&self.path, &self.text, Some(span), message)
    }

    /// The column entry with this name.
    pub fn column(&self, name: &str) -> Option<&ManifestColumn> {
        self.spec.columns.iter().find(|c| c.name.get_ref() == name)
    }

    /// The dataset id.
    pub fn dataset_id(&self) -> &str {
        self.spec.dataset_id.get_ref()
    }

    fn check(&self) -> Diagnostics {
        let mut diags = Diagnostics::default();
        let s = &self.spec;
        let mut seen = std::collections::HashSet::new();
        for c in &s.columns {
            if !seen.insert(c.name.get_ref().as_str()) {
                diags.push(
                    self.diag(
                        c.name.span(),
                        format!("column `{}` is listed twice", c.name.get_ref()),
                    )
                    .hint("each column needs exactly one [[columns]] entry"),
                );
            }
        }
        let mut role = |col: &Spanned<String>, role: &str, want: &[ColumnType]| match self
            .column(col.get_ref())
        {
            None => diags.push(
                self.diag(
                    col.span(),
                    format!(
                        "{role} `{}` is not a column of this manifest",
                        col.get_ref()
                    ),
                )
                .hint(format!(
                    "add a [[columns]] entry for it or name one of: {}",
                    self.column_names().join(", ")
                )),
            ),
            Some(c) if !want.contains(c.ty.get_ref()) => diags.push(
                self.diag(
                    col.span(),
                    format!(
                        "{role} `{}` has type {}, expected {}",
                        col.get_ref(),
                        c.ty.get_ref().as_str(),
                        want.iter()
                            .map(|t| t.as_str())
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ),
                )
                .hint("fix the column's type or name another column"),
            ),
            Some(_) => {}
        };
        let any = [ColumnType::String, ColumnType::Int64];
        if let Some(c) = &s.subject_column {
            role(c, "subject_column", &any);
        }
        if let Some(c) = &s.consent_purposes_column {
            role(c, "consent_purposes_column", &[ColumnType::String]);
        }
        if let Some(c) = &s.consent_status_column {
            role(c, "consent_status_column", &[ColumnType::String]);
        }
        if let Some(c) = &s.provenance_column {
            role(c, "provenance_column", &[ColumnType::String]);
        }
        if let Some(c) = &s.timestamp_column {
            role(
                c,
                "timestamp_column",
                &[ColumnType::Date, ColumnType::Datetime],
            );
        }
        match (&s.subject_column, &s.privacy_unit) {
            (Some(_), Some(u)) => diags.push(self.diag(u.span(), "both subject_column and privacy_unit are set").hint("name the subject column when rows belong to people with ids, or privacy_unit = \"row\" when each row is its own unit")),
            (None, None) => diags.push(self.diag(s.dataset_id.span(), "the manifest names no privacy unit").hint("add subject_column = \"<column>\", or privacy_unit = \"row\" when each row is its own unit (no subject ids)")),
            (None, Some(u)) if u.get_ref() != "row" => diags.push(self.diag(u.span(), format!("privacy_unit `{}` is not known", u.get_ref())).hint("privacy_unit = \"row\"; a subject is named with subject_column")),
            _ => {}
        }
        match (&s.consent_purposes_column, &s.consent_status_column, &s.consent) {
            (Some(_), Some(_), None) => {}
            (None, None, Some(c)) => {
                let v = c.get_ref();
                if v.basis.trim().is_empty() || v.purposes.iter().all(|p| p.trim().is_empty()) {
                    diags.push(self.diag(c.span(), "dataset-wide consent needs a basis and at least one purpose").hint("consent = { basis = \"GDPR art. 89 research, ethics approval 2024-117\", purposes = [\"research\"] }"));
                }
            }
            (_, _, Some(c)) if s.consent_purposes_column.is_some() || s.consent_status_column.is_some() => diags.push(self.diag(c.span(), "both consent columns and dataset-wide consent are set").hint("use the columns when consent differs by row, `consent` when it holds for the whole dataset")),
            _ => diags.push(self.diag(s.dataset_id.span(), "the manifest gives no consent: name consent_purposes_column and consent_status_column, or state dataset-wide consent").hint("consent = { basis = \"…\", purposes = [\"research\"] } when it holds for every row")),
        }
        match (&s.provenance_column, &s.provenance_tag) {
            (Some(_), Some(t)) => diags.push(self.diag(t.span(), "both provenance_column and provenance_tag are set").hint("keep provenance_column when rows differ, provenance_tag when the whole dataset has one origin")),
            (None, None) => diags.push(self.diag(s.dataset_id.span(), "the manifest gives no provenance").hint("add provenance_column = \"<column>\" or provenance_tag = \"app\"")),
            _ => {}
        }
        if s.purpose_separator.is_empty() {
            diags.push(
                Diagnostic::file(&self.path, "purpose_separator is empty")
                    .hint("the usual value is \";\""),
            );
        }
        if s.columns.is_empty() {
            diags.push(
                Diagnostic::file(&self.path, "the manifest lists no columns")
                    .hint("add one [[columns]] entry per column, with name, type and class"),
            );
        }
        diags
    }

    /// Column names in manifest order.
    pub fn column_names(&self) -> Vec<String> {
        self.spec
            .columns
            .iter()
            .map(|c| c.name.get_ref().clone())
            .collect()
    }
}
