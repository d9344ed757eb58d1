//! End-to-end tests of [`generate`]: what lands on disk, read back independently.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use arrow::array::{
    Array, Date32Array, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use super::pii::check::{digit_count, iban_valid, luhn_valid, ssn_valid};
use super::*;

const HEADER: [&str; 16] = [
    "ticket_id",
    "subject_id",
    "full_name",
    "email",
    "phone",
    "birth_date",
    "zip",
    "country",
    "provenance",
    "consent_purposes",
    "consent_status",
    "created_at",
    "priority",
    "handle_time_minutes",
    "satisfaction",
    "body",
];

fn options(dir: &Path, rows: u64, seed: u64) -> DatagenOptions {
    DatagenOptions {
        rows,
        seed,
        out: dir.to_path_buf(),
        format: DataFormat::Csv,
        bad_rows: 0,
    }
}

/// One CSV field: its text, and whether it was quoted (which tells `""` from nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    text: String,
    quoted: bool,
}

/// A strict RFC 4180 reader, written here so the tests do not trust the writer's own logic.
fn parse_csv(text: &str) -> Vec<Vec<Field>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = Field {
        text: String::new(),
        quoted: false,
    };
    let mut chars = text.chars().peekable();
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if at_field_start => {
                field.quoted = true;
                loop {
                    match chars.next().expect("unterminated quoted field") {
                        '"' if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.text.push('"');
                        }
                        '"' => break,
                        other => field.text.push(other),
                    }
                }
                assert!(
                    matches!(chars.peek(), Some(',') | Some('\n')),
                    "text after closing quote"
                );
                at_field_start = false;
            }
            '"' => panic!("quote inside an unquoted field"),
            ',' => {
                record.push(std::mem::replace(
                    &mut field,
                    Field {
                        text: String::new(),
                        quoted: false,
                    },
                ));
                at_field_start = true;
            }
            '\n' => {
                record.push(std::mem::replace(
                    &mut field,
                    Field {
                        text: String::new(),
                        quoted: false,
                    },
                ));
                records.push(std::mem::take(&mut record));
                at_field_start = true;
            }
            '\r' => panic!("bare CR outside quotes"),
            other => {
                field.text.push(other);
                at_field_start = false;
            }
        }
    }
    assert!(
        record.is_empty() && field.text.is_empty(),
        "no final newline"
    );
    records
}

/// The data records of `tickets.csv` (header checked and dropped).
fn read_tickets(dir: &Path) -> Vec<Vec<Field>> {
    let text = fs::read_to_string(dir.join("tickets.csv")).unwrap();
    let mut records = parse_csv(&text);
    let header: Vec<&str> = records[0].iter().map(|f| f.text.as_str()).collect();
    assert_eq!(header, HEADER);
    records.remove(0);
    records
}

fn read_spans(dir: &Path) -> Vec<Value> {
    fs::read_to_string(dir.join("pii_spans.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn col(name: &str) -> usize {
    HEADER.iter().position(|h| *h == name).unwrap()
}

fn all_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    for format in [DataFormat::Csv, DataFormat::Parquet] {
        let with = |dir: &Path, seed| DatagenOptions {
            format,
            ..options(dir, 3000, seed)
        };
        generate(&with(a.path(), 5)).unwrap();
        generate(&with(b.path(), 5)).unwrap();
        generate(&with(c.path(), 6)).unwrap();
        let table = format!("tickets.{format}");
        let (a_files, b_files, c_files) = (
            all_bytes(a.path()),
            all_bytes(b.path()),
            all_bytes(c.path()),
        );
        assert_eq!(a_files, b_files, "{format}");
        for name in [table.as_str(), "pii_spans.jsonl", "revocations.csv"] {
            assert_ne!(a_files[name], c_files[name], "{name} ignores the seed");
        }
    }
}

#[test]
fn csv_has_header_row_count_and_well_formed_fields() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(&options(dir.path(), 5000, 1)).unwrap();
    assert_eq!(summary.rows, 5000);
    assert_eq!(summary.subjects, 1250);
    let names: Vec<String> = summary
        .files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "tickets.csv",
            "pii_spans.jsonl",
            "revocations.csv",
            "manifest.toml"
        ]
    );
    assert!(!dir.path().join("bad_rows.json").exists());
    let leftovers: Vec<_> = all_bytes(dir.path())
        .into_keys()
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let records = read_tickets(dir.path());
    assert_eq!(records.len(), 5000);
    let mut ticket_ids = BTreeSet::new();
    let mut counts: BTreeMap<(&str, String), usize> = BTreeMap::new();
    for r in &records {
        assert_eq!(r.len(), 16);
        let f = |name: &str| r[col(name)].text.as_str();
        let digits = |s: &str, prefix: char, n: usize| {
            s.len() == n + 1 && s.starts_with(prefix) && s[1..].bytes().all(|b| b.is_ascii_digit())
        };
        assert!(digits(f("ticket_id"), 'T', 9), "{}", f("ticket_id"));
        assert!(
            ticket_ids.insert(f("ticket_id").to_string()),
            "duplicate ticket id"
        );
        assert!(digits(f("subject_id"), 'S', 7));
        assert!(f("zip").len() == 5 && f("zip").bytes().all(|b| b.is_ascii_digit()));
        let birth = chrono::NaiveDate::parse_from_str(f("birth_date"), "%Y-%m-%d").unwrap();
        assert!(
            ("1940-01-01".."2009-01-01").contains(&f("birth_date")),
            "{birth}"
        );
        let created =
            chrono::NaiveDateTime::parse_from_str(f("created_at"), "%Y-%m-%dT%H:%M:%S").unwrap();
        assert!(
            ("2019-01-01T00:00:00".."2026-11-01").contains(&f("created_at")),
            "{created}"
        );
        assert!((1..=4).contains(&f("priority").parse::<i64>().unwrap()));
        let minutes = f("handle_time_minutes");
        assert!(minutes.parse::<f64>().unwrap() > 0.0);
        assert_eq!(
            minutes.split('.').nth(1).map(str::len),
            Some(2),
            "{minutes}"
        );
        if !f("satisfaction").is_empty() {
            assert!((1..=5).contains(&f("satisfaction").parse::<i64>().unwrap()));
        }
        for purpose in f("consent_purposes").split(';').filter(|p| !p.is_empty()) {
            assert!(["training", "analytics", "marketing"].contains(&purpose));
        }
        assert!(!f("body").is_empty());
        let purposes = &r[col("consent_purposes")];
        let purposes_kind = match (purposes.text.is_empty(), purposes.quoted) {
            (false, _) => "listed",
            (true, true) => "empty",
            (true, false) => "missing",
        };
        *counts
            .entry(("purposes", purposes_kind.into()))
            .or_default() += 1;
        for name in ["provenance", "consent_status", "country"] {
            *counts.entry((name, f(name).to_string())).or_default() += 1;
        }
        *counts
            .entry(("satisfaction", f("satisfaction").is_empty().to_string()))
            .or_default() += 1;
        *counts
            .entry(("newline", f("body").contains('\n').to_string()))
            .or_default() += 1;
    }
    let share = |key: &str, value: &str| {
        counts.get(&(key, value.to_string())).copied().unwrap_or(0) as f64 / 5000.0
    };
    let near = |key: &str, value: &str, want: f64| {
        let got = share(key, value);
        assert!(
            (got - want).abs() < want * 0.3 + 0.005,
            "{key}={value}: {got} vs {want}"
        );
    };
    near("provenance", "app", 0.45);
    near("provenance", "web", 0.35);
    near("provenance", "partner_api", 0.12);
    near("provenance", "scraped", 0.08);
    near("consent_status", "given", 0.80);
    near("consent_status", "withdrawn", 0.12);
    near("consent_status", "expired", 0.07);
    near("consent_status", "", 0.01);
    near("purposes", "empty", 0.08);
    near("purposes", "missing", 0.02);
    near("satisfaction", "true", 0.10);
    near("newline", "true", 0.01);
    assert!(share("country", "US") > share("country", "GB"));
    assert!(share("country", "GB") > share("country", "FR"));
}

#[test]
fn pii_spans_hold_what_their_type_says() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(&options(dir.path(), 4000, 2)).unwrap();
    let records = read_tickets(dir.path());
    let spans = read_spans(dir.path());
    assert_eq!(spans.len() as u64, summary.pii_spans);

    let mut kinds = BTreeMap::new();
    let mut rows_with_pii = BTreeSet::new();
    let mut last = (0, 0);
    for span in &spans {
        let row = span["row"].as_u64().unwrap();
        let (start, end) = (
            span["start"].as_u64().unwrap(),
            span["end"].as_u64().unwrap(),
        );
        assert!((row, start) >= last, "spans out of order");
        last = (row, end);
        assert_eq!(span["column"], "body");
        let r = &records[row as usize];
        let body = &r[col("body")].text;
        let text = body
            .get(start as usize..end as usize)
            .unwrap_or_else(|| panic!("span {span} outside the body or a character"));
        let kind = span["type"].as_str().unwrap();
        let ok = match kind {
            "email" => text.matches('@').count() == 1 && !text.contains(' '),
            "phone" => (8..=13).contains(&digit_count(text)),
            "ssn" => ssn_valid(text),
            "card" => luhn_valid(text) && (13..=19).contains(&digit_count(text)),
            "iban" => iban_valid(text),
            "ipv4" => {
                let octets: Vec<_> = text.split('.').map(|o| o.parse::<u8>()).collect();
                octets.len() == 4 && octets.iter().all(Result::is_ok)
            }
            "name" => {
                let full = &r[col("full_name")].text;
                let (first, last) = full.split_once(' ').unwrap();
                [full.as_str(), first, last]
                    .iter()
                    .any(|n| n.to_lowercase() == text.to_lowercase())
            }
            other => panic!("unknown type {other}"),
        };
        assert!(ok, "row {row}: {kind} span {text:?}");
        *kinds.entry(kind.to_string()).or_insert(0) += 1;
        rows_with_pii.insert(row);
    }
    for kind in ["email", "phone", "ssn", "card", "ipv4", "iban", "name"] {
        assert!(
            kinds.get(kind).copied().unwrap_or(0) > 20,
            "few {kind}: {kinds:?}"
        );
    }
    let share = rows_with_pii.len() as f64 / 4000.0;
    assert!((0.35..0.45).contains(&share), "{share} of rows have PII");
    // The row's own contact details show up in bodies, as they do in real tickets.
    let own_email = spans.iter().any(|s| {
        let r = &records[s["row"].as_u64().unwrap() as usize];
        let body = &r[col("body")].text;
        let text =
            &body[s["start"].as_u64().unwrap() as usize..s["end"].as_u64().unwrap() as usize];
        text == r[col("email")].text
    });
    assert!(own_email);
}

#[test]
fn subjects_keep_their_attributes_and_revocations_name_real_subjects() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(&options(dir.path(), 8000, 3)).unwrap();
    let records = read_tickets(dir.path());
    let fixed = [
        "full_name",
        "email",
        "phone",
        "birth_date",
        "zip",
        "country",
    ];
    let mut subjects: BTreeMap<String, (Vec<String>, usize)> = BTreeMap::new();
    for r in &records {
        let attrs: Vec<String> = fixed.iter().map(|c| r[col(c)].text.clone()).collect();
        let entry = subjects
            .entry(r[col("subject_id")].text.clone())
            .or_insert_with(|| (attrs.clone(), 0));
        assert_eq!(
            entry.0,
            attrs,
            "subject {} changed",
            r[col("subject_id")].text
        );
        entry.1 += 1;
    }
    assert_eq!(subjects.len() as u64, summary.subjects);
    assert_eq!(subjects.len(), 2000);
    let most = subjects.values().map(|(_, n)| *n).max().unwrap();
    assert!(most >= 20, "rows per subject are not skewed: max {most}");

    let revocations = fs::read_to_string(dir.path().join("revocations.csv")).unwrap();
    let mut lines = revocations.lines();
    assert_eq!(lines.next(), Some("subject_id"));
    let revoked: Vec<&str> = lines.collect();
    assert_eq!(revoked.len() as u64, summary.revoked_subjects);
    assert_eq!(revoked.len(), 60);
    assert!(revoked.windows(2).all(|w| w[0] < w[1]), "not sorted");
    for id in revoked {
        assert!(subjects.contains_key(id), "revoked {id} has no rows");
    }
}

#[test]
fn parquet_reads_back_with_types_nulls_and_the_csv_values() {
    let (csv_dir, pq_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let rows = 70_000; // more than one record batch
    generate(&options(csv_dir.path(), rows, 4)).unwrap();
    let summary = generate(&DatagenOptions {
        format: DataFormat::Parquet,
        ..options(pq_dir.path(), rows, 4)
    })
    .unwrap();
    assert_eq!(summary.files[0], pq_dir.path().join("tickets.parquet"));
    assert_eq!(
        fs::read(csv_dir.path().join("pii_spans.jsonl")).unwrap(),
        fs::read(pq_dir.path().join("pii_spans.jsonl")).unwrap(),
        "spans depend on the format"
    );

    let file = fs::File::open(pq_dir.path().join("tickets.parquet")).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let schema = builder.schema().clone();
    let reader = builder.build().unwrap();
    let types: Vec<(&str, DataType)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type().clone()))
        .collect();
    let want = |name: &str| match name {
        "birth_date" => DataType::Date32,
        "created_at" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "priority" | "satisfaction" => DataType::Int64,
        "handle_time_minutes" => DataType::Float64,
        _ => DataType::Utf8,
    };
    assert_eq!(
        types,
        HEADER.iter().map(|n| (*n, want(n))).collect::<Vec<_>>()
    );

    let records = read_tickets(csv_dir.path());
    let mut row = 0;
    for batch in reader {
        let batch = batch.unwrap();
        let strings = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        let ints = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .clone()
        };
        let (ticket_id, purposes, status, body) = (
            strings("ticket_id"),
            strings("consent_purposes"),
            strings("consent_status"),
            strings("body"),
        );
        let (priority, satisfaction) = (ints("priority"), ints("satisfaction"));
        let birth = batch
            .column(5)
            .as_any()
            .downcast_ref::<Date32Array>()
            .unwrap();
        let created = batch
            .column(11)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        let minutes = batch
            .column(13)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        for i in 0..batch.num_rows() {
            let r = &records[row];
            let f = |name: &str| r[col(name)].text.as_str();
            assert_eq!(ticket_id.value(i), f("ticket_id"));
            assert_eq!(body.value(i), f("body"));
            let p = &r[col("consent_purposes")];
            assert_eq!(
                purposes.is_null(i),
                p.text.is_empty() && !p.quoted,
                "row {row}"
            );
            assert_eq!(status.is_null(i), f("consent_status").is_empty());
            assert_eq!(satisfaction.is_null(i), f("satisfaction").is_empty());
            assert_eq!(priority.value(i).to_string(), f("priority"));
            assert_eq!(birth.value_as_date(i).unwrap().to_string(), f("birth_date"));
            let created_text = created
                .value_as_datetime(i)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S");
            assert_eq!(created_text.to_string(), f("created_at"));
            assert_eq!(format!("{:.2}", minutes.value(i)), f("handle_time_minutes"));
            row += 1;
        }
    }
    assert_eq!(row as u64, rows);
}

#[test]
fn bad_rows_are_malformed_as_reported_and_leave_the_rest_alone() {
    let (clean, bad) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    generate(&options(clean.path(), 2000, 5)).unwrap();
    let summary = generate(&DatagenOptions {
        bad_rows: 11,
        ..options(bad.path(), 2000, 5)
    })
    .unwrap();
    assert_eq!(
        summary.files.last().unwrap(),
        &bad.path().join("bad_rows.json")
    );

    let report: Value =
        serde_json::from_slice(&fs::read(bad.path().join("bad_rows.json")).unwrap()).unwrap();
    let extra: Vec<u64> = report["extra_field"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let bad_type: Vec<u64> = report["bad_type"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            assert_eq!(v["column"], "priority");
            v["row"].as_u64().unwrap()
        })
        .collect();
    assert_eq!((extra.len(), bad_type.len()), (6, 5));
    assert!(extra.windows(2).all(|w| w[0] < w[1]) && bad_type.windows(2).all(|w| w[0] < w[1]));
    assert!(!extra.contains(&0) && !bad_type.contains(&0));

    let clean_records = read_tickets(clean.path());
    let text = fs::read_to_string(bad.path().join("tickets.csv")).unwrap();
    let bad_records = parse_csv(&text)[1..].to_vec();
    assert_eq!(bad_records.len(), 2000);
    for (i, (r, c)) in bad_records.iter().zip(&clean_records).enumerate() {
        let i = i as u64;
        if extra.contains(&i) {
            assert_eq!(r.len(), 17);
            assert_eq!(r[16].text, "oops");
        } else if bad_type.contains(&i) {
            assert_eq!(r.len(), 16);
            assert_eq!(r[col("priority")].text, "high");
        } else {
            assert_eq!(r, c, "record {i} changed");
        }
    }
    let spans = read_spans(bad.path());
    assert!(spans.iter().all(|s| {
        let row = s["row"].as_u64().unwrap();
        !extra.contains(&row) && !bad_type.contains(&row)
    }));

    // A later run without bad rows removes the stale report.
    generate(&options(bad.path(), 2000, 5)).unwrap();
    assert!(!bad.path().join("bad_rows.json").exists());
    assert_eq!(all_bytes(bad.path()), all_bytes(clean.path()));
}

#[test]
fn impossible_options_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never");
    let refuse = |opts: DatagenOptions| {
        let err = generate(&opts).unwrap_err();
        assert!(!out.exists(), "wrote despite {err}");
        err.to_string()
    };
    let parquet = DatagenOptions {
        format: DataFormat::Parquet,
        bad_rows: 1,
        ..options(&out, 100, 1)
    };
    assert!(refuse(parquet).contains("--format csv"));
    let too_many = DatagenOptions {
        bad_rows: 100,
        ..options(&out, 100, 1)
    };
    assert!(refuse(too_many).contains("99"));
    assert!(refuse(options(&out, MAX_ROWS + 1, 1)).contains("seven digits"));
}

#[test]
fn zero_rows_give_empty_but_valid_files() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(&options(dir.path(), 0, 1)).unwrap();
    assert_eq!((summary.subjects, summary.pii_spans), (0, 0));
    assert!(read_tickets(dir.path()).is_empty());
    assert_eq!(
        fs::read_to_string(dir.path().join("revocations.csv")).unwrap(),
        "subject_id\n"
    );
}

#[test]
fn formats_parse_and_print() {
    assert_eq!("csv".parse::<DataFormat>(), Ok(DataFormat::Csv));
    assert_eq!("parquet".parse::<DataFormat>(), Ok(DataFormat::Parquet));
    assert!("json".parse::<DataFormat>().is_err());
    assert_eq!(DataFormat::Parquet.to_string(), "parquet");
}

#[test]
fn summary_serializes_counts_and_paths() {
    let summary = DatagenSummary {
        rows: 4,
        subjects: 1,
        revoked_subjects: 1,
        files: vec!["out/tickets.csv".into()],
        pii_spans: 2,
    };
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["files"][0], "out/tickets.csv");
    assert_eq!(json["revoked_subjects"], 1);
}
