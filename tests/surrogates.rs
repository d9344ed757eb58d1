//! Realistic surrogates (`action = "surrogate"`): plausible values of the same kind, the same
//! for the same value in every table and run with one key, never the input, passing the leak
//! gate; `privprep surrogate` says what a value became.

mod common;

use common::*;
use std::collections::HashMap;
use std::path::Path;

const SURROGATE_COLUMNS: &str = r#"subject_id = { action = "surrogate", kind = "id" }
full_name = { action = "surrogate" }
email = { action = "surrogate" }
phone = { action = "surrogate" }
birth_date = { action = "generalize", to = "year" }
zip = { action = "generalize", prefix = 3 }
country = { action = "keep" }
satisfaction = { action = "keep" }
body = { action = "drop" }"#;

/// ticket_id → the row's values of `columns`, from the input CSV.
fn input_rows(data: &Path, columns: &[&str]) -> HashMap<String, Vec<String>> {
    let mut reader = csv::Reader::from_path(data.join("tickets.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let at: Vec<usize> = columns
        .iter()
        .map(|c| headers.iter().position(|h| h == *c).unwrap())
        .collect();
    let t = headers.iter().position(|h| h == "ticket_id").unwrap();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[t].to_string(),
                at.iter().map(|i| r[*i].to_string()).collect(),
            )
        })
        .collect()
}

/// ticket_id → the row's values of `columns` in a written file.
fn output_rows(file: &Path, columns: &[&str]) -> HashMap<String, Vec<Option<String>>> {
    let df = read_parquet(file);
    let t = df.column("ticket_id").unwrap().str().unwrap().clone();
    let cols: Vec<_> = columns
        .iter()
        .map(|c| df.column(c).unwrap().str().unwrap().clone())
        .collect();
    (0..df.height())
        .map(|i| {
            (
                t.get(i).unwrap().to_string(),
                cols.iter().map(|c| c.get(i).map(str::to_owned)).collect(),
            )
        })
        .collect()
}

const COLUMNS: [&str; 4] = ["subject_id", "full_name", "email", "phone"];

#[test]
fn surrogates_are_consistent_well_formed_never_the_input_and_pass_the_gate() {
    let w = Work::new();
    w.datagen(800, 19, &[]);
    let a = w.run_ok(&w.pipeline("a", "", SURROGATE_COLUMNS, ""));
    // Another table of the same rows (a split), same key: the same surrogates.
    let b = w.run_ok(&w.pipeline(
        "b",
        "",
        SURROGATE_COLUMNS,
        "[output.split]\ntrain = 0.5\ntest = 0.5",
    ));
    assert!(
        a["leak_gate"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["result"] != "leak"),
        "{}",
        a["leak_gate"]
    );
    let input = input_rows(&w.data(), &COLUMNS);
    let out_a = output_rows(
        Path::new(a["outputs"][0]["path"].as_str().unwrap()),
        &COLUMNS,
    );
    assert!(!out_a.is_empty());
    // Same input value → same surrogate, in every row.
    let mut seen: HashMap<(usize, String), String> = HashMap::new();
    for (ticket, values) in &out_a {
        let original = &input[ticket];
        for (i, v) in values.iter().enumerate() {
            let Some(v) = v else { continue };
            assert_ne!(v, &original[i], "{} kept its value", COLUMNS[i]);
            if let Some(prev) = seen.insert((i, original[i].clone()), v.clone()) {
                assert_eq!(&prev, v, "{} is not consistent", COLUMNS[i]);
            }
        }
        let (id, name, email, phone) = (&values[0], &values[1], &values[2], &values[3]);
        let id = id.as_ref().unwrap();
        assert_eq!(id.len(), original[0].len());
        if let Some(e) = email {
            let (local, domain) = e.split_once('@').unwrap();
            assert!(!local.is_empty() && domain.starts_with("example."), "{e}");
        }
        if let Some(p) = phone {
            assert_eq!(p.len(), original[3].trim().len(), "{p}");
        }
        if let Some(n) = name {
            assert_eq!(
                n.split_whitespace().count(),
                original[1].split_whitespace().count(),
                "{n}"
            );
        }
    }
    for o in b["outputs"].as_array().unwrap() {
        for (ticket, values) in output_rows(Path::new(o["path"].as_str().unwrap()), &COLUMNS) {
            assert_eq!(values, out_a[&ticket], "the split differs");
        }
    }

    // Another key gives other surrogates.
    let other = w.path().join("other.key");
    std::fs::write(&other, hex::encode([7u8; 32])).unwrap();
    let p = w.pipeline("c", "", SURROGATE_COLUMNS, "");
    let (code, c, stderr) = w.run_json(&p, &["--key-file", other.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let out_c = output_rows(
        Path::new(c["outputs"][0]["path"].as_str().unwrap()),
        &COLUMNS,
    );
    let same = out_c
        .iter()
        .filter(|(t, v)| out_a[*t][2] == v[2] && v[2].is_some())
        .count();
    assert_eq!(same, 0, "e-mail surrogates do not depend on the key");

    // `privprep surrogate` says what a value became (the value read from stdin).
    let (ticket, values) = out_a.iter().find(|(_, v)| v[2].is_some()).unwrap();
    let pipeline = w.path().join("a.toml");
    let out = w.privprep_stdin(
        &[
            "surrogate",
            "--value",
            "-",
            "--column",
            "email",
            "--pipeline",
            pipeline.to_str().unwrap(),
        ],
        &input[ticket][2],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        values[2].as_deref().unwrap()
    );

    // The registry: which runs filled which columns with surrogates, from which inputs.
    let sql = w.privprep_ok(&[
        "lineage",
        "sql",
        "SELECT DISTINCT column_name FROM surrogates WHERE pipeline = 'a' ORDER BY 1",
        "--format",
        "csv",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&sql.stdout).trim(),
        "column_name\nemail\nfull_name\nphone\nsubject_id"
    );

    // An access request finds the subject's rows by the surrogate of their id.
    let subject = &input[ticket][0];
    let bundle = w.export_bundle(subject, &[]);
    let rows = bundle["outputs"][0]["rows"].as_array().unwrap();
    assert!(
        rows.iter().any(|r| r["ticket_id"] == ticket.as_str()),
        "{bundle}"
    );

    // `privprep surrogate ID --column C`: the surrogates the subject's e-mails got, per output,
    // equal to the subject's rows of the output (and no input value is shown).
    let out = w.privprep_ok(&[
        "surrogate",
        subject,
        "--column",
        "email",
        "--format",
        "json",
    ]);
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let a_path = a["outputs"][0]["path"].as_str().unwrap();
    let held = answer["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["path"] == a_path)
        .unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(held["column"], "email");
    let mut got: Vec<(String, u64)> = held["surrogates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["surrogate"].as_str().unwrap().to_string(),
                v["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort();
    let mut want: std::collections::BTreeMap<String, u64> = Default::default();
    for (t, v) in &out_a {
        if input[t][0] == *subject {
            if let Some(e) = &v[2] {
                *want.entry(e.clone()).or_default() += 1;
            }
        }
    }
    assert!(!want.is_empty());
    assert_eq!(got, want.into_iter().collect::<Vec<_>>());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains(input[ticket][2].as_str()),
        "an input value is shown"
    );
    // Run `c` used another key: its rows are not picked with this one, and it says why.
    let c_path = c["outputs"][0]["path"].as_str().unwrap();
    if let Some(o) = answer["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["path"] == c_path)
    {
        assert!(
            o["surrogates"].is_null() && o["rows_unavailable"].is_string(),
            "{o}"
        );
    }
    // A column without a surrogate rule is refused, with a hint.
    let out = w.privprep(&["surrogate", subject, "--column", "country"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hint"));
}

/// In free text, `surrogate` hits get the same surrogates as the columns: the writer's name and
/// e-mail read the same in the `full_name`, `email` and `body` of the row, and the leak gate
/// passes.
#[test]
fn text_surrogates_match_the_column_surrogates() {
    let w = Work::new();
    w.datagen(2000, 23, &[]);
    let columns = SURROGATE_COLUMNS.replace(
        r#"body = { action = "drop" }"#,
        r#"body = { action = "redact", actions = { email = "surrogate", name = "surrogate", phone = "surrogate" } }"#,
    );
    let (code, s, stderr) = w.run_json(&w.pipeline("t", "", &columns, ""), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        s["leak_gate"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["result"] != "leak"),
        "{}",
        s["leak_gate"]
    );
    let names = ["full_name", "email", "body"];
    let input = input_rows(&w.data(), &names);
    let output = output_rows(Path::new(s["outputs"][0]["path"].as_str().unwrap()), &names);
    let (mut names_checked, mut emails_checked) = (0, 0);
    for (ticket, out) in &output {
        let inp = &input[ticket];
        let Some(body) = &out[2] else { continue };
        for (i, counter) in [(0usize, &mut names_checked), (1usize, &mut emails_checked)] {
            let (original, surrogate) = (&inp[i], out[i].as_deref().unwrap_or(""));
            if original.len() > 3 && inp[2].contains(original.as_str()) {
                assert!(
                    !body.contains(original.as_str()),
                    "{} left in the text",
                    names[i]
                );
                assert!(
                    body.contains(surrogate),
                    "{}: {surrogate:?} not in {body:?}",
                    names[i]
                );
                *counter += 1;
            }
        }
    }
    assert!(
        names_checked > 10 && emails_checked > 10,
        "{names_checked} {emails_checked}"
    );
}
