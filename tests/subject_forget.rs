//! The erasure request through the binary: `privprep subject forget` and `subject sweep`
//! regenerate every output that holds the subjects, and every later run drops them as
//! `erased`.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

const SPLIT: &str = "[output.split]\ntrain = 0.8\nvalidation = 0.1\ntest = 0.1";

/// Writes pipeline `name` (run from the workspace, so every recorded path is relative to it).
fn pipeline(w: &Work, name: &str, columns: &str, output_extra: &str) -> String {
    w.pipeline(name, "", columns, output_extra);
    format!("{name}.toml")
}

/// Runs `pipeline` (a path relative to the workspace); returns its JSON summary.
fn run(w: &Work, pipeline: &str) -> serde_json::Value {
    let out = w.privprep_ok(&["run", pipeline, "--format", "json", "--no-progress"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `subject forget -` with `id` on standard input and `extra` arguments.
fn forget(w: &Work, id: &str, extra: &[&str]) -> Output {
    let mut args = vec!["subject", "forget", "-"];
    args.extend_from_slice(extra);
    w.privprep_stdin(&args, &format!("{id}\n"))
}

/// Path → SHA-256 of every output of `summaries`.
fn shas(summaries: &[&serde_json::Value]) -> BTreeMap<String, String> {
    summaries
        .iter()
        .flat_map(|s| s["outputs"].as_array().unwrap())
        .map(|o| {
            let path = o["path"].as_str().unwrap().to_string();
            (path, o["sha256"].as_str().unwrap().to_string())
        })
        .collect()
}

fn sha_now(w: &Work, path: &str) -> Option<String> {
    privprep::emit::sha256_file(&w.path().join(path)).ok()
}

/// The input rows of `subject`: (how many, every value of theirs in a personal column).
fn planted(data: &Path, subject: &str) -> (usize, BTreeSet<String>) {
    let mut reader = csv::Reader::from_path(data.join("tickets.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let at = |n: &str| headers.iter().position(|h| h == n).unwrap();
    let s = at("subject_id");
    let personal = [at("full_name"), at("email"), at("phone")];
    let (mut rows, mut values) = (0, BTreeSet::new());
    for r in reader.records() {
        let r = r.unwrap();
        if r[s].trim() == subject {
            rows += 1;
            values.extend(
                personal
                    .iter()
                    .map(|i| r[*i].to_string())
                    .filter(|v| v.len() > 3),
            );
        }
    }
    (rows, values)
}

/// Every string cell of the Parquet file at `path`.
fn cells(path: &Path) -> Vec<String> {
    use polars::prelude::*;
    let df = read_parquet(path);
    let mut out = Vec::new();
    for c in df.get_columns() {
        if let Ok(s) = c.cast(&DataType::String) {
            out.extend(s.str().unwrap().into_iter().flatten().map(str::to_owned));
        }
    }
    out
}

/// The run id in the lineage footer of the Parquet file at `path`.
fn footer_run_id(path: &Path) -> String {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap();
    let json = kv
        .iter()
        .find(|k| k.key == privprep::emit::LINEAGE_KEY)
        .and_then(|k| k.value.clone())
        .unwrap();
    let footer: serde_json::Value = serde_json::from_str(&json).unwrap();
    footer["run_id"].as_str().unwrap().to_string()
}

/// Every file under `dir`, read whole.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

/// The subject with the most tickets in `file`, and those tickets.
fn busiest(file: &Path, by_ticket: &HashMap<String, String>) -> (String, BTreeSet<String>) {
    tickets_by_subject(file, by_ticket)
        .into_iter()
        .max_by_key(|(s, t)| (t.len(), s.clone()))
        .unwrap()
}

/// A workspace with three pipelines run: `split` (tokenized subject, three splits), `narrow`
/// (subject column dropped) and `other` (revokes the chosen subject, so holds nothing of
/// theirs). Returns the workspace, the subject, and the summaries.
fn three_pipelines() -> (Work, String, Vec<serde_json::Value>) {
    let w = Work::new();
    w.datagen(900, 31, &[]);
    let by_ticket = subjects_by_ticket(&w.data());
    let narrow_columns = SAFE_COLUMNS.replace(
        r#"subject_id = { action = "tokenize" }"#,
        r#"subject_id = { action = "drop" }"#,
    );
    let split = pipeline(&w, "split", SAFE_COLUMNS, SPLIT);
    let narrow = pipeline(&w, "narrow", &narrow_columns, "");
    let s1 = run(&w, &split);
    let s2 = run(&w, &narrow);
    let (subject, _) = busiest(&w.path().join("out/narrow.parquet"), &by_ticket);
    let mut list = std::fs::read_to_string(w.data().join("revocations.csv")).unwrap();
    list.push_str(&format!("{subject}\n"));
    std::fs::write(w.data().join("revocations_other.csv"), list).unwrap();
    let other = pipeline(&w, "other", SAFE_COLUMNS, "");
    let text = std::fs::read_to_string(w.path().join(&other))
        .unwrap()
        .replace("data/revocations.csv", "data/revocations_other.csv");
    std::fs::write(w.path().join(&other), text).unwrap();
    let s3 = run(&w, &other);
    (w, subject, vec![s1, s2, s3])
}

/// The erasure request end to end: the outputs holding the subject are regenerated without
/// exactly their rows, the others keep their bytes, lineage verifies, and later runs drop the
/// subject as `erased`.
#[test]
fn subject_forget_regenerates_exactly_the_outputs_that_held_the_subject() {
    let (w, subject, summaries) = three_pipelines();
    let by_ticket = subjects_by_ticket(&w.data());
    let before = shas(&summaries.iter().collect::<Vec<_>>());
    // Per output: the subject's tickets in it, and its token where it has one.
    let mut held: BTreeMap<String, usize> = BTreeMap::new();
    let mut token = None;
    for path in before.keys() {
        let file = w.path().join(path);
        let tickets = tickets_by_subject(&file, &by_ticket)
            .remove(&subject)
            .unwrap_or_default();
        if tickets.is_empty() {
            continue;
        }
        held.insert(path.clone(), tickets.len());
        let df = read_parquet(&file);
        if let Ok(ids) = df.column("subject_id") {
            let t = df.column("ticket_id").unwrap().str().unwrap().clone();
            let at = t
                .into_iter()
                .position(|x| x.is_some_and(|x| tickets.contains(x)))
                .unwrap();
            token = Some(ids.str().unwrap().get(at).unwrap().to_string());
        }
    }
    assert_eq!(
        held.len(),
        2,
        "one split and the narrow output hold the subject"
    );
    let token = token.expect("the split output holds the subject's token");

    let out = forget(
        &w,
        &subject,
        &[
            "--reason",
            "erasure request, ticket 4411",
            "--format",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let outputs = summary["outputs"].as_array().unwrap();
    let regenerated: BTreeMap<String, &serde_json::Value> = outputs
        .iter()
        .filter(|o| o["action"] == "regenerated")
        .map(|o| (o["path"].as_str().unwrap().to_string(), o))
        .collect();
    assert_eq!(
        regenerated.keys().collect::<Vec<_>>(),
        held.keys().collect::<Vec<_>>()
    );
    assert_eq!(outputs.len(), regenerated.len(), "{outputs:?}");

    let (input_rows, values) = planted(&w.data(), &subject);
    for (path, old) in &before {
        let file = w.path().join(path);
        let all = cells(&file);
        assert!(!all.contains(&token), "{path} still holds the token");
        for v in &values {
            assert!(!all.iter().any(|c| c.contains(v.as_str())), "{path}");
        }
        assert!(!tickets_by_subject(&file, &by_ticket).contains_key(&subject));
        match (held.get(path), regenerated.get(path)) {
            (Some(n), Some(o)) => {
                let rows_before = o["rows_before"].as_u64().unwrap();
                assert_eq!(o["rows_after"].as_u64().unwrap(), rows_before - *n as u64);
                assert_eq!(read_parquet(&file).height() as u64, rows_before - *n as u64);
                assert_eq!(sha_now(&w, path).as_deref(), o["new_sha256"].as_str());
                assert_ne!(sha_now(&w, path).as_ref(), Some(old));
                assert_eq!(
                    footer_run_id(&file),
                    summary["erasure_id"].as_str().unwrap()
                );
            }
            _ => assert_eq!(sha_now(&w, path).as_ref(), Some(old), "{path} changed"),
        }
    }
    w.privprep_ok(&["lineage", "verify"]);

    // find: the subject is in no current output, and the erasure is listed.
    let found = w.privprep_ok(&["subject", "find", &subject, "--format", "json"]);
    let found: serde_json::Value = serde_json::from_slice(&found.stdout).unwrap();
    let f = &found[0];
    assert!(f["holdings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["replaced_by"] == summary["erasure_id"]));
    assert_eq!(f["erasures"][0]["erasure_id"], summary["erasure_id"]);
    assert_eq!(f["erasures"][0]["regenerated"], 2);

    // SQL: the erasures view lists what was done.
    let sql = w.privprep_ok(&[
        "lineage",
        "sql",
        "SELECT action, count(*) AS n FROM erasures GROUP BY action",
        "--format",
        "json",
    ]);
    let rows: serde_json::Value = serde_json::from_slice(&sql.stdout).unwrap();
    assert_eq!(rows[0]["action"], "regenerated");
    assert_eq!(rows[0]["n"], 2);

    // A second subject of the regenerated split file: regenerated again, from the run that
    // first wrote it, with both subjects gone.
    let split_file = held.keys().find(|p| p.contains("split")).unwrap().clone();
    let file = w.path().join(&split_file);
    let (second, tickets) = busiest(&file, &by_ticket);
    let rows = read_parquet(&file).height();
    let out = forget(
        &w,
        &second,
        &["--reason", "erasure request", "--format", "json"],
    );
    assert!(out.status.success());
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let o = &again["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["path"] == split_file.as_str())
        .unwrap()
        .clone();
    assert_eq!(o["action"], "regenerated");
    assert_eq!(
        o["run_id"], summaries[0]["run_id"],
        "the source run, not the first erasure"
    );
    assert_eq!(read_parquet(&file).height(), rows - tickets.len());
    let left = tickets_by_subject(&file, &by_ticket);
    assert!(!left.contains_key(&subject) && !left.contains_key(&second));
    w.privprep_ok(&["lineage", "verify"]);

    // Later runs drop every row of both subjects as `erased`.
    let erased_rows = input_rows + planted(&w.data(), &second).0;
    for p in ["split.toml", "narrow.toml"] {
        let s = run(&w, p);
        assert_eq!(
            s["dropped"]["erased"].as_u64(),
            Some(erased_rows as u64),
            "{p}"
        );
        for o in s["outputs"].as_array().unwrap() {
            let file = w.path().join(o["path"].as_str().unwrap());
            let held = tickets_by_subject(&file, &by_ticket);
            assert!(!held.contains_key(&subject) && !held.contains_key(&second));
        }
    }
    w.privprep_ok(&["lineage", "verify"]);

    // Nothing the erasure wrote besides the outputs holds the id or a personal value of theirs.
    let mut printed = out.stdout.clone();
    printed.extend(&out.stderr);
    let mut written = files_under(&w.state());
    written.push((PathBuf::from("stdout+stderr"), printed));
    for (path, bytes) in written {
        let text = String::from_utf8_lossy(&bytes);
        for v in values.iter().chain([&subject]) {
            assert!(
                !text.contains(v.as_str()),
                "{} holds a value",
                path.display()
            );
        }
    }
}

/// A subject found nowhere is still recorded (and on the erasure list); exit 0.
#[test]
fn subject_forget_of_a_subject_found_nowhere_is_recorded() {
    let w = Work::new();
    w.datagen(200, 5, &[]);
    run(&w, &pipeline(&w, "p", SAFE_COLUMNS, ""));
    let out = forget(&w, "nobody-at-all", &["--reason", "erasure request"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no committed output held"), "{text}");
    let sql = w.privprep_ok(&[
        "lineage",
        "sql",
        "SELECT count(*) AS n FROM erased_subjects",
        "--format",
        "csv",
    ]);
    assert_eq!(String::from_utf8_lossy(&sql.stdout).trim(), "n\n1");
    w.privprep_ok(&["lineage", "verify"]);
}

/// The reason is stored: one naming the subject, or holding an e-mail address, is refused
/// before anything changes.
#[test]
fn subject_forget_refuses_a_reason_that_names_the_subject() {
    let w = Work::new();
    w.datagen(200, 5, &[]);
    run(&w, &pipeline(&w, "p", SAFE_COLUMNS, ""));
    let db = w.state().join("lineage.db");
    let store = std::fs::read(&db).unwrap();
    for reason in ["request from S-0000042", "asked by jane.doe@example.org"] {
        let out = forget(&w, "S-0000042", &["--reason", reason]);
        assert_eq!(out.status.code(), Some(2), "{reason}");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains("--reason") && !e.contains("jane.doe"), "{e}");
        assert_eq!(std::fs::read(&db).unwrap(), store);
    }
}

/// An output whose input is gone is listed (exit 1) and left as it is; with
/// `--delete-unregenerable` it is deleted, and `subject find` says by which erasure.
#[test]
fn subject_forget_lists_or_deletes_what_it_cannot_regenerate() {
    let w = Work::new();
    w.datagen(400, 9, &[]);
    let by_ticket = subjects_by_ticket(&w.data());
    std::fs::copy(w.data().join("tickets.csv"), w.data().join("copy.csv")).unwrap();
    let p = pipeline(&w, "copy", SAFE_COLUMNS, "");
    let text = std::fs::read_to_string(w.path().join(&p))
        .unwrap()
        .replace("data/tickets.csv", "data/copy.csv");
    std::fs::write(w.path().join(&p), text).unwrap();
    run(&w, &p);
    let file = w.path().join("out/copy.parquet");
    let (subject, _) = busiest(&file, &by_ticket);
    std::fs::remove_file(w.data().join("copy.csv")).unwrap();
    let sha = sha_now(&w, "out/copy.parquet");

    let out = forget(&w, &subject, &["--reason", "erasure request"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("unregenerable") && text.contains("is gone"),
        "{text}"
    );
    assert_eq!(sha_now(&w, "out/copy.parquet"), sha);

    let out = forget(
        &w,
        &subject,
        &[
            "--reason",
            "erasure request",
            "--delete-unregenerable",
            "--format",
            "json",
        ],
    );
    assert!(out.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["outputs"][0]["action"], "deleted");
    assert!(!file.exists());
    let found = w.privprep_ok(&["subject", "find", &subject, "--format", "json"]);
    let found: serde_json::Value = serde_json::from_slice(&found.stdout).unwrap();
    assert_eq!(
        found[0]["holdings"][0]["replaced_by"],
        summary["erasure_id"]
    );
    assert_eq!(found[0]["erasures"].as_array().unwrap().len(), 2);
    w.privprep_ok(&["lineage", "verify"]);
}

/// Every output of the workspace: path → its rows, sorted by ticket, as a frame.
fn frames(w: &Work, paths: &[String]) -> BTreeMap<String, polars::prelude::DataFrame> {
    paths
        .iter()
        .map(|p| {
            let df = read_parquet(&w.path().join(p))
                .sort(["ticket_id"], Default::default())
                .unwrap();
            (p.clone(), df)
        })
        .collect()
}

/// `subject sweep` over a revocation list of 50 subjects gives the same outputs as running
/// the pipelines afresh with that list.
#[test]
fn subject_sweep_gives_the_outputs_a_fresh_run_with_the_list_gives() {
    let (w, _, summaries) = three_pipelines();
    let by_ticket = subjects_by_ticket(&w.data());
    let paths: Vec<String> = shas(&summaries.iter().collect::<Vec<_>>())
        .into_keys()
        .collect();
    let kept: BTreeSet<String> = paths
        .iter()
        .flat_map(|p| subjects_in(&w.path().join(p), &by_ticket))
        .collect();
    let list: Vec<String> = kept
        .iter()
        .step_by(kept.len() / 50)
        .take(50)
        .cloned()
        .collect();
    assert_eq!(list.len(), 50);
    std::fs::write(w.path().join("withdrawn.txt"), list.join("\n") + "\n").unwrap();

    // The fresh side: a copy of the workspace before the sweep, with the list added to every
    // pipeline's revocations.
    let fresh = Work::new();
    copy_dir(w.path(), fresh.path());
    for name in ["revocations.csv", "revocations_other.csv"] {
        let p = fresh.data().join(name);
        let text = std::fs::read_to_string(&p).unwrap() + &list.join("\n") + "\n";
        std::fs::write(p, text).unwrap();
    }
    for p in ["split.toml", "narrow.toml", "other.toml"] {
        run(&fresh, p);
    }

    let out = w.privprep_ok(&[
        "subject",
        "sweep",
        "--revocations",
        "withdrawn.txt",
        "--reason",
        "consent withdrawn, October batch",
        "--format",
        "json",
    ]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["subjects"], 50);
    assert!(summary["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["action"] == "regenerated"));
    let (swept, afresh) = (frames(&w, &paths), frames(&fresh, &paths));
    for p in &paths {
        assert!(swept[p].equals_missing(&afresh[p]), "{p} differs");
    }
    w.privprep_ok(&["lineage", "verify"]);
}

/// A forget killed at every point of its commit leaves, after the next command, either every
/// old output or every regenerated one (never a mix), and lineage verifies.
#[test]
fn a_forget_killed_anywhere_in_its_commit_leaves_the_old_or_the_new_outputs() {
    let (w, subject, summaries) = three_pipelines();
    let before = shas(&summaries.iter().collect::<Vec<_>>());
    // The outcome without a fault, in a copy: which outputs change, and their new rows.
    let clean = Work::new();
    copy_dir(w.path(), clean.path());
    let out = forget(&clean, &subject, &["--reason", "erasure request"]);
    assert!(out.status.success());
    let changed: Vec<String> = before
        .keys()
        .filter(|p| sha_now(&clean, p).as_ref() != Some(&before[*p]))
        .cloned()
        .collect();
    assert_eq!(changed.len(), 2);
    let new_rows = frames(&clean, &changed);

    let mut completed = false;
    for at in 1..60 {
        let c = Work::new();
        copy_dir(w.path(), c.path());
        let out = c
            .cmd()
            .env(privprep::run::FAULT_ENV, at.to_string())
            .args(["subject", "forget", &subject, "--reason", "erasure request"])
            .output()
            .unwrap();
        if out.status.success() {
            // Two points around the intent, two around each of four renames (two files and
            // their subject sets) and two around the record: all were passed.
            assert!(at > 12, "the forget completed at fault point {at}");
            completed = true;
            break;
        }
        // The next command recovers; then every changed output is all old or all new.
        c.privprep_ok(&["lineage", "verify"]);
        let old = changed
            .iter()
            .all(|p| sha_now(&c, p).as_ref() == Some(&before[p]));
        let now = frames(&c, &changed);
        let new = changed.iter().all(|p| now[p].equals_missing(&new_rows[p]));
        assert!(old != new, "fault point {at}: a mix of old and new outputs");
        for p in before.keys().filter(|p| !changed.contains(p)) {
            assert_eq!(
                sha_now(&c, p).as_ref(),
                Some(&before[p]),
                "fault point {at}"
            );
        }
        // The subject is on the erasure list either way.
        let s = run(&c, "split.toml");
        assert!(s["dropped"]["erased"].as_u64().unwrap() > 0);
    }
    assert!(completed, "the forget never completed");
}

/// A forget killed with SIGKILL at any moment (regenerating, committing, or done) leaves, after
/// the next command, every old output or every regenerated one, no temporary file and no
/// journal entry; lineage verifies.
#[test]
fn a_forget_killed_with_sigkill_is_rolled_back_or_finished_by_the_next_command() {
    let (w, subject, summaries) = three_pipelines();
    let before = shas(&summaries.iter().collect::<Vec<_>>());
    let mut outcomes = BTreeSet::new();
    for delay_ms in [0u64, 5, 10, 20, 30, 45, 60, 90, 120, 180, 250, 500] {
        let c = Work::new();
        copy_dir(w.path(), c.path());
        let mut child = c
            .cmd()
            .args(["subject", "forget", &subject, "--reason", "erasure request"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        c.privprep_ok(&["lineage", "verify"]);
        let changed: Vec<&String> = before
            .keys()
            .filter(|p| sha_now(&c, p).as_ref() != Some(&before[*p]))
            .collect();
        assert!(
            changed.is_empty() || changed.len() == 2,
            "after {delay_ms} ms: {changed:?}"
        );
        outcomes.insert(changed.len());
        let left: Vec<String> = std::fs::read_dir(c.path().join("out"))
            .unwrap()
            .flatten()
            .map(|e| format!("out/{}", e.file_name().to_string_lossy()))
            .filter(|p| !before.contains_key(p))
            .collect();
        assert!(left.is_empty(), "after {delay_ms} ms: {left:?}");
        let journal = c.state().join("runs");
        assert!(
            !journal.exists() || std::fs::read_dir(&journal).unwrap().next().is_none(),
            "after {delay_ms} ms: a journal entry is left"
        );
    }
    eprintln!("outputs changed after the kills: {outcomes:?}");
}
