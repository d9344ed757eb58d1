//! `privprep lineage sql`: read-only SQL over the lineage store, through the binary.

mod common;

use common::*;
use sha2::{Digest, Sha256};

fn sql(w: &Work, query: &str, format: &str) -> std::process::Output {
    w.privprep(&["lineage", "sql", query, "--format", format])
}

fn json_rows(w: &Work, query: &str) -> Vec<serde_json::Value> {
    let out = w.privprep_ok(&["lineage", "sql", query, "--format", "json"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn file_sha(path: &std::path::Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn views_answer_what_the_runs_recorded() {
    let w = Work::new();
    w.datagen(600, 9, &[]);
    let plain = w.pipeline("plain", "", SAFE_COLUMNS, "");
    let first = w.run_ok(&plain);
    let released = capped_pipeline(&w, "counted", 5.0, 1.0, r#"{ kind = "count" }"#);
    let second = w.run_ok(&released);

    // Every file each run wrote, data and releases, with the hashes the runs reported.
    let outputs = json_rows(&w, "SELECT * FROM outputs_per_run ORDER BY seq, kind, name");
    let reported: Vec<(String, String)> = [&first, &second]
        .iter()
        .flat_map(|s| {
            let data = s["outputs"].as_array().unwrap().iter();
            let releases = s["releases"].as_array().unwrap().iter();
            data.chain(releases)
                .map(|o| {
                    (
                        o["path"].as_str().unwrap().to_string(),
                        o["sha256"].as_str().unwrap().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(outputs.len(), reported.len(), "{outputs:?}");
    for (path, sha) in &reported {
        assert!(
            outputs.iter().any(|o| o["path"]
                .as_str()
                .is_some_and(|p| p.ends_with(path.rsplit('/').next().unwrap()))
                && o["sha256"] == sha.as_str()),
            "{path} {sha} not in {outputs:?}"
        );
    }
    assert_eq!(outputs.iter().filter(|o| o["kind"] == "release").count(), 1);

    // Both runs read the one dataset.
    let per_dataset = json_rows(&w, "SELECT * FROM runs_per_dataset");
    assert_eq!(per_dataset.len(), 1, "{per_dataset:?}");
    assert_eq!(per_dataset[0]["runs"], 2);
    assert_eq!(per_dataset[0]["succeeded"], 2);
    assert_eq!(per_dataset[0]["rows_read"], 1200);

    // The spend of the release, as the ledger holds it.
    let spends = json_rows(&w, "SELECT * FROM spends_per_dataset");
    assert_eq!(spends.len(), 1, "{spends:?}");
    assert_eq!(spends[0]["spends"], 1);
    assert!(
        (spends[0]["epsilon"].as_f64().unwrap() - 1.0).abs() < 1e-9,
        "{spends:?}"
    );

    // Drops per run add up to what each run dropped.
    let drops = json_rows(
        &w,
        "SELECT run_id, SUM(rows) AS rows FROM drops_per_run GROUP BY run_id ORDER BY seq",
    );
    let dropped = |s: &serde_json::Value| -> u64 {
        s["dropped"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum()
    };
    assert_eq!(drops[0]["rows"].as_u64(), Some(dropped(&first)));
    assert_eq!(drops[1]["rows"].as_u64(), Some(dropped(&second)));

    // CSV and table forms of the same answer.
    let csv = sql(&w, "SELECT dataset_id, runs FROM runs_per_dataset", "csv");
    assert_eq!(
        String::from_utf8_lossy(&csv.stdout),
        "dataset_id,runs\nsupport_tickets,2\n"
    );
    let table = sql(&w, "SELECT dataset_id, runs FROM runs_per_dataset", "table");
    let text = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(
        text.starts_with("dataset_id") && text.ends_with("(1 row)\n"),
        "{text}"
    );
}

#[test]
fn writes_attach_and_several_statements_are_refused_and_change_nothing() {
    let w = Work::new();
    w.datagen(200, 4, &[]);
    let p = w.pipeline("p", "", SAFE_COLUMNS, "");
    w.run_ok(&p);
    let db = w.state().join("lineage.db");
    let before = file_sha(&db);
    let elsewhere = w.path().join("copy.db");
    for (query, says) in [
        ("DELETE FROM runs", "DELETE"),
        ("update runs set status = 'failed'", "UPDATE"),
        ("INSERT INTO run_drops VALUES ('x', 'y', 1)", "INSERT"),
        ("DROP TABLE runs", "DROP"),
        ("CREATE TABLE t (a)", "CREATE"),
        ("/* sneaky */ DELETE FROM budget_ledger", "DELETE"),
        (&format!("VACUUM INTO '{}'", elsewhere.display()), "VACUUM"),
        (
            &format!("ATTACH '{}' AS other", elsewhere.display()),
            "ATTACH",
        ),
        ("SELECT 1; DELETE FROM runs", "one statement at a time"),
    ] {
        let out = sql(&w, query, "table");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{query}: {err}");
        assert!(err.contains(says), "{query}: {err}");
        assert!(out.stdout.is_empty(), "{query}");
    }
    assert!(!elsewhere.exists(), "a refused statement wrote a file");
    assert_eq!(file_sha(&db), before, "the store changed");
    w.privprep_ok(&["lineage", "verify"]);
    // A query that fails names the views and tables to use.
    let out = sql(&w, "SELECT * FROM no_such_table", "table");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("runs_per_dataset"));
}
