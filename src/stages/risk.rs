//! Stage `risk`: `[risk]`, k-anonymity of the written rows on their quasi-identifiers.
//!
//! Rows are grouped into equivalence classes by the values their quasi-identifier columns
//! have in the output (after generalization, so `zip` generalized to 3 digits groups by
//! those 3 digits). With `action = "suppress"` (the default), rows of classes with fewer than
//! `k` written rows are dropped, counted under drop reason `k_anonymity`; with `"report"` they
//! are written and counted. The run records the k reached, the classes and rows below k, and,
//! for each `sensitive` output column, its l-diversity (the fewest distinct values in one
//! written class). Classes span every split: a split holds a subset of a class's rows.
//!
//! The class sizes must be known before a row is written; the engine counts them in a first
//! streaming pass that keeps one count per class, never the rows (`engine/polars/risk.rs`).

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{record_nothing, Halt, Plan, Resolution, Stage};
use crate::identity::Action;
use crate::ingest::ColumnClass;
use crate::spec::{Diagnostics, PipelineFile};

pub const STAGE: Stage = Stage {
    name: "risk",
    check,
    resolve,
    explain,
    record: record_nothing,
};

/// `[risk]`: k-anonymity on the quasi-identifiers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskSpec {
    /// Output columns forming the classes; default every output column the manifest classes
    /// `quasi_identifier`.
    #[serde(default)]
    pub quasi_identifiers: Option<Vec<Spanned<String>>>,
    /// Smallest class size allowed in the output.
    pub k: Spanned<u32>,
    /// `suppress` (default) or `report`.
    #[serde(default)]
    pub action: Option<RiskAction>,
}

/// What is done with rows of classes smaller than k.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskAction {
    /// Drop them (drop reason `k_anonymity`).
    #[default]
    Suppress,
    /// Write them; count them in the run's record.
    Report,
}

impl RiskAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RiskAction::Suppress => "suppress",
            RiskAction::Report => "report",
        }
    }
}

/// The resolved `[risk]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskPlan {
    pub quasi_identifiers: Vec<String>,
    pub k: u32,
    pub action: RiskAction,
    /// Output columns classed `sensitive`, whose l-diversity is reported.
    pub sensitive: Vec<String>,
}

fn check(file: &PipelineFile, diags: &mut Diagnostics) {
    if let Some(r) = &file.spec.risk {
        let k = &r.get_ref().k;
        if *k.get_ref() < 2 {
            diags.push(
                file.at(k.span(), "k must be at least 2")
                    .hint("k is the smallest number of written rows that may share their quasi-identifier values; 5 or 10 are common"),
            );
        }
    }
}

fn resolve(r: &mut Resolution) -> Result<(), Halt> {
    let Some(spec) = r.file.spec.risk.as_ref() else {
        r.risk = Some(None);
        return Ok(());
    };
    let (span, spec) = (spec.span(), spec.get_ref());
    let Some(columns) = r.columns.as_ref() else {
        return Ok(());
    };
    let outputs: Vec<_> = columns
        .iter()
        .filter(|c| c.action != Action::Drop)
        .collect();
    let qis: Vec<String> = match &spec.quasi_identifiers {
        Some(named) => {
            let mut ok = Vec::new();
            for q in named {
                if outputs.iter().any(|o| o.name == *q.get_ref()) {
                    ok.push(q.get_ref().clone());
                } else {
                    let d = r
                        .file
                        .at(q.span(), format!("`{}` is not an output column", q.get_ref()))
                        .hint("quasi-identifiers are output columns (a dropped column identifies no one)");
                    r.diags.push(d);
                }
            }
            ok
        }
        None => outputs
            .iter()
            .filter(|c| c.class == ColumnClass::QuasiIdentifier)
            .map(|c| c.name.clone())
            .collect(),
    };
    if qis.is_empty() && spec.quasi_identifiers.is_none() {
        let d = r
            .file
            .at(
                span,
                "[risk] has no quasi-identifiers: no output column is classed quasi_identifier",
            )
            .hint("name them: quasi_identifiers = [\"zip\", \"birth_date\"]");
        r.diags.push(d);
    }
    let sensitive = outputs
        .iter()
        .filter(|c| c.class == ColumnClass::Sensitive && !qis.contains(&c.name))
        .map(|c| c.name.clone())
        .collect();
    r.risk = Some(Some(RiskPlan {
        quasi_identifiers: qis,
        k: *spec.k.get_ref(),
        action: spec.action.unwrap_or_default(),
        sensitive,
    }));
    Ok(())
}

fn explain(plan: &Plan, out: &mut super::Explained) {
    if let Some(r) = &plan.risk {
        let qis = r
            .quasi_identifiers
            .iter()
            .map(|q| format!("`{q}`"))
            .collect::<Vec<_>>()
            .join(", ");
        out.policy.push(match r.action {
            RiskAction::Suppress => format!("then k-anonymity: rows whose output values of {qis} are shared by fewer than {} written rows are dropped (k_anonymity); class sizes are counted in a first pass over the data", r.k),
            RiskAction::Report => format!("then k-anonymity, reported only: classes of {qis} with fewer than {} rows are counted, not dropped", r.k),
        });
        if !r.sensitive.is_empty() {
            out.policy.push(format!(
                "  l-diversity is reported for {}",
                r.sensitive
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
}
