//! The kernels' row engine (what the Python wheel runs under Spark) against the polars engine
//! (the CLI), on the same generated data with the same plan and keys: the same rows kept, in
//! the same splits, with the same tokens, masks, generalizations and redacted texts, and the
//! same drop counts per reason and quarantined rows.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray};
use arrow::record_batch::RecordBatch;
use arrow::util::display::array_value_to_string;
use common::{Work, SAFE_COLUMNS};
use privprep_kernels::key::Key;
use privprep_kernels::rows::{RowEngine, RowPlan, SPLIT, STATUS};

/// The CSV as a batch of text columns (an empty field is null, as CSV readers give it),
/// `chunk` rows at a time.
fn csv_batches(path: &Path, chunk: usize) -> Vec<RecordBatch> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let names: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    records
        .chunks(chunk)
        .map(|rows| {
            let columns: Vec<(String, ArrayRef)> = names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let values: StringArray = rows
                        .iter()
                        .map(|r| r.get(i).filter(|v| !v.is_empty()))
                        .collect();
                    (n.clone(), Arc::new(values) as ArrayRef)
                })
                .collect();
            RecordBatch::try_from_iter(columns).unwrap()
        })
        .collect()
}

/// Each row of `batch`'s `names` columns as one text, cells joined by a unit separator.
fn rows_of(batch: &RecordBatch, names: &[String], keep: impl Fn(usize) -> bool) -> Vec<String> {
    let columns: Vec<&ArrayRef> = names
        .iter()
        .map(|n| {
            batch
                .column_by_name(n)
                .unwrap_or_else(|| panic!("no column {n}"))
        })
        .collect();
    (0..batch.num_rows())
        .filter(|i| keep(*i))
        .map(|i| {
            columns
                .iter()
                .map(|c| {
                    if c.is_null(i) {
                        "∅".to_string()
                    } else {
                        array_value_to_string(c, i).unwrap()
                    }
                })
                .collect::<Vec<_>>()
                .join("\u{1f}")
        })
        .collect()
}

/// Every row of a Parquet output.
fn parquet_rows(path: &Path, names: &[String]) -> Vec<String> {
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    reader
        .flat_map(|b| rows_of(&b.unwrap(), names, |_| true))
        .collect()
}

fn read_key(path: &Path) -> Key {
    Key::parse(std::fs::read_to_string(path).unwrap().trim()).unwrap()
}

#[test]
fn the_row_engine_keeps_drops_and_transforms_rows_as_the_polars_engine_does() {
    let w = Work::new();
    w.datagen(3000, 11, &[]);
    let csv = w.data().join("tickets.csv");
    // Values that do not read as their type: the rows are quarantined, on both engines.
    let mut reader = csv::Reader::from_path(&csv).unwrap();
    let headers = reader.headers().unwrap().clone();
    let birth = headers.iter().position(|h| h == "birth_date").unwrap();
    let mut records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let mut planted = 0;
    for r in records.iter_mut().step_by(97) {
        let mut fields: Vec<String> = r.iter().map(String::from).collect();
        fields[birth] = fields[birth].replacen('-', "/", 1);
        *r = csv::StringRecord::from(fields);
        planted += 1;
    }
    let mut writer = csv::Writer::from_path(&csv).unwrap();
    writer.write_record(&headers).unwrap();
    for r in &records {
        writer.write_record(r).unwrap();
    }
    writer.flush().unwrap();
    drop(writer);
    // A text detector that drops its row, and the writer's name searched in the text.
    let columns = SAFE_COLUMNS.replace(
        r#"body = { action = "drop" }"#,
        r#"body = { action = "redact", actions = { email = "tokenize", ssn = "drop_row", phone = "mask" } }
created_at = { action = "keep" }
handle_time_minutes = { action = "generalize", width = 5 }"#,
    );
    let pipeline = w.pipeline(
        "parity",
        r#"allowed_status = ["given"]"#,
        &columns,
        "max_bad_rows = 1000\n[output.split]\ntrain = 0.7\nvalidation = 0.2\ntest = 0.1",
    );
    let first = w.run_ok(&pipeline);
    // An erased subject: on the store's erasure list, which the plan carries as keys.
    let by_ticket = common::subjects_by_ticket(&w.data());
    let mut subjects: Vec<&String> = by_ticket.values().collect();
    subjects.sort();
    let erased = subjects[subjects.len() / 2].clone();
    w.privprep_ok(&["subject", "forget", &erased, "--reason", "erasure request"]);
    let summary = w.run_ok(&pipeline);
    assert!(
        summary["dropped"]["erased"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    assert!(summary["quarantined"].as_u64().unwrap() as usize >= planted);
    assert!(
        summary["dropped"]["pii_in_text"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    assert_ne!(first["rows_written"], serde_json::Value::Null);

    let out = w.privprep_ok(&["plan", pipeline.to_str().unwrap(), "--format", "json"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let plan = RowPlan::from_json(&text).unwrap();
    assert!(!plan.policy.erased.is_empty() && !plan.policy.revoked.is_empty());
    // The plan holds no subject id and no key.
    let key_text = std::fs::read_to_string(w.state().join("keys/default.key")).unwrap();
    let key = Key::parse(key_text.trim()).unwrap();
    assert!(!text.contains(erased.as_str()));
    assert!(!text.contains(key_text.trim()));
    let engine = RowEngine::new(
        plan.clone(),
        Some(&key),
        Some(&read_key(&w.state().join("keys/index.key"))),
    )
    .unwrap();

    let names: Vec<String> = plan.outputs.iter().map(|o| o.name.clone()).collect();
    let mut by_split: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut by_status: BTreeMap<i32, u64> = BTreeMap::new();
    for batch in csv_batches(&csv, 700) {
        let got = engine.apply(&batch).unwrap();
        let status = got
            .column_by_name(STATUS)
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::Int32Array>()
            .unwrap()
            .clone();
        let split = got
            .column_by_name(SPLIT)
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::Int32Array>()
            .unwrap()
            .clone();
        for s in status.values() {
            *by_status.entry(*s).or_default() += 1;
        }
        for code in 0..3 {
            by_split
                .entry(code)
                .or_default()
                .extend(rows_of(&got, &names, |i| {
                    status.value(i) == 0 && split.value(i) == code
                }));
        }
    }

    // Drop counts by reason and quarantined rows.
    let reasons: BTreeMap<String, u64> = by_status
        .iter()
        .filter(|(s, _)| **s >= 2)
        .map(|(s, n)| {
            let r = privprep::DropReason::from_code(*s as u8).unwrap();
            (r.as_str().to_string(), *n)
        })
        .collect();
    let want: BTreeMap<String, u64> = summary["dropped"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .filter(|(_, v)| *v > 0)
        .collect();
    assert_eq!(reasons, want);
    assert_eq!(
        by_status.get(&1).copied().unwrap_or(0),
        summary["quarantined"].as_u64().unwrap()
    );
    let kept: usize = by_split.values().map(Vec::len).sum();
    assert_eq!(kept as u64, summary["rows_written"].as_u64().unwrap());
    assert!(
        kept > 500 && by_split.values().all(|rows| !rows.is_empty()),
        "{kept}"
    );
    eprintln!("compared {kept} kept rows; statuses {by_status:?}");
    // Kept rows, split by split, as multisets: every token, mask, bucket and redacted text.
    for output in summary["outputs"].as_array().unwrap() {
        let code = match output["split"].as_str().unwrap() {
            "train" => 0,
            "validation" => 1,
            _ => 2,
        };
        let mut want = parquet_rows(&w.path().join(output["path"].as_str().unwrap()), &names);
        let mut got = by_split.remove(&code).unwrap_or_default();
        want.sort();
        got.sort();
        assert_eq!(got.len(), want.len(), "rows in split {code}");
        for (g, e) in got.iter().zip(&want) {
            assert_eq!(g, e, "split {code}");
        }
    }
    assert!(by_split.values().all(Vec::is_empty));
}

#[test]
fn a_plan_of_another_version_or_key_is_refused() {
    let w = Work::new();
    w.datagen(50, 3, &[]);
    let pipeline = w.pipeline("v", r#"allowed_status = ["given"]"#, SAFE_COLUMNS, "");
    let out = w.privprep_ok(&["plan", pipeline.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    let bumped = text.replacen("\"version\": 1", "\"version\": 99", 1);
    assert_ne!(bumped, text);
    let err = RowPlan::from_json(&bumped).unwrap_err().to_string();
    assert!(err.contains("version 99"), "{err}");
    let plan = RowPlan::from_json(&text).unwrap();
    let other = Key::parse(&"cd".repeat(32)).unwrap();
    let err = RowEngine::new(plan.clone(), Some(&other), None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("the plan was made for"), "{err}");
    let err = RowEngine::new(plan, None, None).err().unwrap().to_string();
    assert!(err.contains("needs the run key"), "{err}");
}
