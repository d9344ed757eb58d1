//! Stage `synthetic`: `[[synthetic]]`, differentially private synthetic tables of the kept
//! rows (`crate::synth` fits and samples them; `run::synthetic` spends and writes).
//!
//! Every column needs a public domain, never read from the data: the manifest's `values` of a
//! categorical column, or `bins` declared here for a number (a value outside them is clamped
//! to the first or last bin, and counted in the data owner's report). The privacy unit is the
//! subject, bounded to `max_rows_per_subject` rows; the target is ρ (zCDP) or (ε, δ), spent
//! through the budget ledger like a release.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::{check_nothing, record_nothing, Halt, Plan, Resolution, Stage};
use crate::ingest::{ColumnClass, ColumnType};
use crate::spec::paths::NamedPath;
use crate::spec::{self, PrivacySpec};

pub const STAGE: Stage = Stage {
    name: "synthetic",
    check: check_nothing,
    resolve,
    explain,
    record: record_nothing,
};

/// `[[synthetic]]`: one synthetic table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSpec {
    pub name: Spanned<String>,
    /// Output Parquet file, relative to the pipeline file.
    pub path: Spanned<String>,
    /// The columns of the table (input columns, by name).
    pub columns: Vec<Spanned<String>>,
    /// Public bin edges of numeric, date or datetime columns (ascending numbers, or ISO
    /// dates and datetimes as text; values outside are clamped).
    #[serde(default)]
    pub bins: BTreeMap<String, Vec<BinEdge>>,
    /// Public domains read from key files (one value per line, or a CSV whose header names the
    /// column), relative to the pipeline file: for categorical columns whose manifest lists no
    /// values.
    #[serde(default)]
    pub key_files: BTreeMap<String, Spanned<String>>,
    /// `{ epsilon }` (pure DP), `{ epsilon, delta }` (converted to ρ) or `{ rho }`.
    pub privacy: Spanned<PrivacySpec>,
    /// At most this many rows of one subject are used (default 1).
    #[serde(default)]
    pub max_rows_per_subject: Option<Spanned<u32>>,
    /// Rows to generate (default: the noisy count).
    #[serde(default)]
    pub rows: Option<u64>,
    /// Seed of the sampling (the private model is random; its samples need not be).
    #[serde(default)]
    pub seed: Option<u64>,
    /// The utility report, for the data owner (default `<path stem>.report.json`).
    #[serde(default)]
    pub report: Option<Spanned<String>>,
    /// A column of the table to predict: the report then gives the accuracy of a classifier
    /// trained on the synthetic rows and tested on the real ones.
    #[serde(default)]
    pub target: Option<Spanned<String>>,
}

/// One bin edge as the pipeline writes it: a number, or an ISO date or datetime.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum BinEdge {
    Number(f64),
    Text(String),
}

/// A value of a binned column on its bins' axis: the number itself, a date's days since
/// 1970-01-01, or a datetime's microseconds since 1970-01-01T00:00:00 (a date alone is its
/// midnight). `None` for text that is no such value.
pub fn bin_value(ty: ColumnType, text: &str) -> Option<f64> {
    use privprep_kernels::temporal::{iso_date_days, iso_datetime_micros};
    let text = text.trim();
    match ty {
        ColumnType::Int64 | ColumnType::Float64 => text.parse::<f64>().ok(),
        ColumnType::Date => iso_date_days(text)
            .or_else(|| iso_datetime_micros(text).map(|m| m.div_euclid(86_400_000_000)))
            .map(|d| d as f64),
        ColumnType::Datetime => iso_datetime_micros(text)
            .or_else(|| iso_date_days(text).map(|d| d * 86_400_000_000))
            .map(|m| m as f64),
        ColumnType::String | ColumnType::Bool => None,
    }
    .filter(|x| x.is_finite())
}

/// A column's public domain.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    /// The manifest's values, in order.
    Values(Vec<String>),
    /// Bin edges e0 < e1 < … (bins [e_i, e_{i+1}), the last one closed).
    Bins(Vec<f64>),
}

impl Domain {
    pub fn size(&self) -> usize {
        match self {
            Domain::Values(v) => v.len(),
            Domain::Bins(e) => e.len() - 1,
        }
    }
}

/// One column of a synthetic table.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthColumn {
    pub name: String,
    pub ty: ColumnType,
    pub domain: Domain,
}

/// A resolved `[[synthetic]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticPlan {
    pub name: String,
    pub path: std::path::PathBuf,
    pub report: std::path::PathBuf,
    pub columns: Vec<SynthColumn>,
    /// The budget: ρ in zCDP, or ε in pure DP.
    pub measure: crate::synth::Measure,
    pub budget: f64,
    /// What the pipeline asked for, in words.
    pub target: String,
    pub max_rows_per_subject: u32,
    pub rows: Option<u64>,
    pub seed: Option<u64>,
    /// The column the report's train-on-synthetic / test-on-real accuracy predicts.
    pub predict: Option<String>,
    /// The column the model is conditioned on: the target, when it has at most
    /// [`crate::synth::MAX_HUB_VALUES`] values.
    pub conditioned_on: Option<String>,
}

fn resolve(r: &mut Resolution) -> Result<(), Halt> {
    let file = r.file;
    let Some(source) = r.source.as_ref() else {
        return Err(Halt);
    };
    let manifest = &source.manifest;
    let mut plans = Vec::new();
    for t in &file.spec.synthetic {
        let span = t.span();
        let t = t.get_ref();
        let name = t.name.get_ref().clone();
        let mut ok = true;
        let mut push = |d| {
            ok = false;
            r.diags.push(d);
        };
        if !t.path.get_ref().ends_with(".parquet") {
            push(file.at(
                t.path.span(),
                "a synthetic table's path must end in .parquet",
            ));
        }
        if t.columns.is_empty() {
            push(file.at(
                span.clone(),
                format!("synthetic table `{name}` names no columns"),
            ));
        }
        for (col, f) in &t.key_files {
            if !t.columns.iter().any(|c| c.get_ref() == col) {
                push(file.at(
                    f.span(),
                    format!("key file for `{col}`, which is not a column of the table"),
                ));
            }
            r.paths.push(NamedPath::read(
                format!("key file of `{col}` in synthetic table `{name}`"),
                spec::resolve(&r.base, f.get_ref()),
                Some(f.span()),
            ));
        }
        let mut columns = Vec::new();
        for c in &t.columns {
            let Some(m) = manifest.column(c.get_ref()) else {
                push(file.at(
                    c.span(),
                    format!("`{}` is not a column of the dataset", c.get_ref()),
                ));
                continue;
            };
            let class = *m.class.get_ref();
            if matches!(class, ColumnClass::Identifier | ColumnClass::FreeText) {
                push(
                    file.at(c.span(), format!("`{}` is classed {}: a synthetic table would copy its values", c.get_ref(), class.as_str()))
                        .hint("synthetic tables are for quasi-identifiers, sensitive and public columns; tokenize or drop identifiers in the data files"),
                );
                continue;
            }
            let ty = *m.ty.get_ref();
            let domain = match (t.bins.get(c.get_ref()), &m.values) {
                _ if t.bins.contains_key(c.get_ref()) && t.key_files.contains_key(c.get_ref()) => {
                    push(file.at(
                        c.span(),
                        format!("`{}` has both bins and a key file", c.get_ref()),
                    ).hint("give one public domain: bins for a number, or a key file of its values"));
                    continue;
                }
                _ if t.key_files.contains_key(c.get_ref())
                    && matches!(ty, ColumnType::Date | ColumnType::Datetime) =>
                {
                    push(
                        file.at(t.key_files[c.get_ref()].span(), format!("`{}` is a {}: its public domain is bins, not a key file", c.get_ref(), ty.as_str()))
                            .hint("e.g. bins = { col = [\"1960-01-01\", \"1980-01-01\", \"2000-01-01\"] }"),
                    );
                    continue;
                }
                _ if t.key_files.contains_key(c.get_ref()) => {
                    let f = &t.key_files[c.get_ref()];
                    let path = spec::resolve(&r.base, f.get_ref());
                    match super::release::read_keys(&path, std::slice::from_ref(c.get_ref())) {
                        Ok(rows) => {
                            let mut values: Vec<String> = Vec::new();
                            for v in rows.into_iter().flatten() {
                                if !values.contains(&v) {
                                    values.push(v);
                                }
                            }
                            Domain::Values(values)
                        }
                        Err(why) => {
                            push(
                                file.at(
                                    f.span(),
                                    format!(
                                        "key file `{}` of `{}`: {why}",
                                        path.display(),
                                        c.get_ref()
                                    ),
                                )
                                .hint("one value per line, or a CSV whose header names the column"),
                            );
                            continue;
                        }
                    }
                }
                (Some(given), _) => {
                    let numeric = matches!(ty, ColumnType::Int64 | ColumnType::Float64);
                    if !numeric && !matches!(ty, ColumnType::Date | ColumnType::Datetime) {
                        push(file.at(
                            c.span(),
                            format!(
                                "bins are for numbers, dates and datetimes, but `{}` is {}",
                                c.get_ref(),
                                ty.as_str()
                            ),
                        ));
                        continue;
                    }
                    // Numbers for numbers; ISO dates or datetimes, as text, for the others.
                    let edges: Option<Vec<f64>> = given
                        .iter()
                        .map(|e| match e {
                            BinEdge::Number(x) if numeric => Some(*x),
                            BinEdge::Text(t) if !numeric => bin_value(ty, t),
                            _ => None,
                        })
                        .collect();
                    let Some(edges) = edges else {
                        push(
                            file.at(span.clone(), format!("the bins of `{}` must be {}", c.get_ref(), if numeric { "numbers" } else { "ISO dates or datetimes, as text" }))
                                .hint(if numeric { "e.g. bins = { age = [0, 18, 30, 50, 120] }" } else { "e.g. bins = { birth_date = [\"1900-01-01\", \"1960-01-01\", \"1980-01-01\", \"2010-01-01\"] }" }),
                        );
                        continue;
                    };
                    if edges.len() < 2
                        || edges.iter().any(|e| !e.is_finite())
                        || edges.windows(2).any(|w| w[0] >= w[1])
                    {
                        push(file.at(
                            span.clone(),
                            format!(
                                "the bins of `{}` must be at least two ascending edges",
                                c.get_ref()
                            ),
                        ));
                        continue;
                    }
                    Domain::Bins(edges)
                }
                (None, Some(values)) if !values.is_empty() => Domain::Values(values.clone()),
                _ => {
                    push(
                        file.at(c.span(), format!("`{}` has no public domain", c.get_ref()))
                            .hint("list its values in the manifest (values = [...]), give a key file here (key_files = { col = \"values.txt\" }) or bins (bins = { col = [0, 10, 20] }); a domain is never read from the data"),
                    );
                    continue;
                }
            };
            columns.push(SynthColumn {
                name: c.get_ref().clone(),
                ty,
                domain,
            });
        }
        let p = t.privacy.get_ref();
        use crate::synth::Measure;
        let (measure, budget, target) = match (p.rho, p.epsilon, p.delta) {
            (Some(rho), None, None) if rho > 0.0 && rho.is_finite() => {
                (Measure::Zcdp, rho, format!("ρ = {rho}"))
            }
            (None, Some(e), None) if e > 0.0 && e.is_finite() => {
                (Measure::Pure, e, format!("ε = {e}"))
            }
            (None, Some(e), Some(d)) if e > 0.0 && e.is_finite() && d > 0.0 && d < 1.0 => (
                Measure::Zcdp,
                crate::synth::rho_for(e, d),
                format!("ε = {e}, δ = {d}"),
            ),
            _ => {
                push(
                    file.at(t.privacy.span(), "a synthetic table's privacy is { epsilon = ε }, { epsilon = ε, delta = δ } or { rho = ρ } (ε > 0, 0 < δ < 1, ρ > 0)")
                        .hint("with ε alone the measurements are Laplace, composed in pure DP; with δ or ρ they are Gaussian, composed in zCDP"),
                );
                (Measure::Zcdp, 0.0, String::new())
            }
        };
        let k = t
            .max_rows_per_subject
            .as_ref()
            .map(|k| *k.get_ref())
            .unwrap_or(1);
        if k == 0 {
            push(file.at(span.clone(), "max_rows_per_subject must be at least 1"));
        }
        if let Some(target) = &t.target {
            if !t.columns.iter().any(|c| c.get_ref() == target.get_ref()) {
                push(
                    file.at(target.span(), format!("the target `{}` is not a column of the table", target.get_ref()))
                        .hint("name one of the table's columns: the model is conditioned on it and the report predicts it"),
                );
            }
        }
        let path = spec::resolve(&r.base, t.path.get_ref());
        let report = match &t.report {
            Some(rp) => spec::resolve(&r.base, rp.get_ref()),
            None => path.with_extension("report.json"),
        };
        r.paths.push(NamedPath::write(
            format!("synthetic table `{name}`"),
            path.clone(),
            Some(t.path.span()),
        ));
        r.paths.push(NamedPath::write(
            format!("the utility report of synthetic table `{name}`"),
            report.clone(),
            Some(t.path.span()),
        ));
        let conditioned_on = t.target.as_ref().and_then(|target| {
            columns
                .iter()
                .find(|c| &c.name == target.get_ref())
                .filter(|c| c.domain.size() <= crate::synth::MAX_HUB_VALUES)
                .map(|c| c.name.clone())
        });
        if ok {
            plans.push(SyntheticPlan {
                name,
                path,
                report,
                columns,
                measure,
                budget,
                target,
                max_rows_per_subject: k,
                rows: t.rows,
                seed: t.seed,
                predict: t.target.as_ref().map(|c| c.get_ref().clone()),
                conditioned_on,
            });
        }
    }
    r.synthetics = Some(plans);
    Ok(())
}

fn explain(plan: &Plan, out: &mut super::Explained) {
    for t in &plan.synthetics {
        if let (Some(target), None) = (&t.predict, &t.conditioned_on) {
            out.warnings.push(format!(
                "synthetic table `{}`: the target `{target}` has more than {} values, so the model is not conditioned on it (a plain tree); the report still predicts it",
                t.name,
                crate::synth::MAX_HUB_VALUES
            ));
        }
        let columns: Vec<String> = t
            .columns
            .iter()
            .map(|c| format!("`{}` ({} values)", c.name, c.domain.size()))
            .collect();
        out.releases.push(format!(
            "synthetic table `{}` → {}: {} from the kept rows, each subject's first {} row(s); {} ({}; OpenDP {} and noisy max){}; utility report for the data owner in {}",
            t.name,
            t.path.display(),
            columns.join(", "),
            t.max_rows_per_subject,
            t.target,
            crate::synth::shares(t.conditioned_on.is_some(), t.columns.len()),
            match t.measure {
                crate::synth::Measure::Zcdp => "Gaussian",
                crate::synth::Measure::Pure => "Laplace",
            },
            match &t.conditioned_on {
                Some(c) => format!("; every measurement conditioned on the target `{c}`"),
                None => String::new(),
            },
            t.report.display()
        ));
    }
}
