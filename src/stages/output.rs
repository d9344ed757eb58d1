//! Stage `output`: `[output]`, where the kept rows are written (one Parquet file, or one per
//! subject-disjoint split), row groups, and the quarantine report with its limit. The writer
//! is `crate::emit`; the polars sink feeds it.

use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

use super::{record_nothing, Halt, Plan, Resolution, Stage};
use crate::spec::paths::NamedPath;
use crate::spec::{self, Diagnostics, PipelineFile};

pub const STAGE: Stage = Stage {
    name: "output",
    check,
    resolve,
    explain,
    record: record_nothing,
};

/// `[output]`: where and how the Parquet is written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Output Parquet file, relative to the pipeline file. With a split, the split name is put
    /// before the extension (`tickets.train.parquet`).
    pub path: Spanned<String>,
    /// Rows per row group, default 131072.
    #[serde(default)]
    pub row_group_size: Option<Spanned<usize>>,
    /// How many unparseable rows may be quarantined before the run fails; default 0.
    #[serde(default)]
    pub max_bad_rows: u64,
    /// Quarantine report path; default `<output stem>.quarantine.jsonl` beside the output.
    #[serde(default)]
    pub quarantine: Option<Spanned<String>>,
    /// Subject-disjoint splits.
    #[serde(default)]
    pub split: Option<Spanned<SplitSpec>>,
    /// Days a committed output is kept: `privprep retention sweep` deletes it after.
    #[serde(default)]
    pub retain_days: Option<Spanned<u32>>,
    /// Parquet modular encryption of the data files.
    #[serde(default)]
    pub encryption: Option<Spanned<EncryptionSpec>>,
}

/// `[output.encryption]`: which columns are encrypted and which master keys wrap the files'
/// data keys. The keys themselves never appear here (`PRIVPREP_MASTER_KEY_<ID>` or key files).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionSpec {
    /// Master key id for the footer's data key; default `privprep-footer`.
    #[serde(default)]
    pub footer_key: Option<Spanned<String>>,
    /// Master key id for the columns' data keys; default `privprep-columns`.
    #[serde(default)]
    pub column_key: Option<Spanned<String>>,
    /// Output columns to encrypt; default every output column the manifest classes
    /// `identifier`, `quasi_identifier` or `sensitive`.
    #[serde(default)]
    pub columns: Option<Vec<Spanned<String>>>,
}

/// Default master key ids.
pub const DEFAULT_FOOTER_KEY: &str = "privprep-footer";
pub const DEFAULT_COLUMN_KEY: &str = "privprep-columns";

/// The resolved `[output.encryption]`.
#[derive(Debug, Clone, PartialEq)]
pub struct EncryptionPlan {
    pub footer_key: String,
    pub column_key: String,
    pub columns: Vec<String>,
}

/// Whether `id` may name a master key (it becomes a file name and a variable's suffix).
fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `[output.split]` fractions; they must sum to 1.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    pub train: f64,
    #[serde(default)]
    pub validation: f64,
    #[serde(default)]
    pub test: f64,
}

/// Output settings.
#[derive(Debug, Clone)]
pub struct OutputPlan {
    pub path: PathBuf,
    pub row_group_size: usize,
    pub max_bad_rows: u64,
    pub quarantine_path: PathBuf,
    /// (train, validation, test) fractions.
    pub split: Option<(f64, f64, f64)>,
    /// Days the outputs are kept (`retention sweep` deletes them after).
    pub retain_days: Option<u32>,
    pub encryption: Option<EncryptionPlan>,
}

impl OutputPlan {
    /// (split name, split code, path) of every file the run writes.
    pub fn files(&self) -> Vec<(&'static str, u8, PathBuf)> {
        match self.split {
            None => vec![("all", 0, self.path.clone())],
            Some((_, v, t)) => {
                let mut out = vec![("train", 0, crate::emit::split_path(&self.path, "train"))];
                if v > 0.0 {
                    out.push((
                        "validation",
                        1,
                        crate::emit::split_path(&self.path, "validation"),
                    ));
                }
                if t > 0.0 {
                    out.push(("test", 2, crate::emit::split_path(&self.path, "test")));
                }
                out
            }
        }
    }
}

fn check(file: &PipelineFile, diags: &mut Diagnostics) {
    let spec = &file.spec;
    let at = |span: std::ops::Range<usize>, msg: String| file.at(span, msg);
    if let Some(rg) = &spec.output.row_group_size {
        if *rg.get_ref() == 0 {
            diags.push(
                at(rg.span(), "row_group_size must be positive".into())
                    .hint("the default is 131072 rows"),
            );
        }
    }
    if !spec.output.path.get_ref().ends_with(".parquet") {
        diags.push(
            at(
                spec.output.path.span(),
                "output path must end in .parquet".into(),
            )
            .hint("e.g. path = \"../out/tickets.parquet\""),
        );
    }
    if let Some(d) = &spec.output.retain_days {
        if *d.get_ref() == 0 {
            diags.push(at(d.span(), "retain_days must be at least 1".into()).hint(
                "the number of days an output is kept before `privprep retention sweep` deletes it",
            ));
        }
    }
    if let Some(e) = &spec.output.encryption {
        let e = e.get_ref();
        for id in [&e.footer_key, &e.column_key].into_iter().flatten() {
            if !valid_key_id(id.get_ref()) {
                diags.push(
                    at(id.span(), "a master key id must be 1 to 64 letters, digits, `-`, `_` or `.`".into())
                        .hint("the id names the key (its file `<id>.key`, its variable PRIVPREP_MASTER_KEY_<ID>); the key itself never goes in the pipeline file"),
                );
            }
        }
    }
    if let Some(split) = &spec.output.split {
        let s = split.get_ref();
        let parts = [s.train, s.validation, s.test];
        if parts.iter().any(|f| !(0.0..=1.0).contains(f) || f.is_nan())
            || (parts.iter().sum::<f64>() - 1.0).abs() > 1e-9
        {
            diags.push(
                at(
                    split.span(),
                    format!(
                        "split fractions must be between 0 and 1 and sum to 1 (they sum to {})",
                        parts.iter().sum::<f64>()
                    ),
                )
                .hint("e.g. train = 0.8, validation = 0.1, test = 0.1"),
            );
        }
    }
}

fn resolve(r: &mut Resolution) -> Result<(), Halt> {
    let s = &r.file.spec;
    let base = &r.base;
    // Output.
    let out_path = spec::resolve(base, s.output.path.get_ref());
    let quarantine_path = match &s.output.quarantine {
        Some(q) => spec::resolve(base, q.get_ref()),
        None => {
            let stem = out_path
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            spec::base_dir(&out_path).join(format!("{stem}.quarantine.jsonl"))
        }
    };
    let encryption = s
        .output
        .encryption
        .as_ref()
        .and_then(|e| resolve_encryption(r, e.get_ref(), e.span()));
    let output = OutputPlan {
        path: out_path,
        row_group_size: s
            .output
            .row_group_size
            .as_ref()
            .map(|r| *r.get_ref())
            .unwrap_or(131_072),
        max_bad_rows: s.output.max_bad_rows,
        quarantine_path,
        split: s.output.split.as_ref().map(|x| {
            let x = x.get_ref();
            (x.train, x.validation, x.test)
        }),
        // The pipeline's, else the dataset manifest's default.
        retain_days: s
            .output
            .retain_days
            .as_ref()
            .map(|d| *d.get_ref())
            .or_else(|| {
                r.source
                    .as_ref()
                    .and_then(|src| src.manifest.spec.retain_days)
                    .filter(|d| *d > 0)
            }),
        encryption,
    };

    let out_span = Some(s.output.path.span());
    for (split, _, path) in output.files() {
        let what = match split {
            "all" => "[output] path".to_string(),
            other => format!("the `{other}` split of [output] path"),
        };
        r.paths.push(NamedPath::write(what, path, out_span.clone()));
    }
    r.paths.push(NamedPath::write(
        match &s.output.quarantine {
            Some(_) => "[output] quarantine",
            None => "the default quarantine report of [output] path",
        },
        output.quarantine_path.clone(),
        s.output.quarantine.as_ref().map(|q| q.span()).or(out_span),
    ));
    r.output = Some(output);
    Ok(())
}

/// The encrypted columns and key ids, or `None` (with a diagnostic) when a named column is not
/// an output column or nothing would be encrypted.
fn resolve_encryption(
    r: &mut Resolution,
    e: &EncryptionSpec,
    span: std::ops::Range<usize>,
) -> Option<EncryptionPlan> {
    use crate::identity::Action;
    use crate::ingest::manifest::ColumnClass;
    let columns = r.columns.as_ref()?;
    let outputs: Vec<&super::ColumnPlan> = columns
        .iter()
        .filter(|c| c.action != Action::Drop)
        .collect();
    let chosen: Vec<String> = match &e.columns {
        Some(named) => {
            let mut ok = Vec::new();
            for c in named {
                if outputs.iter().any(|o| o.name == *c.get_ref()) {
                    ok.push(c.get_ref().clone());
                } else {
                    let d = r
                        .file
                        .at(
                            c.span(),
                            format!("`{}` is not an output column", c.get_ref()),
                        )
                        .hint("name columns the pipeline writes (not dropped ones)");
                    r.diags.push(d);
                }
            }
            ok
        }
        None => outputs
            .iter()
            .filter(|c| {
                matches!(
                    c.class,
                    ColumnClass::Identifier | ColumnClass::QuasiIdentifier | ColumnClass::Sensitive
                )
            })
            .map(|c| c.name.clone())
            .collect(),
    };
    if chosen.is_empty() {
        if e.columns.is_none() {
            let d = r
                .file
                .at(span, "[output.encryption] has nothing to encrypt: no output column is classed identifier, quasi_identifier or sensitive")
                .hint("name the columns: columns = [\"col\", …]");
            r.diags.push(d);
        }
        return None;
    }
    let id = |k: &Option<Spanned<String>>, default: &str| {
        k.as_ref()
            .map(|k| k.get_ref().clone())
            .unwrap_or_else(|| default.to_string())
    };
    Some(EncryptionPlan {
        footer_key: id(&e.footer_key, DEFAULT_FOOTER_KEY),
        column_key: id(&e.column_key, DEFAULT_COLUMN_KEY),
        columns: chosen,
    })
}

fn explain(plan: &Plan, out: &mut super::Explained) {
    out.outputs = plan
        .output
        .files()
        .iter()
        .map(|(split, _, p)| format!("{} ({split})", p.display()))
        .collect();
    if let Some((t, v, te)) = plan.output.split {
        out.outputs.push(format!("splits are subject-disjoint: each subject goes to one split by keyed hash (train {t}, validation {v}, test {te})"));
    }
    if let Some(d) = plan.output.retain_days {
        out.outputs.push(format!("kept {d} days after the run: `privprep retention sweep` deletes the files after that (each run's expiry is in lineage and the file's footer)"));
    }
    if let Some(e) = &plan.output.encryption {
        out.outputs.push(format!(
            "encrypted at rest (Parquet modular encryption, AES-GCM): columns {} under master key `{}`; the footer stays readable and is signed under master key `{}`; no statistics for encrypted columns",
            e.columns.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "),
            e.column_key,
            e.footer_key
        ));
    }
    out.quarantine = format!(
        "rows whose values do not parse go to {} (file, line, column, error; never the value); the run fails above {} such rows",
        plan.output.quarantine_path.display(),
        plan.output.max_bad_rows
    );
}
