//! Detection quality against labelled data: `privprep datagen` plants PII in 20,000 ticket texts
//! and records every span; the scanner, given each row's identifier columns as context (as the
//! pipeline does), must find them. Per type: recall ≥ 0.99 (phones ≥ 0.95), precision ≥ 0.95.
//! The table is printed; see it with `cargo test --test pii_eval -- --nocapture`.

use privprep::pii::detect::{Kind, RowContext, Scanner, ScannerConfig, Span};
use std::collections::BTreeMap;

/// Labelled types and the detector kind each one is scored against.
const TYPES: [(&str, Kind); 7] = [
    ("email", Kind::Email),
    ("phone", Kind::Phone),
    ("ssn", Kind::Ssn),
    ("card", Kind::Card),
    ("ipv4", Kind::Ipv4),
    ("iban", Kind::Iban),
    ("name", Kind::Name),
];

/// Counts for one labelled type.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    truth: usize,
    found: usize,
    detections: usize,
    true_pos: usize,
}

impl Stats {
    fn recall(&self) -> f64 {
        ratio(self.found, self.truth)
    }
    fn precision(&self) -> f64 {
        ratio(self.true_pos, self.detections)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// Scoring result: per labelled type, plus counts of unlabelled kinds.
#[derive(Debug, Default)]
struct Table {
    types: Vec<(&'static str, Stats)>,
    other: BTreeMap<&'static str, usize>,
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<6} {:>6} {:>6} {:>7} {:>10} {:>9}",
            "type", "truth", "found", "recall", "detections", "precision"
        )?;
        for (t, s) in &self.types {
            writeln!(
                f,
                "{:<6} {:>6} {:>6} {:>7.4} {:>10} {:>9.4}",
                t,
                s.truth,
                s.found,
                s.recall(),
                s.detections,
                s.precision()
            )?;
        }
        write!(f, "other detections:")?;
        for (k, n) in &self.other {
            write!(f, " {k}={n}")?;
        }
        Ok(())
    }
}

/// Scores `scanner` on `rows` (body text, row context values) against
/// `truth` spans `(row, start, end, type)`. A truth span is found iff
/// detections of its kind cover every byte of it; a detection of a labelled
/// kind is a true positive iff it overlaps a truth span of that type.
fn score(
    rows: &[(String, Vec<String>)],
    truth: &[(usize, usize, usize, String)],
    scanner: &Scanner,
) -> Table {
    let kind_of = |t: &str| TYPES.iter().find(|(n, _)| *n == t).map(|&(_, k)| k);
    let mut by_row: Vec<Vec<(usize, usize, Kind)>> = vec![Vec::new(); rows.len()];
    for (r, s, e, t) in truth {
        if let (Some(k), Some(v)) = (kind_of(t), by_row.get_mut(*r)) {
            v.push((*s, *e, k));
        }
    }
    let mut stats: BTreeMap<Kind, Stats> = BTreeMap::new();
    let mut table = Table::default();
    let mut ctx = RowContext::new();
    let mut spans: Vec<Span> = Vec::new();
    for ((body, values), row_truth) in rows.iter().zip(&by_row) {
        ctx.clear();
        for v in values {
            ctx.add(v);
        }
        scanner.scan(body, &ctx, &mut spans);
        for &(s, e, k) in row_truth {
            let st = stats.entry(k).or_default();
            st.truth += 1;
            if covered(&spans, s, e, k) {
                st.found += 1;
            }
        }
        for sp in &spans {
            if TYPES.iter().any(|&(_, k)| k == sp.kind) {
                let st = stats.entry(sp.kind).or_default();
                st.detections += 1;
                if row_truth
                    .iter()
                    .any(|&(s, e, k)| k == sp.kind && sp.start < e && s < sp.end)
                {
                    st.true_pos += 1;
                }
            } else {
                *table.other.entry(sp.kind.as_str()).or_default() += 1;
            }
        }
    }
    for (name, k) in TYPES {
        table
            .types
            .push((name, stats.get(&k).copied().unwrap_or_default()));
    }
    table
}

/// Whether spans of kind `k` cover every byte of `start..end`.
fn covered(spans: &[Span], start: usize, end: usize, k: Kind) -> bool {
    let mut pos = start;
    for sp in spans.iter().filter(|sp| sp.kind == k) {
        if sp.start <= pos && sp.end > pos {
            pos = sp.end;
        }
        if pos >= end {
            return true;
        }
    }
    pos >= end
}

type Rows = Vec<(String, Vec<String>)>;
type Truth = Vec<(usize, usize, usize, String)>;

fn load(dir: &std::path::Path) -> (Rows, Truth) {
    let mut rdr = csv::Reader::from_path(dir.join("tickets.csv")).expect("open tickets.csv");
    let headers = rdr.headers().expect("csv header").clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("column {name} missing"))
    };
    let (body, ctx_cols) = (
        col("body"),
        [
            col("full_name"),
            col("email"),
            col("phone"),
            col("subject_id"),
        ],
    );
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.expect("csv record");
        let values = ctx_cols.iter().map(|&c| rec[c].to_string()).collect();
        rows.push((rec[body].to_string(), values));
    }
    let text = std::fs::read_to_string(dir.join("pii_spans.jsonl")).expect("read pii_spans.jsonl");
    let mut truth = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("jsonl line");
        if v["column"] != "body" {
            continue;
        }
        let n = |k: &str| v[k].as_u64().expect("numeric field") as usize;
        let t = v["type"].as_str().expect("type").to_string();
        truth.push((n("row"), n("start"), n("end"), t));
    }
    (rows, truth)
}

#[test]
fn detection_meets_recall_and_precision_targets_on_20000_labelled_texts() {
    let dir = tempfile::tempdir().expect("tempdir");
    privprep::datagen::generate(&privprep::datagen::DatagenOptions {
        rows: 20_000,
        seed: 7,
        out: dir.path().to_path_buf(),
        format: privprep::datagen::DataFormat::Csv,
        bad_rows: 0,
    })
    .expect("datagen");
    let (rows, truth) = load(dir.path());
    assert!(rows.len() >= 20_000);
    let scanner = Scanner::new(&ScannerConfig::default()).expect("default scanner");
    let table = score(&rows, &truth, &scanner);
    println!(
        "{} texts, {} planted spans\n{table}",
        rows.len(),
        truth.len()
    );
    for (t, s) in &table.types {
        let min_recall = if *t == "phone" { 0.95 } else { 0.99 };
        assert!(s.truth > 100, "{t}: too few labelled spans\n{table}");
        assert!(
            s.recall() >= min_recall,
            "{t}: recall {:.4}\n{table}",
            s.recall()
        );
        assert!(
            s.precision() >= 0.95,
            "{t}: precision {:.4}\n{table}",
            s.precision()
        );
    }
}
