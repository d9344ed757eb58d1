//! Outputs encrypted at rest (`[output.encryption]`): unreadable without the master keys,
//! readable with them (by privprep, and by pyarrow through `scripts/privprep_kms.py`), no
//! plaintext of an encrypted column in the file's bytes, and the leak gate still reads them.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes pipeline `name` over the tickets, with `[output.encryption]` given by `encryption`
/// (`None`: unencrypted).
fn pipeline(w: &Work, name: &str, columns: &str, encryption: Option<&str>) -> PathBuf {
    let extra = encryption
        .map(|e| format!("[output.encryption]\n{e}"))
        .unwrap_or_default();
    w.pipeline(name, "", columns, &extra)
}

/// Every batch of the Parquet file at `path`, read by arrow-rs with privprep's master keys
/// from `state` (`None`: without keys).
fn read_batches(
    path: &Path,
    keys: Option<&privprep::emit::encryption::MasterKeys>,
) -> Result<Vec<arrow::array::RecordBatch>, String> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let builder = match keys {
        Some(k) => k.reader(path)?,
        None => {
            let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
            ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?
        }
    };
    let reader = builder.build().map_err(|e| e.to_string())?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

/// The master keys a run created in `state`.
fn master_keys(state: &Path) -> privprep::emit::encryption::MasterKeys {
    let mut keys = privprep::emit::encryption::MasterKeys::new();
    for id in ["privprep-footer", "privprep-columns"] {
        let text = std::fs::read_to_string(state.join(format!("keys/master/{id}.key"))).unwrap();
        keys.insert(id, privprep_kernels::key::Key::parse(&text).unwrap());
    }
    keys
}

/// Every value of column `name` in `batches`, as text.
fn strings(batches: &[arrow::array::RecordBatch], name: &str) -> Vec<String> {
    use arrow::array::{Array, StringArray};
    batches
        .iter()
        .flat_map(|b| {
            let c = b.column_by_name(name).unwrap();
            let c = arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).unwrap();
            let c = c.as_any().downcast_ref::<StringArray>().unwrap();
            (0..c.len())
                .filter(|i| !c.is_null(*i))
                .map(|i| c.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn python_with(modules: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn encrypted_outputs_are_readable_with_their_master_keys_only() {
    let w = Work::new();
    w.datagen(800, 17, &[]);
    let plain = pipeline(&w, "plain", SAFE_COLUMNS, None);
    let sealed = pipeline(&w, "sealed", SAFE_COLUMNS, Some(""));
    let p = w.run_ok(&plain);
    let (code, s, stderr) = w.run_json(&sealed, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("created master key `privprep-columns`"),
        "{stderr}"
    );
    let (plain_file, sealed_file) = (
        PathBuf::from(p["outputs"][0]["path"].as_str().unwrap()),
        PathBuf::from(s["outputs"][0]["path"].as_str().unwrap()),
    );

    // Lineage: the encrypted columns (the default: every identifier, quasi-identifier and
    // sensitive output column) and the master keys by id and fingerprint.
    let record = w.lineage_record(s["run_id"].as_str().unwrap());
    let enc = &record["encryption"];
    let columns: Vec<&str> = enc["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for c in ["subject_id", "email", "phone", "zip"] {
        assert!(columns.contains(&c), "{c} is not encrypted: {enc}");
    }
    assert!(!columns.contains(&"ticket_id"));
    let keys = master_keys(&w.state());
    assert_eq!(
        enc["column_key"]["fingerprint"].as_str(),
        Some(
            keys.key_ref("privprep-columns")
                .unwrap()
                .fingerprint
                .as_str()
        )
    );

    // Without the keys nothing reads it; with them it holds exactly the unencrypted run's rows.
    assert!(read_batches(&sealed_file, None).is_err());
    let opened = read_batches(&sealed_file, Some(&keys)).unwrap();
    let control = read_batches(&plain_file, None).unwrap();
    assert_eq!(opened, control);
    {
        use polars::prelude::{ParquetReader, SerReader};
        let file = std::fs::File::open(&sealed_file).unwrap();
        assert!(ParquetReader::new(file).finish().is_err());
    }

    // No plaintext of an encrypted column in the file's bytes; the same check on the plain
    // file finds them, so it can fail.
    let tokens = strings(&control, "subject_id");
    let raw = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).to_string();
    let (plain_bytes, sealed_bytes) = (raw(&plain_file), raw(&sealed_file));
    assert!(tokens.iter().any(|t| plain_bytes.contains(t.as_str())));
    for c in &columns {
        for v in strings(&control, c).iter().filter(|v| v.len() >= 6) {
            assert!(
                !sealed_bytes.contains(v.as_str()),
                "a value of `{c}` is in the bytes"
            );
        }
    }
    // The key files' texts are nowhere in the store or the output.
    let store = raw(&w.state().join("lineage.db"));
    for id in ["privprep-footer", "privprep-columns"] {
        let text =
            std::fs::read_to_string(w.state().join(format!("keys/master/{id}.key"))).unwrap();
        assert!(!store.contains(text.trim()) && !sealed_bytes.contains(text.trim()));
    }

    // pyarrow reads it through the documented KMS client, and not without it.
    if !python_with("pyarrow, cryptography") {
        eprintln!(
            "skipping the pyarrow check: python3 with pyarrow and cryptography is not installed"
        );
        return;
    }
    let script = format!(
        r#"
import sys
sys.path.insert(0, {scripts:?})
import pyarrow.parquet as pq, privprep_kms
try:
    pq.read_table({sealed:?})
    sys.exit("read without keys")
except OSError:
    pass
t = privprep_kms.read_table({sealed:?}, key_dir={keys:?})
assert t.equals(pq.read_table({plain:?})), "content differs"
md = pq.ParquetFile({sealed:?}, decryption_properties=privprep_kms.decryption_properties({keys:?})).metadata
names = md.schema.names
stats = {{names[i]: md.row_group(0).column(i).is_stats_set for i in range(len(names))}}
assert not stats["subject_id"] and stats["ticket_id"], stats
print("ok", t.num_rows)
"#,
        scripts = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts"),
        sealed = sealed_file.display().to_string(),
        plain = plain_file.display().to_string(),
        keys = w.state().join("keys/master").display().to_string(),
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The leak gate reads the encrypted temporary files back: a free-text column kept as it is
/// (the manifest wrongly calls it public) still fails the run when it is encrypted.
#[test]
fn the_leak_gate_reads_encrypted_outputs() {
    let w = Work::new();
    w.datagen(600, 4, &[]);
    misclassify_body(&w.data());
    let columns = SAFE_COLUMNS.replace("body = { action = \"drop\" }", "");
    let p = pipeline(
        &w,
        "leaky",
        &columns,
        Some("columns = [\"body\", \"subject_id\"]"),
    );
    let (code, summary, stderr) = w.run_json(&p, &[]);
    assert_eq!(code, 1, "{stderr}");
    let gate = summary["leak_gate"].as_array().unwrap();
    let body = gate.iter().find(|g| g["column"] == "body").unwrap();
    assert!(
        body["hits"]["identifier_value"].as_u64().unwrap_or(0) > 0,
        "{body}"
    );
    assert!(!w.path().join("out/leaky.parquet").exists());
}

/// `[output.encryption]` mistakes are found by `validate`, at their line.
#[test]
fn validate_reports_encryption_mistakes_at_their_line() {
    let w = Work::new();
    w.datagen(50, 1, &[]);
    let p = pipeline(
        &w,
        "bad",
        SAFE_COLUMNS,
        Some("column_key = \"../etc/key\"\ncolumns = [\"full_name\", \"nope\"]"),
    );
    let out = w.privprep(&["validate", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("master key id"), "{e}");
    assert!(e.contains("`full_name` is not an output column"), "{e}");
    assert!(e.contains("`nope` is not an output column"), "{e}");
}

/// Rotation: afterwards the old key no longer opens the file, the new one does, and the rows
/// are the same; a wrong OLD key is refused naming the key, with nothing changed.
#[test]
fn rotation_moves_outputs_to_the_new_key_and_refuses_a_wrong_old_key() {
    let w = Work::new();
    w.datagen(500, 8, &[]);
    let p = pipeline(
        &w,
        "sealed",
        SAFE_COLUMNS,
        Some("[output.split]\ntrain = 0.8\ntest = 0.2"),
    );
    // `[output.split]` after `[output.encryption]` closes it: fix the order.
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "[output.encryption]\n[output.split]\ntrain = 0.8\ntest = 0.2",
        "[output.split]\ntrain = 0.8\ntest = 0.2\n[output.encryption]",
    );
    std::fs::write(&p, text).unwrap();
    let s = w.run_ok(&p);
    let files: Vec<PathBuf> = s["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| PathBuf::from(o["path"].as_str().unwrap()))
        .collect();
    assert_eq!(files.len(), 2);
    let before_keys = master_keys(&w.state());
    let before: Vec<_> = files
        .iter()
        .map(|f| read_batches(f, Some(&before_keys)).unwrap())
        .collect();
    let shas: Vec<_> = files
        .iter()
        .map(|f| privprep::emit::sha256_file(f).unwrap())
        .collect();

    // A wrong OLD key: refused, naming the key, nothing written.
    let old_file = w.state().join("keys/master/privprep-columns.key");
    let old_text = std::fs::read_to_string(&old_file).unwrap();
    std::fs::write(&old_file, hex::encode([9u8; 32])).unwrap();
    let out = w.privprep(&["keys", "rotate-encryption", "privprep-columns", "cols-2"]);
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("master key `privprep-columns`") && e.contains("nothing was changed"),
        "{e}"
    );
    for (f, sha) in files.iter().zip(&shas) {
        assert_eq!(&privprep::emit::sha256_file(f).unwrap(), sha);
    }
    let inspect = w.privprep(&["inspect", files[0].to_str().unwrap()]);
    assert_eq!(inspect.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&inspect.stderr)
        .contains("master key `privprep-columns`: wrong key"));
    std::fs::write(&old_file, old_text).unwrap();

    let out = w.privprep_ok(&[
        "keys",
        "rotate-encryption",
        "privprep-columns",
        "cols-2",
        "--format",
        "json",
    ]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["outputs"].as_array().unwrap().len(), 2);
    let mut after_keys = privprep::emit::encryption::MasterKeys::new();
    for id in ["privprep-footer", "cols-2"] {
        let text =
            std::fs::read_to_string(w.state().join(format!("keys/master/{id}.key"))).unwrap();
        after_keys.insert(id, privprep_kernels::key::Key::parse(&text).unwrap());
    }
    for (f, rows) in files.iter().zip(&before) {
        assert!(
            read_batches(f, Some(&before_keys)).is_err(),
            "the old key still opens it"
        );
        assert_eq!(&read_batches(f, Some(&after_keys)).unwrap(), rows);
    }
    w.privprep_ok(&["lineage", "verify"]);
    let inspect = w.privprep_ok(&["inspect", files[0].to_str().unwrap(), "--format", "json"]);
    let i: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(i["encryption"]["column_key"]["id"], "cols-2");
    assert!(i["lineage"]
        .as_str()
        .unwrap()
        .starts_with("matches its record"));
}

/// `privprep inspect` on an encrypted, expiring output, against a golden file (run ids,
/// hashes, fingerprints, times and sizes masked). UPDATE_GOLDEN=1 rewrites it.
#[test]
fn inspect_says_what_an_output_is() {
    let w = Work::new();
    w.datagen(300, 11, &[]);
    w.pipeline(
        "sealed",
        "",
        SAFE_COLUMNS,
        "retain_days = 30\n[output.encryption]",
    );
    w.privprep_ok(&["run", "sealed.toml", "--no-progress", "-q"]);
    let out = w.privprep_ok(&["inspect", "out/sealed.parquet"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let masks = [
        (r"\d{8}T\d{6}Z-[0-9a-f]{6}", "<run>"),
        (r"\b[0-9a-f]{64}\b", "<sha256>"),
        (r"\b[0-9a-f]{16}\b", "<fingerprint>"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<time>"),
        (r"\d+ bytes, \d+ rows", "<bytes> bytes, <rows> rows"),
    ];
    let mut masked = text.clone();
    for (re, with) in masks {
        masked = regex::Regex::new(re)
            .unwrap()
            .replace_all(&masked, with)
            .to_string();
    }
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inspect/encrypted.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &masked).unwrap();
    }
    let want = std::fs::read_to_string(&golden).expect("golden file; run with UPDATE_GOLDEN=1");
    assert_eq!(
        masked, want,
        "output of `privprep inspect` changed:\n{text}"
    );

    // `scan` says what the file is, and does not read its encrypted columns.
    let scan = w.privprep_ok(&["scan", "out/sealed.parquet"]);
    let e = String::from_utf8_lossy(&scan.stderr);
    assert!(
        e.contains("is a privprep output") && e.contains("not scanned"),
        "{e}"
    );

    // A copy under another path is not in the lineage store.
    let df_path = w.path().join("other.parquet");
    std::fs::copy(w.path().join("out/sealed.parquet"), &df_path).unwrap();
    let plain = w.privprep_ok(&["inspect", "other.parquet", "--format", "json"]);
    let i: serde_json::Value = serde_json::from_slice(&plain.stdout).unwrap();
    assert_eq!(i["lineage"], "not in this lineage store");
}

/// Access and erasure requests work on encrypted outputs: export reads them with the master
/// keys, forget regenerates them under the same keys, and without the keys forget says it
/// cannot.
#[test]
fn subject_rights_work_on_encrypted_outputs() {
    let w = Work::new();
    w.datagen(500, 21, &[]);
    let plain = pipeline(&w, "plain", SAFE_COLUMNS, None);
    let sealed = pipeline(&w, "sealed", SAFE_COLUMNS, Some(""));
    let p = w.run_ok(&plain);
    w.run_ok(&sealed);
    let by_ticket = subjects_by_ticket(&w.data());
    let plain_file = PathBuf::from(p["outputs"][0]["path"].as_str().unwrap());
    let mut subjects = subjects_in(&plain_file, &by_ticket).into_iter();
    let (first, second) = (subjects.next().unwrap(), subjects.next().unwrap());

    let bundle = w.path().join("bundle.json");
    w.privprep_ok(&[
        "subject",
        "export",
        &first,
        "--out",
        bundle.to_str().unwrap(),
    ]);
    let b: serde_json::Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    let tickets = |o: &serde_json::Value| -> Vec<String> {
        let mut t: Vec<String> = o["rows"]
            .as_array()
            .unwrap_or_else(|| panic!("no rows: {o}"))
            .iter()
            .map(|r| r["ticket_id"].as_str().unwrap().to_string())
            .collect();
        t.sort();
        t
    };
    let outs = b["outputs"].as_array().unwrap();
    assert_eq!(outs.len(), 2);
    assert!(!tickets(&outs[0]).is_empty());
    assert_eq!(tickets(&outs[0]), tickets(&outs[1]));

    let out = w.privprep(&["subject", "forget", &first, "--reason", "erasure request"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sealed_file = w.path().join("out/sealed.parquet");
    let rows = read_batches(&sealed_file, Some(&master_keys(&w.state()))).unwrap();
    let ids = strings(&rows, "ticket_id");
    assert!(tickets(&outs[1]).iter().all(|t| !ids.contains(t)));
    let i = w.privprep_ok(&["inspect", "out/sealed.parquet", "--format", "json"]);
    let i: serde_json::Value = serde_json::from_slice(&i.stdout).unwrap();
    assert_eq!(i["encryption"]["keys"][1][1], "available", "{i}");

    std::fs::remove_file(w.state().join("keys/master/privprep-columns.key")).unwrap();
    let out = w.privprep(&["subject", "forget", &second, "--reason", "erasure request"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("master key `privprep-columns`"), "{text}");
}

/// A rotation killed at any point of its commit leaves, after the next command, every file
/// under the old key or every file under the new one; lineage verifies.
#[test]
fn a_rotation_killed_anywhere_leaves_all_old_or_all_new() {
    let base = Work::new();
    base.datagen(300, 5, &[]);
    base.pipeline(
        "s",
        "",
        SAFE_COLUMNS,
        "[output.split]\ntrain = 0.5\ntest = 0.5\n[output.encryption]",
    );
    base.privprep_ok(&["run", "s.toml", "--no-progress", "-q"]);
    let files = ["out/s.train.parquet", "out/s.test.parquet"];
    let old_keys = master_keys(&base.state());
    let mut completed = false;
    for at in 1..30 {
        let w = Work::new();
        copy_dir(base.path(), w.path());
        let out = w
            .cmd()
            .env(privprep::run::FAULT_ENV, at.to_string())
            .args(["keys", "rotate-encryption", "privprep-columns", "cols-2"])
            .output()
            .unwrap();
        w.privprep_ok(&["lineage", "verify"]);
        let old: Vec<bool> = files
            .iter()
            .map(|f| read_batches(&w.path().join(f), Some(&old_keys)).is_ok())
            .collect();
        assert!(
            old.iter().all(|o| *o) || old.iter().all(|o| !*o),
            "fault point {at}: {old:?}"
        );
        if !old[0] {
            // Rotated: the new key opens both.
            let mut keys = privprep::emit::encryption::MasterKeys::new();
            for id in ["privprep-footer", "cols-2"] {
                let text = std::fs::read_to_string(w.state().join(format!("keys/master/{id}.key")))
                    .unwrap();
                keys.insert(id, privprep_kernels::key::Key::parse(&text).unwrap());
            }
            for f in files {
                assert!(
                    read_batches(&w.path().join(f), Some(&keys)).is_ok(),
                    "fault point {at}"
                );
            }
        }
        if out.status.success() {
            assert!(at > 6, "the rotation passed only {at} fault points");
            completed = true;
            break;
        }
    }
    assert!(completed, "the rotation never completed");
}
