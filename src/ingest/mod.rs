//! Sources and dataset manifests: find the input files, hash and pre-scan them, and hand the
//! engine a lazy scan whose columns are typed as the manifest says.
//!
//! Values that do not parse as their declared type are not nulled silently: each row gets the
//! index of its first unparseable column (`__badcol`) so the run can quarantine it.
//! Depends on: `spec` (diagnostics, source format).

pub mod manifest;
pub mod prescan;

pub use manifest::{ColumnClass, ColumnType, Manifest, ManifestColumn};
pub use prescan::{BadRecord, PreScan};

use crate::spec::SourceFormat;
use polars::prelude::*;
use std::path::{Path, PathBuf};

/// Internal column: 0-based record index within its file.
pub const ROW: &str = "__row";
/// Internal column: index of the input file.
pub const FILE: &str = "__file";
/// Internal column: index (in manifest order) of the first column that failed to parse.
pub const BADCOL: &str = "__badcol";

/// Errors reading inputs.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(
        "{path}: cannot read input: {source}\n  = hint: check that the file exists and is readable"
    )]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the engine could not read the file: {message}\n  = hint: check that the file is {format} and matches its manifest")]
    Engine {
        path: String,
        format: &'static str,
        message: String,
    },
}

/// One input file with what its pre-scan found.
#[derive(Debug, Clone)]
pub struct InputFile {
    pub path: PathBuf,
    pub format: SourceFormat,
    pub scan: PreScan,
}

/// Expands globs (relative to `base`) into a sorted, de-duplicated file list.
pub fn expand(base: &Path, patterns: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in patterns {
        let full = crate::spec::resolve(base, p);
        let text = full.to_string_lossy().to_string();
        if p.contains(['*', '?', '[']) {
            let paths = glob::glob(&text).map_err(|e| format!("`{p}` is not a valid glob: {e}"))?;
            let mut found: Vec<PathBuf> = paths
                .filter_map(Result::ok)
                .filter(|p| p.is_file())
                .collect();
            if found.is_empty() {
                return Err(format!(
                    "`{p}` matches no file (looked in {})",
                    base.display()
                ));
            }
            found.sort();
            out.extend(found);
        } else if full.is_file() {
            out.push(full);
        } else {
            return Err(format!("input file `{}` does not exist", full.display()));
        }
    }
    out.dedup();
    Ok(out)
}

/// Column names and engine types of a file, as the engine would read it. CSV columns are all
/// read as strings (types are applied afterwards so bad values can be quarantined).
pub fn file_schema(
    path: &Path,
    format: SourceFormat,
    sep: u8,
) -> Result<Vec<(String, DataType)>, IngestError> {
    let engine_err = |e: PolarsError| IngestError::Engine {
        path: path.display().to_string(),
        format: format.as_str(),
        message: redact(&e),
    };
    match format {
        SourceFormat::Csv => {
            let names = prescan::csv_header(path, sep).map_err(|source| IngestError::Io {
                path: path.display().to_string(),
                source,
            })?;
            Ok(names.into_iter().map(|n| (n, DataType::String)).collect())
        }
        SourceFormat::Ndjson => {
            // Infer from valid lines only: one broken line must not hide the schema (it is
            // quarantined at run time).
            let sample = ndjson_sample(path, 1000).map_err(|source| IngestError::Io {
                path: path.display().to_string(),
                source,
            })?;
            let df = JsonLineReader::new(std::io::Cursor::new(sample))
                .finish()
                .map_err(engine_err)?;
            Ok(df
                .schema()
                .iter()
                .map(|(n, t)| (n.to_string(), t.clone()))
                .collect())
        }
        SourceFormat::Parquet => {
            let mut lf = raw_scan(path, format, sep, &[]).map_err(engine_err)?;
            let schema = lf.collect_schema().map_err(engine_err)?;
            Ok(schema
                .iter()
                .filter(|(n, _)| n.as_str() != ROW)
                .map(|(n, t)| (n.to_string(), t.clone()))
                .collect())
        }
    }
}

/// An engine error message with every quoted part removed: it may quote cell values.
pub fn redact(e: &PolarsError) -> String {
    crate::spec::diag::redact_quoted(&e.to_string(), |_| false)
}

/// Up to `n` lines of an NDJSON file that parse as JSON objects.
fn ndjson_sample(path: &Path, n: usize) -> std::io::Result<Vec<u8>> {
    use std::io::BufRead;
    let reader = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut out = Vec::new();
    let mut taken = 0;
    for line in reader.split(b'\n') {
        let line = line?;
        let t = line.trim_ascii();
        if t.first() == Some(&b'{') && serde_json::from_slice::<serde::de::IgnoredAny>(t).is_ok() {
            out.extend_from_slice(t);
            out.push(b'\n');
            taken += 1;
            if taken >= n {
                break;
            }
        }
    }
    Ok(out)
}

fn plpath(path: &Path) -> PlPath {
    PlPath::new(&path.to_string_lossy())
}

/// A lazy scan of one file with a `__row` index. `csv_names` gives the CSV header (all read
/// as strings).
fn raw_scan(
    path: &Path,
    format: SourceFormat,
    sep: u8,
    csv_names: &[String],
) -> PolarsResult<LazyFrame> {
    let row_index = Some(polars::io::RowIndex {
        name: ROW.into(),
        offset: 0,
    });
    match format {
        SourceFormat::Csv => {
            let schema: Schema = csv_names
                .iter()
                .map(|n| Field::new(n.as_str().into(), DataType::String))
                .collect();
            LazyCsvReader::new(plpath(path))
                .with_has_header(true)
                .with_separator(sep)
                .with_schema(Some(Arc::new(schema)))
                .with_truncate_ragged_lines(true)
                .with_row_index(row_index)
                .finish()
        }
        SourceFormat::Parquet => {
            let args = ScanArgsParquet {
                row_index,
                ..Default::default()
            };
            LazyFrame::scan_parquet(plpath(path), args)
        }
        SourceFormat::Ndjson => LazyJsonLineReader::new(plpath(path))
            .with_row_index(row_index)
            .finish(),
    }
}

/// Pre-scans (hash, records, unparseable records) one input file.
pub fn prescan(path: &Path, format: SourceFormat, sep: u8) -> Result<InputFile, IngestError> {
    let io = |source| IngestError::Io {
        path: path.display().to_string(),
        source,
    };
    let scan = match format {
        SourceFormat::Csv => prescan::prescan_csv(path, sep, true).map_err(io)?,
        SourceFormat::Ndjson => prescan::prescan_ndjson(path).map_err(io)?,
        SourceFormat::Parquet => {
            let (bytes, sha256) = prescan::hash_file(path).map_err(io)?;
            let lf = raw_scan(path, format, sep, &[]).map_err(|e| IngestError::Engine {
                path: path.display().to_string(),
                format: format.as_str(),
                message: redact(&e),
            })?;
            let n = lf
                .clone()
                .select([len()])
                .collect()
                .and_then(|df| {
                    df.column("len")?
                        .get(0)
                        .map(|v| v.extract::<u64>().unwrap_or(0))
                })
                .map_err(|e| IngestError::Engine {
                    path: path.display().to_string(),
                    format: format.as_str(),
                    message: redact(&e),
                })?;
            PreScan::without_lines(bytes, sha256, n)
        }
    };
    Ok(InputFile {
        path: path.to_path_buf(),
        format,
        scan,
    })
}

/// A lazy scan of one input, minus its unparseable records, with `__row` and `__file`.
///
/// NDJSON files with invalid lines are copied without those lines into `scratch` first,
/// because the engine cannot skip an invalid JSON line; row indices are mapped back.
pub fn scan_input(
    input: &InputFile,
    file_index: u32,
    sep: u8,
    csv_names: &[String],
    scratch: &Path,
) -> Result<LazyFrame, IngestError> {
    let err = |e: PolarsError| IngestError::Engine {
        path: input.path.display().to_string(),
        format: input.format.as_str(),
        message: redact(&e),
    };
    let bad: Vec<u64> = input.scan.bad.iter().map(|b| b.record).collect();
    let mut lf = if input.format == SourceFormat::Ndjson && !bad.is_empty() {
        let cleaned = scratch.join(format!("input-{file_index}.ndjson"));
        copy_without_lines(&input.path, &cleaned, &input.scan).map_err(|source| {
            IngestError::Io {
                path: input.path.display().to_string(),
                source,
            }
        })?;
        // Map the cleaned file's row index back to the original record index.
        let kept: Vec<u64> = (0..input.scan.records)
            .filter(|r| bad.binary_search(r).is_err())
            .collect();
        let map = Series::new("__map".into(), kept);
        raw_scan(&cleaned, input.format, sep, csv_names)
            .map_err(err)?
            .with_column(col(ROW).map(
                move |c| {
                    let idx = c.as_materialized_series().cast(&DataType::UInt64)?;
                    let idx = IdxCa::from_vec(
                        ROW.into(),
                        idx.u64()?
                            .into_no_null_iter()
                            .map(|i| i as IdxSize)
                            .collect(),
                    );
                    Ok(map.take(&idx)?.with_name(ROW.into()).into_column())
                },
                |_, f| Ok(Field::new(f.name().clone(), DataType::UInt64)),
            ))
    } else {
        let lf = raw_scan(&input.path, input.format, sep, csv_names).map_err(err)?;
        if bad.is_empty() {
            lf
        } else {
            let bad = Series::new("__bad".into(), bad);
            lf.filter(
                col(ROW)
                    .cast(DataType::UInt64)
                    .is_in(lit(bad).implode(), false)
                    .not(),
            )
        }
    };
    lf = lf.with_columns([
        col(ROW).cast(DataType::UInt64),
        lit(file_index).cast(DataType::UInt32).alias(FILE),
    ]);
    Ok(lf)
}

fn copy_without_lines(src: &Path, dst: &Path, scan: &PreScan) -> std::io::Result<()> {
    use std::io::{BufRead, BufWriter, Write};
    let bad_lines: std::collections::HashSet<u64> = scan.bad.iter().map(|b| b.line).collect();
    let reader = std::io::BufReader::new(std::fs::File::open(src)?);
    let mut out = BufWriter::new(std::fs::File::create(dst)?);
    for (i, line) in reader.split(b'\n').enumerate() {
        let line = line?;
        if !bad_lines.contains(&(i as u64 + 1)) {
            out.write_all(&line)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()
}

/// How one manifest column is brought from the engine's type to its declared type.
#[derive(Debug, Clone, PartialEq)]
pub enum Conversion {
    /// Already the declared type.
    AsIs,
    /// Parse text; failures quarantine the row.
    Parse,
    /// Lossless engine cast (e.g. int → float, date → datetime).
    Cast,
}

/// Decides how a source column of engine type `have` becomes manifest type `want`;
/// `None` when it cannot.
pub fn conversion(have: &DataType, want: ColumnType) -> Option<Conversion> {
    use ColumnType as T;
    let conv = match (have, want) {
        (DataType::String, T::String) => Conversion::AsIs,
        (DataType::String, _) => Conversion::Parse,
        (DataType::Int64, T::Int64)
        | (DataType::Float64, T::Float64)
        | (DataType::Boolean, T::Bool)
        | (DataType::Date, T::Date) => Conversion::AsIs,
        (DataType::Datetime(TimeUnit::Microseconds, None), T::Datetime) => Conversion::AsIs,
        (t, T::Int64) if t.is_integer() => Conversion::Cast,
        (t, T::Float64) if t.is_primitive_numeric() => Conversion::Cast,
        (DataType::Date | DataType::Datetime(_, _), T::Datetime | T::Date) => Conversion::Cast,
        (DataType::Null, _) => Conversion::Cast,
        (t, T::String) if t.is_primitive_numeric() => Conversion::Cast,
        _ => return None,
    };
    Some(conv)
}

/// The engine type of a manifest type.
pub fn engine_type(t: ColumnType) -> DataType {
    match t {
        ColumnType::String => DataType::String,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Date => DataType::Date,
        ColumnType::Datetime => DataType::Datetime(TimeUnit::Microseconds, None),
    }
}

/// Typed expressions for every manifest column (aliased to the column name) plus the
/// `__badcol` expression: index of the first column whose non-empty text did not parse.
pub fn typed_columns(manifest: &Manifest, conversions: &[Conversion]) -> (Vec<Expr>, Expr) {
    let mut typed = Vec::new();
    let mut bad_flags: Vec<(usize, Expr)> = Vec::new();
    for (i, (c, conv)) in manifest.spec.columns.iter().zip(conversions).enumerate() {
        let name = c.name.get_ref().as_str();
        let ty = *c.ty.get_ref();
        let expr = match conv {
            Conversion::AsIs => col(name),
            Conversion::Cast => col(name).cast(engine_type(ty)),
            Conversion::Parse => {
                let parsed = parse_expr(col(name), c);
                let present = col(name)
                    .is_not_null()
                    .and(col(name).str().strip_chars(lit(NULL)).neq(lit("")));
                bad_flags.push((i, present.and(parsed.clone().is_null())));
                // Empty text is a missing value, not an error.
                parsed
            }
        };
        typed.push(expr.alias(name));
    }
    // Nested when/then from the last column backwards, so the first failing column wins.
    let badcol = bad_flags
        .into_iter()
        .rev()
        .fold(lit(NULL).cast(DataType::Int32), |acc, (i, flag)| {
            when(flag).then(lit(i as i32)).otherwise(acc)
        });
    (typed, badcol.alias(BADCOL))
}

fn parse_expr(text: Expr, c: &ManifestColumn) -> Expr {
    let text = text.str().strip_chars(lit(NULL));
    match c.ty.get_ref() {
        ColumnType::String => text,
        ColumnType::Int64 => text.cast(DataType::Int64),
        ColumnType::Float64 => text.cast(DataType::Float64),
        ColumnType::Bool => {
            let t = Series::new(
                "t".into(),
                ["true", "True", "TRUE", "1", "yes", "Yes", "YES", "y", "Y"],
            );
            let f = Series::new(
                "f".into(),
                ["false", "False", "FALSE", "0", "no", "No", "NO", "n", "N"],
            );
            when(text.clone().is_in(lit(t).implode(), false))
                .then(lit(true))
                .when(text.is_in(lit(f).implode(), false))
                .then(lit(false))
                .otherwise(lit(NULL).cast(DataType::Boolean))
        }
        ColumnType::Date => text.str().to_date(StrptimeOptions {
            format: Some(c.temporal_format().into()),
            strict: false,
            exact: true,
            cache: true,
        }),
        ColumnType::Datetime => text.str().to_datetime(
            Some(TimeUnit::Microseconds),
            None,
            StrptimeOptions {
                format: Some(c.temporal_format().into()),
                strict: false,
                exact: true,
                cache: true,
            },
            lit("raise"),
        ),
    }
}
