//! Tokenizer throughput: values per second on one core (the kernel) and on all cores (the
//! engine adapter over a string column).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use polars::prelude::*;
use privprep::engine::polars::adapter::map_str_column;
use privprep::identity::{mask_into, Key, TokenEncoding, Tokenizer};

fn values(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("person{}.name{}@example{}.com", i, i % 977, i % 13))
        .collect()
}

fn bench(c: &mut Criterion) {
    let key = Key::parse(&"ab".repeat(32)).expect("valid key");
    let tok = Tokenizer::new(&key, 128, TokenEncoding::Hex).expect("valid bits");
    let vals = values(100_000);
    let mut g = c.benchmark_group("tokenize");
    g.throughput(Throughput::Elements(vals.len() as u64));
    g.bench_function(BenchmarkId::new("kernel_one_core", vals.len()), |b| {
        let mut out = String::with_capacity(64);
        b.iter(|| {
            let mut total = 0usize;
            for v in &vals {
                out.clear();
                tok.token_into(v, &mut out);
                total += out.len();
            }
            total
        })
    });
    let ca = StringChunked::from_iter_values("email".into(), vals.iter().map(|s| s.as_str()));
    let t = tok.clone();
    let f = move |v: &str, out: &mut String| t.token_into(v, out);
    g.bench_function(BenchmarkId::new("column_all_cores", vals.len()), |b| {
        b.iter(|| map_str_column(&ca, &f).len())
    });
    g.finish();

    let mut g = c.benchmark_group("mask");
    g.throughput(Throughput::Elements(vals.len() as u64));
    g.bench_function(BenchmarkId::new("kernel_one_core", vals.len()), |b| {
        let mut out = String::with_capacity(64);
        b.iter(|| {
            let mut total = 0usize;
            for v in &vals {
                out.clear();
                mask_into(v, 4, &mut out);
                total += out.len();
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
