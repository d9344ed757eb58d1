//! The policy stage on polars: the `__status` column, each row's first failed rule as a code
//! (0 kept, 1 quarantined, then the drop reasons), so accounting is a count by status.
//! The predicates are the kernels' (`privprep_kernels::policy`), walked by the one adapter.

use polars::prelude::*;

use super::adapter::map_str;
use crate::engine::Erased;
use crate::policy::{
    one_of, purposes_include, DropReason, PolicyPlan, Provenance, KEPT, QUARANTINED, STATUS,
};

/// A boolean expression from a per-value predicate over a string column; nulls give false.
fn str_predicate(expr: Expr, f: impl Fn(&str) -> bool + Send + Sync + 'static) -> Expr {
    map_str::<BooleanType, _>(expr, vec![], move |s, out| {
        s.values().for_each(|v| out.append_value(v.is_some_and(&f)));
        Ok(())
    })
}

/// The `__status` expression. Needs the typed columns and `__badcol`. `erased` is the store's
/// erasure list with the subject index's hasher: a row whose subject's key is on it is dropped
/// as `erased`.
pub fn status_expr(plan: &PolicyPlan, badcol: &str, erased: Option<&Erased>) -> Expr {
    let revoked = plan.revoked_ids();
    let subject = col(plan.subject_column.as_str());
    // Null or blank (read without a trimmed copy of the column).
    let missing_subject = subject
        .clone()
        .is_null()
        .or(str_predicate(subject.clone(), |v| {
            !privprep_kernels::parse::is_present(v)
        }));
    let is_erased = match erased {
        Some(e) if !e.keys.is_empty() => {
            let (hasher, keys) = (e.hasher.clone(), e.keys.clone());
            str_predicate(subject.clone(), move |v| {
                hasher.key(v).is_some_and(|k| keys.contains(&k))
            })
        }
        _ => lit(false),
    };
    let is_revoked = str_predicate(subject, move |v| {
        revoked.contains(privprep_kernels::parse::trim(v))
    });
    let status = plan.allowed_status.clone();
    // Consent by column, or for the whole dataset (then a constant).
    let bad_status = match &plan.status_column {
        Some(c) => str_predicate(col(c.as_str()), move |v| one_of(v, &status)).not(),
        None => lit(plan.dataset_consent.is_none()),
    };
    let (sep, purpose) = (plan.purpose_separator.clone(), plan.purpose.clone());
    let bad_purpose = match (&plan.purposes_column, &plan.dataset_consent) {
        (Some(c), _) => str_predicate(col(c.as_str()), move |v| {
            purposes_include(v, &sep, &purpose)
        })
        .not(),
        (None, Some(d)) => lit(!d.purposes.iter().any(|p| p == &plan.purpose)),
        (None, None) => lit(true),
    };
    let bad_provenance = match &plan.provenance {
        Provenance::Column(c) => {
            let allowed = plan.allowed_provenance.clone();
            str_predicate(col(c.as_str()), move |v| one_of(v, &allowed)).not()
        }
        Provenance::Tag(t) => lit(!one_of(t, &plan.allowed_provenance)),
    };
    let bad_retention = retention_expr(plan)
        .map(|ok| ok.fill_null(lit(false)).not())
        .unwrap_or(lit(false));
    let checks = [
        (col(badcol).is_not_null(), QUARANTINED),
        (missing_subject, DropReason::MissingSubject.code()),
        (is_erased, DropReason::Erased.code()),
        (is_revoked, DropReason::Revoked.code()),
        (bad_status, DropReason::ConsentStatus.code()),
        (bad_purpose, DropReason::ConsentPurpose.code()),
        (bad_provenance, DropReason::Provenance.code()),
        (bad_retention, DropReason::Retention.code()),
    ];
    checks
        .into_iter()
        .rev()
        .fold(lit(KEPT as i32), |acc, (cond, code)| {
            when(cond).then(lit(code as i32)).otherwise(acc)
        })
        .cast(DataType::Int32)
        .alias(STATUS)
}

/// Inclusive window `[as_of - retention_days, as_of]` (whole days) on the timestamp.
fn retention_expr(plan: &PolicyPlan) -> Option<Expr> {
    let days = plan.retention_days? as i64;
    let (name, is_datetime) = plan.timestamp.as_ref()?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
    let end_day = (plan.as_of - epoch).num_days() + 1; // exclusive
    let start_day = end_day - 1 - days;
    Some(if *is_datetime {
        let us = 86_400_000_000i64;
        let v = col(name.as_str()).cast(DataType::Int64);
        v.clone()
            .gt_eq(lit(start_day * us))
            .and(v.lt(lit(end_day * us)))
    } else {
        let v = col(name.as_str()).cast(DataType::Int32);
        v.clone()
            .gt_eq(lit(start_day as i32))
            .and(v.lt(lit(end_day as i32)))
    })
}
