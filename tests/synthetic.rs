//! DP synthetic tables (`[[synthetic]]`) through the binary: the tree recovers a known
//! Bayesian network at a high budget, beats independent marginals at ε = 1, spends exactly
//! OpenDP's maps through the ledger, and the cap refuses an over-budget table before anything
//! is written.

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// A table of 5,000 rows over four columns a → b → c → d (4 values each; a child repeats its
/// parent with probability 0.8), each row its own privacy unit, under dataset-wide consent.
fn chain_dataset(dir: &Path, cap: &str) {
    let data = dir.join("chain");
    std::fs::create_dir_all(&data).unwrap();
    let mut rng = Lcg(99);
    let mut csv = String::from("a,b,c,d\n");
    for _ in 0..5000 {
        let mut r = vec![rng.below(4)];
        for i in 1..4 {
            let prev = r[i - 1];
            r.push(if rng.below(100) < 80 {
                prev
            } else {
                rng.below(4)
            });
        }
        csv.push_str(&format!("{},{},{},{}\n", r[0], r[1], r[2], r[3]));
    }
    std::fs::write(data.join("chain.csv"), csv).unwrap();
    let values = "values = [\"0\", \"1\", \"2\", \"3\"]";
    let columns = ["a", "b", "c", "d"].map(|c| (c, "int64", "quasi_identifier", values));
    write_manifest(&data, "chain", cap, &columns);
}

/// A manifest for `dir`: dataset `id`, each row its own privacy unit, consent for research
/// under a stated basis, the `extra` lines, and columns of (name, type, class, more lines).
fn write_manifest(dir: &Path, id: &str, extra: &str, columns: &[(&str, &str, &str, &str)]) {
    let mut manifest = format!(
        r#"dataset_id = "{id}"
owner = "o"
license = "l"
origin = "generated"
collected_at = "2026-01-01"
privacy_unit = "row"
provenance_tag = "lab"
consent = {{ basis = "synthetic test data", purposes = ["research"] }}
{extra}
"#
    );
    for (name, ty, class, more) in columns {
        manifest.push_str(&format!(
            "\n[[columns]]\nname = \"{name}\"\ntype = \"{ty}\"\nclass = \"{class}\"\n{more}\n"
        ));
    }
    std::fs::write(dir.join("manifest.toml"), manifest).unwrap();
}

fn pipeline(w: &Work, name: &str, privacy: &str) -> PathBuf {
    synthetic_pipeline(
        w,
        name,
        "chain",
        &["a", "b", "c", "d"],
        &format!("privacy = {privacy}\nseed = 7\n"),
    )
}

/// A pipeline over `dataset/dataset.csv` keeping `columns` and making one synthetic table of
/// them, `out/<name>.synthetic.parquet`, with the `[[synthetic]]` lines `extra`.
fn synthetic_pipeline(
    w: &Work,
    name: &str,
    dataset: &str,
    columns: &[&str],
    extra: &str,
) -> PathBuf {
    let keep: String = columns
        .iter()
        .map(|c| format!("{c} = {{ action = \"keep\" }}\n"))
        .collect();
    let listed: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
    let text = format!(
        r#"[pipeline]
name = "{name}"

[source]
path = "{dataset}/{dataset}.csv"
manifest = "{dataset}/manifest.toml"

[policy]
purpose = "research"
allowed_provenance = ["lab"]

[columns]
{keep}
[output]
path = "out/{name}.parquet"

[[synthetic]]
name = "{dataset}_synth"
path = "out/{name}.synthetic.parquet"
columns = [{}]
{extra}"#,
        listed.join(", ")
    );
    let p = w.path().join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// The chain dataset without the manifest's values of `d` (its last column).
fn drop_values_of_d(dir: &Path) {
    let manifest = dir.join("chain/manifest.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let cut = text.rfind("values = ").unwrap();
    std::fs::write(&manifest, &text[..cut]).unwrap();
}

/// Appends `lines` to the pipeline file `p` (to its last section, `[[synthetic]]`).
fn append(p: &Path, lines: &str) {
    let text = std::fs::read_to_string(p).unwrap();
    std::fs::write(p, format!("{text}{lines}")).unwrap();
}

/// The utility report of the synthetic table of pipeline `name`.
fn report(w: &Work, name: &str) -> serde_json::Value {
    let path = w.path().join(format!("out/{name}.synthetic.report.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Mean 2-way TV between the real table and the product of its own 1-way marginals: the
/// best an independent model can do.
fn independent_baseline(file: &Path) -> f64 {
    let df = read_parquet(file);
    let cols = ["a", "b", "c", "d"];
    let n = df.height() as f64;
    let p = |c: &str, v: i64| -> f64 {
        df.column(c)
            .unwrap()
            .i64()
            .unwrap()
            .into_no_null_iter()
            .filter(|x| *x == v)
            .count() as f64
            / n
    };
    let mut total = 0.0;
    let mut pairs = 0.0;
    for i in 0..4 {
        for j in i + 1..4 {
            let (ci, cj) = (
                df.column(cols[i]).unwrap().i64().unwrap().clone(),
                df.column(cols[j]).unwrap().i64().unwrap().clone(),
            );
            let mut tv = 0.0;
            for a in 0..4 {
                for b in 0..4 {
                    let joint = ci
                        .into_no_null_iter()
                        .zip(cj.into_no_null_iter())
                        .filter(|(x, y)| *x == a && *y == b)
                        .count() as f64
                        / n;
                    tv += (joint - p(cols[i], a) * p(cols[j], b)).abs();
                }
            }
            total += tv / 2.0;
            pairs += 1.0;
        }
    }
    total / pairs
}

#[test]
fn a_high_budget_recovers_the_network_and_the_spend_is_opendps() {
    let w = Work::new();
    chain_dataset(w.path(), "");
    let s = w.run_ok(&pipeline(&w, "high", "{ rho = 50.0 }"));
    let r = w.lineage_record(s["run_id"].as_str().unwrap());
    let t = &r["synthetics"][0];
    // The run summary lists the table as lineage records it.
    assert_eq!(&s["synthetics"][0], t, "{s}");
    let mut edges: Vec<(String, String)> = t["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let (a, b) = (e[0].as_str().unwrap(), e[1].as_str().unwrap());
            (a.min(b).to_string(), a.max(b).to_string())
        })
        .collect();
    edges.sort();
    assert_eq!(
        edges,
        [("a", "b"), ("b", "c"), ("c", "d")].map(|(a, b)| (a.to_string(), b.to_string()))
    );
    // The spend: the sum of the measurements' ρ (OpenDP's maps), within the target, and the
    // ledger's entry for the table.
    let rho = t["rho"].as_f64().unwrap();
    let sum: f64 = t["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["rho"].as_f64().unwrap())
        .sum();
    assert!(
        (sum - rho).abs() < 1e-9 && rho <= 50.0 && rho > 49.0,
        "{sum} {rho}"
    );
    let spend = &r["budget_spends"][0];
    assert_eq!(spend["release"], "chain_synth");
    assert_eq!(spend["rho"].as_f64(), Some(rho));
    // The table: the four columns, about the noisy number of rows; the report beside it.
    let file = w.path().join("out/high.synthetic.parquet");
    let df = read_parquet(&file);
    assert_eq!(df.get_column_names(), ["a", "b", "c", "d"]);
    assert!(
        (df.height() as f64 - 5000.0).abs() < 250.0,
        "{}",
        df.height()
    );
    let report = report(&w, "high");
    assert!(report["for_data_owner"].is_string());
    assert!(report["mean_tv_2way"].as_f64().unwrap() < 0.05, "{report}");
    w.privprep_ok(&["lineage", "verify"]);
    // The registry: the table, its model and spend, and the input it came from.
    let sql = w.privprep_ok(&[
        "lineage",
        "sql",
        "SELECT name, method, rho, input_sha256 FROM synthetic_tables",
        "--format",
        "json",
    ]);
    let rows: serde_json::Value = serde_json::from_slice(&sql.stdout).unwrap();
    assert_eq!(rows[0]["name"], "chain_synth");
    assert_eq!(rows[0]["method"], "mst-tree");
    assert_eq!(rows[0]["rho"].as_f64(), Some(rho));
    assert_eq!(rows[0]["input_sha256"], r["inputs"][0]["sha256"]);
}

#[test]
fn at_epsilon_one_the_table_beats_independent_marginals() {
    let w = Work::new();
    chain_dataset(w.path(), "");
    w.run_ok(&pipeline(&w, "one", "{ epsilon = 1.0, delta = 1e-6 }"));
    let report = report(&w, "one");
    let tree = report["mean_tv_2way"].as_f64().unwrap();
    let baseline = independent_baseline(&w.path().join("out/one.parquet"));
    assert!(tree < baseline, "tree {tree} vs independent {baseline}");
    eprintln!("mean 2-way TV at ε = 1: tree {tree:.4}, independent marginals {baseline:.4}");
}

/// `{ epsilon = ε }` alone: pure DP. The measurements are Laplace, each with its ε; their sum
/// is the spend, in the record and in the ledger (as pure ε), and the table still beats
/// independent marginals.
#[test]
fn a_pure_epsilon_table_spends_the_sum_of_its_laplace_measurements() {
    let w = Work::new();
    chain_dataset(w.path(), "");
    let s = w.run_ok(&pipeline(&w, "pure", "{ epsilon = 2.0 }"));
    let r = w.lineage_record(s["run_id"].as_str().unwrap());
    let t = &r["synthetics"][0];
    let epsilon = t["epsilon"].as_f64().unwrap();
    // `rho` is the zCDP that pure ε-DP implies.
    assert!(
        (t["rho"].as_f64().unwrap() - epsilon * epsilon / 2.0).abs() < 1e-12,
        "{t}"
    );
    let measurements = t["measurements"].as_array().unwrap();
    let sum: f64 = measurements
        .iter()
        .map(|m| m["epsilon"].as_f64().unwrap())
        .sum();
    assert!(
        (sum - epsilon).abs() < 1e-9 && epsilon <= 2.0 && epsilon > 1.9,
        "{sum} {epsilon}"
    );
    assert!(measurements
        .iter()
        .filter(|m| m["kind"] != "select")
        .all(|m| m["mechanism"].as_str().unwrap().starts_with("Laplace")));
    let spend = &r["budget_spends"][0];
    assert_eq!(spend["measure"], "pure", "{spend}");
    assert_eq!(spend["epsilon"].as_f64(), Some(epsilon), "{spend}");
    let report = report(&w, "pure");
    let tree = report["mean_tv_2way"].as_f64().unwrap();
    let baseline = independent_baseline(&w.path().join("out/pure.parquet"));
    assert!(tree < baseline, "tree {tree} vs independent {baseline}");
    w.privprep_ok(&["lineage", "verify"]);
}

/// A categorical column whose manifest lists no values takes its public domain from a key
/// file; without one the pipeline is refused at validation, naming the column. Values outside
/// the key file's list are left out of the model and counted in the report.
#[test]
fn a_key_file_gives_a_column_its_public_domain() {
    let w = Work::new();
    chain_dataset(w.path(), "");
    drop_values_of_d(w.path());
    let p = pipeline(&w, "keys", "{ rho = 1.0 }");
    let out = w.privprep(&["validate", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`d` has no public domain") && err.contains("key_files"),
        "{err}"
    );

    std::fs::write(w.path().join("chain/d.txt"), "0\n1\n").unwrap();
    append(&p, "key_files = { d = \"chain/d.txt\" }\n");
    let s = w.run_ok(&p);
    let r = w.lineage_record(s["run_id"].as_str().unwrap());
    let sizes: Vec<u64> = r["synthetics"][0]["domain_sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(sizes, [4, 4, 4, 2]);
    let df = read_parquet(&w.path().join("out/keys.synthetic.parquet"));
    assert!(df
        .column("d")
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .all(|v| v == 0 || v == 1));
    let report = report(&w, "keys");
    let csv = std::fs::read_to_string(w.path().join("chain/chain.csv")).unwrap();
    let outside = csv
        .lines()
        .skip(1)
        .filter(|l| matches!(l.rsplit(',').next(), Some("2" | "3")))
        .count() as u64;
    assert_eq!(
        report["values_outside_the_domain"]["d"].as_u64(),
        Some(outside),
        "{report}"
    );
}

#[test]
fn the_cap_refuses_an_over_budget_table_before_anything_is_written() {
    let w = Work::new();
    chain_dataset(w.path(), "privacy_budget = { rho = 0.1 }");
    let (code, s, stderr) = w.run_json(&pipeline(&w, "over", "{ rho = 1.0 }"), &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("budget"), "{stderr}");
    assert_eq!(s["status"], "failed");
    assert!(!w.path().join("out/over.synthetic.parquet").exists());
    assert!(!w.path().join("out/over.parquet").exists());
}

/// `pipelines/synthetic_adult.toml` runs as it is on the shared Adult split (skipped, saying
/// so, where `../shared/data/adult` is absent): 14 columns with the codes of adult.csv, and
/// the utility report.
#[test]
fn the_adult_example_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let train = root.join("../shared/data/adult/split/train.csv");
    if !train.exists() {
        eprintln!("skipping: {} is absent", train.display());
        return;
    }
    let w = Work::new();
    std::fs::create_dir_all(w.path().join("pipelines")).unwrap();
    std::fs::create_dir_all(w.path().join("datasets/adult")).unwrap();
    std::fs::copy(
        root.join("datasets/adult/manifest.toml"),
        w.path().join("datasets/adult/manifest.toml"),
    )
    .unwrap();
    let text = std::fs::read_to_string(root.join("pipelines/synthetic_adult.toml"))
        .unwrap()
        .replace(
            "../../shared/data/adult/split/train.csv",
            train.to_str().unwrap(),
        );
    let p = w.path().join("pipelines/synthetic_adult.toml");
    std::fs::write(&p, text).unwrap();
    let s = w.run_ok(&p);
    assert_eq!(s["rows_read"], 39074);
    let file = w.path().join("out/synthetic_adult/adult.synthetic.parquet");
    let df = read_parquet(&file);
    let domain: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("../shared/data/adult/adult-domain.json")).unwrap(),
    )
    .unwrap();
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let expected: Vec<String> = domain.as_object().unwrap().keys().cloned().collect();
    assert_eq!(names.len(), 14);
    for (name, size) in domain.as_object().unwrap() {
        assert!(names.contains(name), "{name}");
        let max = df
            .column(name)
            .unwrap()
            .i64()
            .unwrap()
            .into_no_null_iter()
            .max()
            .unwrap();
        assert!(max < size.as_i64().unwrap(), "{name}");
    }
    assert_eq!(
        names.iter().collect::<std::collections::BTreeSet<_>>(),
        expected.iter().collect()
    );
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            w.path()
                .join("out/synthetic_adult/adult.synthetic.report.json"),
        )
        .unwrap(),
    )
    .unwrap();
    // At ε = 1 the bench's 9 runs gave a mean 2-way TV of 0.045–0.049 (the issue's goal is
    // 0.05; MST's 0.138): held here below 0.06, whatever the noise.
    assert!(report["mean_tv_2way"].as_f64().unwrap() < 0.06, "{report}");
    let tstr = &report["train_on_synthetic_test_on_real"];
    assert!(tstr["naive_bayes_accuracy"].is_f64(), "{tstr}");
    // Income is binary: the logistic regression is there too. The model is conditioned on the
    // target, so its rows train the classifier well above the majority class (0.761): 0.839–
    // 0.847 in the bench's 9 runs (trained on the real rows: 0.860).
    let lr = tstr["logistic_regression_accuracy"].as_f64().unwrap();
    let majority = tstr["majority_class"].as_f64().unwrap();
    assert!(lr > majority + 0.04, "{tstr}");
}

/// Date and datetime columns are binned by public ISO edges: the table writes each value as its
/// bin's midpoint, typed as the column (a date, a datetime), and counts the values outside the
/// edges, which are clamped to the first or last bin. Edges of the wrong kind are refused.
#[test]
fn dates_and_datetimes_are_binned_by_public_iso_edges() {
    let w = Work::new();
    let data = w.path().join("dated");
    std::fs::create_dir_all(&data).unwrap();
    let mut rng = Lcg(5);
    let mut csv = String::from("born,seen,grp\n");
    let mut outside = 0u64;
    for _ in 0..3000 {
        let year = 1940 + rng.below(70);
        outside += u64::from(year < 1950);
        let month = 1 + rng.below(12);
        csv.push_str(&format!(
            "{year}-{month:02}-15,2024-{:02}-10T12:30:00,{}\n",
            1 + rng.below(12),
            ["a", "b"][usize::from(year >= 1980)]
        ));
    }
    std::fs::write(data.join("dated.csv"), csv).unwrap();
    write_manifest(
        &data,
        "dated",
        "",
        &[
            ("born", "date", "quasi_identifier", ""),
            ("seen", "datetime", "public", ""),
            ("grp", "string", "public", "values = [\"a\", \"b\"]"),
        ],
    );
    let write = |edges_born: &str| {
        synthetic_pipeline(
            &w,
            "dated",
            "dated",
            &["born", "seen", "grp"],
            &format!(
                "bins = {{ born = {edges_born}, seen = [\"2024-01-01T00:00:00\", \"2024-07-01T00:00:00\", \"2025-01-01\"] }}\nprivacy = {{ rho = 5.0 }}\nseed = 3\n"
            ),
        )
    };
    // Numbers are no edges of a date.
    let p = write("[1950, 1970, 2010]");
    let out = w.privprep(&["validate", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ISO dates"));

    let p = write(r#"["1950-01-01", "1980-01-01", "2010-01-01"]"#);
    w.run_ok(&p);
    let df = read_parquet(&w.path().join("out/dated.synthetic.parquet"));
    use polars::prelude::*;
    assert_eq!(df.column("born").unwrap().dtype(), &DataType::Date);
    assert!(matches!(
        df.column("seen").unwrap().dtype(),
        DataType::Datetime(TimeUnit::Microseconds, None)
    ));
    // Every value is its bin's midpoint (the day halfway between the edges, rounded down;
    // for the datetimes 2024-04-01 and 2024-10-01 at midnight).
    let born: Vec<i32> = df
        .column("born")
        .unwrap()
        .date()
        .unwrap()
        .physical()
        .into_no_null_iter()
        .collect();
    let mid = |a: i64, b: i64| ((a + b) as f64 / 2.0).floor() as i32;
    let (d1950, d1980, d2010) = (-7305i64, 3652i64, 14610i64);
    assert!(born
        .iter()
        .all(|d| *d == mid(d1950, d1980) || *d == mid(d1980, d2010)));
    let seen: Vec<i64> = df
        .column("seen")
        .unwrap()
        .datetime()
        .unwrap()
        .physical()
        .into_no_null_iter()
        .collect();
    let day = 86_400_000_000i64;
    assert!(seen
        .iter()
        .all(|m| *m == 19_814 * day || *m == 19_997 * day));
    let grp: Vec<&str> = df
        .column("grp")
        .unwrap()
        .str()
        .unwrap()
        .into_no_null_iter()
        .collect();
    // The group follows the birth decade in the real rows: the model keeps most of it.
    let agree = born
        .iter()
        .zip(&grp)
        .filter(|(d, g)| (**d == mid(d1980, d2010)) == (**g == "b"))
        .count();
    assert!(
        agree as f64 > 0.8 * born.len() as f64,
        "{agree} of {}",
        born.len()
    );
    let report = report(&w, "dated");
    assert_eq!(
        report["values_outside_the_domain"]["born"].as_u64(),
        Some(outside),
        "{report}"
    );
}

/// A target that is not a column of the table is refused at validation, at its line, rather
/// than quietly building a model without it.
#[test]
fn a_target_outside_the_table_is_refused() {
    let w = Work::new();
    chain_dataset(w.path(), "");
    let p = pipeline(&w, "target", "{ rho = 1.0 }");
    append(&p, "target = \"zz\"\n");
    let out = w.privprep(&["validate", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the target `zz` is not a column of the table"),
        "{err}"
    );
    assert!(err.contains("target.toml:"), "{err}");
}

/// A target of many values is predicted by the report but the model is not conditioned on it
/// (its tables would be that many times wider): `explain` warns, and lineage names the plain
/// tree.
#[test]
fn a_target_of_many_values_is_not_the_models_hub() {
    let w = Work::new();
    chain_dataset(w.path(), "");
    drop_values_of_d(w.path());
    let values: String = (0..20).map(|v| format!("{v}\n")).collect();
    std::fs::write(w.path().join("chain/d.txt"), values).unwrap();
    let p = pipeline(&w, "wide", "{ rho = 1.0 }");
    append(&p, "key_files = { d = \"chain/d.txt\" }\ntarget = \"d\"\n");
    let out = w.privprep_ok(&["explain", p.to_str().unwrap()]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("not conditioned on it"), "{said}");
    let s = w.run_ok(&p);
    let r = w.lineage_record(s["run_id"].as_str().unwrap());
    assert_eq!(r["synthetics"][0]["method"], "mst-tree");
    assert!(report(&w, "wide")["train_on_synthetic_test_on_real"]["naive_bayes_accuracy"].is_f64());
}
