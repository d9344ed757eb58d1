//! The stages of a pipeline, one module each, in the order rows flow through them.
//!
//! A stage owns four things, all in its module: its section of the pipeline file (the spec
//! types and the checks that need only the file), its resolution against the manifest and the
//! data's schema (an engine-free plan part; every problem goes to one list of diagnostics),
//! what it adds to `explain`, and its part of the lineage record. How an engine runs it lives
//! under `crate::engine` (for polars, `engine/polars/<stage>.rs`).
//!
//! | stage      | pipeline file           | plan part                      | polars lowering            |
//! |------------|-------------------------|--------------------------------|----------------------------|
//! | `ingest`   | `[source]`              | [`Source`]: files, manifest    | `ingest::scan_input`, typed columns (`engine/polars/mod.rs`) |
//! | `policy`   | `[policy]`              | `PolicyPlan`                   | `engine/polars/policy.rs`  |
//! | `identity` | `[columns]`, `[tokens]` | [`ColumnPlan`]s                | `engine/polars/identity.rs` |
//! | `text`     | `[pii]`, `redact` rules | `PiiPlan`, `TextColumnPlan`s   | `engine/polars/text.rs`    |
//! | `risk`     | `[risk]`                | [`risk::RiskPlan`]             | `engine/polars/risk.rs` (a counting pass, then the status) |
//! | `output`   | `[output]`              | [`output::OutputPlan`]         | the sink and writer thread (`engine/polars/mod.rs`) |
//! | `release`  | `[[release]]`           | `ReleasePlan`s, the budget cap | `dp::release` (OpenDP), run by `run::releases` |
//! | `synthetic`| `[[synthetic]]`         | [`synthetic::SyntheticPlan`]s  | `synth` (OpenDP measurements), run by `run::synthetic` |
//!
//! Adding a stage: a module here, a line in [`STAGES`], a field in [`Resolution`] and [`Plan`],
//! and its lowering. Stages do not import each other: what one needs of an earlier one (the
//! manifest, the column plans) it reads from the [`Resolution`] the earlier ones filled.
//!
//! Depends on: `spec` (sections are parsed there, diagnostics), the plan types of `ingest`,
//! `policy`, `identity`, `pii` and `dp::plan`, `lineage::record` (record types). Not on the
//! engine: no plan part holds a polars or OpenDP type; only the release stage's `explain` asks
//! `dp::release` for OpenDP's calibration, to state the accuracy before any row is read.

pub mod identity;
pub mod ingest;
pub mod output;
pub mod policy;
pub mod release;
pub mod risk;
pub mod synthetic;
pub mod text;

mod explained;

pub use explained::{Explained, ExplainedColumn};

use std::path::PathBuf;

use crate::dp::ledger::Loss;
use crate::dp::plan::ReleasePlan;
use crate::identity::Action;
use crate::ingest::{ColumnClass, ColumnType, Conversion, Manifest};
use crate::lineage::record::RunRecord;
use crate::pii::{PiiPlan, TextColumnPlan};
use crate::policy::PolicyPlan;
use crate::spec::paths::NamedPath;
use crate::spec::{Diagnostics, PipelineFile, SourceFormat};
use output::OutputPlan;

/// One stage: what it checks, resolves, explains and records.
pub struct Stage {
    pub name: &'static str,
    /// Checks that need only the pipeline file; they run for every stage before any
    /// resolution, so a file's own mistakes are all reported even when its manifest is missing.
    pub check: fn(&PipelineFile, &mut Diagnostics),
    /// Resolution against the manifest, the schema and the earlier stages' plan parts.
    /// `Err(Halt)`: later stages cannot be resolved (no manifest, no format).
    pub resolve: fn(&mut Resolution) -> Result<(), Halt>,
    /// The stage's part of `explain`.
    pub explain: fn(&Plan, &mut Explained),
    /// What the stage puts in the lineage record before any row is read.
    pub record: fn(&Plan, &mut RunRecord),
}

/// The stages, in order. Resolution, `explain` and the lineage record all follow this list.
pub const STAGES: [Stage; 8] = [
    ingest::STAGE,
    policy::STAGE,
    identity::STAGE,
    text::STAGE,
    risk::STAGE,
    output::STAGE,
    release::STAGE,
    synthetic::STAGE,
];

/// A resolution that cannot go on: the problems so far are in the diagnostics.
#[derive(Debug)]
pub struct Halt;

/// What the ingest stage resolved: the inputs and the manifest every later stage reads.
#[derive(Debug, Clone)]
pub struct Source {
    pub files: Vec<PathBuf>,
    /// Inputs given as URIs (`s3a://…`, `abfss://…`, `file:///…`, globs allowed), which only an
    /// engine that reads URIs (Spark) reads; then `files` is empty and the schema is the
    /// manifest's, checked by that engine.
    pub remote: Vec<String>,
    pub format: SourceFormat,
    pub separator: u8,
    /// CSV header names in file order (CSV only).
    pub csv_names: Vec<String>,
    pub manifest: Manifest,
    /// How each manifest column is read from the data, in manifest order.
    pub conversions: Vec<Conversion>,
}

/// One output (or dropped) column.
#[derive(Debug, Clone)]
pub struct ColumnPlan {
    pub name: String,
    pub ty: ColumnType,
    pub class: ColumnClass,
    pub action: Action,
    /// True when the rule came from the pipeline (false: a public column passed through).
    pub explicit: bool,
    pub conversion: Conversion,
}

impl ColumnPlan {
    /// True when the output holds raw direct identifiers or raw free text. Kept
    /// quasi-identifiers and sensitive columns are a deliberate choice the pipeline states;
    /// `explain` shows them with their class.
    pub fn is_unsafe(&self) -> bool {
        self.action == Action::Keep
            && matches!(self.class, ColumnClass::Identifier | ColumnClass::FreeText)
    }
}

/// The plan while it is being resolved: the pipeline file, the problems found so far and each
/// stage's part once that stage has run.
pub struct Resolution<'a> {
    pub file: &'a PipelineFile,
    /// The folder relative paths of the pipeline file are resolved against.
    pub base: PathBuf,
    pub diags: Diagnostics,
    pub source: Option<Source>,
    pub policy: Option<PolicyPlan>,
    pub columns: Option<Vec<ColumnPlan>>,
    pub pii: Option<PiiPlan>,
    pub text: Option<Vec<TextColumnPlan>>,
    /// `Some(None)`: resolved, no `[risk]`.
    pub risk: Option<Option<risk::RiskPlan>>,
    pub output: Option<OutputPlan>,
    pub releases: Option<Vec<ReleasePlan>>,
    pub synthetics: Option<Vec<synthetic::SyntheticPlan>>,
    pub budget_cap: Option<Loss>,
    /// Every file the pipeline names, read or written, with where (for collision checks).
    pub paths: Vec<NamedPath>,
}

impl<'a> Resolution<'a> {
    pub fn new(file: &'a PipelineFile, diags: Diagnostics) -> Self {
        Resolution {
            file,
            base: file.base_dir(),
            diags,
            source: None,
            policy: None,
            columns: None,
            pii: None,
            text: None,
            risk: None,
            output: None,
            releases: None,
            synthetics: None,
            budget_cap: None,
            paths: Vec::new(),
        }
    }

    /// The plan, when every stage resolved its part and nothing was wrong.
    pub fn finish(mut self) -> Result<Plan, Diagnostics> {
        let diags = std::mem::take(&mut self.diags);
        if !diags.is_empty() {
            return Err(diags);
        }
        let mut complete = || {
            Some(Plan {
                name: self.file.spec.pipeline.name.get_ref().clone(),
                pipeline: self.file.clone(),
                source: self.source.take()?,
                policy: self.policy.take()?,
                columns: self.columns.take()?,
                pii: self.pii.take()?,
                text: self.text.take()?,
                risk: self.risk.take()?,
                output: self.output.take()?,
                releases: self.releases.take()?,
                synthetics: self.synthetics.take()?,
                budget_cap: self.budget_cap.take(),
                paths: std::mem::take(&mut self.paths),
            })
        };
        complete().ok_or(diags)
    }
}

/// The resolved, executable plan: every stage's part. It holds no engine type.
#[derive(Debug, Clone)]
pub struct Plan {
    pub pipeline: PipelineFile,
    pub name: String,
    /// The inputs and the manifest.
    pub source: Source,
    pub policy: PolicyPlan,
    pub columns: Vec<ColumnPlan>,
    /// `[pii]` settings.
    pub pii: PiiPlan,
    /// Free-text columns and their rules, in manifest order.
    pub text: Vec<TextColumnPlan>,
    /// k-anonymity (`[risk]`), when asked for.
    pub risk: Option<risk::RiskPlan>,
    pub output: OutputPlan,
    /// Differentially private releases.
    pub releases: Vec<ReleasePlan>,
    /// Differentially private synthetic tables.
    pub synthetics: Vec<synthetic::SyntheticPlan>,
    /// The dataset's privacy budget cap (from the manifest).
    pub budget_cap: Option<Loss>,
    /// Every file the pipeline names, read or written, with where (for collision checks).
    pub paths: Vec<NamedPath>,
}

impl Plan {
    /// True when some action or the split needs the run key.
    pub fn needs_key(&self) -> bool {
        self.output.split.is_some()
            || self.columns.iter().any(|c| c.action.needs_key())
            || self.text.iter().any(|t| t.tokenizes())
    }

    /// The text rule of a column, if it is redacted.
    pub fn text_rule(&self, column: &str) -> Option<&TextColumnPlan> {
        self.text.iter().find(|t| t.column == column)
    }

    /// What is done to a column, in words.
    pub fn describe_column(&self, c: &ColumnPlan) -> String {
        match self.text_rule(&c.name) {
            Some(t) if c.action == Action::Redact => t.describe(),
            _ => c.action.describe(),
        }
    }

    /// Columns that reach the output, in order.
    pub fn output_columns(&self) -> impl Iterator<Item = &ColumnPlan> {
        self.columns.iter().filter(|c| c.action != Action::Drop)
    }

    /// String identifier columns: their values of every input row feed the leak gate. Text
    /// columns search the same columns by default, so what the gate calls a leak is something
    /// a redact rule can remove.
    pub fn identifier_columns(&self) -> Vec<String> {
        self.columns
            .iter()
            .filter(|c| c.class == ColumnClass::Identifier && c.ty == ColumnType::String)
            .map(|c| c.name.clone())
            .collect()
    }

    /// Output columns the leak gate does not judge: identifier columns the pipeline explicitly
    /// keeps as they are (`explain` marks them UNSAFE); everything else must come out clean.
    pub fn gate_exempt(&self) -> Vec<String> {
        self.output_columns()
            .filter(|c| {
                c.explicit && c.action == Action::Keep && c.class == ColumnClass::Identifier
            })
            .map(|c| c.name.clone())
            .collect()
    }

    /// The plan in words, each stage adding its part.
    pub fn explain(&self) -> Explained {
        let mut out = Explained {
            pipeline: format!("{} ({})", self.name, self.pipeline.path.display()),
            ..Explained::default()
        };
        for stage in &STAGES {
            (stage.explain)(self, &mut out);
        }
        out
    }

    /// The lineage record's parts that the plan fixes before any row is read.
    pub fn record_into(&self, record: &mut RunRecord) {
        for stage in &STAGES {
            (stage.record)(self, record);
        }
    }
}

/// The token encoding a spec names.
pub fn token_encoding(e: crate::spec::TokenEncodingSpec) -> crate::identity::TokenEncoding {
    match e {
        crate::spec::TokenEncodingSpec::Hex => crate::identity::TokenEncoding::Hex,
        crate::spec::TokenEncodingSpec::Base64url => crate::identity::TokenEncoding::Base64Url,
    }
}

/// The token action of `[tokens]`: what identifier columns get by default, and what every
/// token inside free text uses (the same value must get the same token in both).
pub fn run_wide_token(spec: &crate::spec::TokenSpec) -> Action {
    Action::Tokenize {
        bits: spec.bits,
        encoding: token_encoding(spec.encoding),
    }
}

/// For stages with nothing to record before the run.
fn record_nothing(_: &Plan, _: &mut RunRecord) {}

/// For stages whose section has no checks of its own.
fn check_nothing(_: &PipelineFile, _: &mut Diagnostics) {}
