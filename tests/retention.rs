//! Retention of outputs: `[output] retain_days` gives each output an expiry (lineage, footer),
//! and `privprep retention sweep` deletes exactly the expired ones, recorded in lineage.

mod common;

use common::*;
use std::path::PathBuf;

/// A pipeline kept `days` days (`None`: forever), run; returns its output paths.
fn run_kept(w: &Work, name: &str, days: Option<u32>) -> Vec<PathBuf> {
    let extra = days
        .map(|d| format!("retain_days = {d}"))
        .unwrap_or_default()
        + "\nmax_bad_rows = 5";
    let p = w.pipeline(name, "", SAFE_COLUMNS, &extra);
    let s = w.run_ok(&p);
    s["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| PathBuf::from(o["path"].as_str().unwrap()))
        .collect()
}

fn sweep(w: &Work, as_of: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["retention", "sweep", "--as-of", as_of, "--format", "json"];
    args.extend_from_slice(extra);
    serde_json::from_slice(&w.privprep_ok(&args).stdout).unwrap()
}

fn deleted(s: &serde_json::Value) -> Vec<String> {
    s["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["action"] == "deleted")
        .map(|o| o["path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_sweep_deletes_exactly_the_expired_outputs() {
    let w = Work::new();
    w.datagen(300, 6, &["--bad-rows", "2"]);
    // Quarantined rows give the short-lived pipeline a quarantine report too.
    let short = w.pipeline(
        "short",
        "",
        SAFE_COLUMNS,
        "retain_days = 10\nmax_bad_rows = 5",
    );
    let s = w.run_ok(&short);
    let short_out = PathBuf::from(s["outputs"][0]["path"].as_str().unwrap());
    let report = PathBuf::from(s["quarantine_report"].as_str().unwrap());
    assert!(report.exists());
    let long_out = run_kept(&w, "long", Some(100));
    let forever = run_kept(&w, "forever", None);
    let today = chrono::Utc::now().date_naive();
    let day = |d: i64| (today + chrono::Duration::days(d)).to_string();

    // Before anything expires: nothing.
    assert!(deleted(&sweep(&w, &day(5), &[])).is_empty());
    // A dry run lists the expired file and deletes nothing.
    let dry = sweep(&w, &day(50), &["--dry-run"]);
    assert_eq!(deleted(&dry), [short_out.display().to_string()]);
    assert!(short_out.exists() && report.exists());
    // The sweep deletes it and its quarantine report, and nothing else.
    let s = sweep(&w, &day(50), &[]);
    assert_eq!(deleted(&s), [short_out.display().to_string()]);
    assert_eq!(s["quarantine_reports"][0], report.display().to_string());
    assert!(!short_out.exists() && !report.exists());
    for f in long_out.iter().chain(&forever) {
        assert!(f.exists(), "{}", f.display());
    }
    // Once deleted, it is not swept again; later, the 100-day output goes too.
    assert!(deleted(&sweep(&w, &day(60), &[])).is_empty());
    let later = sweep(&w, &day(200), &[]);
    assert_eq!(deleted(&later), [long_out[0].display().to_string()]);
    assert!(forever[0].exists());
    w.privprep_ok(&["lineage", "verify"]);

    // Lineage says what happened to the first run's output.
    let list = w.privprep_ok(&["lineage", "list", "--format", "json"]);
    let runs: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let first = runs[0]["run_id"].as_str().unwrap();
    let show = w.privprep_ok(&["lineage", "show", first]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains("deleted by retention"), "{text}");
    assert!(text.contains("expires"), "{text}");
}

/// A subject whose only output expired is found with the sweep that deleted it.
#[test]
fn subject_find_shows_an_expired_output_as_deleted_by_the_sweep() {
    let w = Work::new();
    w.datagen(200, 2, &[]);
    let out = run_kept(&w, "p", Some(1));
    let by_ticket = subjects_by_ticket(&w.data());
    let subject = subjects_in(&out[0], &by_ticket).into_iter().next().unwrap();
    let day = (chrono::Utc::now().date_naive() + chrono::Duration::days(3)).to_string();
    let s = sweep(&w, &day, &[]);
    let found = w.privprep_ok(&["subject", "find", &subject, "--format", "json"]);
    let f: serde_json::Value = serde_json::from_slice(&found.stdout).unwrap();
    assert_eq!(f[0]["holdings"][0]["replaced_by"], s["sweep_id"]);
    assert_eq!(f[0]["holdings"][0]["exists"], false);
}

/// A sweep killed at any point of its commit is finished or harmless after the next command.
#[test]
fn a_sweep_killed_anywhere_is_finished_or_harmless() {
    let base = Work::new();
    base.datagen(200, 3, &[]);
    base.pipeline("p", "", SAFE_COLUMNS, "retain_days = 1");
    // Run by its relative path, so the recorded paths hold in a copy of the workspace.
    base.privprep_ok(&["run", "p.toml", "--no-progress", "-q"]);
    let day = (chrono::Utc::now().date_naive() + chrono::Duration::days(3)).to_string();
    for at in 1..12 {
        let w = Work::new();
        copy_dir(base.path(), w.path());
        let out = w
            .cmd()
            .env(privprep::run::FAULT_ENV, at.to_string())
            .args(["retention", "sweep", "--as-of", &day])
            .output()
            .unwrap();
        w.privprep_ok(&["lineage", "verify"]);
        let gone = !w.path().join("out/p.parquet").exists();
        let again = sweep(&w, &day, &[]);
        // Either this sweep finds it still there and deletes it, or it is gone and recorded.
        assert!(!w.path().join("out/p.parquet").exists(), "fault point {at}");
        assert_eq!(deleted(&again).is_empty(), gone, "fault point {at}");
        if out.status.success() {
            assert!(at > 3, "the sweep passed only {at} fault points");
            return;
        }
    }
    panic!("the sweep never completed");
}

/// A dataset's manifest may give a default retention; the pipeline's own wins.
#[test]
fn the_manifest_gives_a_default_retention_the_pipeline_can_override() {
    let w = Work::new();
    w.datagen(100, 5, &[]);
    edit_file(
        &w.data().join("manifest.toml"),
        "purpose_separator = \";\"",
        "purpose_separator = \";\"\nretain_days = 7",
    );
    let expiry = |name: &str, extra: &str| {
        let p = w.pipeline(name, "", SAFE_COLUMNS, extra);
        let s = w.run_ok(&p);
        let r = w.lineage_record(s["run_id"].as_str().unwrap());
        let started =
            chrono::DateTime::parse_from_rfc3339(r["started_at"].as_str().unwrap()).unwrap();
        let expires =
            chrono::DateTime::parse_from_rfc3339(r["outputs"][0]["expires_at"].as_str().unwrap())
                .unwrap();
        // The expiry is kept to the second.
        ((expires - started).num_seconds() as f64 / 86_400.0).round() as i64
    };
    assert_eq!(expiry("by_manifest", ""), 7);
    assert_eq!(expiry("by_pipeline", "retain_days = 30"), 30);
}
