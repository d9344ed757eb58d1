//! Stage `release`: `[[release]]`, differentially private statistics of the kept rows, and
//! the dataset's budget cap from its manifest. Each release is checked here (keys, contribution
//! bounds, public bounds, the cap's measure); calibration and noise are OpenDP's, in
//! `crate::dp::release`, which the run calls on the rows the sink collected.

use serde::Deserialize;
use toml::Spanned;

use super::{check_nothing, record_nothing, ColumnPlan, Halt, Plan, Resolution, Stage};
use crate::dp::ledger::{compose, Loss};
use crate::dp::plan::{Keys, ReleasePlan, Statistic};
use crate::identity::Action;
use crate::ingest::{ColumnClass, ColumnType, Manifest};
use crate::spec::diag::flag;
use crate::spec::paths::NamedPath;
use crate::spec::{self, Diagnostic, Diagnostics, PipelineFile, PrivacySpec};

pub const STAGE: Stage = Stage {
    name: "release",
    check: check_nothing,
    resolve,
    explain,
    record: record_nothing,
};

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

fn resolve(r: &mut Resolution) -> Result<(), Halt> {
    let file = r.file;
    let diags = &mut r.diags;
    let (Some(super::Source { manifest, .. }), Some(columns)) = (&r.source, &r.columns) else {
        return Err(Halt);
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
    let releases = release_plans(file, &r.base, manifest, columns, budget_cap.as_ref(), diags);
    for rel in &file.spec.release {
        let rel = rel.get_ref();
        if let Some(f) = &rel.key_file {
            r.paths.push(NamedPath::read(
                format!("key file of release `{}`", rel.name.get_ref()),
                spec::resolve(&r.base, f.get_ref()),
                Some(f.span()),
            ));
        }
        r.paths.push(NamedPath::write(
            format!("path of release `{}`", rel.name.get_ref()),
            spec::resolve(&r.base, rel.path.get_ref()),
            Some(rel.path.span()),
        ));
    }
    r.budget_cap = budget_cap;
    r.releases = Some(releases);
    Ok(())
}

/// A privacy target or cap as a loss: exactly ε, (ε, δ) or ρ, all positive.
fn privacy_loss(p: &PrivacySpec) -> Result<Loss, String> {
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

/// Reads a public key list: one key per line, or a CSV whose header names the group columns.
pub(super) fn read_keys(
    path: &std::path::Path,
    group_by: &[String],
) -> Result<Vec<Vec<String>>, String> {
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
    // With a header: the named fields of each line. Without: one key per line, the whole
    // line (a key may hold a comma: "Married, spouse present").
    let positions: Option<Vec<usize>> = if group_by.iter().all(|g| first.contains(g)) {
        lines.next();
        Some(
            group_by
                .iter()
                .map(|g| first.iter().position(|f| f == g).unwrap_or(0))
                .collect(),
        )
    } else if group_by.len() == 1 {
        None
    } else {
        return Err(format!(
            "the header must name the columns {}",
            group_by.join(", ")
        ));
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (i, l) in lines.enumerate() {
        let Some(positions) = &positions else {
            rows.push(vec![l.to_string()]);
            continue;
        };
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

fn explain(plan: &Plan, out: &mut super::Explained) {
    out.releases = explain_releases(plan);
}

/// Each release's query, privacy cost and expected 95% accuracy, from OpenDP, before any
/// data is read.
fn explain_releases(plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    if plan.releases.is_empty() {
        return out;
    }
    if let Some(cap) = &plan.budget_cap {
        out.push(format!(
                "dataset `{}` has a privacy budget cap of {cap}; each run's releases are checked against what earlier runs spent",
                plan.source.manifest.dataset_id()
            ));
    }
    for r in &plan.releases {
        out.push(format!(
            "`{}` → {}: group by [{}], keys {}, {}, target {}",
            r.name,
            r.path.display(),
            r.group_by.join(", "),
            match &r.keys {
                Keys::Public { rows, source } => format!("public ({} from {source})", rows.len()),
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

#[cfg(test)]
mod tests {
    use super::read_keys;

    /// A key list without a header is one key per line, commas and all; with a header naming
    /// the columns, the named fields of each line.
    #[test]
    fn key_lists_read_whole_lines_or_the_named_fields() {
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join("one.txt");
        std::fs::write(&one, "Married, spouse present\nNever married\n\n").unwrap();
        let keys = read_keys(&one, &["status".to_string()]).unwrap();
        assert_eq!(
            keys,
            [vec!["Married, spouse present"], vec!["Never married"]]
        );
        let csv = dir.path().join("keys.csv");
        std::fs::write(&csv, "n,country,region\n1,FR,eu\n2,DE,eu\n").unwrap();
        let keys = read_keys(&csv, &["region".to_string(), "country".to_string()]).unwrap();
        assert_eq!(keys, [vec!["eu", "DE"], vec!["eu", "FR"]]);
        let bad = read_keys(&csv, &["a".to_string(), "b".to_string()]).unwrap_err();
        assert!(bad.contains("header"), "{bad}");
    }
}
