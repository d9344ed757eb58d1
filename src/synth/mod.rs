//! Differentially private synthetic tables: MST's method on OpenDP's measurements, optionally
//! conditioned on the table's target.
//!
//! The rows are categorical codes over public domains (a column's manifest `values`, or the
//! bins the pipeline declares for a number). Each subject's rows are first bounded to
//! `k` (`bound_rows`), so adding or removing one subject moves any histogram by at most `k`
//! in L1 and L2 norm, and any L1-error score by at most `k`. With a hub (the table's target),
//! every measurement below is of the hub's column too: one table per hub value, its context.
//! Then, all in zero-concentrated DP:
//! 1. every column's margin (its 1-way marginal, or its 2-way marginal with the hub) is
//!    measured with OpenDP's (discrete) Gaussian mechanism, the share of each in proportion to
//!    its public domain size to the power 2/3;
//! 2. a spanning tree over the other columns is chosen privately, edge by edge (Kruskal),
//!    each edge with OpenDP's noisy max over the candidates' scores: the L1 distance between a
//!    pair's table and the one the noisy margins imply if the pair were independent within
//!    each context (MST's weights), less the error the table's noise is expected to add (AIM's
//!    penalty);
//! 3. the table of every tree edge (2-way, or 3-way with the hub) is measured with the
//!    Gaussian mechanism;
//! 4. the model is estimated from the measurements (post-processing): each margin is the
//!    inverse-variance average of its own measurement and the margins of the tables it is in;
//!    each noisy table is projected onto non-negative counts and fitted to both its columns'
//!    margins (iterative proportional fitting);
//! 5. rows are sampled from the model (the context, the root, then each child from its parent
//!    within the context) by controlled rounding, with `rand`.
//!
//! The budget ρ is split 35% / 5% / 60% between the three kinds of measurement (40% / 10% /
//! 50% with a hub). Every noise scale is fixed before the data is seen; the privacy spent is
//! the sum of OpenDP's privacy maps of the measurements, which the run spends in the ledger
//! before a single measurement is made.
//! Depends on: OpenDP (measurements), `rand` (sampling from the private model only).

use std::collections::HashMap;

use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::{make_gaussian, make_laplace, make_noisy_max};
use opendp::measures::{MaxDivergence, ZeroConcentratedDivergence};
use opendp::metrics::{L1Distance, L2Distance, LInfDistance};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Why a synthetic table could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("OpenDP: {0}")]
    OpenDp(String),
    #[error("{0}")]
    Bad(String),
}

fn odp(e: opendp::error::Error) -> SynthError {
    SynthError::OpenDp(e.to_string())
}

/// The privacy measure a table's measurements compose in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Zero-concentrated DP (ρ): Gaussian measurements, noisy max with Gumbel noise. An
    /// (ε, δ) target is converted to ρ.
    Zcdp,
    /// Pure DP (ε): Laplace measurements, and OpenDP's noisy max with exponential noise (an
    /// exponential-mechanism selection, as permute-and-flip) for selection.
    Pure,
}

/// One measurement of the model, as lineage records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// `1-way`, `2-way`, `3-way` or `select`.
    pub kind: String,
    /// The column indexes it is about (for `select`: the edge chosen).
    pub columns: Vec<usize>,
    /// OpenDP's mechanism and its noise scale.
    pub mechanism: String,
    pub scale: f64,
    /// OpenDP's privacy map at one subject (k rows): ρ in zCDP, or ε in pure DP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rho: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
}

impl Measurement {
    fn new(
        measure: Measure,
        kind: String,
        columns: Vec<usize>,
        mechanism: &str,
        scale: f64,
        loss: f64,
    ) -> Measurement {
        let (rho, epsilon) = match measure {
            Measure::Zcdp => (Some(loss), None),
            Measure::Pure => (None, Some(loss)),
        };
        Measurement {
            kind,
            columns,
            mechanism: mechanism.into(),
            scale,
            rho,
            epsilon,
        }
    }

    /// A noisy count of the marginal of `columns`, at `scale`, of privacy loss `loss`.
    fn marginal(measure: Measure, columns: Vec<usize>, scale: f64, loss: f64) -> Measurement {
        let mechanism = match measure {
            Measure::Zcdp => "Gaussian (OpenDP make_gaussian, discrete)",
            Measure::Pure => "Laplace (OpenDP make_laplace, discrete)",
        };
        Measurement::new(
            measure,
            format!("{}-way", columns.len()),
            columns,
            mechanism,
            scale,
            loss,
        )
    }

    /// The privacy loss, in the table's measure.
    pub fn loss(&self) -> f64 {
        self.rho.or(self.epsilon).unwrap_or(0.0)
    }
}

/// The calibrated measurements, before any data is read: their scales and total ρ.
#[derive(Debug, Clone)]
pub struct Calibration {
    /// The column every measurement is conditioned on (the table's `target`), if any.
    pub hub: Option<usize>,
    /// Per column, the noise of its margin: its 1-way marginal, or with a hub its 2-way
    /// marginal with the hub (0 for the hub itself).
    pub sigma_one: Vec<f64>,
    /// Noise of the tree's tables: 2-way, or 3-way with the hub.
    pub sigma_two: f64,
    pub select_scale: f64,
    pub measure: Measure,
    /// The total loss (ρ, or ε in pure DP): the sum of OpenDP's maps of every measurement.
    pub loss: f64,
}

impl Calibration {
    /// The columns of the tree: every column but the hub.
    fn columns(&self, d: usize) -> Vec<usize> {
        (0..d).filter(|c| Some(*c) != self.hub).collect()
    }
}

/// The most values a target may have for the model to be conditioned on it: each table's cells
/// are multiplied by them, and beyond a few the noise on the wider tables outweighs what the
/// conditioning keeps. A target with more values is still predicted by the report.
pub const MAX_HUB_VALUES: usize = 16;

/// The budget's shares between the margins, the selection and the tree's tables, in words,
/// for `d` columns with the target as hub or without (as [`calibrate`] splits it).
pub fn shares(hub: bool, d: usize) -> &'static str {
    let tree_columns = if hub && d > 1 { d - 1 } else { d };
    match (hub && d > 1, tree_columns) {
        (true, 1) => "all of it for the column's 2-way marginal with the target",
        (_, 0 | 1) => "all of it for the 1-way marginal",
        (true, 2) => "40% for each column's 2-way marginal with the target, 60% for the 3-way marginal of the two other columns with the target",
        (false, 2) => "35% for the 1-way marginals, 65% for the 2-way marginal of the pair",
        (true, _) => "40% for each column's 2-way marginal with the target, 10% to choose a spanning tree of the other columns, 50% for the 3-way marginals of its edges with the target",
        (false, _) => "35% for the 1-way marginals, 5% to choose a spanning tree of pairs, 60% for its 2-way marginals",
    }
}

/// A measurement's function, boxed: measurements of zCDP and of pure DP have other types.
type Invoke<I, O> = Box<dyn Fn(&I) -> Result<O, SynthError>>;

/// A measurement's function and its privacy map at one subject.
type Mechanism<I, O> = (Invoke<I, O>, f64);

/// OpenDP's measurement `m` as a function, with its privacy map at one subject (`d_in`).
fn boxed<DI, MI, MO, TO>(
    m: opendp::error::Fallible<opendp::core::Measurement<DI, MI, MO, TO>>,
    d_in: &MI::Distance,
) -> Result<Mechanism<DI::Carrier, TO>, SynthError>
where
    DI: opendp::core::Domain + 'static,
    MI: opendp::core::Metric + 'static,
    MO: opendp::core::Measure<Distance = f64> + 'static,
    TO: 'static,
{
    let m = m.map_err(odp)?;
    let loss = m.map(d_in).map_err(odp)?;
    Ok((
        Box::new(move |x: &DI::Carrier| m.invoke(x).map_err(odp)),
        loss,
    ))
}

/// OpenDP's noise on counts at `scale`, and its privacy map at one subject (`k` rows move a
/// histogram by at most `k` in L1 and in L2): Gaussian in zCDP, Laplace in pure DP.
fn noise(
    measure: Measure,
    scale: f64,
    k: u32,
) -> Result<Mechanism<Vec<i64>, Vec<i64>>, SynthError> {
    let domain = VectorDomain::new(AtomDomain::<i64>::default());
    let k = i64::from(k);
    match measure {
        Measure::Zcdp => boxed(
            make_gaussian::<_, _, ZeroConcentratedDivergence>(
                domain,
                L2Distance::default(),
                scale,
                None,
            ),
            &k,
        ),
        Measure::Pure => boxed(
            make_laplace::<_, _, MaxDivergence>(domain, L1Distance::default(), scale, None),
            &k,
        ),
    }
}

fn noise_loss(measure: Measure, scale: f64, k: u32) -> Result<f64, SynthError> {
    noise(measure, scale, k).map(|(_, loss)| loss)
}

/// The standard deviation of `noise` at `scale`, and its expected absolute value.
fn noise_spread(measure: Measure, scale: f64) -> (f64, f64) {
    match measure {
        Measure::Zcdp => (scale, scale * (2.0 / std::f64::consts::PI).sqrt()),
        Measure::Pure => (scale * std::f64::consts::SQRT_2, scale),
    }
}

/// OpenDP's noisy max over scores that one subject moves by at most `k` each (Gumbel noise in
/// zCDP, exponential noise in pure DP), and its privacy map.
fn select(measure: Measure, scale: f64, k: u32) -> Result<Mechanism<Vec<f64>, usize>, SynthError> {
    let domain = VectorDomain::new(AtomDomain::<f64>::new_non_nan());
    let metric = LInfDistance::<f64>::default();
    let k = f64::from(k);
    match measure {
        Measure::Zcdp => boxed(
            make_noisy_max(domain, metric, ZeroConcentratedDivergence, scale, false),
            &k,
        ),
        Measure::Pure => boxed(
            make_noisy_max(domain, metric, MaxDivergence, scale, false),
            &k,
        ),
    }
}

fn select_loss(measure: Measure, scale: f64, k: u32) -> Result<f64, SynthError> {
    select(measure, scale, k).map(|(_, loss)| loss)
}

/// The smallest scale (to 0.1%) whose privacy map is at most `rho`: OpenDP's maps decrease in
/// the scale.
fn scale_for(rho: f64, map: impl Fn(f64) -> Result<f64, SynthError>) -> Result<f64, SynthError> {
    let (mut lo, mut hi) = (1e-6f64, 1.0f64);
    while map(hi)? > rho {
        hi *= 2.0;
        if hi > 1e12 {
            return Err(SynthError::Bad(
                "the budget is too small for any noise scale".into(),
            ));
        }
    }
    for _ in 0..60 {
        let mid = (lo * hi).sqrt();
        if map(mid)? > rho {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi / lo < 1.001 {
            break;
        }
    }
    Ok(hi)
}

/// ρ of an (ε, δ) target: the largest ρ whose zCDP guarantee implies it,
/// ε = ρ + 2√(ρ ln(1/δ)).
pub fn rho_for(epsilon: f64, delta: f64) -> f64 {
    let l = (1.0 / delta).ln();
    let root = -l.sqrt() + (l + epsilon).sqrt();
    root * root
}

/// Scales for columns of the public `domains` sizes under `budget` (ρ in zCDP, or ε in pure
/// DP), each subject bounded to `k` rows; with a `hub` (the table's target), every measurement
/// is conditioned on that column.
pub fn calibrate(
    domains: &[usize],
    hub: Option<usize>,
    measure: Measure,
    budget: f64,
    k: u32,
) -> Result<Calibration, SynthError> {
    let d = domains.len();
    if d == 0 || budget.is_nan() || budget <= 0.0 || k == 0 {
        return Err(SynthError::Bad(
            "a synthetic table needs columns, a budget above 0 and k ≥ 1".into(),
        ));
    }
    // A hub needs another column to condition.
    let hub = hub.filter(|h| *h < d && d > 1);
    let margins = if hub.is_some() { d - 1 } else { d };
    let edges = margins - 1;
    // Measured on the Adult split at ε = 1 (`cargo bench --bench synth`, median 2-way TV).
    // Without a hub: 0.0594 with 35/5/60, 0.0600 with 30/10/60, 0.0607 with 45/10/45, 0.0626
    // with 25/5/70. With the target as hub, a simulation of the same method on Adult gave
    // 0.0477 with 40/10/50, 0.0472 with 50/10/40 and 0.0473 with 40/5/55: within the noise.
    let (one, chosen, two) = match (edges, hub) {
        (0, _) => (budget, 0.0, 0.0),
        // One edge is the only tree there is: nothing to choose, so its table gets that share.
        (1, Some(_)) => (budget * 0.40, 0.0, budget * 0.60),
        (1, None) => (budget * 0.35, 0.0, budget * 0.65),
        (_, Some(_)) => (budget * 0.40, budget * 0.10, budget * 0.50),
        (_, None) => (budget * 0.35, budget * 0.05, budget * 0.60),
    };
    // The margins' share is split by public domain size, to minimise the sum of their expected
    // L1 errors (cells × noise): in zCDP the noise falls as 1/√ρ, so shares go as size^(2/3);
    // in pure DP it falls as 1/ε, so shares go as √size.
    let power = match measure {
        Measure::Zcdp => 2.0 / 3.0,
        Measure::Pure => 0.5,
    };
    let weight = |c: usize| -> f64 {
        if Some(c) == hub {
            0.0
        } else {
            (domains[c].max(1) as f64).powf(power)
        }
    };
    let weights: f64 = (0..d).map(weight).sum();
    let sigma_one = (0..d)
        .map(|c| match weight(c) {
            w if w > 0.0 => scale_for(one * w / weights, |s| noise_loss(measure, s, k)),
            _ => Ok(0.0),
        })
        .collect::<Result<Vec<f64>, SynthError>>()?;
    let select_scale = if chosen > 0.0 {
        scale_for(chosen / edges as f64, |s| select_loss(measure, s, k))?
    } else {
        0.0
    };
    let sigma_two = if edges > 0 {
        scale_for(two / edges as f64, |s| noise_loss(measure, s, k))?
    } else {
        0.0
    };
    let mut loss = 0.0;
    for (c, sigma) in sigma_one.iter().enumerate() {
        if Some(c) != hub {
            loss += noise_loss(measure, *sigma, k)?;
        }
    }
    if edges > 0 {
        loss += edges as f64 * noise_loss(measure, sigma_two, k)?;
    }
    if select_scale > 0.0 {
        loss += edges as f64 * select_loss(measure, select_scale, k)?;
    }
    Ok(Calibration {
        hub,
        sigma_one,
        sigma_two,
        select_scale,
        measure,
        loss,
    })
}

/// Keeps at most `k` rows of each subject (the first ones in the input's order): the
/// contribution bound every measurement's sensitivity rests on.
pub fn bound_rows<T: Clone>(rows: &[(u64, T)], k: u32) -> Vec<T> {
    let mut seen: HashMap<u64, u32> = HashMap::new();
    rows.iter()
        .filter(|(s, _)| {
            let n = seen.entry(*s).or_default();
            *n += 1;
            *n <= k
        })
        .map(|(_, r)| r.clone())
        .collect()
}

/// Counts of the values of column `i` (domain size `n`).
pub fn one_way(rows: &[Vec<u32>], i: usize, n: usize) -> Vec<i64> {
    marginal(rows, &[(i, n)])
}

/// Counts of the value pairs of columns `i` and `j`, row-major (`i`'s value times `nj`).
pub fn two_way(rows: &[Vec<u32>], i: (usize, usize), j: (usize, usize)) -> Vec<i64> {
    marginal(rows, &[i, j])
}

/// Counts of the values of `columns` (each with its domain size), row-major: the first
/// column's value varies slowest. With a hub, its column comes first: one table per context.
fn marginal(rows: &[Vec<u32>], columns: &[(usize, usize)]) -> Vec<i64> {
    let cells: usize = columns.iter().map(|(_, n)| n).product();
    let mut c = vec![0i64; cells];
    for r in rows {
        let cell = columns
            .iter()
            .fold(0usize, |acc, (i, n)| acc * n + r[*i] as usize);
        c[cell] += 1;
    }
    c
}

/// A fitted model: a tree over the columns (with a hub: over the other columns, each also
/// conditioned on the hub's value, its context), over compressed domains.
#[derive(Debug, Clone)]
pub struct Model {
    /// The compressed domain sizes.
    pub domains: Vec<usize>,
    /// Per column, the original values each compressed value stands for, and their weights
    /// (the clipped noisy counts of the original values).
    pub members: Vec<Vec<Vec<(u32, f64)>>>,
    /// The column every other is conditioned on, if any.
    pub hub: Option<usize>,
    /// The estimated counts of the contexts: of the hub's values, or with no hub one count.
    pub contexts: Vec<f64>,
    /// Per column (empty for the hub), estimated counts of (context, value), row-major.
    pub margins: Vec<Vec<f64>>,
    /// The tree's edges in sampling order: (parent, child, P(child | context, parent) as one
    /// row per context × parent value).
    pub edges: Vec<(usize, usize, Vec<Vec<f64>>)>,
    /// The root of the tree, sampled first after the context.
    pub root: usize,
    /// The noisy row count.
    pub noisy_rows: f64,
    pub measurements: Vec<Measurement>,
}

impl Model {
    /// The model's arcs (parent, child): the hub's to every other column, then the tree's.
    pub fn arcs(&self) -> Vec<(usize, usize)> {
        let hub_arcs = self.hub.into_iter().flat_map(|h| {
            (0..self.domains.len())
                .filter(move |c| *c != h)
                .map(move |c| (h, c))
        });
        hub_arcs
            .chain(self.edges.iter().map(|(p, c, _)| (*p, *c)))
            .collect()
    }

    /// The method's name in lineage.
    pub fn method(&self) -> &'static str {
        match self.hub {
            Some(_) => "mst-tree-on-target",
            None => "mst-tree",
        }
    }
}

/// MST's domain compression of one column's noisy counts of (context, value): values whose
/// total noisy count is below `threshold` are merged into one, so the tables measure what the
/// margins say is there. Returns the map from value to compressed value, the groups (with each
/// member's projected count as weight) and the compressed counts. Post-processing only.
#[allow(clippy::type_complexity)]
fn compress(
    counts: &[f64],
    contexts: usize,
    threshold: f64,
) -> (Vec<u32>, Vec<Vec<(u32, f64)>>, Vec<f64>) {
    let n = counts.len() / contexts;
    let totals: Vec<f64> = (0..n)
        .map(|v| (0..contexts).map(|t| counts[t * n + v]).sum())
        .collect();
    let weights = project(&totals, totals.iter().sum());
    let mut map = vec![0u32; n];
    let mut groups: Vec<Vec<(u32, f64)>> = Vec::new();
    let mut rare = Vec::new();
    for (v, c) in totals.iter().enumerate() {
        if *c >= threshold {
            map[v] = groups.len() as u32;
            groups.push(vec![(v as u32, weights[v])]);
        } else {
            rare.push((v as u32, weights[v]));
        }
    }
    if !rare.is_empty() {
        for (v, _) in &rare {
            map[*v as usize] = groups.len() as u32;
        }
        groups.push(rare);
    }
    let g = groups.len();
    let mut merged = vec![0.0; contexts * g];
    for t in 0..contexts {
        for v in 0..n {
            merged[t * g + map[v] as usize] += counts[t * n + v];
        }
    }
    (map, groups, merged)
}

/// Fits the model to `rows` (codes within `domains`, already bounded) with the scales of `cal`.
pub fn fit(
    rows: &[Vec<u32>],
    domains: &[usize],
    cal: &Calibration,
    k: u32,
) -> Result<Model, SynthError> {
    let d = domains.len();
    let hub = cal.hub;
    let contexts = hub.map_or(1, |h| domains[h]);
    let with_hub = |cols: &[(usize, usize)]| -> Vec<(usize, usize)> {
        hub.map(|h| (h, domains[h]))
            .into_iter()
            .chain(cols.iter().copied())
            .collect()
    };
    let columns = cal.columns(d);
    let mut measurements = Vec::new();
    // 1. Noisy margins: each column's counts of (context, value).
    let mut margins: Vec<Vec<f64>> = vec![Vec::new(); d];
    for &c in &columns {
        let cols = with_hub(&[(c, domains[c])]);
        let (draw, loss) = noise(cal.measure, cal.sigma_one[c], k)?;
        margins[c] = draw(&marginal(rows, &cols))?
            .iter()
            .map(|v| *v as f64)
            .collect();
        let ids = cols.iter().map(|(i, _)| *i).collect();
        measurements.push(Measurement::marginal(
            cal.measure,
            ids,
            cal.sigma_one[c],
            loss,
        ));
    }
    // The row count: the mean of the margins' noisy totals (unbiased; clipping the noise at
    // zero first would add the positive half of every empty cell's noise).
    let total: f64 = columns
        .iter()
        .map(|c| margins[*c].iter().sum::<f64>())
        .sum::<f64>()
        / columns.len() as f64;
    // Compression: a value is kept when its noisy total is at least 3 standard deviations of
    // that total's noise.
    let mut maps: Vec<Vec<u32>> = (0..d).map(|c| (0..domains[c] as u32).collect()).collect();
    let mut members: Vec<Vec<Vec<(u32, f64)>>> = (0..d)
        .map(|c| (0..domains[c] as u32).map(|v| vec![(v, 1.0)]).collect())
        .collect();
    let mut sizes = domains.to_vec();
    for &c in &columns {
        let threshold =
            3.0 * noise_spread(cal.measure, cal.sigma_one[c]).0 * (contexts as f64).sqrt();
        let (map, groups, merged) = compress(&margins[c], contexts, threshold);
        sizes[c] = groups.len();
        maps[c] = map;
        members[c] = groups;
        margins[c] = merged;
    }
    let coded: Vec<Vec<u32>> = rows
        .iter()
        .map(|r| r.iter().zip(&maps).map(|(v, m)| m[*v as usize]).collect())
        .collect();
    let (rows, domains) = (&coded, &sizes[..]);
    let estimated: Vec<Vec<f64>> = margins.iter().map(|m| project(m, total)).collect();
    // 2. The spanning tree, edge by edge, each chosen by noisy max over the candidates'
    // scores: a pair's L1 error if it were independent within each context, less the L1 error
    // its measurement's noise is expected to bring (AIM's penalty), so a pair is chosen where
    // measuring it is expected to help. One subject's k rows move a score by at most k.
    let mut tree: Vec<(usize, usize)> = Vec::new();
    if columns.len() == 2 {
        // The one pair is the tree: nothing to choose, nothing spent.
        tree.push((columns[0], columns[1]));
    } else if columns.len() > 2 {
        let (select, chosen_loss) = select(cal.measure, cal.select_scale, k)?;
        let pairs: Vec<(usize, usize)> = columns
            .iter()
            .enumerate()
            .flat_map(|(a, i)| columns[a + 1..].iter().map(move |j| (*i, *j)))
            .collect();
        // A cell's expected absolute error (σ√(2/π) for Gaussian noise); the projection onto
        // non-negative counts removes part of it (0.6 of it is left: measured on Adult, the
        // median 2-way TV was 0.0495 with 0.6 against 0.0501 with 1 and 0.055 with 2).
        let expected_noise = 0.6 * noise_spread(cal.measure, cal.sigma_two).1;
        let scores: Vec<f64> = pairs
            .iter()
            .map(|(i, j)| {
                let table = marginal(rows, &with_hub(&[(*i, domains[*i]), (*j, domains[*j])]));
                let cells = table.len() as f64;
                independence_error(&table, &estimated[*i], &estimated[*j], contexts)
                    - expected_noise * cells
            })
            .collect();
        let mut component: Vec<usize> = (0..d).collect();
        let find = |c: &Vec<usize>, mut x: usize| {
            while c[x] != x {
                x = c[x];
            }
            x
        };
        for _ in 1..columns.len() {
            let open: Vec<usize> = (0..pairs.len())
                .filter(|p| find(&component, pairs[*p].0) != find(&component, pairs[*p].1))
                .collect();
            let candidates: Vec<f64> = open.iter().map(|p| scores[*p]).collect();
            let (i, j) = pairs[open[select(&candidates)?]];
            let (ri, rj) = (find(&component, i), find(&component, j));
            component[ri] = rj;
            tree.push((i, j));
            measurements.push(Measurement::new(
                cal.measure,
                "select".into(),
                vec![i, j],
                match cal.measure {
                    Measure::Zcdp => "noisy max (OpenDP make_noisy_max, Gumbel noise)",
                    Measure::Pure => "noisy max (OpenDP make_noisy_max, exponential noise)",
                },
                cal.select_scale,
                chosen_loss,
            ));
        }
    }
    // 3. The noisy tables of the tree's edges (with the hub: per context), oriented from the
    // root.
    let root = columns[0];
    let (noise_two, loss_two) = noise(cal.measure, cal.sigma_two, k)?;
    let mut tables = Vec::new();
    for (p, c) in orient(&tree, root, d) {
        let cols = with_hub(&[(p, domains[p]), (c, domains[c])]);
        let noisy = noise_two(&marginal(rows, &cols))?;
        tables.push((p, c, noisy.iter().map(|v| *v as f64).collect::<Vec<f64>>()));
        let ids = cols.iter().map(|(i, _)| *i).collect();
        measurements.push(Measurement::marginal(
            cal.measure,
            ids,
            cal.sigma_two,
            loss_two,
        ));
    }
    // 4. Estimation (post-processing). Each column's margin is measured once directly and once
    // more in every table it is in (summed over the other column, with that many times the
    // variance): the inverse-variance average, projected onto non-negative counts.
    let var_two = noise_spread(cal.measure, cal.sigma_two).0.powi(2);
    for &c in &columns {
        let n = domains[c];
        let var_one = noise_spread(cal.measure, cal.sigma_one[c]).0.powi(2);
        // A merged value's direct count is the sum of its members' noisy counts: as many
        // times the variance.
        let mut weight: Vec<f64> = (0..contexts * n)
            .map(|i| 1.0 / (var_one * members[c][i % n].len().max(1) as f64))
            .collect();
        let mut sum: Vec<f64> = margins[c].iter().zip(&weight).map(|(v, w)| v * w).collect();
        for (p, ch, m) in &tables {
            let (np, nc) = (domains[*p], domains[*ch]);
            let (other, as_parent) = match (*p == c, *ch == c) {
                (true, _) => (nc, true),
                (_, true) => (np, false),
                _ => continue,
            };
            let w = 1.0 / (other as f64 * var_two);
            for t in 0..contexts {
                for v in 0..n {
                    let cell = |a: usize, b: usize| m[(t * np + a) * nc + b];
                    let margin: f64 = if as_parent {
                        (0..nc).map(|b| cell(v, b)).sum()
                    } else {
                        (0..np).map(|a| cell(a, v)).sum()
                    };
                    sum[t * n + v] += margin * w;
                    weight[t * n + v] += w;
                }
            }
        }
        let combined: Vec<f64> = sum.iter().zip(&weight).map(|(s, w)| s / w).collect();
        margins[c] = project(&combined, total);
    }
    // The contexts' counts: the average of every column's; each margin is then scaled to them.
    let counts: Vec<f64> = (0..contexts)
        .map(|t| {
            columns
                .iter()
                .map(|c| {
                    margins[*c][t * domains[*c]..(t + 1) * domains[*c]]
                        .iter()
                        .sum::<f64>()
                })
                .sum::<f64>()
                / columns.len() as f64
        })
        .collect();
    for &c in &columns {
        let n = domains[c];
        for (t, want) in counts.iter().enumerate() {
            let row = &mut margins[c][t * n..(t + 1) * n];
            let have: f64 = row.iter().sum();
            if have > 0.0 {
                row.iter_mut().for_each(|v| *v *= want / have);
            }
        }
    }
    // Each table fitted to its columns' margins: the child's distribution given the context
    // and the parent.
    let edges = tables
        .into_iter()
        .map(|(p, c, m)| (p, c, conditionals(&m, &margins[p], &margins[c], contexts)))
        .collect();
    Ok(Model {
        domains: domains.to_vec(),
        members,
        hub,
        noisy_rows: counts.iter().map(|v| v.max(0.0)).sum(),
        contexts: counts,
        margins,
        edges,
        root,
        measurements,
    })
}

/// The tree's edges as (parent, child), each parent reached before its children, from `root`.
fn orient(tree: &[(usize, usize)], root: usize, d: usize) -> Vec<(usize, usize)> {
    let mut oriented = Vec::new();
    let mut reached = vec![false; d];
    reached[root] = true;
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(a, b) in tree {
            let c = match (a == p, b == p) {
                (true, _) => b,
                (_, true) => a,
                _ => continue,
            };
            if !reached[c] {
                reached[c] = true;
                oriented.push((p, c));
                frontier.push(c);
            }
        }
    }
    oriented
}

/// The child's distribution given the context and the parent, one row per context × parent
/// value, from a noisy table of (context, parent, child): per context, every parent row made
/// non-negative and consistent with the parent's count, then fitted to both columns' margins
/// (iterative proportional fitting).
fn conditionals(table: &[f64], parent: &[f64], child: &[f64], contexts: usize) -> Vec<Vec<f64>> {
    let (np, nc) = (parent.len() / contexts, child.len() / contexts);
    let mut out = Vec::with_capacity(contexts * np);
    for t in 0..contexts {
        let parent = &parent[t * np..(t + 1) * np];
        let child = &child[t * nc..(t + 1) * nc];
        let mut joint: Vec<Vec<f64>> = (0..np)
            .map(|a| project(&table[(t * np + a) * nc..(t * np + a + 1) * nc], parent[a]))
            .collect();
        fit_margins(&mut joint, parent, child);
        out.extend(joint.iter().map(|row| {
            if row.iter().any(|v| *v > 0.0) {
                normalized(row)
            } else {
                normalized(child)
            }
        }));
    }
    out
}

/// A pair's L1 error if it were independent within each context: the distance between its
/// table of (context, i, j) counts and the product of the estimated margins of (context, i)
/// and (context, j), scaled to the context's count. One subject's k rows move it by at most k.
fn independence_error(table: &[i64], mi: &[f64], mj: &[f64], contexts: usize) -> f64 {
    let (ni, nj) = (mi.len() / contexts, mj.len() / contexts);
    let mut err = 0.0;
    for t in 0..contexts {
        let pi = &mi[t * ni..(t + 1) * ni];
        let pj = normalized(&mj[t * nj..(t + 1) * nj]);
        for a in 0..ni {
            for b in 0..nj {
                err += (table[(t * ni + a) * nj + b] as f64 - pi[a] * pj[b]).abs();
            }
        }
    }
    err
}

/// The Euclidean projection of noisy counts `x` onto the counts that are non-negative and sum
/// to `total`: small noisy cells go to zero instead of keeping their positive noise, so a
/// sparse marginal stays sparse (post-processing).
pub fn project(x: &[f64], total: f64) -> Vec<f64> {
    if total <= 0.0 || x.is_empty() {
        return vec![0.0; x.len()];
    }
    let mut sorted = x.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let (mut cum, mut tau) = (0.0, 0.0);
    for (i, v) in sorted.iter().enumerate() {
        cum += v;
        let t = (cum - total) / (i + 1) as f64;
        if v - t > 0.0 {
            tau = t;
        }
    }
    x.iter().map(|v| (v - tau).max(0.0)).collect()
}

/// Scales the rows and columns of a non-negative `joint` in turn until its margins are close to
/// `rows` and `columns` (both non-negative; cells that are zero stay zero).
fn fit_margins(joint: &mut [Vec<f64>], rows: &[f64], columns: &[f64]) {
    let nc = columns.len();
    for _ in 0..20 {
        for (r, want) in joint.iter_mut().zip(rows) {
            let have: f64 = r.iter().sum();
            if have > 0.0 {
                let f = want.max(0.0) / have;
                r.iter_mut().for_each(|v| *v *= f);
            }
        }
        for b in 0..nc {
            let have: f64 = joint.iter().map(|r| r[b]).sum();
            if have > 0.0 {
                let f = columns[b].max(0.0) / have;
                joint.iter_mut().for_each(|r| r[b] *= f);
            }
        }
    }
}

/// Non-negative weights that sum to 1 (uniform when none is positive).
fn normalized(w: &[f64]) -> Vec<f64> {
    let pos: Vec<f64> = w.iter().map(|v| v.max(0.0)).collect();
    let s: f64 = pos.iter().sum();
    if s > 0.0 {
        pos.iter().map(|v| v / s).collect()
    } else {
        vec![1.0 / w.len().max(1) as f64; w.len()]
    }
}

fn draw(rng: &mut impl Rng, p: &[f64]) -> u32 {
    let u: f64 = rng.random();
    let mut acc = 0.0;
    for (i, w) in p.iter().enumerate() {
        acc += w;
        if u < acc {
            return i as u32;
        }
    }
    (p.len().saturating_sub(1)) as u32
}

/// `m` values drawn from the distribution `p` by controlled rounding: each value gets the
/// floor of its expected count, and one more with a chance equal to the fraction left
/// (systematic sampling: one uniform start, then points 1 apart over the fractions laid end
/// to end, so each value's chance is exactly its fraction and the extra draws add up to what
/// is left). The values are shuffled. Each value's count is within 1 of its expectation and
/// equals it on average, where independent draws would scatter it by √m.
fn allot(rng: &mut impl Rng, p: &[f64], m: usize) -> Vec<u32> {
    use rand::seq::SliceRandom;
    let expected: Vec<f64> = p.iter().map(|w| w * m as f64).collect();
    let mut counts: Vec<usize> = expected.iter().map(|e| e.floor() as usize).collect();
    let left = m.saturating_sub(counts.iter().sum());
    let mut point: f64 = rng.random();
    let (mut end, mut picked) = (0.0, 0);
    for (v, e) in expected.iter().enumerate() {
        let start = end;
        end += e - e.floor();
        // A fraction is below 1: at most one point falls in it.
        if picked < left && point >= start && point < end {
            counts[v] += 1;
            picked += 1;
            point += 1.0;
        }
    }
    // Rounding can leave the fractions' sum a hair short of the draws left.
    for _ in picked..left {
        counts[draw(rng, p) as usize] += 1;
    }
    let mut values: Vec<u32> = counts
        .iter()
        .enumerate()
        .flat_map(|(v, c)| std::iter::repeat_n(v as u32, *c))
        .collect();
    values.truncate(m);
    values.shuffle(rng);
    values
}

/// One value per row: the rows are grouped by `group` (below `groups`), and each group's
/// values are allotted from its distribution `p(group)`.
fn allot_by_group(
    rng: &mut impl Rng,
    rows: &[Vec<u32>],
    groups: usize,
    group: impl Fn(&[u32]) -> usize,
    p: impl Fn(usize) -> Vec<f64>,
) -> Vec<u32> {
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); groups];
    for (i, r) in rows.iter().enumerate() {
        members[group(r)].push(i);
    }
    let mut drawn = vec![0u32; rows.len()];
    for (g, ids) in members.iter().enumerate() {
        if ids.is_empty() {
            continue;
        }
        for (i, v) in ids.iter().zip(allot(rng, &p(g), ids.len())) {
            drawn[*i] = v;
        }
    }
    drawn
}

/// Sets column `column` of `rows` with [`allot_by_group`].
fn assign(
    rng: &mut impl Rng,
    rows: &mut [Vec<u32>],
    column: usize,
    groups: usize,
    group: impl Fn(&[u32]) -> usize,
    p: impl Fn(usize) -> Vec<f64>,
) {
    let drawn = allot_by_group(rng, rows, groups, group, p);
    for (r, v) in rows.iter_mut().zip(drawn) {
        r[column] = v;
    }
}

/// `n` rows sampled from the model with the generator seeded by `seed`: the context, the root,
/// then each child from its parent within the context, each by controlled rounding (`allot`)
/// of the rows that share what it is drawn from.
pub fn sample(model: &Model, n: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let d = model.domains.len();
    let contexts = model.contexts.len();
    let mut rows = vec![vec![0u32; d]; n];
    // The context is kept in the hub's column, or in the root's until the root is drawn.
    let slot = model.hub.unwrap_or(model.root);
    let context_p = normalized(&model.contexts);
    assign(&mut rng, &mut rows, slot, 1, |_| 0, |_| context_p.clone());
    let nr = model.domains[model.root];
    let margin = &model.margins[model.root];
    assign(
        &mut rng,
        &mut rows,
        model.root,
        contexts,
        |r| r[slot] as usize,
        |t| normalized(&margin[t * nr..(t + 1) * nr]),
    );
    let hub = model.hub;
    for (p, c, cond) in &model.edges {
        let np = model.domains[*p];
        assign(
            &mut rng,
            &mut rows,
            *c,
            contexts * np,
            |r| hub.map_or(0, |h| r[h] as usize) * np + r[*p] as usize,
            |g| cond[g].clone(),
        );
    }
    // Back to the original values: a merged value is one of its members, by weight.
    for (i, groups) in model.members.iter().enumerate() {
        if groups.iter().all(|g| g.len() == 1) {
            for r in rows.iter_mut() {
                r[i] = groups[r[i] as usize][0].0;
            }
            continue;
        }
        let member = allot_by_group(
            &mut rng,
            &rows,
            groups.len(),
            |r| r[i] as usize,
            |g| normalized(&groups[g].iter().map(|(_, w)| *w).collect::<Vec<_>>()),
        );
        for (r, m) in rows.iter_mut().zip(member) {
            r[i] = groups[r[i] as usize][m as usize].0;
        }
    }
    rows
}

/// Total-variation distance between the distributions of two count vectors.
pub fn tv(a: &[i64], b: &[i64]) -> f64 {
    let (sa, sb) = (a.iter().sum::<i64>() as f64, b.iter().sum::<i64>() as f64);
    if sa == 0.0 || sb == 0.0 {
        return if sa == sb { 0.0 } else { 1.0 };
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 / sa - *y as f64 / sb).abs())
        .sum::<f64>()
        / 2.0
}

/// (per-column 1-way TV, mean 2-way TV over all pairs) between two coded tables.
pub fn utility(real: &[Vec<u32>], synthetic: &[Vec<u32>], domains: &[usize]) -> (Vec<f64>, f64) {
    let d = domains.len();
    let one: Vec<f64> = (0..d)
        .map(|i| {
            tv(
                &one_way(real, i, domains[i]),
                &one_way(synthetic, i, domains[i]),
            )
        })
        .collect();
    let mut pairs = Vec::new();
    for i in 0..d {
        for j in i + 1..d {
            let (a, b) = ((i, domains[i]), (j, domains[j]));
            pairs.push(tv(&two_way(real, a, b), &two_way(synthetic, a, b)));
        }
    }
    let mean = if pairs.is_empty() {
        0.0
    } else {
        pairs.iter().sum::<f64>() / pairs.len() as f64
    };
    (one, mean)
}

/// Train on `train`, test on `test`: the accuracy of a naive Bayes classifier (add-one
/// smoothing) predicting column `target` from the others. The utility report's
/// train-on-synthetic / test-on-real figure.
pub fn naive_bayes_accuracy(
    train: &[Vec<u32>],
    test: &[Vec<u32>],
    target: usize,
    domains: &[usize],
) -> f64 {
    let classes = domains[target];
    let mut prior = vec![1.0f64; classes];
    // counts[column][class][value]
    let mut counts: Vec<Vec<Vec<f64>>> = domains
        .iter()
        .map(|n| vec![vec![1.0; *n]; classes])
        .collect();
    for r in train {
        let y = r[target] as usize;
        prior[y] += 1.0;
        for (i, v) in r.iter().enumerate() {
            if i != target {
                counts[i][y][*v as usize] += 1.0;
            }
        }
    }
    let log_tables: Vec<Vec<Vec<f64>>> = counts
        .iter()
        .map(|per_class| {
            per_class
                .iter()
                .map(|c| {
                    let s: f64 = c.iter().sum();
                    c.iter().map(|v| (v / s).ln()).collect()
                })
                .collect()
        })
        .collect();
    let correct = test
        .iter()
        .filter(|r| {
            let best = (0..classes)
                .map(|y| {
                    let mut score = prior[y].ln();
                    for (i, v) in r.iter().enumerate() {
                        if i != target {
                            score += log_tables[i][y][*v as usize];
                        }
                    }
                    (y, score)
                })
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(y, _)| y);
            best == Some(r[target] as usize)
        })
        .count();
    correct as f64 / test.len().max(1) as f64
}

/// Train on `train`, test on `test`: the accuracy of a logistic regression on one-hot
/// features (stochastic gradient descent, fixed order and seed) predicting the binary column
/// `target`; `None` when the target is not binary.
pub fn logistic_accuracy(
    train: &[Vec<u32>],
    test: &[Vec<u32>],
    target: usize,
    domains: &[usize],
) -> Option<f64> {
    if domains[target] != 2 {
        return None;
    }
    let offsets: Vec<usize> = domains
        .iter()
        .scan(0usize, |acc, n| {
            let o = *acc;
            *acc += n;
            Some(o)
        })
        .collect();
    let width = domains.iter().sum::<usize>() + 1;
    let features = |r: &[u32]| -> Vec<usize> {
        r.iter()
            .enumerate()
            .filter(|(i, _)| *i != target)
            .map(|(i, v)| offsets[i] + *v as usize)
            .chain([width - 1])
            .collect()
    };
    let mut w = vec![0.0f64; width];
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    for epoch in 0..15 {
        use rand::seq::SliceRandom;
        order.shuffle(&mut rng);
        let rate = 0.1 / (1.0 + epoch as f64);
        for &i in &order {
            let r = &train[i];
            let x = features(r);
            let z: f64 = x.iter().map(|j| w[*j]).sum();
            let p = 1.0 / (1.0 + (-z).exp());
            let g = p - f64::from(r[target]);
            for j in x {
                w[j] -= rate * (g + 1e-4 * w[j]);
            }
        }
    }
    let correct = test
        .iter()
        .filter(|r| {
            let z: f64 = features(r).iter().map(|j| w[*j]).sum();
            u32::from(z > 0.0) == r[target]
        })
        .count();
    Some(correct as f64 / test.len().max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain A → B → C → D over 4 values each: a child repeats its parent with
    /// probability 0.8.
    fn chain(n: usize, seed: u64) -> Vec<Vec<u32>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let mut r = vec![rng.random_range(0..4u32)];
                for i in 1..4 {
                    let prev = r[i - 1];
                    r.push(if rng.random::<f64>() < 0.8 {
                        prev
                    } else {
                        rng.random_range(0..4)
                    });
                }
                r
            })
            .collect()
    }

    /// Controlled rounding: every value's count is within 1 of its expectation, and the
    /// counts add up to the draws.
    #[test]
    fn allotted_counts_are_within_one_of_their_expectation() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..200 {
            let n = rng.random_range(1..12usize);
            let p = normalized(&(0..n).map(|_| rng.random::<f64>()).collect::<Vec<_>>());
            let m = rng.random_range(0..500usize);
            let values = allot(&mut rng, &p, m);
            assert_eq!(values.len(), m);
            for (v, pv) in p.iter().enumerate() {
                let count = values.iter().filter(|x| **x as usize == v).count() as f64;
                assert!(
                    (count - pv * m as f64).abs() < 1.0,
                    "{count} vs {}",
                    pv * m as f64
                );
            }
        }
    }

    /// Controlled rounding is unbiased: over many draws each value's mean count is its
    /// expectation, rare values included.
    #[test]
    fn allotted_counts_equal_their_expectation_on_average() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let p = [0.45, 0.3, 0.2, 0.05];
        let (m, draws) = (2usize, 40_000);
        let mut totals = [0usize; 4];
        for _ in 0..draws {
            for v in allot(&mut rng, &p, m) {
                totals[v as usize] += 1;
            }
        }
        for (v, pv) in p.iter().enumerate() {
            let mean = totals[v] as f64 / draws as f64;
            // The standard error of a mean of 40,000 counts of at most 1 apart is below 0.0025.
            assert!((mean - pv * m as f64).abs() < 0.012, "value {v}: {mean}");
        }
    }

    /// The target is the parity of two columns: no pair of columns shows it, so a tree of
    /// pairs loses it; with the target as hub, the 3-way table of the two columns with the
    /// target keeps it. A lookup classifier trained on the synthetic rows tells.
    #[test]
    fn with_the_target_as_hub_the_table_keeps_an_interaction_no_pair_shows() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        let rows: Vec<Vec<u32>> = (0..6000)
            .map(|_| {
                let (a, b, noise) = (
                    rng.random_range(0..4u32),
                    rng.random_range(0..4u32),
                    rng.random_range(0..5u32),
                );
                let flip = u32::from(rng.random::<f64>() < 0.05);
                vec![a, noise, b, ((a + b) % 2) ^ flip]
            })
            .collect();
        let domains = [4, 5, 4, 2];
        let accuracy = |hub: Option<usize>| {
            let cal = calibrate(&domains, hub, Measure::Zcdp, 2.0, 1).unwrap();
            let model = fit(&rows, &domains, &cal, 1).unwrap();
            let synth = sample(&model, rows.len(), 3);
            // Per (a, b): the synthetic rows' majority target, then scored on the real rows.
            let mut votes = [[0i64; 2]; 16];
            for r in &synth {
                votes[(r[0] * 4 + r[2]) as usize][r[3] as usize] += 1;
            }
            let right = rows
                .iter()
                .filter(|r| {
                    let v = votes[(r[0] * 4 + r[2]) as usize];
                    u32::from(v[1] > v[0]) == r[3]
                })
                .count();
            right as f64 / rows.len() as f64
        };
        let (with, without) = (accuracy(Some(3)), accuracy(None));
        assert!(with > 0.85, "with the target as hub: {with}");
        assert!(
            without < with - 0.2,
            "a tree of pairs: {without}, with the hub: {with}"
        );
    }

    #[test]
    fn the_spend_is_the_sum_of_opendps_maps_and_within_the_budget() {
        for (measure, budget) in [(Measure::Zcdp, 0.3), (Measure::Pure, 1.0)] {
            let cal = calibrate(&[4; 4], None, measure, budget, 2).unwrap();
            assert!(cal.loss <= budget * (1.0 + 1e-9), "{}", cal.loss);
            assert!(cal.loss > budget * 0.97, "{}", cal.loss);
            let model = fit(&chain(500, 1), &[4; 4], &cal, 2).unwrap();
            let spent: f64 = model.measurements.iter().map(Measurement::loss).sum();
            assert!((spent - cal.loss).abs() < 1e-12, "{spent} {}", cal.loss);
            assert_eq!(model.measurements.len(), 4 + 3 + 3);
            // Each measurement says its loss in the table's measure, and only in it.
            for m in &model.measurements {
                assert_eq!(m.rho.is_some(), measure == Measure::Zcdp, "{m:?}");
                assert_eq!(m.epsilon.is_some(), measure == Measure::Pure, "{m:?}");
            }
        }
    }

    /// In pure DP the measurements are Laplace, and at ε = 1 the margins' noise has the
    /// spread of the calibrated Laplace scale.
    #[test]
    fn in_pure_dp_the_noise_is_laplace_at_the_calibrated_scale() {
        let cal = calibrate(&[4; 4], None, Measure::Pure, 1.0, 1).unwrap();
        let model = fit(&chain(500, 2), &[4; 4], &cal, 1).unwrap();
        assert!(model.measurements[0].mechanism.starts_with("Laplace"));
        // The spread of OpenDP's Laplace noise on counts at the calibrated scale: variance 2b².
        let b = cal.sigma_one[0];
        let (draw, _) = noise(Measure::Pure, b, 1).unwrap();
        let zeros = vec![0i64; 4000];
        let x = draw(&zeros).unwrap();
        let var = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len() as f64;
        let want = 2.0 * b * b;
        assert!(
            (var / want - 1.0).abs() < 0.15,
            "variance {var}, 2b² = {want}"
        );
    }

    /// At a high budget, in zCDP and in pure DP, the tree is the generating chain.
    #[test]
    fn at_a_high_budget_the_tree_is_the_chain() {
        let rows = chain(5000, 2);
        for (measure, budget) in [(Measure::Zcdp, 50.0), (Measure::Pure, 400.0)] {
            let cal = calibrate(&[4; 4], None, measure, budget, 1).unwrap();
            let model = fit(&rows, &[4; 4], &cal, 1).unwrap();
            let mut edges: Vec<(usize, usize)> = model
                .edges
                .iter()
                .map(|(p, c, _)| ((*p).min(*c), (*p).max(*c)))
                .collect();
            edges.sort();
            assert_eq!(edges, [(0, 1), (1, 2), (2, 3)], "{measure:?}");
        }
    }

    /// One subject with 10,000 rows moves the noiseless marginals by at most the bound.
    #[test]
    fn a_subject_with_many_rows_moves_a_marginal_by_at_most_k() {
        let k = 3u32;
        let others: Vec<(u64, Vec<u32>)> = (0..200)
            .map(|i| (i as u64, vec![(i % 4) as u32, 0]))
            .collect();
        let mut with = others.clone();
        with.extend((0..10_000).map(|_| (9_999u64, vec![1u32, 1])));
        let (a, b) = (bound_rows(&others, k), bound_rows(&with, k));
        let l1 = |x: Vec<i64>, y: Vec<i64>| -> i64 {
            x.iter().zip(&y).map(|(p, q)| (p - q).abs()).sum()
        };
        assert!(l1(one_way(&a, 0, 4), one_way(&b, 0, 4)) <= i64::from(k));
        assert!(l1(two_way(&a, (0, 4), (1, 2)), two_way(&b, (0, 4), (1, 2))) <= i64::from(k));
    }

    /// The report's classifiers learn a target that a column decides, and refuse a target
    /// that is not binary (logistic regression).
    #[test]
    fn the_classifiers_learn_a_decided_target() {
        let rows: Vec<Vec<u32>> = chain(2000, 5)
            .into_iter()
            .map(|mut r| {
                r.push(u32::from(r[0] >= 2));
                r
            })
            .collect();
        let domains = [4, 4, 4, 4, 2];
        let (train, test) = rows.split_at(1500);
        assert!(naive_bayes_accuracy(train, test, 4, &domains) > 0.95);
        assert!(logistic_accuracy(train, test, 4, &domains).unwrap() > 0.95);
        assert_eq!(logistic_accuracy(train, test, 0, &domains), None);
    }

    #[test]
    fn the_tree_model_beats_independent_marginals_on_dependent_data() {
        let rows = chain(5000, 3);
        let cal = calibrate(&[4; 4], None, Measure::Zcdp, 0.5, 1).unwrap();
        let model = fit(&rows, &[4; 4], &cal, 1).unwrap();
        let synth = sample(&model, rows.len(), 9);
        let (_, tree_tv) = utility(&rows, &synth, &[4; 4]);
        // The best independent model: the exact 1-way marginals, sampled independently.
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let p: Vec<Vec<f64>> = (0..4)
            .map(|i| {
                let c = one_way(&rows, i, 4);
                normalized(&c.iter().map(|v| *v as f64).collect::<Vec<_>>())
            })
            .collect();
        let independent: Vec<Vec<u32>> = (0..rows.len())
            .map(|_| p.iter().map(|pi| draw(&mut rng, pi)).collect())
            .collect();
        let (_, indep_tv) = utility(&rows, &independent, &[4; 4]);
        assert!(
            tree_tv < indep_tv,
            "tree {tree_tv} vs independent {indep_tv}"
        );
        // And sampling is reproducible.
        assert_eq!(sample(&model, 10, 9), sample(&model, 10, 9));
    }
}
