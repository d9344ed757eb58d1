//! The risk stage on polars: k-anonymity.
//!
//! The class sizes must be known before any row is written, and the rows must not be held in
//! memory to learn them. So a first streaming pass runs the same lowered plan, keeps the rows
//! the policy (and the text stage's `drop_row`) kept, and aggregates them by class: polars'
//! streaming group-by holds one count per class (and one distinct-value count per sensitive
//! column), never the rows; projection pushdown leaves out every output the count does not
//! need (the redaction of free text, the identifier keys). The classes smaller than k become a
//! set of 64-bit class keys (`privprep_kernels::risk`), and the main pass's status drops the
//! rows whose class key is in it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use polars::prelude::*;
use privprep_kernels::risk::{class_key, NULL, SEPARATOR};

use super::adapter::map_str;
use crate::lineage::record::RiskRecord;
use crate::policy::{DropReason, KEPT, STATUS};
use crate::stages::risk::{RiskAction, RiskPlan};

/// The classes below k (their keys) and what the run records.
pub struct Classes {
    pub small: Arc<HashSet<u64>>,
    pub record: RiskRecord,
}

/// The class name of each row: its quasi-identifier output values, joined.
fn class_name(plan: &RiskPlan) -> Expr {
    let parts: Vec<Expr> = plan
        .quasi_identifiers
        .iter()
        .map(|q| col(q.as_str()).cast(DataType::String).fill_null(lit(NULL)))
        .collect();
    concat_str(parts, SEPARATOR, false)
}

/// The first pass: class sizes (and distinct sensitive values) of the kept rows of `lf`.
pub fn count_classes(lf: LazyFrame, plan: &RiskPlan) -> PolarsResult<Classes> {
    let mut select = vec![class_name(plan).alias("__class")];
    let mut aggs = vec![len().alias("__n")];
    for (i, s) in plan.sensitive.iter().enumerate() {
        select.push(col(s.as_str()).alias(format!("__s{i}")));
        aggs.push(
            col(format!("__s{i}"))
                .drop_nulls()
                .n_unique()
                .alias(format!("__l{i}")),
        );
    }
    let df = lf
        .filter(col(STATUS).eq(lit(KEPT as i32)))
        .select(select)
        .group_by([col("__class")])
        .agg(aggs)
        .with_new_streaming(true)
        .collect_with_engine(Engine::Streaming)?;
    let names = df.column("__class")?.str()?.clone();
    let sizes = df.column("__n")?.cast(&DataType::UInt64)?;
    let sizes = sizes.u64()?;
    let mut distinct = Vec::new();
    for i in 0..plan.sensitive.len() {
        distinct.push(df.column(&format!("__l{i}"))?.cast(&DataType::UInt64)?);
    }
    let mut small = HashSet::new();
    let (mut rows_below, mut k_reached) = (0u64, None::<u64>);
    let mut l: Vec<Option<u64>> = vec![None; plan.sensitive.len()];
    let k = u64::from(plan.k);
    for row in 0..df.height() {
        let n = sizes.get(row).unwrap_or(0);
        let below = n < k;
        if below {
            small.insert(class_key(names.get(row).unwrap_or("")));
            rows_below += n;
        }
        // The classes that are written: all of them when reporting, the large ones otherwise.
        if below && plan.action == RiskAction::Suppress {
            continue;
        }
        k_reached = Some(k_reached.map_or(n, |m| m.min(n)));
        for (i, d) in distinct.iter().enumerate() {
            let v = d.u64()?.get(row).unwrap_or(0);
            l[i] = Some(l[i].map_or(v, |m| m.min(v)));
        }
    }
    let record = RiskRecord {
        quasi_identifiers: plan.quasi_identifiers.clone(),
        k: plan.k,
        action: plan.action.as_str().into(),
        classes: df.height() as u64,
        classes_below_k: small.len() as u64,
        rows_below_k: rows_below,
        k_reached: k_reached.unwrap_or(0),
        l_diversity: plan
            .sensitive
            .iter()
            .zip(l)
            .map(|(s, v)| (s.clone(), v.unwrap_or(0)))
            .collect::<BTreeMap<_, _>>(),
    };
    Ok(Classes {
        small: Arc::new(small),
        record,
    })
}

/// The main pass's status: kept rows of a class below k are dropped as `k_anonymity`.
pub fn suppress(plan: &RiskPlan, small: Arc<HashSet<u64>>) -> Expr {
    let in_small = map_str::<BooleanType, _>(class_name(plan), vec![], move |s, out| {
        for v in s.values() {
            out.append_value(v.is_some_and(|v| small.contains(&class_key(v))));
        }
        Ok(())
    });
    when(col(STATUS).eq(lit(KEPT as i32)).and(in_small))
        .then(lit(DropReason::KAnonymity.code() as i32))
        .otherwise(col(STATUS))
        .cast(DataType::Int32)
        .alias(STATUS)
}
