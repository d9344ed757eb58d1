//! Free-text redaction throughput on support-ticket text: detectors plus contextual matching
//! with the row's own name, e-mail, phone and id, then replacement, on one core and on all.
//! Criterion reports MB/s (bytes of text) and texts/s.

// The allocator the privprep binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use privprep::datagen::{generate, DataFormat, DatagenOptions};
use privprep::pii::redact::{apply_into, TextAction, TextPolicy};
use privprep::pii::{Kind, RowContext, Scanner, ScannerConfig, Span};
use rayon::prelude::*;

/// (body, [subject_id, full_name, email, phone]) of every ticket.
fn tickets(rows: u64) -> Vec<(String, [String; 4])> {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    generate(&DatagenOptions {
        rows,
        seed: 1,
        out: data.clone(),
        format: DataFormat::Csv,
        bad_rows: 0,
    })
    .expect("datagen");
    let mut reader = csv::Reader::from_path(data.join("tickets.csv")).expect("csv");
    let headers = reader.headers().expect("header").clone();
    let at = |n: &str| headers.iter().position(|h| h == n).expect("column");
    let (b, s, n, e, p) = (
        at("body"),
        at("subject_id"),
        at("full_name"),
        at("email"),
        at("phone"),
    );
    reader
        .records()
        .map(|r| {
            let r = r.expect("record");
            (
                r[b].to_string(),
                [
                    r[s].to_string(),
                    r[n].to_string(),
                    r[e].to_string(),
                    r[p].to_string(),
                ],
            )
        })
        .collect()
}

/// Scans and rewrites every text; returns the output bytes so nothing is optimized away.
fn redact_all(scanner: &Scanner, policy: &TextPolicy, texts: &[(String, [String; 4])]) -> usize {
    let mut ctx = RowContext::new();
    let mut spans: Vec<Span> = Vec::new();
    let mut out = String::new();
    let mut total = 0;
    for (body, context) in texts {
        ctx.clear();
        for v in context {
            ctx.add(v);
        }
        scanner.scan(body, &ctx, &mut spans);
        if spans.is_empty() {
            total += body.len();
        } else {
            apply_into(body, &spans, policy, None, &mut out);
            total += out.len();
        }
    }
    total
}

fn bench(c: &mut Criterion) {
    let texts = tickets(100_000);
    let bytes: usize = texts.iter().map(|(b, _)| b.len()).sum();
    let scanner = Scanner::new(&ScannerConfig::default()).expect("scanner");
    let with_person = Scanner::new(&ScannerConfig {
        enabled: Kind::BUILTIN.to_vec(),
        ..ScannerConfig::default()
    })
    .expect("scanner");
    let policy = TextPolicy::new(TextAction::Redact, &[]);
    let threads = rayon::current_num_threads();
    let chunk = texts.len().div_ceil(threads * 8).max(1);

    for (unit, throughput) in [
        ("MB", Throughput::Bytes(bytes as u64)),
        ("texts", Throughput::Elements(texts.len() as u64)),
    ] {
        let mut g = c.benchmark_group(format!("pii_redact_{unit}"));
        g.throughput(throughput);
        g.sample_size(10);
        g.bench_function("one_core", |b| {
            b.iter(|| redact_all(&scanner, &policy, &texts))
        });
        // The opt-in detector of names in running text, on top of the defaults.
        g.bench_function("one_core_with_person", |b| {
            b.iter(|| redact_all(&with_person, &policy, &texts))
        });
        g.bench_function(format!("all_cores_{threads}"), |b| {
            b.iter(|| {
                texts
                    .par_chunks(chunk)
                    .map(|c| redact_all(&scanner, &policy, c))
                    .sum::<usize>()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
