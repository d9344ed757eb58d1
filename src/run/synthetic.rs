//! The run's DP synthetic tables: each table's columns are coded over their public domains,
//! each subject bounded to its rows, the measurements calibrated (no data read), the spend
//! committed to the ledger under the cap, and only then measured, fitted and sampled
//! (`crate::synth`). The table and its utility report (for the data owner: it is computed on
//! the real rows) go to temporary files the staged commit renames with the outputs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType as ArrowType, Field, Schema, TimeUnit as ArrowTimeUnit};
use polars::prelude::*;

use super::commit::StagedCommit;
use super::{RunError, RunOptions};
use crate::dp::plan::{synthetic_alias, SUBJECT};
use crate::emit::{AtomicParquet, ParquetSettings};
use crate::engine::polars::sanitize;
use crate::ingest::ColumnType;
use crate::lineage::record::SyntheticRecord;
use crate::plan::Plan;
use crate::stages::synthetic::{bin_value, Domain, SyntheticPlan};
use crate::synth;

/// Makes every synthetic table of the plan from the collected kept rows.
pub(super) fn run(
    plan: &Plan,
    opts: &RunOptions,
    run_id: &str,
    parts: &[DataFrame],
    staged: &mut StagedCommit,
) -> Result<Vec<SyntheticRecord>, RunError> {
    let mut out = Vec::new();
    for t in &plan.synthetics {
        out.push(table(plan, opts, run_id, t, parts, staged)?);
    }
    Ok(out)
}

fn failed(plan: &Plan, t: &SyntheticPlan, e: impl std::fmt::Display) -> RunError {
    RunError::Engine(sanitize(
        &format!("synthetic table `{}`: {e}", t.name),
        plan,
    ))
}

/// The coded rows of `t` (subject key, codes), and per column how many values were outside
/// the domain (clamped into a bin, or, for listed values, left out with their row).
type Coded = (Vec<(u64, Vec<u32>)>, BTreeMap<String, u64>);

fn code(plan: &Plan, t: &SyntheticPlan, parts: &[DataFrame]) -> Result<Coded, RunError> {
    let mut rows = Vec::new();
    let mut outside: BTreeMap<String, u64> = BTreeMap::new();
    let index: Vec<Option<HashMap<&str, u32>>> = t
        .columns
        .iter()
        .map(|c| match &c.domain {
            Domain::Values(v) => Some(
                v.iter()
                    .enumerate()
                    .map(|(i, s)| (s.as_str(), i as u32))
                    .collect(),
            ),
            Domain::Bins(_) => None,
        })
        .collect();
    for part in parts {
        let subjects = part
            .column(SUBJECT)
            .and_then(|c| c.u64().cloned())
            .map_err(|e| failed(plan, t, e))?;
        let mut columns = Vec::new();
        for c in &t.columns {
            let s = part
                .column(&synthetic_alias(&c.name))
                .and_then(|c| c.str().cloned())
                .map_err(|e| failed(plan, t, e))?;
            columns.push(s);
        }
        'row: for r in 0..part.height() {
            let Some(subject) = subjects.get(r) else {
                continue;
            };
            let mut codes = Vec::with_capacity(t.columns.len());
            for (i, c) in t.columns.iter().enumerate() {
                let value = columns[i].get(r);
                let coded = match (&c.domain, value) {
                    (Domain::Values(_), Some(v)) => {
                        index[i].as_ref().and_then(|m| m.get(v.trim()).copied())
                    }
                    (Domain::Bins(edges), Some(v)) => bin_value(c.ty, v).map(|x| {
                        let bins = edges.len() - 1;
                        if x < edges[0] || x > edges[bins] {
                            *outside.entry(c.name.clone()).or_default() += 1;
                        }
                        let i = edges.partition_point(|e| *e <= x);
                        (i.saturating_sub(1)).min(bins - 1) as u32
                    }),
                    (_, None) => None,
                };
                match coded {
                    Some(k) => codes.push(k),
                    None => {
                        *outside.entry(c.name.clone()).or_default() += 1;
                        continue 'row;
                    }
                }
            }
            rows.push((subject, codes));
        }
    }
    Ok((rows, outside))
}

fn table(
    plan: &Plan,
    opts: &RunOptions,
    run_id: &str,
    t: &SyntheticPlan,
    parts: &[DataFrame],
    staged: &mut StagedCommit,
) -> Result<SyntheticRecord, RunError> {
    use crate::dp::ledger::{Ledger, Loss, SpendRequest};
    let domains: Vec<usize> = t.columns.iter().map(|c| c.domain.size()).collect();
    let k = t.max_rows_per_subject;
    // Calibration needs no data: the spend is known, and committed, before any measurement.
    let hub = t
        .conditioned_on
        .as_ref()
        .and_then(|p| t.columns.iter().position(|c| &c.name == p));
    let cal =
        synth::calibrate(&domains, hub, t.measure, t.budget, k).map_err(|e| failed(plan, t, e))?;
    let dataset = plan.source.manifest.dataset_id().to_string();
    let unit = plan.policy.subject_column.clone();
    let mut ledger = Ledger::open(&opts.lineage_db)?;
    ledger.spend(
        &dataset,
        &unit,
        run_id,
        plan.budget_cap.as_ref(),
        &[SpendRequest {
            release: t.name.clone(),
            loss: match cal.measure {
                synth::Measure::Zcdp => Loss::Zcdp { rho: cal.loss },
                synth::Measure::Pure => Loss::Pure { epsilon: cal.loss },
            },
        }],
    )?;

    let (coded, outside) = code(plan, t, parts)?;
    let rows = synth::bound_rows(&coded, k);
    let model = synth::fit(&rows, &domains, &cal, k).map_err(|e| failed(plan, t, e))?;
    let n = t
        .rows
        .map(|r| r as usize)
        .unwrap_or(model.noisy_rows.round().max(0.0) as usize);
    let seed = t.seed.unwrap_or_else(rand::random);
    let sampled = synth::sample(&model, n, seed);

    // The table, typed as the dataset's columns.
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (i, c) in t.columns.iter().enumerate() {
        let codes = sampled.iter().map(|r| r[i] as usize);
        let (ty, array): (ArrowType, ArrayRef) = match (&c.domain, c.ty) {
            (Domain::Bins(e), ColumnType::Int64) => (
                ArrowType::Int64,
                Arc::new(Int64Array::from_iter_values(
                    codes.map(|b| ((e[b] + e[b + 1]) / 2.0).floor() as i64),
                )),
            ),
            (Domain::Bins(e), ColumnType::Date) => (
                ArrowType::Date32,
                Arc::new(Date32Array::from_iter_values(
                    codes.map(|b| ((e[b] + e[b + 1]) / 2.0).floor() as i32),
                )),
            ),
            (Domain::Bins(e), ColumnType::Datetime) => (
                ArrowType::Timestamp(ArrowTimeUnit::Microsecond, None),
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    codes.map(|b| ((e[b] + e[b + 1]) / 2.0).floor() as i64),
                )),
            ),
            (Domain::Bins(e), _) => (
                ArrowType::Float64,
                Arc::new(Float64Array::from_iter_values(
                    codes.map(|b| (e[b] + e[b + 1]) / 2.0),
                )),
            ),
            (Domain::Values(v), ColumnType::Int64) => (
                ArrowType::Int64,
                Arc::new(Int64Array::from_iter(
                    codes.map(|b| v[b].trim().parse::<i64>().ok()),
                )),
            ),
            (Domain::Values(v), ColumnType::Float64) => (
                ArrowType::Float64,
                Arc::new(Float64Array::from_iter(
                    codes.map(|b| v[b].trim().parse::<f64>().ok()),
                )),
            ),
            (Domain::Values(v), _) => (
                ArrowType::Utf8,
                Arc::new(StringArray::from_iter_values(codes.map(|b| v[b].clone()))),
            ),
        };
        fields.push(Field::new(&c.name, ty, true));
        arrays.push(array);
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(|e| failed(plan, t, e))?;
    let names: Vec<String> = t.columns.iter().map(|c| c.name.clone()).collect();
    let edges: Vec<(String, String)> = model
        .arcs()
        .iter()
        .map(|(p, c)| (names[*p].clone(), names[*c].clone()))
        .collect();
    let mut record = SyntheticRecord {
        name: t.name.clone(),
        path: t.path.display().to_string(),
        sha256: String::new(),
        rows: n as u64,
        dataset_id: dataset,
        privacy_unit: unit,
        max_rows_per_subject: k,
        columns: names.clone(),
        domain_sizes: domains.iter().map(|d| *d as u64).collect(),
        method: model.method().into(),
        edges,
        measurements: model.measurements.clone(),
        target: t.target.clone(),
        // Pure ε-DP implies (ε²/2)-zCDP.
        rho: match cal.measure {
            synth::Measure::Zcdp => cal.loss,
            synth::Measure::Pure => cal.loss * cal.loss / 2.0,
        },
        epsilon: (cal.measure == synth::Measure::Pure).then_some(cal.loss),
        seed,
        report: t.report.display().to_string(),
    };
    let settings = ParquetSettings {
        row_group_size: 65_536,
        lineage_json: Some(
            serde_json::json!({
                "privprep_output": "synthetic",
                "run_id": run_id,
                "privprep_version": env!("CARGO_PKG_VERSION"),
                "synthetic": &record,
            })
            .to_string(),
        ),
        encryption: None,
        plain_columns: Vec::new(),
    };
    let mut w = AtomicParquet::create(&t.path, run_id, schema, &settings)?;
    w.write(&batch)?;
    let sha = w.finish()?;
    record.sha256 = sha.clone();
    staged.add_parquet(w, sha);

    // The utility report: computed on the real rows, so it is for the data owner only.
    let (one_way, mean_two_way) = synth::utility(&rows, &sampled, &domains);
    let tstr = t.predict.as_ref().and_then(|target| {
        let i = names.iter().position(|n| n == target)?;
        Some(serde_json::json!({
            "target": target,
            "trained_on": "the synthetic rows; accuracy on the real rows",
            "naive_bayes_accuracy": synth::naive_bayes_accuracy(&sampled, &rows, i, &domains),
            "logistic_regression_accuracy": synth::logistic_accuracy(&sampled, &rows, i, &domains),
            "majority_class": majority(&rows, i, domains[i]),
        }))
    });
    let report = serde_json::json!({
        "for_data_owner": "computed on the real rows: it is for the data owner, and is never part of the released table",
        "synthetic_table": t.path.display().to_string(),
        "run_id": run_id,
        "rows_real": rows.len(),
        "rows_synthetic": n,
        "tv_1way": names.iter().zip(&one_way).map(|(c, v)| (c.clone(), *v)).collect::<BTreeMap<_, _>>(),
        "mean_tv_2way": mean_two_way,
        "values_outside_the_domain": outside,
        "tree": record.edges,
        "train_on_synthetic_test_on_real": tstr,
    });
    staged.add_bytes(
        &t.report,
        run_id,
        serde_json::to_string_pretty(&report)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    Ok(record)
}

/// The share of the most frequent value of column `i`: the accuracy of always guessing it.
fn majority(rows: &[Vec<u32>], i: usize, n: usize) -> f64 {
    let c = synth::one_way(rows, i, n);
    c.iter().copied().max().unwrap_or(0) as f64 / rows.len().max(1) as f64
}
