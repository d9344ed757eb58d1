//! Stage `policy`: `[policy]`, which rows may be processed at all (consent status and
//! purpose, provenance, revocation lists, retention), resolved against the manifest's consent
//! columns. The row rules themselves are `crate::policy`; the polars lowering is
//! `engine/polars/policy.rs`.

use serde::Deserialize;
use toml::Spanned;

use super::{Halt, Plan, Resolution, Stage};
use crate::ingest::ColumnType;
use crate::lineage::record::{PolicySummary, RevocationListRecord, RunRecord};
use crate::policy::{self, PolicyPlan, Provenance};
use crate::spec::paths::NamedPath;
use crate::spec::{self, Diagnostics, PipelineFile};

pub const STAGE: Stage = Stage {
    name: "policy",
    check,
    resolve,
    explain,
    record,
};

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

fn check(file: &PipelineFile, diags: &mut Diagnostics) {
    let spec = &file.spec;
    let at = |span: std::ops::Range<usize>, msg: String| file.at(span, msg);
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
}

fn resolve(r: &mut Resolution) -> Result<(), Halt> {
    let file = r.file;
    let s = &file.spec;
    let (base, diags) = (&r.base, &mut r.diags);
    let Some(super::Source { manifest, .. }) = &r.source else {
        return Err(Halt);
    };
    let at = |span: std::ops::Range<usize>, msg: String| file.at(span, msg);
    // Policy.
    let mut revocations = Vec::new();
    for list in &s.policy.revocations {
        let p = spec::resolve(base, list.get_ref());
        let subject = manifest
            .spec
            .subject_column
            .as_ref()
            .map(|c| c.get_ref().as_str())
            .unwrap_or("subject_id");
        match policy::load_revocations(&p, subject) {
            Ok(l) => revocations.push(l),
            Err(e) => diags.push(
                at(
                    list.span(),
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
        subject_column: manifest
            .spec
            .subject_column
            .as_ref()
            .map(|c| c.get_ref().clone())
            .unwrap_or_else(|| crate::ingest::manifest::ROW_UNIT.to_string()),
        row_unit: manifest.spec.subject_column.is_none(),
        purposes_column: manifest
            .spec
            .consent_purposes_column
            .as_ref()
            .map(|c| c.get_ref().clone()),
        status_column: manifest
            .spec
            .consent_status_column
            .as_ref()
            .map(|c| c.get_ref().clone()),
        dataset_consent: manifest.spec.consent.as_ref().map(|c| c.get_ref().clone()),
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

    if policy.row_unit {
        if let Some(first) = s.policy.revocations.first() {
            r.diags.push(
                file.at(first.span(), "revocation lists name subjects, but this dataset has none (its manifest says privacy_unit = \"row\")")
                    .hint("remove revocations, or name the subject column in the manifest"),
            );
        }
    }
    for rv in &s.policy.revocations {
        r.paths.push(NamedPath::read(
            "revocation list",
            spec::resolve(&r.base, rv.get_ref()),
            Some(rv.span()),
        ));
    }
    r.policy = Some(policy);
    Ok(())
}

fn explain(plan: &Plan, out: &mut super::Explained) {
    out.policy = plan.policy.describe();
}

fn record(plan: &Plan, record: &mut RunRecord) {
    let p = &plan.policy;
    record.policy = PolicySummary {
        purpose: p.purpose.clone(),
        allowed_status: p.allowed_status.clone(),
        allowed_provenance: p.allowed_provenance.clone(),
        revocation_lists: p
            .revocations
            .iter()
            .map(|l| RevocationListRecord {
                path: l.path.display().to_string(),
                sha256: l.sha256.clone(),
                entries: l.ids.len() as u64,
            })
            .collect(),
        retention_days: p.retention_days,
        as_of: p.as_of.to_string(),
        privacy_unit: p.row_unit.then(|| "row".to_string()),
        consent_basis: p.dataset_consent.as_ref().map(|c| c.basis.clone()),
        consent_purposes: p
            .dataset_consent
            .as_ref()
            .map(|c| c.purposes.clone())
            .unwrap_or_default(),
    };
}
