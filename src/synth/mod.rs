//! Differentially private synthetic tables: MST's method on OpenDP's measurements.
//!
//! The rows are categorical codes over public domains (a column's manifest `values`, or the
//! bins the pipeline declares for a number). Each subject's rows are first bounded to
//! `k` (`bound_rows`), so adding or removing one subject moves any histogram by at most `k`
//! in L1 and L2 norm, and any L1-error score by at most `k`. Then, all in zero-concentrated DP:
//! 1. every column's 1-way marginal is measured with OpenDP's (discrete) Gaussian mechanism;
//! 2. a maximum spanning tree over the columns is chosen privately, edge by edge (Kruskal),
//!    each edge with OpenDP's noisy max over the candidates' scores: the L1 distance between a
//!    pair's 2-way marginal and the one the noisy 1-way marginals imply if they were
//!    independent (MST's weights);
//! 3. the 2-way marginal of every tree edge is measured with the Gaussian mechanism;
//! 4. the model is estimated from the measurements (post-processing): each column's 1-way
//!    counts are the inverse-variance average of its own measurement and the margins of the
//!    2-way tables it is in; each noisy table is projected onto non-negative counts and fitted
//!    to both its columns' 1-way counts (iterative proportional fitting);
//! 5. rows are sampled from the tree (root from its 1-way, each child from its parent's row of
//!    the fitted table), with `rand`.
//!
//! The budget ρ is split 35% / 5% / 60% between the three kinds of measurement. Every noise scale
//! is fixed before the data is seen; the privacy spent is the sum of OpenDP's privacy maps of
//! the measurements, which the run spends in the ledger before a single measurement is made.
//! Depends on: OpenDP (measurements), `rand` (sampling from the private model only).

use std::collections::HashMap;

use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::{make_gaussian, make_noisy_max};
use opendp::measures::ZeroConcentratedDivergence;
use opendp::metrics::{L2Distance, LInfDistance};
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

/// One measurement of the model, as lineage records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// `1-way`, `select` or `2-way`.
    pub kind: String,
    /// The column indexes it is about (for `select`: the edge chosen).
    pub columns: Vec<usize>,
    /// OpenDP's mechanism and its noise scale.
    pub mechanism: String,
    pub scale: f64,
    /// OpenDP's privacy map at one subject (k rows).
    pub rho: f64,
}

impl Measurement {
    /// A Gaussian measurement of the marginal of `columns` (1 or 2 of them).
    fn gaussian(columns: Vec<usize>, scale: f64, k: u32) -> Result<Measurement, SynthError> {
        Ok(Measurement {
            kind: format!("{}-way", columns.len()),
            columns,
            mechanism: "Gaussian (OpenDP make_gaussian, discrete)".into(),
            scale,
            rho: gaussian_rho(scale, k)?,
        })
    }
}

/// The calibrated measurements, before any data is read: their scales and total ρ.
#[derive(Debug, Clone)]
pub struct Calibration {
    pub sigma_one: f64,
    pub sigma_two: f64,
    pub select_scale: f64,
    /// The total ρ: the sum of OpenDP's maps of every measurement.
    pub rho: f64,
}

fn gaussian(sigma: f64) -> Result<impl Fn(&Vec<i64>) -> Result<Vec<i64>, SynthError>, SynthError> {
    let m = make_gaussian::<_, _, ZeroConcentratedDivergence>(
        VectorDomain::new(AtomDomain::<i64>::default()),
        L2Distance::<i64>::default(),
        sigma,
        None,
    )
    .map_err(odp)?;
    Ok(move |x: &Vec<i64>| m.invoke(x).map_err(odp))
}

fn gaussian_rho(sigma: f64, k: u32) -> Result<f64, SynthError> {
    make_gaussian::<_, _, ZeroConcentratedDivergence>(
        VectorDomain::new(AtomDomain::<i64>::default()),
        L2Distance::<i64>::default(),
        sigma,
        None,
    )
    .map_err(odp)?
    .map(&i64::from(k))
    .map_err(odp)
}

fn noisy_max_rho(scale: f64, k: u32) -> Result<f64, SynthError> {
    make_noisy_max(
        VectorDomain::new(AtomDomain::<f64>::new_non_nan()),
        LInfDistance::<f64>::default(),
        ZeroConcentratedDivergence,
        scale,
        false,
    )
    .map_err(odp)?
    .map(&f64::from(k))
    .map_err(odp)
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

/// Scales for `d` columns under budget `rho`, each subject bounded to `k` rows.
pub fn calibrate(d: usize, rho: f64, k: u32) -> Result<Calibration, SynthError> {
    if d == 0 || rho.is_nan() || rho <= 0.0 || k == 0 {
        return Err(SynthError::Bad(
            "a synthetic table needs columns, ρ > 0 and k ≥ 1".into(),
        ));
    }
    let edges = d - 1;
    let (one, select, two) = if edges == 0 {
        (rho, 0.0, 0.0)
    } else {
        // Measured on the Adult split at ε = 1 (`cargo bench --bench synth`, median 2-way
        // TV): 0.0594 with 35/5/60, 0.0600 with 30/10/60, 0.0607 with 45/10/45, 0.0626 with
        // 25/5/70; the 1-way marginals also gain from the 2-way tables (see `fit`).
        (rho * 0.35, rho * 0.05, rho * 0.60)
    };
    let sigma_one = scale_for(one / d as f64, |s| gaussian_rho(s, k))?;
    let (select_scale, sigma_two) = if edges == 0 {
        (0.0, 0.0)
    } else {
        (
            scale_for(select / edges as f64, |s| noisy_max_rho(s, k))?,
            scale_for(two / edges as f64, |s| gaussian_rho(s, k))?,
        )
    };
    let rho_one = d as f64 * gaussian_rho(sigma_one, k)?;
    let (rho_select, rho_two) = if edges == 0 {
        (0.0, 0.0)
    } else {
        (
            edges as f64 * noisy_max_rho(select_scale, k)?,
            edges as f64 * gaussian_rho(sigma_two, k)?,
        )
    };
    Ok(Calibration {
        sigma_one,
        sigma_two,
        select_scale,
        rho: rho_one + rho_select + rho_two,
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
    let mut c = vec![0i64; n];
    for r in rows {
        c[r[i] as usize] += 1;
    }
    c
}

/// Counts of the value pairs of columns `i` and `j`, row-major (`i`'s value times `nj`).
pub fn two_way(rows: &[Vec<u32>], (i, ni): (usize, usize), (j, nj): (usize, usize)) -> Vec<i64> {
    let mut c = vec![0i64; ni * nj];
    for r in rows {
        c[r[i] as usize * nj + r[j] as usize] += 1;
    }
    c
}

/// A fitted tree model: the noisy marginals it samples from, over compressed domains.
#[derive(Debug, Clone)]
pub struct Model {
    /// The compressed domain sizes.
    pub domains: Vec<usize>,
    /// Per column, the original values each compressed value stands for, and their weights
    /// (the clipped noisy 1-way counts of the original values).
    pub members: Vec<Vec<Vec<(u32, f64)>>>,
    pub one_way: Vec<Vec<f64>>,
    /// (parent, child, noisy 2-way marginal of parent × child, row-major).
    pub edges: Vec<(usize, usize, Vec<f64>)>,
    /// The root of the tree, sampled first.
    pub root: usize,
    /// The noisy row count (the sum of the root's noisy 1-way marginal).
    pub noisy_rows: f64,
    pub measurements: Vec<Measurement>,
}

/// Fits the model to `rows` (codes within `domains`, already bounded) with the scales of `cal`.
pub fn fit(
    rows: &[Vec<u32>],
    domains: &[usize],
    cal: &Calibration,
    k: u32,
) -> Result<Model, SynthError> {
    let d = domains.len();
    let mut measurements = Vec::new();
    // 1. Noisy 1-way marginals.
    let mut one = Vec::new();
    let noise_one = gaussian(cal.sigma_one)?;
    for (i, n) in domains.iter().enumerate() {
        let noisy = noise_one(&one_way(rows, i, *n))?;
        one.push(noisy.iter().map(|v| *v as f64).collect::<Vec<f64>>());
        measurements.push(Measurement::gaussian(vec![i], cal.sigma_one, k)?);
    }
    let total: f64 = one
        .iter()
        .map(|m| m.iter().map(|v| v.max(0.0)).sum::<f64>())
        .sum::<f64>()
        / d as f64;
    // MST's domain compression: values whose noisy count is below 3σ are merged into one, so
    // the 2-way tables measure what the 1-way ones say is there. The map depends only on the
    // noisy counts (post-processing).
    let threshold = 3.0 * cal.sigma_one;
    let projected: Vec<Vec<f64>> = one
        .iter()
        .map(|m| project(m, m.iter().sum::<f64>()))
        .collect();
    let mut compress: Vec<Vec<u32>> = Vec::new();
    let mut members: Vec<Vec<Vec<(u32, f64)>>> = Vec::new();
    let mut compressed_one: Vec<Vec<f64>> = Vec::new();
    for (counts, fitted) in one.iter().zip(&projected) {
        let mut map = vec![0u32; counts.len()];
        let mut groups: Vec<Vec<(u32, f64)>> = Vec::new();
        let mut rare: Vec<(u32, f64)> = Vec::new();
        for (v, c) in counts.iter().enumerate() {
            if *c >= threshold {
                map[v] = groups.len() as u32;
                groups.push(vec![(v as u32, fitted[v])]);
            } else {
                rare.push((v as u32, fitted[v]));
            }
        }
        if !rare.is_empty() {
            for (v, _) in &rare {
                map[*v as usize] = groups.len() as u32;
            }
            groups.push(rare);
        }
        compressed_one.push(
            groups
                .iter()
                .map(|g| g.iter().map(|(v, _)| fitted[*v as usize]).sum())
                .collect(),
        );
        compress.push(map);
        members.push(groups);
    }
    let sizes: Vec<usize> = members.iter().map(Vec::len).collect();
    let coded: Vec<Vec<u32>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(i, v)| compress[i][*v as usize])
                .collect()
        })
        .collect();
    let (rows, domains, one) = (&coded, &sizes[..], compressed_one);
    // 2. The spanning tree, edge by edge, each chosen by noisy max over the candidates'
    // L1 errors under independence.
    let mut component: Vec<usize> = (0..d).collect();
    let find = |c: &Vec<usize>, mut x: usize| {
        while c[x] != x {
            x = c[x];
        }
        x
    };
    let mut tree: Vec<(usize, usize)> = Vec::new();
    if d > 1 {
        let select = make_noisy_max(
            VectorDomain::new(AtomDomain::<f64>::new_non_nan()),
            LInfDistance::<f64>::default(),
            ZeroConcentratedDivergence,
            cal.select_scale,
            false,
        )
        .map_err(odp)?;
        for _ in 0..d - 1 {
            let candidates: Vec<(usize, usize)> = (0..d)
                .flat_map(|i| (i + 1..d).map(move |j| (i, j)))
                .filter(|(i, j)| find(&component, *i) != find(&component, *j))
                .collect();
            let scores: Vec<f64> = candidates
                .iter()
                .map(|(i, j)| independence_error(rows, &one, domains, *i, *j, total))
                .collect();
            let pick = select.invoke(&scores).map_err(odp)?;
            let (i, j) = candidates[pick];
            let (ri, rj) = (find(&component, i), find(&component, j));
            component[ri] = rj;
            tree.push((i, j));
            measurements.push(Measurement {
                kind: "select".into(),
                columns: vec![i, j],
                mechanism: "noisy max (OpenDP make_noisy_max, Gumbel)".into(),
                scale: cal.select_scale,
                rho: noisy_max_rho(cal.select_scale, k)?,
            });
        }
    }
    // 3. Noisy 2-way marginals of the tree's edges, oriented from the root (column 0).
    let root = 0;
    let mut oriented = Vec::new();
    let mut reached = vec![false; d];
    reached[root] = true;
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (a, b) in &tree {
            let c = if *a == p {
                *b
            } else if *b == p {
                *a
            } else {
                continue;
            };
            if !reached[c] {
                reached[c] = true;
                oriented.push((p, c));
                frontier.push(c);
            }
        }
    }
    let noise_two = gaussian(cal.sigma_two)?;
    let mut edges = Vec::new();
    for (p, c) in oriented {
        let noisy = noise_two(&two_way(rows, (p, domains[p]), (c, domains[c])))?;
        edges.push((p, c, noisy.iter().map(|v| *v as f64).collect::<Vec<f64>>()));
        measurements.push(Measurement::gaussian(vec![p, c], cal.sigma_two, k)?);
    }
    // Each column's 1-way counts, measured once directly and once more in every 2-way table
    // it is in (summed over the other column, with that many times the variance): the
    // inverse-variance average of the measurements, projected onto non-negative counts that
    // sum to the direct measurement's total (post-processing).
    let var_one = cal.sigma_one * cal.sigma_one;
    let var_two = cal.sigma_two * cal.sigma_two;
    let mut one = one;
    for (c, counts) in one.iter_mut().enumerate() {
        let total: f64 = counts.iter().sum();
        let mut sum: Vec<f64> = counts.iter().map(|v| v / var_one).collect();
        let mut weight = 1.0 / var_one;
        for (p, ch, m) in &edges {
            let (other, as_row) = if *p == c {
                (*ch, true)
            } else if *ch == c {
                (*p, false)
            } else {
                continue;
            };
            let (np, nc) = (domains[*p], domains[*ch]);
            let w = 1.0 / (domains[other] as f64 * var_two);
            for (v, s) in sum.iter_mut().enumerate() {
                let margin: f64 = if as_row {
                    m[v * nc..(v + 1) * nc].iter().sum()
                } else {
                    (0..np).map(|a| m[a * nc + v]).sum()
                };
                *s += margin * w;
            }
            weight += w;
        }
        let combined: Vec<f64> = sum.iter().map(|s| s / weight).collect();
        *counts = project(&combined, total);
    }
    let noisy_rows = one[root].iter().map(|v| v.max(0.0)).sum();
    Ok(Model {
        domains: domains.to_vec(),
        members,
        one_way: one,
        edges,
        root,
        noisy_rows,
        measurements,
    })
}

/// MST's weight of a pair: the L1 distance between its 2-way marginal and the product of the
/// noisy 1-way marginals (scaled to `total` rows). One subject's k rows move it by at most k.
fn independence_error(
    rows: &[Vec<u32>],
    one: &[Vec<f64>],
    domains: &[usize],
    i: usize,
    j: usize,
    total: f64,
) -> f64 {
    let (ni, nj) = (domains[i], domains[j]);
    let real = two_way(rows, (i, ni), (j, nj));
    let pi = normalized(&one[i]);
    let pj = normalized(&one[j]);
    let mut err = 0.0;
    for a in 0..ni {
        for b in 0..nj {
            err += (real[a * nj + b] as f64 - total * pi[a] * pj[b]).abs();
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

/// `n` rows sampled from the model with the generator seeded by `seed`.
pub fn sample(model: &Model, n: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let d = model.domains.len();
    let root_p = normalized(&model.one_way[model.root]);
    // P(child | parent = a), per edge and parent value.
    let conditionals: Vec<(usize, usize, Vec<Vec<f64>>)> = model
        .edges
        .iter()
        .map(|(p, c, m)| {
            let (np, nc) = (model.domains[*p], model.domains[*c]);
            // The noisy joint, each row made non-negative and consistent with the parent's
            // count, then fitted to both 1-way marginals (iterative proportional fitting).
            let mut joint: Vec<Vec<f64>> = (0..np)
                .map(|a| project(&m[a * nc..(a + 1) * nc], model.one_way[*p][a]))
                .collect();
            fit_margins(&mut joint, &model.one_way[*p], &model.one_way[*c]);
            let rows = joint
                .iter()
                .map(|row| {
                    if row.iter().any(|v| *v > 0.0) {
                        normalized(row)
                    } else {
                        normalized(&model.one_way[*c])
                    }
                })
                .collect();
            (*p, *c, rows)
        })
        .collect();
    (0..n)
        .map(|_| {
            // The tree spans every column: the root, then each child from its parent.
            let mut row = vec![0u32; d];
            row[model.root] = draw(&mut rng, &root_p);
            for (p, c, cond) in &conditionals {
                row[*c] = draw(&mut rng, &cond[row[*p] as usize]);
            }
            // Back to the original values: a merged value is one of its members, by weight.
            for (i, v) in row.iter_mut().enumerate() {
                let group = &model.members[i][*v as usize];
                *v = if group.len() == 1 {
                    group[0].0
                } else {
                    let w: Vec<f64> = group.iter().map(|(_, w)| *w).collect();
                    group[draw(&mut rng, &normalized(&w)) as usize].0
                };
            }
            row
        })
        .collect()
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

    #[test]
    fn the_spend_is_the_sum_of_opendps_maps_and_within_the_budget() {
        let cal = calibrate(4, 0.3, 2).unwrap();
        assert!(cal.rho <= 0.3 * (1.0 + 1e-9), "{}", cal.rho);
        assert!(cal.rho > 0.29, "{}", cal.rho);
        let model = fit(&chain(500, 1), &[4; 4], &cal, 2).unwrap();
        let spent: f64 = model.measurements.iter().map(|m| m.rho).sum();
        assert!((spent - cal.rho).abs() < 1e-12, "{spent} {}", cal.rho);
        assert_eq!(model.measurements.len(), 4 + 3 + 3);
    }

    #[test]
    fn at_a_high_budget_the_tree_is_the_chain() {
        let rows = chain(5000, 2);
        let cal = calibrate(4, 50.0, 1).unwrap();
        let model = fit(&rows, &[4; 4], &cal, 1).unwrap();
        let mut edges: Vec<(usize, usize)> = model
            .edges
            .iter()
            .map(|(p, c, _)| ((*p).min(*c), (*p).max(*c)))
            .collect();
        edges.sort();
        assert_eq!(edges, [(0, 1), (1, 2), (2, 3)]);
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
        let cal = calibrate(4, 0.5, 1).unwrap();
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
