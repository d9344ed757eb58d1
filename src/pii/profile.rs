//! `privprep scan`: profile a dataset for personal data and suggest its manifest.
//!
//! A new dataset has no manifest yet, and privacy by default means privprep will not touch it
//! without one. This module reads a sample (or all) of a CSV, Parquet or NDJSON file, runs every
//! detector over each text column, and reports per column which PII types it found and in what
//! share of rows, with a suggested column class and type. The report and the suggested manifest
//! hold column names, types and counts, never a value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::Serialize;

use super::detect::{Kind, RowContext, Scanner, ScannerConfig, Span};
use crate::spec::SourceFormat;

/// What to scan and how much of it.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    pub path: PathBuf,
    pub format: Option<SourceFormat>,
    /// Rows read from the start of the file; `None` reads everything.
    pub rows: Option<usize>,
    pub separator: u8,
    pub regions: Vec<String>,
}

/// One PII type found in a column.
#[derive(Debug, Clone, Serialize)]
pub struct PiiFound {
    /// Rows with at least one hit.
    pub rows: u64,
    /// `rows` over non-null rows.
    pub share: f64,
    /// Rows whose whole value is one hit (an identifier column rather than text).
    pub whole_value_rows: u64,
}

/// The profile of one column.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnProfile {
    pub name: String,
    /// Suggested manifest type.
    pub suggested_type: String,
    pub non_null: u64,
    pub distinct: u64,
    /// Mean length in characters of text values (0 for other types).
    pub mean_length: f64,
    pub pii: BTreeMap<String, PiiFound>,
    pub suggested_class: String,
    /// Why that class, in words.
    pub reason: String,
    /// What the values say of a consent column, for the suggested manifest.
    #[serde(skip)]
    consent: Option<ConsentRole>,
}

/// The part a consent column plays in the manifest, told by its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConsentRole {
    /// Values such as `granted`, `revoked`, `yes`: the consent status.
    Status,
    /// Anything else (purpose names, lists of them): the consented purposes.
    Purposes,
}

/// Words a consent status column holds.
const STATUS_WORDS: &[&str] = &[
    "granted",
    "given",
    "yes",
    "no",
    "y",
    "n",
    "true",
    "false",
    "1",
    "0",
    "revoked",
    "withdrawn",
    "denied",
    "declined",
    "accepted",
    "active",
    "inactive",
    "pending",
    "expired",
    "opted_in",
    "opted_out",
    "opt-in",
    "opt-out",
    "opt_in",
    "opt_out",
    "optin",
    "optout",
    "valid",
    "invalid",
];

/// Names of columns that hold consent.
const CONSENT_NAMES: &[&str] = &["consent", "consents", "purpose", "purposes"];

/// Names of columns that hold telephone numbers.
const PHONE_NAMES: &[&str] = &[
    "phone",
    "mobile",
    "tel",
    "telephone",
    "cell",
    "fax",
    "msisdn",
];

/// The whole report, as `--format json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    pub path: String,
    pub format: String,
    pub rows_scanned: u64,
    /// True when only the first rows were read.
    pub sampled: bool,
    pub columns: Vec<ColumnProfile>,
    /// A manifest to start from (review every line).
    pub suggested_manifest: String,
}

/// Why a dataset could not be scanned.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{path}: cannot tell the format from the extension\n  = hint: pass --source-format csv, parquet or ndjson")]
    Format { path: String },
    #[error("{path}: cannot read the {format} file: {message}\n  = hint: check that the file is {format} and not empty")]
    Read {
        path: String,
        format: &'static str,
        message: String,
    },
    #[error("{0}")]
    Scanner(String),
}

/// Reads the sample and profiles every column.
pub fn scan(opts: &ScanOptions) -> Result<ScanReport, ScanError> {
    let path_s = opts.path.display().to_string();
    let format = opts
        .format
        .or_else(|| SourceFormat::from_path(&opts.path))
        .ok_or_else(|| ScanError::Format {
            path: path_s.clone(),
        })?;
    let df = read(&opts.path, format, opts.rows, opts.separator).map_err(|e| ScanError::Read {
        path: path_s.clone(),
        format: format.as_str(),
        message: crate::ingest::redact(&e),
    })?;
    let config = ScannerConfig {
        regions: opts.regions.clone(),
        ..ScannerConfig::default()
    };
    let scanner = Scanner::new(&config).map_err(|e| ScanError::Scanner(e.to_string()))?;
    let mut columns = Vec::new();
    for c in df.get_columns() {
        columns.push(profile_column(c, &scanner));
    }
    let rows = df.height() as u64;
    let sampled = opts.rows.is_some_and(|n| rows >= n as u64);
    let suggested_manifest = suggest_manifest(&opts.path, &columns);
    Ok(ScanReport {
        path: path_s,
        format: format.as_str().into(),
        rows_scanned: rows,
        sampled,
        columns,
        suggested_manifest,
    })
}

fn read(
    path: &Path,
    format: SourceFormat,
    rows: Option<usize>,
    sep: u8,
) -> PolarsResult<DataFrame> {
    let p = PlPath::new(&path.to_string_lossy());
    let lf = match format {
        SourceFormat::Csv => {
            // Text first, types by our own rules below: the same rules ingest applies.
            LazyCsvReader::new(p)
                .with_has_header(true)
                .with_separator(sep)
                .with_infer_schema_length(Some(0))
                .with_truncate_ragged_lines(true)
                .with_n_rows(rows)
                .finish()?
        }
        SourceFormat::Parquet => LazyFrame::scan_parquet(p, ScanArgsParquet::default())?,
        SourceFormat::Ndjson => LazyJsonLineReader::new(p).with_n_rows(rows).finish()?,
    };
    let lf = match rows {
        Some(n) => lf.limit(n as IdxSize),
        None => lf,
    };
    lf.collect()
}

fn profile_column(c: &Column, scanner: &Scanner) -> ColumnProfile {
    let name = c.name().to_string();
    let non_null = (c.len() - c.null_count()) as u64;
    let distinct = c.n_unique().unwrap_or(0) as u64;
    let mut pii: BTreeMap<String, PiiFound> = BTreeMap::new();
    let mut mean_length = 0.0;
    let mut names_like = 0u64;
    let mut consent = None;
    let suggested_type = match (c.dtype(), c.str()) {
        (DataType::String, Ok(ca)) => {
            // One digit shape is no evidence: a column of bare digit runs (record ids) is not
            // a phone column unless its name says so.
            let phone_name = has_word(&name, PHONE_NAMES);
            if has_word(&name, CONSENT_NAMES) {
                consent = Some(consent_role(ca));
            }
            let ctx = RowContext::new();
            let mut spans: Vec<Span> = Vec::new();
            let mut counts: BTreeMap<Kind, (u64, u64)> = BTreeMap::new();
            let (mut chars, mut texts) = (0u64, 0u64);
            let mut seen: Vec<Kind> = Vec::new();
            for v in ca.iter().flatten() {
                let t = v.trim();
                if t.is_empty() {
                    continue;
                }
                texts += 1;
                chars += t.chars().count() as u64;
                if looks_like_name(t) {
                    names_like += 1;
                }
                scanner.scan(t, &ctx, &mut spans);
                seen.clear();
                for s in &spans {
                    let whole = s.start == 0 && s.end == t.len();
                    if whole
                        && s.kind == Kind::Phone
                        && !phone_name
                        && t.bytes().all(|b| b.is_ascii_digit())
                    {
                        continue;
                    }
                    let e = counts.entry(s.kind).or_default();
                    if !seen.contains(&s.kind) {
                        e.0 += 1;
                        seen.push(s.kind);
                    }
                    if whole {
                        e.1 += 1;
                    }
                }
            }
            mean_length = if texts > 0 {
                chars as f64 / texts as f64
            } else {
                0.0
            };
            for (k, (rows, whole)) in counts {
                pii.insert(
                    k.as_str().into(),
                    PiiFound {
                        rows,
                        share: rows as f64 / non_null.max(1) as f64,
                        whole_value_rows: whole,
                    },
                );
            }
            infer_text_type(ca)
        }
        (DataType::Boolean, _) => "bool",
        (DataType::Float32 | DataType::Float64, _) => "float64",
        (DataType::Date, _) => "date",
        (DataType::Datetime(_, _), _) => "datetime",
        (t, _) if t.is_integer() => "int64",
        _ => "string",
    };
    let (class, reason) = suggest_class(
        &name,
        suggested_type,
        non_null,
        distinct,
        mean_length,
        &pii,
        names_like,
    );
    ColumnProfile {
        name,
        suggested_type: suggested_type.into(),
        non_null,
        distinct,
        mean_length: (mean_length * 10.0).round() / 10.0,
        pii,
        suggested_class: class.into(),
        reason,
        consent,
    }
}

/// The column's values, trimmed, without missing and blank ones.
fn present(ca: &StringChunked) -> impl Iterator<Item = &str> {
    ca.iter().flatten().map(str::trim).filter(|v| !v.is_empty())
}

/// Whether a consent column holds statuses (every value a status word) or purposes.
fn consent_role(ca: &StringChunked) -> ConsentRole {
    let mut values = present(ca).peekable();
    let is_status = |v: &str| STATUS_WORDS.iter().any(|w| w.eq_ignore_ascii_case(v));
    if values.peek().is_some() && values.all(is_status) {
        ConsentRole::Status
    } else {
        ConsentRole::Purposes
    }
}

/// The narrowest manifest type every non-empty value parses as.
fn infer_text_type(ca: &StringChunked) -> &'static str {
    let mut candidates = [true; 5]; // int64, float64, bool, date, datetime
    let mut any = false;
    for v in present(ca) {
        any = true;
        candidates[0] &= v.parse::<i64>().is_ok();
        candidates[1] &= v.parse::<f64>().is_ok();
        candidates[2] &= matches!(v, "true" | "false" | "True" | "False");
        candidates[3] &= chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok();
        candidates[4] &= privprep_kernels::temporal::iso_datetime_micros(v).is_some();
        if !candidates.iter().any(|c| *c) {
            return "string";
        }
    }
    if !any {
        return "string";
    }
    // Leading zeros (postal codes, ids) are text, not numbers.
    let leading_zero = ca
        .iter()
        .flatten()
        .any(|v| v.len() > 1 && v.starts_with('0') && !v.starts_with("0."));
    match candidates {
        [true, ..] if !leading_zero => "int64",
        [_, true, ..] if !leading_zero => "float64",
        [_, _, true, ..] => "bool",
        [_, _, _, true, _] => "date",
        [.., true] => "datetime",
        _ => "string",
    }
}

/// One to four capitalized words of letters: how a person's name usually looks in a column.
fn looks_like_name(v: &str) -> bool {
    let words: Vec<&str> = v.split_whitespace().collect();
    (1..=4).contains(&words.len())
        && words.iter().all(|w| {
            let mut cs = w.chars();
            cs.next().is_some_and(char::is_uppercase)
                && cs.all(|c| c.is_alphabetic() || matches!(c, '-' | '\'' | '.'))
        })
}

fn has_word(name: &str, words: &[&str]) -> bool {
    let lower = name.to_ascii_lowercase();
    lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|part| words.contains(&part))
        || words.iter().any(|w| w.len() > 3 && lower.contains(w))
}

fn suggest_class(
    name: &str,
    ty: &str,
    non_null: u64,
    distinct: u64,
    mean_length: f64,
    pii: &BTreeMap<String, PiiFound>,
    names_like: u64,
) -> (&'static str, String) {
    let n = non_null.max(1) as f64;
    if let Some((kind, f)) = pii
        .iter()
        .filter(|(_, f)| f.whole_value_rows as f64 / n >= 0.5)
        .max_by_key(|(_, f)| f.whole_value_rows)
    {
        return (
            "identifier",
            format!(
                "{:.0}% of values are each one {kind}",
                100.0 * f.whole_value_rows as f64 / n
            ),
        );
    }
    if ty == "string" && mean_length >= 40.0 {
        let found: Vec<String> = pii
            .iter()
            .map(|(k, f)| format!("{k} in {:.1}%", 100.0 * f.share))
            .collect();
        return (
            "free_text",
            if found.is_empty() {
                format!("long text (mean {mean_length:.0} characters); no PII found in the sample, but text can hold any")
            } else {
                format!("long text with {}", found.join(", "))
            },
        );
    }
    if has_word(
        name,
        &[
            "email", "mail", "phone", "mobile", "tel", "ssn", "passport", "iban", "ip",
        ],
    ) {
        return (
            "identifier",
            "the column name says it holds contact or official identifiers".into(),
        );
    }
    if ty == "string"
        && names_like as f64 / n >= 0.8
        && has_word(
            name,
            &["name", "surname", "first", "last", "holder", "customer"],
        )
    {
        return (
            "identifier",
            format!(
                "{:.0}% of values look like personal names",
                100.0 * names_like as f64 / n
            ),
        );
    }
    if has_word(
        name,
        &[
            "birth",
            "dob",
            "zip",
            "postal",
            "postcode",
            "address",
            "street",
            "city",
            "gender",
            "sex",
            "age",
            "country",
            "nationality",
            "ethnicity",
        ],
    ) {
        return (
            "quasi_identifier",
            "the column name suggests a trait that narrows down who a person is".into(),
        );
    }
    if has_word(
        name,
        &[
            "id", "uuid", "account", "user", "customer", "subject", "member", "patient",
        ],
    ) && distinct as f64 / n > 0.05
    {
        return (
            "identifier",
            "an id-like name with many distinct values: likely points at a person".into(),
        );
    }
    if has_word(
        name,
        &[
            "health",
            "diagnosis",
            "religion",
            "salary",
            "income",
            "score",
            "rating",
            "satisfaction",
        ],
    ) {
        return (
            "sensitive",
            "the column name suggests sensitive information".into(),
        );
    }
    if distinct <= 50 || (distinct as f64 / n) < 0.01 {
        return (
            "public",
            format!("{distinct} distinct values and no PII found; review before publishing"),
        );
    }
    ("quasi_identifier", "many distinct values and no clear meaning: treated as narrowing down who a person is until reviewed".into())
}

fn suggest_manifest(path: &Path, columns: &[ColumnProfile]) -> String {
    let dataset_id = path
        .parent()
        .and_then(|p| p.file_name())
        .or_else(|| path.file_stem())
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "dataset".into());
    let pick = |words: &[&str]| {
        columns
            .iter()
            .find(|c| has_word(&c.name, words))
            .map(|c| c.name.clone())
    };
    let subject = pick(&[
        "subject", "user", "customer", "account", "person", "patient", "member",
    ])
    .or_else(|| {
        columns
            .iter()
            .find(|c| c.suggested_class == "identifier" && c.pii.is_empty())
            .map(|c| c.name.clone())
    })
    .unwrap_or_else(|| "TODO_subject_column".into());
    // Consent columns by name ("consent", "consents", "purposes"); their values tell a
    // status column from a purposes column.
    let consent = |role: ConsentRole| {
        columns
            .iter()
            .find(|c| c.consent == Some(role))
            .map(|c| c.name.clone())
    };
    let purposes = consent(ConsentRole::Purposes)
        .or_else(|| pick(&["purpose", "purposes"]))
        .unwrap_or_else(|| "TODO_consent_purposes_column".into());
    let status = pick(&["consent_status"])
        .or_else(|| consent(ConsentRole::Status))
        .or_else(|| pick(&["status"]))
        .unwrap_or_else(|| "TODO_consent_status_column".into());
    let mut out = String::new();
    out.push_str("# Suggested by `privprep scan`: review every line before use.\n");
    out.push_str(&format!("dataset_id = \"{dataset_id}\"\n"));
    out.push_str("owner = \"TODO: team and contact\"\nlicense = \"TODO\"\norigin = \"TODO: where the data came from\"\ncollected_at = \"TODO: YYYY-MM-DD\"\n");
    out.push_str(&format!("subject_column = \"{subject}\"\n"));
    match pick(&["provenance", "source", "channel"]) {
        Some(p) => out.push_str(&format!("provenance_column = \"{p}\"\n")),
        None => out.push_str("provenance_tag = \"TODO\"\n"),
    }
    out.push_str(&format!(
        "consent_purposes_column = \"{purposes}\"\nconsent_status_column = \"{status}\"\n"
    ));
    if let Some(t) = columns.iter().find(|c| {
        c.suggested_type == "datetime"
            && has_word(&c.name, &["created", "timestamp", "time", "at", "date"])
    }) {
        out.push_str(&format!("timestamp_column = \"{}\"\n", t.name));
    }
    for c in columns {
        out.push_str(&format!(
            "\n[[columns]]\nname = \"{}\"\ntype = \"{}\"\nclass = \"{}\"  # {}\n",
            c.name, c.suggested_type, c.suggested_class, c.reason
        ));
    }
    out
}

impl std::fmt::Display for ScanReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} ({}, {} rows {})",
            self.path,
            self.format,
            self.rows_scanned,
            if self.sampled {
                "sampled from the start; --full reads all"
            } else {
                "read in full"
            }
        )?;
        let width = self
            .columns
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(6)
            .max(6);
        writeln!(
            f,
            "\n{:<width$}  {:<8}  {:>8}  {:>8}  {:<16}  PII found (share of rows)",
            "column", "type", "non-null", "distinct", "suggested class"
        )?;
        for c in &self.columns {
            let pii: Vec<String> = c
                .pii
                .iter()
                .map(|(k, p)| format!("{k} {:.1}%", 100.0 * p.share))
                .collect();
            writeln!(
                f,
                "{:<width$}  {:<8}  {:>8}  {:>8}  {:<16}  {}",
                c.name,
                c.suggested_type,
                c.non_null,
                c.distinct,
                c.suggested_class,
                if pii.is_empty() {
                    "-".into()
                } else {
                    pii.join(", ")
                }
            )?;
        }
        writeln!(
            f,
            "\nsuggested manifest (save as manifest.toml beside the data, then review):\n"
        )?;
        write!(f, "{}", self.suggested_manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types_are_recognized() {
        assert!(looks_like_name("Ava Kumar"));
        assert!(looks_like_name("Gonçalo Rousseau"));
        assert!(!looks_like_name("my order is late"));
        let ca = StringChunked::from_iter_values("z".into(), ["02134", "10001"].into_iter());
        assert_eq!(infer_text_type(&ca), "string");
        let ca = StringChunked::from_iter_values("n".into(), ["12", "-3"].into_iter());
        assert_eq!(infer_text_type(&ca), "int64");
        let ca = StringChunked::from_iter_values("d".into(), ["2024-01-02"].into_iter());
        assert_eq!(infer_text_type(&ca), "date");
        // RFC 3339 with `Z` or an offset, a space for the `T`, fractions: all datetimes.
        let ca = StringChunked::from_iter_values(
            "t".into(),
            [
                "2026-02-23T18:54:44Z",
                "2026-02-23T18:54:44+01:00",
                "2026-02-23 18:54:44",
                "2026-02-23T18:54:44.123456Z",
            ]
            .into_iter(),
        );
        assert_eq!(infer_text_type(&ca), "datetime");
        let ca = StringChunked::from_iter_values("t".into(), ["2026-02-23T18:54:44Q"].into_iter());
        assert_eq!(infer_text_type(&ca), "string");
    }

    fn profile(name: &str, values: &[&str]) -> ColumnProfile {
        let c = Column::new(name.into(), values);
        profile_column(&c, &Scanner::new(&ScannerConfig::default()).unwrap())
    }

    /// Regression: a column of 10-digit record ids was reported as phones (and classed as
    /// identifiers for it); one digit shape is no evidence.
    #[test]
    fn bare_digit_ids_are_no_phones_unless_the_name_says_phone() {
        let ids = ["5599750342", "2217500974", "4155550123", "6175550199"];
        let p = profile("record_id", &ids);
        assert!(!p.pii.contains_key("phone"), "{:?}", p.pii);
        let p = profile("mobile", &ids);
        assert_eq!(p.pii["phone"].whole_value_rows, 4);
        // Written as phones, they are phones whatever the name.
        let p = profile("contact", &["+1 559 975 0342", "(221) 750-0974"]);
        assert_eq!(p.pii["phone"].whole_value_rows, 2);
    }

    #[test]
    fn consent_columns_are_suggested_by_name_and_told_apart_by_values() {
        let columns = vec![
            profile("user_id", &["u1", "u2", "u3"]),
            profile("consent", &["granted", "revoked", "granted"]),
            profile("consents", &["marketing;analytics", "analytics", "support"]),
        ];
        let m = suggest_manifest(Path::new("data/x.csv"), &columns);
        assert!(m.contains("consent_purposes_column = \"consents\""), "{m}");
        assert!(m.contains("consent_status_column = \"consent\""), "{m}");
        let columns = vec![profile("purposes", &["ads", "research"])];
        let m = suggest_manifest(Path::new("x.csv"), &columns);
        assert!(m.contains("consent_purposes_column = \"purposes\""), "{m}");
        assert!(m.contains("TODO_consent_status_column"), "{m}");
    }
}
