//! Stage `ingest`: `[source]`, the input files, their format and the dataset manifest, and
//! each input's schema checked against the manifest.
//!
//! The rows themselves are read by the engine (`crate::ingest` holds the readers and the
//! pre-scan); this module decides what is read and how each column converts.

use serde::Deserialize;
use std::path::Path;
use toml::Spanned;

use super::{record_nothing, Halt, Plan, Resolution, Source, Stage};
use crate::ingest::{self as reader, Conversion, Manifest};
use crate::lineage::record::InputRecord;
use crate::spec::paths::NamedPath;
use crate::spec::{self, Diagnostic, Diagnostics, PipelineFile};

pub const STAGE: Stage = Stage {
    name: "ingest",
    check,
    resolve,
    explain,
    record: record_nothing,
};

/// `[source]`: where the rows come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// A file, a glob, or a list of them, relative to the pipeline file.
    pub path: Spanned<OneOrMany>,
    /// File format; taken from the extension when absent.
    #[serde(default)]
    pub format: Option<Spanned<SourceFormat>>,
    /// Dataset manifest; defaults to `manifest.toml` beside the first data file.
    #[serde(default)]
    pub manifest: Option<Spanned<String>>,
    /// CSV field separator (one ASCII character), default `,`.
    #[serde(default)]
    pub separator: Option<Spanned<String>>,
}

/// A single string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The strings, in order.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    Csv,
    Parquet,
    Ndjson,
}

impl SourceFormat {
    /// The format a file extension stands for.
    pub fn from_path(path: &Path) -> Option<SourceFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(SourceFormat::Csv),
            "parquet" | "pq" => Some(SourceFormat::Parquet),
            "ndjson" | "jsonl" => Some(SourceFormat::Ndjson),
            _ => None,
        }
    }
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceFormat::Csv => "csv",
            SourceFormat::Parquet => "parquet",
            SourceFormat::Ndjson => "ndjson",
        }
    }
}

fn check(file: &PipelineFile, diags: &mut Diagnostics) {
    let spec = &file.spec;
    let at = |span: std::ops::Range<usize>, msg: String| file.at(span, msg);
    if let Some(sep) = &spec.source.separator {
        if sep.get_ref().len() != 1 || !sep.get_ref().is_ascii() {
            diags.push(
                at(sep.span(), "separator must be one ASCII character".into())
                    .hint("e.g. separator = \";\" or separator = \"\\t\""),
            );
        }
    }
}

fn resolve(r: &mut Resolution) -> Result<(), Halt> {
    let file = r.file;
    let base = r.base.clone();
    let diags = &mut r.diags;
    let s = &file.spec;
    let at = |span: std::ops::Range<usize>, msg: String| file.at(span, msg);

    // Inputs: local files, or URIs for an engine that reads them (never both).
    let patterns = s.source.path.get_ref().to_vec();
    let remote: Vec<String> = patterns.iter().filter(|p| is_uri(p)).cloned().collect();
    if !remote.is_empty() {
        return resolve_remote(r, remote);
    }
    let files = match reader::expand(&base, &patterns) {
        Ok(f) => f,
        Err(msg) => {
            diags.push(
                at(s.source.path.span(), msg)
                    .hint("paths are relative to the folder of the pipeline file"),
            );
            Vec::new()
        }
    };
    let format = match (&s.source.format, files.first()) {
        (Some(f), _) => Some(*f.get_ref()),
        (None, Some(first)) => {
            let f = SourceFormat::from_path(first);
            if f.is_none() {
                diags.push(unknown_format(file, &first.display().to_string()));
            }
            f
        }
        (None, None) => None,
    };
    let separator = separator_of(file);

    // Manifest.
    let manifest_path = match (&s.source.manifest, files.first()) {
        (Some(m), _) => Some(spec::resolve(&base, m.get_ref())),
        (None, Some(first)) => Some(spec::resolve(&spec::base_dir(first), "manifest.toml")),
        (None, None) => None,
    };
    let manifest = manifest_path.and_then(|p| {
        let span = s
            .source
            .manifest
            .as_ref()
            .map(|m| m.span())
            .unwrap_or(s.source.path.span());
        load_manifest(file, &p, span, "every source needs a dataset manifest; `privprep datagen` writes one, or set manifest = \"path\" in [source]", diags)
    });

    let (Some(manifest), Some(format)) = (manifest, format) else {
        return Err(Halt);
    };

    // Schema of every input against the manifest.
    let mut csv_names = Vec::new();
    let mut conversions: Vec<Conversion> = manifest
        .spec
        .columns
        .iter()
        .map(|_| Conversion::AsIs)
        .collect();
    for f in &files {
        match reader::file_schema(f, format, separator) {
            Err(e) => diags.push(Diagnostic::file(f, e.to_string())),
            Ok(schema) => {
                for (name, _) in &schema {
                    if manifest.column(name).is_none() {
                        diags.push(Diagnostic::file(f, format!("column `{name}` is in the data but not in the manifest")).hint(format!("add a [[columns]] entry for `{name}` with its type and class to {}", manifest.path.display())));
                    }
                }
                for (i, c) in manifest.spec.columns.iter().enumerate() {
                    let name = c.name.get_ref();
                    match schema.iter().find(|(n, _)| n == name) {
                        None => diags.push(manifest.diag(c.name.span(), format!("column `{name}` is in the manifest but not in {}", f.display())).hint("fix the name, or remove the entry if the data no longer has the column")),
                        Some((_, have)) => match reader::conversion(have, *c.ty.get_ref()) {
                            None => diags.push(manifest.diag(c.ty.span(), format!("column `{name}` is {have} in {} but the manifest says {}", f.display(), c.ty.get_ref().as_str())).hint("fix the manifest type or convert the data")),
                            Some(conv) => {
                                if conv != Conversion::AsIs {
                                    conversions[i] = conv;
                                }
                            }
                        },
                    }
                }
                if format == SourceFormat::Csv {
                    if !csv_names.is_empty()
                        && csv_names != schema.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()
                    {
                        diags.push(Diagnostic::file(f, "this CSV's header differs from the first input's").hint("all files of one source must have the same columns in the same order"));
                    }
                    csv_names = schema.into_iter().map(|(n, _)| n).collect();
                }
            }
        }
    }

    r.paths.extend(files.iter().map(|f| {
        NamedPath::read(
            format!("input `{}`", f.display()),
            f.clone(),
            Some(s.source.path.span()),
        )
    }));
    r.paths.push(NamedPath::read(
        "the dataset manifest",
        manifest.path.clone(),
        s.source
            .manifest
            .as_ref()
            .map(|m| m.span())
            .or(Some(s.source.path.span())),
    ));
    r.source = Some(Source {
        files,
        remote: Vec::new(),
        format,
        separator,
        csv_names,
        manifest,
        conversions,
    });
    Ok(())
}

/// The dataset manifest at `path`, or its diagnostics (`hint` when it does not exist, at
/// `span` of the pipeline file).
fn load_manifest(
    file: &PipelineFile,
    path: &Path,
    span: std::ops::Range<usize>,
    hint: &str,
    diags: &mut Diagnostics,
) -> Option<Manifest> {
    if !path.exists() {
        diags.push(
            file.at(
                span,
                format!("manifest `{}` does not exist", path.display()),
            )
            .hint(hint),
        );
        return None;
    }
    match Manifest::load(path) {
        Ok(m) => Some(m),
        Err(ds) => {
            diags.0.extend(ds.0);
            None
        }
    }
}

/// The CSV field separator of `[source]` (`,` unless given).
fn separator_of(file: &PipelineFile) -> u8 {
    file.spec
        .source
        .separator
        .as_ref()
        .and_then(|x| x.get_ref().bytes().next())
        .unwrap_or(b',')
}

/// The diagnostic of an input whose format its name does not tell.
fn unknown_format(file: &PipelineFile, name: &str) -> Diagnostic {
    file.at(
        file.spec.source.path.span(),
        format!("cannot tell the format of `{name}` from its extension"),
    )
    .hint("add format = \"csv\", \"parquet\" or \"ndjson\" to [source]")
}

/// A source path that names a URI (`scheme://…`) rather than a local file.
pub fn is_uri(path: &str) -> bool {
    path.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

/// A source of URIs: the format from `format` or the URIs' extension, the manifest named in
/// `[source]`; nothing is read here (the engine that reads the URIs checks their columns
/// against the manifest).
fn resolve_remote(r: &mut Resolution, remote: Vec<String>) -> Result<(), Halt> {
    let file = r.file;
    let s = &file.spec;
    let at = |span: std::ops::Range<usize>, msg: String| file.at(span, msg);
    if remote.len() != s.source.path.get_ref().to_vec().len() {
        r.diags.push(
            at(
                s.source.path.span(),
                "a source mixes local paths and URIs".into(),
            )
            .hint("give local files or URIs (s3a://…, file:///…), not both"),
        );
        return Err(Halt);
    }
    let format = match &s.source.format {
        Some(f) => Some(*f.get_ref()),
        None => SourceFormat::from_path(Path::new(remote[0].trim_end_matches('/'))),
    };
    let Some(format) = format else {
        r.diags.push(unknown_format(file, &remote[0]));
        return Err(Halt);
    };
    let Some(m) = &s.source.manifest else {
        r.diags.push(
            at(
                s.source.path.span(),
                "a source of URIs needs its manifest named".into(),
            )
            .hint("add manifest = \"path/to/manifest.toml\" (a local file) to [source]"),
        );
        return Err(Halt);
    };
    let path = spec::resolve(&r.base, m.get_ref());
    let Some(manifest) = load_manifest(
        file,
        &path,
        m.span(),
        "every source needs a dataset manifest",
        &mut r.diags,
    ) else {
        return Err(Halt);
    };
    let separator = separator_of(file);
    r.paths.push(NamedPath::read(
        "the dataset manifest",
        manifest.path.clone(),
        Some(m.span()),
    ));
    let conversions = manifest
        .spec
        .columns
        .iter()
        .map(|_| Conversion::AsIs)
        .collect();
    r.source = Some(Source {
        files: Vec::new(),
        remote,
        format,
        separator,
        csv_names: Vec::new(),
        manifest,
        conversions,
    });
    Ok(())
}

fn explain(plan: &Plan, out: &mut super::Explained) {
    out.sources = plan
        .source
        .files
        .iter()
        .map(|f| f.display().to_string())
        .chain(plan.source.remote.iter().cloned())
        .collect();
    out.format = plan.source.format.as_str().into();
    out.dataset_id = plan.source.manifest.dataset_id().into();
    out.manifest = plan.source.manifest.path.display().to_string();
}

/// The lineage of the inputs, once they are pre-scanned and hashed.
pub fn input_records(plan: &Plan, inputs: &[reader::InputFile]) -> Vec<InputRecord> {
    inputs
        .iter()
        .map(|i| InputRecord {
            path: i.path.display().to_string(),
            bytes: i.scan.bytes,
            sha256: i.scan.sha256.clone(),
            rows_read: i.scan.records,
            dataset_id: plan.source.manifest.dataset_id().to_string(),
        })
        .collect()
}
