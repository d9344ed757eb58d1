//! k-anonymity (`[risk]`) through the binary: exactly the rows of classes below k are
//! suppressed (checked against an independent count), accounting holds, and `privprep risk`
//! measures any file the same way.

mod common;

use common::*;
use polars::prelude::*;
use std::collections::BTreeSet;
use std::path::Path;

const QIS: [&str; 3] = ["birth_date", "zip", "country"];

/// (class sizes, rows of classes below `k`, tickets of those rows) of a written file, counted
/// here with polars alone.
fn classes(file: &Path, k: u32) -> (Vec<u64>, u64, BTreeSet<String>) {
    let class = concat_str(
        QIS.map(|q| col(q).cast(DataType::String).fill_null(lit("<null>"))),
        "|",
        false,
    );
    let rows = read_parquet(file)
        .lazy()
        .with_column(class.alias("class"))
        .with_column(len().over([col("class")]).cast(DataType::UInt64).alias("n"))
        .collect()
        .unwrap();
    let n = rows.column("n").unwrap().u64().unwrap();
    let tickets = rows.column("ticket_id").unwrap().str().unwrap();
    let small: BTreeSet<String> = n
        .into_no_null_iter()
        .zip(tickets.into_no_null_iter())
        .filter(|(n, _)| *n < u64::from(k))
        .map(|(_, t)| t.to_string())
        .collect();
    let sizes = rows
        .lazy()
        .group_by([col("class")])
        .agg([len().cast(DataType::UInt64).alias("n")])
        .collect()
        .unwrap();
    let sizes: Vec<u64> = sizes
        .column("n")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    (sizes, small.len() as u64, small)
}

fn tickets(file: &Path) -> BTreeSet<String> {
    read_parquet(file)
        .column("ticket_id")
        .unwrap()
        .str()
        .unwrap()
        .into_no_null_iter()
        .map(str::to_owned)
        .collect()
}

fn out(s: &serde_json::Value) -> std::path::PathBuf {
    std::path::PathBuf::from(s["outputs"][0]["path"].as_str().unwrap())
}

#[test]
fn k_anonymity_suppresses_exactly_the_rows_of_small_classes() {
    let w = Work::new();
    w.datagen(1500, 12, &[]);
    let open = w.run_ok(&w.pipeline("open", "", SAFE_COLUMNS, ""));
    let (sizes, expected, small_tickets) = classes(&out(&open), 5);
    assert!(
        expected > 0 && expected < open["rows_written"].as_u64().unwrap(),
        "{expected}"
    );

    let anon = w.pipeline("anon", "", SAFE_COLUMNS, "");
    let text = std::fs::read_to_string(&anon).unwrap() + "\n[risk]\nk = 5\n";
    std::fs::write(&anon, text).unwrap();
    let s = w.run_ok(&anon);
    assert_eq!(s["dropped"]["k_anonymity"].as_u64(), Some(expected));
    assert_eq!(
        s["rows_written"].as_u64().unwrap(),
        open["rows_written"].as_u64().unwrap() - expected
    );
    assert_rows_add_up(&s);
    let r = &s["risk"];
    assert_eq!(r["quasi_identifiers"], serde_json::json!(QIS));
    assert_eq!(r["classes"].as_u64().unwrap(), sizes.len() as u64);
    assert_eq!(r["rows_below_k"].as_u64(), Some(expected));
    let large_min = sizes.iter().copied().filter(|n| *n >= 5).min().unwrap();
    assert_eq!(r["k_reached"].as_u64(), Some(large_min));
    // Exactly the small classes' rows are gone; every class left has at least k rows.
    let kept = tickets(&out(&s));
    let all = tickets(&out(&open));
    assert_eq!(
        kept,
        all.difference(&small_tickets)
            .cloned()
            .collect::<BTreeSet<_>>()
    );
    let (left, below, _) = classes(&out(&s), 5);
    assert_eq!(below, 0);
    assert_eq!(left.iter().min().copied(), Some(large_min));
    // l-diversity of the sensitive column, against a count here.
    let l = read_parquet(&out(&s))
        .lazy()
        .group_by(QIS.map(col))
        .agg([col("satisfaction").drop_nulls().n_unique().alias("l")])
        .collect()
        .unwrap()
        .column("l")
        .unwrap()
        .cast(&DataType::UInt64)
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .min()
        .unwrap();
    assert_eq!(r["l_diversity"]["satisfaction"].as_u64(), Some(l));

    // `privprep risk` measures both files the same way.
    let assess = |file: &Path| -> serde_json::Value {
        let o = w.privprep_ok(&[
            "risk",
            file.to_str().unwrap(),
            "--qi",
            &QIS.join(","),
            "--k",
            "5",
            "--sensitive",
            "satisfaction",
            "--format",
            "json",
        ]);
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let a = assess(&out(&open));
    assert_eq!(a["rows_below_k"].as_u64(), Some(expected));
    assert_eq!(a["classes"].as_u64().unwrap(), sizes.len() as u64);
    let b = assess(&out(&s));
    assert_eq!(b["classes_below_k"], 0);
    assert_eq!(b["k_reached"].as_u64(), Some(large_min));
    assert_eq!(b["l_diversity"][0][1].as_u64(), Some(l));
    w.privprep_ok(&["lineage", "verify"]);
}

/// `report` counts the small classes and writes every row; with splits, the classes span them.
#[test]
fn k_anonymity_reports_or_suppresses_across_splits() {
    let w = Work::new();
    w.datagen(1000, 13, &[]);
    let open = w.run_ok(&w.pipeline("open", "", SAFE_COLUMNS, ""));
    let (_, expected, _) = classes(&out(&open), 4);

    let report = w.pipeline("report", "", SAFE_COLUMNS, "");
    let text = std::fs::read_to_string(&report).unwrap() + "\n[risk]\nk = 4\naction = \"report\"\n";
    std::fs::write(&report, text).unwrap();
    let s = w.run_ok(&report);
    assert!(s["dropped"].get("k_anonymity").is_none());
    assert_eq!(s["rows_written"], open["rows_written"]);
    assert_eq!(s["risk"]["rows_below_k"].as_u64(), Some(expected));
    assert_eq!(s["risk"]["action"], "report");

    let split = w.pipeline(
        "split",
        "",
        SAFE_COLUMNS,
        "[output.split]\ntrain = 0.7\nvalidation = 0.15\ntest = 0.15",
    );
    let text = std::fs::read_to_string(&split).unwrap() + "\n[risk]\nk = 4\n";
    std::fs::write(&split, text).unwrap();
    let s = w.run_ok(&split);
    assert_eq!(s["dropped"]["k_anonymity"].as_u64(), Some(expected));
}

/// `[risk]` mistakes are found by `validate`, at their line.
#[test]
fn validate_reports_risk_mistakes() {
    let w = Work::new();
    w.datagen(50, 1, &[]);
    let p = w.pipeline("bad", "", SAFE_COLUMNS, "");
    let text = std::fs::read_to_string(&p).unwrap()
        + "\n[risk]\nk = 1\nquasi_identifiers = [\"zip\", \"full_name\"]\n";
    std::fs::write(&p, text).unwrap();
    let o = w.privprep(&["validate", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("k must be at least 2"), "{e}");
    assert!(e.contains("`full_name` is not an output column"), "{e}");
}
