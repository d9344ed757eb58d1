//! The command line. Every command calls into the library; this file only parses arguments,
//! prints, and maps outcomes to exit codes (0 ok, 1 run failed, 2 usage or config error).

use anyhow::Context;

/// polars allocates per group in window functions and per chunk everywhere; glibc's allocator
/// spends much of a release's time consolidating those small blocks. mimalloc is what polars'
/// own builds use for the same reason. Chosen here, in the binary: a library leaves the
/// allocator to the program that uses it (the benches choose the same one).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc 3 keeps freed pages for a second before it gives them back (`purge_delay`, 1000
/// ms). A streaming run frees and allocates morsels all the time, so that second of pages adds
/// up to a fifth of its peak heap (about 200 MiB of a 10M-row run) for no measurable speed.
/// 100 ms gives them back as the run goes, yet keeps them long enough to be reused by the next
/// morsels instead of being faulted in and zeroed again: at 1M rows about 3% less CPU than 10 ms
/// (mimalloc 2's default), for about 16 MiB more heap at 10M. `MIMALLOC_PURGE_DELAY` in the
/// environment still wins.
fn tune_allocator() {
    // `mi_option_purge_delay` in mimalloc 3's option list (the bindings do not name it).
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets one option's default value; mimalloc checks the index.
    unsafe { libmimalloc_sys::mi_option_set_default(PURGE_DELAY, 100) }
}

use clap::{Args, Parser, Subcommand, ValueEnum};
use privprep::{GateResult, Measure, Store};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "privprep",
    version,
    about = "Turn raw personal datasets into consent-filtered, tokenized, training-ready Parquet with tamper-evident lineage"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Print only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More logs on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// No progress spinner.
    #[arg(long, global = true)]
    no_progress: bool,
    /// State folder: keys, lineage store, run journal.
    #[arg(
        long,
        global = true,
        env = "PRIVPREP_STATE_DIR",
        default_value = ".privprep"
    )]
    state_dir: PathBuf,
    /// Lineage store (default: <state-dir>/lineage.db).
    #[arg(long, global = true, env = "PRIVPREP_LINEAGE_DB")]
    lineage_db: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

/// How `lineage sql` prints its answer.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SqlFormat {
    Table,
    Json,
    Csv,
}

#[derive(Clone, Copy, ValueEnum)]
enum SourceFormatArg {
    Csv,
    Parquet,
    Ndjson,
}

#[derive(Subcommand)]
enum ExternalCommand {
    /// Start a run: journal it under the engine's process id and print (JSON) the row plan,
    /// the run id and where the engine stages each output. Holds no key.
    Begin {
        file: PathBuf,
        /// The engine that runs the rows.
        #[arg(long, default_value = "spark")]
        engine: String,
        /// The engine's driver process: if it ends before `commit`, the next command records
        /// the run as failed and removes what it staged.
        #[arg(long)]
        pid: u32,
        /// Key file, as for `run`.
        #[arg(long, env = "PRIVPREP_KEY_FILE", hide_env_values = true)]
        key_file: Option<PathBuf>,
    },
    /// Check what the engine did (a JSON document, `-` for stdin), commit its outputs with the
    /// run's lineage record, and print the run summary as `run` does.
    Commit {
        file: PathBuf,
        /// The engine's result document.
        result: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

/// What `plan` prints: JSON only (`explain` shows the plan in words).
#[derive(Clone, Copy, ValueEnum)]
enum PlanFormat {
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum DataFormat {
    Csv,
    Parquet,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline: read, filter by policy, transform identifiers, write Parquet, record lineage.
    Run {
        /// Pipeline file.
        file: PathBuf,
        /// Key file (hex or base64, at least 32 bytes); else PRIVPREP_KEY_FILE, PRIVPREP_KEY, or .privprep/keys/default.key.
        #[arg(long, env = "PRIVPREP_KEY_FILE", hide_env_values = true)]
        key_file: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Check a pipeline file and every manifest it names; report every problem.
    Validate {
        file: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Print the resolved plan: sources, policy, and what happens to each column.
    Explain {
        file: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Print the plan's row stages as JSON for engines outside this binary (the Spark engine of
    /// the Python wheel): manifest columns, policy rules, each output's action, the text
    /// detectors, the split and the key id. Holds no key and no data value (revoked and erased
    /// subjects appear as keyed hashes).
    Plan {
        file: PathBuf,
        /// Key file, as for `run`.
        #[arg(long, env = "PRIVPREP_KEY_FILE", hide_env_values = true)]
        key_file: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "json")]
        format: PlanFormat,
    },
    /// Run a pipeline on an engine outside this binary (the Spark engine of the Python wheel
    /// calls these): `begin` plans and journals the run, `commit` checks what the engine wrote
    /// and commits it with the run's lineage record.
    #[command(subcommand)]
    External(ExternalCommand),
    /// Generate a synthetic support-tickets dataset with manifest, revocations and PII ground truth.
    Datagen {
        #[arg(long, default_value_t = 2000)]
        rows: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "csv")]
        format: DataFormat,
        /// Plant this many malformed rows (CSV only), listed in bad_rows.json.
        #[arg(long, default_value_t = 0)]
        bad_rows: u64,
    },
    /// What a Parquet file is: a privprep output or not, its run, split, expiry, columns with
    /// their classes and actions, encryption and key ids (and whether the keys here open it),
    /// and whether it still matches its lineage record. Reads no value.
    Inspect {
        path: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// The surrogates a subject's value got: in every output that holds the subject, the
    /// surrogates its rows hold in the columns made from --column (picked as `subject export`
    /// picks rows, with the run key). With --value and --pipeline instead: the surrogate a value
    /// gets under that pipeline's rule and the key. Answers "what does this person's value look
    /// like in the output" for access and erasure requests; no input value is shown.
    Surrogate {
        /// The subject's id, or `-` to read it from standard input.
        #[arg(required_unless_present = "value", conflicts_with = "value")]
        id: Option<String>,
        /// The input column whose rule is `surrogate`.
        #[arg(long)]
        column: String,
        /// A value (or `-` for standard input) instead of a subject: its surrogate under the
        /// --pipeline's rule for --column.
        #[arg(long, requires = "pipeline")]
        value: Option<String>,
        /// The pipeline file naming the column (with --value).
        #[arg(long, requires = "value")]
        pipeline: Option<PathBuf>,
        /// The key the run used (else the environment or the default key).
        #[arg(long)]
        key_file: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Re-identification risk of any Parquet, CSV or NDJSON file: equivalence classes on the named
    /// quasi-identifiers, the k it reaches, classes and rows below --k, and l-diversity.
    Risk {
        path: PathBuf,
        /// Quasi-identifier columns, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        qi: Vec<String>,
        /// Count classes and rows below this k.
        #[arg(long, default_value_t = 5)]
        k: u32,
        /// Sensitive columns whose l-diversity is reported, comma-separated.
        #[arg(long, value_delimiter = ',')]
        sensitive: Vec<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Profile a dataset for personal data: PII types per column and a suggested manifest.
    Scan {
        /// CSV, Parquet or NDJSON file.
        path: PathBuf,
        /// Rows read from the start of the file.
        #[arg(long, default_value_t = 10_000)]
        rows: usize,
        /// Read every row instead of a sample.
        #[arg(long)]
        full: bool,
        /// Input format when the extension does not tell.
        #[arg(long, value_enum)]
        source_format: Option<SourceFormatArg>,
        /// CSV field separator.
        #[arg(long, default_value = ",")]
        separator: char,
        /// Phone numbering plans to validate against (comma-separated ISO codes).
        #[arg(long, value_delimiter = ',')]
        regions: Option<Vec<String>>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Privacy budget per dataset: cap, spent and remaining, from the ledger in the lineage store.
    Budget {
        /// Only this dataset.
        dataset: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Read the lineage store.
    Lineage {
        #[command(subcommand)]
        command: LineageCommand,
    },
    /// Subject rights: which committed outputs hold a data subject.
    Subject {
        #[command(subcommand)]
        command: SubjectCommand,
    },
    /// Master keys of encrypted outputs.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Retention of outputs (`[output] retain_days`).
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Re-encrypts outputs encrypted under master key OLD so they are under NEW (created when
    /// missing), all at once, recorded as one `rotation` record; then OLD can be retired.
    RotateEncryption {
        /// The master key id to retire.
        old: String,
        /// The master key id to use instead.
        new: String,
        /// The files to rotate (default: every current output encrypted under OLD).
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Deletes every committed output past its expiry (and its run's quarantine report),
    /// recorded as one `retention` record in lineage.
    Sweep {
        /// List what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Compare expiries with this time instead of now (YYYY-MM-DD is midnight UTC, or
        /// RFC 3339).
        #[arg(long)]
        as_of: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

#[derive(Subcommand)]
enum SubjectCommand {
    /// Every committed output (data file or DP release) that holds a subject, with its run,
    /// datasets, purpose, key id and whether the file is still there as written. The id is
    /// looked up by its keyed hash; it is never stored or printed.
    Find {
        /// The subject id, or `-` to read ids from standard input, one per line (so they stay
        /// out of the shell history).
        id: Option<String>,
        /// A file of subject ids, one per line.
        #[arg(long, conflicts_with = "id")]
        ids: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// The access request: every committed output that holds the subject, with its lineage
    /// facts and the subject's rows from each data file, as one JSON bundle.
    Export {
        /// The subject id, or `-` to read it from standard input.
        id: String,
        /// Where to write the bundle (JSON).
        #[arg(long)]
        out: PathBuf,
        /// The key the runs tokenized with, to pick rows by token (else the environment or
        /// the default key, when there is one).
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// The erasure request: puts the subject on the store's erasure list (every later run
    /// drops its rows as `erased`) and regenerates every committed output that holds it,
    /// recorded as one `erasure` record. Exits 1 when an output had to be left as it is.
    Forget {
        /// The subject id, or `-` to read ids from standard input, one per line.
        id: String,
        #[command(flatten)]
        erasure: ErasureArgs,
    },
    /// `forget` for every subject of revocation lists at once.
    Sweep {
        /// Revocation lists: one subject id per line, or a CSV with a header.
        #[arg(long, required = true, num_args = 1..)]
        revocations: Vec<PathBuf>,
        /// The CSV column holding the ids, when a list has a header.
        #[arg(long, default_value = "subject_id")]
        subject_column: String,
        #[command(flatten)]
        erasure: ErasureArgs,
    },
}

/// What `subject forget` and `subject sweep` share.
#[derive(Args)]
struct ErasureArgs {
    /// Why (kept in lineage; it must not name the subject).
    #[arg(long)]
    reason: String,
    /// Delete outputs that cannot be regenerated (input gone or changed, key missing)
    /// instead of listing them.
    #[arg(long)]
    delete_unregenerable: bool,
    /// The key the runs used (tokens and splits must come out the same).
    #[arg(long)]
    key_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Subcommand)]
enum LineageCommand {
    /// One line per run, oldest first.
    List {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// One run in full (a unique prefix of its id is enough).
    Show {
        run: String,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Recompute the hash chains of the records and the budget ledger and compare the store
    /// with its anchor; exit 1 and name the first broken place if anything was edited, deleted
    /// or rolled back.
    Verify {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Export runs as OpenLineage run events (spec 2-0-2), one JSON object per line: START,
    /// then COMPLETE or FAIL, with schema, column lineage and privprep's run facet.
    Export {
        /// OpenLineage run events (the one format there is).
        #[arg(long, required = true)]
        openlineage: bool,
        /// Runs to export (ids or unique prefixes).
        runs: Vec<String>,
        /// Every run in the store, oldest first.
        #[arg(long, conflicts_with = "runs")]
        all: bool,
        /// The job namespace.
        #[arg(long, default_value = "privprep")]
        namespace: String,
        /// Write the events to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also send each event to this OpenLineage HTTP endpoint, e.g.
        /// http://localhost:5000/api/v1/lineage (Marquez).
        #[arg(long)]
        post: Option<String>,
    },
    /// Answer one read-only SQL query over the store (opened read-only; writes and ATTACH are
    /// refused). Views: runs_per_dataset, outputs_per_run, drops_per_run, spends_per_dataset.
    Sql {
        /// The SELECT to run, e.g. "SELECT * FROM runs_per_dataset".
        query: String,
        #[arg(long, value_enum, default_value = "table")]
        format: SqlFormat,
    },
    /// Start a new, empty store where the old one is missing or empty (never overwrites one),
    /// or with --adopt keep the store as it is (e.g. an older backup put back); the anchor
    /// beside the store records that you did.
    Init {
        /// Keep the existing store as it is and anchor it (it must verify).
        #[arg(long)]
        adopt: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

fn main() -> ExitCode {
    // A reader that stops early (`privprep lineage show … | head`) closes the pipe: end
    // quietly, as other command-line tools do, rather than panic on the next line printed.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to its default, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tune_allocator();
    let cli = Cli::parse();
    init_logs(&cli.global);
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logs(g: &Global) {
    let level = match (g.quiet, g.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PRIVPREP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("privprep={level}")));
    let ansi = std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// The answer as JSON on standard output, or the error on standard error and exit code 1.
fn json_or_fail(
    answer: Result<impl serde::Serialize, impl std::fmt::Display>,
) -> anyhow::Result<ExitCode> {
    match answer {
        Ok(a) => {
            print_json(&a)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

fn config_error(d: &privprep::Diagnostics, format: Format) -> ExitCode {
    if format == Format::Json {
        let _ = print_json(&serde_json::json!({"valid": false, "errors": d.0}));
    }
    eprintln!("{d}");
    ExitCode::from(2)
}

/// Outputs of the pipeline that would land on the lineage store, the key file or other state.
fn state_collisions(
    plan: &privprep::Plan,
    g: &Global,
    lineage_db: &std::path::Path,
    key_file: Option<PathBuf>,
) -> privprep::Diagnostics {
    privprep::write_collisions(plan, &run_options(g, lineage_db, key_file))
}

/// Refuses an `--out` path inside the state folder or onto the lineage store and its side
/// files: a report written there would destroy the store, its anchor, its index or a key.
fn refuse_state_path(
    out: &std::path::Path,
    state_dir: &std::path::Path,
    lineage_db: &std::path::Path,
) -> anyhow::Result<()> {
    // The folder as the file system resolves it (symlinks too), then the file name.
    let resolved = |p: &std::path::Path| -> PathBuf {
        let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        match (abs.parent(), abs.file_name()) {
            (Some(dir), Some(name)) => std::fs::canonicalize(dir)
                .map(|d| d.join(name))
                .unwrap_or(abs.clone()),
            _ => abs,
        }
    };
    let out = resolved(out);
    let state = std::fs::canonicalize(state_dir).unwrap_or_else(|_| resolved(state_dir));
    let db = resolved(lineage_db);
    let mut side_files = vec![privprep::lineage::anchor::anchor_path(&db)];
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        side_files.push(PathBuf::from(name));
    }
    let beside_db = side_files.contains(&out);
    if out.starts_with(&state)
        || out.starts_with(privprep::lineage::index::index_dir(&db))
        || beside_db
    {
        anyhow::bail!(
            "refusing to write {}: it is in the state folder, or is the lineage store, its anchor or its index, which it would overwrite\n  = hint: write reports and bundles somewhere else",
            out.display()
        );
    }
    Ok(())
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = cli.global;
    let lineage_db = g
        .lineage_db
        .clone()
        .unwrap_or_else(|| g.state_dir.join("lineage.db"));
    match cli.command {
        Command::Validate { file, format } => match privprep::validate(&file) {
            Err(d) => Ok(config_error(&d, format)),
            Ok(plan) if !state_collisions(&plan, &g, &lineage_db, None).is_empty() => Ok(
                config_error(&state_collisions(&plan, &g, &lineage_db, None), format),
            ),
            Ok(plan) => {
                let warnings = plan.explain().warnings;
                if format == Format::Json {
                    print_json(
                        &serde_json::json!({"valid": true, "errors": [], "warnings": warnings}),
                    )?;
                } else if !g.quiet {
                    for w in &warnings {
                        eprintln!("warning: {w}");
                    }
                    println!(
                        "{}: ok ({} input file(s), {} output column(s))",
                        file.display(),
                        plan.source.files.len(),
                        plan.output_columns().count()
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Plan {
            file,
            key_file,
            format: PlanFormat::Json,
        } => match privprep::validate(&file) {
            Err(d) => Ok(config_error(&d, Format::Json)),
            Ok(plan) => json_or_fail(privprep::row_plan(
                &plan,
                &run_options(&g, &lineage_db, key_file),
            )),
        },
        Command::External(ExternalCommand::Begin {
            file,
            engine,
            pid,
            key_file,
        }) => match privprep::validate(&file) {
            Err(d) => Ok(config_error(&d, Format::Json)),
            Ok(plan) => {
                let opts = run_options(&g, &lineage_db, key_file);
                json_or_fail(privprep::run::external::begin(&plan, &opts, &engine, pid))
            }
        },
        Command::External(ExternalCommand::Commit {
            file,
            result,
            format,
        }) => {
            let text = if result == std::path::Path::new("-") {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(&result)
            }
            .with_context(|| format!("reading {}", result.display()))?;
            let finished: privprep::run::external::Finished = serde_json::from_str(&text)
                .with_context(|| format!("{}: not an engine result document", result.display()))?;
            let opts = run_options(&g, &lineage_db, None);
            // A pipeline that no longer plans (an input gone, a manifest edited) still ends the
            // run: it is recorded as failed, and its staging removed.
            let planned = privprep::validate(&file);
            let plan = planned.as_ref().map_err(|d| {
                privprep::run::RunError::External(format!(
                    "{}: the pipeline no longer plans as it did when the run began:\n{d}",
                    file.display()
                ))
            });
            run_outcome(
                privprep::run::external::commit(plan, &opts, &finished),
                format,
                g.quiet,
            )
        }
        Command::Explain { file, format } => match privprep::validate(&file) {
            Err(d) => Ok(config_error(&d, format)),
            Ok(plan) => {
                let e = plan.explain();
                if format == Format::Json {
                    print_json(&e)?;
                } else {
                    print!("{e}");
                }
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Run {
            file,
            key_file,
            format,
        } => {
            let plan = match privprep::validate(&file) {
                Err(d) => return Ok(config_error(&d, format)),
                Ok(p) => p,
            };
            let collisions = state_collisions(&plan, &g, &lineage_db, key_file.clone());
            if !collisions.is_empty() {
                return Ok(config_error(&collisions, format));
            }
            let mut opts = run_options(&g, &lineage_db, key_file);
            opts.progress = !g.no_progress && !g.quiet && std::io::stderr().is_terminal();
            run_outcome(privprep::run(&plan, &opts), format, g.quiet)
        }
        Command::Datagen {
            rows,
            seed,
            out,
            format,
            bad_rows,
        } => {
            let opts = privprep::DatagenOptions {
                rows,
                seed,
                out: out.clone(),
                format: match format {
                    DataFormat::Csv => privprep::DataFormat::Csv,
                    DataFormat::Parquet => privprep::DataFormat::Parquet,
                },
                bad_rows,
            };
            let summary = privprep::datagen(&opts)
                .with_context(|| format!("generating data in {}", out.display()))?;
            if !g.quiet {
                eprintln!(
                    "wrote {} rows for {} subjects to {}",
                    summary.rows,
                    summary.subjects,
                    out.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Scan {
            path,
            rows,
            full,
            source_format,
            separator,
            regions,
            format,
        } => {
            if !separator.is_ascii() {
                eprintln!("error: --separator must be one ASCII character\n  = hint: e.g. --separator ';'");
                return Ok(ExitCode::from(2));
            }
            // A privprep output is sanitized already: say so, and what it is.
            if let Some(footer) = privprep::inspect::privprep_footer(&path) {
                let run = footer["run_id"].as_str().unwrap_or("-");
                let pipeline = footer["pipeline"].as_str().unwrap_or("-");
                eprintln!("note: {} is a privprep output (sanitized by run {run} of pipeline {pipeline}); `privprep inspect` shows its columns' classes and actions", path.display());
                if footer["encryption"].is_object() {
                    eprintln!("note: its identifying columns are encrypted; they are not scanned");
                    return Ok(ExitCode::SUCCESS);
                }
            }
            let opts = privprep::ScanOptions {
                path,
                format: source_format.map(|f| match f {
                    SourceFormatArg::Csv => privprep::SourceFormat::Csv,
                    SourceFormatArg::Parquet => privprep::SourceFormat::Parquet,
                    SourceFormatArg::Ndjson => privprep::SourceFormat::Ndjson,
                }),
                rows: (!full).then_some(rows),
                separator: separator as u8,
                regions: regions
                    .unwrap_or_else(|| {
                        privprep::DEFAULT_PHONE_REGIONS
                            .iter()
                            .map(|s| s.to_string())
                            .collect()
                    })
                    .into_iter()
                    .map(|r| r.trim().to_ascii_uppercase())
                    .collect(),
            };
            match privprep::scan(&opts) {
                Ok(report) => {
                    if format == Format::Json {
                        print_json(&report)?;
                    } else {
                        print!("{report}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Retention {
            command:
                RetentionCommand::Sweep {
                    dry_run,
                    as_of,
                    format,
                },
        } => {
            let as_of = match as_of.as_deref().map(parse_time) {
                None => chrono::Utc::now(),
                Some(Some(t)) => t,
                Some(None) => {
                    eprintln!("error: --as-of is not a date or time\n  = hint: YYYY-MM-DD (midnight UTC) or RFC 3339, e.g. 2027-01-31T12:00:00Z");
                    return Ok(ExitCode::from(2));
                }
            };
            let opts = run_options(&g, &lineage_db, None);
            let s = privprep::run::retention::sweep(&opts, as_of, dry_run)?;
            if format == Format::Json {
                print_json(&s)?;
            } else if !g.quiet {
                let verb = if s.dry_run { "would delete" } else { "deleted" };
                println!(
                    "retention sweep{} as of {}: {} output(s) expired",
                    s.sweep_id
                        .as_deref()
                        .map(|i| format!(" {i}"))
                        .unwrap_or_default(),
                    s.as_of,
                    s.outputs.len()
                );
                for o in &s.outputs {
                    let what = if o.action == "gone" {
                        "already gone"
                    } else {
                        verb
                    };
                    println!(
                        "  {what:<14} {}  (run {}, {})",
                        o.path,
                        o.run_id,
                        o.note.as_deref().unwrap_or("")
                    );
                }
                for q in &s.quarantine_reports {
                    println!("  {verb:<14} {q}  (quarantine report)");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys {
            command:
                KeysCommand::RotateEncryption {
                    old,
                    new,
                    files,
                    format,
                },
        } => {
            let opts = run_options(&g, &lineage_db, None);
            match privprep::run::rotate::rotate(&opts, &old, &new, &files) {
                Ok(s) => {
                    if format == Format::Json {
                        print_json(&s)?;
                    } else if !g.quiet {
                        println!(
                            "rotation {}: {} file(s) re-encrypted from `{}` ({}) to `{}` ({})",
                            s.rotation_id,
                            s.outputs.len(),
                            s.old_key.id,
                            s.old_key.fingerprint,
                            s.new_key.id,
                            s.new_key.fingerprint
                        );
                        for o in &s.outputs {
                            println!("  {}  (run {})", o.path, o.run_id);
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(privprep::run::rotate::RotateError::Usage(m)) => {
                    eprintln!("error: {m}");
                    Ok(ExitCode::from(2))
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Risk {
            path,
            qi,
            k,
            sensitive,
            format,
        } => match privprep::risk::assess(&path, &qi, k, &sensitive) {
            Ok(r) => {
                if format == Format::Json {
                    print_json(&r)?;
                } else {
                    println!(
                        "{}: {} rows in {} classes of ({}); k = {}",
                        path.display(),
                        r.rows,
                        r.classes,
                        qi.join(", "),
                        r.k_reached
                    );
                    println!(
                        "  below k = {k}: {} classes, {} rows ({:.2}% of the rows)",
                        r.classes_below_k,
                        r.rows_below_k,
                        100.0 * r.rows_below_k as f64 / (r.rows.max(1)) as f64
                    );
                    for (c, l) in &r.l_diversity {
                        println!("  l-diversity of `{c}`: {l}");
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Ok(ExitCode::from(2))
            }
        },
        Command::Surrogate {
            id,
            column,
            value,
            pipeline,
            key_file,
            format,
        } => match (id, value, pipeline) {
            (Some(id), None, None) => {
                subject_surrogates(&g, &lineage_db, &id, &column, key_file.as_deref(), format)
            }
            (None, Some(value), Some(pipeline)) => {
                value_surrogate(&g, &pipeline, &value, &column, key_file.as_deref(), format)
            }
            _ => {
                eprintln!("error: give a subject id, or --value with --pipeline\n  = hint: privprep surrogate ID --column C, or privprep surrogate --value V --column C --pipeline P");
                Ok(ExitCode::from(2))
            }
        },
        Command::Inspect { path, format } => {
            let store = lineage_db
                .exists()
                .then(|| Store::open_to_inspect(&lineage_db).ok())
                .flatten();
            let i = privprep::inspect::inspect(
                &path,
                store.as_ref(),
                &g.state_dir,
                chrono::Utc::now(),
            )?;
            if format == Format::Json {
                print_json(&i)?;
            } else {
                print!("{}", privprep::inspect::render(&i));
            }
            let wrong = privprep::inspect::wrong_keys(&i);
            for w in &wrong {
                eprintln!("error: {w}\n  = hint: use the master key whose fingerprint the file lists (PRIVPREP_MASTER_KEY_<ID> or the key file)");
            }
            Ok(if wrong.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Budget { dataset, format } => {
            let ledger = privprep::Ledger::open(&lineage_db)?;
            let budgets = ledger.budgets(dataset.as_deref())?;
            if format == Format::Json {
                print_json(&budgets)?;
            } else if budgets.is_empty() {
                match &dataset {
                    Some(d) => println!(
                        "no differentially private release has spent budget of dataset `{d}`"
                    ),
                    None => println!("no differentially private release has spent any budget yet"),
                }
            } else {
                println!(
                    "{:<24} {:<14} {:<28} {:<32} {:<28} {:>8} {:>5}",
                    "dataset", "privacy unit", "cap", "spent", "remaining", "releases", "runs"
                );
                for b in &budgets {
                    let spent = match b.cap {
                        Some(privprep::Loss::Pure { .. }) => {
                            format!("ε = {:.6}", b.spent.epsilon)
                        }
                        Some(privprep::Loss::Zcdp { .. }) => format!("ρ = {:.6}", b.spent.rho),
                        _ if b.spent.rho > 0.0 => format!(
                            "ε = {:.6}, δ = {:.3e}, ρ = {:.6}",
                            b.spent.epsilon, b.spent.delta, b.spent.rho
                        ),
                        _ => format!("ε = {:.6}, δ = {:.3e}", b.spent.epsilon, b.spent.delta),
                    };
                    let show = |l: &Option<privprep::Loss>| {
                        l.map(|l| l.to_string()).unwrap_or_else(|| "none".into())
                    };
                    println!(
                        "{:<24} {:<14} {:<28} {:<32} {:<28} {:>8} {:>5}",
                        b.dataset_id,
                        b.privacy_unit,
                        show(&b.cap),
                        spent,
                        show(&b.remaining),
                        b.releases,
                        b.runs
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Lineage {
            command: LineageCommand::Init { adopt, format },
        } => lineage_init(&lineage_db, adopt, format),
        Command::Subject {
            command: SubjectCommand::Export { id, out, key_file },
        } => {
            refuse_state_path(&out, &g.state_dir, &lineage_db)?;
            let id = one_id(&id, "subject id")?;
            let key = privprep::identity::keys::existing_key(key_file.as_deref(), &g.state_dir)?
                .map(|(k, _)| k);
            let store = Store::open_to_inspect(&lineage_db)?;
            let bundle = privprep::subjects::export(&store, &g.state_dir, &id, key.as_ref())?;
            let text = serde_json::to_string_pretty(&bundle)?;
            privprep::emit::write_atomic(&out, "export", text.as_bytes())?;
            let rows: usize = bundle
                .outputs
                .iter()
                .filter_map(|o| o.rows.as_ref())
                .map(Vec::len)
                .sum();
            let without = bundle.outputs.iter().filter(|o| o.rows.is_none()).count();
            println!(
                "subject (key {}): {} output(s) hold it; {rows} row(s) written to {}{}",
                if bundle.subject_key.is_empty() {
                    "-"
                } else {
                    &bundle.subject_key
                },
                bundle.outputs.len(),
                out.display(),
                if without > 0 {
                    format!("; {without} output(s) without rows (the bundle says why)")
                } else {
                    String::new()
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Subject {
            command: SubjectCommand::Forget { id, erasure },
        } => {
            let ids = subject_ids(Some(id), None)?;
            let opts = run_options(&g, &lineage_db, erasure.key_file.clone());
            let r = privprep::subjects::forget(
                &opts,
                &ids,
                &erasure.reason,
                erasure.delete_unregenerable,
            );
            erasure_outcome(r, erasure.format, g.quiet)
        }
        Command::Subject {
            command:
                SubjectCommand::Sweep {
                    revocations,
                    subject_column,
                    erasure,
                },
        } => {
            let opts = run_options(&g, &lineage_db, erasure.key_file.clone());
            let r = privprep::subjects::sweep(
                &opts,
                &revocations,
                &subject_column,
                &erasure.reason,
                erasure.delete_unregenerable,
            );
            erasure_outcome(r, erasure.format, g.quiet)
        }
        Command::Subject {
            command: SubjectCommand::Find { id, ids, format },
        } => {
            let ids = subject_ids(id, ids)?;
            let store = Store::open_to_inspect(&lineage_db)?;
            let findings = privprep::subjects::find(&store, &g.state_dir, &ids)?;
            if format == Format::Json {
                print_json(&findings)?;
            } else {
                print!("{}", privprep::subjects::render(&findings));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Lineage { command } => {
            if let LineageCommand::Export { out: Some(out), .. } = &command {
                refuse_state_path(out, &g.state_dir, &lineage_db)?;
            }
            // The error names the store; a store that disagrees with its anchor still opens,
            // so that `verify` can say so.
            let mut store = Store::open_to_inspect(&lineage_db)?;
            privprep::recover_interrupted(&g.state_dir, &mut store);
            lineage(&store, command)
        }
    }
}

/// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time.
fn parse_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text.trim()) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    let d = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc())
}

/// Run options over the state folder and lineage store of the command line, with its key file.
/// Prints a run's summary (or, for a failed run, its summary in JSON and the error); exit 0,
/// or 1 for a failed run.
fn run_outcome(
    result: Result<privprep::RunSummary, Box<privprep::RunFailure>>,
    format: Format,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(summary) => {
            if format == Format::Json {
                print_json(&summary)?;
            } else if !quiet {
                print_summary(&summary);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            if format == Format::Json {
                print_json(&failure.summary)?;
            }
            eprintln!("error: {failure}");
            Ok(ExitCode::from(1))
        }
    }
}

fn run_options(
    g: &Global,
    lineage_db: &std::path::Path,
    key_file: Option<PathBuf>,
) -> privprep::RunOptions {
    let mut opts = privprep::RunOptions::new(&g.state_dir);
    opts.lineage_db = lineage_db.to_path_buf();
    opts.key_file = key_file;
    opts
}

/// Prints an erasure's outcome; exit 1 when an output still holds a subject, 2 on a usage
/// error.
fn erasure_outcome(
    result: Result<privprep::run::ErasureSummary, privprep::subjects::ForgetError>,
    format: Format,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let summary = match result {
        Err(privprep::subjects::ForgetError::Usage(m)) => {
            eprintln!("error: {m}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
        Ok(s) => s,
    };
    if format == Format::Json {
        print_json(&summary)?;
    } else if !quiet {
        print!("{}", render_erasure(&summary));
    }
    let left = summary.outputs.iter().any(|o| o.action == "unregenerable");
    Ok(if left {
        eprintln!("privprep: some outputs still hold the subject and could not be regenerated; see the list above, or rerun with --delete-unregenerable");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// An erasure's summary for a terminal.
fn render_erasure(s: &privprep::run::ErasureSummary) -> String {
    let count = |a: &str| s.outputs.iter().filter(|o| o.action == a).count();
    let mut out = format!(
        "erasure {} ({}, {} subject(s)): {} output(s) regenerated, {} deleted, {} unregenerable, {} gone, {} DP release(s) listed\n",
        s.erasure_id,
        s.command,
        s.subjects,
        count("regenerated"),
        count("deleted"),
        count("unregenerable"),
        count("gone"),
        count("release"),
    );
    if s.outputs.is_empty() {
        out.push_str("  no committed output held the subject(s); they are on the erasure list for every later run\n");
    }
    for o in &s.outputs {
        let what = match o.action.as_str() {
            "regenerated" => format!(
                "{} → {} rows",
                o.rows_before,
                o.rows_after.unwrap_or_default()
            ),
            "release" => {
                "not regenerated: its DP guarantee already bounds what it reveals about one subject"
                    .into()
            }
            "gone" => "the file is no longer there".into(),
            _ => o.note.clone().unwrap_or_default(),
        };
        out.push_str(&format!(
            "  {:<13} {}  (run {}): {what}\n",
            o.action, o.path, o.run_id
        ));
    }
    out.push_str(&format!("recorded in {}\n", s.lineage_db));
    out
}

/// The subject ids of a request: the argument, standard input (`-`) or a file, one per line.
/// One id or value given on the command line, or `-` for the first line of standard input.
fn one_id(text: &str, what: &str) -> anyhow::Result<String> {
    subject_ids(Some(text.to_owned()), None)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no {what} given"))
}

fn subject_ids(id: Option<String>, file: Option<PathBuf>) -> anyhow::Result<Vec<String>> {
    let lines = |text: String| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let ids = match (id.as_deref(), file) {
        (Some("-"), _) => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| anyhow::anyhow!("cannot read subject ids from standard input: {e}"))?;
            lines(text)
        }
        (Some(id), _) => vec![id.to_owned()],
        (None, Some(path)) => lines(std::fs::read_to_string(&path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read subject ids from {}: {e}\n  = hint: one id per line",
                path.display()
            )
        })?),
        (None, None) => anyhow::bail!(
            "no subject id given\n  = hint: privprep subject find ID, or `-` to read ids from standard input, or --ids FILE"
        ),
    };
    Ok(ids)
}

/// `privprep surrogate ID --column C`: the surrogates subject `id`'s rows hold in the columns
/// made from `column`, in every output that holds the subject.
fn subject_surrogates(
    g: &Global,
    lineage_db: &std::path::Path,
    id: &str,
    column: &str,
    key_file: Option<&std::path::Path>,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let id = one_id(id, "subject id")?;
    let key = privprep::identity::keys::existing_key(key_file, &g.state_dir)?.map(|(k, _)| k);
    let store = Store::open_to_inspect(lineage_db)?;
    let answer =
        privprep::subjects::surrogates_of(&store, &g.state_dir, &id, column, key.as_ref())?;
    if answer.outputs.is_empty() {
        eprintln!("error: no output that holds the subject has a surrogate column made from `{column}`\n  = hint: the surrogate columns of every run: privprep lineage sql \"SELECT DISTINCT pipeline, column_name, transformation FROM surrogates\"");
        return Ok(ExitCode::from(2));
    }
    if format == Format::Json {
        print_json(&answer)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("subject (key {}): `{column}`", answer.subject_key);
    for o in &answer.outputs {
        let head = format!(
            "  {} (run {}, key {}), column `{}`",
            o.path,
            o.run_id,
            o.key_id.as_deref().unwrap_or("-"),
            o.column
        );
        match (&o.surrogates, &o.rows_unavailable) {
            (Some(_), _) if o.rows == Some(0) => {
                println!("{head}: no row of the subject found in the file")
            }
            (Some(values), _) => {
                for v in values {
                    println!("{head}: {} ({} row(s))", v.surrogate, v.rows);
                }
                if values.is_empty() {
                    println!("{head}: the subject's rows hold no value there");
                }
            }
            (None, why) => println!("{head}: rows not picked: {}", why.as_deref().unwrap_or("-")),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `privprep surrogate --value V --column C --pipeline P`: the surrogate a value gets under the
/// pipeline's rule for the column and the key.
fn value_surrogate(
    g: &Global,
    pipeline: &std::path::Path,
    value: &str,
    column: &str,
    key_file: Option<&std::path::Path>,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let plan = match privprep::validate(pipeline) {
        Err(d) => return Ok(config_error(&d, Format::Text)),
        Ok(p) => p,
    };
    let Some(kind) = plan.columns.iter().find_map(|c| match &c.action {
        privprep::identity::Action::Surrogate(k) if c.name == column => Some(*k),
        _ => None,
    }) else {
        eprintln!("error: column `{column}` of {} has no surrogate rule\n  = hint: name a column whose rule is action = \"surrogate\"", pipeline.display());
        return Ok(ExitCode::from(2));
    };
    let value = one_id(value, "value")?;
    let Some((key, _)) = privprep::identity::keys::existing_key(key_file, &g.state_dir)? else {
        eprintln!("error: no key: the surrogate depends on the run key\n  = hint: pass --key-file, or set PRIVPREP_KEY_FILE");
        return Ok(ExitCode::from(2));
    };
    let surrogate = privprep_kernels::surrogate::Surrogates::new(&key).surrogate(kind, &value);
    if format == Format::Json {
        print_json(&serde_json::json!({
            "column": column,
            "kind": kind.as_str(),
            "key_id": key.id(),
            "surrogate": surrogate,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{surrogate}");
    eprintln!(
        "privprep: {} surrogate under key {}",
        kind.as_str(),
        key.id()
    );
    Ok(ExitCode::SUCCESS)
}

/// `privprep lineage export --openlineage`: two events per run, one per line.
fn lineage_export(
    store: &Store,
    runs: &[String],
    all: bool,
    namespace: &str,
    out: Option<&std::path::Path>,
    post: Option<&str>,
) -> anyhow::Result<ExitCode> {
    if runs.is_empty() && !all {
        anyhow::bail!("name the runs to export, or --all\n  = hint: `privprep lineage list` shows the run ids");
    }
    let ids: Vec<String> = if all {
        store.list()?.into_iter().map(|r| r.run_id).collect()
    } else {
        runs.to_vec()
    };
    let mut text = String::new();
    let mut events = Vec::new();
    for id in &ids {
        let Some(stored) = store.get(id)? else {
            eprintln!("error: no run `{id}` in the lineage store\n  = hint: `privprep lineage list` shows the run ids");
            return Ok(ExitCode::from(1));
        };
        for event in privprep::lineage::openlineage::run_events(
            stored.seq,
            &stored.record_hash,
            &stored.record,
            namespace,
        ) {
            text.push_str(&serde_json::to_string(&event)?);
            text.push('\n');
            events.push(event);
        }
    }
    if let Some(url) = post {
        let sent = privprep::lineage::openlineage::post(url, &events)?;
        eprintln!("{sent} event(s) posted to {url}");
        if out.is_none() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    match out {
        Some(path) => {
            privprep::emit::write_atomic(path, "openlineage", text.as_bytes())?;
            println!(
                "{} event(s) of {} run(s) written to {}",
                2 * ids.len(),
                ids.len(),
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `privprep lineage sql`: exit 0 with the answer, 2 for a refused or malformed statement, 1
/// when the store cannot be read.
fn lineage_sql(db: &std::path::Path, query: &str, format: SqlFormat) -> anyhow::Result<ExitCode> {
    use privprep::lineage::sql::{self, SqlError};
    match sql::query(db, query) {
        Ok(answer) => {
            match format {
                SqlFormat::Json => print_json(&answer.to_json())?,
                SqlFormat::Csv => print!("{}", answer.to_csv()),
                SqlFormat::Table => print!("{}", answer.to_table()),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ SqlError::Open { .. }) => Err(e.into()),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

fn lineage_init(db: &std::path::Path, adopt: bool, format: Format) -> anyhow::Result<ExitCode> {
    let (_store, outcome) = Store::init(db, adopt)?;
    if format == Format::Json {
        print_json(&outcome)?;
        return Ok(ExitCode::SUCCESS);
    }
    let head = &outcome.head;
    if outcome.adopted {
        println!(
            "lineage store {} adopted as it is: {} record(s), head {}; {} budget ledger entr(ies)",
            db.display(),
            head.records,
            head.head_hash.as_deref().unwrap_or("-"),
            head.ledger_last_id
        );
    } else {
        println!("lineage store {} created (empty)", db.display());
    }
    if let Some(before) = &outcome.replaced {
        println!(
            "  it replaces what the anchor recorded before: {} record(s), head {}; {} budget ledger entr(ies)",
            before.records,
            before.head_hash.as_deref().unwrap_or("-"),
            before.ledger_last_id
        );
    }
    println!("  anchor {} (notes this init)", outcome.anchor.display());
    Ok(ExitCode::SUCCESS)
}

fn lineage(store: &Store, command: LineageCommand) -> anyhow::Result<ExitCode> {
    match command {
        LineageCommand::Init { adopt, format } => lineage_init(store.path(), adopt, format),
        LineageCommand::Sql { query, format } => lineage_sql(store.path(), &query, format),
        LineageCommand::Export {
            openlineage: _,
            runs,
            all,
            namespace,
            out,
            post,
        } => lineage_export(
            store,
            &runs,
            all,
            &namespace,
            out.as_deref(),
            post.as_deref(),
        ),
        LineageCommand::List { format } => {
            let runs = store.list()?;
            if format == Format::Json {
                print_json(&runs)?;
            } else {
                println!(
                    "{:<4} {:<24} {:<10} {:<26} {:>10} {:>10}  pipeline",
                    "seq", "run", "status", "started", "read", "written"
                );
                for r in &runs {
                    println!(
                        "{:<4} {:<24} {:<10} {:<26} {:>10} {:>10}  {}",
                        r.seq,
                        r.run_id,
                        r.status,
                        r.started_at,
                        r.rows_read,
                        r.rows_written,
                        r.pipeline_name
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        LineageCommand::Show { run, format } => match store.get(&run)? {
            None => {
                eprintln!("error: no run `{run}` in the lineage store\n  = hint: `privprep lineage list` shows the run ids");
                Ok(ExitCode::from(2))
            }
            Some(stored) => {
                if format == Format::Json {
                    print_json(&stored)?;
                } else {
                    let r = &stored.record;
                    println!(
                        "run {} ({}), record {} of the chain",
                        r.run_id,
                        r.status.as_str(),
                        stored.seq
                    );
                    println!(
                        "  pipeline   {} ({}, sha256 {})",
                        r.pipeline_name, r.pipeline_path, r.pipeline_sha256
                    );
                    println!(
                        "  started    {}\n  finished   {}",
                        r.started_at, r.finished_at
                    );
                    if let Some(engine) = &r.engine {
                        println!("  engine     {engine}");
                    }
                    println!("  key id     {}", r.key_id.as_deref().unwrap_or("-"));
                    for i in &r.inputs {
                        println!(
                            "  input      {} ({} bytes, {} rows, sha256 {})",
                            i.path, i.bytes, i.rows_read, i.sha256
                        );
                    }
                    println!(
                        "  rows       read {}, written {}, quarantined {}",
                        r.rows_read, r.rows_written, r.quarantined
                    );
                    for (reason, n) in &r.dropped {
                        println!("  dropped    {reason}: {n}");
                    }
                    for c in &r.column_lineage {
                        println!(
                            "  column     {} ← {}: {}",
                            c.output_column,
                            c.input_columns.join(", "),
                            c.transformation
                        );
                    }
                    for t in &r.text_columns {
                        let by_type: Vec<String> = t
                            .spans_replaced
                            .iter()
                            .map(|(k, n)| format!("{k} {n}"))
                            .collect();
                        println!(
                            "  free text  {}: detectors {}; {} of {} texts changed; spans {}; rows dropped {}",
                            t.column,
                            t.detectors.join(", "),
                            t.texts_changed,
                            t.texts_scanned,
                            if by_type.is_empty() { "none".into() } else { by_type.join(", ") },
                            t.rows_dropped
                        );
                    }
                    for g in &r.leak_gate {
                        let hits: Vec<String> =
                            g.hits.iter().map(|(k, n)| format!("{n} {k}")).collect();
                        println!(
                            "  leak gate  {}: {} ({} values{})",
                            g.column,
                            g.result.as_str(),
                            g.values_scanned,
                            if hits.is_empty() {
                                String::new()
                            } else {
                                format!("; {}", hits.join(", "))
                            }
                        );
                    }
                    let later = store.indexed_records()?;
                    for o in &r.outputs {
                        println!(
                            "  output     {} ({}, {} rows, sha256 {}{})",
                            o.path,
                            o.split,
                            o.rows,
                            o.sha256,
                            o.expires_at
                                .as_deref()
                                .map(|e| format!(", expires {e}"))
                                .unwrap_or_default()
                        );
                        // What later erasures, sweeps and rotations did to it.
                        for (_, l) in later.iter().filter(|(seq, _)| *seq > stored.seq) {
                            for c in l.output_changes().filter(|c| {
                                c.path == o.path && c.run_id == r.source_run_of(&o.path)
                            }) {
                                println!(
                                    "             {} by {} {} ({})",
                                    c.action,
                                    l.kind(),
                                    l.run_id,
                                    l.finished_at
                                );
                            }
                        }
                    }
                    if let Some(e) = &r.encryption {
                        println!(
                            "  encrypted  {} ({}): footer key `{}` ({}), column key `{}` ({})",
                            e.columns.join(", "),
                            e.algorithm,
                            e.footer_key.id,
                            e.footer_key.fingerprint,
                            e.column_key.id,
                            e.column_key.fingerprint
                        );
                    }
                    for c in r.output_changes() {
                        println!(
                            "  {:<10} {} (run {}): {}{}",
                            r.kind(),
                            c.path,
                            c.run_id,
                            c.action,
                            c.note
                                .as_deref()
                                .map(|n| format!(", {n}"))
                                .unwrap_or_default()
                        );
                    }
                    if let Some(e) = &r.error {
                        println!("  error      {e}");
                    }
                    println!(
                        "  hash       {} (previous {})",
                        stored.record_hash, stored.prev_hash
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
        },
        LineageCommand::Verify { format } => {
            let report = store.verify()?;
            if format == Format::Json {
                print_json(&report)?;
            } else if let Some(b) = &report.first_broken {
                eprintln!(
                    "error: lineage store {} fails verification at {}: {}\n  = hint: it was edited, truncated or rolled back outside privprep; restore it from a backup (privprep spends no budget from it until it verifies)",
                    store.path().display(),
                    b.location(),
                    b.reason
                );
            } else {
                println!(
                    "lineage ok: {} record(s), head {}; budget ledger {} entr(ies), head {}; {}",
                    report.records,
                    report.head_hash.as_deref().unwrap_or("-"),
                    report.ledger_entries,
                    report.ledger_head.as_deref().unwrap_or("-"),
                    match &report.anchor {
                        Some(a) => format!("matches its anchor {}", a.display()),
                        None => "no anchor to check against (it could not be written)".into(),
                    }
                );
            }
            Ok(if report.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn print_gate(gate: &[privprep::LeakGateRecord]) {
    if gate.is_empty() {
        return;
    }
    let scanned: u64 = gate.iter().map(|g| g.values_scanned).sum();
    let leaks: Vec<&privprep::LeakGateRecord> = gate
        .iter()
        .filter(|g| g.result == GateResult::Leak)
        .collect();
    if leaks.is_empty() {
        println!(
            "  leak gate      clean: {} columns, {scanned} values scanned",
            gate.iter()
                .filter(|g| g.result == GateResult::Clean)
                .count()
        );
    }
    for g in leaks {
        let hits: Vec<String> = g.hits.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!(
            "  leak gate      LEAK in `{}`: {}",
            g.column,
            hits.join(", ")
        );
    }
}

fn print_summary(s: &privprep::RunSummary) {
    println!("run {} {}", s.run_id, s.status);
    println!("  rows read      {}", s.rows_read);
    println!("  rows written   {}", s.rows_written);
    let dropped: u64 = s.dropped.values().sum();
    println!("  dropped        {dropped}");
    // In the order the policy applies its checks, not alphabetically.
    for reason in privprep::DropReason::ALL {
        if let Some(n) = s.dropped.get(reason.as_str()) {
            println!("    {:<18} {n}", reason.as_str());
        }
    }
    println!("  quarantined    {}", s.quarantined);
    if let Some(q) = &s.quarantine_report {
        println!("    report       {q}");
    }
    for o in &s.outputs {
        println!(
            "  output         {} ({}, {} rows, sha256 {})",
            o.path,
            o.split,
            o.rows,
            &o.sha256[..16.min(o.sha256.len())]
        );
    }
    for t in &s.text_columns {
        let spans: u64 = t.spans_replaced.values().sum();
        println!(
            "  free text      `{}`: {spans} PII spans replaced in {} of {} texts{}",
            t.column,
            t.texts_changed,
            t.texts_scanned,
            if t.rows_dropped > 0 {
                format!(", {} rows dropped", t.rows_dropped)
            } else {
                String::new()
            }
        );
        if !t.spans_replaced.is_empty() {
            let by_type: Vec<String> = t
                .spans_replaced
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            println!("    {}", by_type.join(", "));
        }
    }
    print_gate(&s.leak_gate);
    if let Some(r) = &s.risk {
        let l: Vec<String> = r
            .l_diversity
            .iter()
            .map(|(c, l)| format!("`{c}` l = {l}"))
            .collect();
        println!(
            "  k-anonymity    k = {} reached (asked {}): {} classes, {} below k with {} rows ({}){}",
            r.k_reached,
            r.k,
            r.classes,
            r.classes_below_k,
            r.rows_below_k,
            if r.action == "suppress" { "suppressed" } else { "written, reported" },
            if l.is_empty() { String::new() } else { format!("; {}", l.join(", ")) }
        );
    }
    for r in &s.releases {
        println!(
            "  release        {} ({} rows, {}, spent {})",
            r.path,
            r.rows,
            r.key_source,
            match r.measure {
                Measure::Pure => format!("ε = {:.4}", r.epsilon),
                Measure::Approx => format!("ε = {:.4}, δ = {:.2e}", r.epsilon, r.delta),
                Measure::Zcdp => format!("ρ = {:.4}", r.rho),
            }
        );
        for n in &r.noise {
            if let Some(a) = n.ci95 {
                println!("    {}: ±{a:.3} (95%, {} noise)", n.column, n.distribution);
            }
        }
        for m in &r.mean_ci95 {
            println!(
                "    {c}: ±{:.3} to ±{:.3} by row (95%, noisy sum / noisy count; each row's is in {c}_ci95)",
                m.min,
                m.max,
                c = m.column
            );
        }
        for q in &r.rank_ci95 {
            println!(
                "    {}: within ±{:.1} rows of the quantile's rank (95%)",
                q.column, q.rows
            );
        }
    }
    for t in &s.synthetics {
        println!(
            "  synthetic      {} ({} rows, {}, spent {}; utility report for the data owner: {})",
            t.path,
            t.rows,
            t.method,
            match t.epsilon {
                Some(e) => format!("ε = {e:.4}"),
                None => format!("ρ = {:.4}", t.rho),
            },
            t.report
        );
    }
    if let Some(k) = &s.key_id {
        println!("  key id         {k}");
    }
    println!("  lineage        {}", s.lineage_db);
    println!("  took           {:.2} s", s.duration_ms as f64 / 1000.0);
}
