//! What the benches that drive the binary share: numbers from the environment, the generated
//! ticket data (made once per size, kept in the temporary folder), key files and folder copies.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The number in variable `name` (underscores allowed), else `default`.
pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The bench folder (`PRIVPREP_BENCH_DIR`, else `<tmp>/privprep-bench-<rows>`) and its
/// `data/` folder, with `rows` tickets generated there by `bin` (seed 1) unless they are already.
pub fn ticket_data(bin: &str, rows: u64) -> (PathBuf, PathBuf) {
    let base =
        PathBuf::from(std::env::var("PRIVPREP_BENCH_DIR").unwrap_or_else(|_| {
            format!("{}/privprep-bench-{rows}", std::env::temp_dir().display())
        }));
    let data = base.join("data");
    if !data.join("tickets.csv").exists() {
        eprintln!("generating {rows} rows into {}", data.display());
        let ok = Command::new(bin)
            .args([
                "datagen",
                "--rows",
                &rows.to_string(),
                "--seed",
                "1",
                "--out",
            ])
            .arg(&data)
            .status()
            .expect("datagen");
        assert!(ok.success());
    }
    (base, data)
}

/// Writes a key file (owner-only, as privprep wants it) holding `text`.
pub fn write_key(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("key file");
    f.write_all(text.as_bytes()).expect("key");
}

/// Copies the folder `from` to `to`, replacing what was there.
pub fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).expect("copy");
        }
    }
}
