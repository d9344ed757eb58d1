//! End to end: the quickstart-like pipeline against the plain CSV→Parquet conversion a user
//! would write, timed in the same run, with the ratio and the peak RSS of each. Two baselines:
//! polars 0.52 from Rust (the engine privprep runs on), and the current Python polars
//! (`scan_csv → sink_parquet`, zstd), when `python3 -c "import polars"` works; its time is the
//! conversion's own, without the interpreter's start. `PRIVPREP_BENCH_ROWS` sets the size (default 1,000,000); `PRIVPREP_BENCH_REPS`
//! the repetitions (default 3, the median is reported). The CSV is read into the page cache before
//! each timed command, so every one of them starts warm.

// The allocator the privprep binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_privprep");

#[path = "common/mod.rs"]
mod common;
use common::{env_num, ticket_data, write_key};

/// Peak figures of one command, in MiB: total RSS (from the kernel's high-water mark) and the
/// largest anonymous RSS seen by sampling (heap; excludes the memory-mapped input file).
#[derive(Clone, Copy)]
struct Peak {
    total: f64,
    anon: f64,
}

fn rss_anon_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Runs a command, returns its wall time and peak memory.
fn timed(cmd: &mut Command) -> (Duration, Peak) {
    let start = Instant::now();
    let child = cmd.spawn().expect("spawn");
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut max = 0.0f64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(m) = rss_anon_mib(pid) {
                    max = max.max(m);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            max
        })
    };
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting on our own child; usage is a valid out-pointer.
    let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    let elapsed = start.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let anon = sampler.join().unwrap_or(0.0);
    assert_eq!(r, pid as libc::pid_t, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "command failed: {cmd:?}"
    );
    std::mem::forget(child);
    (
        elapsed,
        Peak {
            total: usage.ru_maxrss as f64 / 1024.0,
            anon,
        },
    )
}

fn median(mut v: Vec<(Duration, Peak)>) -> (Duration, Peak) {
    v.sort_by_key(|x| x.0);
    v[v.len() / 2]
}

/// The bench pipeline; `body` is either dropped or redacted; `release` adds a DP release
/// (count and mean of handling time by country, public keys).
fn pipeline(dir: &Path, redact: bool, release: bool) -> PathBuf {
    let name = match (redact, release) {
        (true, _) => "bench_redact",
        (false, true) => "bench_release",
        (false, false) => "bench",
    };
    let body = if redact {
        r#"body = { action = "redact", actions = { email = "tokenize" } }"#
    } else {
        r#"body = { action = "drop" }"#
    };
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(
        &p,
        r#"[pipeline]
name = "NAME"

[source]
path = "data/tickets.csv"

[policy]
purpose = "training"
allowed_provenance = ["app", "web", "partner_api"]
revocations = ["data/revocations.csv"]
retention_days = 1095
as_of = "2026-11-01"

[columns]
subject_id = { action = "tokenize" }
full_name = { action = "drop" }
email = { action = "tokenize" }
phone = { action = "mask", keep_last = 2 }
birth_date = { action = "generalize", to = "year" }
zip = { action = "generalize", prefix = 3 }
country = { action = "keep" }
satisfaction = { action = "keep" }
BODY

[output]
path = "out/NAME.parquet"
"#
        .replace("NAME", name)
        .replace("BODY", body)
            + if release {
                r#"
[[release]]
name = "by_country"
path = "out/bench_release.by_country.parquet"
group_by = ["country"]
keys = "public"
key_file = "countries.csv"
max_rows_per_subject = 5
max_rows = 100_000_000
privacy = { epsilon = 1.0 }
aggregates = [{ kind = "count" }, { kind = "mean", column = "handle_time_minutes", bounds = [0.0, 120.0] }]
"#
            } else {
                ""
            },
    )
    .expect("write pipeline");
    p
}

/// The baseline: what a user would write with polars alone (typed CSV scan, streaming
/// Parquet sink, zstd).
fn plain_conversion(input: &str, output: &str) {
    use polars::prelude::*;
    let lf = LazyCsvReader::new(PlPath::new(input))
        .with_has_header(true)
        .finish()
        .expect("scan csv");
    let options = ParquetWriteOptions {
        compression: ParquetCompression::Zstd(None),
        ..Default::default()
    };
    lf.sink_parquet(
        SinkTarget::Path(PlPath::new(output)),
        options,
        None,
        SinkOptions::default(),
    )
    .and_then(|lf| lf.collect_with_engine(Engine::Streaming))
    .expect("convert");
}

/// The Python polars conversion; prints its own elapsed seconds.
const PYTHON_CONVERSION: &str = "import sys, time, polars as pl
t = time.perf_counter()
pl.scan_csv(sys.argv[1]).sink_parquet(sys.argv[2], compression='zstd')
print(time.perf_counter() - t)
print(pl.__version__)";

/// One Python polars conversion: (seconds, polars version, peak), or None without polars.
fn python_conversion(input: &Path, output: &Path) -> Option<(Duration, String, Peak)> {
    let probe = Command::new("python3")
        .args(["-c", "import polars"])
        .output()
        .ok()?;
    if !probe.status.success() {
        return None;
    }
    let out_file = output.with_extension("txt");
    let stdout = std::fs::File::create(&out_file).ok()?;
    let (_, peak) = timed(
        Command::new("python3")
            .args(["-c", PYTHON_CONVERSION])
            .arg(input)
            .arg(output)
            .stdout(stdout),
    );
    let text = std::fs::read_to_string(&out_file).ok()?;
    let mut lines = text.lines();
    let secs: f64 = lines.next()?.trim().parse().ok()?;
    let version = lines.next().unwrap_or("?").trim().to_string();
    Some((Duration::from_secs_f64(secs), version, peak))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--plain-conversion") {
        plain_conversion(&args[i + 1], &args[i + 2]);
        return;
    }
    let rows = env_num("PRIVPREP_BENCH_ROWS", 1_000_000);
    let reps = env_num("PRIVPREP_BENCH_REPS", 3).max(1);
    let (dir, data) = ticket_data(BIN, rows);
    let csv_bytes = std::fs::metadata(data.join("tickets.csv"))
        .map(|m| m.len())
        .unwrap_or(0);
    let p = pipeline(&dir, false, false);
    let p_redact = pipeline(&dir, true, false);
    let p_release = pipeline(&dir, false, true);
    // The same as `p`, with its identifier-derived columns encrypted at rest.
    let p_encrypted = dir.join("bench_encrypted.toml");
    std::fs::write(
        &p_encrypted,
        std::fs::read_to_string(&p)
            .expect("bench pipeline")
            .replace("name = \"bench\"", "name = \"bench_encrypted\"")
            .replace("out/bench.parquet", "out/bench_encrypted.parquet")
            + "\n[output.encryption]\n",
    )
    .expect("write pipeline");
    std::fs::write(
        dir.join("countries.csv"),
        "country\nAU\nBR\nCA\nDE\nES\nFR\nGB\nIN\nIT\nJP\nMX\nNL\nPL\nSE\nUS\nVN\n",
    )
    .expect("key list");
    let key = dir.join("bench.key");
    write_key(&key, &"cd".repeat(32));
    let mut ours = Vec::new();
    let mut ours_redact = Vec::new();
    let mut ours_release = Vec::new();
    let mut ours_encrypted = Vec::new();
    let mut plain = Vec::new();
    let mut python = Vec::new();
    let run = |pipeline: &Path| {
        timed(
            Command::new(BIN)
                .current_dir(&dir)
                .args(["-q", "--no-progress", "--state-dir", "state", "run"])
                .arg(pipeline)
                .arg("--key-file")
                .arg(&key),
        )
    };
    // Every timed command reads the CSV from the page cache: it is read once before each of
    // them, so a machine that evicts cold files between runs does not charge the reread to
    // whichever command comes first.
    let csv = data.join("tickets.csv");
    let warm = || {
        let _ = std::io::copy(
            &mut std::fs::File::open(&csv).expect("open csv"),
            &mut std::io::sink(),
        );
    };
    let run = |pipeline: &Path| {
        warm();
        run(pipeline)
    };
    for _ in 0..reps {
        ours.push(run(&p));
        ours_redact.push(run(&p_redact));
        ours_release.push(run(&p_release));
        ours_encrypted.push(run(&p_encrypted));
        warm();
        plain.push(timed(
            Command::new(std::env::current_exe().expect("exe"))
                .arg("--plain-conversion")
                .arg(data.join("tickets.csv"))
                .arg(dir.join("plain.parquet")),
        ));
        warm();
        if let Some(p) = python_conversion(&csv, &dir.join("python.parquet")) {
            python.push(p);
        }
    }
    let (ot, om) = median(ours);
    let (rt, rm) = median(ours_redact);
    let (dt, dm) = median(ours_release);
    let (et, em) = median(ours_encrypted);
    let (pt, pm) = median(plain);
    println!("end_to_end rows={rows} csv_bytes={csv_bytes} reps={reps}");
    println!("  privprep run (policy, identifiers, leak gate):     {:.3} s, peak RSS {:.0} MiB (heap {:.0} MiB)", ot.as_secs_f64(), om.total, om.anon);
    println!("  privprep run, body redacted + leak gate:           {:.3} s, peak RSS {:.0} MiB (heap {:.0} MiB)", rt.as_secs_f64(), rm.total, rm.anon);
    println!("  privprep run + DP release (count, mean by country): {:.3} s, peak RSS {:.0} MiB (heap {:.0} MiB)", dt.as_secs_f64(), dm.total, dm.anon);
    println!("  privprep run, identifier columns encrypted:        {:.3} s, peak RSS {:.0} MiB (heap {:.0} MiB)", et.as_secs_f64(), em.total, em.anon);
    println!("  plain polars CSV→Parquet:                          {:.3} s, peak RSS {:.0} MiB (heap {:.0} MiB)", pt.as_secs_f64(), pm.total, pm.anon);
    println!("  (peak RSS counts the pages of the memory-mapped CSV the reader touched; heap is the anonymous part)");
    println!(
        "  ratio privprep / plain: {:.2} (text dropped), {:.2} (text redacted), {:.2} (with the DP release)",
        ot.as_secs_f64() / pt.as_secs_f64(),
        rt.as_secs_f64() / pt.as_secs_f64(),
        dt.as_secs_f64() / pt.as_secs_f64()
    );
    println!(
        "  encryption: {:.2}x the same run unencrypted, {:.2}x the plain conversion",
        et.as_secs_f64() / ot.as_secs_f64(),
        et.as_secs_f64() / pt.as_secs_f64()
    );
    if python.len() == reps as usize {
        let version = python[0].1.clone();
        let (yt, ym) = median(python.into_iter().map(|(t, _, p)| (t, p)).collect());
        println!("  Python polars {version} scan_csv→sink_parquet (zstd):  {:.3} s, peak RSS {:.0} MiB (heap {:.0} MiB)", yt.as_secs_f64(), ym.total, ym.anon);
        println!(
            "  ratio privprep / Python polars: {:.2} (text dropped), {:.2} (text redacted), {:.2} (with the DP release)",
            ot.as_secs_f64() / yt.as_secs_f64(),
            rt.as_secs_f64() / yt.as_secs_f64(),
            dt.as_secs_f64() / yt.as_secs_f64()
        );
    } else {
        println!("  (no Python polars: `pip install polars` to compare with it)");
    }
}
