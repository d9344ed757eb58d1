//! `explain` as data (for `--format json`) and as text; each stage fills its part.

use serde::Serialize;

/// `explain` as data, for `--format json`.
#[derive(Debug, Default, Serialize)]
pub struct Explained {
    pub pipeline: String,
    pub sources: Vec<String>,
    pub format: String,
    pub dataset_id: String,
    pub manifest: String,
    pub policy: Vec<String>,
    pub columns: Vec<ExplainedColumn>,
    pub outputs: Vec<String>,
    pub quarantine: String,
    /// Free-text settings and the leak gate, one line each.
    pub text: Vec<String>,
    /// Differentially private releases: query, privacy cost and expected accuracy.
    pub releases: Vec<String>,
    pub warnings: Vec<String>,
}

/// One column in `explain`.
#[derive(Debug, Default, Serialize)]
pub struct ExplainedColumn {
    pub column: String,
    pub from: String,
    pub class: String,
    pub input_type: String,
    pub output_type: Option<String>,
    pub transformation: String,
    pub unsafe_raw: bool,
}

impl std::fmt::Display for Explained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "pipeline {}", self.pipeline)?;
        writeln!(
            f,
            "\nsources ({}, dataset `{}`, manifest {})",
            self.format, self.dataset_id, self.manifest
        )?;
        for s in &self.sources {
            writeln!(f, "  {s}")?;
        }
        writeln!(f, "\npolicy (a row is dropped for the first rule it fails)")?;
        for p in &self.policy {
            writeln!(f, "  {p}")?;
        }
        writeln!(f, "\ncolumns")?;
        let width = self
            .columns
            .iter()
            .map(|c| c.column.len())
            .max()
            .unwrap_or(0);
        for c in &self.columns {
            match &c.output_type {
                Some(t) => writeln!(
                    f,
                    "  {:<width$}  ← {} ({}, {}): {} → {t}{}",
                    c.column,
                    c.from,
                    c.class,
                    c.input_type,
                    c.transformation,
                    if c.unsafe_raw { "  [UNSAFE]" } else { "" }
                )?,
                None => writeln!(
                    f,
                    "  {:<width$}  ✗ dropped ({}, {})",
                    c.column, c.class, c.input_type
                )?,
            }
        }
        writeln!(f, "\noutputs")?;
        for o in &self.outputs {
            writeln!(f, "  {o}")?;
        }
        writeln!(f, "  {}", self.quarantine)?;
        if !self.releases.is_empty() {
            writeln!(f, "\ndifferentially private releases")?;
            for r in &self.releases {
                writeln!(f, "  {r}")?;
            }
        }
        writeln!(f, "\nfree text and leak gate")?;
        for t in &self.text {
            writeln!(f, "  {t}")?;
        }
        if !self.warnings.is_empty() {
            writeln!(f)?;
            for w in &self.warnings {
                writeln!(f, "warning: {w}")?;
            }
        }
        Ok(())
    }
}
