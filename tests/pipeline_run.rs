//! End-to-end tests through the binary on generated data.

mod common;

use common::*;
use polars::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// The policy computed independently of privprep, straight from the CSV.
fn expected_outcomes(data: &Path) -> (u64, BTreeMap<String, u64>) {
    let revoked: HashSet<String> = std::fs::read_to_string(data.join("revocations.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let as_of = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    let oldest = as_of - chrono::Duration::days(1095);
    let mut reader = csv::Reader::from_path(data.join("tickets.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let idx = |n: &str| headers.iter().position(|h| h == n).unwrap();
    let (subject, status, purposes, provenance, created) = (
        idx("subject_id"),
        idx("consent_status"),
        idx("consent_purposes"),
        idx("provenance"),
        idx("created_at"),
    );
    let mut kept = 0;
    let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
    for rec in reader.records() {
        let rec = rec.unwrap();
        let date = chrono::NaiveDateTime::parse_from_str(&rec[created], "%Y-%m-%dT%H:%M:%S")
            .ok()
            .map(|d| d.date());
        let reason = if rec[subject].trim().is_empty() {
            Some("missing_subject")
        } else if revoked.contains(rec[subject].trim()) {
            Some("revoked")
        } else if rec[status].trim() != "given" {
            Some("consent_status")
        } else if !rec[purposes].split(';').any(|p| p.trim() == "training") {
            Some("consent_purpose")
        } else if !["app", "web", "partner_api"].contains(&rec[provenance].trim()) {
            Some("provenance")
        } else if !date.is_some_and(|d| d >= oldest && d <= as_of) {
            Some("retention")
        } else {
            None
        };
        match reason {
            None => kept += 1,
            Some(r) => *dropped.entry(r.to_string()).or_default() += 1,
        }
    }
    (kept, dropped)
}

fn summary_dropped(summary: &serde_json::Value) -> BTreeMap<String, u64> {
    summary["dropped"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

#[test]
fn surviving_rows_match_an_independent_policy_computation() {
    let w = Work::new();
    w.datagen(4000, 7, &[]);
    let p = w.pipeline("policy", "", SAFE_COLUMNS, "");
    let (code, s, stderr) = w.run_json(&p, &[]);
    assert_eq!(code, 0, "{stderr}");
    let (kept, dropped) = expected_outcomes(&w.data());
    assert_eq!(s["status"], "succeeded");
    assert_eq!(s["rows_read"].as_u64().unwrap(), 4000);
    assert_eq!(s["rows_written"].as_u64().unwrap(), kept);
    assert_eq!(summary_dropped(&s), dropped);
    assert!(
        dropped.len() >= 4,
        "the sample should exercise most reasons: {dropped:?}"
    );
    assert_eq!(s["quarantined"].as_u64().unwrap(), 0);
    let out = read_parquet(&w.path().join("out/policy.parquet"));
    assert_eq!(out.height() as u64, kept);
    assert_eq!(s["outputs"][0]["rows"].as_u64().unwrap(), kept);
    assert_eq!(s["outputs"][0]["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn no_revoked_subject_and_no_dropped_column_reach_the_output() {
    let w = Work::new();
    w.datagen(3000, 11, &[]);
    let key = key_file(w.path(), "k.key", 7);
    let p = w.pipeline("revoked", "", SAFE_COLUMNS, "");
    let (code, _, stderr) = w.run_json(&p, &["--key-file", key.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let out = read_parquet(&w.path().join("out/revoked.parquet"));
    let names: Vec<String> = out
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert!(
        !names.contains(&"full_name".to_string()) && !names.contains(&"body".to_string()),
        "{names:?}"
    );
    for internal in ["__status", "__row", "__file", "__badcol", "__split"] {
        assert!(!names.iter().any(|n| n == internal));
    }
    let k = privprep::identity::keys::Key::parse(&std::fs::read_to_string(&key).unwrap()).unwrap();
    let t = privprep::identity::Tokenizer::new(&k, 128, privprep::identity::TokenEncoding::Hex)
        .unwrap();
    let revoked_tokens: HashSet<String> = std::fs::read_to_string(w.data().join("revocations.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|s| t.token(s.trim()))
        .collect();
    assert!(!revoked_tokens.is_empty());
    let subjects = out.column("subject_id").unwrap().str().unwrap().clone();
    let present: HashSet<&str> = subjects.into_no_null_iter().collect();
    assert!(present.iter().all(|tok| !revoked_tokens.contains(*tok)));
    // And the test would notice: a non-revoked subject's token is in the output.
    assert!(!present.is_empty());
}

#[test]
fn tokens_are_stable_with_one_key_and_differ_with_another() {
    let w = Work::new();
    w.datagen(1500, 3, &[]);
    let k1 = key_file(w.path(), "k1.key", 1);
    let k2 = key_file(w.path(), "k2.key", 2);
    let p = w.pipeline("tok", "", SAFE_COLUMNS, "");
    let read = |key: &Path| {
        let (code, s, e) = w.run_json(&p, &["--key-file", key.to_str().unwrap()]);
        assert_eq!(code, 0, "{e}");
        (read_parquet(&w.path().join("out/tok.parquet")), s)
    };
    let (a, sa) = read(&k1);
    let (b, _) = read(&k1);
    let (c, sc) = read(&k2);
    assert!(a.equals_missing(&b), "same key, same input: same output");
    assert_ne!(sa["key_id"], sc["key_id"]);
    let col = |df: &DataFrame| {
        df.column("email")
            .unwrap()
            .str()
            .unwrap()
            .into_no_null_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let (ea, ec) = (col(&a), col(&c));
    assert_eq!(ea.len(), ec.len());
    assert!(
        ea.iter().zip(&ec).all(|(x, y)| x != y),
        "another key must change every token"
    );
    assert!(ea
        .iter()
        .all(|t| t.len() == 32 && t.chars().all(|c| c.is_ascii_hexdigit())));
}

#[test]
fn output_has_the_declared_schema() {
    let w = Work::new();
    w.datagen(1000, 5, &[]);
    let p = w.pipeline("schema", "", SAFE_COLUMNS, "");
    let (code, _, e) = w.run_json(&p, &[]);
    assert_eq!(code, 0, "{e}");
    let out = read_parquet(&w.path().join("out/schema.parquet"));
    let schema = out.schema();
    let expect = [
        ("ticket_id", DataType::String),
        ("subject_id", DataType::String),
        ("email", DataType::String),
        ("phone", DataType::String),
        ("birth_date", DataType::Int32),
        ("zip", DataType::String),
        ("country", DataType::String),
        (
            "created_at",
            DataType::Datetime(TimeUnit::Microseconds, None),
        ),
        ("priority", DataType::Int64),
        ("handle_time_minutes", DataType::Float64),
        ("satisfaction", DataType::Int64),
    ];
    for (name, ty) in expect {
        assert_eq!(schema.get(name), Some(&ty), "column {name}");
    }
    let zips = out.column("zip").unwrap().str().unwrap().clone();
    assert!(zips.into_no_null_iter().all(|z| z.chars().count() <= 3));
    let phones = out.column("phone").unwrap().str().unwrap().clone();
    assert!(phones
        .into_no_null_iter()
        .all(|p| p.chars().rev().skip(2).all(|c| c == '*')));
}

#[test]
fn splits_are_subject_disjoint_and_near_their_fractions() {
    let w = Work::new();
    w.datagen(6000, 9, &[]);
    let p = w.pipeline(
        "split",
        "",
        SAFE_COLUMNS,
        "[output.split]\ntrain = 0.7\nvalidation = 0.15\ntest = 0.15",
    );
    let (code, s, e) = w.run_json(&p, &[]);
    assert_eq!(code, 0, "{e}");
    let outputs = s["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 3);
    let mut sets = Vec::new();
    let mut total = 0;
    for split in ["train", "validation", "test"] {
        let df = read_parquet(&w.path().join(format!("out/split.{split}.parquet")));
        total += df.height() as u64;
        let subjects: HashSet<String> = df
            .column("subject_id")
            .unwrap()
            .str()
            .unwrap()
            .into_no_null_iter()
            .map(String::from)
            .collect();
        sets.push(subjects);
    }
    assert_eq!(total, s["rows_written"].as_u64().unwrap());
    for i in 0..3 {
        for j in i + 1..3 {
            assert!(
                sets[i].is_disjoint(&sets[j]),
                "splits {i} and {j} share a subject"
            );
        }
    }
    let subjects: f64 = sets.iter().map(|s| s.len() as f64).sum();
    let train_share = sets[0].len() as f64 / subjects;
    assert!(
        (0.6..0.8).contains(&train_share),
        "train share of subjects {train_share}"
    );
}

#[test]
fn malformed_rows_are_quarantined_and_counted_without_values() {
    let w = Work::new();
    w.datagen(2000, 13, &["--bad-rows", "10"]);
    let p = w.pipeline("bad", "", SAFE_COLUMNS, "max_bad_rows = 100");
    let (code, s, e) = w.run_json(&p, &[]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(s["quarantined"].as_u64().unwrap(), 10);
    let read = s["rows_read"].as_u64().unwrap();
    let dropped: u64 = summary_dropped(&s).values().sum();
    assert_eq!(read, s["rows_written"].as_u64().unwrap() + dropped + 10);
    let report = std::fs::read_to_string(w.path().join("out/bad.quarantine.jsonl")).unwrap();
    let entries: Vec<serde_json::Value> = report
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 10);
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.data().join("bad_rows.json")).unwrap())
            .unwrap();
    let mut want: Vec<u64> = truth["extra_field"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    want.extend(
        truth["bad_type"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["row"].as_u64().unwrap()),
    );
    want.sort();
    let mut got: Vec<u64> = entries
        .iter()
        .map(|e| e["record"].as_u64().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, want);
    for e in &entries {
        assert!(e["line"].as_u64().unwrap() >= e["record"].as_u64().unwrap() + 2);
        assert!(e["file"].as_str().unwrap().ends_with("tickets.csv"));
        if e["column"].is_string() {
            assert_eq!(e["column"], "priority");
        }
    }
    assert!(
        !report.contains("high") && !report.contains("oops"),
        "the report must not hold raw values"
    );
}

#[test]
fn a_failing_run_leaves_no_output_and_a_failed_record() {
    let w = Work::new();
    w.datagen(1500, 17, &["--bad-rows", "4"]);
    let p = w.pipeline("fail", "", SAFE_COLUMNS, "");
    let (code, s, stderr) = w.run_json(&p, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(s["status"], "failed");
    assert!(stderr.contains("max_bad_rows"), "{stderr}");
    assert!(!w.path().join("out/fail.parquet").exists());
    let leftovers: Vec<_> = std::fs::read_dir(w.path().join("out"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("privprep-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let list = w.privprep(&["lineage", "list", "--format", "json"]);
    let runs: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], "failed");
    assert_eq!(runs[0]["run_id"], s["run_id"]);
    // A failed run still says which files it read, with their hashes (computed beside the
    // stream).
    let show = w.privprep(&[
        "lineage",
        "show",
        s["run_id"].as_str().unwrap(),
        "--format",
        "json",
    ]);
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let inputs = shown["record"]["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 1, "{shown}");
    let sha = inputs[0]["sha256"].as_str().unwrap();
    assert_eq!(sha.len(), 64, "{sha}");
    let bytes = std::fs::read(w.data().join("tickets.csv")).unwrap();
    assert_eq!(
        sha,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
    );
}

#[test]
fn a_killed_run_leaves_no_partial_output_and_is_recorded_failed() {
    let w = Work::new();
    w.datagen(400_000, 19, &[]);
    let p = w.pipeline("killed", "", SAFE_COLUMNS, "row_group_size = 1000");
    let mut child = w
        .cmd()
        .args(["run", p.to_str().unwrap(), "--no-progress"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out_dir = w.path().join("out");
    let started = std::time::Instant::now();
    let mut saw_tmp = false;
    while started.elapsed() < std::time::Duration::from_secs(120) {
        if let Ok(entries) = std::fs::read_dir(&out_dir) {
            if entries
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().contains("privprep-tmp"))
            {
                saw_tmp = true;
                break;
            }
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    if !saw_tmp || status.success() {
        eprintln!("skipping: the run finished before it could be killed");
        return;
    }
    assert!(
        !out_dir.join("killed.parquet").exists(),
        "a killed run must not leave the output"
    );
    let list = w.privprep(&["lineage", "list", "--format", "json"]);
    let runs: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["status"], "failed");
    let leftovers = std::fs::read_dir(&out_dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("privprep-tmp"))
        .count();
    assert_eq!(
        leftovers, 0,
        "recovery removes the dead run's temporary files"
    );
    let verify = w.privprep(&["lineage", "verify"]);
    assert!(verify.status.success());
}

#[test]
fn lineage_verify_passes_then_catches_an_edited_record() {
    let w = Work::new();
    w.datagen(800, 23, &[]);
    let p = w.pipeline("chain", "", SAFE_COLUMNS, "");
    for _ in 0..3 {
        let (code, _, e) = w.run_json(&p, &[]);
        assert_eq!(code, 0, "{e}");
    }
    let ok = w.privprep(&["lineage", "verify"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let db = rusqlite::Connection::open(w.state().join("lineage.db")).unwrap();
    db.execute(
        "UPDATE runs SET rows_written = rows_written + 1 WHERE seq = 2",
        [],
    )
    .unwrap();
    let bad = w.privprep(&["lineage", "verify", "--format", "json"]);
    assert_eq!(bad.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&bad.stdout).unwrap();
    assert_eq!(report["first_broken"]["seq"], 2);
}

#[test]
fn canary_values_appear_nowhere_but_the_intended_output() {
    let w = Work::new();
    w.datagen(2500, 29, &["--bad-rows", "6"]);
    // Canaries: every subject id, name, email and phone in the input.
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(w.data().join("tickets.csv"))
        .unwrap();
    let mut canaries = HashSet::new();
    for rec in reader.records() {
        let rec = rec.unwrap();
        for i in [1usize, 2, 3, 4] {
            if let Some(v) = rec.get(i) {
                if v.len() >= 6 {
                    canaries.insert(v.to_string());
                }
            }
        }
    }
    assert!(canaries.len() > 100);
    let p = w.pipeline("canary", "", SAFE_COLUMNS, "max_bad_rows = 100");
    let out = w.privprep(&["-vv", "run", p.to_str().unwrap(), "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut places: Vec<(String, Vec<u8>)> = vec![
        ("stdout".into(), out.stdout.clone()),
        ("stderr".into(), out.stderr.clone()),
    ];
    for entry in walk(&w.state())
        .into_iter()
        .chain(walk(&w.path().join("out")))
    {
        let bytes = std::fs::read(&entry).unwrap();
        places.push((entry.display().to_string(), bytes));
    }
    let list = w.privprep(&["lineage", "show", "2", "--format", "json"]);
    places.push(("lineage show".into(), list.stdout));
    // Subject rights and SQL reports, asked about real subjects, name none of them.
    let ids: Vec<&String> = canaries
        .iter()
        .filter(|c| c.starts_with('S'))
        .take(50)
        .collect();
    assert!(ids.len() > 10);
    let ids_file = w.path().join("ask.txt");
    std::fs::write(
        &ids_file,
        ids.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    for args in [
        vec!["subject", "find", "--ids", ids_file.to_str().unwrap()],
        vec![
            "subject",
            "find",
            "--ids",
            ids_file.to_str().unwrap(),
            "--format",
            "json",
        ],
        vec![
            "lineage",
            "sql",
            "SELECT * FROM outputs_per_run",
            "--format",
            "json",
        ],
    ] {
        let out = w.privprep_ok(&args);
        places.push((args.join(" "), [out.stdout, out.stderr].concat()));
    }
    for (place, bytes) in &places {
        if place.ends_with(".parquet") {
            continue;
        }
        let text = String::from_utf8_lossy(bytes);
        for c in &canaries {
            assert!(
                !text.contains(c.as_str()),
                "a personal value leaked into {place}"
            );
        }
    }
    // The Parquet output holds tokens and masks, not the raw identifiers.
    let df = read_parquet(&w.path().join("out/canary.parquet"));
    for name in ["email", "phone"] {
        let col = df.column(name).unwrap().str().unwrap().clone();
        assert!(
            col.into_no_null_iter().all(|v| !canaries.contains(v)),
            "raw {name} in output"
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The same data as CSV, Parquet and NDJSON gives the same rows and drop counts.
#[test]
fn parquet_and_ndjson_sources_give_the_same_result_as_csv() {
    let w = Work::new();
    w.datagen(2500, 37, &[]);
    let parquet_dir = w.path().join("pq");
    let out = w.privprep(&[
        "datagen",
        "--rows",
        "2500",
        "--seed",
        "37",
        "--format",
        "parquet",
        "--out",
        parquet_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    // NDJSON with every value as text, plus one line that is not JSON.
    let mut text = csv_as_ndjson(&w.data().join("tickets.csv"));
    let first_newline = text.find('\n').unwrap();
    text.insert_str(first_newline + 1, "{not json\n");
    std::fs::write(w.data().join("tickets.ndjson"), text).unwrap();

    let csv = w.pipeline("csv", "", SAFE_COLUMNS, "");
    let (code, a, e) = w.run_json(&csv, &[]);
    assert_eq!(code, 0, "{e}");
    for (name, path, manifest, quarantined) in [
        ("pq", "pq/tickets.parquet", "pq/manifest.toml", 0u64),
        ("nd", "data/tickets.ndjson", "data/manifest.toml", 1),
    ] {
        let p = w.pipeline(name, "", SAFE_COLUMNS, "max_bad_rows = 5");
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replace("data/tickets.csv", path)
            .replace(
                "manifest = \"data/manifest.toml\"",
                &format!("manifest = \"{manifest}\""),
            );
        std::fs::write(&p, text).unwrap();
        let (code, b, e) = w.run_json(&p, &[]);
        assert_eq!(code, 0, "{name}: {e}");
        assert_eq!(b["rows_written"], a["rows_written"], "{name}");
        assert_eq!(b["dropped"], a["dropped"], "{name}");
        assert_eq!(b["quarantined"].as_u64().unwrap(), quarantined, "{name}");
        let left = read_parquet(&w.path().join("out/csv.parquet"));
        let right = read_parquet(&w.path().join(format!("out/{name}.parquet")));
        assert!(
            left.equals_missing(&right),
            "{name}: same values and tokens as from CSV"
        );
    }
}
