//! The public face of datagen: options, summary, errors, and the run that ties the parts
//! together (subjects → rows → writers).

use std::fmt;
use std::fs;
use std::path::PathBuf;
use std::str::FromStr;

use rand::seq::index;
use serde::Serialize;

use super::files::write_small_file;
use super::output::{
    manifest_toml, revocations_csv, BadCell, BadRowsReport, CsvTickets, Malformation,
    ParquetTickets, SpanWriter, TicketSink,
};
use super::population::{Population, MAX_SUBJECTS};
use super::random::{stream_rng, Stream};
use super::tickets::{Ticket, TicketDraws};

/// Largest `rows` [`generate`] accepts: subject ids (`S` + seven digits) must stay unique.
pub const MAX_ROWS: u64 = 4 * MAX_SUBJECTS;

/// File format of the ticket table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataFormat {
    /// RFC 4180 CSV, UTF-8, LF line ends, header row.
    #[default]
    Csv,
    /// Parquet with zstd compression and typed columns.
    Parquet,
}

impl DataFormat {
    /// The file extension, also the name used on the command line.
    pub fn extension(self) -> &'static str {
        match self {
            DataFormat::Csv => "csv",
            DataFormat::Parquet => "parquet",
        }
    }
}

impl fmt::Display for DataFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

impl FromStr for DataFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "csv" => Ok(DataFormat::Csv),
            "parquet" => Ok(DataFormat::Parquet),
            other => Err(format!(
                "unknown data format `{other}` (expected `csv` or `parquet`)"
            )),
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatagenOptions {
    /// Data records in the ticket table (at most [`MAX_ROWS`]).
    pub rows: u64,
    /// Seed; the same options give byte-identical files.
    pub seed: u64,
    /// Output folder, created if missing. Files of the same names in it are replaced.
    pub out: PathBuf,
    /// Format of the ticket table.
    pub format: DataFormat,
    /// Records to make malformed (CSV only), listed in `bad_rows.json`: half get an extra
    /// field, half a non-numeric `priority`. Never the first record; at most `rows - 1`.
    pub bad_rows: u64,
}

/// What [`generate`] wrote. Holds counts and paths only, never a generated value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatagenSummary {
    /// Data records in the ticket table.
    pub rows: u64,
    /// Distinct data subjects; each has at least one row.
    pub subjects: u64,
    /// Subjects listed in `revocations.csv`.
    pub revoked_subjects: u64,
    /// Files written, table first.
    pub files: Vec<PathBuf>,
    /// Lines in `pii_spans.jsonl`.
    pub pii_spans: u64,
}

/// Why [`generate`] failed.
#[derive(Debug, thiserror::Error)]
pub enum DatagenError {
    /// More rows than subject ids allow.
    #[error(
        "datagen: --rows {rows} is more than the {max} rows one dataset can hold \
         (subject ids have seven digits); hint: generate several datasets with different seeds"
    )]
    TooManyRows {
        /// Rows asked for.
        rows: u64,
        /// [`MAX_ROWS`].
        max: u64,
    },
    /// Malformed rows were asked for in a format that cannot hold them.
    #[error(
        "datagen: --bad-rows needs CSV output, a Parquet file cannot hold malformed records; \
         hint: add --format csv"
    )]
    BadRowsNeedCsv,
    /// More malformed rows than records that may be malformed.
    #[error(
        "datagen: --bad-rows {bad_rows} is more than the {max} records that can be malformed \
         with --rows {rows} (the first record never is); hint: lower --bad-rows or raise --rows"
    )]
    TooManyBadRows {
        /// Malformed rows asked for.
        bad_rows: u64,
        /// Rows asked for.
        rows: u64,
        /// `rows - 1`.
        max: u64,
    },
    /// A file or folder could not be written.
    #[error(
        "datagen: cannot write {}; hint: check the --out folder and free disk space",
        path.display()
    )]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The Parquet writer failed.
    #[error("datagen: cannot write Parquet file {}", path.display())]
    Parquet {
        /// The Parquet file.
        path: PathBuf,
        /// The underlying error.
        source: parquet::errors::ParquetError,
    },
    /// A record batch could not be assembled (a bug: the schema and builders disagree).
    #[error("datagen: cannot build a record batch for {} (this is a bug)", path.display())]
    Arrow {
        /// The Parquet file.
        path: PathBuf,
        /// The underlying error.
        source: arrow::error::ArrowError,
    },
}

/// Generates the dataset described by `opts` into `opts.out`.
///
/// ```no_run
/// use privprep::datagen::{generate, DataFormat, DatagenOptions};
///
/// let summary = generate(&DatagenOptions {
///     rows: 10_000,
///     seed: 7,
///     out: "datasets/tickets".into(),
///     format: DataFormat::Csv,
///     bad_rows: 0,
/// })?;
/// assert_eq!(summary.rows, 10_000);
/// # Ok::<(), privprep::datagen::DatagenError>(())
/// ```
pub fn generate(opts: &DatagenOptions) -> Result<DatagenSummary, DatagenError> {
    check(opts)?;
    let out = &opts.out;
    fs::create_dir_all(out).map_err(|source| DatagenError::Io {
        path: out.clone(),
        source,
    })?;

    let population = Population::generate(opts.rows, opts.seed);
    let malformed = choose_malformed(opts);
    let draws = TicketDraws::new(&mut stream_rng(opts.seed, Stream::Ids, 0));

    let table = out.join(format!("tickets.{}", opts.format.extension()));
    let mut sink = match opts.format {
        DataFormat::Csv => TicketSink::Csv(CsvTickets::create(table)?),
        DataFormat::Parquet => TicketSink::Parquet(Box::new(ParquetTickets::create(table)?)),
    };
    let mut spans = SpanWriter::create(out.join("pii_spans.jsonl"))?;
    let mut assigner = population.assigner(opts.seed);
    let mut ticket = Ticket::default();
    let mut malformed_iter = malformed.iter().peekable();

    for row in 0..opts.rows {
        let subject = assigner
            .next_subject()
            .map(|i| &population.subjects[i])
            .expect("subjects have exactly `rows` rows between them");
        let broken = malformed_iter
            .next_if(|(at, _)| *at == row)
            .map(|&(_, how)| how);
        // Malformed records get a body without PII: they are not annotated.
        let mut rng = stream_rng(opts.seed, Stream::Row, row);
        ticket.fill(row, subject, broken.is_none(), &draws, &mut rng);
        sink.write(&ticket, subject, broken)?;
        if broken.is_none() {
            spans.write(row, &ticket.spans)?;
        }
    }

    let mut files = vec![sink.finish()?];
    let pii_spans = spans.count;
    files.push(spans.finish()?);
    files.push(write_small_file(
        out.join("revocations.csv"),
        revocations_csv(&population.revoked).as_bytes(),
    )?);
    files.push(write_small_file(
        out.join("manifest.toml"),
        manifest_toml(opts.rows, opts.seed).as_bytes(),
    )?);

    let bad_rows_path = out.join("bad_rows.json");
    if malformed.is_empty() {
        // A report left by an earlier run would describe rows this table does not have.
        match fs::remove_file(&bad_rows_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(DatagenError::Io {
                    path: bad_rows_path,
                    source: e,
                })
            }
            _ => {}
        }
    } else {
        let report = BadRowsReport {
            extra_field: malformed
                .iter()
                .filter(|(_, how)| *how == Malformation::ExtraField)
                .map(|&(row, _)| row)
                .collect(),
            bad_type: malformed
                .iter()
                .filter(|(_, how)| *how == Malformation::BadType)
                .map(|&(row, _)| BadCell {
                    row,
                    column: "priority",
                })
                .collect(),
        };
        let mut json = serde_json::to_vec_pretty(&report).expect("plain data serializes");
        json.push(b'\n');
        files.push(write_small_file(bad_rows_path, &json)?);
    }

    Ok(DatagenSummary {
        rows: opts.rows,
        subjects: population.subjects.len() as u64,
        revoked_subjects: population.revoked.len() as u64,
        files,
        pii_spans,
    })
}

/// Rejects options that cannot be honoured, before anything is written.
fn check(opts: &DatagenOptions) -> Result<(), DatagenError> {
    if opts.rows > MAX_ROWS {
        return Err(DatagenError::TooManyRows {
            rows: opts.rows,
            max: MAX_ROWS,
        });
    }
    if opts.bad_rows > 0 {
        if opts.format != DataFormat::Csv {
            return Err(DatagenError::BadRowsNeedCsv);
        }
        let max = opts.rows.saturating_sub(1);
        if opts.bad_rows > max {
            return Err(DatagenError::TooManyBadRows {
                bad_rows: opts.bad_rows,
                rows: opts.rows,
                max,
            });
        }
    }
    Ok(())
}

/// The malformed records, ascending: `bad_rows` distinct records other than the first, the
/// first half (rounded up) of the draw with an extra field, the rest with a bad `priority`.
fn choose_malformed(opts: &DatagenOptions) -> Vec<(u64, Malformation)> {
    if opts.bad_rows == 0 {
        return Vec::new();
    }
    let mut rng = stream_rng(opts.seed, Stream::BadRows, 0);
    let extra = opts.bad_rows.div_ceil(2) as usize;
    let mut chosen: Vec<(u64, Malformation)> =
        index::sample(&mut rng, (opts.rows - 1) as usize, opts.bad_rows as usize)
            .into_iter()
            .enumerate()
            .map(|(i, at)| {
                let how = if i < extra {
                    Malformation::ExtraField
                } else {
                    Malformation::BadType
                };
                (at as u64 + 1, how)
            })
            .collect();
    chosen.sort_unstable_by_key(|&(at, _)| at);
    chosen
}
