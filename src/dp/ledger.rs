//! The privacy budget ledger: every release's spend per dataset, checked against the dataset's
//! cap and recorded in one write-locked transaction.
//!
//! The ledger lives in the lineage SQLite file (table `budget_ledger`), so one file answers
//! "how much of dataset X's budget is gone, and which runs spent it". A run asks for all its
//! releases at once: under `BEGIN IMMEDIATE` the ledger sums what the dataset has spent, adds
//! the request, compares with the cap, and either records every spend or none. SQLite's write
//! lock makes concurrent runs queue, so two runs can never both fit into the last piece of a
//! budget. The spend is committed before any release is computed or written.
//!
//! The table belongs to the lineage store, which creates it, chains its entries and checks
//! them ([`crate::lineage::ledger_table`]). The ledger opens the store the way a run does
//! (same checks of schema and anchor) and spends only after the store has checked, under the
//! same lock, that no entry was edited, deleted or rewritten; `privprep budget` reads only a
//! ledger that passes the same check. A ledger that fails it is refused, never repaired.
//!
//! # Composition
//! - Cap in pure ε: only pure-ε releases; spends add up (basic composition).
//! - Cap in ρ (zero-concentrated DP): zCDP releases add their ρ; a pure-ε release counts as
//!   ρ = ε²/2 (ε-DP implies ε²/2-zCDP). (ε, δ) releases cannot be expressed in ρ and are refused.
//! - Cap in (ε, δ): pure and (ε, δ) releases add their ε and δ; the zCDP releases' ρ are added
//!   first and the total converted with ε = ρ + 2·√(ρ·ln(1/δ′)) (Bun & Steinke 2016, Prop. 1.3),
//!   where δ′ is whatever δ the cap has left after the (ε, δ) releases. The guarantee of the
//!   whole history is then (Σε + ε(ρ, δ′), Σδ + δ′).
//!
//! Depends on `lineage::store` (where the ledger's entries are kept and checked).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::lineage::ledger_table::{LedgerEntry, StoredLedgerEntry};
use crate::lineage::store::{LineageError, Store};

/// Slack for floating-point sums: five spends of 0.2 must fit a cap of 1.0.
const SLACK: f64 = 1e-9;

/// A privacy loss, as one release spends it or a cap allows it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "measure", rename_all = "snake_case")]
pub enum Loss {
    /// Pure differential privacy.
    Pure { epsilon: f64 },
    /// Approximate differential privacy.
    Approx { epsilon: f64, delta: f64 },
    /// Zero-concentrated differential privacy.
    Zcdp { rho: f64 },
}

impl Loss {
    /// The measure, as lineage records it.
    pub fn kind(&self) -> crate::lineage::record::Measure {
        use crate::lineage::record::Measure;
        match self {
            Loss::Pure { .. } => Measure::Pure,
            Loss::Approx { .. } => Measure::Approx,
            Loss::Zcdp { .. } => Measure::Zcdp,
        }
    }

    /// `pure`, `approx` or `zcdp`.
    pub fn measure(&self) -> &'static str {
        match self {
            Loss::Pure { .. } => "pure",
            Loss::Approx { .. } => "approx",
            Loss::Zcdp { .. } => "zcdp",
        }
    }

    /// (ε, δ, ρ) columns of the ledger (zero where the measure has none).
    fn columns(&self) -> (f64, f64, f64) {
        match *self {
            Loss::Pure { epsilon } => (epsilon, 0.0, 0.0),
            Loss::Approx { epsilon, delta } => (epsilon, delta, 0.0),
            Loss::Zcdp { rho } => (0.0, 0.0, rho),
        }
    }

    fn from_columns(measure: &str, epsilon: f64, delta: f64, rho: f64) -> Option<Loss> {
        match measure {
            "pure" => Some(Loss::Pure { epsilon }),
            "approx" => Some(Loss::Approx { epsilon, delta }),
            "zcdp" => Some(Loss::Zcdp { rho }),
            _ => None,
        }
    }
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Loss::Pure { epsilon } => write!(f, "ε = {epsilon}"),
            Loss::Approx { epsilon, delta } => write!(f, "(ε = {epsilon}, δ = {delta:e})"),
            Loss::Zcdp { rho } => write!(f, "ρ = {rho}"),
        }
    }
}

/// ε of ρ-zCDP at δ: ρ + 2·√(ρ·ln(1/δ)); infinite for δ ≤ 0 (zCDP gives no pure guarantee).
pub fn zcdp_epsilon(rho: f64, delta: f64) -> f64 {
    if rho <= 0.0 {
        return 0.0;
    }
    if delta <= 0.0 || delta >= 1.0 {
        return f64::INFINITY;
    }
    rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt()
}

/// What a dataset has spent, in the terms of its cap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spent {
    /// Σε of pure and (ε, δ) releases (plus converted zCDP under an (ε, δ) cap).
    pub epsilon: f64,
    /// Σδ.
    pub delta: f64,
    /// Σρ (plus ε²/2 of pure releases under a ρ cap).
    pub rho: f64,
}

/// Sums `losses` without a cap: ε and δ of pure and (ε, δ) releases, ρ of zCDP ones, each
/// on its own.
pub fn totals(losses: &[Loss]) -> Spent {
    let mut s = Spent {
        epsilon: 0.0,
        delta: 0.0,
        rho: 0.0,
    };
    for l in losses {
        let (e, d, r) = l.columns();
        s.epsilon += e;
        s.delta += d;
        s.rho += r;
    }
    s
}

/// Sums `losses` in the terms of `cap`; `Err` names a loss the cap cannot account for.
pub fn compose(cap: &Loss, losses: &[Loss]) -> Result<Spent, String> {
    let mut s = Spent {
        epsilon: 0.0,
        delta: 0.0,
        rho: 0.0,
    };
    for l in losses {
        match (cap, l) {
            (Loss::Pure { .. }, Loss::Pure { epsilon }) => s.epsilon += epsilon,
            (Loss::Pure { .. }, other) => {
                return Err(format!(
                    "the dataset's cap is pure ε, which cannot account for a {} release ({other})",
                    other.measure()
                ))
            }
            (Loss::Zcdp { .. }, Loss::Zcdp { rho }) => s.rho += rho,
            (Loss::Zcdp { .. }, Loss::Pure { epsilon }) => s.rho += epsilon * epsilon / 2.0,
            (Loss::Zcdp { .. }, other) => {
                return Err(format!(
                "the dataset's cap is zCDP ρ, which cannot account for an (ε, δ) release ({other})"
            ))
            }
            (Loss::Approx { .. }, Loss::Pure { epsilon }) => s.epsilon += epsilon,
            (Loss::Approx { .. }, Loss::Approx { epsilon, delta }) => {
                s.epsilon += epsilon;
                s.delta += delta;
            }
            (Loss::Approx { .. }, Loss::Zcdp { rho }) => s.rho += rho,
        }
    }
    if let Loss::Approx {
        delta: cap_delta, ..
    } = cap
    {
        if s.rho > 0.0 {
            // The zCDP part takes whatever δ the cap has left.
            let left = cap_delta - s.delta;
            s.epsilon += zcdp_epsilon(s.rho, left);
            s.delta = s.delta.max(0.0) + left.max(0.0);
        }
    }
    Ok(s)
}

/// True when `spent` is within `cap`.
pub fn fits(cap: &Loss, spent: &Spent) -> bool {
    // Relative slack only: a tiny δ cap gets a tiny tolerance.
    let le = |a: f64, b: f64| a <= b * (1.0 + SLACK);
    match *cap {
        Loss::Pure { epsilon } => le(spent.epsilon, epsilon),
        Loss::Approx { epsilon, delta } => le(spent.epsilon, epsilon) && le(spent.delta, delta),
        Loss::Zcdp { rho } => le(spent.rho, rho),
    }
}

/// What is left of a cap after `spent` (never negative).
pub fn remaining(cap: &Loss, spent: &Spent) -> Loss {
    match *cap {
        Loss::Pure { epsilon } => Loss::Pure {
            epsilon: (epsilon - spent.epsilon).max(0.0),
        },
        Loss::Approx { epsilon, delta } => Loss::Approx {
            epsilon: (epsilon - spent.epsilon).max(0.0),
            delta: (delta - spent.delta).max(0.0),
        },
        Loss::Zcdp { rho } => Loss::Zcdp {
            rho: (rho - spent.rho).max(0.0),
        },
    }
}

/// One spend a run asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendRequest {
    pub release: String,
    pub loss: Loss,
}

/// Why the ledger refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("privacy budget of dataset `{dataset}` would be exceeded: this run asks for {asked} on top of {spent_desc}, but the cap is {cap} and only {remaining} remains\n  = hint: nothing was released; lower the releases' ε/ρ, release fewer statistics, or raise the cap in the dataset's manifest if the data owner agrees")]
    Exceeded {
        dataset: String,
        asked: String,
        spent_desc: String,
        cap: Loss,
        remaining: Loss,
    },
    #[error("privacy budget of dataset `{dataset}`: {message}\n  = hint: release with the measure the cap is expressed in")]
    Incompatible { dataset: String, message: String },
    /// The store could not be opened, read or written, or failed its checks.
    #[error(transparent)]
    Store(#[from] LineageError),
    #[error("budget ledger in lineage store {}: entry {id} has measure `{measure}`, which this privprep does not know\n  = hint: the entry was written by a newer privprep; upgrade privprep (nothing is spent on a ledger that cannot be summed)", .path.display())]
    UnknownMeasure {
        path: PathBuf,
        id: i64,
        measure: String,
    },
    #[error("run {run_id} already has a record in lineage store {}, so it can no longer spend budget\n  = hint: this is a bug in privprep: a run spends before its record is appended", .path.display())]
    RunAlreadyRecorded { path: PathBuf, run_id: String },
}

/// One dataset's budget, as `privprep budget` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetBudget {
    pub dataset_id: String,
    pub privacy_unit: String,
    /// The cap recorded with the latest spend (none when the manifest sets no cap).
    pub cap: Option<Loss>,
    pub spent: Spent,
    pub remaining: Option<Loss>,
    pub releases: u64,
    pub runs: u64,
}

/// The ledger in a lineage store file.
pub struct Ledger {
    store: Store,
}

impl Ledger {
    /// Opens the lineage store at `path` (as [`Store::open`]: created if new, refused when
    /// missing or rolled back against its anchor). The ledger's table is the store's; it is
    /// never created here.
    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        Ok(Ledger {
            store: Store::open(path)?,
        })
    }

    /// Checks `requests` against `cap` together with everything `dataset` has spent, and
    /// records them all, in one `BEGIN IMMEDIATE` transaction. Either every spend is
    /// committed or none is. Refuses a ledger that fails its integrity check
    /// ([`LineageError::LedgerBroken`]) or a store that no longer matches its anchor.
    pub fn spend(
        &mut self,
        dataset: &str,
        privacy_unit: &str,
        run_id: &str,
        cap: Option<&Loss>,
        requests: &[SpendRequest],
    ) -> Result<Spent, LedgerError> {
        let path = self.store.path().to_path_buf();
        let tx = self.store.ledger_transaction()?;
        if tx.has_record(run_id)? {
            return Err(LedgerError::RunAlreadyRecorded {
                path,
                run_id: run_id.into(),
            });
        }
        let mut losses = losses(&path, &tx.entries(dataset)?)?;
        let incompatible = |message| LedgerError::Incompatible {
            dataset: dataset.into(),
            message,
        };
        let before = match cap {
            Some(cap) => compose(cap, &losses).map_err(incompatible)?,
            None => totals(&losses),
        };
        losses.extend(requests.iter().map(|r| r.loss));
        let after = match cap {
            Some(cap) => compose(cap, &losses).map_err(incompatible)?,
            None => totals(&losses),
        };
        if let Some(cap) = cap.filter(|cap| !fits(cap, &after)) {
            let asked: Vec<String> = requests.iter().map(|r| r.loss.to_string()).collect();
            return Err(LedgerError::Exceeded {
                dataset: dataset.into(),
                asked: asked.join(" + "),
                spent_desc: describe_spent(cap, &before),
                cap: *cap,
                remaining: remaining(cap, &before),
            });
        }
        let recorded_at = chrono::Utc::now().to_rfc3339();
        let cap_text = match cap {
            Some(cap) => serde_json::to_string(cap).unwrap_or_default(),
            None => "none".to_string(),
        };
        for r in requests {
            let (epsilon, delta, rho) = r.loss.columns();
            tx.insert(&LedgerEntry {
                dataset_id: dataset.into(),
                privacy_unit: privacy_unit.into(),
                run_id: run_id.into(),
                release: r.release.clone(),
                measure: r.loss.measure().into(),
                epsilon,
                delta,
                rho,
                cap: cap_text.clone(),
                recorded_at: recorded_at.clone(),
            })?;
        }
        tx.commit()?;
        Ok(after)
    }

    /// Every dataset in the ledger (or one), with spent and remaining budget. Fails on a
    /// ledger that does not pass its integrity check rather than show numbers from it.
    pub fn budgets(&self, dataset: Option<&str>) -> Result<Vec<DatasetBudget>, LedgerError> {
        let path = self.store.path();
        let mut by_dataset: BTreeMap<String, Vec<StoredLedgerEntry>> = BTreeMap::new();
        for e in self.store.ledger_entries(dataset)? {
            by_dataset
                .entry(e.entry.dataset_id.clone())
                .or_default()
                .push(e);
        }
        let mut out = Vec::new();
        for (id, entries) in by_dataset {
            // The unit and cap in force are the latest spend's.
            let Some(latest) = entries.last() else {
                continue;
            };
            let cap = serde_json::from_str::<Loss>(&latest.entry.cap).ok();
            let losses = losses(path, &entries)?;
            let spent = match &cap {
                Some(cap) => compose(cap, &losses).unwrap_or_else(|_| totals(&losses)),
                None => totals(&losses),
            };
            let mut runs: Vec<&str> = entries.iter().map(|e| e.entry.run_id.as_str()).collect();
            runs.sort_unstable();
            runs.dedup();
            out.push(DatasetBudget {
                dataset_id: id,
                privacy_unit: latest.entry.privacy_unit.clone(),
                remaining: cap.as_ref().map(|c| remaining(c, &spent)),
                cap,
                spent,
                releases: entries.len() as u64,
                runs: runs.len() as u64,
            });
        }
        Ok(out)
    }
}

/// The losses of `entries`; a spend that cannot be read is an error, never skipped (that would
/// undercount the budget).
fn losses(path: &Path, entries: &[StoredLedgerEntry]) -> Result<Vec<Loss>, LedgerError> {
    entries
        .iter()
        .map(|e| {
            let x = &e.entry;
            Loss::from_columns(&x.measure, x.epsilon, x.delta, x.rho).ok_or_else(|| {
                LedgerError::UnknownMeasure {
                    path: path.to_path_buf(),
                    id: e.id,
                    measure: x.measure.clone(),
                }
            })
        })
        .collect()
}

fn describe_spent(cap: &Loss, spent: &Spent) -> String {
    match cap {
        Loss::Pure { .. } => format!("ε = {} already spent", round(spent.epsilon)),
        Loss::Approx { .. } => format!(
            "(ε = {}, δ = {:e}) already spent",
            round(spent.epsilon),
            spent.delta
        ),
        Loss::Zcdp { .. } => format!("ρ = {} already spent", round(spent.rho)),
    }
}

fn round(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(release: &str, loss: Loss) -> Vec<SpendRequest> {
        vec![SpendRequest {
            release: release.into(),
            loss,
        }]
    }

    #[test]
    fn a_second_spend_over_the_cap_is_refused_and_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&dir.path().join("lineage.db")).unwrap();
        let cap = Loss::Pure { epsilon: 1.0 };
        l.spend(
            "d",
            "subject_id",
            "r1",
            Some(&cap),
            &ask("a", Loss::Pure { epsilon: 0.6 }),
        )
        .unwrap();
        let e = l
            .spend(
                "d",
                "subject_id",
                "r2",
                Some(&cap),
                &ask("a", Loss::Pure { epsilon: 0.6 }),
            )
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("`d`") && msg.contains("ε = 0.6") && msg.contains("ε = 0.4"),
            "{msg}"
        );
        let b = l.budgets(Some("d")).unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].releases, 1);
        assert!((b[0].spent.epsilon - 0.6).abs() < 1e-12);
    }

    #[test]
    fn concurrent_runs_cannot_overspend() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lineage.db");
        Ledger::open(&path).unwrap();
        let cap = Loss::Pure { epsilon: 1.0 };
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut l = Ledger::open(&path).unwrap();
                    l.spend(
                        "d",
                        "u",
                        &format!("r{i}"),
                        Some(&cap),
                        &ask("a", Loss::Pure { epsilon: 0.2 }),
                    )
                    .is_ok()
                })
            })
            .collect();
        let ok = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|committed| *committed)
            .count();
        assert_eq!(ok, 5, "exactly five spends of 0.2 fit a cap of 1.0");
        let b = Ledger::open(&path).unwrap().budgets(Some("d")).unwrap();
        assert_eq!(b[0].releases, 5);
        assert!(b[0].spent.epsilon <= 1.0 + 1e-9);
    }

    #[test]
    fn composition_follows_the_caps_measure() {
        let pure = Loss::Pure { epsilon: 1.0 };
        assert!(compose(&pure, &[Loss::Zcdp { rho: 0.1 }]).is_err());
        let rho_cap = Loss::Zcdp { rho: 1.0 };
        let s = compose(
            &rho_cap,
            &[Loss::Pure { epsilon: 1.0 }, Loss::Zcdp { rho: 0.25 }],
        )
        .unwrap();
        assert!((s.rho - 0.75).abs() < 1e-12);
        assert!(compose(
            &rho_cap,
            &[Loss::Approx {
                epsilon: 0.1,
                delta: 1e-9
            }]
        )
        .is_err());
        let approx = Loss::Approx {
            epsilon: 2.0,
            delta: 1e-6,
        };
        let s = compose(
            &approx,
            &[
                Loss::Approx {
                    epsilon: 0.5,
                    delta: 4e-7,
                },
                Loss::Zcdp { rho: 0.01 },
            ],
        )
        .unwrap();
        let expect = 0.5 + zcdp_epsilon(0.01, 6e-7);
        assert!((s.epsilon - expect).abs() < 1e-12);
        assert!((s.delta - 1e-6).abs() < 1e-18);
        assert!(fits(&approx, &s));
        // Five spends of 0.2 fit a cap of 1.0 despite floating-point sums; a sixth does not.
        let five = vec![Loss::Pure { epsilon: 0.2 }; 5];
        assert!(fits(&pure, &compose(&pure, &five).unwrap()));
        let six = vec![Loss::Pure { epsilon: 0.2 }; 6];
        assert!(!fits(&pure, &compose(&pure, &six).unwrap()));
    }

    #[test]
    fn ledger_edit_is_detected_by_verify_and_refused_by_spend() {
        // What broke: `UPDATE budget_ledger SET epsilon = 0.01` passed verify, and the next
        // runs spent 7.0 against a cap of 6.0.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lineage.db");
        let cap = Loss::Pure { epsilon: 6.0 };
        let mut l = Ledger::open(&path).unwrap();
        for run in ["r1", "r2"] {
            l.spend(
                "d",
                "u",
                run,
                Some(&cap),
                &ask("a", Loss::Pure { epsilon: 2.5 }),
            )
            .unwrap();
        }
        drop(l);
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE budget_ledger SET epsilon = 0.01", [])
            .unwrap();
        drop(conn);

        let report = Store::open_to_inspect(&path).unwrap().verify().unwrap();
        let broken = report.first_broken.expect("verify must see the edit");
        assert_eq!(broken.ledger_entry, Some(1));

        let mut l = Ledger::open(&path).unwrap();
        let err = l
            .spend(
                "d",
                "u",
                "r3",
                Some(&cap),
                &ask("a", Loss::Pure { epsilon: 2.0 }),
            )
            .unwrap_err();
        assert!(
            matches!(err, LedgerError::Store(LineageError::LedgerBroken { .. })),
            "{err:?}"
        );
        assert!(err.to_string().contains("privprep lineage verify"), "{err}");
        assert!(
            l.budgets(None).is_err(),
            "budget must not show an edited ledger"
        );
        let n: i64 = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM budget_ledger", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2, "nothing was spent");
    }

    #[test]
    fn budgets_show_the_latest_cap_unit_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(&dir.path().join("lineage.db")).unwrap();
        let cap = Loss::Pure { epsilon: 2.0 };
        l.spend(
            "d",
            "u",
            "r1",
            Some(&cap),
            &[
                SpendRequest {
                    release: "a".into(),
                    loss: Loss::Pure { epsilon: 0.5 },
                },
                SpendRequest {
                    release: "b".into(),
                    loss: Loss::Pure { epsilon: 0.25 },
                },
            ],
        )
        .unwrap();
        let wider = Loss::Pure { epsilon: 3.0 };
        l.spend(
            "d",
            "v",
            "r2",
            Some(&wider),
            &ask("a", Loss::Pure { epsilon: 0.25 }),
        )
        .unwrap();
        l.spend("e", "u", "r2", None, &ask("c", Loss::Zcdp { rho: 0.1 }))
            .unwrap();
        let b = l.budgets(None).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(
            (b[0].dataset_id.as_str(), b[0].privacy_unit.as_str()),
            ("d", "v")
        );
        assert_eq!(b[0].cap, Some(wider));
        assert_eq!((b[0].releases, b[0].runs), (3, 2));
        assert!((b[0].spent.epsilon - 1.0).abs() < 1e-12);
        assert_eq!(b[1].cap, None);
        assert_eq!(l.budgets(Some("e")).unwrap().len(), 1);
        assert!(l.budgets(Some("nope")).unwrap().is_empty());
    }

    #[test]
    fn a_run_with_a_record_cannot_spend_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lineage.db");
        let mut store = Store::open(&path).unwrap();
        store
            .append(&crate::lineage::RunRecord::begin(
                "r1", "t", "p", "p.toml", "ab", "",
            ))
            .unwrap();
        let mut l = Ledger::open(&path).unwrap();
        let err = l
            .spend("d", "u", "r1", None, &ask("a", Loss::Pure { epsilon: 0.1 }))
            .unwrap_err();
        assert!(
            matches!(err, LedgerError::RunAlreadyRecorded { .. }),
            "{err:?}"
        );
    }
}
