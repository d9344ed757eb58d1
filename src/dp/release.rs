//! One differentially private release on OpenDP's polars front: plan, calibration, accuracy,
//! and the released table.
//!
//! The consented rows arrive as a frame with the subject column (the privacy unit), the group
//! columns and the numeric columns the statistics need. The plan truncates each subject's
//! contribution (at most `max_rows_per_group` rows per group, at most `max_groups` groups,
//! written exactly as OpenDP's stability analysis recognises them), groups, and adds noise
//! through OpenDP's `dp()` expressions; public keys are right-joined so every key appears.
//! The global noise scale (and, for private keys, the threshold) is found by binary search
//! over OpenDP's own privacy map until the target is met. All noise comes from OpenDP.

use opendp::accuracy::polars::summarize_polars_measurement;
use opendp::core::Measure;
use opendp::domains::{AtomDomain, LazyFrameDomain, Margin, OptionDomain, SeriesDomain};
use opendp::measurements::PrivateDslPlan;
use opendp::measures::{Approximate, MaxDivergence, ZeroConcentratedDivergence};
use opendp::metrics::SymmetricIdDistance;
use opendp::polars::{dp_len, OnceFrame, PrivacyNamespace};
use polars::prelude::DslPlan;
use polars::prelude::*;

use super::ledger::Loss;
pub use super::plan::{
    duplicate_column, missing_candidate, output_column, stat_column, Keys, ReleasePlan, Statistic,
};
use crate::lineage::record::{NoiseRecord, RankBound};

pub use super::plan::SUBJECT;

/// What OpenDP says about a calibrated release.
#[derive(Debug, Clone)]
pub struct Calibrated {
    /// Global noise scale multiplier passed to OpenDP.
    pub global_scale: f64,
    /// Threshold on the noisy count (private keys).
    pub threshold: Option<u32>,
    /// The privacy map at d_in = 1 subject, in the target's measure.
    pub spend: Loss,
    /// Per OpenDP output column: noise distribution, scale, 95% half-width.
    pub noise: Vec<NoiseRecord>,
    /// Per quantile column: the 95% bound on its error in rows (see [`quantile_rank_error`]).
    pub rank_ci95: Vec<RankBound>,
}

impl Calibrated {
    /// The 97.5% half-width of one noisy OpenDP column.
    fn half_width_975(&self, column: &str) -> Option<f64> {
        self.noise
            .iter()
            .find(|n| n.column == column)
            .and_then(|n| half_width(&n.distribution, n.scale, 0.025))
    }

    /// The 95% half-width of a mean released as noisy sum / noisy count, for a group whose
    /// noisy count is `count`. With each part within its 97.5% half-width (both at once with
    /// at least 95%, by the union bound), the error S/K − μ = (e_s − μ·e_k)/K is at most
    /// (a_sum + max(|L|, |U|)·a_count) / (count − a_count), and never more than the width of
    /// the bounds.
    pub fn mean_half_width(&self, sum_column: &str, lower: f64, upper: f64, count: f64) -> f64 {
        match (
            self.half_width_975(sum_column),
            self.half_width_975("count"),
        ) {
            (Some(sa), Some(ca)) if count - ca >= 1.0 => {
                ((sa + lower.abs().max(upper.abs()) * ca) / (count - ca)).min(upper - lower)
            }
            _ => upper - lower,
        }
    }
}

/// Why a release could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("release `{release}`: OpenDP refused the plan: {message}\n  = hint: {hint}")]
    Build {
        release: String,
        message: String,
        hint: String,
    },
    #[error("release `{release}`: no noise scale meets the target {target}: {message}\n  = hint: raise ε/ρ, or tighten the bounds and contribution limits")]
    Calibrate {
        release: String,
        target: Loss,
        message: String,
    },
    #[error("release `{release}`: {message}")]
    Run { release: String, message: String },
}

/// The half-width at confidence 1 − `alpha` of OpenDP noise of this distribution and scale.
pub fn half_width(distribution: &str, scale: f64, alpha: f64) -> Option<f64> {
    use opendp::accuracy::*;
    let r = match distribution {
        "Integer Laplace" => discrete_laplacian_scale_to_accuracy(scale, alpha),
        "Float Laplace" => laplacian_scale_to_accuracy(scale, alpha),
        "Integer Gaussian" => discrete_gaussian_scale_to_accuracy(scale, alpha),
        "Float Gaussian" => gaussian_scale_to_accuracy(scale, alpha),
        _ => return None,
    };
    r.ok()
}

/// The error, in rows, of an OpenDP quantile released with noise `scale` on its scores: with
/// probability at least 95% the released candidate's rank is within this many rows of the
/// α-quantile's rank, beyond the distance of the nearest candidate.
///
/// OpenDP scores candidate c as α_den·|(1−α)·#(x < c) − α·#(x > c)|, which is α_den times the
/// rows between c and the quantile's position. Report-noisy-min (exponential or Gumbel noise
/// of scale b) picks a candidate whose score exceeds the best by more than t with probability
/// at most |C|·e^(−t/b), so t = b·ln(|C|/0.05). α_den is OpenDP's: the exact denominator of α
/// when it is below u64::MAX / max_rows, else u64::MAX / max_rows.
pub fn quantile_rank_error(scale: f64, alpha: f64, candidates: usize, max_rows: u32) -> f64 {
    let approx = (u64::MAX / u64::from(max_rows.max(1))) as f64;
    // α as an exact binary fraction: its denominator is the power of two that makes it whole.
    let mut den = 1.0f64;
    let mut a = alpha;
    while a.fract() != 0.0 && den < approx {
        a *= 2.0;
        den *= 2.0;
    }
    let den = den.min(approx);
    scale * (candidates.max(1) as f64 / 0.05).ln() / den
}

fn msg(e: &opendp::error::Error) -> String {
    if e.message.as_deref().unwrap_or("").is_empty() {
        format!("{:?}", e.variant)
    } else {
        e.message.clone().unwrap_or_default()
    }
}

impl ReleasePlan {
    /// The input domain: subject key, group keys as text, values as floats; the public
    /// `max_rows` bounds the rows of any group.
    fn domain(&self) -> opendp::error::Fallible<LazyFrameDomain> {
        let mut series = vec![SeriesDomain::new(SUBJECT, AtomDomain::<u64>::default())];
        for g in &self.group_by {
            series.push(SeriesDomain::new(
                g.as_str(),
                OptionDomain::new(AtomDomain::<String>::default()),
            ));
        }
        for v in self.value_columns() {
            series.push(SeriesDomain::new(
                v.as_str(),
                OptionDomain::new(AtomDomain::<f64>::default()),
            ));
        }
        let margin = Margin::by(
            self.group_by
                .iter()
                .map(|g| col(g.as_str()))
                .collect::<Vec<_>>(),
        )
        .with_max_length(self.row_bound());
        let margin = match self.max_keys {
            Some(k) => margin.with_max_groups(k.max(1)),
            None => margin,
        };
        LazyFrameDomain::new(series)?.with_margin(margin)
    }

    /// At most `max_rows_per_group` rows per subject and group, in at most `max_groups`
    /// groups per subject, written as OpenDP's stability analysis recognises them.
    fn per_group_truncation(&self, keys: &[Expr]) -> Expr {
        let mut per_group_by = vec![col(SUBJECT)];
        per_group_by.extend(keys.iter().cloned());
        let mut truncate = enumerate()
            .over(per_group_by)
            .lt(lit(self.max_rows_per_group as i64));
        if !keys.is_empty() {
            // The group of a row: its key, or the struct of its keys (which OpenDP reads as the
            // set of those columns).
            let group = if keys.len() == 1 {
                keys[0].clone()
            } else {
                as_struct(keys.to_vec())
            };
            // Polars ranks start at 1: `< g + 1` keeps g groups per subject.
            truncate = truncate.and(
                group
                    .rank(
                        RankOptions {
                            method: RankMethod::Dense,
                            descending: false,
                        },
                        None,
                    )
                    .over([col(SUBJECT)])
                    .lt(lit(self.max_groups as i64 + 1)),
            );
        }
        truncate
    }

    /// The plan OpenDP analyses: truncation, group-by with noisy statistics, key join.
    fn plan(&self, schema: &Schema) -> LazyFrame {
        let keys: Vec<Expr> = self.group_by.iter().map(|g| col(g.as_str())).collect();
        let truncate = match self.max_rows_per_subject {
            // One window over the subject: OpenDP reads it as at most K rows per subject in
            // total, which bounds every group and the number of groups (at K each).
            Some(k) => enumerate().over([col(SUBJECT)]).lt(lit(k as i64)),
            None => self.per_group_truncation(&keys),
        };
        let mut aggs = vec![dp_len(None, false).alias("count")];
        for s in &self.statistics {
            if let Some((column, lower, upper)) = s.clamped() {
                aggs.push(
                    col(column)
                        .dp()
                        .sum((lit(lower), lit(upper)), None)
                        .alias(stat_column(s)),
                );
            }
            match s {
                Statistic::Count | Statistic::Sum { .. } | Statistic::Mean { .. } => {}
                Statistic::Quantile {
                    column,
                    alpha,
                    candidates,
                } => aggs.push(
                    col(column.as_str())
                        .fill_null(lit(missing_candidate(candidates)))
                        .fill_nan(lit(missing_candidate(candidates)))
                        .dp()
                        .quantile(
                            *alpha,
                            Series::new("candidates".into(), candidates.clone()),
                            None,
                        )
                        .alias(stat_column(s)),
                ),
            }
        }
        let lf = DataFrame::empty_with_schema(schema).lazy().filter(truncate);
        let lf = if keys.is_empty() {
            lf.select(aggs)
        } else {
            lf.group_by(keys.clone()).agg(aggs)
        };
        match &self.keys {
            Keys::Public { rows, .. } if !keys.is_empty() => {
                match self.key_frame(rows) {
                    Ok(key_frame) => {
                        lf.join(key_frame.lazy(), keys.clone(), keys, JoinType::Right.into())
                    }
                    // Unequal key rows (checked when the key list is read): no key join, so
                    // OpenDP refuses to release the keys rather than release them unprotected.
                    Err(_) => lf,
                }
            }
            _ => lf,
        }
    }
}

impl ReleasePlan {
    /// The public key list as a frame of the group columns.
    fn key_frame(&self, rows: &[Vec<String>]) -> PolarsResult<DataFrame> {
        let columns: Vec<Column> = self
            .group_by
            .iter()
            .enumerate()
            .map(|(i, g)| {
                Column::new(
                    g.as_str().into(),
                    rows.iter().map(|r| r[i].clone()).collect::<Vec<String>>(),
                )
            })
            .collect();
        DataFrame::new(columns)
    }
}

/// Row numbers within a window, exactly as OpenDP's truncation matcher expects them.
fn enumerate() -> Expr {
    int_range(lit(0), len(), 1, DataType::Int64)
}

/// A release measurement in one of the four measures.
enum Built {
    Pure(Release<MaxDivergence>),
    Approx(Release<Approximate<MaxDivergence>>),
    Zcdp(Release<ZeroConcentratedDivergence>),
}

impl Built {
    fn summary(&self) -> opendp::error::Fallible<DataFrame> {
        match self {
            Built::Pure(m) => summarize_polars_measurement(m.clone(), Some(0.05)),
            Built::Approx(m) => summarize_polars_measurement(m.clone(), Some(0.05)),
            Built::Zcdp(m) => summarize_polars_measurement(m.clone(), Some(0.05)),
        }
    }

    fn invoke(&self, lf: &LazyFrame) -> opendp::error::Fallible<DataFrame> {
        match self {
            Built::Pure(m) => m.invoke(lf)?.collect(),
            Built::Approx(m) => m.invoke(lf)?.collect(),
            Built::Zcdp(m) => m.invoke(lf)?.collect(),
        }
    }
}

/// A release ready to run: calibrated, with its privacy spend known before any data is read.
pub struct Prepared {
    built: Built,
    pub calibrated: Calibrated,
}

/// Builds the release with the noise scale (and threshold) that meet its target.
pub fn prepare(plan: &ReleasePlan) -> Result<Prepared, ReleaseError> {
    let build_err = |e: opendp::error::Error| build_error(plan, e);
    let domain = plan.domain().map_err(build_err)?;
    let schema = domain.schema();
    let lf = plan.plan(&schema);
    let metric = SymmetricIdDistance {
        identifier: col(SUBJECT),
    };
    let private = matches!(plan.keys, Keys::Private) && !plan.group_by.is_empty();
    let calib_err = |m: String| ReleaseError::Calibrate {
        release: plan.name.clone(),
        target: plan.target,
        message: m,
    };
    match plan.target {
        Loss::Pure { epsilon } => {
            if private {
                return Err(calib_err("private keys need δ > 0".into()));
            }
            calibrate_scalar(
                plan,
                &domain,
                &lf,
                MaxDivergence,
                epsilon,
                1.0,
                |m, epsilon| (Built::Pure(m), Loss::Pure { epsilon }),
            )
        }
        Loss::Approx { epsilon, delta } => {
            let build = |s: f64, t: Option<u32>| {
                opendp::measurements::make_private_lazyframe(
                    domain.clone(),
                    metric.clone(),
                    Approximate(MaxDivergence),
                    lf.clone(),
                    Some(s),
                    t,
                )
            };
            let t_max = private.then_some(u32::MAX);
            build(1.0, t_max).map_err(build_err)?;
            let s = search_scale(
                |s| build(s, t_max).and_then(|m| m.map(&1u32)).map(|(e, _)| e),
                epsilon,
                1.0,
            )
            .map_err(|e| calib_err(msg(&e)))?;
            let threshold = if private {
                let lower = plan.max_rows_per_group.saturating_add(1);
                let meets = |t: u32| {
                    build(s, Some(t))
                        .and_then(|m| m.map(&1u32))
                        .map(|(_, d)| d <= delta)
                        .unwrap_or(false)
                };
                Some(if meets(lower) {
                    lower
                } else {
                    opendp::utilities::binary_search(
                        |t: &u32| {
                            build(s, Some(*t))
                                .and_then(|m| m.map(&1u32))
                                .map(|(_, d)| d <= delta)
                                .unwrap_or(false)
                        },
                        (lower, u32::MAX / 2),
                    )
                    .map_err(|e| calib_err(msg(&e)))?
                })
            } else {
                None
            };
            let m = build(s, threshold).map_err(build_err)?;
            let (e, d) = m.map(&1u32).map_err(build_err)?;
            finish(
                plan,
                Built::Approx(m),
                s,
                threshold,
                Loss::Approx {
                    epsilon: e,
                    delta: d,
                },
                &plan.name,
            )
        }
        Loss::Zcdp { rho } => {
            if private {
                return Err(calib_err(
                    "private keys need δ > 0; give the target as { epsilon, delta }".into(),
                ));
            }
            calibrate_scalar(
                plan,
                &domain,
                &lf,
                ZeroConcentratedDivergence,
                rho,
                2.0,
                |m, rho| (Built::Zcdp(m), Loss::Zcdp { rho }),
            )
        }
    }
}

/// A release measurement at one subject, in measure `MO`.
type Release<MO> = opendp::core::Measurement<LazyFrameDomain, SymmetricIdDistance, MO, OnceFrame>;

/// Builds and calibrates a release whose loss is one number (ε for pure DP, ρ for zCDP): the
/// smallest global scale whose loss at one subject meets `target`. `done` wraps the
/// measurement and its loss.
fn calibrate_scalar<MO>(
    plan: &ReleasePlan,
    domain: &LazyFrameDomain,
    lf: &LazyFrame,
    measure: MO,
    target: f64,
    power: f64,
    done: impl FnOnce(Release<MO>, f64) -> (Built, Loss),
) -> Result<Prepared, ReleaseError>
where
    MO: 'static + Measure<Distance = f64> + Clone,
    DslPlan: PrivateDslPlan<SymmetricIdDistance, MO>,
{
    let build_err = |e: opendp::error::Error| build_error(plan, e);
    let build = |s: f64| {
        opendp::measurements::make_private_lazyframe(
            domain.clone(),
            SymmetricIdDistance {
                identifier: col(SUBJECT),
            },
            measure.clone(),
            lf.clone(),
            Some(s),
            None,
        )
    };
    // A plan OpenDP refuses is a build error, not a calibration problem.
    build(1.0).map_err(build_err)?;
    let s = search_scale(|s| build(s).and_then(|m| m.map(&1u32)), target, power).map_err(|e| {
        ReleaseError::Calibrate {
            release: plan.name.clone(),
            target: plan.target,
            message: msg(&e),
        }
    })?;
    let m = build(s).map_err(build_err)?;
    let spent = m.map(&1u32).map_err(build_err)?;
    let (built, loss) = done(m, spent);
    finish(plan, built, s, None, loss, &plan.name)
}

fn build_error(plan: &ReleasePlan, e: opendp::error::Error) -> ReleaseError {
    ReleaseError::Build {
        release: plan.name.clone(),
        message: msg(&e),
        hint: "check the bounds, candidates and contribution limits of the release".into(),
    }
}

/// The smallest global scale whose loss (OpenDP's map at one subject) meets `target`. The loss
/// falls as 1/s^`power` (1 for ε, 2 for ρ), so one build at s = 1 gives the bracket and a
/// binary search over the map finds the edge.
fn search_scale(
    loss_at: impl Fn(f64) -> opendp::error::Fallible<f64>,
    target: f64,
    power: f64,
) -> opendp::error::Fallible<f64> {
    let guess = (loss_at(1.0)? / target).powf(1.0 / power).max(1e-12);
    opendp::utilities::binary_search(
        |s: &f64| loss_at(*s).map(|l| l <= target).unwrap_or(false),
        (guess * 0.5, guess * 2.0),
    )
}

fn finish(
    plan: &ReleasePlan,
    built: Built,
    global_scale: f64,
    threshold: Option<u32>,
    spend: Loss,
    name: &str,
) -> Result<Prepared, ReleaseError> {
    // The calibration meets the target by construction; checked here so a change to the search
    // can never release more than was asked.
    let within = super::ledger::compose(&plan.target, &[spend])
        .map(|spent| super::ledger::fits(&plan.target, &spent))
        .unwrap_or(false);
    if !within {
        return Err(ReleaseError::Calibrate {
            release: name.to_string(),
            target: plan.target,
            message: format!("the calibrated release would spend {spend}"),
        });
    }
    let summary = built.summary().map_err(|e| ReleaseError::Build {
        release: name.to_string(),
        message: msg(&e),
        hint: "the accuracy summary failed".into(),
    })?;
    let text = |c: &str, i: usize| {
        summary
            .column(c)
            .ok()
            .and_then(|s| s.str().ok().and_then(|s| s.get(i).map(str::to_string)))
    };
    let num = |c: &str, i: usize| {
        summary
            .column(c)
            .ok()
            .and_then(|s| s.cast(&DataType::Float64).ok())
            .and_then(|s| s.f64().ok().and_then(|s| s.get(i)))
    };
    let noise = (0..summary.height())
        .map(|i| NoiseRecord {
            column: text("column", i).unwrap_or_default(),
            distribution: text("distribution", i).unwrap_or_default(),
            scale: num("scale", i).unwrap_or(f64::NAN),
            ci95: num("accuracy", i),
        })
        .collect::<Vec<_>>();
    let rank_ci95 = plan
        .statistics
        .iter()
        .filter_map(|s| match s {
            Statistic::Quantile {
                alpha, candidates, ..
            } => {
                let c = stat_column(s);
                let scale = noise.iter().find(|n| n.column == c)?.scale;
                Some(RankBound {
                    rows: quantile_rank_error(scale, *alpha, candidates.len(), plan.row_bound()),
                    column: c,
                })
            }
            _ => None,
        })
        .collect();
    Ok(Prepared {
        built,
        calibrated: Calibrated {
            global_scale,
            threshold,
            spend,
            noise,
            rank_ci95,
        },
    })
}

/// The subject as a 64-bit key, rows sorted by it. Every row of one subject gets the same key,
/// so one subject is still one privacy unit; two subjects that collide become one unit, which
/// only bounds their rows together. Sorted integer keys make the truncation windows (grouped by
/// subject) much cheaper for polars than hashing text per window. A subject column that is
/// already `u64` (keys from [`subject_key`], or numeric ids) is used as it is.
///
/// Rows whose group key is missing are not counted (in both kinds of truncation alike). The
/// sort by subject is stable, so a subject's rows keep their input (file) order: "the first k
/// rows" the truncation keeps are the subject's first in the file, whatever other subjects
/// are present.
fn subject_keyed(mut data: LazyFrame, group_by: &[String]) -> LazyFrame {
    let keyed = data
        .collect_schema()
        .ok()
        .and_then(|s| s.get(SUBJECT).cloned())
        == Some(DataType::UInt64);
    if !keyed {
        data = data.with_column(subject_key(col(SUBJECT)).alias(SUBJECT));
    }
    for g in group_by {
        data = data.filter(col(g.as_str()).is_not_null());
    }
    data.sort(
        [SUBJECT],
        SortMultipleOptions::default().with_maintain_order(true),
    )
}

/// The 64-bit key of a subject value (text or number).
pub fn subject_key(subject: Expr) -> Expr {
    subject.cast(DataType::String).hash(
        0x7072_6976_7072_6570,
        0x7375_626a_6563_7431,
        0x6b65_7973_5f76_3031,
        0x0000_0000_0000_0001,
    )
}

impl Prepared {
    /// Runs the release on the consented rows and returns the table to write: group keys,
    /// each statistic and its 95% half-width, sorted by the keys.
    pub fn run(&self, plan: &ReleasePlan, data: LazyFrame) -> Result<DataFrame, ReleaseError> {
        let err = |m: String| ReleaseError::Run {
            release: plan.name.clone(),
            message: m,
        };
        let raw = self
            .built
            .invoke(&subject_keyed(data, &plan.group_by))
            .map_err(|e| err(msg(&e)))?;
        self.table(plan, raw)
    }

    /// The release from aggregates another engine computed over the consented rows, truncated
    /// as [`ReleasePlan::plan`] truncates them (see `python/privprep/spark.py`): the group
    /// columns (text), `count` (rows) and, per sum or mean, its clamped sum under the
    /// statistic's column name. OpenDP adds the noise, at the scale and of the distribution
    /// this release was calibrated to, exactly as on the rows: a public key without rows gets
    /// noise on 0, and with private keys only groups whose noisy count exceeds the threshold
    /// are released.
    pub fn run_on_aggregates(
        &self,
        plan: &ReleasePlan,
        aggregates: DataFrame,
    ) -> Result<DataFrame, ReleaseError> {
        let err = |m: String| ReleaseError::Run {
            release: plan.name.clone(),
            message: m,
        };
        let pe = |e: PolarsError| err(e.to_string());
        let mut exact = aggregates;
        // Every public key, in the key list's order of columns; keys the list lacks go.
        if let Keys::Public { rows, .. } = &plan.keys {
            if !plan.group_by.is_empty() {
                let keys: Vec<Expr> = plan.group_by.iter().map(|g| col(g.as_str())).collect();
                exact = plan
                    .key_frame(rows)
                    .map_err(pe)?
                    .lazy()
                    .join(exact.lazy(), keys.clone(), keys, JoinType::Left.into())
                    .collect()
                    .map_err(pe)?;
            }
        }
        let mut raw: Vec<Column> = plan
            .group_by
            .iter()
            .map(|g| exact.column(g).cloned().map_err(pe))
            .collect::<Result<_, _>>()?;
        for n in &self.calibrated.noise {
            let quantile = plan.statistics.iter().find_map(|s| match s {
                Statistic::Quantile {
                    alpha, candidates, ..
                } if stat_column(s) == n.column => Some((*alpha, candidates)),
                _ => None,
            });
            if let Some((alpha, candidates)) = quantile {
                let picked = noisy_quantile(&exact, plan, n, alpha, candidates).map_err(err)?;
                raw.push(Column::new(n.column.as_str().into(), picked));
                continue;
            }
            let values = exact
                .column(&n.column)
                .map_err(pe)?
                .as_materialized_series()
                .clone();
            let noisy = add_noise(&values, &n.distribution, n.scale).map_err(err)?;
            raw.push(noisy.with_name(n.column.as_str().into()).into());
        }
        let mut raw = DataFrame::new(raw).map_err(pe)?;
        if let Some(t) = self.calibrated.threshold {
            let count = raw.column("count").map_err(pe)?.i64().map_err(pe)?.clone();
            let keep = count.gt(i64::from(t));
            raw = raw.filter(&keep).map_err(pe)?;
        }
        self.table(plan, raw)
    }

    /// The table to write from OpenDP's noisy columns: group keys, each statistic and its 95%
    /// half-width, sorted by the keys.
    fn table(&self, plan: &ReleasePlan, raw: DataFrame) -> Result<DataFrame, ReleaseError> {
        let err = |m: String| ReleaseError::Run {
            release: plan.name.clone(),
            message: m,
        };
        let accuracy = |column: &str| {
            self.calibrated
                .noise
                .iter()
                .find(|n| n.column == column)
                .and_then(|n| n.ci95)
        };
        let mut out: Vec<Column> = Vec::new();
        for g in &plan.group_by {
            out.push(raw.column(g).map_err(|e| err(e.to_string()))?.clone());
        }
        let count = raw
            .column("count")
            .and_then(|c| c.cast(&DataType::Float64))
            .map_err(|e| err(e.to_string()))?;
        let n = raw.height();
        let count_acc = accuracy("count");
        let with_ci = |out: &mut Vec<Column>, name: &str, values: Column, acc: Option<f64>| {
            out.push(values.with_name(name.into()));
            out.push(Column::new(format!("{name}_ci95").into(), vec![acc; n]));
        };
        if plan.statistics.contains(&Statistic::Count) {
            with_ci(
                &mut out,
                "count",
                count
                    .cast(&DataType::Int64)
                    .map_err(|e| err(e.to_string()))?,
                count_acc,
            );
        }
        for s in &plan.statistics {
            let (c, name) = (stat_column(s), output_column(s));
            match s {
                Statistic::Count => {}
                Statistic::Sum { .. } => {
                    let v = raw.column(&c).map_err(|e| err(e.to_string()))?.clone();
                    with_ci(&mut out, &name, v, accuracy(&c));
                }
                Statistic::Quantile { .. } => {
                    // OpenDP gives no value interval for a quantile (it depends on how the
                    // data is spread); its error bound is in rows of rank.
                    let v = raw.column(&c).map_err(|e| err(e.to_string()))?.clone();
                    out.push(v.with_name(c.as_str().into()));
                    let rank = self
                        .calibrated
                        .rank_ci95
                        .iter()
                        .find(|q| q.column == c)
                        .map(|q| q.rows);
                    out.push(Column::new(format!("{c}_rank_ci95").into(), vec![rank; n]));
                }
                Statistic::Mean { lower, upper, .. } => {
                    // mean = noisy sum / noisy count, both from OpenDP.
                    let sum = raw
                        .column(&c)
                        .and_then(|s| s.cast(&DataType::Float64))
                        .map_err(|e| err(e.to_string()))?;
                    let s = sum.f64().map_err(|e| err(e.to_string()))?;
                    let k = count.f64().map_err(|e| err(e.to_string()))?;
                    let mut means = Vec::with_capacity(n);
                    let mut cis = Vec::with_capacity(n);
                    for (sv, kv) in s.iter().zip(k.iter()) {
                        let (sv, kv) = (sv.unwrap_or(0.0), kv.unwrap_or(0.0));
                        // Post-processing: a mean outside the bounds is certainly wrong.
                        let mean = (kv >= 1.0).then(|| (sv / kv).clamp(*lower, *upper));
                        means.push(mean);
                        cis.push(
                            mean.map(|_| self.calibrated.mean_half_width(&c, *lower, *upper, kv)),
                        );
                    }
                    out.push(Column::new(name.as_str().into(), means));
                    out.push(Column::new(format!("{name}_ci95").into(), cis));
                }
            }
        }
        let df = DataFrame::new(out).map_err(|e| err(e.to_string()))?;
        if plan.group_by.is_empty() {
            return Ok(df);
        }
        df.sort(plan.group_by.clone(), SortMultipleOptions::default())
            .map_err(|e| err(e.to_string()))
    }
}

/// `values` (a missing value is 0: a group without rows) plus OpenDP noise of `distribution`
/// (as OpenDP's accuracy summary names it: `Integer Laplace`, `Float Gaussian`, …) at `scale`.
fn add_noise(values: &Series, distribution: &str, scale: f64) -> Result<Series, String> {
    let (support, kind) = distribution.split_once(' ').unwrap_or(("", distribution));
    let name = values.name().clone();
    let cast = |t: &DataType| values.cast(t).map_err(|e| e.to_string());
    match support {
        "Integer" => {
            let v = cast(&DataType::Int64)?;
            let v = v.i64().map_err(|e| e.to_string())?;
            let v: Vec<i64> = v.iter().map(|x| x.unwrap_or(0)).collect();
            Ok(Series::new(
                name,
                noised(v, AtomDomain::default(), kind, scale)?,
            ))
        }
        "Float" => {
            let v = cast(&DataType::Float64)?;
            let v = v.f64().map_err(|e| e.to_string())?;
            let v: Vec<f64> = v.iter().map(|x| x.unwrap_or(0.0)).collect();
            Ok(Series::new(
                name,
                noised(v, AtomDomain::new_non_nan(), kind, scale)?,
            ))
        }
        other => Err(format!("unknown noise support {other}")),
    }
}

/// `values` plus OpenDP's Laplace (ε) or Gaussian (ρ) noise at `scale`, each value its own.
fn noised<T>(values: Vec<T>, atom: AtomDomain<T>, kind: &str, scale: f64) -> Result<Vec<T>, String>
where
    T: opendp::traits::CheckAtom + 'static,
    opendp::measurements::DiscreteLaplace: opendp::measurements::MakeNoise<
        opendp::domains::VectorDomain<AtomDomain<T>>,
        opendp::metrics::L1Distance<T>,
        MaxDivergence,
    >,
    opendp::measurements::DiscreteGaussian: opendp::measurements::MakeNoise<
        opendp::domains::VectorDomain<AtomDomain<T>>,
        opendp::metrics::L2Distance<T>,
        ZeroConcentratedDivergence,
    >,
    (
        opendp::domains::VectorDomain<AtomDomain<T>>,
        opendp::metrics::L1Distance<T>,
    ): opendp::core::MetricSpace,
    (
        opendp::domains::VectorDomain<AtomDomain<T>>,
        opendp::metrics::L2Distance<T>,
    ): opendp::core::MetricSpace,
{
    use opendp::domains::VectorDomain;
    use opendp::metrics::{L1Distance, L2Distance};
    let domain = VectorDomain::new(atom);
    match kind {
        "Laplace" => opendp::measurements::make_laplace::<_, _, MaxDivergence>(
            domain,
            L1Distance::<T>::default(),
            scale,
            None,
        )
        .and_then(|m| m.invoke(&values)),
        "Gaussian" => opendp::measurements::make_gaussian::<_, _, ZeroConcentratedDivergence>(
            domain,
            L2Distance::<T>::default(),
            scale,
            None,
        )
        .and_then(|m| m.invoke(&values)),
        other => return Err(format!("unknown noise {other}")),
    }
    .map_err(|e| msg(&e))
}

/// Per group, OpenDP's discrete quantile score of every candidate (from the rows below and
/// above it, `<column>__lt<i>` and `<column>__gt<i>`), and the candidate OpenDP's noisy min
/// picks at the calibrated scale: the same score (α as OpenDP makes it a fraction for groups
/// of at most `max_rows`, counts capped there) and the same mechanism as on the rows.
fn noisy_quantile(
    exact: &DataFrame,
    plan: &ReleasePlan,
    noise: &NoiseRecord,
    alpha: f64,
    candidates: &[f64],
) -> Result<Vec<f64>, String> {
    use opendp::domains::VectorDomain;
    use opendp::metrics::LInfDistance;
    let size = u64::from(plan.row_bound());
    let (num, den) = alpha_fraction(alpha, size)?;
    let counts = |kind: &str, i: usize| -> Result<Vec<u64>, String> {
        let c = exact
            .column(&format!("{}__{kind}{i}", noise.column))
            .and_then(|c| c.cast(&DataType::UInt64))
            .map_err(|e| e.to_string())?;
        let c = c.u64().map_err(|e| e.to_string())?;
        Ok(c.iter().map(|v| v.unwrap_or(0).min(size)).collect())
    };
    let below = (0..candidates.len())
        .map(|i| counts("lt", i))
        .collect::<Result<Vec<_>, _>>()?;
    let above = (0..candidates.len())
        .map(|i| counts("gt", i))
        .collect::<Result<Vec<_>, _>>()?;
    let domain = VectorDomain::new(AtomDomain::<u64>::default());
    let metric = LInfDistance::<u64>::new(false);
    let pick = |scores: &Vec<u64>| -> Result<usize, String> {
        if noise.distribution.starts_with("Gumbel") {
            opendp::measurements::make_noisy_max(
                domain.clone(),
                metric.clone(),
                ZeroConcentratedDivergence,
                noise.scale,
                true,
            )
            .and_then(|m| m.invoke(scores))
        } else {
            opendp::measurements::make_noisy_max(
                domain.clone(),
                metric.clone(),
                MaxDivergence,
                noise.scale,
                true,
            )
            .and_then(|m| m.invoke(scores))
        }
        .map_err(|e| msg(&e))
    };
    (0..exact.height())
        .map(|row| {
            let scores: Vec<u64> = (0..candidates.len())
                .map(|i| ((den - num) * below[i][row]).abs_diff(num * above[i][row]))
                .collect();
            Ok(candidates[pick(&scores)?])
        })
        .collect()
}

/// α as OpenDP's quantile score takes it: its exact binary fraction when the denominator is
/// below `u64::MAX / size`, else rounded to that denominator.
fn alpha_fraction(alpha: f64, size: u64) -> Result<(u64, u64), String> {
    if !(0.0..=1.0).contains(&alpha) {
        return Err("alpha must be within [0, 1]".into());
    }
    let approx = u64::MAX / size.max(1);
    if alpha == 0.0 {
        return Ok((0, 1));
    }
    // alpha = m / 2^k exactly, m odd.
    let bits = alpha.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i64;
    let mut mantissa = bits & ((1u64 << 52) - 1);
    let mut k = 1075 - exponent;
    if exponent != 0 {
        mantissa |= 1u64 << 52;
    } else {
        k = 1074;
    }
    while mantissa.is_multiple_of(2) && k > 0 {
        mantissa /= 2;
        k -= 1;
    }
    if k < 64 && (1u64 << k) < approx {
        return Ok((mantissa, 1u64 << k));
    }
    Ok(((alpha * approx as f64).round() as u64, approx))
}
