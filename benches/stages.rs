//! Per-stage throughput: the input pre-scan (hash + CSV structure), the policy kernels, and the
//! Parquet emit path (engine frame → Arrow → zstd Parquet).

// The allocator the privprep binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use polars::prelude::*;
use privprep::datagen::{generate, DataFormat, DatagenOptions};
use privprep::emit::{arrow_schema, to_record_batch, AtomicParquet, ParquetSettings};
use privprep::ingest::prescan::prescan_csv;
use privprep::policy::purposes_include;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    generate(&DatagenOptions {
        rows: 200_000,
        seed: 1,
        out: data.clone(),
        format: DataFormat::Csv,
        bad_rows: 0,
    })
    .expect("datagen");
    let csv = data.join("tickets.csv");
    let bytes = std::fs::metadata(&csv).expect("csv").len();

    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(10);
    g.bench_function("prescan_csv_200k_rows", |b| {
        b.iter(|| prescan_csv(&csv, b',', true).expect("prescan").records)
    });
    g.finish();

    let purposes: Vec<&str> = [
        "training;analytics",
        "marketing",
        "",
        "analytics;training;marketing",
        "analytics",
    ]
    .into_iter()
    .cycle()
    .take(100_000)
    .collect();
    let mut g = c.benchmark_group("policy");
    g.throughput(Throughput::Elements(purposes.len() as u64));
    g.bench_function("purposes_include_100k", |b| {
        b.iter(|| {
            purposes
                .iter()
                .filter(|p| purposes_include(p, ";", "training"))
                .count()
        })
    });
    g.finish();

    let df = LazyCsvReader::new(PlPath::new(&csv.to_string_lossy()))
        .with_has_header(true)
        .finish()
        .and_then(|lf| lf.slice(0, 100_000).collect())
        .expect("read csv");
    let schema = arrow_schema(df.schema()).expect("schema");
    let settings = ParquetSettings {
        row_group_size: 65_536,
        lineage_json: Some("{}".into()),
        encryption: None,
        plain_columns: vec!["body".into()],
    };
    let out = dir.path().join("out.parquet");
    let mut g = c.benchmark_group("emit");
    g.throughput(Throughput::Elements(df.height() as u64));
    g.sample_size(10);
    g.bench_function("parquet_100k_rows", |b| {
        b.iter(|| {
            let batch = to_record_batch(&df, &schema).expect("batch");
            let mut w =
                AtomicParquet::create(&out, "bench", schema.clone(), &settings).expect("create");
            w.write(&batch).expect("write");
            w.finish().expect("finish");
            w.commit().expect("commit");
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
