//! Shared helpers for the integration tests: run the binary, generate data, write pipelines.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The privprep binary built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_privprep"))
}

/// A scratch workspace: data folder, state folder, pipeline files.
pub struct Work {
    pub dir: tempfile::TempDir,
}

impl Work {
    pub fn new() -> Work {
        Work {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn data(&self) -> PathBuf {
        self.path().join("data")
    }
    pub fn state(&self) -> PathBuf {
        self.path().join("state")
    }
    /// A privprep command with this workspace's state folder and a clean environment.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.current_dir(self.path())
            .env_remove("PRIVPREP_KEY")
            .env_remove("PRIVPREP_KEY_FILE")
            .env_remove("PRIVPREP_LINEAGE_DB")
            .env("PRIVPREP_STATE_DIR", self.state())
            .env("NO_COLOR", "1");
        c
    }
    /// Runs a shell script in this workspace, with the environment of [`Work::cmd`].
    pub fn cmd_shell(&self, script: &str) -> Output {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(script)
            .current_dir(self.path())
            .env_remove("PRIVPREP_KEY")
            .env_remove("PRIVPREP_KEY_FILE")
            .env_remove("PRIVPREP_LINEAGE_DB")
            .env("PRIVPREP_STATE_DIR", self.state())
            .env("NO_COLOR", "1");
        c.output().expect("run sh")
    }
    /// Runs privprep with these arguments.
    pub fn privprep(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run privprep")
    }
    /// Generates the support-tickets dataset into `data/`.
    pub fn datagen(&self, rows: u64, seed: u64, extra: &[&str]) {
        let rows = rows.to_string();
        let seed = seed.to_string();
        let data = self.data();
        let mut args = vec![
            "datagen",
            "--rows",
            &rows,
            "--seed",
            &seed,
            "--out",
            data.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = self.privprep(&args);
        assert!(
            out.status.success(),
            "datagen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    /// Writes a pipeline file with the standard sections; `columns` and `output_extra` are
    /// inserted as given.
    pub fn pipeline(
        &self,
        name: &str,
        policy_extra: &str,
        columns: &str,
        output_extra: &str,
    ) -> PathBuf {
        let text = format!(
            r#"[pipeline]
name = "{name}"

[source]
path = "data/tickets.csv"
manifest = "data/manifest.toml"

[policy]
purpose = "training"
allowed_provenance = ["app", "web", "partner_api"]
revocations = ["data/revocations.csv"]
retention_days = 1095
as_of = "2026-11-01"
{policy_extra}

[columns]
{columns}

[output]
path = "out/{name}.parquet"
{output_extra}
"#
        );
        let p = self.path().join(format!("{name}.toml"));
        std::fs::write(&p, text).unwrap();
        p
    }
    /// The command that runs a pipeline with `--format json`, not yet started.
    pub fn run_json_cmd(&self, pipeline: &Path) -> Command {
        let mut c = self.cmd();
        c.args([
            "run",
            pipeline.to_str().unwrap(),
            "--format",
            "json",
            "--no-progress",
        ]);
        c
    }
    /// Runs a pipeline with `--format json` and returns (exit code, parsed summary, stderr).
    pub fn run_json(&self, pipeline: &Path, extra: &[&str]) -> (i32, serde_json::Value, String) {
        let out = self
            .run_json_cmd(pipeline)
            .args(extra)
            .output()
            .expect("run privprep");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let summary = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON object ({e}): {}\nstderr: {stderr}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (out.status.code().unwrap_or(-1), summary, stderr)
    }
    /// Runs a pipeline that must succeed; returns its summary.
    pub fn run_ok(&self, pipeline: &Path) -> serde_json::Value {
        let (code, summary, stderr) = self.run_json(pipeline, &[]);
        assert_eq!(code, 0, "{stderr}");
        summary
    }
    /// Runs privprep with these arguments and `stdin` on its standard input (an id kept out of
    /// the command line).
    pub fn privprep_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        use std::process::Stdio;
        let mut child = self
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run privprep");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("privprep")
    }
    /// The lineage record of run `run_id`, as `lineage show --format json` gives it.
    pub fn lineage_record(&self, run_id: &str) -> serde_json::Value {
        let out = self.privprep_ok(&["lineage", "show", run_id, "--format", "json"]);
        let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        shown["record"].clone()
    }
    /// Runs `subject export` (with `extra` arguments) into a bundle and reads it.
    pub fn export_bundle(&self, subject: &str, extra: &[&str]) -> serde_json::Value {
        let path = self.path().join("bundle.json");
        let mut args = vec![
            "subject",
            "export",
            subject,
            "--out",
            path.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.privprep_ok(&args);
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }
    /// Runs privprep with these arguments, which must succeed.
    pub fn privprep_ok(&self, args: &[&str]) -> Output {
        let out = self.privprep(args);
        assert!(
            out.status.success(),
            "privprep {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// Column rules that satisfy privacy-by-default for the tickets manifest.
pub const SAFE_COLUMNS: &str = r#"subject_id = { action = "tokenize" }
full_name = { action = "drop" }
email = { action = "tokenize" }
phone = { action = "mask", keep_last = 2 }
birth_date = { action = "generalize", to = "year" }
zip = { action = "generalize", prefix = 3 }
country = { action = "keep" }
satisfaction = { action = "keep" }
body = { action = "drop" }"#;

/// The records of a CSV file as NDJSON lines, every value as text.
pub fn csv_as_ndjson(csv: &Path) -> String {
    use polars::prelude::*;
    let df = LazyCsvReader::new(PlPath::new(csv.to_str().unwrap()))
        .with_infer_schema_length(Some(0))
        .finish()
        .unwrap()
        .collect()
        .unwrap();
    let mut buf = Vec::new();
    JsonWriter::new(&mut buf)
        .with_json_format(JsonFormat::JsonLines)
        .finish(&mut df.clone())
        .unwrap();
    String::from_utf8(buf).unwrap()
}

/// Reads a Parquet file with the engine.
pub fn read_parquet(path: &Path) -> polars::prelude::DataFrame {
    use polars::prelude::*;
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetReader::new(file).finish().expect("read parquet")
}

/// Writes a 32-byte key file (hex) and returns its path.
pub fn key_file(dir: &Path, name: &str, byte: u8) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, hex::encode([byte; 32])).unwrap();
    p
}

/// Caps the dataset's privacy budget at ε = `cap` in its manifest (once).
pub fn cap_budget(w: &Work, cap: f64) {
    let m = w.data().join("manifest.toml");
    let text = std::fs::read_to_string(&m).unwrap();
    if text.contains("privacy_budget") {
        return;
    }
    let text = text.replacen(
        "purpose_separator = \";\"",
        &format!("purpose_separator = \";\"\nprivacy_budget = {{ epsilon = {cap:?} }}"),
        1,
    );
    assert!(
        text.contains("privacy_budget"),
        "the manifest changed shape"
    );
    std::fs::write(&m, text).unwrap();
}

/// A dataset whose manifest caps the budget at ε = `cap`, and a pipeline `name` with one
/// `by_country` release asking ε = `epsilon` for `aggregates`.
pub fn capped_pipeline(w: &Work, name: &str, cap: f64, epsilon: f64, aggregates: &str) -> PathBuf {
    cap_budget(w, cap);
    let p = w.pipeline(name, "", SAFE_COLUMNS, "");
    add_country_release(w, &p, name, "max_rows_per_group = 3", epsilon, aggregates);
    p
}

/// Appends a `by_country` release with public keys (from `data/countries.csv`, written here)
/// to the pipeline file `p` of pipeline `name`; `bound` is its contribution bound line.
pub fn add_country_release(
    w: &Work,
    p: &Path,
    name: &str,
    bound: &str,
    epsilon: f64,
    aggregates: &str,
) {
    let text = std::fs::read_to_string(p).unwrap()
        + &format!(
            r#"
[[release]]
name = "by_country"
path = "out/{name}.by_country.parquet"
group_by = ["country"]
keys = "public"
key_file = "data/countries.csv"
{bound}
max_rows = 100000
privacy = {{ epsilon = {epsilon:?} }}
aggregates = [{aggregates}]
"#
        );
    std::fs::write(p, text).unwrap();
    std::fs::write(
        w.data().join("countries.csv"),
        "country\nUS\nGB\nDE\nFR\nIN\nBR\nCA\nAU\nES\nIT\nNL\nMX\nPL\nJP\nSE\nVN\n",
    )
    .unwrap();
}

/// ticket_id → subject_id of the input (records that cannot be split into fields, which
/// `datagen --bad-rows` plants, are left out: no run keeps them).
pub fn subjects_by_ticket(data: &Path) -> HashMap<String, String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(data.join("tickets.csv"))
        .unwrap();
    let headers = reader.headers().unwrap().clone();
    let at = |n: &str| headers.iter().position(|h| h == n).unwrap();
    let (t, s) = (at("ticket_id"), at("subject_id"));
    reader
        .records()
        .filter_map(Result::ok)
        .filter_map(|r| Some((r.get(t)?.to_string(), r.get(s)?.to_string())))
        .collect()
}

/// Subject → the tickets of theirs an output file holds.
pub fn tickets_by_subject(
    file: &Path,
    by_ticket: &HashMap<String, String>,
) -> BTreeMap<String, BTreeSet<String>> {
    let df = read_parquet(file);
    let tickets = df.column("ticket_id").unwrap().str().unwrap().clone();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for t in tickets.into_iter().flatten() {
        out.entry(by_ticket[t].clone())
            .or_default()
            .insert(t.to_string());
    }
    out
}

/// The subjects whose rows an output file holds.
pub fn subjects_in(file: &Path, by_ticket: &HashMap<String, String>) -> BTreeSet<String> {
    tickets_by_subject(file, by_ticket).into_keys().collect()
}

/// Every (output path → its subjects) of a run summary.
pub fn outputs_of(
    summary: &serde_json::Value,
    by_ticket: &HashMap<String, String>,
) -> Vec<(String, BTreeSet<String>)> {
    summary["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let path = o["path"].as_str().unwrap().to_string();
            let held = subjects_in(Path::new(&path), by_ticket);
            (path, held)
        })
        .collect()
}

/// Copies the folder `from` into `to` (a workspace: data, pipelines, outputs, state).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Replaces `from` by `to` (once) in the file at `path`; the file must hold `from`.
pub fn edit_file(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let edited = text.replacen(from, to, 1);
    assert_ne!(text, edited, "{} changed shape", path.display());
    std::fs::write(path, edited).unwrap();
}

/// Makes the manifest in `data` call the free-text `body` column public (a mistake the leak
/// gate must catch).
pub fn misclassify_body(data: &Path) {
    edit_file(
        &data.join("manifest.toml"),
        "class = \"free_text\"  # identifier | quasi_identifier | sensitive | free_text | public",
        "class = \"public\"",
    );
}

/// Copies the repository's `pipelines/` and `datasets/support_tickets/` into the workspace,
/// so an example runs there as it is.
pub fn copy_examples(w: &Work) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["pipelines", "datasets/support_tickets"] {
        std::fs::create_dir_all(w.path().join(dir)).unwrap();
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let e = e.unwrap();
            if e.path().is_file() {
                std::fs::copy(e.path(), w.path().join(dir).join(e.file_name())).unwrap();
            }
        }
    }
}

/// A small deterministic generator for test data: the next value below `n`.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Asserts a run summary's accounting: rows read = written + Σ dropped + quarantined.
pub fn assert_rows_add_up(summary: &serde_json::Value) {
    let dropped: u64 = summary["dropped"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        summary["rows_read"].as_u64().unwrap(),
        summary["rows_written"].as_u64().unwrap()
            + dropped
            + summary["quarantined"].as_u64().unwrap(),
        "{summary}"
    );
}
