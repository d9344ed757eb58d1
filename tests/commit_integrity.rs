//! A run's outputs are one unit: killed at any point of its commit, or racing other runs for the
//! same outputs, the files on disk are all from one `succeeded` run that lists their SHA-256,
//! or the previous complete set, or none. And no path a run writes may be a file it reads or
//! owns.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A pipeline with three splits, a quarantine report and a DP release: five files per commit.
fn full_pipeline(w: &Work, name: &str) -> PathBuf {
    let p = w.pipeline(
        name,
        "",
        SAFE_COLUMNS,
        "max_bad_rows = 100\n\n[output.split]\ntrain = 0.8\nvalidation = 0.1\ntest = 0.1",
    );
    add_country_release(
        w,
        &p,
        name,
        "max_rows_per_subject = 3",
        0.01,
        r#"{ kind = "count" }"#,
    );
    p
}

/// The files of `out/`, without temporary files, with their SHA-256.
fn files_in(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(list) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in list.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        out.insert(
            e.path().display().to_string(),
            privprep::emit::sha256_file(&e.path()).unwrap(),
        );
    }
    out
}

/// Each succeeded run's files (outputs, releases, quarantine report is not hashed in lineage,
/// so it is checked by presence): path → sha256.
fn succeeded_sets(w: &Work) -> Vec<(String, BTreeMap<String, String>)> {
    let store = privprep::lineage::store::Store::open(&w.state().join("lineage.db")).unwrap();
    let mut out = Vec::new();
    for s in store.list().unwrap() {
        let run = store.get(&s.run_id).unwrap().unwrap();
        if run.record.status.as_str() != "succeeded" {
            continue;
        }
        let mut files = BTreeMap::new();
        for o in &run.record.outputs {
            files.insert(canonical(&o.path), o.sha256.clone());
        }
        for r in &run.record.releases {
            files.insert(canonical(&r.path), r.sha256.clone());
        }
        out.push((s.run_id, files));
    }
    out
}

fn canonical(p: &str) -> String {
    std::fs::canonicalize(p)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| p.to_string())
}

/// The Parquet files on disk are exactly the set of one succeeded run (and match its hashes),
/// or there are none. Returns that run's id.
fn assert_one_complete_set(w: &Work, context: &str) -> Option<String> {
    let on_disk: BTreeMap<String, String> = files_in(&w.path().join("out"))
        .into_iter()
        .filter(|(p, _)| p.ends_with(".parquet"))
        .map(|(p, h)| (canonical(&p), h))
        .collect();
    if on_disk.is_empty() {
        return None;
    }
    let sets = succeeded_sets(w);
    let owner = sets.iter().find(|(_, files)| *files == on_disk);
    assert!(
        owner.is_some(),
        "{context}: the files on disk are not the complete set of any succeeded run\n on disk: {on_disk:#?}\n runs: {sets:#?}"
    );
    owner.map(|(id, _)| id.clone())
}

/// Kills the run at every fault point of its commit (after the intent, before and after each
/// rename, before and after the lineage append); after each kill the next command recovers,
/// and the outputs are one complete set every time.
#[test]
fn kill_at_every_rename_and_fsync_of_the_commit_leaves_one_complete_set() {
    let w = Work::new();
    w.datagen(600, 3, &["--bad-rows", "3"]);
    let p = full_pipeline(&w, "crash");
    // A first complete set to fall back to.
    let (code, first, stderr) = w.run_json(&p, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(first["outputs"].as_array().unwrap().len(), 3);
    let mut rolled_forward = 0;
    let mut kept_previous = 0;
    let mut points = 0;
    let mut known: BTreeSet<String> = succeeded_sets(&w).into_iter().map(|(id, _)| id).collect();
    for at in 1..=40u32 {
        let out = w
            .run_json_cmd(&p)
            .env(privprep::run::FAULT_ENV, at.to_string())
            .output()
            .unwrap();
        if out.status.success() {
            // Past the last fault point: the run finished normally.
            break;
        }
        assert!(
            out.status.code().is_none(),
            "fault point {at}: expected the process to be killed, got {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        points += 1;
        // The next command recovers the killed run.
        let list = w.privprep(&["lineage", "list"]);
        assert!(
            list.status.success(),
            "{}",
            String::from_utf8_lossy(&list.stderr)
        );
        let owner = assert_one_complete_set(&w, &format!("kill at fault point {at}"));
        let owner = owner.expect("a complete set is always there");
        if known.contains(&owner) {
            kept_previous += 1;
        } else {
            rolled_forward += 1;
        }
        known.extend(succeeded_sets(&w).into_iter().map(|(id, _)| id));
        // No temporary file and no journal entry is left behind.
        let leftovers: Vec<String> = std::fs::read_dir(w.path().join("out"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.contains(privprep::emit::TMP_MARKER))
            .collect();
        assert!(leftovers.is_empty(), "fault point {at}: {leftovers:?}");
        // The subject index's sets are committed, rolled forward and rolled back with the
        // outputs: no temporary set is left, and every set a record lists is in place.
        let index_leftovers: Vec<String> = std::fs::read_dir(w.state().join("lineage.index"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.contains(privprep::emit::TMP_MARKER))
            .collect();
        assert!(
            index_leftovers.is_empty(),
            "fault point {at}: {index_leftovers:?}"
        );
        let verify = w.privprep(&["lineage", "verify"]);
        assert!(
            verify.status.success(),
            "fault point {at}: {}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
        let journal: Vec<_> = std::fs::read_dir(w.state().join("runs"))
            .map(|d| d.filter_map(Result::ok).collect())
            .unwrap_or_default();
        assert!(journal.is_empty(), "fault point {at}: journal entries left");
        // The record of a killed run never claims "no output was committed" while its files
        // are the ones on disk.
        let store = privprep::lineage::store::Store::open(&w.state().join("lineage.db")).unwrap();
        for s in store.list().unwrap() {
            let r = store.get(&s.run_id).unwrap().unwrap().record;
            if r.status.as_str() == "failed" {
                assert_ne!(
                    s.run_id, owner,
                    "fault point {at}: a failed run owns the outputs"
                );
            }
        }
    }
    // 2 around the intent + 2 per rename (5 files and 4 subject sets) + 2 around the append.
    assert!(points >= 22, "only {points} fault points were hit");
    assert!(
        rolled_forward > 0 && kept_previous > 0,
        "forward {rolled_forward}, previous {kept_previous}"
    );
    assert!(
        std::fs::read_to_string(w.path().join("out/crash.quarantine.jsonl"))
            .unwrap()
            .lines()
            .count()
            >= 3
    );
    let verify = w.privprep(&["lineage", "verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

/// Regression: eight concurrent runs writing the same split outputs left a set of split files
/// from two different successful runs.
#[test]
fn concurrent_runs_on_the_same_outputs_leave_one_runs_complete_set() {
    let w = Work::new();
    w.datagen(400, 5, &[]);
    let p = w.pipeline(
        "race",
        "",
        SAFE_COLUMNS,
        "[output.split]\ntrain = 0.8\nvalidation = 0.1\ntest = 0.1",
    );
    for round in 0..3 {
        let children: Vec<_> = (0..8)
            .map(|_| {
                w.cmd()
                    .args(["run", p.to_str().unwrap(), "--no-progress", "-q"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let owner = assert_one_complete_set(&w, &format!("round {round}"));
        assert!(owner.is_some());
    }
    let ids: BTreeSet<String> = succeeded_sets(&w).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 24);
}

/// Regression: `[output] quarantine` naming the input CSV replaced the raw data with the
/// report, and validate said ok.
#[test]
fn quarantine_path_onto_the_input_is_refused_by_validate_and_run() {
    let w = Work::new();
    w.datagen(200, 1, &["--bad-rows", "2"]);
    let before = std::fs::read(w.data().join("tickets.csv")).unwrap();
    let p = w.pipeline(
        "q",
        "",
        SAFE_COLUMNS,
        "max_bad_rows = 10\nquarantine = \"out/../data/./tickets.csv\"",
    );
    let v = w.privprep(&["validate", p.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(2));
    let err = String::from_utf8_lossy(&v.stderr);
    assert!(err.contains("[output] quarantine"), "{err}");
    assert!(err.contains("would overwrite input"), "{err}");
    assert!(err.contains("q.toml:"), "names the pipeline place: {err}");
    let r = w.privprep(&["run", p.to_str().unwrap(), "--no-progress"]);
    assert_eq!(r.status.code(), Some(2));
    assert_eq!(std::fs::read(w.data().join("tickets.csv")).unwrap(), before);
}

/// Regression: a quarantine report pointed at the lineage store or the default key destroyed
/// them.
#[test]
fn quarantine_path_onto_the_lineage_store_or_the_key_is_refused() {
    let w = Work::new();
    w.datagen(200, 1, &[]);
    for (target, what) in [
        ("state/lineage.db", "the lineage store"),
        ("state/keys/default.key", "the key file"),
        ("state/lineage.anchor", "the lineage store's anchor"),
    ] {
        let p = w.pipeline("k", "", SAFE_COLUMNS, &format!("quarantine = \"{target}\""));
        let v = w.privprep(&["validate", p.to_str().unwrap()]);
        assert_eq!(v.status.code(), Some(2), "{target}");
        let err = String::from_utf8_lossy(&v.stderr);
        assert!(err.contains(what), "{target}: {err}");
    }
}

/// Regression: `[output] path` equal to a Parquet input replaced the raw input.
#[test]
fn output_onto_a_parquet_input_through_a_symlink_is_refused() {
    let w = Work::new();
    w.datagen(200, 1, &["--format", "parquet"]);
    let input = w.data().join("tickets.parquet");
    let before = std::fs::read(&input).unwrap();
    std::os::unix::fs::symlink(w.data(), w.path().join("alias")).unwrap();
    let p = w.pipeline("pq", "", SAFE_COLUMNS, "");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("data/tickets.csv", "data/tickets.parquet")
        .replace("out/pq.parquet", "alias/tickets.parquet");
    std::fs::write(&p, text).unwrap();
    let v = w.privprep(&["validate", p.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(2));
    let err = String::from_utf8_lossy(&v.stderr);
    assert!(
        err.contains("[output] path") && err.contains("would overwrite input"),
        "{err}"
    );
    let r = w.privprep(&["run", p.to_str().unwrap(), "--no-progress"]);
    assert_eq!(r.status.code(), Some(2));
    assert_eq!(std::fs::read(&input).unwrap(), before);
}

/// Regression: a release path equal to the output path failed with "No such file or
/// directory" after the budget was charged.
#[test]
fn release_path_equal_to_the_output_is_refused_before_any_spend() {
    let w = Work::new();
    w.datagen(300, 2, &[]);
    let p = full_pipeline(&w, "same");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("out/same.by_country.parquet", "out/same.train.parquet");
    std::fs::write(&p, text).unwrap();
    let v = w.privprep(&["validate", p.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(2));
    let err = String::from_utf8_lossy(&v.stderr);
    assert!(
        err.contains("path of release `by_country`") && err.contains("is the same file as"),
        "{err}"
    );
    let r = w.privprep(&["run", p.to_str().unwrap(), "--no-progress"]);
    assert_eq!(r.status.code(), Some(2));
    let b = w.privprep(&["budget", "--format", "json"]);
    let budget = String::from_utf8_lossy(&b.stdout);
    assert!(
        !budget.contains("by_country") && !budget.contains("\"releases\": 1"),
        "{budget}"
    );
}

/// The run checks again just before writing: a symlink made after validate is caught.
#[test]
fn a_collision_made_after_validate_is_caught_by_the_run() {
    let w = Work::new();
    w.datagen(200, 1, &[]);
    let p = w.pipeline("late", "", SAFE_COLUMNS, "");
    std::fs::create_dir_all(w.path().join("out")).unwrap();
    let plan = privprep::validate(&p).unwrap();
    // After validate: the output becomes a symlink to the manifest.
    std::os::unix::fs::symlink(
        w.data().join("manifest.toml"),
        w.path().join("out/late.parquet"),
    )
    .unwrap();
    let mut opts = privprep::RunOptions::new(w.state());
    opts.key_file = Some(key_file(w.path(), "k.key", 7));
    let before = std::fs::read(w.data().join("manifest.toml")).unwrap();
    let failure = privprep::run(&plan, &opts).expect_err("collision");
    assert!(
        failure
            .to_string()
            .contains("would overwrite the dataset manifest"),
        "{failure}"
    );
    assert_eq!(
        std::fs::read(w.data().join("manifest.toml")).unwrap(),
        before
    );
}
