//! Subject rights through the binary: `privprep subject find` and the subject index it reads.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::Path;

/// Runs `subject find --ids FILE --format FORMAT` on `ids` (written to a file, one per line).
fn find_ids(w: &Work, ids: &[String], format: &str) -> std::process::Output {
    let file = w.path().join("ids.txt");
    std::fs::write(&file, ids.join("\n")).unwrap();
    w.privprep_ok(&[
        "subject",
        "find",
        "--ids",
        file.to_str().unwrap(),
        "--format",
        format,
    ])
}

/// Two pipelines over one dataset write different outputs (one splits, one revokes extra
/// subjects); `subject find` lists, for each asked subject, exactly the outputs holding it.
#[test]
fn subject_find_lists_exactly_the_outputs_that_hold_each_subject() {
    let w = Work::new();
    w.datagen(900, 23, &[]);
    let by_ticket = subjects_by_ticket(&w.data());
    let all: BTreeSet<String> = by_ticket.values().cloned().collect();
    let some: Vec<String> = all.iter().step_by(7).cloned().collect();

    let split = w.pipeline(
        "split",
        "",
        SAFE_COLUMNS,
        "[output.split]\ntrain = 0.8\nvalidation = 0.1\ntest = 0.1",
    );
    // The second pipeline also revokes every fourteenth subject.
    let mut revoked = std::fs::read_to_string(w.data().join("revocations.csv")).unwrap();
    for s in all.iter().step_by(14) {
        revoked.push_str(&format!("{s}\n"));
    }
    std::fs::write(w.data().join("revocations_b.csv"), revoked).unwrap();
    let narrow = w.pipeline("narrow", "", SAFE_COLUMNS, "");
    let text = std::fs::read_to_string(&narrow)
        .unwrap()
        .replace("data/revocations.csv", "data/revocations_b.csv");
    std::fs::write(&narrow, text).unwrap();

    let mut outputs = Vec::new();
    for p in [&split, &narrow] {
        let summary = w.run_ok(p);
        outputs.extend(outputs_of(&summary, &by_ticket));
    }
    assert_eq!(outputs.len(), 4);

    let mut asked = some.clone();
    asked.push("nobody-at-all".into());
    let out = find_ids(&w, &asked, "json");
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    for id in &asked {
        assert!(!printed.contains(id.as_str()), "the id was printed");
    }
    let findings: Vec<serde_json::Value> = serde_json::from_str(&printed).unwrap();
    assert_eq!(findings.len(), asked.len());
    let (mut held_somewhere, mut held_nowhere) = (0, 0);
    for (f, id) in findings.iter().zip(&asked) {
        let found: BTreeSet<String> = f["holdings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                assert_eq!(h["exists"], true);
                assert_eq!(h["unchanged"], true);
                assert_eq!(h["datasets"], serde_json::json!(["support_tickets"]));
                h["path"].as_str().unwrap().to_string()
            })
            .collect();
        let expected: BTreeSet<String> = outputs
            .iter()
            .filter(|(_, held)| held.contains(id))
            .map(|(p, _)| p.clone())
            .collect();
        assert_eq!(found, expected, "subject {}", f["subject"]);
        if expected.is_empty() {
            held_nowhere += 1;
        } else {
            held_somewhere += 1;
        }
    }
    // Both cases occur: subjects some outputs hold, and subjects (revoked, dropped, absent)
    // none does.
    assert!(
        held_somewhere > 10 && held_nowhere > 2,
        "{held_somewhere} {held_nowhere}"
    );

    // One id from standard input, as a request keeps it out of the shell history.
    let out = w.privprep_stdin(
        &["subject", "find", "-", "--format", "json"],
        &format!("{}\n", some[0]),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from_stdin: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(from_stdin[0]["holdings"], findings[0]["holdings"]);
    assert_eq!(from_stdin[0]["key"], findings[0]["key"]);
}

/// The run record holds each set's SHA-256: an edited or missing set fails `lineage verify`.
#[test]
fn an_edited_or_missing_subject_set_fails_verify() {
    let w = Work::new();
    w.datagen(300, 8, &[]);
    let p = w.pipeline("p", "", SAFE_COLUMNS, "");
    w.run_ok(&p);
    w.privprep_ok(&["lineage", "verify"]);
    let dir = w.state().join("lineage.index");
    let set = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "keys"))
        .unwrap();
    let original = std::fs::read(&set).unwrap();
    assert!(original.len() >= 16 && original.len() % 8 == 0);

    // Drop one subject from the set (as someone hiding that a file held them would).
    std::fs::write(&set, &original[8..]).unwrap();
    let out = w.privprep(&["lineage", "verify"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("subject set") && err.contains("differs"),
        "{err}"
    );

    std::fs::remove_file(&set).unwrap();
    let out = w.privprep(&["lineage", "verify"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("missing"), "{err}");

    std::fs::write(&set, &original).unwrap();
    w.privprep_ok(&["lineage", "verify"]);
}

/// The access request: the subject's rows from every output that holds them, picked by token,
/// by hash or by id; an output that dropped the subject column says so instead.
#[test]
fn subject_export_hands_over_the_subjects_rows_from_every_output() {
    let w = Work::new();
    w.datagen(900, 31, &[]);
    let by_ticket = subjects_by_ticket(&w.data());
    let tokenized = w.pipeline(
        "tokenized",
        "",
        SAFE_COLUMNS,
        "[output.split]\ntrain = 0.7\nvalidation = 0.15\ntest = 0.15",
    );
    let hashed = w.pipeline(
        "hashed",
        "",
        &SAFE_COLUMNS.replace(
            "subject_id = { action = \"tokenize\" }",
            "subject_id = { action = \"hash\", allow_unkeyed = true }",
        ),
        "",
    );
    let dropped = w.pipeline(
        "dropped",
        "",
        &SAFE_COLUMNS.replace(
            "subject_id = { action = \"tokenize\" }",
            "subject_id = { action = \"drop\" }",
        ),
        "",
    );
    let mut files = Vec::new();
    for p in [&tokenized, &hashed, &dropped] {
        let summary = w.run_ok(p);
        for o in summary["outputs"].as_array().unwrap() {
            files.push(o["path"].as_str().unwrap().to_string());
        }
    }
    // A subject with several kept tickets.
    let hashed_file = files.iter().find(|f| f.contains("hashed")).unwrap().clone();
    let subject = tickets_by_subject(Path::new(&hashed_file), &by_ticket)
        .into_iter()
        .max_by_key(|(_, t)| t.len())
        .map(|(s, _)| s)
        .unwrap();

    let bundle = w.export_bundle(&subject, &[]);
    let outputs = bundle["outputs"].as_array().unwrap();
    let mut checked = 0;
    for f in &files {
        let want = tickets_by_subject(Path::new(f), &by_ticket)
            .remove(&subject)
            .unwrap_or_default();
        let entry = outputs.iter().find(|o| o["path"] == f.as_str());
        if want.is_empty() && !f.contains("dropped") {
            assert!(entry.is_none(), "{f} holds no row of the subject");
            continue;
        }
        let entry = entry.unwrap_or_else(|| panic!("{f} missing from the bundle"));
        if f.contains("dropped") {
            assert!(entry["rows"].is_null());
            let why = entry["rows_unavailable"].as_str().unwrap();
            assert!(why.contains("dropped the subject column"), "{why}");
            continue;
        }
        let got: BTreeSet<String> = entry["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["ticket_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, want, "{f}");
        checked += 1;
    }
    assert!(checked >= 2, "{checked}");

    // With another key, tokenized outputs cannot be searched, and the bundle says why.
    let other = key_file(w.path(), "other.key", 7);
    let bundle = w.export_bundle(&subject, &["--key-file", other.to_str().unwrap()]);
    let tokenized_entries: Vec<&serde_json::Value> = bundle["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["pipeline"] == "tokenized")
        .collect();
    assert!(!tokenized_entries.is_empty());
    for e in tokenized_entries {
        assert!(
            e["rows_unavailable"]
                .as_str()
                .unwrap()
                .contains("tokens of key"),
            "{e}"
        );
    }
}

/// A later run over the same paths replaces the files: `subject find` says so, so "does any
/// output still hold this person?" has an answer after a revocation and a re-run.
#[test]
fn a_rerun_after_a_revocation_shows_the_old_holding_as_replaced() {
    let w = Work::new();
    w.datagen(400, 19, &[]);
    let by_ticket = subjects_by_ticket(&w.data());
    let p = w.pipeline("again", "", SAFE_COLUMNS, "");
    let first = w.run_ok(&p);
    let out = first["outputs"][0]["path"].as_str().unwrap().to_string();
    let held: Vec<String> = subjects_in(Path::new(&out), &by_ticket)
        .into_iter()
        .collect();
    let (gone, stays) = (held[0].clone(), held[1].clone());
    let mut revoked = std::fs::read_to_string(w.data().join("revocations.csv")).unwrap();
    revoked.push_str(&format!("{gone}\n"));
    std::fs::write(w.data().join("revocations.csv"), revoked).unwrap();
    let second = w.run_ok(&p);
    let second_id = second["run_id"].as_str().unwrap();

    let asked = [gone, stays];
    let out = find_ids(&w, &asked, "json");
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    // The revoked subject: only the first run's file held them, and it was replaced.
    let h = findings[0]["holdings"].as_array().unwrap();
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["replaced_by"], second_id);
    assert_eq!(h[0]["unchanged"], false);
    // The other subject: in both runs' files; the newer one is what is there now.
    let h = findings[1]["holdings"].as_array().unwrap();
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(h[0]["replaced_by"], second_id);
    assert!(h[1].get("replaced_by").is_none());
    assert_eq!(h[1]["unchanged"], true);
    let text = find_ids(&w, &asked, "text");
    assert!(String::from_utf8_lossy(&text.stdout).contains(&format!("replaced by run {second_id}")));
}

/// A bundle or an export written onto the store, its anchor or into the state folder would
/// destroy what privprep keeps: refused, and the store still verifies.
#[test]
fn reports_are_never_written_over_the_store_or_into_the_state_folder() {
    let w = Work::new();
    w.datagen(200, 2, &[]);
    let p = w.pipeline("p", "", SAFE_COLUMNS, "");
    w.run_ok(&p);
    let state = w.state();
    for target in [
        state.join("lineage.db"),
        state.join("lineage.anchor"),
        state.join("keys").join("index.key"),
        state.join("bundle.json"),
        state.join("lineage.index").join("x.json"),
    ] {
        let t = target.to_str().unwrap();
        for args in [
            vec!["subject", "export", "S0000001", "--out", t],
            vec!["lineage", "export", "--openlineage", "--all", "--out", t],
        ] {
            let out = w.privprep(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            assert!(err.contains("refusing to write"), "{args:?}: {err}");
        }
    }
    w.privprep_ok(&["lineage", "verify"]);
    // Elsewhere is fine.
    let fine = w.path().join("events.jsonl");
    w.privprep_ok(&[
        "lineage",
        "export",
        "--openlineage",
        "--all",
        "--out",
        fine.to_str().unwrap(),
    ]);
}
