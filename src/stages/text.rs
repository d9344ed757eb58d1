//! Stage `text`: `[pii]` and the `redact` rules of `[columns]`, which detectors run on which
//! free-text column, what each hit becomes, the row context searched for names, and the leak
//! gate's mode. Detection and redaction are kernels (`privprep_kernels::pii`); the polars
//! lowering is `engine/polars/text.rs`; the gate is `crate::pii::gate`.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

use super::{Halt, Plan, Resolution, Stage};
use crate::identity::Action;
use crate::ingest::{ColumnClass, ColumnType, Manifest};
use crate::lineage::record::{
    CustomDetectorRecord, FileRef, GateMode, PiiSummary, RunRecord, TextColumnRecord,
};
use crate::pii::redact::TextStats;
use crate::pii::{self, CustomDetector, CustomPlan, PiiPlan, TextAction, TextColumnPlan};
use crate::spec::diag::{closest, did_you_mean};
use crate::spec::paths::NamedPath;
use crate::spec::{self, ColumnRule, Diagnostic, Diagnostics, PipelineFile, TextActionSpec};

pub const STAGE: Stage = Stage {
    name: "text",
    check: super::check_nothing,
    resolve,
    explain,
    record,
};

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

fn resolve(r: &mut Resolution) -> Result<(), Halt> {
    let file = r.file;
    let s = &file.spec;
    let diags = &mut r.diags;
    let pii = pii_plan(file, &r.base, diags);
    if let Some(df) = &s.pii.deny_file {
        r.paths.push(NamedPath::read(
            "[pii] deny_file",
            spec::resolve(&r.base, df.get_ref()),
            Some(df.span()),
        ));
    }
    let (Some(super::Source { manifest, .. }), Some(columns)) = (&r.source, &r.columns) else {
        return Err(Halt);
    };
    let mut text: Vec<TextColumnPlan> = Vec::new();
    for (name, rule) in &s.columns {
        let name = name.get_ref();
        if let ColumnRule::Redact {
            detectors,
            context,
            default_action,
            actions,
            keep_last,
        } = rule.get_ref()
        {
            if manifest.column(name).is_none() {
                continue;
            }
            text.push(text_column(
                file,
                manifest,
                &pii,
                name,
                rule.span(),
                RedactRule {
                    detectors,
                    context,
                    default_action,
                    actions,
                    keep_last,
                },
                diags,
            ));
        }
    }
    // Manifest order, as the columns are written.
    text.sort_by_key(|t| {
        manifest
            .spec
            .columns
            .iter()
            .position(|c| c.name.get_ref() == &t.column)
    });
    let at = |span: std::ops::Range<usize>, msg: String| file.at(span, msg);
    if text.iter().any(|t| t.tokenizes()) {
        let run_wide = super::run_wide_token(&s.tokens);
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
    r.pii = Some(pii);
    r.text = Some(text);
    Ok(())
}

/// The parts of a `redact` rule.
struct RedactRule<'a> {
    detectors: &'a Option<Vec<String>>,
    context: &'a Option<Vec<String>>,
    default_action: &'a Option<TextActionSpec>,
    actions: &'a BTreeMap<String, TextActionSpec>,
    keep_last: &'a Option<usize>,
}

/// Resolves one column's `redact` rule against the detectors and the manifest.
fn text_column(
    file: &PipelineFile,
    manifest: &Manifest,
    pii: &PiiPlan,
    name: &String,
    span: std::ops::Range<usize>,
    rule: RedactRule,
    diags: &mut Diagnostics,
) -> TextColumnPlan {
    let RedactRule {
        detectors,
        context,
        default_action,
        actions,
        keep_last,
    } = rule;
    let rule_at = |msg: String, hint: String| {
        file.at(span.clone(), format!("column `{name}`: {msg}"))
            .hint(hint)
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
    if detectors.iter().any(|d| d == pii::DENY_DETECTOR) && pii.deny.is_empty() {
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
        TextActionSpec::Surrogate => TextAction::Surrogate,
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
    let context_columns = if detectors.iter().any(|d| d == pii::CONTEXT_DETECTOR) {
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
        diags.push(rule_at(
            "`keep_last` is set but no detector's action is `mask`".into(),
            "set default_action = \"mask\" or an action to \"mask\", or remove `keep_last`".into(),
        ));
    }
    TextColumnPlan {
        column: name.clone(),
        detectors,
        context: context_columns,
        default_action: text_action(default_action.unwrap_or(TextActionSpec::Redact)),
        actions: by_detector,
    }
}

fn unknown_detector_hint(name: &str, known: &[String]) -> String {
    did_you_mean(name, known, "the detectors are")
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

fn explain(plan: &Plan, out: &mut super::Explained) {
    out.text = explain_text(plan);
}

/// The `[pii]` settings and the leak gate in words.
fn explain_text(plan: &Plan) -> Vec<String> {
    let p = &plan.pii;
    let mut out = Vec::new();
    for t in &plan.text {
        out.push(format!(
            "`{}`: detectors {}",
            t.column,
            t.detectors.join(", ")
        ));
    }
    if !plan.text.is_empty() {
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

fn record(plan: &Plan, record: &mut RunRecord) {
    let p = &plan.pii;
    record.pii = Some(PiiSummary {
        phone_regions: p.regions.clone(),
        allow_values: p.allow.len() as u64,
        deny_terms: p.deny.len() as u64,
        deny_file: p.deny_file.as_ref().map(|(f, sha, _)| FileRef {
            path: f.display().to_string(),
            sha256: sha.clone(),
        }),
        custom_detectors: p
            .custom
            .iter()
            .map(|c| CustomDetectorRecord {
                name: c.detector.name.clone(),
                pattern: c.detector.pattern.clone(),
            })
            .collect(),
        leak_gate: match p.gate {
            LeakGateMode::Fail => GateMode::Fail,
            LeakGateMode::Warn => GateMode::Warn,
        },
    });
}

/// Lineage of each text column after the run: detectors, actions and what the redaction
/// counted (`stats`, one per text column in plan order).
pub fn text_records(plan: &Plan, stats: &[&TextStats]) -> Vec<TextColumnRecord> {
    use std::sync::atomic::Ordering::Relaxed;
    let names = plan.pii.slot_names();
    plan.text
        .iter()
        .zip(stats)
        .map(|(t, st)| TextColumnRecord {
            column: t.column.clone(),
            detectors: t.detectors.clone(),
            context_columns: t.context.clone(),
            actions: t
                .detectors
                .iter()
                .map(|d| (d.clone(), t.action_for(d).describe()))
                .collect(),
            texts_scanned: st.texts.load(Relaxed),
            texts_changed: st.texts_changed.load(Relaxed),
            spans_replaced: st
                .span_counts()
                .into_iter()
                .enumerate()
                .filter(|(_, n)| *n > 0)
                .map(|(i, n)| (names.get(i).cloned().unwrap_or_default(), n))
                .collect(),
            rows_dropped: st.rows_dropped.load(Relaxed),
        })
        .collect()
}
