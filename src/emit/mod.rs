//! Emit: engine frames to plain, well-typed Parquet, written atomically.
//!
//! Frames cross from the engine to arrow-rs through the Arrow C Data Interface (no copy), string
//! views are cast to plain `string`, and each file is written to a hidden temporary file in the
//! target folder, fsynced and renamed, so a crash leaves the previous output or none.
//! Depends on: `spec` (folder of a path).

use arrow::array::{make_array, ArrayRef, RecordBatch};
use arrow::datatypes::{
    DataType as ArrowType, Field as ArrowField, Schema as ArrowSchema, SchemaRef,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use polars::prelude::{CompatLevel, DataFrame};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod encryption;

/// Footer key holding the run's lineage summary.
pub const LINEAGE_KEY: &str = "privprep.lineage";
/// Marker in temporary file names; stale ones are removed by the next run.
pub const TMP_MARKER: &str = ".privprep-tmp-";

/// Errors writing outputs.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error("{path}: cannot write output: {source}\n  = hint: check that the folder exists or can be created and that there is free disk space")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: Parquet writer failed: {message}")]
    Parquet { path: String, message: String },
    #[error("column `{column}`: cannot hand the column to the Parquet writer: {message}")]
    Convert { column: String, message: String },
    #[error("{path}: cannot encrypt the output: {source}")]
    Encrypt {
        path: String,
        #[source]
        source: encryption::CryptoError,
    },
}

/// Converts an engine frame to an Arrow record batch with plain `string` columns.
pub fn to_record_batch(df: &DataFrame, schema: &SchemaRef) -> Result<RecordBatch, EmitError> {
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(df.width());
    for (column, field) in df.get_columns().iter().zip(schema.fields()) {
        let series = column.as_materialized_series().rechunk();
        let conv = |message: String| EmitError::Convert {
            column: column.name().to_string(),
            message,
        };
        let array = series.to_arrow(0, CompatLevel::newest());
        let pl_field = series.field().to_arrow(CompatLevel::newest());
        // SAFETY: both sides implement the Arrow C Data Interface; the structs are #[repr(C)]
        // with the same layout, and ownership of the buffers moves to arrow-rs, whose release
        // callback frees them through polars' exporter.
        let data = unsafe {
            let c_array = polars_arrow::ffi::export_array_to_c(array);
            let c_schema = polars_arrow::ffi::export_field_to_c(&pl_field);
            let c_array: arrow::ffi::FFI_ArrowArray = std::mem::transmute(c_array);
            let c_schema: arrow::ffi::FFI_ArrowSchema = std::mem::transmute(c_schema);
            arrow::ffi::from_ffi(c_array, &c_schema).map_err(|e| conv(e.to_string()))?
        };
        let mut array = make_array(data);
        if array.data_type() != field.data_type() {
            array =
                arrow::compute::cast(&array, field.data_type()).map_err(|e| conv(e.to_string()))?;
        }
        arrays.push(array);
    }
    // The row count stands on its own: a file of a DP-only pipeline may have no column.
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(df.height()));
    RecordBatch::try_new_with_options(schema.clone(), arrays, &options).map_err(|e| {
        EmitError::Convert {
            column: "*".into(),
            message: e.to_string(),
        }
    })
}

/// The Arrow schema users get: the engine's schema with string views as plain strings.
pub fn arrow_schema(df_schema: &polars::prelude::Schema) -> Result<SchemaRef, EmitError> {
    let mut fields = Vec::new();
    for (name, dtype) in df_schema.iter() {
        let pl_field = polars::prelude::Field::new(name.clone(), dtype.clone())
            .to_arrow(CompatLevel::newest());
        // SAFETY: see `to_record_batch`.
        let field = unsafe {
            let c_schema = polars_arrow::ffi::export_field_to_c(&pl_field);
            let c_schema: arrow::ffi::FFI_ArrowSchema = std::mem::transmute(c_schema);
            ArrowField::try_from(&c_schema).map_err(|e| EmitError::Convert {
                column: name.to_string(),
                message: e.to_string(),
            })?
        };
        let ty = plain_type(field.data_type());
        let field = ArrowField::new(field.name(), ty, true);
        fields.push(field);
    }
    Ok(Arc::new(ArrowSchema::new(fields)))
}

fn plain_type(t: &ArrowType) -> ArrowType {
    match t {
        ArrowType::Utf8View | ArrowType::LargeUtf8 => ArrowType::Utf8,
        ArrowType::BinaryView | ArrowType::LargeBinary => ArrowType::Binary,
        other => other.clone(),
    }
}

/// Writer settings shared by every output of a run.
#[derive(Debug, Clone)]
pub struct ParquetSettings {
    pub row_group_size: usize,
    /// JSON put in the footer under [`LINEAGE_KEY`]; `None` when it is only known once the
    /// rows are written ([`AtomicParquet::set_lineage`]).
    pub lineage_json: Option<String>,
    /// Parquet modular encryption: the columns, key ids and the master keys that wrap each
    /// file's fresh data keys.
    pub encryption: Option<encryption::Encryption>,
    /// Columns written without dictionary encoding: free text, whose values hardly repeat, so
    /// a dictionary is built for each row group only to be given up.
    pub plain_columns: Vec<String>,
}

/// A Parquet file being written to a temporary path, renamed into place on commit.
pub struct AtomicParquet {
    final_path: PathBuf,
    tmp_path: PathBuf,
    writer: Option<ArrowWriter<BufWriter<HashingFile>>>,
    rows: u64,
}

/// The temporary file, hashed as it is written: the writer only appends, so the hash of what
/// went through it is the file's, and finishing does not read the file back.
struct HashingFile {
    file: File,
    sha256: Sha256,
    /// Bytes written since the kernel was last asked to start writing them out.
    unsynced: u64,
}

/// Written bytes after which the kernel is asked to start writing them to disk, so the fsync
/// at the end waits for little.
const WRITEBACK_BYTES: u64 = 8 << 20;

impl std::io::Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.sha256.update(&buf[..n]);
        self.unsynced += n as u64;
        if self.unsynced >= WRITEBACK_BYTES {
            self.start_writeback();
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl HashingFile {
    /// Asks the kernel to start writing the file's dirty pages out, without waiting for it
    /// (Linux; elsewhere the fsync at the end does all of it).
    fn start_writeback(&mut self) {
        self.unsynced = 0;
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid open descriptor; the call only starts write-back of its pages.
            unsafe {
                libc::sync_file_range(self.file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE)
            };
        }
    }
}

impl AtomicParquet {
    /// Creates the temporary file next to `final_path`.
    pub fn create(
        final_path: &Path,
        run_id: &str,
        schema: SchemaRef,
        settings: &ParquetSettings,
    ) -> Result<Self, EmitError> {
        let io = |source| EmitError::Io {
            path: final_path.display().to_string(),
            source,
        };
        let dir = crate::spec::base_dir(final_path);
        std::fs::create_dir_all(&dir).map_err(io)?;
        let tmp_path = tmp_path_for(final_path, run_id);
        let file = File::create(&tmp_path).map_err(io)?;
        let mut props = WriterProperties::builder();
        if let Some(e) = &settings.encryption {
            let file_props = encryption::file_encryption(&e.record, &e.keys).map_err(|source| {
                EmitError::Encrypt {
                    path: final_path.display().to_string(),
                    source,
                }
            })?;
            props = props.with_file_encryption_properties(file_props);
            // Min/max statistics in a footer would show values of the encrypted columns.
            for c in &e.record.columns {
                props = props.set_column_statistics_enabled(
                    parquet::schema::types::ColumnPath::from(c.as_str()),
                    parquet::file::properties::EnabledStatistics::None,
                );
            }
        }
        for c in &settings.plain_columns {
            props = props.set_column_dictionary_enabled(
                parquet::schema::types::ColumnPath::from(c.as_str()),
                false,
            );
        }
        let props = props
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
            .set_max_row_group_row_count(Some(settings.row_group_size))
            .set_key_value_metadata(
                settings
                    .lineage_json
                    .as_ref()
                    .map(|json| vec![KeyValue::new(LINEAGE_KEY.to_string(), json.clone())]),
            )
            .set_created_by(format!("privprep {}", env!("CARGO_PKG_VERSION")))
            .build();
        let file = HashingFile {
            file,
            sha256: Sha256::new(),
            unsynced: 0,
        };
        let writer =
            ArrowWriter::try_new(BufWriter::with_capacity(1 << 20, file), schema, Some(props))
                .map_err(|e| EmitError::Parquet {
                    path: final_path.display().to_string(),
                    message: e.to_string(),
                })?;
        Ok(AtomicParquet {
            final_path: final_path.to_path_buf(),
            tmp_path,
            writer: Some(writer),
            rows: 0,
        })
    }

    /// Appends one batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), EmitError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let w = self.writer.as_mut().ok_or_else(|| EmitError::Parquet {
            path: self.final_path.display().to_string(),
            message: "writer already closed".into(),
        })?;
        w.write(batch).map_err(|e| EmitError::Parquet {
            path: self.final_path.display().to_string(),
            message: e.to_string(),
        })?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Puts the lineage JSON in the footer (for a file created without it), before
    /// [`AtomicParquet::finish`].
    pub fn set_lineage(&mut self, json: String) {
        if let Some(w) = self.writer.as_mut() {
            w.append_key_value_metadata(KeyValue::new(LINEAGE_KEY.to_string(), json));
        }
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Final path.
    pub fn path(&self) -> &Path {
        &self.final_path
    }

    /// The temporary file being written (what a check before commit reads back).
    pub fn tmp_path(&self) -> &Path {
        &self.tmp_path
    }

    /// Writes out the rows held in memory (the last row group) and starts their way to disk,
    /// once every row is written: finishing then only adds the footer. Writing more rows after
    /// it starts a new row group.
    pub fn flush_rows(&mut self) -> Result<(), EmitError> {
        let path = || self.final_path.display().to_string();
        if let Some(w) = self.writer.as_mut() {
            w.flush().map_err(|e| EmitError::Parquet {
                path: path(),
                message: e.to_string(),
            })?;
            let buf = w.inner_mut();
            std::io::Write::flush(buf).map_err(|source| EmitError::Io {
                path: path(),
                source,
            })?;
            buf.get_mut().start_writeback();
        }
        Ok(())
    }

    /// Closes and fsyncs the temporary file; returns its SHA-256. Not yet visible.
    pub fn finish(&mut self) -> Result<String, EmitError> {
        let path = self.final_path.display().to_string();
        let Some(w) = self.writer.take() else {
            return sha256_file(&self.tmp_path).map_err(|source| EmitError::Io { path, source });
        };
        let buf = w.into_inner().map_err(|e| EmitError::Parquet {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let file = buf.into_inner().map_err(|e| EmitError::Io {
            path: path.clone(),
            source: e.into_error(),
        })?;
        file.file
            .sync_all()
            .map_err(|source| EmitError::Io { path, source })?;
        Ok(hex::encode(file.sha256.finalize()))
    }

    /// Renames the finished temporary file into place and fsyncs the folder.
    pub fn commit(self) -> Result<PathBuf, EmitError> {
        let io = |source| EmitError::Io {
            path: self.final_path.display().to_string(),
            source,
        };
        std::fs::rename(&self.tmp_path, &self.final_path).map_err(io)?;
        sync_dir(&self.final_path).map_err(io)?;
        Ok(self.final_path.clone())
    }

    /// Hands the finished temporary file over to a staged commit: (temporary path, final
    /// path). The writer no longer removes the file when dropped.
    pub fn into_paths(mut self) -> (PathBuf, PathBuf) {
        self.writer.take();
        let tmp = std::mem::take(&mut self.tmp_path);
        (tmp, self.final_path.clone())
    }

    /// Removes the temporary file (on failure).
    pub fn abort(self) {
        // Dropping does it.
    }
}

impl Drop for AtomicParquet {
    /// A writer dropped without being committed takes its temporary file with it, on every
    /// path out of a run, early returns included. After a commit the temporary path no longer
    /// exists and this does nothing.
    fn drop(&mut self) {
        self.writer.take();
        if !self.tmp_path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

/// Temporary path used for `final_path` by run `run_id`.
pub fn tmp_path_for(final_path: &Path, run_id: &str) -> PathBuf {
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    crate::spec::base_dir(final_path).join(format!(".{name}{TMP_MARKER}{run_id}"))
}

/// Writes a whole small file to its temporary path beside `path`, fsynced; returns the
/// temporary path and the SHA-256 of `bytes`. Nothing is visible at `path` yet.
pub fn write_temp(path: &Path, run_id: &str, bytes: &[u8]) -> Result<(PathBuf, String), EmitError> {
    let io = |source| EmitError::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(crate::spec::base_dir(path)).map_err(io)?;
    let tmp = tmp_path_for(path, run_id);
    let written = (|| {
        use std::io::Write;
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok((tmp, hex::encode(Sha256::digest(bytes))))
}

/// Writes a whole small file atomically (reports, JSON).
pub fn write_atomic(path: &Path, run_id: &str, bytes: &[u8]) -> Result<String, EmitError> {
    let io = |source| EmitError::Io {
        path: path.display().to_string(),
        source,
    };
    let (tmp, sha) = write_temp(path, run_id, bytes)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    sync_dir(path).map_err(io)?;
    Ok(sha)
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    File::open(crate::spec::base_dir(path))?.sync_all()
}

/// SHA-256 of a file, lowercase hex. Of a folder (an output an engine wrote as a Parquet
/// folder): the SHA-256 of its listing, one line `relative/path<TAB>sha256` per file at any
/// depth, sorted by path, so any change to a file, or a file added or removed, changes it.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    if path.is_dir() {
        let mut h = Sha256::new();
        for (name, file) in folder_files(path)? {
            h.update(format!("{name}\t{}\n", sha256_file(&file)?).as_bytes());
        }
        return Ok(hex::encode(h.finalize()));
    }
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Every regular file under `dir` at any depth, with its path relative to `dir` (`/`-separated),
/// sorted by that path. Symbolic links are refused: a folder output holds files only.
pub fn folder_files(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut todo = vec![(String::new(), dir.to_path_buf())];
    while let Some((prefix, folder)) = todo.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let entry = entry?;
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                todo.push((format!("{name}/"), entry.path()));
            } else if kind.is_file() {
                out.push((name, entry.path()));
            } else {
                return Err(std::io::Error::other(format!(
                    "{} is neither a file nor a folder",
                    entry.path().display()
                )));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Output path of a split: `tickets.parquet` → `tickets.train.parquet`.
pub fn split_path(path: &Path, split: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    crate::spec::base_dir(path).join(format!("{stem}.{split}.parquet"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::{col, DataType, IntoLazy, SerReader, TimeUnit};

    fn roundtrip(df: &DataFrame) -> DataFrame {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let schema = arrow_schema(df.schema()).unwrap();
        let settings = ParquetSettings {
            row_group_size: 1024,
            lineage_json: Some("{}".into()),
            encryption: None,
            plain_columns: Vec::new(),
        };
        let mut w = AtomicParquet::create(&path, "run", schema.clone(), &settings).unwrap();
        w.write(&to_record_batch(df, &schema).unwrap()).unwrap();
        w.finish().unwrap();
        w.commit().unwrap();
        polars::prelude::ParquetReader::new(File::open(&path).unwrap())
            .finish()
            .unwrap()
    }

    /// Regression: a Parquet writer that declared IEEE-754 total order for float columns made
    /// the engine's own reader (and other older readers) reject the whole file.
    #[test]
    fn float_columns_read_back_with_the_engine_reader() {
        let df = polars::df!("f" => [1.5f64, -2.0], "s" => ["a", "b"]).unwrap();
        let back = roundtrip(&df);
        assert!(back.equals(&df));
    }

    #[test]
    fn types_survive_and_strings_are_plain() {
        let df = polars::df!("d" => [Some(1i32), None], "t" => [1i64, 2], "s" => [Some("x"), None])
            .unwrap()
            .lazy()
            .with_columns([
                col("d").cast(DataType::Date),
                col("t").cast(DataType::Datetime(TimeUnit::Microseconds, None)),
            ])
            .collect()
            .unwrap();
        let schema = arrow_schema(df.schema()).unwrap();
        assert_eq!(schema.field(2).data_type(), &ArrowType::Utf8);
        let back = roundtrip(&df);
        assert!(back.equals_missing(&df));
    }

    #[test]
    fn split_paths_insert_the_split_name() {
        assert_eq!(
            split_path(Path::new("out/t.parquet"), "train"),
            PathBuf::from("out/t.train.parquet")
        );
    }

    /// The hash a writer returns is the file's, whether its rows were written out early
    /// (`flush_rows`) or not, and rows written after an early flush are kept, in a row group of
    /// their own, in order.
    #[test]
    fn the_hash_kept_while_writing_is_the_file_s() {
        let dir = tempfile::tempdir().unwrap();
        let settings = ParquetSettings {
            row_group_size: 1000,
            lineage_json: None,
            encryption: None,
            plain_columns: vec!["s".into()],
        };
        let batch = |from: i64, n: i64| {
            let df = polars::df!(
                "a" => (from..from + n).collect::<Vec<i64>>(),
                "s" => (from..from + n).map(|i| format!("row {i}")).collect::<Vec<String>>()
            )
            .unwrap();
            let schema = arrow_schema(df.schema()).unwrap();
            (to_record_batch(&df, &schema).unwrap(), schema)
        };
        for (flushes, groups) in [(false, 3), (true, 4)] {
            let path = dir.path().join(format!("t{flushes}.parquet"));
            let (first, schema) = batch(0, 2500);
            let mut w = AtomicParquet::create(&path, "run", schema, &settings).unwrap();
            w.write(&first).unwrap();
            if flushes {
                w.flush_rows().unwrap();
            }
            w.write(&batch(2500, 300).0).unwrap();
            w.flush_rows().unwrap();
            w.set_lineage("{\"run\":1}".into());
            let sha = w.finish().unwrap();
            assert_eq!(sha, sha256_file(w.tmp_path()).unwrap());
            w.commit().unwrap();
            let back = polars::prelude::ParquetReader::new(File::open(&path).unwrap())
                .finish()
                .unwrap();
            let a: Vec<i64> = back
                .column("a")
                .unwrap()
                .i64()
                .unwrap()
                .into_no_null_iter()
                .collect();
            assert_eq!(a, (0..2800).collect::<Vec<i64>>());
            let meta = parquet::file::reader::FileReader::metadata(
                &parquet::file::serialized_reader::SerializedFileReader::new(
                    File::open(&path).unwrap(),
                )
                .unwrap(),
            )
            .clone();
            assert_eq!(meta.num_row_groups(), groups, "flushed early: {flushes}");
        }
    }

    #[test]
    fn an_aborted_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let df = polars::df!("a" => [1i64]).unwrap();
        let schema = arrow_schema(df.schema()).unwrap();
        let settings = ParquetSettings {
            row_group_size: 10,
            lineage_json: Some("{}".into()),
            encryption: None,
            plain_columns: Vec::new(),
        };
        let mut w = AtomicParquet::create(&path, "run", schema.clone(), &settings).unwrap();
        w.write(&to_record_batch(&df, &schema).unwrap()).unwrap();
        w.abort();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
