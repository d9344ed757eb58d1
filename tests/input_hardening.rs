//! Inputs that were read wrong or never ended: each test runs the binary the way a user would
//! meet the problem and is named after what broke.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs a command, killing it (and failing the test) if it has not ended within `secs`: the
/// bugs tested here hung or grew memory until killed.
fn output_within(mut cmd: Command, secs: u64) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start privprep");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "privprep did not end within {secs}s; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Replaces `from` with `to` in a pipeline file.
fn edit(p: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(p).unwrap();
    assert!(text.contains(from), "{from} not in {}", p.display());
    std::fs::write(p, text.replace(from, to)).unwrap();
}

fn validate(w: &Work, p: &Path) -> Output {
    let mut c = w.cmd();
    c.args(["validate", p.to_str().unwrap()]);
    output_within(c, 120)
}

/// The quarantine report of a pipeline named `name`, as JSON lines.
fn quarantine(w: &Work, name: &str) -> Vec<serde_json::Value> {
    let text =
        std::fs::read_to_string(w.path().join(format!("out/{name}.quarantine.jsonl"))).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Rewrites `data/tickets.csv` record by record; `f` gets the 0-based record index, the header
/// and the record's fields.
fn rewrite_tickets(w: &Work, f: impl Fn(usize, &csv::ByteRecord, &mut Vec<Vec<u8>>)) {
    let path = w.data().join("tickets.csv");
    let mut reader = csv::Reader::from_path(&path).unwrap();
    let header = reader.byte_headers().unwrap().clone();
    let records: Vec<csv::ByteRecord> = reader.byte_records().map(|r| r.unwrap()).collect();
    let mut writer = csv::WriterBuilder::new()
        .flexible(true)
        .from_path(&path)
        .unwrap();
    writer.write_byte_record(&header).unwrap();
    for (i, r) in records.iter().enumerate() {
        let mut fields: Vec<Vec<u8>> = r.iter().map(<[u8]>::to_vec).collect();
        f(i, &header, &mut fields);
        writer.write_record(&fields).unwrap();
    }
    writer.flush().unwrap();
}

/// 1-based line each data record of `data/tickets.csv` starts on.
fn record_lines(w: &Work) -> Vec<u64> {
    let mut reader = csv::Reader::from_path(w.data().join("tickets.csv")).unwrap();
    let mut rec = csv::ByteRecord::new();
    let mut out = Vec::new();
    while reader.read_byte_record(&mut rec).unwrap() {
        out.push(rec.position().unwrap().line());
    }
    out
}

// ---- datetimes as systems write them ----

/// Regression: `2026-02-23T18:54:44Z` quarantined every row of a datetime column whose manifest
/// set no format. RFC 3339 with `Z` or an offset, a space for the `T` and fractions now read
/// by default; offsets are converted to UTC.
#[test]
fn rfc_3339_datetimes_read_without_a_format() {
    let w = Work::new();
    w.datagen(200, 3, &[]);
    rewrite_tickets(&w, |i, header, fields| {
        let at = header.iter().position(|h| h == b"created_at").unwrap();
        let value = match i % 5 {
            0 => "2026-02-23T18:54:44Z",
            1 => "2026-02-23T19:54:44+01:00",
            2 => "2026-02-23 18:54:44.000",
            3 => "2026-02-23T18:54:44",
            _ => "23/02/2026 18:54",
        };
        fields[at] = value.as_bytes().to_vec();
    });
    let columns = format!("{SAFE_COLUMNS}\ncreated_at = {{ action = \"keep\" }}");
    let p = w.pipeline("iso", "", &columns, "max_bad_rows = 100");
    let s = w.run_ok(&p);
    // Only the day-first value (one row in five) does not parse.
    assert_eq!(s["quarantined"].as_u64().unwrap(), 40, "{s}");
    let q = quarantine(&w, "iso");
    assert!(q.iter().all(|r| r["column"] == "created_at"), "{q:?}");
    assert!(
        q[0]["error"].as_str().unwrap().contains("ISO 8601"),
        "{}",
        q[0]["error"]
    );
    let df = read_parquet(&w.path().join("out/iso.parquet"));
    let us: Vec<Option<i64>> = df
        .column("created_at")
        .unwrap()
        .as_materialized_series()
        .datetime()
        .unwrap()
        .physical()
        .into_iter()
        .collect();
    // Every kept value is the same instant, in microseconds since the epoch.
    assert!(!us.is_empty());
    assert!(
        us.iter().all(|v| *v == Some(1_771_872_884_000_000)),
        "{us:?}"
    );
}

// ---- 8. duplicate CSV header names ----

/// Regression: a CSV header naming `email` twice was accepted and the second column silently
/// dropped.
#[test]
fn duplicate_csv_header_is_refused_naming_the_column() {
    let w = Work::new();
    w.datagen(50, 3, &[]);
    rewrite_tickets(&w, |_, _, fields| {
        fields.push(b"someone@example.org".to_vec())
    });
    // Append `email` to the header.
    let path = w.data().join("tickets.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let (head, rest) = text.split_once('\n').unwrap();
    std::fs::write(&path, format!("{head},email\n{rest}")).unwrap();
    let p = w.pipeline("dup", "", SAFE_COLUMNS, "");
    let out = validate(&w, &p);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(e.contains("tickets.csv"), "{e}");
    assert!(e.contains("`email` twice (fields 4 and 17)"), "{e}");
    assert!(e.contains("= hint:"), "{e}");
    assert!(!e.contains("someone@example.org"), "{e}");
}

// ---- 9. NDJSON objects and arrays in string columns ----

/// Regression: an NDJSON array in a `string` column was written as its JSON text (and so an
/// e-mail array was tokenized as JSON); it is quarantined as a type mismatch.
#[test]
fn ndjson_array_in_string_column_is_quarantined_as_type_mismatch() {
    let w = Work::new();
    w.datagen(200, 5, &[]);
    // Every value as a JSON string, as a CSV export to NDJSON would write them.
    let mut reader = csv::Reader::from_path(w.data().join("tickets.csv")).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let mut text = String::new();
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.unwrap();
        let mut obj = serde_json::Map::new();
        for (h, v) in header.iter().zip(rec.iter()) {
            let value = match (i, h.as_str()) {
                (3, "email") => serde_json::json!(["canary.one@example.org", "two@example.org"]),
                (7, "country") => serde_json::json!({"code": "CANARYLAND"}),
                _ => serde_json::Value::String(v.to_string()),
            };
            obj.insert(h.clone(), value);
        }
        text.push_str(&serde_json::to_string(&obj).unwrap());
        text.push('\n');
    }
    std::fs::write(w.data().join("tickets.ndjson"), text).unwrap();
    let p = w.pipeline("nd", "", SAFE_COLUMNS, "max_bad_rows = 5");
    edit(&p, "data/tickets.csv", "data/tickets.ndjson");
    let (code, s, e) = w.run_json(&p, &[]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(s["rows_read"].as_u64().unwrap(), 200);
    assert_eq!(s["quarantined"].as_u64().unwrap(), 2, "{s}");
    let q = quarantine(&w, "nd");
    assert_eq!(q.len(), 2);
    assert_eq!(q[0]["line"], 4);
    assert_eq!(q[1]["line"], 8);
    let first = q[0].to_string();
    assert!(
        first.contains("email") && first.contains("an array"),
        "{first}"
    );
    assert!(q[1].to_string().contains("an object"), "{}", q[1]);
    let report = std::fs::read_to_string(w.path().join("out/nd.quarantine.jsonl")).unwrap();
    assert!(
        !report.contains("canary") && !report.contains("CANARY"),
        "{report}"
    );
    assert!(!e.contains("canary") && !e.contains("CANARY"));
}

// ---- 10. many typed columns ----

/// A dataset with `n` int64 columns besides the subject and consent columns, three rows.
fn wide_dataset(w: &Work, n: usize) -> PathBuf {
    let data = w.data();
    std::fs::create_dir_all(&data).unwrap();
    let mut manifest = String::from(
        r#"dataset_id = "wide"
owner = "test"
license = "internal"
origin = "generated"
collected_at = "2026-01-01"
subject_column = "subject_id"
provenance_tag = "app"
consent_purposes_column = "consent_purposes"
consent_status_column = "consent_status"

[[columns]]
name = "subject_id"
type = "string"
class = "identifier"

[[columns]]
name = "consent_purposes"
type = "string"
class = "public"

[[columns]]
name = "consent_status"
type = "string"
class = "public"
"#,
    );
    let mut header = vec![
        "subject_id".to_string(),
        "consent_purposes".into(),
        "consent_status".into(),
    ];
    for i in 0..n {
        manifest.push_str(&format!(
            "\n[[columns]]\nname = \"v{i}\"\ntype = \"int64\"\nclass = \"public\"\n"
        ));
        header.push(format!("v{i}"));
    }
    std::fs::write(data.join("manifest.toml"), manifest).unwrap();
    let mut csv = header.join(",") + "\n";
    for row in 0..3 {
        let mut fields = vec![format!("S{row}"), "training".into(), "given".into()];
        for i in 0..n {
            // Row 1 has an unparseable value in column v{n-1}.
            fields.push(if row == 1 && i == n - 1 {
                "x".into()
            } else {
                (i + row).to_string()
            });
        }
        csv.push_str(&(fields.join(",") + "\n"));
    }
    std::fs::write(data.join("wide.csv"), csv).unwrap();
    let p = w.path().join("wide.toml");
    std::fs::write(
        &p,
        r#"[pipeline]
name = "wide"

[source]
path = "data/wide.csv"

[policy]
purpose = "training"
allowed_provenance = ["app"]

[columns]
subject_id = { action = "tokenize" }

[output]
path = "out/wide.parquet"
max_bad_rows = 1
"#,
    )
    .unwrap();
    p
}

/// Regression: about 1,750 or more typed columns aborted with a stack overflow (one nested
/// when/then per column).
#[test]
fn three_thousand_typed_columns_do_not_overflow_the_stack() {
    let w = Work::new();
    let p = wide_dataset(&w, 3000);
    let key = key_file(w.path(), "k.key", 9);
    let started = Instant::now();
    let mut c = w.cmd();
    c.args([
        "run",
        p.to_str().unwrap(),
        "--format",
        "json",
        "--no-progress",
        "--key-file",
        key.to_str().unwrap(),
    ]);
    let out = output_within(c, 300);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{e}");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["rows_written"], 2, "{s}");
    assert_eq!(s["quarantined"], 1, "{s}");
    let q = quarantine(&w, "wide");
    assert_eq!(q[0]["column"], "v2999", "the first failing column is named");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
}

// ---- 11. side files that are devices, FIFOs or too large ----

/// Regression: `revocations = ["/dev/zero"]` grew memory until the process was killed.
#[test]
fn revocation_list_from_dev_zero_is_refused() {
    let w = Work::new();
    w.datagen(20, 1, &[]);
    let p = w.pipeline("zero", "", SAFE_COLUMNS, "");
    edit(&p, "\"data/revocations.csv\"", "\"/dev/zero\"");
    let out = validate(&w, &p);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(e.contains("/dev/zero"), "{e}");
    assert!(e.contains("character device, not a regular file"), "{e}");
    assert!(e.contains("at most 1 GiB"), "{e}");
    assert!(e.contains("zero.toml:"), "the pipeline line is named: {e}");
}

/// Regression: a FIFO as revocation list made `validate` wait for a writer forever.
#[test]
fn fifo_revocation_list_is_refused_not_waited_on() {
    let w = Work::new();
    w.datagen(20, 1, &[]);
    mkfifo(&w.data().join("revoked.fifo"));
    let p = w.pipeline("fifo_rev", "", SAFE_COLUMNS, "");
    edit(&p, "data/revocations.csv", "data/revoked.fifo");
    let out = validate(&w, &p);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(e.contains("revoked.fifo"), "{e}");
    assert!(e.contains("FIFO (named pipe), not a regular file"), "{e}");
}

/// Regression: a FIFO as `--key-file` hung the run after its journal was written.
#[test]
fn fifo_key_file_is_refused_not_waited_on() {
    let w = Work::new();
    w.datagen(20, 1, &[]);
    let fifo = w.path().join("key.fifo");
    mkfifo(&fifo);
    let p = w.pipeline("fifo_key", "", SAFE_COLUMNS, "");
    let mut c = w.cmd();
    c.args([
        "run",
        p.to_str().unwrap(),
        "--no-progress",
        "--key-file",
        fifo.to_str().unwrap(),
    ]);
    let out = output_within(c, 120);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(e.contains("key.fifo"), "{e}");
    assert!(e.contains("FIFO (named pipe), not a regular file"), "{e}");
    assert!(!w.path().join("out/fifo_key.parquet").exists());
}

/// Regression: a FIFO as pipeline file was waited on.
#[test]
fn fifo_pipeline_file_is_refused_not_waited_on() {
    let w = Work::new();
    let fifo = w.path().join("pipeline.toml");
    mkfifo(&fifo);
    let out = validate(&w, &fifo);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(e.contains("pipeline.toml"), "{e}");
    assert!(e.contains("not a regular file"), "{e}");
    assert!(e.contains("at most 16 MiB"), "{e}");
}

/// Regression: `deny_file = "/dev/zero"` was read until memory ran out.
#[test]
fn deny_file_from_dev_zero_is_refused() {
    let w = Work::new();
    w.datagen(20, 1, &[]);
    let p = w.pipeline("deny", "", SAFE_COLUMNS, "");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, format!("{text}\n[pii]\ndeny_file = \"/dev/zero\"\n")).unwrap();
    let out = validate(&w, &p);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(
        e.contains("/dev/zero") && e.contains("character device"),
        "{e}"
    );
}

// ---- 12. clear errors instead of engine text ----

/// Regression: invalid UTF-8 in a CSV field failed the run with "the engine failed: invalid
/// utf-8 sequence" (no file, line or column) even with `max_bad_rows = 5`.
#[test]
fn invalid_utf8_field_is_quarantined_with_line_and_column() {
    let w = Work::new();
    w.datagen(200, 13, &[]);
    rewrite_tickets(&w, |i, header, fields| {
        if i == 9 {
            let zip = header.iter().position(|h| h == b"zip").unwrap();
            fields[zip] = b"CANARY\xff\xfe9".to_vec();
        }
    });
    let line = record_lines(&w)[9];
    let p = w.pipeline("utf8", "", SAFE_COLUMNS, "max_bad_rows = 5");
    let (code, s, e) = w.run_json(&p, &[]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(s["rows_read"].as_u64().unwrap(), 200);
    assert_eq!(s["quarantined"].as_u64().unwrap(), 1);
    let q = quarantine(&w, "utf8");
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["line"].as_u64().unwrap(), line);
    assert_eq!(q[0]["record"].as_u64().unwrap(), 9);
    let entry = q[0].to_string();
    assert!(entry.contains("zip") && entry.contains("UTF-8"), "{entry}");
    assert!(!entry.contains("CANARY"), "{entry}");

    // Without room for bad rows, the run fails naming the file and line, not the engine.
    let p = w.pipeline("utf8_strict", "", SAFE_COLUMNS, "");
    let (code, _, e) = w.run_json(&p, &[]);
    assert_eq!(code, 1, "{e}");
    assert!(e.contains(&format!("tickets.csv:{line}")), "{e}");
    assert!(!e.contains("engine failed"), "{e}");
    assert!(!e.contains("CANARY"), "{e}");
}

/// Regression: an unterminated quote at the end of the file failed with a polars message (a
/// byte offset and a `…`-redacted hint); the record is quarantined naming its line.
#[test]
fn unterminated_quote_at_end_of_file_is_quarantined_naming_its_line() {
    let w = Work::new();
    w.datagen(100, 17, &[]);
    let path = w.data().join("tickets.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.ends_with('\n'));
    let line = text.matches('\n').count() as u64 + 1;
    std::fs::write(
        &path,
        format!("{text}T999,S999,\"CANARY Name,x@example.org\n"),
    )
    .unwrap();
    let p = w.pipeline("quote", "", SAFE_COLUMNS, "max_bad_rows = 5");
    let (code, s, e) = w.run_json(&p, &[]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(s["rows_read"].as_u64().unwrap(), 101);
    assert_eq!(s["quarantined"].as_u64().unwrap(), 1);
    let q = quarantine(&w, "quote");
    assert_eq!(q[0]["line"].as_u64().unwrap(), line);
    let entry = q[0].to_string();
    assert!(entry.contains("unterminated quoted field"), "{entry}");
    assert!(entry.contains(&format!("opened on line {line}")), "{entry}");

    let p = w.pipeline("quote_strict", "", SAFE_COLUMNS, "");
    let (code, _, e) = w.run_json(&p, &[]);
    assert_eq!(code, 1, "{e}");
    assert!(e.contains(&format!("tickets.csv:{line}")), "{e}");
    assert!(e.contains("unterminated quoted field"), "{e}");
    assert!(!e.contains('…') && !e.contains("offset"), "{e}");
    assert!(!e.contains("CANARY"), "{e}");
}

/// Regression: a FIFO or device given as input was reported as "does not exist".
#[test]
fn fifo_input_file_is_refused_as_not_a_regular_file() {
    let w = Work::new();
    w.datagen(20, 1, &[]);
    mkfifo(&w.data().join("tickets.fifo.csv"));
    let p = w.pipeline("fifo_in", "", SAFE_COLUMNS, "");
    edit(&p, "data/tickets.csv", "data/tickets.fifo.csv");
    let out = validate(&w, &p);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(
        e.contains("tickets.fifo.csv` is a FIFO (named pipe), not a regular file"),
        "{e}"
    );
    assert!(!e.contains("does not exist"), "{e}");

    let p = w.pipeline("dev_in", "", SAFE_COLUMNS, "");
    edit(&p, "path = \"data/tickets.csv\"", "path = \"/dev/null\"");
    let out = validate(&w, &p);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(e.contains("`/dev/null` is a character device"), "{e}");
}

/// Regression: an empty CSV was reported as 17 column errors.
#[test]
fn empty_csv_is_one_error_naming_the_file() {
    let w = Work::new();
    w.datagen(20, 1, &[]);
    let path = w.data().join("tickets.csv");
    std::fs::write(&path, "").unwrap();
    let p = w.pipeline("empty", "", SAFE_COLUMNS, "");
    let out = validate(&w, &p);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(e.contains("tickets.csv: the file is empty"), "{e}");
    assert!(e.contains("1 error found"), "{e}");
}

/// A CSV with only its header is valid and runs as zero rows.
#[test]
fn header_only_csv_runs_with_zero_rows() {
    let w = Work::new();
    w.datagen(20, 1, &[]);
    let path = w.data().join("tickets.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let header = text.split_inclusive('\n').next().unwrap().to_string();
    std::fs::write(&path, header).unwrap();
    let p = w.pipeline("header_only", "", SAFE_COLUMNS, "");
    let (code, s, e) = w.run_json(&p, &[]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(s["rows_read"], 0);
    assert_eq!(s["rows_written"], 0);
}
