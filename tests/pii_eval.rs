//! Detection quality against labelled data: `privprep datagen` plants PII in 20,000 ticket texts
//! and records every span; the scanner, given each row's identifier columns as context (as the
//! pipeline does), must find them. Per type: recall ≥ 0.99 (phones ≥ 0.95), precision ≥ 0.95.
//! The table is printed; see it with `cargo test --test pii_eval -- --nocapture`.

use privprep::pii::detect::{Kind, RowContext, Scanner, ScannerConfig, Span};
use privprep::pii::redact::{TextAction, TextPolicy, TextRewriter};
use std::collections::BTreeMap;

/// A labelled type: its name in the data and the detector kinds that may find it.
type Label = (&'static str, &'static [Kind]);

/// The `datagen` corpus' types.
const DATAGEN_TYPES: [Label; 7] = [
    ("email", &[Kind::Email]),
    ("phone", &[Kind::Phone]),
    ("ssn", &[Kind::Ssn]),
    ("card", &[Kind::Card]),
    ("ipv4", &[Kind::Ipv4]),
    ("iban", &[Kind::Iban]),
    ("name", &[Kind::Name]),
];

/// The Faker corpus' scored types (`address` spans are reported, not scored; `negative` spans
/// only count against precision).
const CORPUS_TYPES: [Label; 6] = [
    ("email", &[Kind::Email]),
    ("phone", &[Kind::Phone]),
    ("ssn", &[Kind::Ssn]),
    ("card", &[Kind::Card]),
    ("ip", &[Kind::Ipv4, Kind::Ipv6]),
    ("iban", &[Kind::Iban]),
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
    /// Detections (any kind) overlapping a `negative` span.
    on_negatives: usize,
    negatives: usize,
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
        if self.negatives > 0 {
            writeln!(
                f,
                "negative spans {}, detections on them {}",
                self.negatives, self.on_negatives
            )?;
        }
        write!(f, "other detections:")?;
        for (k, n) in &self.other {
            write!(f, " {k}={n}")?;
        }
        Ok(())
    }
}

/// One labelled text: the text, the row's identifier values (context) and its spans
/// `(start, end, label)` in bytes.
struct Doc {
    text: String,
    context: Vec<String>,
    truth: Vec<(usize, usize, String)>,
}

/// Scores `scanner` on `docs` for the labelled `types`. A truth span is found iff detections
/// of its kinds cover every byte of it; a detection of a scored kind is a true positive iff it
/// overlaps a truth span of a type that kind belongs to. Detections of other kinds are counted
/// apart; any detection that overlaps a `negative` span is counted there too.
fn score(docs: &[Doc], types: &[Label], scanner: &Scanner) -> Table {
    let label_of = |t: &str| types.iter().position(|(n, _)| *n == t);
    let kinds_of = |k: Kind| -> Vec<usize> {
        (0..types.len())
            .filter(|&i| types[i].1.contains(&k))
            .collect()
    };
    // PII_EVAL_SHOW=<type> prints that type's misses and false detections (for development).
    let show = std::env::var("PII_EVAL_SHOW").ok();
    let mut stats = vec![Stats::default(); types.len()];
    let mut table = Table::default();
    let mut ctx = RowContext::new();
    let mut spans: Vec<Span> = Vec::new();
    for doc in docs {
        ctx.clear();
        for v in &doc.context {
            ctx.add(v);
        }
        scanner.scan(&doc.text, &ctx, &mut spans);
        for (s, e, t) in &doc.truth {
            if t == "negative" {
                table.negatives += 1;
                table.on_negatives += spans
                    .iter()
                    .filter(|sp| sp.start < *e && *s < sp.end)
                    .count();
                continue;
            }
            let Some(l) = label_of(t) else { continue };
            stats[l].truth += 1;
            if covered(&spans, *s, *e, types[l].1) {
                stats[l].found += 1;
            } else if show.as_deref() == Some(t.as_str()) {
                println!("missed {t}: {:?} in {:?}", &doc.text[*s..*e], doc.text);
            }
        }
        for sp in &spans {
            let labels = kinds_of(sp.kind);
            if labels.is_empty() {
                *table.other.entry(sp.kind.as_str()).or_default() += 1;
                continue;
            }
            for l in labels {
                stats[l].detections += 1;
                let hit = doc
                    .truth
                    .iter()
                    .any(|(s, e, t)| label_of(t) == Some(l) && sp.start < *e && *s < sp.end);
                if hit {
                    stats[l].true_pos += 1;
                } else if show.as_deref() == Some(types[l].0) {
                    println!(
                        "false {}: {:?} in {:?}",
                        types[l].0,
                        &doc.text[sp.start..sp.end],
                        doc.text
                    );
                }
            }
        }
    }
    table.types = types.iter().map(|t| t.0).zip(stats).collect();
    table
}

/// Whether spans of the kinds `ks` cover every byte of `start..end`.
fn covered(spans: &[Span], start: usize, end: usize, ks: &[Kind]) -> bool {
    let mut pos = start;
    for sp in spans.iter().filter(|sp| ks.contains(&sp.kind)) {
        if sp.start <= pos && sp.end > pos {
            pos = sp.end;
        }
        if pos >= end {
            return true;
        }
    }
    pos >= end
}

/// Every type of `table`: more than 100 labelled spans, recall ≥ 0.99 (phones ≥
/// `phone_recall`) and precision ≥ 0.95.
fn assert_targets(table: &Table, phone_recall: f64) {
    for (t, s) in &table.types {
        let min_recall = if *t == "phone" { phone_recall } else { 0.99 };
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

/// `rows` tickets `privprep datagen` makes with `seed`, with their planted body spans.
fn generated(rows: u64, seed: u64) -> Vec<Doc> {
    let dir = tempfile::tempdir().expect("tempdir");
    privprep::datagen::generate(&privprep::datagen::DatagenOptions {
        rows,
        seed,
        out: dir.path().to_path_buf(),
        format: privprep::datagen::DataFormat::Csv,
        bad_rows: 0,
    })
    .expect("datagen");
    load_datagen(dir.path())
}

/// The `datagen` tickets of `dir`, with their planted body spans.
fn load_datagen(dir: &std::path::Path) -> Vec<Doc> {
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
    let mut docs = Vec::new();
    for rec in rdr.records() {
        let rec = rec.expect("csv record");
        docs.push(Doc {
            text: rec[body].to_string(),
            context: ctx_cols.iter().map(|&c| rec[c].to_string()).collect(),
            truth: Vec::new(),
        });
    }
    let text = std::fs::read_to_string(dir.join("pii_spans.jsonl")).expect("read pii_spans.jsonl");
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("jsonl line");
        if v["column"] != "body" {
            continue;
        }
        let n = |k: &str| v[k].as_u64().expect("numeric field") as usize;
        let t = v["type"].as_str().expect("type").to_string();
        docs[n("row")].truth.push((n("start"), n("end"), t));
    }
    docs
}

/// The Faker corpus (`tests/data/pii_corpus.jsonl`, made by `scripts/pii-corpus/generate.py`):
/// no row context, so only the context-free detectors are judged.
fn load_corpus() -> Vec<Doc> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pii_corpus.jsonl");
    let text = std::fs::read_to_string(path).expect("read the corpus");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("jsonl line");
            let truth = v["spans"]
                .as_array()
                .expect("spans")
                .iter()
                .map(|s| {
                    let n = |k: &str| s[k].as_u64().expect("offset") as usize;
                    (
                        n("start"),
                        n("end"),
                        s["type"].as_str().expect("type").to_string(),
                    )
                })
                .collect();
            Doc {
                text: v["text"].as_str().expect("text").to_string(),
                context: Vec::new(),
                truth,
            }
        })
        .collect()
}

#[test]
fn detection_meets_recall_and_precision_targets_on_20000_labelled_texts() {
    let docs = generated(20_000, 7);
    assert!(docs.len() >= 20_000);
    let scanner = Scanner::new(&ScannerConfig::default()).expect("default scanner");
    let table = score(&docs, &DATAGEN_TYPES, &scanner);
    println!(
        "datagen: {} texts, {} planted spans\n{table}",
        docs.len(),
        docs.iter().map(|d| d.truth.len()).sum::<usize>()
    );
    assert_targets(&table, 0.95);
}

#[test]
fn detection_meets_recall_and_precision_targets_on_the_faker_corpus() {
    let docs = load_corpus();
    assert!(docs.len() >= 10_000);
    let scanner = Scanner::new(&ScannerConfig::default()).expect("default scanner");
    let table = score(&docs, &CORPUS_TYPES, &scanner);
    println!(
        "faker corpus: {} texts, {} spans\n{table}",
        docs.len(),
        docs.iter().map(|d| d.truth.len()).sum::<usize>()
    );
    assert_targets(&table, 0.97);
}

/// Names without context: the `person` detector (off by default) on the corpus' person spans,
/// with every other detector on, as a pipeline that asks for it runs.
#[test]
fn person_names_without_context_meet_recall_and_precision_on_the_faker_corpus() {
    let docs = load_corpus();
    let scanner = Scanner::new(&ScannerConfig {
        enabled: Kind::BUILTIN.to_vec(),
        ..ScannerConfig::default()
    })
    .expect("scanner");
    let table = score(&docs, &[("person", &[Kind::Person])], &scanner);
    println!("faker corpus, person detector:\n{table}");
    // The same detector on `datagen` tickets, whose labelled names are the writers' own: how
    // many of them it finds with no context, and what else it calls a name there.
    let mut tickets = generated(5_000, 11);
    for d in &mut tickets {
        d.context.clear();
    }
    let on_tickets = score(&tickets, &[("name", &[Kind::Person])], &scanner);
    println!("datagen tickets without context, person detector:\n{on_tickets}");
    let (_, s) = table.types[0];
    assert!(s.truth > 1000, "too few names\n{table}");
    assert!(s.recall() >= 0.85, "recall {:.4}\n{table}", s.recall());
    assert!(
        s.precision() >= 0.85,
        "precision {:.4}\n{table}",
        s.precision()
    );
}

/// Rewrites every text as the pipeline does (the row's context, every default detector,
/// labels) and scans each result again without context, as the leak gate does; returns the
/// texts in which something is still found.
fn leftovers(docs: &[Doc], enabled: &[Kind]) -> Vec<String> {
    let scanner = Scanner::new(&ScannerConfig {
        enabled: enabled.to_vec(),
        ..ScannerConfig::default()
    })
    .expect("scanner");
    let policy = TextPolicy::new(TextAction::Redact, &[]);
    let mut rw = TextRewriter::new(&scanner, &policy, None);
    let none = RowContext::new();
    let mut spans = Vec::new();
    let mut left = Vec::new();
    for d in docs {
        let out = rw
            .rewrite_row(Some(&d.text), d.context.iter().map(|c| Some(c.as_str())))
            .unwrap_or_default()
            .to_string();
        scanner.scan(&out, &none, &mut spans);
        if !spans.is_empty() {
            left.push(out);
        }
    }
    left
}

/// The leak gate scans the written text with the same detectors: a rewritten text must hold
/// nothing they find, even where a replacement changed how its neighbours read.
#[test]
fn rewritten_texts_hold_nothing_the_gate_would_find() {
    for (name, docs) in [("datagen", generated(20_000, 5)), ("faker", load_corpus())] {
        for (detectors, enabled) in [("default", Kind::DEFAULT), ("with person", Kind::BUILTIN)] {
            let left = leftovers(&docs, enabled);
            assert!(
                left.is_empty(),
                "{name}, {detectors}: {} texts, e.g. {:?}",
                left.len(),
                &left[..left.len().min(3)]
            );
        }
    }
}
