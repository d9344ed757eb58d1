//! Spec + manifest + input schema → the executable plan.
//!
//! This is the second validation phase: everything that needs the manifest or the data's
//! schema is checked here, and every problem is reported at once with its file and line.
//! [`build`] is the whole of it: load the file, run each stage's checks, resolve each stage
//! in order (`crate::stages::STAGES`), then check that no file the run writes is one it reads
//! or writes twice. Privacy by default lives in the identity stage: a column that is not public
//! and has no rule is an error.
//!
//! Depends on: `spec`, `stages`.

pub use crate::stages::output::OutputPlan;
pub use crate::stages::{ColumnPlan, Explained, ExplainedColumn, Plan, Source};

use crate::spec::paths::{self as spec_paths, NamedPath, Use};
use crate::spec::{self, Diagnostic, Diagnostics, PipelineFile};
use crate::stages::{Resolution, STAGES};

/// Loads and validates a pipeline and everything it names; returns the plan or every problem.
pub fn build(path: &std::path::Path) -> Result<Plan, Diagnostics> {
    let (file, mut diags) = spec::load(path)?;
    for stage in &STAGES {
        (stage.check)(&file, &mut diags);
    }
    spec::check_columns(&file, &mut diags);
    let mut r = Resolution::new(&file, diags);
    for stage in &STAGES {
        if (stage.resolve)(&mut r).is_err() {
            tracing::debug!(stage = stage.name, "resolution stopped");
            return Err(r.diags);
        }
    }
    // Reads first, so a write is reported against what it would overwrite.
    r.paths.sort_by_key(|p| p.use_ == Use::Write);
    for d in collision_diagnostics(&file, &r.paths) {
        r.diags.push(d);
    }
    r.finish()
}

/// `line L, column C` of a byte offset in the pipeline file.
fn place(file: &PipelineFile, span: &Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(sp) => {
            let d = Diagnostic::at(&file.path, &file.text, Some(sp.clone()), "");
            format!("{}:{}:{}", file.path.display(), d.line, d.column)
        }
        None => "outside the pipeline file".into(),
    }
}

/// One error per path the run would write over a file it reads, owns or writes twice.
pub fn collision_diagnostics(file: &PipelineFile, paths: &[NamedPath]) -> Vec<Diagnostic> {
    spec_paths::collisions(paths)
        .into_iter()
        .map(|c| {
            let verb = match c.other.use_ {
                spec_paths::Use::Read => "would overwrite",
                spec_paths::Use::Write => "is the same file as",
            };
            Diagnostic::at(
                &file.path,
                &file.text,
                c.written.span.clone(),
                format!(
                    "{} `{}` {verb} {} (`{}`, {})",
                    c.written.what,
                    c.written.path.display(),
                    c.other.what,
                    c.other.path.display(),
                    place(file, &c.other.span)
                ),
            )
            .hint("every file a run writes must be a new place: choose another path (after symlinks and `..` it names the same file)")
        })
        .collect()
}
