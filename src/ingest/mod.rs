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
    #[error("{path}: the file is empty: there is no {what} to read the columns from\n  = hint: a {format} source needs a {what} naming its columns; write the data, or remove the file from the [source] path")]
    Empty {
        path: String,
        format: &'static str,
        /// What is missing: `header line`, `JSON object line`.
        what: &'static str,
    },
    #[error("{path}: the CSV header names {columns}\n  = hint: give every column its own name; reading one of them would silently drop the other")]
    DuplicateColumns {
        path: String,
        /// e.g. "`email` twice (fields 2 and 9)".
        columns: String,
    },
}

/// One input file with what its pre-scan found.
#[derive(Debug, Clone)]
pub struct InputFile {
    pub path: PathBuf,
    pub format: SourceFormat,
    pub scan: PreScan,
}

/// Expands globs (relative to `base`) into a sorted, de-duplicated file list. Inputs must be
/// regular files: a FIFO or a device is refused (reading one would block or never end), and a
/// glob skips the folders it matches.
pub fn expand(base: &Path, patterns: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in patterns {
        let full = crate::spec::resolve(base, p);
        let text = full.to_string_lossy().to_string();
        if p.contains(['*', '?', '[']) {
            let paths = glob::glob(&text).map_err(|e| format!("`{p}` is not a valid glob: {e}"))?;
            let mut found: Vec<PathBuf> = Vec::new();
            for path in paths.filter_map(Result::ok) {
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => found.push(path),
                    Ok(m) if m.is_dir() => {}
                    Ok(m) => return Err(not_regular(&path, &m)),
                    Err(_) => {}
                }
            }
            if found.is_empty() {
                return Err(format!(
                    "`{p}` matches no file (looked in {})",
                    base.display()
                ));
            }
            found.sort();
            out.extend(found);
        } else {
            match std::fs::metadata(&full) {
                Ok(m) if m.is_file() => out.push(full),
                Ok(m) => return Err(not_regular(&full, &m)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(format!("input file `{}` does not exist", full.display()))
                }
                Err(e) => return Err(format!("cannot read input file `{}`: {e}", full.display())),
            }
        }
    }
    out.dedup();
    Ok(out)
}

fn not_regular(path: &Path, meta: &std::fs::Metadata) -> String {
    format!(
        "input file `{}` is {}, not a regular file",
        path.display(),
        crate::spec::sidefile::file_kind(meta)
    )
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
            if names.is_empty() {
                return Err(IngestError::Empty {
                    path: path.display().to_string(),
                    format: format.as_str(),
                    what: "header line",
                });
            }
            if let Some(columns) = duplicate_names(&names) {
                return Err(IngestError::DuplicateColumns {
                    path: path.display().to_string(),
                    columns,
                });
            }
            Ok(names.into_iter().map(|n| (n, DataType::String)).collect())
        }
        SourceFormat::Ndjson => {
            // Infer from valid lines only: one broken line must not hide the schema (it is
            // quarantined at run time).
            let sample = ndjson_sample(path, 1000).map_err(|source| IngestError::Io {
                path: path.display().to_string(),
                source,
            })?;
            if sample.is_empty() {
                return Err(IngestError::Empty {
                    path: path.display().to_string(),
                    format: format.as_str(),
                    what: "JSON object line",
                });
            }
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

/// The names used more than once, e.g. "`email` twice (fields 2 and 9)", or `None`.
fn duplicate_names(names: &[String]) -> Option<String> {
    let mut fields: std::collections::HashMap<&str, Vec<usize>> = Default::default();
    for (i, n) in names.iter().enumerate() {
        fields.entry(n.as_str()).or_default().push(i + 1);
    }
    let mut dups: Vec<(&str, Vec<usize>)> =
        fields.into_iter().filter(|(_, f)| f.len() > 1).collect();
    if dups.is_empty() {
        return None;
    }
    dups.sort_by_key(|(_, f)| f[0]);
    let parts: Vec<String> = dups
        .iter()
        .map(|(name, f)| {
            let times = match f.len() {
                2 => "twice".to_string(),
                n => format!("{n} times"),
            };
            let list: Vec<String> = f.iter().map(usize::to_string).collect();
            let list = match list.split_last() {
                Some((last, rest)) if !rest.is_empty() => {
                    format!("{} and {last}", rest.join(", "))
                }
                _ => list.join(""),
            };
            format!("`{name}` {times} (fields {list})")
        })
        .collect();
    Some(parts.join(", "))
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
        // Lines the pre-scan quarantines (invalid, or with an object or array value) must not
        // shape the schema either.
        if prescan::json_line(t) == prescan::JsonLine::Flat {
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

/// A UDF of the run: `f` maps `input`'s column, elementwise. Built with `map_many`, which
/// unlike `map` does not mark it as possibly re-entering the engine: polars evaluates such an
/// expression on a blocking thread of its I/O runtime, a hand-over to another thread for every
/// morsel and expression, and the run's UDFs only map values.
pub(crate) fn value_map<F, DT>(input: Expr, f: F, output: DT) -> Expr
where
    F: Fn(Column) -> PolarsResult<Column> + Send + Sync + 'static,
    DT: Fn(&Schema, &Field) -> PolarsResult<Field> + Send + Sync + 'static,
{
    input.map_many(
        move |cols: &mut [Column]| f(std::mem::take(&mut cols[0])),
        &[],
        move |schema: &Schema, fields: &[Field]| output(schema, &fields[0]),
    )
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

/// Pre-scans one input file: its records and those that cannot be split into fields. The
/// SHA-256 is left empty: [`hash_inputs`] computes it beside the run, since nothing needs it
/// before the outputs are finished. A CSV file's identifier fields are keyed into `ids` on the
/// way, when given.
pub fn prescan(
    path: &Path,
    format: SourceFormat,
    sep: u8,
    ids: Option<prescan::IdGather>,
) -> Result<InputFile, IngestError> {
    let io = |source| IngestError::Io {
        path: path.display().to_string(),
        source,
    };
    let scan = match (format, ids) {
        (SourceFormat::Csv, Some(ids)) => {
            prescan::scan_csv_gathering(path, sep, true, ids).map_err(io)?
        }
        (SourceFormat::Csv, None) => prescan::scan_csv(path, sep, true, false).map_err(io)?,
        (SourceFormat::Ndjson, _) => prescan::scan_ndjson(path, false).map_err(io)?,
        (SourceFormat::Parquet, _) => {
            let bytes = std::fs::metadata(path).map_err(io)?.len();
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
            PreScan::without_lines(bytes, String::new(), n)
        }
    };
    Ok(InputFile {
        path: path.to_path_buf(),
        format,
        scan,
    })
}

/// The size and SHA-256 of every input, computed on a thread of its own while the run goes
/// on; [`InputHashes::attach`] waits for them.
pub fn hash_inputs(files: &[PathBuf]) -> InputHashes {
    let files = files.to_vec();
    InputHashes(std::thread::spawn(move || {
        files
            .iter()
            .map(|f| {
                prescan::hash_file(f).map_err(|source| IngestError::Io {
                    path: f.display().to_string(),
                    source,
                })
            })
            .collect()
    }))
}

/// The inputs' hashes being computed.
pub struct InputHashes(std::thread::JoinHandle<Result<Vec<(u64, String)>, IngestError>>);

impl InputHashes {
    /// Waits for the hashes and puts them in the pre-scans. A file whose size changed since its
    /// pre-scan is an error: the run read something else than what it hashed.
    pub fn attach(self, inputs: &mut [InputFile]) -> Result<(), IngestError> {
        let hashes = self.0.join().map_err(|_| IngestError::Io {
            path: "the inputs".into(),
            source: std::io::Error::other("the hashing thread failed"),
        })??;
        for (input, (bytes, sha256)) in inputs.iter_mut().zip(hashes) {
            if bytes != input.scan.bytes {
                return Err(IngestError::Io {
                    path: input.path.display().to_string(),
                    source: std::io::Error::other("the file changed while the run read it"),
                });
            }
            input.scan.sha256 = sha256;
        }
        Ok(())
    }
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
    let mut bad: Vec<u64> = input.scan.bad.iter().map(|b| b.record).collect();
    bad.sort_unstable();
    let io = |source| IngestError::Io {
        path: input.path.display().to_string(),
        source,
    };
    // A copy without the bad records when the engine cannot skip them by index: it cannot
    // skip an invalid JSON line, nor decode a CSV record with invalid UTF-8 or a quote that is
    // never closed.
    let cleaned = match input.format {
        SourceFormat::Ndjson if !bad.is_empty() => {
            let cleaned = scratch.join(format!("input-{file_index}.ndjson"));
            copy_without_lines(&input.path, &cleaned, &input.scan).map_err(io)?;
            Some(cleaned)
        }
        SourceFormat::Csv if input.scan.needs_clean_copy() => {
            let cleaned = scratch.join(format!("input-{file_index}.csv"));
            let mut spans = input.scan.bad_spans().to_vec();
            spans.sort_unstable();
            prescan::copy_without_spans(&input.path, &cleaned, &spans).map_err(io)?;
            Some(cleaned)
        }
        _ => None,
    };
    let mut lf = if let Some(cleaned) = cleaned {
        // Map the cleaned file's row index back to the original record index.
        let kept: Vec<u64> = (0..input.scan.records)
            .filter(|r| bad.binary_search(r).is_err())
            .collect();
        let map = Series::new("__map".into(), kept);
        raw_scan(&cleaned, input.format, sep, csv_names)
            .map_err(err)?
            .with_column(value_map(
                col(ROW),
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

/// Typed expressions for every manifest column (aliased to the column name), with a flag per
/// parsed column that says whether its text held a value (`__present{i}`), plus the
/// `__badcol` expression over them: index of the first column whose non-empty text did not
/// parse. Select `values` first, then add `badcol`: each value is parsed once, and its
/// presence read without a trimmed copy of the column.
///
/// `__badcol` is one flat `coalesce` over `when(failed_i).then(i)` in manifest order, so the
/// first failing column wins and the expression is as deep for 20,000 columns as for one (a
/// nested when/then per column overflowed the stack from about 1,750 typed columns).
pub fn typed_columns(manifest: &Manifest, conversions: &[Conversion]) -> TypedColumns {
    let mut values = Vec::new();
    let mut bad_flags: Vec<(usize, Expr)> = Vec::new();
    for (i, (c, conv)) in manifest.spec.columns.iter().zip(conversions).enumerate() {
        let name = c.name.get_ref().as_str();
        let ty = *c.ty.get_ref();
        let expr = match conv {
            Conversion::AsIs => col(name),
            Conversion::Cast => col(name).cast(engine_type(ty)),
            Conversion::Parse => {
                let present = present_name(i);
                values.push(present_expr(col(name)).alias(present.as_str()));
                // Empty text is a missing value, not an error.
                bad_flags.push((i, col(present.as_str()).and(col(name).is_null())));
                parse_expr(col(name), c)
            }
        };
        values.push(expr.alias(name));
    }
    let none = || lit(NULL).cast(DataType::Int32);
    let mut candidates: Vec<Expr> = bad_flags
        .into_iter()
        .map(|(i, flag)| when(flag).then(lit(i as i32)).otherwise(none()))
        .collect();
    // `coalesce` needs at least one input; the trailing null also fixes the type when none is.
    candidates.push(none());
    let badcol = coalesce(&candidates).cast(DataType::Int32);
    TypedColumns {
        values,
        badcol: badcol.alias(BADCOL),
    }
}

/// What [`typed_columns`] gives.
pub struct TypedColumns {
    /// The typed columns and the presence flags of the parsed ones.
    pub values: Vec<Expr>,
    /// `__badcol`, over the columns of `values`.
    pub badcol: Expr,
}

/// The presence flag of manifest column `i` (parsed from text).
fn present_name(i: usize) -> String {
    format!("__present{i}")
}

/// True where the text holds a value (anything but whitespace; null is absent).
fn present_expr(text: Expr) -> Expr {
    use privprep_kernels::parse;
    value_map(
        text,
        |c| {
            let ca = c.str()?;
            let out: BooleanChunked = texts(ca)
                .map(|v| Some(v.is_some_and(parse::is_present)))
                .collect();
            Ok(out.with_name(ca.name().clone()).into_column())
        },
        |_: &Schema, field: &Field| Ok(Field::new(field.name().clone(), DataType::Boolean)),
    )
}

fn parse_expr(text: Expr, c: &ManifestColumn) -> Expr {
    use privprep_kernels::parse;
    // The kernels trim each value as they read it: no stripped copy of the column.
    match c.ty.get_ref() {
        ColumnType::String => text.str().strip_chars(lit(NULL)),
        ColumnType::Int64 => parsed::<Int64Type, _>(text, DataType::Int64, parse::int64),
        ColumnType::Float64 => parsed::<Float64Type, _>(text, DataType::Float64, parse::float64),
        ColumnType::Bool => parsed::<BooleanType, _>(text, DataType::Boolean, parse::boolean),
        ColumnType::Date => {
            let format = c.temporal_format().to_string();
            parsed::<Int32Type, _>(text, DataType::Int32, move |v| parse::date_days(v, &format))
                .cast(DataType::Date)
        }
        ColumnType::Datetime => {
            let format = c.format.clone();
            parsed::<Int64Type, _>(text, DataType::Int64, move |v| {
                parse::datetime_micros(v, format.as_deref())
            })
            .cast(DataType::Datetime(TimeUnit::Microseconds, None))
        }
    }
}

/// A text column's values, array by array (the chunked array's own iterator is dynamically
/// dispatched per value).
pub(crate) fn texts(ca: &StringChunked) -> impl Iterator<Item = Option<&str>> {
    ca.downcast_iter().flat_map(|arr| arr.iter())
}

/// `text` read value by value with a kernel of `privprep_kernels::parse` (the rules every
/// engine quarantines by); a value that does not read is null.
fn parsed<T, V>(
    text: Expr,
    dtype: DataType,
    f: impl Fn(&str) -> Option<V> + Send + Sync + 'static,
) -> Expr
where
    T: PolarsDataType,
    ChunkedArray<T>: IntoColumn + FromIterator<Option<V>>,
{
    value_map(
        text,
        move |c| {
            let ca = c.str()?;
            let out: ChunkedArray<T> = texts(ca).map(|v| v.and_then(&f)).collect();
            Ok(out.with_name(ca.name().clone()).into_column())
        },
        move |_: &Schema, field: &Field| Ok(Field::new(field.name().clone(), dtype.clone())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest of `n` columns `c0..`: the first is the string subject, the rest int64.
    fn wide_manifest(n: usize) -> Manifest {
        let mut text = String::from(
            "dataset_id = \"w\"\nowner = \"o\"\nlicense = \"l\"\norigin = \"o\"\ncollected_at = \"2026\"\nsubject_column = \"c0\"\nprovenance_tag = \"app\"\nconsent_purposes_column = \"c0\"\nconsent_status_column = \"c0\"\n",
        );
        for i in 0..n {
            let ty = if i == 0 { "string" } else { "int64" };
            text.push_str(&format!(
                "[[columns]]\nname = \"c{i}\"\ntype = \"{ty}\"\nclass = \"public\"\n"
            ));
        }
        let spec = toml::from_str(&text).unwrap();
        Manifest {
            path: PathBuf::from("manifest.toml"),
            text,
            spec,
        }
    }

    /// Without a `format`, datetime columns read ISO 8601 / RFC 3339 as systems write it:
    /// `Z` and offsets (converted to UTC), a space for the `T`, fractions of a second.
    #[test]
    fn datetimes_without_a_format_read_iso_8601_with_zones_and_fractions() {
        let text = "dataset_id = \"d\"\nowner = \"o\"\nlicense = \"l\"\norigin = \"o\"\ncollected_at = \"2026\"\nsubject_column = \"t\"\nprovenance_tag = \"app\"\nconsent_purposes_column = \"t\"\nconsent_status_column = \"t\"\n[[columns]]\nname = \"t\"\ntype = \"datetime\"\nclass = \"public\"\n";
        let spec: manifest::ManifestSpec = toml::from_str(text).unwrap();
        let c = &spec.columns[0];
        let values = [
            "2026-02-23T18:54:44",
            "2026-02-23T18:54:44Z",
            "2026-02-23T19:54:44+01:00",
            "2026-02-23T13:24:44-0530",
            "2026-02-23 18:54:44",
            "2026-02-23T18:54:44.250Z",
            "2026-02-23",
            "23/02/2026 18:54",
            "2026-02-23T18:54:44+25:00",
        ];
        let df = df!("t" => values).unwrap();
        let out = df
            .lazy()
            .select([parse_expr(col("t"), c)
                .dt()
                .timestamp(TimeUnit::Milliseconds)])
            .collect()
            .unwrap();
        let got: Vec<Option<i64>> = out
            .column("t")
            .unwrap()
            .i64()
            .unwrap()
            .into_iter()
            .collect();
        let utc = 1_771_872_884_000; // 2026-02-23T18:54:44Z
        assert_eq!(
            got,
            vec![
                Some(utc),
                Some(utc),
                Some(utc),
                Some(utc),
                Some(utc),
                Some(utc + 250),
                None,
                None,
                None
            ]
        );
        assert!(c.temporal_format().starts_with("ISO 8601"));
    }

    /// Regression: `__badcol` was one nested when/then per typed column, which overflowed the
    /// stack from about 1,750 columns (and 20,000 took minutes before aborting).
    #[test]
    fn badcol_over_3000_typed_columns_is_flat_and_reports_the_first_failing_column() {
        let n = 3000;
        let m = wide_manifest(n);
        let conversions: Vec<Conversion> = (0..n)
            .map(|i| {
                if i == 0 {
                    Conversion::AsIs
                } else {
                    Conversion::Parse
                }
            })
            .collect();
        // Row 0: all good. Row 1: columns 7 and 2500 fail. Row 2: only the last fails.
        // Row 3: blank text is a missing value, not a failure.
        let columns: Vec<Column> = (0..n)
            .map(|i| {
                let v = |row: usize| -> Option<String> {
                    match (row, i) {
                        (1, 7) | (1, 2500) | (2, 2999) => Some("x".into()),
                        (3, _) if i > 0 => Some(" ".into()),
                        _ => Some(i.to_string()),
                    }
                };
                Column::new(format!("c{i}").into(), (0..4).map(v).collect::<Vec<_>>())
            })
            .collect();
        let df = DataFrame::new(columns).unwrap();
        let started = std::time::Instant::now();
        // Built and run on a 2 MiB stack (the default for threads): the expression must be flat.
        let out = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let typed = typed_columns(&m, &conversions);
                df.lazy()
                    .select(typed.values)
                    .with_column(typed.badcol)
                    .collect()
            })
            .unwrap()
            .join()
            .expect("no stack overflow")
            .unwrap();
        let bad: Vec<Option<i32>> = out.column(BADCOL).unwrap().i32().unwrap().iter().collect();
        assert_eq!(bad, vec![None, Some(7), Some(2999), None]);
        // Each column, a presence flag per parsed one, and `__badcol`.
        assert_eq!(out.width(), n + (n - 1) + 1);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn badcol_without_typed_columns_is_null() {
        let m = wide_manifest(1);
        let typed = typed_columns(&m, &[Conversion::AsIs]);
        let df = df!("c0" => ["a", "b"]).unwrap();
        let out = df
            .lazy()
            .select(typed.values)
            .with_column(typed.badcol)
            .collect()
            .unwrap();
        assert_eq!(out.column(BADCOL).unwrap().null_count(), 2);
        assert_eq!(out.column(BADCOL).unwrap().dtype(), &DataType::Int32);
    }

    #[test]
    fn duplicate_header_names_are_listed_with_their_fields() {
        let names: Vec<String> = ["id", "email", "x", "email", "id", "email"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            duplicate_names(&names).unwrap(),
            "`id` twice (fields 1 and 5), `email` 3 times (fields 2, 4 and 6)"
        );
        assert_eq!(duplicate_names(&names[..3]), None);
    }

    /// Regression: a second `email` column in a CSV header was silently dropped.
    #[test]
    fn duplicate_csv_header_is_refused_naming_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.csv");
        std::fs::write(&p, "id,email,email\n1,a,b\n").unwrap();
        let e = file_schema(&p, SourceFormat::Csv, b',').unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("`email` twice (fields 2 and 3)"), "{shown}");
        assert!(shown.contains("d.csv"), "{shown}");
    }

    /// Regression: an empty CSV was reported as one error per manifest column plus a column
    /// with an empty name.
    #[test]
    fn empty_csv_is_one_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.csv");
        std::fs::write(&p, "").unwrap();
        let e = file_schema(&p, SourceFormat::Csv, b',').unwrap_err();
        assert!(matches!(e, IngestError::Empty { .. }), "{e}");
        assert!(e.to_string().contains("e.csv: the file is empty"), "{e}");
    }

    /// polars marks every `map` as possibly re-entrant (run on its I/O runtime's blocking
    /// threads); the run's UDFs differ from a `map` by that mark and nothing else, and compute
    /// the same.
    #[test]
    fn the_run_s_udfs_are_not_marked_re_entrant() {
        use polars_plan::prelude::FunctionFlags;
        let flags = |e: &Expr| match e {
            Expr::AnonymousFunction { options, .. } => options.flags,
            _ => panic!("not a UDF"),
        };
        let double = |c: Column| Ok((c.as_materialized_series() * 2).into_column());
        let same = |_: &Schema, f: &Field| Ok(f.clone());
        let before = flags(&col("a").map(double, same));
        assert!(before.contains(FunctionFlags::OPTIONAL_RE_ENTRANT));
        let udf = value_map(col("a"), double, same);
        let after = flags(&udf);
        assert!(!after.contains(FunctionFlags::OPTIONAL_RE_ENTRANT));
        assert_eq!(after | FunctionFlags::OPTIONAL_RE_ENTRANT, before);
        let df = df!("a" => [1i64, 2, 3]).unwrap();
        let out = df
            .lazy()
            .select([udf])
            .collect_with_engine(Engine::Streaming)
            .unwrap();
        let a: Vec<Option<i64>> = out
            .column("a")
            .unwrap()
            .i64()
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(a, vec![Some(2), Some(4), Some(6)]);
    }

    /// Regression: a FIFO or device as input was reported as "does not exist".
    #[cfg(unix)]
    #[test]
    fn fifo_input_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("in.csv");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = expand(dir.path(), &["in.csv".to_string()]).unwrap_err();
        assert!(
            e.ends_with("in.csv` is a FIFO (named pipe), not a regular file"),
            "{e}"
        );
        let e = expand(dir.path(), &["*.csv".to_string()]).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let e = expand(Path::new("/dev"), &["null".to_string()]).unwrap_err();
        assert!(
            e.contains("is a character device, not a regular file"),
            "{e}"
        );
        let e = expand(dir.path(), &["missing.csv".to_string()]).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
    }
}
