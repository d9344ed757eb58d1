//! Our Parquet must read as users will read it: pyarrow, polars and DuckDB with no options,
//! strings as plain `string`. Skips (saying so) when Python or a reader is not installed;
//! `.ci/run` installs them.

mod common;

use common::*;
use std::process::Command;

const SCRIPT: &str = r#"
import sys, json
path = sys.argv[1]
result = {}
import pyarrow.parquet as pq
t = pq.read_table(path)
result["pyarrow_rows"] = t.num_rows
result["pyarrow_types"] = {f.name: str(f.type) for f in t.schema}
meta = pq.read_metadata(path).metadata or {}
result["lineage"] = json.loads(meta[b"privprep.lineage"]) if b"privprep.lineage" in meta else None
import polars as pl
df = pl.read_parquet(path)
result["polars_rows"] = df.height
result["polars_types"] = {k: str(v) for k, v in df.schema.items()}
import duckdb
result["duckdb_rows"] = duckdb.sql(f"SELECT count(*) FROM read_parquet('{path}')").fetchall()[0][0]
result["duckdb_types"] = {r[0]: r[1] for r in duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()}
print(json.dumps(result))
"#;

fn python_has_readers() -> bool {
    Command::new("python3")
        .args(["-c", "import pyarrow, polars, duckdb"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn pyarrow_polars_and_duckdb_read_the_output_with_no_options() {
    if !python_has_readers() {
        eprintln!("skipping: python3 with pyarrow, polars and duckdb is not installed (pip install pyarrow polars duckdb)");
        return;
    }
    let w = Work::new();
    w.datagen(1200, 31, &[]);
    let p = w.pipeline("py", "", SAFE_COLUMNS, "");
    let (code, s, e) = w.run_json(&p, &[]);
    assert_eq!(code, 0, "{e}");
    let path = w.path().join("out/py.parquet");
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(&path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = s["rows_written"].as_u64().unwrap();
    assert_eq!(r["pyarrow_rows"].as_u64(), Some(rows));
    assert_eq!(r["polars_rows"].as_u64(), Some(rows));
    assert_eq!(r["duckdb_rows"].as_u64(), Some(rows));
    assert_eq!(
        r["lineage"]["run_id"], s["run_id"],
        "footer lineage names the run"
    );
    assert_eq!(r["lineage"]["key_id"], s["key_id"]);
    assert_eq!(r["pyarrow_types"]["email"], "string");
    assert_eq!(r["pyarrow_types"]["created_at"], "timestamp[us]");
    assert_eq!(r["pyarrow_types"]["birth_date"], "int32");
    assert_eq!(r["polars_types"]["email"], "String");
    assert_eq!(r["duckdb_types"]["email"], "VARCHAR");
    assert_eq!(r["duckdb_types"]["priority"], "BIGINT");
}
