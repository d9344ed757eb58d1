//! Free text through the binary: redaction, tokenized hits, dropped rows, the leak gate, scan.

mod common;

use common::{
    assert_rows_add_up, copy_examples, misclassify_body, read_parquet, Work, SAFE_COLUMNS,
};
use std::collections::HashMap;
use std::path::Path;

/// One input row as the tests need it.
struct InputRow {
    body: String,
    email: String,
    /// Planted PII: (start, end, type), byte offsets into `body`.
    spans: Vec<(usize, usize, String)>,
}

/// Input rows by ticket id, with their ground-truth spans.
fn input_rows(data: &Path) -> HashMap<String, InputRow> {
    let mut reader = csv::Reader::from_path(data.join("tickets.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let at = |n: &str| headers.iter().position(|h| h == n).unwrap();
    let (ticket, body, email) = (at("ticket_id"), at("body"), at("email"));
    let mut by_index = Vec::new();
    for r in reader.records() {
        let r = r.unwrap();
        by_index.push((
            r[ticket].to_string(),
            r[body].to_string(),
            r[email].to_string(),
        ));
    }
    let mut spans: HashMap<usize, Vec<(usize, usize, String)>> = HashMap::new();
    for line in std::fs::read_to_string(data.join("pii_spans.jsonl"))
        .unwrap()
        .lines()
    {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        spans
            .entry(v["row"].as_u64().unwrap() as usize)
            .or_default()
            .push((
                v["start"].as_u64().unwrap() as usize,
                v["end"].as_u64().unwrap() as usize,
                v["type"].as_str().unwrap().to_string(),
            ));
    }
    by_index
        .into_iter()
        .enumerate()
        .map(|(i, (t, body, email))| {
            let mut s = spans.remove(&i).unwrap_or_default();
            s.sort();
            (
                t,
                InputRow {
                    body,
                    email,
                    spans: s,
                },
            )
        })
        .collect()
}

/// (ticket_id, body, email) of every output row.
fn output_rows(path: &Path) -> Vec<(String, String, String)> {
    let df = read_parquet(path);
    let t = df.column("ticket_id").unwrap().str().unwrap().clone();
    let b = df.column("body").unwrap().str().unwrap().clone();
    let e = df.column("email").unwrap().str().unwrap().clone();
    (0..df.height())
        .map(|i| {
            (
                t.get(i).unwrap().to_string(),
                b.get(i).unwrap_or("").to_string(),
                e.get(i).unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn columns_with_body(rule: &str) -> String {
    SAFE_COLUMNS.replace("body = { action = \"drop\" }", &format!("body = {rule}"))
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

#[test]
fn redacted_bodies_hold_no_planted_pii_and_keep_every_other_byte() {
    let w = Work::new();
    w.datagen(4000, 21, &[]);
    let p = w.pipeline(
        "redact",
        "",
        &columns_with_body("{ action = \"redact\" }"),
        "",
    );
    let (code, summary, stderr) = w.run_json(&p, &[]);
    assert_eq!(code, 0, "{stderr}");
    let input = input_rows(&w.data());
    let out = output_rows(&w.path().join("out/redact.parquet"));
    assert!(out.len() > 300, "too few rows to judge: {}", out.len());
    let (mut with_pii, mut untouched) = (0, 0);
    for (ticket, body, _) in &out {
        let row = &input[ticket];
        for (s, e, kind) in &row.spans {
            let value = &row.body[*s..*e];
            if kind == "name" {
                let planted = words(value);
                assert!(
                    words(body).iter().all(|w| !planted.contains(w)),
                    "a planted name survived in ticket {ticket}"
                );
            } else {
                assert!(
                    !body.contains(value),
                    "a planted {kind} survived in ticket {ticket}"
                );
            }
        }
        // Outside the planted spans nothing changes: the text before the first and after the
        // last one is byte-for-byte the input (multibyte text and emoji included).
        match (row.spans.first(), row.spans.last()) {
            (Some(first), Some(last)) => {
                with_pii += 1;
                assert!(
                    body.starts_with(&row.body[..first.0]),
                    "prefix changed in {ticket}"
                );
                assert!(
                    body.ends_with(&row.body[last.1..]),
                    "suffix changed in {ticket}"
                );
                // And every stretch between two planted values appears, in order.
                let mut at = first.0;
                for pair in row.spans.windows(2) {
                    let gap = &row.body[pair[0].1..pair[1].0];
                    match body[at..].find(gap) {
                        Some(p) => at += p + gap.len(),
                        None => panic!("text between two planted values changed in {ticket}"),
                    }
                }
            }
            _ => {
                if body == &row.body {
                    untouched += 1;
                }
            }
        }
    }
    let clean = out.len() - with_pii;
    assert!(with_pii > 50, "{with_pii}");
    // Texts without planted PII (prices, order numbers, ISBNs, UUIDs, dates) stay as they were.
    assert!(
        untouched as f64 >= 0.99 * clean as f64,
        "{untouched} of {clean} texts without PII were left unchanged"
    );
    let text = &summary["text_columns"][0];
    assert_eq!(text["column"], "body");
    assert_eq!(text["texts_scanned"].as_u64().unwrap(), out.len() as u64);
    let replaced: u64 = text["spans_replaced"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    let planted: usize = out.iter().map(|(t, _, _)| input[t].spans.len()).sum();
    assert!(
        replaced as usize >= planted * 9 / 10,
        "{replaced} replaced, {planted} planted"
    );
    let gate = summary["leak_gate"].as_array().unwrap();
    assert!(
        gate.iter()
            .any(|g| g["column"] == "body" && g["result"] == "clean"),
        "{gate:?}"
    );
    assert!(gate.iter().all(|g| g["result"] != "leak"), "{gate:?}");
}

#[test]
fn tokenized_emails_in_text_carry_the_email_columns_token() {
    let w = Work::new();
    w.datagen(3000, 5, &[]);
    let rule = "{ action = \"redact\", actions = { email = \"tokenize\" } }";
    let p = w.pipeline("tok", "", &columns_with_body(rule), "");
    let (code, _, stderr) = w.run_json(&p, &[]);
    assert_eq!(code, 0, "{stderr}");
    let input = input_rows(&w.data());
    let out = output_rows(&w.path().join("out/tok.parquet"));
    let (mut own, mut matched) = (0, 0);
    for (ticket, body, email_token) in &out {
        let row = &input[ticket];
        assert_eq!(email_token.len(), 32, "email column is a 128-bit hex token");
        if row.body.contains(&row.email) {
            own += 1;
            if body.contains(&format!("[EMAIL:{email_token}]")) {
                matched += 1;
            }
        }
        assert!(!body.contains(&row.email));
    }
    assert!(own > 20, "too few texts quote their writer's e-mail: {own}");
    assert_eq!(
        matched, own,
        "every quoted own e-mail must carry the column's token"
    );
}

/// Names of people other than the writer, written into every third ticket.
const THIRD_PARTIES: [&str; 3] = ["Ingrid Halvorsen", "Tomasz Wieczorek", "Mr. Okonkwo"];

/// Appends a sentence naming a third party to every third ticket's body.
fn mention_third_parties(data: &Path) {
    let path = data.join("tickets.csv");
    let mut reader = csv::Reader::from_path(&path).unwrap();
    let header = reader.headers().unwrap().clone();
    let body = header.iter().position(|h| h == "body").unwrap();
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let mut writer = csv::Writer::from_path(&path).unwrap();
    writer.write_record(&header).unwrap();
    for (i, r) in records.iter().enumerate() {
        let mut fields: Vec<String> = r.iter().map(String::from).collect();
        if i % 3 == 0 {
            let who = THIRD_PARTIES[(i / 3) % THIRD_PARTIES.len()];
            fields[body].push_str(&format!(" I was transferred to {who} in returns."));
        }
        writer.write_record(&fields).unwrap();
    }
    writer.flush().unwrap();
}

#[test]
fn the_person_detector_redacts_third_parties_only_where_a_column_asks_for_it() {
    let w = Work::new();
    w.datagen(1500, 17, &[]);
    mention_third_parties(&w.data());
    let mentions = |file: &str| {
        output_rows(&w.path().join(file))
            .iter()
            .filter(|(_, body, _)| THIRD_PARTIES.iter().any(|n| body.contains(n)))
            .count()
    };
    // Default detectors: the names stay, and the leak gate does not look for them.
    let p = w.pipeline(
        "plain",
        "",
        &columns_with_body("{ action = \"redact\" }"),
        "",
    );
    let summary = w.run_ok(&p);
    assert!(mentions("out/plain.parquet") > 50, "{summary}");
    assert!(summary["text_columns"][0]["spans_replaced"]["person"].is_null());
    // Asked for: every mention is replaced, counted, and the gate passes.
    let rule = r#"{ action = "redact", detectors = ["email", "phone", "ssn", "card", "iban", "ipv4", "ipv6", "url", "name", "person"] }"#;
    let p = w.pipeline("people", "", &columns_with_body(rule), "");
    let summary = w.run_ok(&p);
    assert_eq!(mentions("out/people.parquet"), 0);
    let replaced = summary["text_columns"][0]["spans_replaced"]["person"]
        .as_u64()
        .unwrap_or(0);
    assert!(replaced > 50, "{summary}");
    let body_gate = summary["leak_gate"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["column"] == "body")
        .cloned()
        .unwrap();
    assert_eq!(body_gate["result"], "clean", "{body_gate}");
}

#[test]
fn drop_row_drops_texts_with_an_ssn_and_counts_them() {
    let w = Work::new();
    w.datagen(4000, 8, &[]);
    let rule = "{ action = \"redact\", actions = { ssn = \"drop_row\" } }";
    let p = w.pipeline("droprow", "", &columns_with_body(rule), "");
    let (code, summary, stderr) = w.run_json(&p, &[]);
    assert_eq!(code, 0, "{stderr}");
    let input = input_rows(&w.data());
    let out = output_rows(&w.path().join("out/droprow.parquet"));
    for (ticket, _, _) in &out {
        assert!(
            input[ticket].spans.iter().all(|s| s.2 != "ssn"),
            "ticket {ticket} holds an SSN but was written"
        );
    }
    let dropped = summary["dropped"]["pii_in_text"].as_u64().unwrap_or(0);
    assert!(dropped > 10, "{summary}");
    assert_eq!(
        summary["text_columns"][0]["rows_dropped"].as_u64(),
        Some(dropped)
    );
    assert_rows_add_up(&summary);
}

#[test]
fn leak_gate_fails_a_run_that_keeps_free_text_unredacted() {
    let w = Work::new();
    w.datagen(1500, 3, &[]);
    misclassify_body(&w.data());
    let columns = SAFE_COLUMNS
        .replace("body = { action = \"drop\" }\n", "")
        .replace("body = { action = \"drop\" }", "");
    let p = w.pipeline("leaky", "", &columns, "");
    let (code, summary, stderr) = w.run_json(&p, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("leak gate"), "{stderr}");
    assert!(stderr.contains("`body`"), "{stderr}");
    assert!(!w.path().join("out/leaky.parquet").exists());
    let leftovers: Vec<_> = std::fs::read_dir(w.path().join("out"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    assert_eq!(summary["status"], "failed");
    let gate = summary["leak_gate"].as_array().unwrap();
    let body = gate.iter().find(|g| g["column"] == "body").unwrap();
    assert_eq!(body["result"], "leak");
    for kind in ["email", "identifier_value"] {
        assert!(body["hits"][kind].as_u64().unwrap_or(0) > 0, "{body}");
    }
    // The lineage record holds the verdict, and only counts.
    let run_id = summary["run_id"].as_str().unwrap();
    let show = w.privprep(&["lineage", "show", run_id, "--format", "json"]);
    let stored: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(stored["record"]["leak_gate"], summary["leak_gate"]);
    // The verdict is counts: no e-mail of the input is in the error, the summary or lineage.
    let shown = String::from_utf8_lossy(&show.stdout).to_string();
    let printed = format!("{stderr}{summary}{shown}");
    for row in input_rows(&w.data()).values() {
        assert!(
            !printed.contains(&row.email),
            "a value leaked into a report"
        );
    }

    // The same run with the gate set to warn commits, and says so.
    let p = w.pipeline("leaky_warn", "", &columns, "");
    let text = std::fs::read_to_string(&p).unwrap() + "\n[pii]\nleak_gate = \"warn\"\n";
    std::fs::write(&p, text).unwrap();
    let (code, _, stderr) = w.run_json(&p, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning: leak gate found personal data"),
        "{stderr}"
    );
    assert!(w.path().join("out/leaky_warn.parquet").exists());
}

/// The leak gate finds the same identifier values whether the pre-scan gathered the input's
/// identifiers and each written batch was searched (CSV), or the engine gathered them and the
/// written file was read back (NDJSON of the same records).
#[test]
fn the_gate_counts_alike_whether_the_prescan_or_the_engine_gathers_identifiers() {
    let w = Work::new();
    w.datagen(3000, 41, &[]);
    misclassify_body(&w.data());
    let ndjson = common::csv_as_ndjson(&w.data().join("tickets.csv"));
    std::fs::write(w.data().join("tickets.ndjson"), ndjson).unwrap();
    // The body kept as it is: its names, e-mails and phone numbers are identifier values.
    let columns = SAFE_COLUMNS
        .replace("body = { action = \"drop\" }\n", "")
        .replace("body = { action = \"drop\" }", "");
    let mut gates = Vec::new();
    for (name, path) in [("csv", "data/tickets.csv"), ("nd", "data/tickets.ndjson")] {
        let p = w.pipeline(name, "", &columns, "");
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replace("data/tickets.csv", path)
            + "\n[pii]\nleak_gate = \"warn\"\n";
        std::fs::write(&p, text).unwrap();
        let (code, summary, stderr) = w.run_json(&p, &[]);
        assert_eq!(code, 0, "{name}: {stderr}");
        gates.push(summary["leak_gate"].clone());
    }
    let body = gates[0]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["column"] == "body")
        .unwrap();
    assert!(
        body["hits"]["identifier_value"].as_u64().unwrap_or(0) > 100,
        "{body}"
    );
    assert_eq!(gates[0], gates[1]);
}

#[test]
fn the_quickstart_redacts_its_free_text_and_passes_the_gate() {
    let w = Work::new();
    copy_examples(&w);
    let (code, summary, stderr) = w.run_json(&w.path().join("pipelines/quickstart.toml"), &[]);
    assert_eq!(code, 0, "{stderr}");
    let text = &summary["text_columns"][0];
    assert_eq!(text["column"], "body");
    assert!(
        text["spans_replaced"]["email"].as_u64().unwrap_or(0) > 0,
        "{text}"
    );
    assert!(summary["leak_gate"]
        .as_array()
        .unwrap()
        .iter()
        .all(|g| g["result"] != "leak"));
    // Free text is written without a dictionary (its values hardly repeat); the other text
    // columns keep theirs.
    let mut bodies = 0;
    for output in summary["outputs"].as_array().unwrap() {
        let path = w.path().join(output["path"].as_str().unwrap());
        let file = std::fs::File::open(&path).unwrap();
        let meta = parquet::file::reader::SerializedFileReader::new(file).unwrap();
        let meta = parquet::file::reader::FileReader::metadata(&meta);
        for group in meta.row_groups() {
            for column in group.columns() {
                let dictionary = column
                    .encodings()
                    .any(|e| e == parquet::basic::Encoding::RLE_DICTIONARY);
                let name = column.column_path().string();
                assert_eq!(dictionary, name != "body", "{name} in {}", path.display());
                bodies += usize::from(name == "body");
            }
        }
    }
    assert!(bodies > 0, "no output holds the body column");
}

/// The encrypted example runs as it is: its outputs are encrypted and expire.
#[test]
fn the_encrypted_example_runs_as_it_is() {
    let w = Work::new();
    copy_examples(&w);
    let (code, summary, stderr) = w.run_json(&w.path().join("pipelines/encrypted.toml"), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("created master key"), "{stderr}");
    let first = summary["outputs"][0]["path"].as_str().unwrap();
    let out = w.privprep_ok(&["inspect", first, "--format", "json"]);
    let i: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(i["encryption"]["columns"].as_array().unwrap().len(), 5);
    assert!(i["expires_at"].is_string());
    assert_eq!(i["split"], "train");
}

#[test]
fn scan_reports_pii_per_column_and_suggests_a_manifest_that_loads() {
    let w = Work::new();
    w.datagen(2000, 4, &[]);
    let csv = w.data().join("tickets.csv");
    let out = w.privprep(&["scan", csv.to_str().unwrap(), "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let column = |name: &str| {
        report["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no column {name}"))
            .clone()
    };
    let email = column("email");
    assert_eq!(email["suggested_class"], "identifier");
    assert!(
        email["pii"]["email"]["share"].as_f64().unwrap() > 0.95,
        "{email}"
    );
    let body = column("body");
    assert_eq!(body["suggested_class"], "free_text");
    for kind in ["email", "phone", "card", "iban"] {
        assert!(
            body["pii"][kind]["rows"].as_u64().unwrap_or(0) > 0,
            "{kind}: {body}"
        );
    }
    assert_eq!(column("full_name")["suggested_class"], "identifier");
    assert_eq!(column("zip")["suggested_type"], "string");
    assert_eq!(column("priority")["suggested_type"], "int64");
    // The suggested manifest is a manifest privprep reads.
    let manifest = w.path().join("suggested.toml");
    std::fs::write(&manifest, report["suggested_manifest"].as_str().unwrap()).unwrap();
    let loaded = privprep::ingest::Manifest::load(&manifest);
    assert!(loaded.is_ok(), "{:?}", loaded.err());
    assert_eq!(loaded.unwrap().spec.columns.len(), 16);
    // A Parquet copy of the same data profiles the same way (typed columns keep their types).
    let pq = Work::new();
    pq.datagen(2000, 4, &["--format", "parquet"]);
    let file = pq.data().join("tickets.parquet");
    let out = pq.privprep(&["scan", file.to_str().unwrap(), "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from_parquet: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for c in from_parquet["columns"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        assert_eq!(
            c["suggested_class"],
            column(name)["suggested_class"],
            "{name}"
        );
        assert_eq!(c["pii"], column(name)["pii"], "{name}");
    }
    // No cell value is printed.
    let text = w.privprep(&["scan", csv.to_str().unwrap()]);
    let printed = String::from_utf8_lossy(&text.stdout).to_string();
    let first = input_rows(&w.data());
    for row in first.values().take(200) {
        assert!(!printed.contains(&row.email), "scan printed a value");
    }
}

#[test]
fn user_detectors_deny_and_allow_lists_apply_in_a_run() {
    let w = Work::new();
    w.datagen(3000, 12, &[]);
    let p = w.pipeline(
        "custom",
        "",
        &columns_with_body("{ action = \"redact\" }"),
        "",
    );
    let text = std::fs::read_to_string(&p).unwrap()
        + r#"
[pii]
deny = ["coffee grinder"]
allow = ["SPRING25"]

[[pii.detector]]
name = "order_ref"
pattern = '#[A-Z]-\d{5}'
label = "[ORDER]"
"#;
    std::fs::write(&p, text).unwrap();
    let (code, summary, stderr) = w.run_json(&p, &[]);
    assert_eq!(code, 0, "{stderr}");
    let input = input_rows(&w.data());
    let out = output_rows(&w.path().join("out/custom.parquet"));
    let order = regex::Regex::new(r"#[A-Z]-\d{5}").unwrap();
    let (mut orders, mut grinders) = (0, 0);
    for (ticket, body, _) in &out {
        let raw = &input[ticket].body;
        assert!(
            !order.is_match(body),
            "an order number survived in {ticket}"
        );
        assert!(!body.to_lowercase().contains("coffee grinder"), "{ticket}");
        orders += order.find_iter(raw).count();
        grinders += raw.to_lowercase().matches("coffee grinder").count();
        // Allowed values and text with no rule stay.
        if raw.contains("SPRING25") {
            assert!(body.contains("SPRING25"), "{ticket}");
        }
    }
    assert!(orders > 20 && grinders > 0, "{orders} {grinders}");
    let spans = &summary["text_columns"][0]["spans_replaced"];
    assert_eq!(spans["order_ref"].as_u64(), Some(orders as u64), "{spans}");
    assert_eq!(spans["deny"].as_u64(), Some(grinders as u64), "{spans}");
}
