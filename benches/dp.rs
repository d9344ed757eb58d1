//! One differentially private release (count and mean of handling time by country, public
//! keys) against the same group-by without privacy in plain polars, on the same `datagen`
//! tickets, in one run. Two comparisons, both printed with their ratio:
//! - in memory: both start from the same collected frame, so the ratio is the engine's cost of
//!   privacy alone (contribution bounding, calibration, noise);
//! - from the file: both start from the CSV on disk, as a user's job does.
//!
//! Rows: `PRIVPREP_BENCH_ROWS` (default 1,000,000); repetitions: `PRIVPREP_BENCH_REPS` (3).

// The allocator the privprep binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use polars::prelude::*;
use privprep::datagen::{generate, DataFormat, DatagenOptions};
use privprep::dp::ledger::Loss;
use privprep::dp::release::{prepare, Keys, ReleasePlan, Statistic, SUBJECT};

#[path = "common/mod.rs"]
mod common;
use common::env_num;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows = env_num("PRIVPREP_BENCH_ROWS", 1_000_000);
    let reps = env_num("PRIVPREP_BENCH_REPS", 3).max(1) as usize;
    let dir = std::path::PathBuf::from(format!(
        "{}/privprep-dp-bench-{rows}",
        std::env::temp_dir().display()
    ));
    let csv = dir.join("tickets.csv");
    if !csv.exists() {
        eprintln!("generating {rows} rows into {}", dir.display());
        generate(&DatagenOptions {
            rows,
            seed: 1,
            out: dir.clone(),
            format: DataFormat::Csv,
            bad_rows: 0,
        })
        .expect("datagen");
    }
    let scan = || {
        LazyCsvReader::new(PlPath::new(&csv.to_string_lossy()))
            .with_has_header(true)
            .finish()
            .expect("scan")
    };
    let release_input = || {
        scan().select([
            col("subject_id").cast(DataType::String).alias(SUBJECT),
            col("country").cast(DataType::String),
            col("handle_time_minutes").cast(DataType::Float64),
        ])
    };
    let plain_query = |lf: LazyFrame| {
        lf.group_by([col("country")])
            .agg([len().alias("count"), col("handle_time_minutes").mean()])
            .collect()
            .expect("group by")
    };
    let df = release_input().collect().expect("read");
    let keys: Vec<Vec<String>> = [
        "AU", "BR", "CA", "DE", "ES", "FR", "GB", "IN", "IT", "JP", "MX", "NL", "PL", "SE", "US",
        "VN",
    ]
    .iter()
    .map(|k| vec![k.to_string()])
    .collect();
    let per_group = ReleasePlan {
        name: "bench".into(),
        path: "unused.parquet".into(),
        group_by: vec!["country".into()],
        keys: Keys::Public {
            rows: keys,
            source: "bench".into(),
        },
        max_rows_per_group: 5,
        max_groups: 1,
        max_rows_per_subject: None,
        max_rows: Some(rows as u32),
        max_keys: None,
        target: Loss::Pure { epsilon: 1.0 },
        statistics: vec![
            Statistic::Count,
            Statistic::Mean {
                column: "handle_time_minutes".into(),
                lower: 0.0,
                upper: 120.0,
            },
        ],
    };
    // The same release bounded per subject in all groups: one truncation window, not two.
    let per_subject = ReleasePlan {
        max_rows_per_subject: Some(5),
        max_groups: 5,
        ..per_group.clone()
    };
    println!("dp_release rows={} reps={reps}", df.height());
    for (label, plan) in [
        (
            "max_rows_per_group = 5, max_groups = 1 (two truncation windows)",
            &per_group,
        ),
        (
            "max_rows_per_subject = 5 (one truncation window)",
            &per_subject,
        ),
    ] {
        let mut dp = Vec::new();
        let mut plain = Vec::new();
        let mut calibration = Vec::new();
        let mut dp_file = Vec::new();
        let mut plain_file = Vec::new();
        for _ in 0..reps {
            let t = Instant::now();
            let prepared = prepare(plan).expect("prepare");
            calibration.push(t.elapsed());
            let out = prepared.run(plan, df.clone().lazy()).expect("release");
            dp.push(t.elapsed());
            assert_eq!(out.height(), 16);

            let t = Instant::now();
            let out = plain_query(df.clone().lazy());
            plain.push(t.elapsed());
            assert_eq!(out.height(), 16);

            let t = Instant::now();
            let prepared = prepare(plan).expect("prepare");
            let out = prepared.run(plan, release_input()).expect("release");
            dp_file.push(t.elapsed());
            assert_eq!(out.height(), 16);

            let t = Instant::now();
            let out = plain_query(scan());
            plain_file.push(t.elapsed());
            assert_eq!(out.height(), 16);
        }
        let (d, c, p) = (median(dp), median(calibration), median(plain));
        let (f, pf) = (median(dp_file), median(plain_file));
        let s = |d: Duration| d.as_secs_f64();
        println!("  {label}");
        println!(
            "    in memory:  DP release {:.3} s (calibration {:.3} s), plain polars group-by {:.3} s, ratio {:.2}",
            s(d),
            s(c),
            s(p),
            s(d) / s(p)
        );
        println!(
            "    from CSV:   DP release {:.3} s, plain polars scan + group-by {:.3} s, ratio {:.2}",
            s(f),
            s(pf),
            s(f) / s(pf)
        );
    }
}
