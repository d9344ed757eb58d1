//! The run's DP releases: one ledger transaction spends every release's budget (refused
//! above the cap), then OpenDP computes each release from the kept rows the engine collected,
//! to a temporary file the staged commit renames with the outputs.

use polars::prelude::*;

use super::{RunError, RunOptions};
use crate::dp::release;
use crate::emit::{self, AtomicParquet, ParquetSettings};
use crate::engine::polars::sanitize;
use crate::lineage::record::{MeanHalfWidths, ReleaseRecord};
use crate::plan::Plan;

/// Spends the budget of every release in one ledger transaction, then runs them on the
/// consented rows and writes each to a temporary file next to its target.
pub(super) fn run(
    plan: &Plan,
    opts: &RunOptions,
    run_id: &str,
    prepared: &[release::Prepared],
    parts: Vec<DataFrame>,
) -> Result<Vec<(ReleaseRecord, AtomicParquet)>, RunError> {
    let dp_columns = crate::dp::plan::release_columns(&plan.releases, &plan.policy.subject_column);
    // The consented rows, with the plan's column names.
    let empty = || {
        DataFrame::empty_with_schema(&Schema::from_iter(dp_columns.iter().map(|(a, _, n)| {
            Field::new(
                a.as_str().into(),
                if *n {
                    DataType::Float64
                } else if a == release::SUBJECT {
                    DataType::UInt64
                } else {
                    DataType::String
                },
            )
        })))
    };
    let mut frame = empty();
    let aliases: Vec<PlSmallStr> = dp_columns
        .iter()
        .map(|(a, _, _)| a.as_str().into())
        .collect();
    for part in parts {
        // The parts also hold what synthetic tables need; a release reads its own columns.
        let part = part.select(aliases.iter().cloned()).map_err(|e| {
            RunError::Engine(sanitize(
                &format!("collecting the consented rows: {e}"),
                plan,
            ))
        })?;
        frame.vstack_mut(&part).map_err(|e| {
            RunError::Engine(sanitize(
                &format!("collecting the consented rows: {e}"),
                plan,
            ))
        })?;
    }
    for (alias, source, _) in dp_columns.iter().skip(1) {
        frame.rename(alias, source.as_str().into()).map_err(|e| {
            RunError::Engine(sanitize(
                &format!("collecting the consented rows: {e}"),
                plan,
            ))
        })?;
    }
    // The rows and distinct keys each release reads.
    let mut sizes = Vec::new();
    for r in &plan.releases {
        let keys = if r.max_keys.is_some() {
            frame
                .clone()
                .lazy()
                .group_by(
                    r.group_by
                        .iter()
                        .map(|g| col(g.as_str()))
                        .collect::<Vec<_>>(),
                )
                .agg([len()])
                .collect()
                .map_err(|e| {
                    RunError::Engine(sanitize(&format!("release `{}`: {e}", r.name), plan))
                })?
                .height() as u64
        } else {
            0
        };
        sizes.push((frame.height() as u64, keys));
    }
    check_bounds(plan, &sizes)?;
    spend(plan, opts, run_id, prepared)?;
    let mut files = Vec::new();
    for (r, p) in plan.releases.iter().zip(prepared) {
        let mut keep: Vec<PlSmallStr> = vec![release::SUBJECT.into()];
        keep.extend(r.group_by.iter().map(|g| PlSmallStr::from(g.as_str())));
        keep.extend(
            r.value_columns()
                .iter()
                .map(|v| PlSmallStr::from(v.as_str())),
        );
        let input = frame
            .select(keep)
            .map_err(|e| RunError::Engine(sanitize(&format!("release `{}`: {e}", r.name), plan)))?;
        let table = p.run(r, input.lazy())?;
        files.push(write_release(plan, run_id, r, p, &table)?);
    }
    Ok(files)
}

/// The noise of sums was fixed for at most `max_rows` rows and the keys' for at most
/// `max_keys` keys: more would void the guarantee. `sizes` are each release's rows and
/// distinct keys (0 when it declares no `max_keys`). Checked before any budget is spent or
/// anything released.
pub(super) fn check_bounds(plan: &Plan, sizes: &[(u64, u64)]) -> Result<(), RunError> {
    for (r, (rows, keys)) in plan.releases.iter().zip(sizes) {
        if let Some(max_rows) = r.max_rows.filter(|m| *rows > u64::from(*m)) {
            return Err(RunError::ReleaseBound(format!(
                "release `{}`: the consented rows are more than its public bound max_rows = {max_rows}; nothing was spent or released\n  = hint: raise max_rows in the release (it is public and fixed before the data is read, so set it above any size the dataset can reach)",
                r.name
            )));
        }
        if let Some(max_keys) = r.max_keys.filter(|m| *keys > u64::from(*m)) {
            return Err(RunError::ReleaseBound(format!(
                "release `{}`: the consented rows have more distinct keys than its public bound max_keys = {max_keys}; nothing was spent or released\n  = hint: raise max_keys in the release (it is public: set it from what the column can hold, not from the data)",
                r.name
            )));
        }
    }
    Ok(())
}

/// Spends every release's budget in one ledger transaction, refused above the dataset's cap.
pub(super) fn spend(
    plan: &Plan,
    opts: &RunOptions,
    run_id: &str,
    prepared: &[release::Prepared],
) -> Result<(), RunError> {
    use crate::dp::ledger::{Ledger, SpendRequest};
    let dataset = plan.source.manifest.dataset_id().to_string();
    let requests: Vec<SpendRequest> = plan
        .releases
        .iter()
        .zip(prepared)
        .map(|(r, p)| SpendRequest {
            release: r.name.clone(),
            loss: p.calibrated.spend,
        })
        .collect();
    // Without a cap the ledger still records every spend; nothing is refused.
    let mut ledger = Ledger::open(&opts.lineage_db)?;
    ledger.spend(
        &dataset,
        &plan.policy.subject_column,
        run_id,
        plan.budget_cap.as_ref(),
        &requests,
    )?;
    Ok(())
}

/// Writes a release's table to a temporary file beside its target, with its record.
pub(super) fn write_release(
    plan: &Plan,
    run_id: &str,
    r: &release::ReleasePlan,
    p: &release::Prepared,
    table: &DataFrame,
) -> Result<(ReleaseRecord, AtomicParquet), RunError> {
    use crate::dp::ledger::Loss;
    let dataset = plan.source.manifest.dataset_id().to_string();
    let unit = plan.policy.subject_column.clone();
    let schema = emit::arrow_schema(table.schema())?;
    let (e, d, rho) = match p.calibrated.spend {
        Loss::Pure { epsilon } => (epsilon, 0.0, 0.0),
        Loss::Approx { epsilon, delta } => (epsilon, delta, 0.0),
        Loss::Zcdp { rho } => (0.0, 0.0, rho),
    };
    let mut rec = ReleaseRecord {
        name: r.name.clone(),
        path: r.path.display().to_string(),
        sha256: String::new(),
        rows: table.height() as u64,
        dataset_id: dataset.clone(),
        privacy_unit: unit.clone(),
        group_by: r.group_by.clone(),
        key_source: match &r.keys {
            release::Keys::Public { source, rows } => {
                format!("public: {} keys from {source}", rows.len())
            }
            release::Keys::Private => format!(
                "private: groups released when their noisy count exceeds {}",
                p.calibrated.threshold.unwrap_or(0)
            ),
            release::Keys::Whole => "none (no group_by)".into(),
        },
        max_rows_per_group: r.max_rows_per_group,
        max_groups: r.max_groups,
        max_rows_per_subject: r.max_rows_per_subject,
        max_rows: r.max_rows,
        max_keys: r.max_keys,
        statistics: r.statistics.iter().map(describe_statistic).collect(),
        measure: p.calibrated.spend.kind(),
        target: r.target.to_string(),
        epsilon: e,
        delta: d,
        rho,
        global_scale: p.calibrated.global_scale,
        threshold: p.calibrated.threshold,
        noise: p.calibrated.noise.clone(),
        rank_ci95: p.calibrated.rank_ci95.clone(),
        mean_ci95: mean_half_widths(r, table),
    };
    let settings = ParquetSettings {
        row_group_size: 65_536,
        lineage_json: Some(
            serde_json::json!({
                "run_id": run_id,
                "privprep_version": env!("CARGO_PKG_VERSION"),
                "release": &rec,
            })
            .to_string(),
        ),
        // A release is differentially private already; it stays readable by any reader.
        encryption: None,
        plain_columns: Vec::new(),
    };
    let mut w = AtomicParquet::create(&r.path, run_id, schema.clone(), &settings)?;
    w.write(&emit::to_record_batch(table, &schema)?)?;
    rec.sha256 = w.finish()?;
    Ok((rec, w))
}

/// Each mean's smallest and largest half-width over the released rows (post-processing of
/// the noisy counts, so nothing beyond the release itself).
fn mean_half_widths(r: &release::ReleasePlan, table: &DataFrame) -> Vec<MeanHalfWidths> {
    r.statistics
        .iter()
        .filter_map(|s| match s {
            release::Statistic::Mean { .. } => {
                let name = release::output_column(s);
                let ci = table
                    .column(&format!("{name}_ci95"))
                    .ok()?
                    .f64()
                    .ok()?
                    .clone();
                Some(MeanHalfWidths {
                    min: ci.min()?,
                    max: ci.max()?,
                    column: name,
                })
            }
            _ => None,
        })
        .collect()
}

/// A statistic in words, with its bounds or candidates.
fn describe_statistic(s: &release::Statistic) -> String {
    match s {
        release::Statistic::Count => "count".into(),
        release::Statistic::Sum {
            column,
            lower,
            upper,
        } => format!("sum({column}) clamped to [{lower}, {upper}], a missing value counts as {}", (lower + upper) / 2.0),
        release::Statistic::Mean {
            column,
            lower,
            upper,
        } => format!("mean({column}) clamped to [{lower}, {upper}] (noisy sum / noisy count), a missing value counts as {}", (lower + upper) / 2.0),
        release::Statistic::Quantile {
            column,
            alpha,
            candidates,
        } => format!(
            "quantile({column}, {alpha}) over {} candidates from {} to {}, a missing value counts as {}",
            candidates.len(),
            candidates.first().unwrap_or(&0.0),
            candidates.last().unwrap_or(&0.0),
            release::missing_candidate(candidates)
        ),
    }
}
