//! A release as the plan holds it: its statistics, group keys, contribution bounds, public
//! bounds and privacy target, and the names of the columns it writes. Engine-free: the OpenDP
//! and polars side is in [`super::release`].
//! Depends on: `dp::ledger` (the loss type).

use super::ledger::Loss;

/// A statistic of a release.
#[derive(Debug, Clone, PartialEq)]
pub enum Statistic {
    Count,
    Sum {
        column: String,
        lower: f64,
        upper: f64,
    },
    Mean {
        column: String,
        lower: f64,
        upper: f64,
    },
    Quantile {
        column: String,
        alpha: f64,
        candidates: Vec<f64>,
    },
}

impl Statistic {
    /// The column and clamping bounds of a sum or a mean.
    pub fn clamped(&self) -> Option<(&str, f64, f64)> {
        match self {
            Statistic::Sum {
                column,
                lower,
                upper,
            }
            | Statistic::Mean {
                column,
                lower,
                upper,
            } => Some((column, *lower, *upper)),
            Statistic::Count | Statistic::Quantile { .. } => None,
        }
    }
}

/// Group keys: a public list (every key is released) or private (found in the data).
#[derive(Debug, Clone, PartialEq)]
pub enum Keys {
    /// One row per key tuple, in `group_by` order; `source` says where they came from.
    Public {
        rows: Vec<Vec<String>>,
        source: String,
    },
    Private,
    /// No group_by: one row for all consented rows, nothing about keys is released.
    Whole,
}

/// A release, resolved against the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleasePlan {
    pub name: String,
    pub path: std::path::PathBuf,
    pub group_by: Vec<String>,
    pub keys: Keys,
    pub max_rows_per_group: u32,
    /// Instead: at most this many rows per subject in all (then `max_rows_per_group` and
    /// `max_groups` hold the bounds it implies).
    pub max_rows_per_subject: Option<u32>,
    pub max_groups: u32,
    /// Public bound on the rows the release reads (every group's size, for OpenDP's margin);
    /// none for counts and quantiles, which only need an overflow bound.
    pub max_rows: Option<u32>,
    /// Private keys: public bound on the number of distinct keys (OpenDP's float sums need it).
    pub max_keys: Option<u32>,
    pub target: Loss,
    pub statistics: Vec<Statistic>,
}

/// Output column name of a statistic in the OpenDP frame.
pub fn stat_column(s: &Statistic) -> String {
    match s {
        Statistic::Count => "count".into(),
        Statistic::Sum { column, .. } => format!("{column}_sum"),
        Statistic::Mean { column, .. } => format!("{column}_mean_sum"),
        Statistic::Quantile { column, alpha, .. } => {
            format!("{column}_q{}", (alpha * 100.0).round() as i64)
        }
    }
}

/// Name of a statistic's column in the release file (its half-width is `<name>_ci95`, or
/// `<name>_rank_ci95` for a quantile).
pub fn output_column(s: &Statistic) -> String {
    match s {
        Statistic::Sum { column, .. } => format!("{column}_sum"),
        Statistic::Mean { column, .. } => format!("{column}_mean"),
        Statistic::Count | Statistic::Quantile { .. } => stat_column(s),
    }
}

/// The first column name a release would use twice (in OpenDP's frame or in the release
/// file), if any: group columns, `count`, and each statistic's columns.
pub fn duplicate_column(group_by: &[String], statistics: &[Statistic]) -> Option<String> {
    let mut internal: Vec<String> = group_by.to_vec();
    internal.push("count".into());
    let mut output: Vec<String> = group_by.to_vec();
    for s in statistics {
        let outer = output_column(s);
        if *s == Statistic::Count {
            output.extend([outer.clone(), format!("{outer}_ci95")]);
            continue;
        }
        internal.push(stat_column(s));
        output.push(format!("{outer}_ci95"));
        output.push(format!("{outer}_rank_ci95"));
        output.push(outer);
    }
    let first_repeat = |names: &[String]| {
        names
            .iter()
            .enumerate()
            .find(|(i, n)| names[..*i].contains(n))
            .map(|(_, n)| n.clone())
    };
    first_repeat(&internal).or_else(|| first_repeat(&output))
}

impl ReleasePlan {
    /// The bound on any group's rows OpenDP is given: the public `max_rows`, or the largest it
    /// takes when none is declared.
    pub(crate) fn row_bound(&self) -> u32 {
        self.max_rows.unwrap_or(u32::MAX).max(1)
    }

    /// Numeric columns the release frame must carry.
    pub fn value_columns(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in &self.statistics {
            let c = match s {
                Statistic::Count => continue,
                Statistic::Sum { column, .. }
                | Statistic::Mean { column, .. }
                | Statistic::Quantile { column, .. } => column,
            };
            if !out.contains(c) {
                out.push(c.clone());
            }
        }
        out
    }
}

/// The candidate a missing value counts as in a quantile: the middle one, as OpenDP's sums
/// count a missing value as the middle of the bounds.
pub fn missing_candidate(candidates: &[f64]) -> f64 {
    candidates.get(candidates.len() / 2).copied().unwrap_or(0.0)
}

/// Name of the subject column inside the release frame.
pub const SUBJECT: &str = "__subject";

/// The columns releases and synthetic tables need, as the engine hands them over with the
/// kept rows: [`release_columns`], then each synthetic table's columns as text
/// (`__dps_<column>`), with the keyed subject first in any case.
pub fn collected_columns(
    releases: &[ReleasePlan],
    synthetic: &[String],
    subject_column: &str,
) -> Vec<(String, String, bool)> {
    let mut out = release_columns(releases, subject_column);
    if out.is_empty() && !synthetic.is_empty() {
        out.push((SUBJECT.to_string(), subject_column.to_string(), false));
    }
    for c in synthetic {
        let alias = synthetic_alias(c);
        if !out.iter().any(|(a, _, _)| *a == alias) {
            out.push((alias, c.clone(), false));
        }
    }
    out
}

/// The alias of a release's group column among the collected columns.
pub fn group_alias(column: &str) -> String {
    format!("__dpg_{column}")
}

/// The alias of a release's value column among the collected columns.
pub fn value_alias(column: &str) -> String {
    format!("__dpv_{column}")
}

/// The alias of a synthetic table's column among the collected columns.
pub fn synthetic_alias(column: &str) -> String {
    format!("__dps_{column}")
}

/// The columns releases need, as the engine hands them over with the kept rows:
/// (alias, source column, numeric). The subject comes first, keyed; then each group column
/// (text) and each value column (float), once each.
pub fn release_columns(
    releases: &[ReleasePlan],
    subject_column: &str,
) -> Vec<(String, String, bool)> {
    if releases.is_empty() {
        return Vec::new();
    }
    // The subject as the policy sees it (trimmed), so one person is one privacy unit.
    let mut out = vec![(SUBJECT.to_string(), subject_column.to_string(), false)];
    for r in releases {
        for g in &r.group_by {
            let alias = group_alias(g);
            if !out.iter().any(|(a, _, _)| *a == alias) {
                out.push((alias, g.clone(), false));
            }
        }
        for v in r.value_columns() {
            let alias = value_alias(&v);
            if !out.iter().any(|(a, _, _)| *a == alias) {
                out.push((alias, v.clone(), true));
            }
        }
    }
    out
}
