//! The Python wheel (`python/`) built with maturin and its tests run with pytest, from
//! `cargo test`, against this build's CLI: the row engine over pyarrow batches and under
//! Spark's `mapInArrow` (local[2]) must give the CLI's rows, tokens, redactions and counts.
//! Skips (saying so) when Python lacks maturin, pyarrow or pytest; the Spark tests skip inside
//! pytest without PySpark or Java. `.ci/run` installs all of them.

use std::path::{Path, PathBuf};
use std::process::Command;

fn python_has(modules: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The wheel's own target folder beside the CLI's build (its own lock, so it can build while
/// the test harness holds the CLI's).
fn wheel_target() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wheel")
}

/// pytest of `tests` under `python`, with the wheel installed in `site` and this build's CLI.
fn pytest(python: &std::ffi::OsStr, tests: &Path, site: &Path, dir: &Path) -> Command {
    let mut c = Command::new(python);
    c.args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"])
        .arg(tests)
        .env("PYTHONPATH", site)
        .env("PRIVPREP_BIN", env!("CARGO_BIN_EXE_privprep"))
        .env_remove("PRIVPREP_KEY")
        .env_remove("PRIVPREP_KEY_FILE")
        .current_dir(dir);
    c
}

#[test]
fn the_python_wheel_passes_its_tests_against_this_cli() {
    if !python_has("maturin, pyarrow, pytest") {
        eprintln!("skipping: python3 with maturin, pyarrow and pytest is not installed (pip install maturin pyarrow pytest pyspark pandas)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let wheels = tmp.path().join("wheels");
    let built = Command::new("python3")
        .args(["-m", "maturin", "build", "--release", "--quiet", "-m"])
        .arg(root.join("python/Cargo.toml"))
        .arg("-o")
        .arg(&wheels)
        .env("CARGO_TARGET_DIR", wheel_target())
        .output()
        .expect("maturin");
    assert!(
        built.status.success(),
        "maturin build failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let wheel = std::fs::read_dir(&wheels)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .expect("a wheel");
    let site = tmp.path().join("site");
    let installed = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--no-deps", "--target"])
        .arg(&site)
        .arg(&wheel)
        .output()
        .expect("pip");
    assert!(
        installed.status.success(),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let tests = pytest(
        "python3".as_ref(),
        &root.join("python/tests"),
        &site,
        tmp.path(),
    )
    .output()
    .expect("pytest");
    let report = String::from_utf8_lossy(&tests.stdout);
    eprintln!("{report}");
    assert!(
        tests.status.success(),
        "the wheel's tests failed:\n{report}\n{}",
        String::from_utf8_lossy(&tests.stderr)
    );
    assert!(report.contains("passed"), "{report}");

    // Sail (a Spark Connect server in Rust, no JVM) serves the PySpark Connect clients it
    // supports; `.ci/run` keeps a virtual environment with one, named by PRIVPREP_SAIL_PYTHON.
    let Some(sail_python) = std::env::var_os("PRIVPREP_SAIL_PYTHON") else {
        eprintln!("skipping the Sail run: PRIVPREP_SAIL_PYTHON names no Python with pysail");
        return;
    };
    let sail = pytest(
        &sail_python,
        &root.join("python/tests/test_sail.py"),
        &site,
        tmp.path(),
    )
    .env("PRIVPREP_SAIL", "1")
    .output()
    .expect("pytest under the Sail environment");
    let report = String::from_utf8_lossy(&sail.stdout);
    eprintln!("{report}");
    assert!(
        sail.status.success() && report.contains("8 passed"),
        "the Spark tests on Sail did not pass:\n{report}\n{}",
        String::from_utf8_lossy(&sail.stderr)
    );
}
