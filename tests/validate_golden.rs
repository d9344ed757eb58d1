//! `privprep validate` on broken pipeline files: every problem at once, with file:line:column
//! and a hint, compared against golden files. Set UPDATE_GOLDEN=1 to rewrite them after a
//! deliberate change, then review the diff.

use std::path::PathBuf;
use std::process::Command;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/validate")
}

fn validate(name: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_privprep"))
        .current_dir(fixtures())
        .env("NO_COLOR", "1")
        .args(["validate", name])
        .output()
        .expect("run privprep");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn check_golden(name: &str) -> String {
    let (code, _, stderr) = validate(name);
    assert_eq!(code, 2, "validate must exit 2 on a config error: {stderr}");
    let golden = fixtures().join(name.replace(".toml", ".stderr"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &stderr).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_else(|_| {
        panic!(
            "missing golden file {}; run with UPDATE_GOLDEN=1",
            golden.display()
        )
    });
    assert_eq!(stderr, want, "output of `privprep validate {name}` changed");
    stderr
}

#[test]
fn valid_pipeline_passes() {
    let (code, stdout, stderr) = validate("ok.toml");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ok"), "{stdout}");
}

#[test]
fn explain_says_what_happens_to_every_column() {
    let out = Command::new(env!("CARGO_BIN_EXE_privprep"))
        .current_dir(fixtures())
        .env("NO_COLOR", "1")
        .args(["explain", "ok.toml"])
        .output()
        .expect("run privprep");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let golden = fixtures().join("ok.explain");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &text).unwrap();
    }
    assert_eq!(
        text,
        std::fs::read_to_string(&golden).expect("golden explain file; run with UPDATE_GOLDEN=1")
    );
    for column in [
        "subject_id",
        "full_name",
        "email",
        "birth_date",
        "zip",
        "priority",
    ] {
        assert!(
            text.contains(&format!("  {column} ")),
            "explain must mention `{column}`:\n{text}"
        );
    }
    assert!(text.contains("✗ dropped (identifier, string)"), "{text}");
}

#[test]
fn typo_in_a_rule_names_line_and_column() {
    let out = check_golden("typo_in_rule.toml");
    assert!(out.contains("typo_in_rule.toml:13:"), "{out}");
    assert!(out.contains("acton"), "{out}");
}

#[test]
fn unknown_action_lists_the_valid_ones() {
    let out = check_golden("unknown_action.toml");
    assert!(out.contains("unknown_action.toml:12:"), "{out}");
    assert!(out.contains("tokenize"), "{out}");
}

#[test]
fn privacy_by_default_reports_every_unhandled_column_at_once() {
    let out = check_golden("privacy_by_default.toml");
    assert!(out.contains("`emial` is not in the manifest"), "{out}");
    assert!(out.contains("did you mean `email`?"), "{out}");
    assert!(
        out.contains("`email` is classed identifier but the pipeline gives it no action"),
        "{out}"
    );
    assert!(out.contains("`zip` is classed quasi_identifier"), "{out}");
    assert!(
        out.contains("unkeyed hash needs an explicit opt-in"),
        "{out}"
    );
    assert!(out.contains("manifest.toml:"), "{out}");
}

#[test]
fn bad_values_are_all_reported() {
    let out = check_golden("bad_values.toml");
    for needle in [
        "allowed_provenance is empty",
        "as_of is not a date",
        "token length 100 bits",
        "exactly one of",
        "must end in .parquet",
        "sum to 1",
    ] {
        assert!(out.contains(needle), "missing `{needle}` in:\n{out}");
    }
}

#[test]
fn missing_inputs_name_the_path() {
    let out = check_golden("missing_inputs.toml");
    assert!(out.contains("no_such_dir/*.csv"), "{out}");
}

#[test]
fn schema_drift_names_the_columns() {
    let out = check_golden("schema_drift.toml");
    assert!(
        out.contains("column `note` is in the data but not in the manifest"),
        "{out}"
    );
    assert!(
        out.contains("column `priority` is in the manifest but not in"),
        "{out}"
    );
}

#[test]
fn free_text_kept_as_is_needs_a_redaction_rule() {
    let out = check_golden("text/free_text_kept.toml");
    assert!(out.contains("text/free_text_kept.toml:15:"), "{out}");
    assert!(
        out.contains("classed free_text, which needs a redaction rule"),
        "{out}"
    );
    assert!(out.contains("action = \"redact\""), "{out}");
}

#[test]
fn text_rule_mistakes_are_all_reported() {
    let out = check_golden("text/text_rules.toml");
    for needle in [
        "phone region `XX` is not supported",
        "not a valid regular expression",
        "label for unknown detector `phon`",
        "unknown detector `emial`",
        "did you mean `email`?",
        "`actions` names detector `ssn`, which does not run on this column",
        "context column `full_nme` is not in the manifest",
        "`context` is set but the `name` detector",
        "`keep_last` is set but no detector's action is `mask`",
        "column `subject_id` sets its own token bits or encoding",
        "detector `id` is defined twice or shadows a built-in",
    ] {
        assert!(out.contains(needle), "missing `{needle}` in:\n{out}");
    }
}

#[test]
fn a_valid_text_rule_passes_and_explain_lists_its_detectors() {
    let (code, _, stderr) = validate("text/ok_text.toml");
    assert_eq!(code, 0, "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_privprep"))
        .current_dir(fixtures())
        .env("NO_COLOR", "1")
        .args(["explain", "text/ok_text.toml"])
        .output()
        .expect("run privprep");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    for needle in [
        "tokenize: email",
        "drop_row: ssn",
        "mask (keep last 4): card",
        "detector `ticket_ref`: pattern TCK-\\d{6}, replaced by [TICKET]",
        "numbering plans of: US, GB",
        "leak gate:",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}

#[test]
fn release_mistakes_are_all_reported() {
    let out = check_golden("release_rules.toml");
    for needle in [
        "release `by_name`: group_by column `full_name` is classed identifier",
        "release `by_name`: private keys are released above a noisy threshold, which needs δ > 0",
        "release `unbounded`: public keys need a key list",
        "release `unbounded`: sum and mean need bounds",
    ] {
        assert!(out.contains(needle), "missing `{needle}` in:\n{out}");
    }
}
