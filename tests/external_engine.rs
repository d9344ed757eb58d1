//! `privprep external begin/commit`, the CLI's half of a run on another engine (Spark), without
//! Spark: what the CLI refuses, and what becomes of a run whose engine died or lied. The Spark
//! half runs in `python/tests/test_spark.py` (through `tests/python_wheel.rs`).

mod common;
use common::*;
use std::path::PathBuf;

/// A workspace with generated data and a pipeline the Spark engine runs.
fn workspace() -> (Work, PathBuf) {
    let w = Work::new();
    w.datagen(300, 3, &[]);
    let p = w.pipeline(
        "ext",
        "",
        SAFE_COLUMNS,
        "[output.split]\ntrain = 0.8\ntest = 0.2",
    );
    (w, p)
}

fn begin(w: &Work, pipeline: &std::path::Path, pid: u32) -> serde_json::Value {
    let pid = pid.to_string();
    let out = w.privprep_ok(&[
        "external",
        "begin",
        pipeline.to_str().unwrap(),
        "--pid",
        &pid,
    ]);
    serde_json::from_slice(&out.stdout).expect("begin prints JSON")
}

fn record(w: &Work, run_id: &str) -> serde_json::Value {
    w.lineage_record(run_id)
}

fn path(v: &serde_json::Value) -> PathBuf {
    PathBuf::from(v.as_str().unwrap())
}

/// The pid of a process that has ended.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn begin_gives_the_plan_and_staging_places_and_holds_no_key() {
    let (w, p) = workspace();
    let begun = begin(&w, &p, std::process::id());
    let outputs = begun["outputs"].as_array().unwrap();
    let splits: Vec<&str> = outputs
        .iter()
        .map(|o| o["split"].as_str().unwrap())
        .collect();
    assert_eq!(splits, ["train", "test"]);
    for o in outputs {
        let staging = path(&o["staging"]);
        // Beside the output (so the rename is one folder's), hidden, not there yet.
        assert_eq!(staging.parent(), path(&o["path"]).parent());
        assert!(staging
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with('.'));
        assert!(!staging.exists());
    }
    assert!(path(&begun["scratch"]).is_dir());
    assert_eq!(begun["engine"], "spark");
    assert_eq!(begun["plan"]["version"], 1);
    let key = std::fs::read_to_string(w.state().join("keys/default.key")).unwrap();
    let text = begun.to_string();
    assert!(
        !text.contains(key.trim()),
        "the run key is not in the answer"
    );
    // The run is journaled, not yet recorded.
    let journal = w
        .state()
        .join("runs")
        .join(format!("{}.json", begun["run_id"].as_str().unwrap()));
    assert!(journal.exists());
}

/// The engine's process died: the next command records the run as failed and removes all it
/// staged (output folders, the report, the scratch).
#[test]
fn a_run_whose_engine_died_is_recorded_failed_and_its_staging_removed() {
    let (w, p) = workspace();
    let begun = begin(&w, &p, dead_pid());
    let staging = path(&begun["outputs"][0]["staging"]);
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("part-0.parquet"), b"half written").unwrap();
    std::fs::write(path(&begun["quarantine"]["staging"]), b"{}\n").unwrap();
    w.privprep_ok(&["lineage", "verify"]);
    let run_id = begun["run_id"].as_str().unwrap();
    let r = record(&w, run_id);
    assert_eq!(r["status"], "failed");
    assert_eq!(r["engine"], "spark");
    assert!(r["error"].as_str().unwrap().contains("interrupted"));
    assert!(!staging.exists());
    assert!(!path(&begun["quarantine"]["staging"]).exists());
    assert!(!path(&begun["scratch"]).exists());
    assert!(!path(&begun["outputs"][0]["path"]).exists());
}

/// A result whose counts do not add up, or name a file the plan does not read, fails the run:
/// recorded as failed, nothing in place, the staging gone.
#[test]
fn commit_refuses_a_result_that_does_not_hold() {
    let (w, p) = workspace();
    let source = std::path::absolute(w.data().join("tickets.csv")).unwrap();
    let cases = [
        (
            serde_json::json!({"rows_read": 300, "inputs": [{"path": source, "rows": 300}],
                "statuses": {"kept": 10, "consent_status": 5}}),
            "does not add up",
        ),
        (
            serde_json::json!({"rows_read": 300, "inputs": [{"path": "/elsewhere.csv", "rows": 300}],
                "statuses": {"kept": 300}}),
            "not an input of the plan",
        ),
        (
            serde_json::json!({"rows_read": 300, "inputs": [{"path": source, "rows": 300}],
                "statuses": {"kept": 299, "smuggled": 1}}),
            "unknown status",
        ),
        (
            serde_json::json!({"rows_read": 300, "inputs": [{"path": source, "rows": 300}],
                "statuses": {"kept": 300}, "text_columns": []}),
            "did not write this output",
        ),
    ];
    for (result, why) in cases {
        let begun = begin(&w, &p, std::process::id());
        let run_id = begun["run_id"].as_str().unwrap().to_string();
        let mut result = result;
        result["run_id"] = serde_json::Value::from(run_id.clone());
        let staging = path(&begun["outputs"][1]["staging"]);
        std::fs::create_dir_all(&staging).unwrap();
        let file = w.path().join("result.json");
        std::fs::write(&file, result.to_string()).unwrap();
        let out = w.privprep(&[
            "external",
            "commit",
            p.to_str().unwrap(),
            file.to_str().unwrap(),
            "--format",
            "json",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{why}: {stderr}");
        assert!(stderr.contains(why), "{why}: {stderr}");
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["status"], "failed");
        assert_eq!(record(&w, &run_id)["status"], "failed");
        assert!(!staging.exists(), "{why}: the staging is removed");
        assert!(!w.path().join("out/ext.train.parquet").exists());
        assert!(!w
            .state()
            .join("runs")
            .join(format!("{run_id}.json"))
            .exists());
    }
    // A run id that was never begun (or is over) is refused.
    let out = w.privprep(&[
        "external",
        "commit",
        p.to_str().unwrap(),
        w.path().join("result.json").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is in progress"));
    w.privprep_ok(&["lineage", "verify"]);
}

/// What the Spark engine cannot run yet is refused before anything starts, naming it.
#[test]
fn begin_refuses_what_the_engine_cannot_run_yet() {
    let (w, p) = workspace();
    let text = std::fs::read_to_string(&p).unwrap() + "\n[risk]\nk = 5\n";
    std::fs::write(&p, text).unwrap();
    let out = w.privprep(&["external", "begin", p.to_str().unwrap(), "--pid", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[risk] (k-anonymity)"), "{stderr}");
    assert!(stderr.contains("privprep run"), "{stderr}");
    let out = w.privprep(&[
        "external",
        "begin",
        p.to_str().unwrap(),
        "--pid",
        "1",
        "--engine",
        "flink",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown engine `flink`"));
}

/// A source of URIs is planned from its manifest (nothing is read) and needs the manifest
/// named; mixing URIs and local paths is refused; this binary's own engine does not run it.
#[test]
fn a_source_of_uris_is_planned_for_spark_and_refused_by_the_cli_engine() {
    let (w, p) = workspace();
    let text = std::fs::read_to_string(&p).unwrap();
    let uri = text.replace(
        r#"path = "data/tickets.csv""#,
        r#"path = "s3a://bucket/tickets/*.csv""#,
    );
    std::fs::write(&p, &uri).unwrap();
    w.privprep_ok(&["validate", p.to_str().unwrap()]);
    let plan: serde_json::Value =
        serde_json::from_slice(&w.privprep_ok(&["plan", p.to_str().unwrap()]).stdout).unwrap();
    assert_eq!(plan["source"]["files"][0], "s3a://bucket/tickets/*.csv");
    assert_eq!(plan["source"]["format"], "csv");
    let out = w.privprep(&["run", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is a URI") && stderr.contains("privprep.spark"),
        "{stderr}"
    );

    for (edit, why) in [
        (
            uri.replace(
                r#"path = "s3a://bucket/tickets/*.csv""#,
                r#"path = ["s3a://bucket/a.csv", "data/tickets.csv"]"#,
            ),
            "mixes local paths and URIs",
        ),
        (
            uri.replace(r#"manifest = "data/manifest.toml""#, ""),
            "needs its manifest named",
        ),
        (
            uri.replace("tickets/*.csv", "tickets/part-0"),
            "cannot tell the format",
        ),
    ] {
        std::fs::write(&p, edit).unwrap();
        let out = w.privprep(&["validate", p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{why}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(why), "{why}: {stderr}");
        assert!(stderr.contains("ext.toml:"), "{stderr}");
    }
}

/// A reader that stops early closes the pipe: the CLI ends quietly (as other command-line
/// tools, by SIGPIPE), without "Broken pipe" errors or a panic.
#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    let (w, p) = workspace();
    w.privprep_ok(&["run", p.to_str().unwrap()]);
    // Far more output than a pipe holds: every subject, many times over.
    let ids: Vec<String> = subjects_by_ticket(&w.data()).into_values().collect();
    let many = vec![ids.join("\n"); 20].join("\n") + "\n";
    std::fs::write(w.path().join("ids.txt"), many).unwrap();
    let script = format!(
        "'{}' subject find --ids ids.txt --format json | head -c 10 > /dev/null",
        bin().display()
    );
    let out = w.cmd_shell(&script);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    // The whole output is larger than a pipe's buffer (so the early close was felt).
    let full = w.privprep_ok(&["subject", "find", "--ids", "ids.txt", "--format", "json"]);
    assert!(full.stdout.len() > 256 * 1024, "{}", full.stdout.len());
}
