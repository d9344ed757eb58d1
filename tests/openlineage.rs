//! `privprep lineage export --openlineage`: run events that validate against the official
//! OpenLineage schemas (kept in `tests/data/openlineage/`), through the binary.

mod common;

use common::*;
use std::process::Command;

/// `privprep lineage export --openlineage --all` with `extra` arguments; with `ok`, it must
/// succeed.
fn export_all(w: &Work, ok: bool, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["lineage", "export", "--openlineage", "--all"];
    args.extend_from_slice(extra);
    if ok {
        w.privprep_ok(&args)
    } else {
        w.privprep(&args)
    }
}

fn python_with_jsonschema() -> bool {
    Command::new("python3")
        .args(["-c", "import jsonschema, referencing"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn exported_events_validate_and_carry_what_the_runs_recorded() {
    let w = Work::new();
    w.datagen(700, 12, &["--bad-rows", "5"]);
    // A succeeded run with splits and a DP release, and a run that fails (too many bad rows).
    let released = capped_pipeline(&w, "released", 5.0, 1.0, r#"{ kind = "count" }"#);
    let text = std::fs::read_to_string(&released).unwrap().replace(
        "path = \"out/released.parquet\"",
        "path = \"out/released.parquet\"\nmax_bad_rows = 10\n[output.split]\ntrain = 0.8\nvalidation = 0.1\ntest = 0.1",
    );
    // k-anonymity, reported: the facet carries its counts.
    let text = text + "\n[risk]\nk = 2\naction = \"report\"\n";
    std::fs::write(&released, text).unwrap();
    let summary = w.run_ok(&released);
    let failing = w.pipeline("failing", "", SAFE_COLUMNS, "max_bad_rows = 0");
    let (code, _, _) = w.run_json(&failing, &[]);
    assert_ne!(code, 0);
    // An encrypted run: the facet names its master keys by id and fingerprint.
    let sealed = w.pipeline(
        "sealed",
        "",
        SAFE_COLUMNS,
        "max_bad_rows = 10\n[output.encryption]",
    );
    w.run_ok(&sealed);
    // An erasure of a subject the first run kept: its record is exported too.
    let by_ticket = subjects_by_ticket(&w.data());
    let first = summary["outputs"][0]["path"].as_str().unwrap();
    let subject = subjects_in(std::path::Path::new(first), &by_ticket)
        .into_iter()
        .next()
        .unwrap();
    w.privprep_ok(&["subject", "forget", &subject, "--reason", "erasure request"]);

    let events_path = w.path().join("events.jsonl");
    export_all(&w, true, &["--out", events_path.to_str().unwrap()]);
    let text = std::fs::read_to_string(&events_path).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 8);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["START", "COMPLETE", "START", "FAIL", "START", "COMPLETE", "START", "COMPLETE"]
    );
    assert_eq!(events[0]["run"]["runId"], events[1]["run"]["runId"]);
    assert_ne!(events[1]["run"]["runId"], events[3]["run"]["runId"]);

    // The COMPLETE event: 3 split files and the release, rows as the run reported.
    let done = &events[1];
    let outputs = done["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 4, "{outputs:?}");
    let reported: u64 = summary["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["rows"].as_u64().unwrap())
        .sum();
    let exported: u64 = outputs[..3]
        .iter()
        .map(|o| {
            o["outputFacets"]["outputStatistics"]["rowCount"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(exported, reported);
    // Column lineage: the tokenized subject is masked, the kept country is not.
    let lineage = &outputs[0]["facets"]["columnLineage"]["fields"];
    let t = |c: &str| lineage[c]["inputFields"][0]["transformations"][0].clone();
    assert_eq!(t("subject_id")["masking"], true, "{lineage}");
    assert_eq!(t("country")["masking"], false, "{lineage}");
    assert_eq!(t("country")["subtype"], "IDENTITY");
    let facet = &done["run"]["facets"]["privprep"];
    assert_eq!(facet["quarantined"], summary["quarantined"]);
    assert_eq!(facet["dropped"], summary["dropped"]);
    assert_eq!(facet["budgetSpends"][0]["epsilon"], 1.0);
    assert_eq!(facet["chain"]["seq"], 1);
    assert!(events[3]["run"]["facets"]["errorMessage"]["message"].is_string());
    // The erasure (outputs by path): the release listed, the split file that held the
    // subject regenerated.
    let k = &events[1]["run"]["facets"]["privprep"]["kAnonymity"];
    assert_eq!(k["k"], 2, "{k}");
    let enc = &events[5]["run"]["facets"]["privprep"]["encryption"];
    assert!(enc["columnKey"]["fingerprint"].is_string(), "{enc}");
    let erasure = &events[7]["run"]["facets"]["privprep"]["erasures"][0];
    assert_eq!(erasure["command"], "forget");
    let actions: Vec<&str> = erasure["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions[0], "release", "{erasure}");
    assert!(
        actions[1..].iter().all(|a| *a == "regenerated"),
        "{erasure}"
    );
    let changes = &events[7]["run"]["facets"]["privprep"]["outputChanges"];
    assert_eq!(changes.as_array().unwrap().len(), actions.len());
    assert!(!text.contains(subject.as_str()));

    // Standard output carries the same events.
    let out = export_all(&w, false, &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), text);

    if !python_with_jsonschema() {
        eprintln!("skipping schema validation: python3 with jsonschema is not installed");
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let check = Command::new("python3")
        .arg(format!("{root}/tests/openlineage_validate.py"))
        .arg(&events_path)
        .arg(format!("{root}/tests/data/openlineage"))
        .arg(format!("{root}/schemas/openlineage/PrivprepRunFacet.json"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        report.contains("8 events") && report.contains(", 0 problems"),
        "{report}"
    );
}

/// A local OpenLineage endpoint: answers every POST with `status` and keeps the bodies.
fn endpoint(status: u16) -> (String, std::sync::mpsc::Receiver<(String, Vec<u8>)>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/v1/lineage", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).unwrap();
            let reply =
                format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            stream.write_all(reply.as_bytes()).unwrap();
            if tx.send((request_line, body)).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

#[test]
fn events_are_posted_to_an_openlineage_endpoint_and_a_refusal_fails_the_command() {
    let w = Work::new();
    w.datagen(300, 5, &[]);
    let p = w.pipeline("posted", "", SAFE_COLUMNS, "");
    for _ in 0..2 {
        w.run_ok(&p);
    }
    let file = export_all(&w, false, &[]);
    let expected: Vec<serde_json::Value> = String::from_utf8_lossy(&file.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(expected.len(), 4);

    let (url, received) = endpoint(201);
    let out = export_all(&w, true, &["--post", &url]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("4 event(s) posted"));
    let got: Vec<(String, Vec<u8>)> = received.try_iter().collect();
    assert_eq!(got.len(), 4);
    for ((line, body), want) in got.iter().zip(&expected) {
        assert!(line.starts_with("POST /api/v1/lineage HTTP/1.1"), "{line}");
        let event: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(&event, want);
    }

    let (url, _received) = endpoint(400);
    let out = export_all(&w, false, &["--post", &url]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("refused event 1: HTTP 400"), "{err}");

    let out = export_all(&w, false, &["--post", "https://example.invalid/x"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("only http://"));
}
