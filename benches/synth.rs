//! DP synthetic Adult at ε = 1 (δ = 1e-9), as `pipelines/synthetic_adult.toml` makes it: fit
//! time (calibration, measurements, tree), sampling time, peak memory, mean 2-way TV to
//! `train.csv`, and the accuracy on `test.csv` of a naive Bayes classifier and a logistic
//! regression trained on the synthetic rows (train-on-synthetic, test-on-real), against the
//! same classifiers trained on `train.csv` and the majority class; and, for comparison, the
//! plain tree without the target as hub. Reads `../shared/data/adult/` and skips, saying so,
//! where it is absent. `PRIVPREP_BENCH_REPS` repetitions (default 5; each draws new noise).

use std::path::Path;
use std::time::Instant;

use privprep::synth::{self, rho_for};

fn read(path: &Path) -> (Vec<String>, Vec<Vec<u32>>) {
    let mut r = csv::Reader::from_path(path).expect("csv");
    let names = r
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = r
        .records()
        .map(|rec| {
            rec.expect("record")
                .iter()
                .map(|v| v.parse::<u32>().expect("a code"))
                .collect()
        })
        .collect();
    (names, rows)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/adult");
    if !dir.join("split/train.csv").exists() {
        println!("synth: skipped, {} is absent", dir.display());
        return;
    }
    let (names, train) = read(&dir.join("split/train.csv"));
    let (_, test) = read(&dir.join("split/test.csv"));
    let domain: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("adult-domain.json")).expect("domain"))
            .expect("json");
    let domains: Vec<usize> = names
        .iter()
        .map(|n| domain[n].as_u64().expect("a size") as usize)
        .collect();
    let target = names
        .iter()
        .position(|n| n == "income>50K")
        .expect("income");
    let reps = std::env::var("PRIVPREP_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5usize);
    let rho = rho_for(1.0, 1e-9);
    let (mut fits, mut samples, mut tvs, mut accs) = (vec![], vec![], vec![], vec![]);
    let (mut lrs, mut plain_tvs, mut plain_lrs) = (vec![], vec![], vec![]);
    for rep in 0..reps {
        // The same without the target as hub (the plain tree), for comparison.
        let cal =
            synth::calibrate(&domains, None, synth::Measure::Zcdp, rho, 1).expect("calibrate");
        let model = synth::fit(&train, &domains, &cal, 1).expect("fit");
        let synthetic = synth::sample(&model, train.len(), rep as u64);
        plain_tvs.push(synth::utility(&train, &synthetic, &domains).1);
        plain_lrs
            .push(synth::logistic_accuracy(&synthetic, &test, target, &domains).unwrap_or(0.0));
        let started = Instant::now();
        let cal = synth::calibrate(&domains, Some(target), synth::Measure::Zcdp, rho, 1)
            .expect("calibrate");
        let model = synth::fit(&train, &domains, &cal, 1).expect("fit");
        fits.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        let synthetic = synth::sample(&model, train.len(), rep as u64);
        samples.push(started.elapsed().as_secs_f64());
        tvs.push(synth::utility(&train, &synthetic, &domains).1);
        accs.push(synth::naive_bayes_accuracy(
            &synthetic, &test, target, &domains,
        ));
        lrs.push(synth::logistic_accuracy(&synthetic, &test, target, &domains).unwrap_or(0.0));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let real = synth::naive_bayes_accuracy(&train, &test, target, &domains);
    let real_lr = synth::logistic_accuracy(&train, &test, target, &domains).unwrap_or(0.0);
    let majority = {
        let c = synth::one_way(&test, target, domains[target]);
        *c.iter().max().unwrap_or(&0) as f64 / test.len() as f64
    };
    println!(
        "synth: Adult train {} rows, {} columns, ε = 1, δ = 1e-9 (ρ = {rho:.5}), {reps} reps",
        train.len(),
        names.len()
    );
    println!(
        "  fit (calibration, measurements, tree): {:.3} s median",
        median(&mut fits)
    );
    println!(
        "  sampling {} rows:                     {:.3} s median",
        train.len(),
        median(&mut samples)
    );
    println!(
        "  peak RSS:                              {:.0} MiB",
        peak_rss_mib()
    );
    println!(
        "  mean 2-way TV to train.csv:            {:.4} median (all: {:?})",
        median(&mut tvs.clone()),
        tvs.iter()
            .map(|v| (v * 1e4).round() / 1e4)
            .collect::<Vec<_>>()
    );
    println!(
        "  TSTR accuracy on test.csv (naive Bayes): {:.4} median (all: {:?})",
        median(&mut accs.clone()),
        accs.iter()
            .map(|v| (v * 1e4).round() / 1e4)
            .collect::<Vec<_>>()
    );
    println!("  same classifier trained on train.csv:  {real:.4}; majority class: {majority:.4}");
    println!("  TSTR accuracy on test.csv (logistic regression): {:.4} median (all: {:?}); trained on train.csv: {real_lr:.4}", median(&mut lrs.clone()), lrs.iter().map(|v| (v * 1e4).round() / 1e4).collect::<Vec<_>>());
    println!(
        "  without the target as hub (plain tree): mean 2-way TV {:.4}, logistic regression {:.4} (medians)",
        median(&mut plain_tvs),
        median(&mut plain_lrs)
    );
}
