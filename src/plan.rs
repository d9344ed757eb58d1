//! Spec + manifest + input schema → the executable plan, and `explain`.
//!
//! This is the second validation phase: everything that needs the manifest or the data's
//! schema is checked here, and every problem is reported at once with its file and line.
//! Privacy by default lives here: a column that is not public and has no rule is an error.

use crate::dp::ledger::{compose, Loss};
use crate::dp::plan::{Keys, ReleasePlan, Statistic};
use crate::identity::Action;
use crate::identity::TokenEncoding;
use crate::ingest::{self, ColumnClass, ColumnType, Conversion, Manifest};
use crate::pii::{self, CustomDetector, CustomPlan, PiiPlan, TextAction, TextColumnPlan};
use crate::policy::{self, PolicyPlan, Provenance};
use crate::spec::paths::{self as spec_paths, NamedPath};
use crate::spec::{
    self, ColumnRule, Diagnostic, Diagnostics, PipelineFile, SourceFormat, TextActionSpec,
    TokenEncodingSpec, ValidatorSpec,
};
use serde::Serialize;
use std::path::PathBuf;

/// One output (or dropped) column.
#[derive(Debug, Clone)]
pub struct ColumnPlan {
    pub name: String,
    pub ty: ColumnType,
    pub class: ColumnClass,
    pub action: Action,
    /// True when the rule came from the pipeline (false: a public column passed through).
    pub explicit: bool,
    pub conversion: Conversion,
}

impl ColumnPlan {
    /// True when the output holds raw direct identifiers or raw free text. Kept
    /// quasi-identifiers and sensitive columns are a deliberate choice the pipeline states;
    /// `explain` shows them with their class.
    pub fn is_unsafe(&self) -> bool {
        self.action == Action::Keep
            && matches!(self.class, ColumnClass::Identifier | ColumnClass::FreeText)
    }
}

/// Output settings.
#[derive(Debug, Clone)]
pub struct OutputPlan {
    pub path: PathBuf,
    pub row_group_size: usize,
    pub max_bad_rows: u64,
    pub quarantine_path: PathBuf,
    /// (train, validation, test) fractions.
    pub split: Option<(f64, f64, f64)>,
}

impl OutputPlan {
    /// (split name, split code, path) of every file the run writes.
    pub fn files(&self) -> Vec<(&'static str, u8, PathBuf)> {
        match self.split {
            None => vec![("all", 0, self.path.clone())],
            Some((_, v, t)) => {
                let mut out = vec![("train", 0, crate::emit::split_path(&self.path, "train"))];
                if v > 0.0 {
                    out.push((
                        "validation",
                        1,
                        crate::emit::split_path(&self.path, "validation"),
                    ));
                }
                if t > 0.0 {
                    out.push(("test", 2, crate::emit::split_path(&self.path, "test")));
                }
                out
            }
        }
    }
}

/// The resolved, executable plan.
#[derive(Debug, Clone)]
pub struct Plan {
    pub pipeline: PipelineFile,
    pub name: String,
    pub files: Vec<PathBuf>,
    pub format: SourceFormat,
    pub separator: u8,
    /// CSV header names in file order (CSV only).
    pub csv_names: Vec<String>,
    pub manifest: Manifest,
    pub policy: PolicyPlan,
    pub columns: Vec<ColumnPlan>,
    /// `[pii]` settings.
    pub pii: PiiPlan,
    /// Free-text columns and their rules, in manifest order.
    pub text: Vec<TextColumnPlan>,
    pub output: OutputPlan,
    /// Differentially private releases.
    pub releases: Vec<ReleasePlan>,
    /// The dataset's privacy budget cap (from the manifest).
    pub budget_cap: Option<Loss>,
    /// Every file the pipeline names, read or written, with where (for collision checks).
    pub paths: Vec<NamedPath>,
}

impl Plan {
    /// True when some action or the split needs the run key.
    pub fn needs_key(&self) -> bool {
        self.output.split.is_some()
            || self.columns.iter().any(|c| c.action.needs_key())
            || self.text.iter().any(|t| t.tokenizes())
    }

    /// The text rule of a column, if it is redacted.
    pub fn text_rule(&self, column: &str) -> Option<&TextColumnPlan> {
        self.text.iter().find(|t| t.column == column)
    }

    /// What is done to a column, in words.
    pub fn describe_column(&self, c: &ColumnPlan) -> String {
        match self.text_rule(&c.name) {
            Some(t) if c.action == Action::Redact => t.describe(),
            _ => c.action.describe(),
        }
    }

    /// Columns that reach the output, in order.
    pub fn output_columns(&self) -> impl Iterator<Item = &ColumnPlan> {
        self.columns.iter().filter(|c| c.action != Action::Drop)
    }
}

fn token_encoding(e: TokenEncodingSpec) -> TokenEncoding {
    match e {
        TokenEncodingSpec::Hex => TokenEncoding::Hex,
        TokenEncodingSpec::Base64url => TokenEncoding::Base64Url,
    }
}

/// Loads and validates a pipeline and everything it names; returns the plan or every problem.
pub fn build(path: &std::path::Path) -> Result<Plan, Diagnostics> {
    let (file, mut diags) = spec::load(path)?;
    let base = file.base_dir();
    let s = &file.spec;
    let at = |span: std::ops::Range<usize>, msg: String| {
        Diagnostic::at(&file.path, &file.text, Some(span), msg)
    };

    // Inputs.
    let patterns = s.source.path.get_ref().to_vec();
    let files = match ingest::expand(&base, &patterns) {
        Ok(f) => f,
        Err(msg) => {
            diags.push(
                at(s.source.path.span(), msg)
                    .hint("paths are relative to the folder of the pipeline file"),
            );
            Vec::new()
        }
    };
    let format = match (&s.source.format, files.first()) {
        (Some(f), _) => Some(*f.get_ref()),
        (None, Some(first)) => {
            let f = SourceFormat::from_path(first);
            if f.is_none() {
                diags.push(
                    at(
                        s.source.path.span(),
                        format!(
                            "cannot tell the format of `{}` from its extension",
                            first.display()
                        ),
                    )
                    .hint("add format = \"csv\", \"parquet\" or \"ndjson\" to [source]"),
                );
            }
            f
        }
        (None, None) => None,
    };
    let separator = s
        .source
        .separator
        .as_ref()
        .and_then(|x| x.get_ref().bytes().next())
        .unwrap_or(b',');

    // Manifest.
    let manifest_path = match (&s.source.manifest, files.first()) {
        (Some(m), _) => Some(spec::resolve(&base, m.get_ref())),
        (None, Some(first)) => Some(spec::resolve(&spec::base_dir(first), "manifest.toml")),
        (None, None) => None,
    };
    let manifest = match manifest_path {
        Some(p) if !p.exists() => {
            let span = s
                .source
                .manifest
                .as_ref()
                .map(|m| m.span())
                .unwrap_or(s.source.path.span());
            diags.push(at(span, format!("manifest `{}` does not exist", p.display())).hint("every source needs a dataset manifest; `privprep datagen` writes one, or set manifest = \"path\" in [source]"));
            None
        }
        Some(p) => match Manifest::load(&p) {
            Ok(m) => Some(m),
            Err(ds) => {
                diags.0.extend(ds.0);
                None
            }
        },
        None => None,
    };

    let Some(manifest) = manifest else {
        return Err(diags);
    };
    let Some(format) = format else {
        return Err(diags);
    };

    // Schema of every input against the manifest.
    let mut csv_names = Vec::new();
    let mut conversions: Vec<Conversion> = manifest
        .spec
        .columns
        .iter()
        .map(|_| Conversion::AsIs)
        .collect();
    for f in &files {
        match ingest::file_schema(f, format, separator) {
            Err(e) => diags.push(Diagnostic::file(f, e.to_string())),
            Ok(schema) => {
                for (name, _) in &schema {
                    if manifest.column(name).is_none() {
                        diags.push(Diagnostic::file(f, format!("column `{name}` is in the data but not in the manifest")).hint(format!("add a [[columns]] entry for `{name}` with its type and class to {}", manifest.path.display())));
                    }
                }
                for (i, c) in manifest.spec.columns.iter().enumerate() {
                    let name = c.name.get_ref();
                    match schema.iter().find(|(n, _)| n == name) {
                        None => diags.push(manifest.diag(c.name.span(), format!("column `{name}` is in the manifest but not in {}", f.display())).hint("fix the name, or remove the entry if the data no longer has the column")),
                        Some((_, have)) => match ingest::conversion(have, *c.ty.get_ref()) {
                            None => diags.push(manifest.diag(c.ty.span(), format!("column `{name}` is {have} in {} but the manifest says {}", f.display(), c.ty.get_ref().as_str())).hint("fix the manifest type or convert the data")),
                            Some(conv) => {
                                if conv != Conversion::AsIs {
                                    conversions[i] = conv;
                                }
                            }
                        },
                    }
                }
                if format == SourceFormat::Csv {
                    if !csv_names.is_empty()
                        && csv_names != schema.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()
                    {
                        diags.push(Diagnostic::file(f, "this CSV's header differs from the first input's").hint("all files of one source must have the same columns in the same order"));
                    }
                    csv_names = schema.into_iter().map(|(n, _)| n).collect();
                }
            }
        }
    }

    // Column rules.
    for name in s.columns.keys() {
        if manifest.column(name.get_ref()).is_none() {
            let hint = match closest(name.get_ref(), &manifest.column_names()) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!(
                    "the manifest's columns are: {}",
                    manifest.column_names().join(", ")
                ),
            };
            diags.push(
                at(
                    name.span(),
                    format!("column `{}` is not in the manifest", name.get_ref()),
                )
                .hint(hint),
            );
        }
    }
    let pii = pii_plan(&file, &base, &mut diags);
    let mut text: Vec<TextColumnPlan> = Vec::new();
    let mut columns = Vec::new();
    for (c, conversion) in manifest.spec.columns.iter().zip(&conversions) {
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
                        encoding: token_encoding(encoding.unwrap_or(s.tokens.encoding)),
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
                    ColumnRule::Redact {
                        detectors,
                        context,
                        default_action,
                        actions,
                        keep_last,
                    } => {
                        if ty != ColumnType::String {
                            diags.push(err(
                                "redact works on text".into(),
                                "redact is for free-text columns; use tokenize or generalize here",
                            ));
                        }
                        let rule_at = |msg: String, hint: String| {
                            at(rule.span(), format!("column `{name}`: {msg}")).hint(hint)
                        };
                        let known = pii.detector_names();
                        let detectors = match detectors {
                            Some(list) => {
                                for d in list {
                                    if !known.contains(d) {
                                        diags.push(rule_at(
                                            format!("unknown detector `{d}`"),
                                            unknown_detector_hint(d, &known),
                                        ));
                                    }
                                }
                                if list.is_empty() {
                                    diags.push(rule_at(
                                        "detectors is empty, so nothing would be redacted".into(),
                                        "leave `detectors` out to run them all".into(),
                                    ));
                                }
                                list.clone()
                            }
                            None => pii.default_detectors(),
                        };
                        if detectors.iter().any(|d| d == pii::DENY_DETECTOR) && pii.deny.is_empty()
                        {
                            diags.push(rule_at(
                                "detector `deny` is asked for but [pii] lists no deny terms".into(),
                                "add deny = [\"…\"] or deny_file = \"path\" under [pii]".into(),
                            ));
                        }
                        let mask_keep = keep_last.unwrap_or(4);
                        let text_action = |a: TextActionSpec| match a {
                            TextActionSpec::Redact => TextAction::Redact,
                            TextActionSpec::Tokenize => TextAction::Tokenize,
                            TextActionSpec::Mask => TextAction::Mask {
                                keep_last: mask_keep,
                            },
                            TextActionSpec::DropRow => TextAction::DropRow,
                        };
                        let mut by_detector = std::collections::BTreeMap::new();
                        for (d, a) in actions {
                            if !detectors.contains(d) {
                                diags.push(rule_at(
                                    format!("`actions` names detector `{d}`, which does not run on this column"),
                                    if known.contains(d) {
                                        format!("add `{d}` to `detectors`, or remove its action")
                                    } else {
                                        unknown_detector_hint(d, &known)
                                    },
                                ));
                            }
                            by_detector.insert(d.clone(), text_action(*a));
                        }
                        let context_columns = match context {
                            Some(list) => {
                                for c in list {
                                    match manifest.column(c) {
                                        None => diags.push(rule_at(
                                            format!("context column `{c}` is not in the manifest"),
                                            match closest(c, &manifest.column_names()) {
                                                Some(x) => format!("did you mean `{x}`?"),
                                                None => "list identifier columns of the same row, e.g. [\"full_name\", \"email\"]".into(),
                                            },
                                        )),
                                        Some(m) if c == name => {
                                            let _ = m;
                                            diags.push(rule_at("a text cannot be its own context".into(), "list the identifier columns of the row, e.g. the name and e-mail columns".into()));
                                        }
                                        Some(_) => {}
                                    }
                                }
                                list.clone()
                            }
                            None => manifest
                                .spec
                                .columns
                                .iter()
                                .filter(|m| {
                                    *m.class.get_ref() == ColumnClass::Identifier
                                        && *m.ty.get_ref() == ColumnType::String
                                        && m.name.get_ref() != name
                                })
                                .map(|m| m.name.get_ref().clone())
                                .collect(),
                        };
                        let context_columns = if detectors
                            .iter()
                            .any(|d| d == pii::CONTEXT_DETECTOR)
                        {
                            context_columns
                        } else {
                            if context.is_some() {
                                diags.push(rule_at("`context` is set but the `name` detector, which searches for those values, does not run".into(), "add \"name\" to `detectors`, or remove `context`".into()));
                            }
                            Vec::new()
                        };
                        let masks = default_action == &Some(TextActionSpec::Mask)
                            || actions.values().any(|a| *a == TextActionSpec::Mask);
                        if keep_last.is_some() && !masks {
                            diags.push(rule_at("`keep_last` is set but no detector's action is `mask`".into(), "set default_action = \"mask\" or an action to \"mask\", or remove `keep_last`".into()));
                        }
                        text.push(TextColumnPlan {
                            column: name.clone(),
                            detectors,
                            context: context_columns,
                            default_action: text_action(
                                default_action.unwrap_or(TextActionSpec::Redact),
                            ),
                            actions: by_detector,
                        });
                        Action::Redact
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
    if text.iter().any(|t| t.tokenizes()) {
        let run_wide = Action::Tokenize {
            bits: s.tokens.bits,
            encoding: token_encoding(s.tokens.encoding),
        };
        for c in columns
            .iter()
            .filter(|c| matches!(c.action, Action::Tokenize { .. }))
        {
            if c.action != run_wide {
                let span = s
                    .columns
                    .iter()
                    .find(|(k, _)| k.get_ref() == &c.name)
                    .map(|(_, v)| v.span())
                    .unwrap_or(0..0);
                diags.push(at(span, format!("column `{}` sets its own token bits or encoding, but free text is tokenized with the [tokens] settings", c.name)).hint("the same value must get the same token in a column and in text: move bits/encoding to [tokens], or remove them here"));
            }
        }
    }
    if !columns.is_empty() && columns.iter().all(|c| c.action == Action::Drop) {
        diags.push(
            Diagnostic::file(
                &file.path,
                "every column is dropped, so the output would have no columns",
            )
            .hint("keep at least one column"),
        );
    }

    // Policy.
    let mut revocations = Vec::new();
    for r in &s.policy.revocations {
        let p = spec::resolve(&base, r.get_ref());
        match policy::load_revocations(&p, manifest.spec.subject_column.get_ref()) {
            Ok(l) => revocations.push(l),
            Err(e) => diags.push(
                at(
                    r.span(),
                    format!("cannot read revocation list `{}`: {e}", p.display()),
                )
                .hint("a revocation list is a CSV or text file with one subject id per line"),
            ),
        }
    }
    let as_of = s
        .policy
        .as_of
        .as_ref()
        .and_then(|d| chrono::NaiveDate::parse_from_str(d.get_ref(), "%Y-%m-%d").ok())
        .unwrap_or_else(|| chrono::Utc::now().date_naive());
    let timestamp = manifest.spec.timestamp_column.as_ref().and_then(|t| {
        manifest
            .column(t.get_ref())
            .map(|c| (t.get_ref().clone(), *c.ty.get_ref() == ColumnType::Datetime))
    });
    if let (Some(days), None) = (&s.policy.retention_days, &timestamp) {
        diags.push(
            at(
                days.span(),
                "retention_days is set but the manifest names no timestamp_column".into(),
            )
            .hint(format!(
                "add timestamp_column = \"<column>\" to {}",
                manifest.path.display()
            )),
        );
    }
    let policy = PolicyPlan {
        purpose: s.policy.purpose.get_ref().clone(),
        allowed_status: s
            .policy
            .allowed_status
            .as_ref()
            .map(|v| v.get_ref().clone())
            .unwrap_or_else(|| vec!["given".to_string()]),
        allowed_provenance: s.policy.allowed_provenance.get_ref().clone(),
        revocations,
        retention_days: s.policy.retention_days.as_ref().map(|d| *d.get_ref()),
        as_of,
        subject_column: manifest.spec.subject_column.get_ref().clone(),
        purposes_column: manifest.spec.consent_purposes_column.get_ref().clone(),
        status_column: manifest.spec.consent_status_column.get_ref().clone(),
        purpose_separator: manifest.spec.purpose_separator.clone(),
        provenance: match (
            &manifest.spec.provenance_column,
            &manifest.spec.provenance_tag,
        ) {
            (Some(c), _) => Provenance::Column(c.get_ref().clone()),
            (None, Some(t)) => Provenance::Tag(t.get_ref().clone()),
            (None, None) => Provenance::Tag(String::new()),
        },
        timestamp,
    };

    // Output.
    let out_path = spec::resolve(&base, s.output.path.get_ref());
    let quarantine_path = match &s.output.quarantine {
        Some(q) => spec::resolve(&base, q.get_ref()),
        None => {
            let stem = out_path
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            spec::base_dir(&out_path).join(format!("{stem}.quarantine.jsonl"))
        }
    };
    let output = OutputPlan {
        path: out_path,
        row_group_size: s
            .output
            .row_group_size
            .as_ref()
            .map(|r| *r.get_ref())
            .unwrap_or(131_072),
        max_bad_rows: s.output.max_bad_rows,
        quarantine_path,
        split: s.output.split.as_ref().map(|x| {
            let x = x.get_ref();
            (x.train, x.validation, x.test)
        }),
    };

    let budget_cap = manifest.spec.privacy_budget.as_ref().and_then(|b| {
        privacy_loss(b.get_ref())
            .map_err(|m| {
                diags.push(
                    manifest
                        .diag(b.span(), format!("privacy_budget: {m}"))
                        .hint(
                        "write { epsilon = 1.0 }, { epsilon = 1.0, delta = 1e-6 } or { rho = 0.5 }",
                    ),
                )
            })
            .ok()
    });
    let releases = release_plans(
        &file,
        &base,
        &manifest,
        &columns,
        budget_cap.as_ref(),
        &mut diags,
    );

    let paths = named_paths(&file, &base, &files, &manifest, &output);
    for d in collision_diagnostics(&file, &paths) {
        diags.push(d);
    }

    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(Plan {
        paths,
        releases,
        budget_cap,
        name: s.pipeline.name.get_ref().clone(),
        pipeline: file.clone(),
        files,
        format,
        separator,
        csv_names,
        manifest,
        policy,
        columns,
        pii,
        text,
        output,
    })
}

/// A privacy target or cap as a loss: exactly ε, (ε, δ) or ρ, all positive.
fn privacy_loss(p: &crate::spec::PrivacySpec) -> Result<Loss, String> {
    let positive = |x: f64| x > 0.0 && x.is_finite();
    match (p.epsilon, p.delta, p.rho) {
        (Some(e), None, None) if positive(e) => Ok(Loss::Pure { epsilon: e }),
        (Some(e), Some(d), None) if positive(e) && d > 0.0 && d < 1.0 => {
            Ok(Loss::Approx { epsilon: e, delta: d })
        }
        (None, None, Some(r)) if positive(r) => Ok(Loss::Zcdp { rho: r }),
        (Some(e), Some(d), None) if positive(e) && d == 0.0 => Ok(Loss::Pure { epsilon: e }),
        (None, None, None) => Err("no privacy target is given".into()),
        _ => Err("give exactly { epsilon }, { epsilon, delta } or { rho }, with ε and ρ positive and 0 < δ < 1".into()),
    }
}

/// Resolves `[[release]]` blocks against the manifest and the column plans.
fn release_plans(
    file: &PipelineFile,
    base: &std::path::Path,
    manifest: &Manifest,
    columns: &[ColumnPlan],
    cap: Option<&Loss>,
    diags: &mut Diagnostics,
) -> Vec<ReleasePlan> {
    use crate::spec::{AggregateKind, KeySetSpec};
    let mut out: Vec<ReleasePlan> = Vec::new();
    for r in &file.spec.release {
        let span = r.span();
        let r = r.get_ref();
        let name = r.name.get_ref().clone();
        let at = |msg: String, hint: &str| {
            Diagnostic::at(
                &file.path,
                &file.text,
                Some(span.clone()),
                format!("release `{name}`: {msg}"),
            )
            .hint(hint.to_string())
        };
        let mut bad = false;
        if name.trim().is_empty() || out.iter().any(|o| o.name == name) {
            flag(
                diags,
                at(
                    "the name is empty or used twice".into(),
                    "give each release its own name",
                ),
                &mut bad,
            );
        }
        if !r.path.get_ref().ends_with(".parquet") {
            flag(
                diags,
                at(
                    "path must end in .parquet".into(),
                    "e.g. path = \"../out/dp/by_country.parquet\"",
                ),
                &mut bad,
            );
        }
        let target = match privacy_loss(r.privacy.get_ref()) {
            Ok(t) => Some(t),
            Err(m) => {
                flag(
                    diags,
                    at(format!("privacy: {m}"), "e.g. privacy = { epsilon = 1.0 }"),
                    &mut bad,
                );
                None
            }
        };
        for g in &r.group_by {
            let g_name = g.get_ref();
            match manifest.column(g_name) {
                None => flag(diags, at(format!("group_by column `{g_name}` is not in the manifest"), "group by a column of the dataset"), &mut bad),
                Some(c) if *c.class.get_ref() == ColumnClass::Identifier => flag(diags, at(format!("group_by column `{g_name}` is classed identifier"), "grouping by a direct identifier releases one group per person; group by a coarser column"), &mut bad),
                Some(c) if *c.ty.get_ref() != ColumnType::String => flag(diags, at(format!("group_by column `{g_name}` is {}, only text columns can be group keys", c.ty.get_ref().as_str()), "group by a text column (generalize dates or numbers to text first)"), &mut bad),
                Some(_) => {
                    if columns.iter().any(|c| &c.name == g_name && c.action == Action::Redact) {
                        flag(diags, at(format!("group_by column `{g_name}` is free text"), "group by a categorical column"), &mut bad);
                    }
                }
            }
        }
        let group_by: Vec<String> = r.group_by.iter().map(|g| g.get_ref().clone()).collect();
        let keys = match (r.keys.as_ref().map(|k| *k.get_ref()), group_by.is_empty()) {
            (_, true) => Keys::Whole,
            (None, false) => {
                flag(diags, at("keys is not set".into(), "say keys = \"public\" (with key_file or the manifest's values) or keys = \"private\" (needs δ > 0)"), &mut bad);
                Keys::Private
            }
            (Some(KeySetSpec::Private), false) => {
                if !matches!(target, Some(Loss::Approx { .. }) | None) {
                    flag(
                        diags,
                        at(
                            "private keys are released above a noisy threshold, which needs δ > 0"
                                .into(),
                            "give privacy = { epsilon = 1.0, delta = 1e-7 }, or use public keys",
                        ),
                        &mut bad,
                    );
                }
                Keys::Private
            }
            (Some(KeySetSpec::Public), false) => match &r.key_file {
                Some(f) => {
                    let p = spec::resolve(base, f.get_ref());
                    match read_keys(&p, &group_by) {
                        Ok(rows) => Keys::Public {
                            rows,
                            source: format!("key file {}", p.display()),
                        },
                        Err(m) => {
                            flag(diags, Diagnostic::at(&file.path, &file.text, Some(f.span()), format!("release `{name}`: key file `{}`: {m}", p.display())).hint("one key per line, or a CSV whose header names the group_by columns"), &mut bad);
                            Keys::Private
                        }
                    }
                }
                None => match (
                    group_by.len(),
                    group_by
                        .first()
                        .and_then(|g| manifest.column(g))
                        .and_then(|c| c.values.clone()),
                ) {
                    (1, Some(values)) if !values.is_empty() => {
                        let mut rows: Vec<Vec<String>> =
                            values.into_iter().map(|v| vec![v]).collect();
                        rows.sort();
                        rows.dedup();
                        Keys::Public {
                            rows,
                            source: format!("manifest values of `{}`", group_by[0]),
                        }
                    }
                    _ => {
                        flag(diags, at("public keys need a key list".into(), "set key_file = \"keys.csv\", or list values = [...] for the column in the manifest"), &mut bad);
                        Keys::Private
                    }
                },
            },
        };
        let per_subject = r.max_rows_per_subject.as_ref().map(|m| *m.get_ref());
        let (max_rows_per_group, max_groups) = match (per_subject, &r.max_rows_per_group) {
            // One subject's K rows can fall K to a group, in at most K groups.
            (Some(k), None) if r.max_groups.is_none() => (k, k),
            (None, Some(m)) => (
                *m.get_ref(),
                r.max_groups.as_ref().map(|g| *g.get_ref()).unwrap_or(1),
            ),
            (None, None) => {
                flag(diags, at("the release has no contribution bound".into(), "set max_rows_per_group (and max_groups, default 1), or max_rows_per_subject: they bound how much one person can change the result"), &mut bad);
                (1, 1)
            }
            _ => {
                flag(diags, at("max_rows_per_subject replaces max_rows_per_group and max_groups; give one or the other".into(), "max_rows_per_subject = K counts a subject's first K rows in whatever groups they fall; max_rows_per_group = k with max_groups = g counts k rows in each of g groups"), &mut bad);
                (1, 1)
            }
        };
        let max_rows = r.max_rows.as_ref().map(|m| *m.get_ref());
        if max_rows == Some(0) {
            flag(
                diags,
                at(
                    "max_rows must be at least 1".into(),
                    "a public upper bound on the consented rows the release reads",
                ),
                &mut bad,
            );
        }
        if max_rows_per_group == 0 || max_groups == 0 {
            flag(
                diags,
                at(
                    "contribution bounds (max_rows_per_group, max_groups, max_rows_per_subject) must be at least 1".into(),
                    "they bound how much one person can change the result",
                ),
                &mut bad,
            );
        }
        let mut statistics = Vec::new();
        if r.aggregates.get_ref().is_empty() {
            flag(
                diags,
                at(
                    "aggregates is empty".into(),
                    "e.g. aggregates = [{ kind = \"count\" }]",
                ),
                &mut bad,
            );
        }
        for a in r.aggregates.get_ref() {
            let numeric =
                |c: &Option<String>, bad: &mut bool, diags: &mut Diagnostics| -> Option<String> {
                    match c {
                        None => {
                            diags.push(at(
                                format!("{:?} needs a column", a.kind).to_lowercase(),
                                "add column = \"…\"",
                            ));
                            *bad = true;
                            None
                        }
                        Some(c) => match manifest.column(c) {
                            Some(m) if m.ty.get_ref().is_numeric() => Some(c.clone()),
                            Some(m) => {
                                diags.push(at(
                                    format!(
                                        "column `{c}` is {}, statistics need a number",
                                        m.ty.get_ref().as_str()
                                    ),
                                    "use an int64 or float64 column",
                                ));
                                *bad = true;
                                None
                            }
                            None => {
                                diags.push(at(
                                    format!("column `{c}` is not in the manifest"),
                                    "name a numeric column of the dataset",
                                ));
                                *bad = true;
                                None
                            }
                        },
                    }
                };
            match a.kind {
                AggregateKind::Count => statistics.push(Statistic::Count),
                AggregateKind::Sum | AggregateKind::Mean => {
                    let c = numeric(&a.column, &mut bad, diags);
                    match a.bounds {
                        Some([lo, hi]) if lo.is_finite() && hi.is_finite() && lo < hi => {
                            if let Some(column) = c {
                                statistics.push(if a.kind == AggregateKind::Sum {
                                    Statistic::Sum {
                                        column,
                                        lower: lo,
                                        upper: hi,
                                    }
                                } else {
                                    Statistic::Mean {
                                        column,
                                        lower: lo,
                                        upper: hi,
                                    }
                                });
                            }
                        }
                        _ => {
                            diags.push(at("sum and mean need bounds = [lower, upper] with lower < upper".into(), "values are clamped to the bounds, which fixes how much one row can change the result"));
                            bad = true;
                        }
                    }
                }
                AggregateKind::Quantile | AggregateKind::Median => {
                    let c = numeric(&a.column, &mut bad, diags);
                    let alpha = if a.kind == AggregateKind::Median {
                        Some(0.5)
                    } else {
                        a.alpha
                    };
                    match (alpha, &a.candidates) {
                        (Some(alpha), Some(cands))
                            if alpha > 0.0
                                && alpha < 1.0
                                && !cands.is_empty()
                                && cands.windows(2).all(|w| w[0] < w[1]) =>
                        {
                            if let Some(column) = c {
                                statistics.push(Statistic::Quantile {
                                    column,
                                    alpha,
                                    candidates: cands.clone(),
                                });
                            }
                        }
                        _ => {
                            diags.push(at("quantile needs alpha in (0, 1) and candidates in increasing order".into(), "e.g. { kind = \"median\", column = \"x\", candidates = [0, 10, 20, 40, 80] }"));
                            bad = true;
                        }
                    }
                }
            }
        }
        let sums = statistics
            .iter()
            .any(|s| matches!(s, Statistic::Sum { .. } | Statistic::Mean { .. }));
        if sums && max_rows.is_none() {
            flag(diags, at("sum and mean need max_rows, a public upper bound on the consented rows the release reads".into(), "e.g. max_rows = 10_000_000: OpenDP's float sums account for rounding over that many rows, so it must be fixed before the data is read, not counted from it; a run with more rows fails before releasing"), &mut bad);
        }
        if let Some(name) = crate::dp::plan::duplicate_column(&group_by, &statistics) {
            flag(diags, at(format!("the release would write the column `{name}` twice"), "each group column and statistic needs its own name: rename a group column, drop a repeated statistic, or use quantiles that differ in percent"), &mut bad);
        }
        let max_keys = r.max_keys.as_ref().map(|m| *m.get_ref());
        if max_keys == Some(0) {
            flag(
                diags,
                at(
                    "max_keys must be at least 1".into(),
                    "a public upper bound on the number of distinct group keys",
                ),
                &mut bad,
            );
        }
        if matches!(keys, Keys::Private) && sums && max_keys.is_none() {
            flag(diags, at("sums and means with private keys need max_keys, a public upper bound on the number of distinct group keys".into(), "e.g. max_keys = 250 for countries: OpenDP's float sums account for rounding across that many groups; a run whose data has more keys fails before releasing"), &mut bad);
        }
        if let (Some(cap), Some(t)) = (cap, target) {
            if let Err(m) = compose(cap, &[t]) {
                flag(
                    diags,
                    at(
                        m,
                        "release in the measure of the dataset's cap (see its manifest)",
                    ),
                    &mut bad,
                );
            }
        }
        if bad {
            continue;
        }
        let private_keys = matches!(keys, Keys::Private);
        out.push(ReleasePlan {
            name,
            path: spec::resolve(base, r.path.get_ref()),
            group_by,
            keys,
            max_rows_per_group,
            max_groups,
            max_rows_per_subject: per_subject,
            max_rows,
            max_keys: private_keys.then_some(max_keys).flatten(),
            target: target.unwrap_or(Loss::Pure { epsilon: 1.0 }),
            statistics,
        });
    }
    out
}

/// Every file the pipeline reads or writes, with the place in the pipeline file that names it.
fn named_paths(
    file: &PipelineFile,
    base: &std::path::Path,
    inputs: &[PathBuf],
    manifest: &Manifest,
    output: &OutputPlan,
) -> Vec<NamedPath> {
    let s = &file.spec;
    let source_span = Some(s.source.path.span());
    let mut out: Vec<NamedPath> = inputs
        .iter()
        .map(|f| {
            NamedPath::read(
                format!("input `{}`", f.display()),
                f.clone(),
                source_span.clone(),
            )
        })
        .collect();
    out.push(NamedPath::read(
        "the dataset manifest",
        manifest.path.clone(),
        s.source.manifest.as_ref().map(|m| m.span()).or(source_span),
    ));
    for r in &s.policy.revocations {
        out.push(NamedPath::read(
            "revocation list",
            spec::resolve(base, r.get_ref()),
            Some(r.span()),
        ));
    }
    if let Some(df) = &s.pii.deny_file {
        out.push(NamedPath::read(
            "[pii] deny_file",
            spec::resolve(base, df.get_ref()),
            Some(df.span()),
        ));
    }
    for r in &s.release {
        if let Some(f) = &r.get_ref().key_file {
            out.push(NamedPath::read(
                format!("key file of release `{}`", r.get_ref().name.get_ref()),
                spec::resolve(base, f.get_ref()),
                Some(f.span()),
            ));
        }
    }
    let out_span = Some(s.output.path.span());
    for (split, _, path) in output.files() {
        let what = match split {
            "all" => "[output] path".to_string(),
            other => format!("the `{other}` split of [output] path"),
        };
        out.push(NamedPath::write(what, path, out_span.clone()));
    }
    out.push(NamedPath::write(
        match &s.output.quarantine {
            Some(_) => "[output] quarantine",
            None => "the default quarantine report of [output] path",
        },
        output.quarantine_path.clone(),
        s.output.quarantine.as_ref().map(|q| q.span()).or(out_span),
    ));
    for r in &s.release {
        let r = r.get_ref();
        out.push(NamedPath::write(
            format!("path of release `{}`", r.name.get_ref()),
            spec::resolve(base, r.path.get_ref()),
            Some(r.path.span()),
        ));
    }
    out
}

/// `line L, column C` of a byte offset in the pipeline file.
fn place(file: &PipelineFile, span: &Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(sp) => {
            let d = Diagnostic::at(&file.path, &file.text, Some(sp.clone()), "");
            format!("{}:{}:{}", file.path.display(), d.line, d.column)
        }
        None => "outside the pipeline file".into(),
    }
}

/// One error per path the run would write over a file it reads, owns or writes twice.
pub fn collision_diagnostics(file: &PipelineFile, paths: &[NamedPath]) -> Vec<Diagnostic> {
    spec_paths::collisions(paths)
        .into_iter()
        .map(|c| {
            let verb = match c.other.use_ {
                spec_paths::Use::Read => "would overwrite",
                spec_paths::Use::Write => "is the same file as",
            };
            Diagnostic::at(
                &file.path,
                &file.text,
                c.written.span.clone(),
                format!(
                    "{} `{}` {verb} {} (`{}`, {})",
                    c.written.what,
                    c.written.path.display(),
                    c.other.what,
                    c.other.path.display(),
                    place(file, &c.other.span)
                ),
            )
            .hint("every file a run writes must be a new place: choose another path (after symlinks and `..` it names the same file)")
        })
        .collect()
}

fn flag(diags: &mut Diagnostics, d: Diagnostic, bad: &mut bool) {
    diags.push(d);
    *bad = true;
}

/// Reads a public key list: one key per line, or a CSV whose header names the group columns.
fn read_keys(path: &std::path::Path, group_by: &[String]) -> Result<Vec<Vec<String>>, String> {
    let text = spec::sidefile::read_to_string(path, spec::sidefile::KEY_LIST).map_err(|e| {
        format!(
            "{}; a key list must be a regular file of at most {}",
            e.reason(),
            spec::sidefile::KEY_LIST.limit_text()
        )
    })?;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first: Vec<String> = lines
        .clone()
        .next()
        .ok_or("the file is empty")?
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let positions: Vec<usize> = if group_by.iter().all(|g| first.contains(g)) {
        lines.next();
        group_by
            .iter()
            .map(|g| first.iter().position(|f| f == g).unwrap_or(0))
            .collect()
    } else if group_by.len() == 1 {
        vec![0]
    } else {
        return Err(format!(
            "the header must name the columns {}",
            group_by.join(", ")
        ));
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (i, l) in lines.enumerate() {
        let fields: Vec<&str> = l.split(',').map(str::trim).collect();
        let row: Option<Vec<String>> = positions
            .iter()
            .map(|p| fields.get(*p).map(|s| s.to_string()))
            .collect();
        match row {
            Some(r) => rows.push(r),
            None => return Err(format!("line {} has too few fields", i + 2)),
        }
    }
    rows.sort();
    rows.dedup();
    if rows.is_empty() {
        return Err("the file lists no keys".into());
    }
    Ok(rows)
}

fn unknown_detector_hint(name: &str, known: &[String]) -> String {
    match closest(name, known) {
        Some(c) => format!("did you mean `{c}`?"),
        None => format!("the detectors are: {}", known.join(", ")),
    }
}

/// Resolves `[pii]`: regions, lists, labels and user-defined detectors.
fn pii_plan(file: &PipelineFile, base: &std::path::Path, diags: &mut Diagnostics) -> PiiPlan {
    let s = &file.spec.pii;
    let at = |span: std::ops::Range<usize>, msg: String| {
        Diagnostic::at(&file.path, &file.text, Some(span), msg)
    };
    let mut plan = PiiPlan::default();
    if let Some(regions) = &s.regions {
        let supported = pii::phone::supported_regions();
        let mut list = Vec::new();
        for r in regions.get_ref() {
            let up = r.to_ascii_uppercase();
            if supported.contains(&up.as_str()) {
                list.push(up);
            } else {
                diags.push(
                    at(
                        regions.span(),
                        format!("phone region `{r}` is not supported"),
                    )
                    .hint(format!("supported regions: {}", supported.join(", "))),
                );
            }
        }
        if regions.get_ref().is_empty() {
            diags.push(
                at(
                    regions.span(),
                    "regions is empty, so no phone number would validate".into(),
                )
                .hint("list the countries your texts come from, e.g. [\"US\", \"GB\"]"),
            );
        }
        plan.regions = list;
    }
    plan.allow = s
        .allow
        .iter()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    plan.deny = s
        .deny
        .iter()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    if let Some(df) = &s.deny_file {
        let p = spec::resolve(base, df.get_ref());
        match spec::sidefile::read(&p, spec::sidefile::DENY_FILE) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let terms: Vec<String> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_string)
                    .collect();
                let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
                plan.deny_file = Some((p, sha, terms.len()));
                plan.deny.extend(terms);
            }
            Err(e) => diags.push(
                at(df.span(), format!("cannot read deny file `{}`: {}", p.display(), e.reason()))
                    .hint(format!("a deny file is a regular text file with one term per line, at most {}; paths are relative to the pipeline file", spec::sidefile::DENY_FILE.limit_text())),
            ),
        }
    }
    plan.gate = s.leak_gate;
    let builtin: Vec<String> = plan.detector_names();
    for d in &s.detector {
        let spec_d = d.get_ref();
        let name = spec_d.name.get_ref();
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid_name {
            diags.push(
                at(
                    spec_d.name.span(),
                    format!("detector name `{name}` is not a plain name"),
                )
                .hint("use lowercase letters, digits and `_`, e.g. name = \"employee_id\""),
            );
        }
        const RESERVED: [&str; 3] = ["id", "identifier_value", "custom"];
        if builtin.contains(name)
            || RESERVED.contains(&name.as_str())
            || plan.custom.iter().any(|c| &c.detector.name == name)
        {
            diags.push(
                at(
                    spec_d.name.span(),
                    format!("detector `{name}` is defined twice or shadows a built-in"),
                )
                .hint(format!(
                    "pick another name; built-in detectors are: {}",
                    builtin.join(", ")
                )),
            );
        }
        let detector = CustomDetector {
            name: name.clone(),
            pattern: spec_d.pattern.get_ref().clone(),
            validator: match spec_d.validator.unwrap_or(ValidatorSpec::None) {
                ValidatorSpec::None => pii::Validator::None,
                ValidatorSpec::Luhn => pii::Validator::Luhn,
                ValidatorSpec::Mod97 => pii::Validator::Mod97,
                ValidatorSpec::Ssn => pii::Validator::Ssn,
            },
        };
        if let Err(e) = regex::Regex::new(&detector.pattern) {
            let first = e
                .to_string()
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .to_string();
            diags.push(
                at(spec_d.pattern.span(), format!("detector `{name}`: the pattern is not a valid regular expression: {first}"))
                    .hint("patterns use Rust regex syntax; in TOML, write them in single quotes so backslashes stay as they are, e.g. pattern = 'EMP-\\d{6}'"),
            );
        }
        let label = spec_d
            .label
            .clone()
            .unwrap_or_else(|| format!("[{}]", name.to_ascii_uppercase()));
        plan.custom.push(CustomPlan { detector, label });
    }
    let mut known = plan.detector_names();
    // The label of contextual hits of non-name identifiers (`[ID]`).
    known.push("id".into());
    for (d, label) in &s.labels {
        if !known.contains(d.get_ref()) {
            diags.push(
                at(
                    d.span(),
                    format!("label for unknown detector `{}`", d.get_ref()),
                )
                .hint(unknown_detector_hint(d.get_ref(), &known)),
            );
        } else if label.get_ref().is_empty() {
            diags.push(at(label.span(), "a label cannot be empty".into()).hint(
                "an empty replacement would hide that anything was removed; e.g. \"[EMAIL]\"",
            ));
        } else {
            plan.labels
                .insert(d.get_ref().clone(), label.get_ref().clone());
        }
    }
    plan
}

/// The nearest name by edit distance, if it is close enough to be a typo.
fn closest<'a>(name: &str, candidates: &'a [String]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `explain` as data, for `--format json`.
#[derive(Debug, Serialize)]
pub struct Explained {
    pub pipeline: String,
    pub sources: Vec<String>,
    pub format: String,
    pub dataset_id: String,
    pub manifest: String,
    pub policy: Vec<String>,
    pub columns: Vec<ExplainedColumn>,
    pub outputs: Vec<String>,
    pub quarantine: String,
    /// Free-text settings and the leak gate, one line each.
    pub text: Vec<String>,
    /// Differentially private releases: query, privacy cost and expected accuracy.
    pub releases: Vec<String>,
    pub warnings: Vec<String>,
}

/// One column in `explain`.
#[derive(Debug, Serialize)]
pub struct ExplainedColumn {
    pub column: String,
    pub from: String,
    pub class: String,
    pub input_type: String,
    pub output_type: Option<String>,
    pub transformation: String,
    pub unsafe_raw: bool,
}

impl Plan {
    /// The plan in words.
    pub fn explain(&self) -> Explained {
        let columns = self
            .columns
            .iter()
            .map(|c| ExplainedColumn {
                column: c.name.clone(),
                from: c.name.clone(),
                class: c.class.as_str().into(),
                input_type: c.ty.as_str().into(),
                output_type: (c.action != Action::Drop)
                    .then(|| format!("{}", c.action.output_type(c.ty))),
                transformation: if c.explicit || c.action == Action::Drop {
                    self.describe_column(c)
                } else {
                    "kept as is (public in the manifest)".into()
                },
                unsafe_raw: c.is_unsafe(),
            })
            .collect();
        let mut warnings = Vec::new();
        for c in self.columns.iter().filter(|c| c.is_unsafe()) {
            warnings.push(format!("UNSAFE: column `{}` is classed {} and is kept as is: raw personal data will be in the output", c.name, c.class.as_str()));
        }
        let mut outputs: Vec<String> = self
            .output
            .files()
            .iter()
            .map(|(split, _, p)| format!("{} ({split})", p.display()))
            .collect();
        if let Some((t, v, te)) = self.output.split {
            outputs.push(format!("splits are subject-disjoint: each subject goes to one split by keyed hash (train {t}, validation {v}, test {te})"));
        }
        Explained {
            releases: self.explain_releases(),
            text: self.explain_text(),
            pipeline: format!("{} ({})", self.name, self.pipeline.path.display()),
            sources: self.files.iter().map(|f| f.display().to_string()).collect(),
            format: self.format.as_str().into(),
            dataset_id: self.manifest.dataset_id().into(),
            manifest: self.manifest.path.display().to_string(),
            policy: self.policy.describe(),
            columns,
            outputs,
            quarantine: format!(
                "rows whose values do not parse go to {} (file, line, column, error; never the value); the run fails above {} such rows",
                self.output.quarantine_path.display(),
                self.output.max_bad_rows
            ),
            warnings,
        }
    }
}

impl Plan {
    /// Each release's query, privacy cost and expected 95% accuracy, from OpenDP, before any
    /// data is read.
    fn explain_releases(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.releases.is_empty() {
            return out;
        }
        if let Some(cap) = &self.budget_cap {
            out.push(format!(
                "dataset `{}` has a privacy budget cap of {cap}; each run's releases are checked against what earlier runs spent",
                self.manifest.dataset_id()
            ));
        }
        for r in &self.releases {
            out.push(format!(
                "`{}` → {}: group by [{}], keys {}, {}, target {}",
                r.name,
                r.path.display(),
                r.group_by.join(", "),
                match &r.keys {
                    Keys::Public { rows, source } =>
                        format!("public ({} from {source})", rows.len()),
                    Keys::Private => "private (released above a noisy threshold)".into(),
                    Keys::Whole => "none (one row for all consented rows)".into(),
                },
                match r.max_rows_per_subject {
                    Some(k) => format!("at most {k} row(s) per subject in all groups"),
                    None => format!(
                        "at most {} row(s) per subject per group and {} group(s) per subject",
                        r.max_rows_per_group, r.max_groups
                    ),
                },
                r.target
            ));
            if let Some(m) = r.max_rows {
                out.push(format!(
                    "    public bound: at most {m} consented rows (a run with more fails before releasing)"
                ));
            }
            if let Some(k) = r.max_keys {
                out.push(format!(
                    "    public bound: at most {k} distinct keys (a run with more fails before releasing)"
                ));
            }
            match crate::dp::release::prepare(r) {
                Ok(p) => {
                    out.push(format!(
                        "    OpenDP: spends {} per subject (noise scale ×{:.4}{})",
                        p.calibrated.spend,
                        p.calibrated.global_scale,
                        p.calibrated
                            .threshold
                            .map(|t| format!(", threshold {t}"))
                            .unwrap_or_default()
                    ));
                    for s in &r.statistics {
                        if let crate::dp::plan::Statistic::Mean {
                            column,
                            lower,
                            upper,
                        } = s
                        {
                            let at = |n: f64| {
                                p.calibrated.mean_half_width(
                                    &crate::dp::plan::stat_column(s),
                                    *lower,
                                    *upper,
                                    n,
                                )
                            };
                            out.push(format!(
                                "    {column} mean (noisy sum / noisy count): 95% within ±{:.3} for a group of 100 rows, ±{:.3} at 1,000, ±{:.3} at 10,000",
                                at(100.0),
                                at(1000.0),
                                at(10000.0)
                            ));
                        }
                    }
                    for q in &p.calibrated.rank_ci95 {
                        out.push(format!(
                            "    {}: 95% of releases pick a candidate within ±{:.1} rows of the quantile's rank (beyond the nearest candidate)",
                            q.column, q.rows
                        ));
                    }
                    for n in &p.calibrated.noise {
                        out.push(format!(
                            "    {}: {} noise, scale {:.4}, {}",
                            n.column,
                            n.distribution,
                            n.scale,
                            n.ci95
                                .map(|a| format!("95% of releases within ±{a:.4}"))
                                .unwrap_or_else(|| "no value interval (see the rank bound)".into())
                        ));
                    }
                }
                Err(e) => out.push(format!("    cannot be built: {e}")),
            }
        }
        out
    }

    /// The `[pii]` settings and the leak gate in words.
    fn explain_text(&self) -> Vec<String> {
        let p = &self.pii;
        let mut out = Vec::new();
        for t in &self.text {
            out.push(format!(
                "`{}`: detectors {}",
                t.column,
                t.detectors.join(", ")
            ));
        }
        if !self.text.is_empty() {
            out.push(format!(
                "phone numbers are validated against the numbering plans of: {}",
                p.regions.join(", ")
            ));
            out.push(format!(
                "allow list: {} value(s) never flagged; deny list: {} term(s){}",
                p.allow.len(),
                p.deny.len(),
                p.deny_file
                    .as_ref()
                    .map(|(f, _, n)| format!(" ({n} from {})", f.display()))
                    .unwrap_or_default()
            ));
            for c in &p.custom {
                out.push(format!(
                    "detector `{}`: pattern {}{}, replaced by {}",
                    c.detector.name,
                    c.detector.pattern,
                    match c.detector.validator {
                        pii::Validator::None => String::new(),
                        v => format!(" checked with {}", format!("{v:?}").to_lowercase()),
                    },
                    c.label
                ));
            }
        }
        out.push(format!(
            "leak gate: before commit, every string value of every output is scanned with all detectors and for the identifier values of every input row; a hit {}",
            match p.gate {
                crate::spec::LeakGateMode::Fail => "fails the run and nothing is committed",
                crate::spec::LeakGateMode::Warn => "is reported as a warning (leak_gate = \"warn\")",
            }
        ));
        out
    }
}

impl std::fmt::Display for Explained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "pipeline {}", self.pipeline)?;
        writeln!(
            f,
            "\nsources ({}, dataset `{}`, manifest {})",
            self.format, self.dataset_id, self.manifest
        )?;
        for s in &self.sources {
            writeln!(f, "  {s}")?;
        }
        writeln!(f, "\npolicy (a row is dropped for the first rule it fails)")?;
        for p in &self.policy {
            writeln!(f, "  {p}")?;
        }
        writeln!(f, "\ncolumns")?;
        let width = self
            .columns
            .iter()
            .map(|c| c.column.len())
            .max()
            .unwrap_or(0);
        for c in &self.columns {
            match &c.output_type {
                Some(t) => writeln!(
                    f,
                    "  {:<width$}  ← {} ({}, {}): {} → {t}{}",
                    c.column,
                    c.from,
                    c.class,
                    c.input_type,
                    c.transformation,
                    if c.unsafe_raw { "  [UNSAFE]" } else { "" }
                )?,
                None => writeln!(
                    f,
                    "  {:<width$}  ✗ dropped ({}, {})",
                    c.column, c.class, c.input_type
                )?,
            }
        }
        writeln!(f, "\noutputs")?;
        for o in &self.outputs {
            writeln!(f, "  {o}")?;
        }
        writeln!(f, "  {}", self.quarantine)?;
        if !self.releases.is_empty() {
            writeln!(f, "\ndifferentially private releases")?;
            for r in &self.releases {
                writeln!(f, "  {r}")?;
            }
        }
        writeln!(f, "\nfree text and leak gate")?;
        for t in &self.text {
            writeln!(f, "  {t}")?;
        }
        if !self.warnings.is_empty() {
            writeln!(f)?;
            for w in &self.warnings {
                writeln!(f, "warning: {w}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = vec![
            "email".to_string(),
            "phone".to_string(),
            "birth_date".to_string(),
        ];
        assert_eq!(closest("emial", &names), Some("email"));
        assert_eq!(closest("birthdate", &names), Some("birth_date"));
        assert_eq!(closest("zzzzzz", &names), None);
    }
}
