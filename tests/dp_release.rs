//! Differential privacy: OpenDP's noise has the scale it reports, contribution bounds hold,
//! private keys hide small groups, public keys all appear, and the ledger cannot be overspent
//! (also by concurrent runs through the binary).

mod common;

use common::{capped_pipeline, Work, SAFE_COLUMNS};
use polars::prelude::*;
use privprep::dp::ledger::Loss;
use privprep::dp::release::{prepare, Keys, ReleasePlan, Statistic, SUBJECT};

fn plan(keys: Keys, target: Loss, max_rows: u32) -> ReleasePlan {
    ReleasePlan {
        name: "t".into(),
        path: "unused.parquet".into(),
        group_by: vec!["g".into()],
        keys,
        max_rows_per_group: max_rows,
        max_groups: 1,
        max_rows_per_subject: None,
        max_rows: None,
        max_keys: None,
        target,
        statistics: vec![Statistic::Count],
    }
}

/// `rows` rows of (subject, group).
fn frame(rows: &[(String, &str)]) -> LazyFrame {
    let subjects: Vec<&str> = rows.iter().map(|(s, _)| s.as_str()).collect();
    let groups: Vec<&str> = rows.iter().map(|(_, g)| *g).collect();
    df!(SUBJECT => subjects, "g" => groups).unwrap().lazy()
}

fn counts(df: &DataFrame) -> Vec<(String, i64)> {
    let g = df.column("g").unwrap().str().unwrap().clone();
    let c = df.column("count").unwrap().i64().unwrap().clone();
    g.iter()
        .zip(c.iter())
        .map(|(g, c)| (g.unwrap_or("").to_string(), c.unwrap_or(0)))
        .collect()
}

fn public(keys: &[&str]) -> Keys {
    Keys::Public {
        rows: keys.iter().map(|k| vec![k.to_string()]).collect(),
        source: "test".into(),
    }
}

#[test]
fn released_counts_spread_as_the_scale_opendp_reports() {
    let rows: Vec<(String, &str)> = (0..200)
        .map(|i| (format!("s{i}"), if i % 2 == 0 { "a" } else { "b" }))
        .collect();
    let p = plan(public(&["a", "b"]), Loss::Pure { epsilon: 0.5 }, 1);
    let prepared = prepare(&p).unwrap();
    let noise = prepared
        .calibrated
        .noise
        .iter()
        .find(|n| n.column == "count")
        .cloned()
        .unwrap();
    let (dist, scale) = (noise.distribution, noise.scale);
    assert_eq!(dist, "Integer Laplace");
    // One row per subject per group, one group per subject: OpenDP's group truncation keeps
    // one group but accounts for two (its rank starts at 1), so ε = 2/scale.
    assert!((scale - 4.0).abs() < 0.01, "scale {scale}");
    let reps = 1000;
    let mut values = Vec::with_capacity(reps);
    for _ in 0..reps {
        let out = prepared.run(&p, frame(&rows)).unwrap();
        let c = counts(&out);
        values.push(c.iter().find(|(g, _)| g == "a").unwrap().1 as f64);
    }
    let mean = values.iter().sum::<f64>() / reps as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (reps - 1) as f64;
    // Discrete Laplace with scale b: variance 2e^{-1/b}/(1-e^{-1/b})^2.
    let q = (-1.0 / scale).exp();
    let expected = 2.0 * q / (1.0 - q).powi(2);
    println!("mean {mean:.3} (true 100), variance {var:.3} (expected {expected:.3})");
    assert!(
        (mean - 100.0).abs() < 6.0 * (expected / reps as f64).sqrt(),
        "mean {mean}"
    );
    assert!(
        (var / expected - 1.0).abs() < 0.3,
        "variance {var} vs {expected}: the noise does not have the reported scale"
    );
}

#[test]
fn one_subject_with_10000_rows_moves_a_count_by_at_most_the_bound() {
    let mut rows: Vec<(String, &str)> = (0..50).map(|i| (format!("s{i}"), "a")).collect();
    let p = plan(public(&["a"]), Loss::Pure { epsilon: 1e6 }, 5);
    let prepared = prepare(&p).unwrap();
    let before = counts(&prepared.run(&p, frame(&rows)).unwrap())[0].1;
    rows.extend((0..10_000).map(|_| ("whale".to_string(), "a")));
    let after = counts(&prepared.run(&p, frame(&rows)).unwrap())[0].1;
    // With ε this large the noise is below one; the whale adds at most 5 rows.
    assert!((before - 50).abs() <= 1, "{before}");
    assert!((after - before - 5).abs() <= 2, "{before} -> {after}");
}

#[test]
fn a_subject_in_many_groups_counts_in_at_most_max_groups_of_them() {
    let mut rows: Vec<(String, &str)> = Vec::new();
    for g in ["a", "b", "c", "d"] {
        rows.extend((0..20).map(|i| (format!("{g}{i}"), g)));
        rows.push(("everywhere".to_string(), g));
    }
    let mut p = plan(
        public(&["a", "b", "c", "d"]),
        Loss::Pure { epsilon: 1e6 },
        1,
    );
    p.max_groups = 2;
    let prepared = prepare(&p).unwrap();
    let c = counts(&prepared.run(&p, frame(&rows)).unwrap());
    let extra: i64 = c.iter().map(|(_, n)| n - 20).sum();
    assert_eq!(extra, 2, "{c:?}");
}

#[test]
fn a_single_subjects_group_is_never_released_with_private_keys() {
    let mut rows: Vec<(String, &str)> = (0..500).map(|i| (format!("s{i}"), "big")).collect();
    rows.push(("loner".into(), "lonely"));
    let p = plan(
        Keys::Private,
        Loss::Approx {
            epsilon: 1.0,
            delta: 1e-6,
        },
        1,
    );
    let prepared = prepare(&p).unwrap();
    let t = prepared.calibrated.threshold.expect("a threshold");
    assert!(t > 1);
    for _ in 0..300 {
        let c = counts(&prepared.run(&p, frame(&rows)).unwrap());
        assert!(
            c.iter().all(|(g, _)| g != "lonely"),
            "the lonely group was released"
        );
        assert!(c.iter().any(|(g, _)| g == "big"));
    }
}

#[test]
fn a_release_without_group_by_is_one_row() {
    let rows: Vec<(String, &str)> = (0..40).map(|i| (format!("s{i}"), "a")).collect();
    let mut p = plan(Keys::Whole, Loss::Pure { epsilon: 1e6 }, 1);
    p.group_by.clear();
    let prepared = prepare(&p).unwrap();
    let out = prepared.run(&p, frame(&rows)).unwrap();
    assert_eq!(out.height(), 1);
    let n = out.column("count").unwrap().i64().unwrap().get(0).unwrap();
    assert!((n - 40).abs() <= 1, "{n}");
}

#[test]
fn every_public_key_appears_even_without_rows() {
    let rows: Vec<(String, &str)> = (0..30).map(|i| (format!("s{i}"), "a")).collect();
    let p = plan(public(&["a", "nobody", "zz"]), Loss::Zcdp { rho: 0.5 }, 1);
    let prepared = prepare(&p).unwrap();
    let c = counts(&prepared.run(&p, frame(&rows)).unwrap());
    let keys: Vec<&str> = c.iter().map(|(g, _)| g.as_str()).collect();
    assert_eq!(keys, ["a", "nobody", "zz"]);
    assert_eq!(prepared.calibrated.spend.measure(), "zcdp");
}

/// A workspace with a small dataset whose manifest caps the budget, and a pipeline with one
/// release asking `epsilon`.
fn capped(w: &Work, name: &str, epsilon: f64) -> std::path::PathBuf {
    capped_pipeline(
        w,
        name,
        1.0,
        epsilon,
        r#"{ kind = "count" }, { kind = "mean", column = "handle_time_minutes", bounds = [0.0, 120.0] }"#,
    )
}

#[test]
fn a_run_that_would_exceed_the_cap_fails_before_releasing_anything() {
    let w = Work::new();
    w.datagen(600, 2, &[]);
    let first = capped(&w, "first", 0.6);
    let (code, summary, stderr) = w.run_json(&first, &[]);
    assert_eq!(code, 0, "{stderr}");
    let rel = &summary["releases"][0];
    assert!(w.path().join("out/first.by_country.parquet").exists());
    // The spend in lineage is OpenDP's map at one subject, for the plan the pipeline describes.
    let plan = privprep::plan::build(&first).unwrap();
    let again = prepare(&plan.releases[0]).unwrap();
    match again.calibrated.spend {
        Loss::Pure { epsilon } => {
            assert!((rel["epsilon"].as_f64().unwrap() - epsilon).abs() < 1e-12)
        }
        other => panic!("{other:?}"),
    }
    assert!(rel["epsilon"].as_f64().unwrap() <= 0.6 + 1e-12);
    let table = common::read_parquet(&w.path().join("out/first.by_country.parquet"));
    assert_eq!(table.height(), 16);
    // The summary's range of the mean's half-widths is the range in the file.
    let ci = table
        .column("handle_time_minutes_mean_ci95")
        .unwrap()
        .f64()
        .unwrap()
        .clone();
    let range = &rel["mean_ci95"][0];
    assert_eq!(range["column"], "handle_time_minutes_mean");
    assert_eq!(range["min"].as_f64(), ci.min());
    assert_eq!(range["max"].as_f64(), ci.max());
    for c in [
        "count",
        "count_ci95",
        "handle_time_minutes_mean",
        "handle_time_minutes_mean_ci95",
    ] {
        assert!(table.column(c).is_ok(), "missing {c}");
    }

    let second = capped(&w, "second", 0.6);
    let (code, summary, stderr) = w.run_json(&second, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("`support_tickets`"), "{stderr}");
    assert!(stderr.contains("remains"), "{stderr}");
    assert_eq!(summary["status"], "failed");
    assert!(!w.path().join("out/second.by_country.parquet").exists());
    assert!(!w.path().join("out/second.parquet").exists());
    let leftovers: Vec<String> = std::fs::read_dir(w.path().join("out"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".privprep-tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let budget = w.privprep(&["budget", "support_tickets", "--format", "json"]);
    let b: serde_json::Value = serde_json::from_slice(&budget.stdout).unwrap();
    assert_eq!(b[0]["releases"], 1);
    assert!((b[0]["spent"]["epsilon"].as_f64().unwrap() - 0.6).abs() < 1e-9);
}

#[test]
fn eight_concurrent_runs_asking_a_fifth_of_the_cap_commit_exactly_five() {
    let w = Work::new();
    w.datagen(300, 3, &[]);
    let pipelines: Vec<_> = (0..8).map(|i| capped(&w, &format!("c{i}"), 0.2)).collect();
    let children: Vec<_> = pipelines
        .iter()
        .map(|p| {
            w.run_json_cmd(p)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<std::process::Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let codes: Vec<i32> = outputs
        .iter()
        .map(|o| o.status.code().unwrap_or(-1))
        .collect();
    for o in outputs.iter().filter(|o| !o.status.success()) {
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.contains("privacy budget"),
            "refused for another reason: {stderr}"
        );
    }
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 5, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 1).count(), 3, "{codes:?}");
    let budget = w.privprep(&["budget", "--format", "json"]);
    let b: serde_json::Value = serde_json::from_slice(&budget.stdout).unwrap();
    assert_eq!(b[0]["releases"], 5);
    assert!(b[0]["spent"]["epsilon"].as_f64().unwrap() <= 1.0 + 1e-9);
}

#[test]
fn more_consented_rows_than_the_public_bound_fail_before_spending() {
    let w = Work::new();
    w.datagen(600, 4, &[]);
    let p = capped(&w, "bounded", 0.6);
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains("max_rows = 100000"));
    std::fs::write(&p, text.replace("max_rows = 100000", "max_rows = 5")).unwrap();
    let (code, summary, stderr) = w.run_json(&p, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(summary["status"], "failed");
    assert!(stderr.contains("release `by_country`"), "{stderr}");
    assert!(stderr.contains("max_rows = 5"), "{stderr}");
    assert!(!w.path().join("out/bounded.by_country.parquet").exists());
    assert!(!w.path().join("out/bounded.parquet").exists());
    let budget = w.privprep(&["budget", "--format", "json"]);
    let b: serde_json::Value = serde_json::from_slice(&budget.stdout).unwrap();
    let spent = b
        .as_array()
        .and_then(|a| a.first())
        .map(|d| d["releases"].as_u64().unwrap_or(0))
        .unwrap_or(0);
    assert_eq!(spent, 0, "{b}");
}

#[test]
fn max_groups_holds_for_two_group_columns() {
    // One subject in six (a, b) groups with max_groups = 2: it counts in exactly two of them.
    let rows: Vec<(&str, &str, &str)> = vec![
        ("s", "x", "1"),
        ("s", "x", "2"),
        ("s", "y", "1"),
        ("s", "y", "2"),
        ("s", "z", "1"),
        ("s", "z", "2"),
    ];
    let keys: Vec<Vec<String>> = ["x", "y", "z"]
        .iter()
        .flat_map(|a| {
            ["1", "2"]
                .iter()
                .map(move |b| vec![a.to_string(), b.to_string()])
        })
        .collect();
    let mut p = plan(
        Keys::Public {
            rows: keys,
            source: "test".into(),
        },
        Loss::Pure { epsilon: 1e6 },
        1,
    );
    p.group_by = vec!["a".into(), "b".into()];
    p.max_groups = 2;
    let prepared = prepare(&p).unwrap();
    let frame = df!(
        SUBJECT => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        "a" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        "b" => rows.iter().map(|r| r.2).collect::<Vec<_>>()
    )
    .unwrap()
    .lazy();
    let out = prepared.run(&p, frame).unwrap();
    assert_eq!(out.height(), 6);
    let counts: Vec<i64> = out
        .column("count")
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(counts.iter().sum::<i64>(), 2, "{out}");
    assert!(counts.iter().all(|c| *c == 0 || *c == 1), "{out}");
}

/// A private-key release of count and mean by country on `w`'s tickets.
fn private_mean(w: &Work, name: &str, max_keys: u32) -> std::path::PathBuf {
    let p = w.pipeline(name, "", SAFE_COLUMNS, "");
    let text = std::fs::read_to_string(&p).unwrap()
        + &format!(
            r#"
[[release]]
name = "private_mean"
path = "out/{name}.private_mean.parquet"
group_by = ["country"]
keys = "private"
max_rows_per_group = 2
max_rows = 100000
max_keys = {max_keys}
privacy = {{ epsilon = 1000.0, delta = 1e-6 }}
aggregates = [{{ kind = "count" }}, {{ kind = "mean", column = "handle_time_minutes", bounds = [0.0, 120.0] }}]
"#
        );
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn private_keys_release_means_and_refuse_more_keys_than_declared() {
    let w = Work::new();
    w.datagen(3000, 5, &[]);
    let p = private_mean(&w, "pm", 300);
    let (code, _, stderr) = w.run_json(&p, &[]);
    assert_eq!(code, 0, "{stderr}");
    let table = common::read_parquet(&w.path().join("out/pm.private_mean.parquet"));
    assert!(table.height() >= 1, "{table}");
    let means = table
        .column("handle_time_minutes_mean")
        .unwrap()
        .f64()
        .unwrap();
    let cis = table
        .column("handle_time_minutes_mean_ci95")
        .unwrap()
        .f64()
        .unwrap();
    for (m, ci) in means.into_iter().zip(cis) {
        let (m, ci) = (m.unwrap(), ci.unwrap());
        assert!((0.0..=120.0).contains(&m), "{m}");
        assert!(ci > 0.0 && ci <= 120.0, "{ci}");
    }

    let p = private_mean(&w, "few", 2);
    let (code, summary, stderr) = w.run_json(&p, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(summary["status"], "failed");
    assert!(stderr.contains("max_keys = 2"), "{stderr}");
    assert!(!w.path().join("out/few.private_mean.parquet").exists());
}

#[test]
fn released_quantiles_stay_within_the_rank_bound() {
    // 2,000 subjects with one value each, evenly over 0..100; candidates every 1.0 (20 rows
    // apart, so the nearest candidate is at most 10 rows off). Small ε, so the noise shows.
    let n = 2000usize;
    let values: Vec<f64> = (0..n)
        .map(|i| (i as f64 * 100.0 / n as f64).floor() + 0.5)
        .collect();
    let subjects: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    let data = df!(SUBJECT => subjects, "v" => values.clone()).unwrap();
    for alpha in [0.5, 0.9] {
        let p = ReleasePlan {
            name: "q".into(),
            path: "unused.parquet".into(),
            group_by: vec![],
            keys: Keys::Whole,
            max_rows_per_group: 1,
            max_groups: 1,
            max_rows_per_subject: None,
            max_rows: Some(10_000),
            max_keys: None,
            target: Loss::Pure { epsilon: 0.05 },
            statistics: vec![Statistic::Quantile {
                column: "v".into(),
                alpha,
                candidates: (0..=100).map(f64::from).collect(),
            }],
        };
        let prepared = prepare(&p).unwrap();
        let column = format!("v_q{}", (alpha * 100.0) as i64);
        let bound = prepared.calibrated.rank_ci95[0].rows;
        assert!(bound.is_finite() && bound > 0.0);
        let runs = 300;
        let mut within = 0;
        let mut errors = Vec::new();
        for _ in 0..runs {
            let out = prepared.run(&p, data.clone().lazy()).unwrap();
            let c = out.column(&column).unwrap().f64().unwrap().get(0).unwrap();
            let rank = values.iter().filter(|x| **x < c).count() as f64;
            let error = (rank - alpha * n as f64).abs();
            errors.push(error);
            if error <= bound + 10.0 {
                within += 1;
            }
            assert_eq!(
                out.column(&format!("{column}_rank_ci95"))
                    .unwrap()
                    .f64()
                    .unwrap()
                    .get(0),
                Some(bound)
            );
        }
        // At least 95% by the bound; 90% leaves room for sampling error (even a bound that
        // were exactly tight would fail this with probability below 1e-4).
        assert!(
            within * 100 >= runs * 90,
            "alpha {alpha}: {within}/{runs} within ±{bound}"
        );
        // And the noise is really there: the bound is not vacuous for this ε.
        errors.sort_by(|a, b| a.total_cmp(b));
        assert!(errors[runs * 95 / 100] > 10.0, "alpha {alpha}: {errors:?}");
    }
}

#[test]
fn max_rows_per_subject_counts_a_subjects_first_rows_in_all_groups() {
    // One subject with 10,000 rows over four groups, K = 3: it adds exactly 3 to the total,
    // and OpenDP accounts for no more than 3 rows (one truncation, no extra group).
    let mut rows: Vec<(String, &str)> = Vec::new();
    for i in 0..10_000 {
        rows.push(("heavy".into(), ["a", "b", "c", "d"][i % 4]));
    }
    for i in 0..50 {
        rows.push((format!("s{i}"), "a"));
    }
    let keys = Keys::Public {
        rows: ["a", "b", "c", "d"]
            .iter()
            .map(|k| vec![k.to_string()])
            .collect(),
        source: "test".into(),
    };
    let mut p = plan(keys.clone(), Loss::Pure { epsilon: 1e6 }, 3);
    p.max_rows_per_subject = Some(3);
    p.max_groups = 3;
    let prepared = prepare(&p).unwrap();
    let total: i64 = counts(&prepared.run(&p, frame(&rows)).unwrap())
        .iter()
        .map(|(_, c)| *c)
        .sum();
    assert_eq!(total, 50 + 3);

    // Same ε: per subject in all groups, K = 2, is calibrated to 2 rows; per group with
    // k = 1 in 2 groups, OpenDP counts the rank truncation's extra group (3 rows).
    let mut a = plan(keys.clone(), Loss::Pure { epsilon: 1.0 }, 2);
    a.max_rows_per_subject = Some(2);
    a.max_groups = 2;
    let mut b = plan(keys, Loss::Pure { epsilon: 1.0 }, 1);
    b.max_groups = 2;
    let scale = |p: &ReleasePlan| prepare(p).unwrap().calibrated.noise[0].scale;
    assert!(
        (scale(&a) / scale(&b) - 2.0 / 3.0).abs() < 0.01,
        "{} vs {}",
        scale(&a),
        scale(&b)
    );
}

#[test]
fn the_rows_kept_are_a_subjects_first_whatever_other_subjects_are_there() {
    // Subject b's rows in group y, in input order 10, 20, 30; one row per subject and group
    // counts, so y's sum is 10 (ε = 10⁶: the noise is far below 0.5), with or without a
    // subject a whose many rows come before and between b's.
    let mut p = plan(public(&["x", "y"]), Loss::Pure { epsilon: 1e6 }, 1);
    p.max_rows = Some(10_000);
    p.statistics = vec![Statistic::Sum {
        column: "v".into(),
        lower: 0.0,
        upper: 100.0,
    }];
    let prepared = prepare(&p).unwrap();
    let y_sum = |rows: &[(&str, &str, f64)]| {
        let data = df!(
            SUBJECT => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            "g" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            "v" => rows.iter().map(|r| r.2).collect::<Vec<_>>()
        )
        .unwrap();
        let out = prepared.run(&p, data.lazy()).unwrap();
        let g = out.column("g").unwrap().str().unwrap().clone();
        let v = out.column("v_sum").unwrap().f64().unwrap().clone();
        let found = g
            .iter()
            .zip(v.iter())
            .find(|(g, _)| *g == Some("y"))
            .and_then(|(_, v)| v);
        found.unwrap()
    };
    let alone = [("b", "y", 10.0), ("b", "y", 20.0), ("b", "y", 30.0)];
    let mut mixed = Vec::new();
    for i in 0..500 {
        mixed.push(("a", "x", f64::from(i % 100)));
        if i % 200 == 0 {
            mixed.push(alone[(i / 200) as usize]);
        }
    }
    assert_eq!(mixed.iter().filter(|r| r.0 == "b").count(), 3);
    assert!((y_sum(&alone) - 10.0).abs() < 0.5, "{}", y_sum(&alone));
    assert!((y_sum(&mixed) - 10.0).abs() < 0.5, "{}", y_sum(&mixed));
}

/// The aggregates path (another engine's exact counts and sums, noised on the driver): the
/// noise has the scale and distribution of the calibration, a public key without rows gets
/// noise on zero, and private keys keep only groups whose noisy count passes the threshold.
#[test]
fn noise_on_exact_aggregates_spreads_as_the_calibrated_scale() {
    let mut p = plan(public(&["a", "b", "z"]), Loss::Pure { epsilon: 0.5 }, 1);
    p.statistics.push(Statistic::Sum {
        column: "v".into(),
        lower: 0.0,
        upper: 10.0,
    });
    p.max_rows = Some(1000);
    let prepared = prepare(&p).unwrap();
    let scale_of = |c: &str| {
        let n = prepared
            .calibrated
            .noise
            .iter()
            .find(|n| n.column == c)
            .cloned()
            .unwrap();
        (n.distribution, n.scale)
    };
    let (count_dist, count_scale) = scale_of("count");
    let (sum_dist, sum_scale) = scale_of("v_sum");
    assert_eq!(
        (count_dist.as_str(), sum_dist.as_str()),
        ("Integer Laplace", "Float Laplace")
    );
    // "z" has no rows: the aggregates lack it.
    let exact =
        || df!("g" => ["a", "b"], "count" => [100i64, 40], "v_sum" => [500.0, 120.0]).unwrap();
    let reps = 2000;
    let (mut counts_a, mut sums_a, mut counts_z) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        let out = prepared.run_on_aggregates(&p, exact()).unwrap();
        assert_eq!(out.height(), 3, "every public key, and only those");
        let g = out.column("g").unwrap().str().unwrap().clone();
        let c = out.column("count").unwrap().i64().unwrap().clone();
        let s = out.column("v_sum").unwrap().f64().unwrap().clone();
        for i in 0..3 {
            match g.get(i).unwrap() {
                "a" => {
                    counts_a.push(c.get(i).unwrap() as f64);
                    sums_a.push(s.get(i).unwrap());
                }
                "z" => counts_z.push(c.get(i).unwrap() as f64),
                _ => {}
            }
        }
    }
    let stats = |v: &[f64]| {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
        (mean, var)
    };
    let q = (-1.0 / count_scale).exp();
    let discrete = 2.0 * q / (1.0 - q).powi(2);
    for (values, centre, expected) in [
        (&counts_a, 100.0, discrete),
        (&counts_z, 0.0, discrete),
        (&sums_a, 500.0, 2.0 * sum_scale * sum_scale),
    ] {
        let (mean, var) = stats(values);
        assert!(
            (mean - centre).abs() < 6.0 * (expected / reps as f64).sqrt(),
            "mean {mean} vs {centre}"
        );
        assert!(
            (var / expected - 1.0).abs() < 0.25,
            "variance {var} vs {expected}: not the calibrated scale"
        );
    }

    // Private keys: a group is released only when its noisy count exceeds the threshold.
    let mut private = plan(
        Keys::Private,
        Loss::Approx {
            epsilon: 1.0,
            delta: 1e-6,
        },
        1,
    );
    private.max_keys = Some(10);
    let prepared = prepare(&private).unwrap();
    let t = i64::from(prepared.calibrated.threshold.unwrap());
    let exact = df!("g" => ["big", "one"], "count" => [t + 200, 1i64]).unwrap();
    for _ in 0..200 {
        let out = prepared.run_on_aggregates(&private, exact.clone()).unwrap();
        let released = counts(&out);
        assert!(
            released.iter().all(|(g, c)| g == "big" && *c > t),
            "{released:?}"
        );
    }
}

/// A quantile from another engine's counts below and above each candidate: OpenDP's noisy
/// min over the discrete quantile scores picks the true quantile at a large ε, and spreads
/// over the candidates at a small one.
#[test]
fn quantiles_from_exact_counts_are_opendps_noisy_min() {
    let candidates = vec![10.0, 20.0, 30.0, 40.0, 50.0];
    let with_epsilon = |epsilon: f64| {
        let mut p = plan(Keys::Whole, Loss::Pure { epsilon }, 1);
        p.group_by.clear();
        p.max_rows = Some(1000);
        p.statistics = vec![
            Statistic::Count,
            Statistic::Quantile {
                column: "v".into(),
                alpha: 0.5,
                candidates: candidates.clone(),
            },
        ];
        p
    };
    // 100 values: 25 below 20, 50 below 30 and 45 above it → the median is 30.
    let exact = df!(
        "count" => [100i64],
        "v_q50__lt0" => [5i64], "v_q50__gt0" => [95i64],
        "v_q50__lt1" => [25i64], "v_q50__gt1" => [75i64],
        "v_q50__lt2" => [50i64], "v_q50__gt2" => [45i64],
        "v_q50__lt3" => [80i64], "v_q50__gt3" => [20i64],
        "v_q50__lt4" => [99i64], "v_q50__gt4" => [1i64]
    )
    .unwrap();
    let picks = |epsilon: f64, n: usize| {
        let p = with_epsilon(epsilon);
        let prepared = prepare(&p).unwrap();
        (0..n)
            .map(|_| {
                let out = prepared.run_on_aggregates(&p, exact.clone()).unwrap();
                out.column("v_q50").unwrap().f64().unwrap().get(0).unwrap()
            })
            .collect::<Vec<f64>>()
    };
    assert!(picks(1e4, 50).iter().all(|v| *v == 30.0));
    let spread: std::collections::BTreeSet<u64> =
        picks(0.01, 300).iter().map(|v| *v as u64).collect();
    assert!(spread.len() >= 4, "{spread:?}");
}
