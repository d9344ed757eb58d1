//! `subject forget` touching 10 outputs, each written by its own run over the 1,000,000-row
//! bench dataset (`PRIVPREP_BENCH_ROWS` sets the size), against the time of one such run: an
//! erasure re-runs every affected pipeline, so its time is close to the sum of theirs. The
//! outputs and the store are restored between repetitions (`PRIVPREP_BENCH_REPS`, default 3;
//! the median is reported).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_privprep");

#[path = "common/mod.rs"]
mod common;
use common::{copy_dir, env_num, ticket_data, write_key};
const OUTPUTS: usize = 10;

/// Runs privprep in `dir` with `args`; returns its wall time and standard output.
fn privprep(dir: &Path, args: &[&str], stdin: Option<&str>) -> (Duration, String) {
    use std::io::Write;
    use std::process::Stdio;
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .args(["-q", "--no-progress", "--state-dir", "state"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn privprep");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("privprep");
    assert!(out.status.success(), "privprep {args:?} failed");
    (start.elapsed(), String::from_utf8_lossy(&out.stdout).into())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows = env_num("PRIVPREP_BENCH_ROWS", 1_000_000);
    let reps = env_num("PRIVPREP_BENCH_REPS", 3).max(1);
    let (base, data) = ticket_data(BIN, rows);
    let dir = base.join("forget");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    write_key(&dir.join("bench.key"), &"ef".repeat(32));
    for n in 0..OUTPUTS {
        let text = format!(
            r#"[pipeline]
name = "forget{n}"

[source]
path = "../data/tickets.csv"

[policy]
purpose = "training"
allowed_provenance = ["app", "web", "partner_api"]
revocations = ["../data/revocations.csv"]
retention_days = 1095
as_of = "2026-11-01"

[columns]
subject_id = {{ action = "tokenize" }}
full_name = {{ action = "drop" }}
email = {{ action = "tokenize" }}
phone = {{ action = "mask", keep_last = 2 }}
birth_date = {{ action = "generalize", to = "year" }}
zip = {{ action = "generalize", prefix = 3 }}
country = {{ action = "keep" }}
satisfaction = {{ action = "keep" }}
body = {{ action = "drop" }}

[output]
path = "out/forget{n}.parquet"
"#
        );
        std::fs::write(dir.join(format!("p{n}.toml")), text).expect("pipeline");
    }
    let mut one_run = Vec::new();
    for n in 0..OUTPUTS {
        let p = format!("p{n}.toml");
        one_run.push(privprep(&dir, &["run", &p, "--key-file", "bench.key"], None).0);
    }
    // A subject every output holds: the first input row's, if kept (else the next one's).
    let csv = std::fs::read_to_string(data.join("tickets.csv")).expect("tickets");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let at = header
        .iter()
        .position(|h| *h == "subject_id")
        .expect("subject_id");
    let subject = lines
        .take(1000)
        .filter_map(|l| l.split(',').nth(at))
        .find(|s| {
            let (_, found) = privprep(&dir, &["subject", "find", "-", "--format", "json"], Some(s));
            let found: serde_json::Value = serde_json::from_str(&found).expect("find's JSON");
            found[0]["holdings"].as_array().map(Vec::len) == Some(OUTPUTS)
        })
        .expect("a subject every output holds")
        .to_string();
    let snapshot = base.join("forget.snapshot");
    copy_dir(&dir, &snapshot);

    let mut forget = Vec::new();
    let mut regenerated = 0;
    for _ in 0..reps {
        copy_dir(&snapshot, &dir);
        let (t, out) = privprep(
            &dir,
            &[
                "subject",
                "forget",
                "-",
                "--reason",
                "erasure request, bench",
                "--key-file",
                "bench.key",
                "--format",
                "json",
            ],
            Some(&subject),
        );
        let summary: serde_json::Value = serde_json::from_str(&out).expect("forget's JSON");
        regenerated = summary["outputs"].as_array().map_or(0, |o| {
            o.iter().filter(|o| o["action"] == "regenerated").count()
        });
        forget.push(t);
    }
    forget.sort();
    one_run.sort();
    let (f, r) = (forget[forget.len() / 2], one_run[one_run.len() / 2]);
    println!("forget rows={rows} outputs={OUTPUTS} reps={reps}");
    println!(
        "  subject forget, {regenerated} outputs regenerated: {:.3} s",
        f.as_secs_f64()
    );
    println!(
        "  one run of one of the pipelines:          {:.3} s ({:.2}x the forget per output)",
        r.as_secs_f64(),
        f.as_secs_f64() / OUTPUTS as f64 / r.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&snapshot);
}
