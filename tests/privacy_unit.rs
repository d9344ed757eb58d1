//! Research tables without subject ids or consent columns: the manifest says each row is its
//! own privacy unit and consent holds for the whole dataset under a stated legal basis; the
//! policy applies what it can and says so.

mod common;

use common::*;
use std::path::{Path, PathBuf};

const MANIFEST: &str = r#"dataset_id = "survey"
owner = "Research Office <research@example.org>"
license = "research-only"
origin = "health survey, wave 3"
collected_at = "2025-06-01"
privacy_unit = "row"
provenance_tag = "survey"
consent = { basis = "GDPR art. 89 research, ethics approval 2024-117", purposes = ["research"] }

[[columns]]
name = "age"
type = "int64"
class = "quasi_identifier"

[[columns]]
name = "zip"
type = "string"
class = "quasi_identifier"

[[columns]]
name = "diagnosis"
type = "string"
class = "sensitive"
"#;

/// 500 rows of a survey, deterministic.
fn survey(dir: &Path) -> PathBuf {
    let data = dir.join("survey");
    std::fs::create_dir_all(&data).unwrap();
    let mut csv = String::from("age,zip,diagnosis\n");
    let mut rng = Lcg(12345);
    for _ in 0..500 {
        let diagnosis = ["flu", "asthma", "diabetes", "none"][rng.below(4) as usize];
        csv.push_str(&format!(
            "{},{:05},{diagnosis}\n",
            18 + rng.below(70),
            10000 + rng.below(40) * 7
        ));
    }
    std::fs::write(data.join("survey.csv"), csv).unwrap();
    std::fs::write(data.join("manifest.toml"), MANIFEST).unwrap();
    data
}

fn pipeline(w: &Work, name: &str, purpose: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"[pipeline]
name = "{name}"

[source]
path = "survey/survey.csv"
manifest = "survey/manifest.toml"

[policy]
purpose = "{purpose}"
allowed_provenance = ["survey"]

[columns]
age = {{ action = "generalize", width = 10 }}
zip = {{ action = "generalize", prefix = 3 }}
diagnosis = {{ action = "keep" }}

[output]
path = "out/{name}.parquet"
{extra}
"#
    );
    let p = w.path().join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_table_without_subjects_or_consent_columns_runs_under_dataset_consent() {
    let w = Work::new();
    survey(w.path());
    let p = pipeline(
        &w,
        "research",
        "research",
        "[output.split]\ntrain = 0.8\ntest = 0.2\n\n[risk]\nk = 3",
    );
    let explain = w.privprep_ok(&["explain", p.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(text.contains("each row is its own privacy unit"), "{text}");
    assert!(text.contains("GDPR art. 89 research"), "{text}");
    let s = w.run_ok(&p);
    assert_eq!(s["rows_read"], 500);
    let dropped = s["dropped"].as_object().unwrap();
    assert!(dropped.keys().all(|k| k == "k_anonymity"), "{dropped:?}");
    let suppressed = dropped
        .get("k_anonymity")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    assert_eq!(s["rows_written"].as_u64().unwrap() + suppressed, 500);
    assert_eq!(s["outputs"].as_array().unwrap().len(), 2);
    let r = w.lineage_record(s["run_id"].as_str().unwrap());
    let policy = &r["policy"];
    assert_eq!(policy["privacy_unit"], "row");
    assert_eq!(policy["consent_purposes"], serde_json::json!(["research"]));
    w.privprep_ok(&["lineage", "verify"]);

    // A purpose the dataset's consent does not cover drops every row, as consent_purpose.
    let s = w.run_ok(&pipeline(&w, "marketing", "marketing", ""));
    assert_eq!(s["dropped"]["consent_purpose"], 500);
    assert_eq!(s["rows_written"], 0);
}

#[test]
fn manifest_and_pipeline_mistakes_about_the_unit_and_consent_are_reported() {
    let w = Work::new();
    let data = survey(w.path());
    // Revocation lists name subjects; this dataset has none.
    let p = pipeline(&w, "r", "research", "");
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "allowed_provenance = [\"survey\"]",
        "allowed_provenance = [\"survey\"]\nrevocations = [\"survey/revoked.csv\"]",
    );
    std::fs::write(&p, text).unwrap();
    std::fs::write(data.join("revoked.csv"), "subject_id\nx\n").unwrap();
    let o = w.privprep(&["validate", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("this dataset has none"));

    // A manifest with both a subject column and a row unit, and without any consent.
    let bad = MANIFEST
        .replace("privacy_unit = \"row\"", "privacy_unit = \"row\"\nsubject_column = \"zip\"")
        .replace(
            "consent = { basis = \"GDPR art. 89 research, ethics approval 2024-117\", purposes = [\"research\"] }\n",
            "",
        );
    std::fs::write(data.join("manifest.toml"), bad).unwrap();
    let p = pipeline(&w, "m", "research", "");
    let o = w.privprep(&["validate", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("both subject_column and privacy_unit"), "{e}");
    assert!(e.contains("gives no consent"), "{e}");
}
