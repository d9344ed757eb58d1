//! The lineage store as a user meets it when someone edits its budget ledger, deletes it,
//! empties it or puts an older copy back: `lineage verify` says so, `budget` and `run` refuse,
//! and nothing is silently re-created (issue items 6 and 7).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{capped_pipeline, Work, SAFE_COLUMNS};

/// A pipeline `name` with one count release asking ε = `epsilon` under a cap of ε = `cap`.
fn capped(w: &Work, name: &str, cap: f64, epsilon: f64) -> PathBuf {
    capped_pipeline(w, name, cap, epsilon, r#"{ kind = "count" }"#)
}

fn db(w: &Work) -> PathBuf {
    w.state().join("lineage.db")
}

fn sql(w: &Work, statement: &str) {
    rusqlite::Connection::open(db(w))
        .unwrap()
        .execute_batch(statement)
        .unwrap();
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The store file and SQLite's files beside it.
fn store_files(path: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|s| {
            let mut p = path.as_os_str().to_owned();
            p.push(s);
            PathBuf::from(p)
        })
        .collect()
}

fn remove_store(path: &Path) {
    for f in store_files(path) {
        let _ = std::fs::remove_file(f);
    }
}

/// Copies the store (and its WAL, if any) from `from` to `to`.
fn copy_store(from: &Path, to: &Path) {
    remove_store(to);
    for (a, b) in store_files(from).iter().zip(store_files(to)) {
        if a.exists() {
            std::fs::copy(a, b).unwrap();
        }
    }
}

fn run_ok(w: &Work, pipeline: &Path) {
    let (code, _, e) = w.run_json(pipeline, &[]);
    assert_eq!(code, 0, "{e}");
}

fn verify_json(w: &Work) -> (Option<i32>, serde_json::Value) {
    let out = w.privprep(&["lineage", "verify", "--format", "json"]);
    let report =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    (out.status.code(), report)
}

fn ledger_has_table(w: &Work) -> bool {
    rusqlite::Connection::open(db(w))
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'budget_ledger'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
        == 1
}

#[test]
fn ledger_edit_is_detected_by_verify_and_refused_by_spend() {
    let w = Work::new();
    w.datagen(300, 41, &[]);
    let first = capped(&w, "first", 1.0, 0.6);
    run_ok(&w, &first);
    let ok = w.privprep(&["lineage", "verify"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(
        stdout(&ok).contains("budget ledger 1 entr(ies)"),
        "{}",
        stdout(&ok)
    );
    assert!(
        stdout(&ok).contains("matches its anchor"),
        "{}",
        stdout(&ok)
    );

    sql(&w, "UPDATE budget_ledger SET epsilon = 0.01");

    let (code, report) = verify_json(&w);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["first_broken"]["ledger_entry"], 1, "{report}");
    let text = w.privprep(&["lineage", "verify"]);
    assert!(
        stderr(&text).contains("budget ledger entry 1"),
        "{}",
        stderr(&text)
    );

    let budget = w.privprep(&["budget"]);
    assert_eq!(budget.status.code(), Some(1));
    assert!(
        stderr(&budget).contains("fails its integrity check"),
        "{}",
        stderr(&budget)
    );

    // 0.01 + 0.6 would fit the cap of 1.0; the true 0.6 + 0.6 does not. Either way: refused.
    let second = capped(&w, "second", 1.0, 0.6);
    let (code, summary, e) = w.run_json(&second, &[]);
    assert_eq!(code, 1, "{e}");
    assert_eq!(summary["status"], "failed");
    assert!(e.contains("fails its integrity check"), "{e}");
    assert!(e.contains("privprep lineage verify"), "{e}");
    assert!(!w.path().join("out/second.by_country.parquet").exists());
}

#[test]
fn deleted_ledger_rows_are_detected_and_refused() {
    let w = Work::new();
    w.datagen(300, 42, &[]);
    run_ok(&w, &capped(&w, "a", 1.0, 0.3));
    run_ok(&w, &capped(&w, "b", 1.0, 0.3));
    sql(&w, "DELETE FROM budget_ledger WHERE id = 1");
    let (code, report) = verify_json(&w);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(
        report["first_broken"]["reason"],
        "ledger entry 1 is missing (gap in id)"
    );
    let (code, _, e) = w.run_json(&capped(&w, "c", 1.0, 0.3), &[]);
    assert_eq!(code, 1, "{e}");
    assert!(!w.path().join("out/c.by_country.parquet").exists());
}

#[test]
fn dropped_ledger_table_is_not_silently_recreated() {
    let w = Work::new();
    w.datagen(300, 43, &[]);
    run_ok(&w, &capped(&w, "a", 1.0, 0.6));
    sql(&w, "DROP TABLE budget_ledger");

    let budget = w.privprep(&["budget"]);
    assert_eq!(budget.status.code(), Some(1), "{}", stdout(&budget));
    assert!(
        stderr(&budget).contains("budget_ledger table is missing"),
        "{}",
        stderr(&budget)
    );
    let (code, report) = verify_json(&w);
    assert_eq!(code, Some(1), "{report}");
    let (code, _, e) = w.run_json(&capped(&w, "b", 1.0, 0.6), &[]);
    assert_eq!(code, 1, "{e}");
    assert!(!w.path().join("out/b.by_country.parquet").exists());
    assert!(!ledger_has_table(&w), "the ledger table came back empty");
}

#[test]
fn edited_cap_text_is_detected() {
    let w = Work::new();
    w.datagen(300, 44, &[]);
    run_ok(&w, &capped(&w, "a", 1.0, 0.6));
    sql(
        &w,
        r#"UPDATE budget_ledger SET cap = '{"measure":"pure","epsilon":100.0}'"#,
    );
    let budget = w.privprep(&["budget", "--format", "json"]);
    assert_eq!(budget.status.code(), Some(1));
    assert!(!stdout(&budget).contains("100"), "{}", stdout(&budget));
    let (code, report) = verify_json(&w);
    assert_eq!(code, Some(1));
    assert_eq!(
        report["first_broken"]["reason"],
        "entry_hash does not match its content"
    );
}

#[test]
fn deleted_store_is_not_silently_recreated() {
    let w = Work::new();
    w.datagen(300, 45, &[]);
    let p = w.pipeline("plain", "", SAFE_COLUMNS, "");
    run_ok(&w, &p);
    run_ok(&w, &p);
    remove_store(&db(&w));

    let verify = w.privprep(&["lineage", "verify"]);
    assert_eq!(verify.status.code(), Some(1));
    let e = stderr(&verify);
    assert!(e.contains("is missing or empty"), "{e}");
    assert!(e.contains("2 record(s)"), "{e}");
    assert!(e.contains("privprep lineage init"), "{e}");
    // The store's path is said once.
    assert_eq!(e.matches("lineage.db").count(), 1, "{e}");
    assert!(!db(&w).exists(), "verify re-created the store");

    let (code, _, e) = w.run_json(&p, &[]);
    assert_ne!(code, 0, "{e}");
    assert!(e.contains("is missing"), "{e}");
    let budget = w.privprep(&["budget"]);
    assert_eq!(budget.status.code(), Some(1));
    assert!(!db(&w).exists(), "a run or budget re-created the store");

    // Saying so: `lineage init` starts a new store and notes it in the anchor.
    let init = w.privprep(&["lineage", "init"]);
    assert!(init.status.success(), "{}", stderr(&init));
    assert!(stdout(&init).contains("2 record(s)"), "{}", stdout(&init));
    let anchor: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.state().join("lineage.anchor")).unwrap()).unwrap();
    assert_eq!(anchor["inits"][0]["kind"], "new");
    assert_eq!(anchor["inits"][0]["previous"]["records"], 2);
    let (code, report) = verify_json(&w);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["records"], 0);
    run_ok(&w, &p);
    let (code, report) = verify_json(&w);
    assert_eq!((code, report["records"].as_u64()), (Some(0), Some(1)));
}

#[test]
fn zero_byte_store_is_not_silently_recreated() {
    let w = Work::new();
    w.datagen(300, 46, &[]);
    let p = w.pipeline("plain", "", SAFE_COLUMNS, "");
    run_ok(&w, &p);
    remove_store(&db(&w));
    std::fs::write(db(&w), b"").unwrap();
    let verify = w.privprep(&["lineage", "verify"]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(
        stderr(&verify).contains("is missing or empty"),
        "{}",
        stderr(&verify)
    );
    let (code, _, e) = w.run_json(&p, &[]);
    assert_ne!(code, 0, "{e}");
    assert_eq!(std::fs::metadata(db(&w)).unwrap().len(), 0);
}

#[test]
fn rolled_back_store_is_detected_and_its_budget_not_reused() {
    let w = Work::new();
    w.datagen(300, 47, &[]);
    run_ok(&w, &capped(&w, "a", 1.0, 0.6));
    let backup = w.path().join("backup.db");
    copy_store(&db(&w), &backup);
    run_ok(&w, &capped(&w, "b", 1.0, 0.3));
    // Put the older copy back: it shows 0.6 spent instead of 0.9.
    copy_store(&backup, &db(&w));

    let (code, _, e) = w.run_json(&capped(&w, "c", 1.0, 0.3), &[]);
    assert_eq!(code, 1, "{e}");
    assert!(e.contains("does not match its anchor"), "{e}");
    assert!(!w.path().join("out/c.by_country.parquet").exists());
    let budget = w.privprep(&["budget"]);
    assert_eq!(budget.status.code(), Some(1));
    let (code, report) = verify_json(&w);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report["first_broken"]["reason"]
            .as_str()
            .unwrap()
            .contains("anchor"),
        "{report}"
    );

    // `init` never overwrites; `init --adopt` keeps the older copy, saying so.
    let init = w.privprep(&["lineage", "init"]);
    assert_eq!(init.status.code(), Some(1));
    assert!(stderr(&init).contains("--adopt"), "{}", stderr(&init));
    let adopt = w.privprep(&["lineage", "init", "--adopt"]);
    assert!(adopt.status.success(), "{}", stderr(&adopt));
    let (code, report) = verify_json(&w);
    assert_eq!(code, Some(0), "{report}");
}

#[test]
fn a_ledger_from_before_the_chain_migrates_and_keeps_counting() {
    // An old `privprep budget` made the file with only its unchained ledger (version 0).
    let w = Work::new();
    w.datagen(300, 48, &[]);
    std::fs::create_dir_all(w.state()).unwrap();
    sql(
        &w,
        r#"CREATE TABLE budget_ledger (
               id INTEGER PRIMARY KEY AUTOINCREMENT, dataset_id TEXT NOT NULL,
               privacy_unit TEXT NOT NULL, run_id TEXT NOT NULL, release TEXT NOT NULL,
               measure TEXT NOT NULL, epsilon REAL NOT NULL, delta REAL NOT NULL,
               rho REAL NOT NULL, cap TEXT NOT NULL, recorded_at TEXT NOT NULL);
           INSERT INTO budget_ledger (dataset_id, privacy_unit, run_id, release, measure,
               epsilon, delta, rho, cap, recorded_at)
           VALUES ('support_tickets', 'subject_id', 'old-run', 'by_country', 'pure', 0.75,
               0.0, 0.0, '{"measure":"pure","epsilon":1.0}', '2025-01-01T00:00:00+00:00');"#,
    );
    let (code, report) = verify_json(&w);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["ledger_entries"], 1);
    // The old spend still counts: 0.75 + 0.6 is over the cap of 1.0.
    let (code, _, e) = w.run_json(&capped(&w, "a", 1.0, 0.6), &[]);
    assert_eq!(code, 1, "{e}");
    assert!(e.contains("privacy budget"), "{e}");
    run_ok(&w, &capped(&w, "b", 1.0, 0.2));
    let (code, report) = verify_json(&w);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["ledger_entries"], 2);
}
