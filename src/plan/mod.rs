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

pub mod rows;

pub use crate::stages::output::OutputPlan;
pub use crate::stages::{ColumnPlan, Explained, ExplainedColumn, Plan, Source};

use crate::spec::paths::{self as spec_paths, NamedPath, Use};
use crate::spec::{self, Diagnostic, Diagnostics, PipelineFile};
use crate::stages::{Resolution, STAGES};

/// Loads and validates a pipeline and everything it names; returns the plan or every problem.
pub fn build(path: &std::path::Path) -> Result<Plan, Diagnostics> {
    let (file, diags) = spec::load(path)?;
    resolve(file, diags)
}

/// [`build`] of a pipeline as a run's record holds it: its text, and the path it was read
/// from (relative paths in it are resolved against that path's folder).
pub fn build_recorded(path: &std::path::Path, text: &str) -> Result<Plan, Diagnostics> {
    let (file, diags) = spec::load_text(path, text.to_string())?;
    resolve(file, diags)
}

fn resolve(file: PipelineFile, mut diags: Diagnostics) -> Result<Plan, Diagnostics> {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// The bundled sample dataset.
    pub(crate) fn dataset() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/support_tickets")
    }

    /// The quickstart pipeline over the bundled dataset, writing into `dir`, with `edit`
    /// applied to its text.
    pub(crate) fn pipeline(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/quickstart.toml"),
        )
        .expect("quickstart pipeline");
        let data = dataset().display().to_string();
        let text = text
            .replace("../datasets/support_tickets", &data)
            .replace("../out/quickstart", &dir.join("out").display().to_string());
        let p = dir.join("pipeline.toml");
        std::fs::write(&p, edit(text)).expect("write pipeline");
        p
    }

    fn problems(path: &Path) -> Vec<String> {
        match build(path) {
            Ok(_) => Vec::new(),
            Err(d) => d.0.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn the_stages_are_listed_once_in_data_flow_order() {
        let names: Vec<&str> = STAGES.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "ingest",
                "policy",
                "identity",
                "text",
                "risk",
                "output",
                "release",
                "synthetic"
            ]
        );
    }

    #[test]
    fn every_stage_resolves_explains_and_records_its_part() {
        let dir = tempfile::tempdir().unwrap();
        let plan = build(&pipeline(dir.path(), |t| t)).expect("the quickstart plans");
        // Ingest, policy, identity, text and output each resolved their part.
        assert_eq!(plan.source.files.len(), 1);
        assert_eq!(plan.source.manifest.dataset_id(), "support_tickets");
        assert_eq!(plan.policy.purpose, "training");
        assert_eq!(
            plan.columns.len(),
            plan.source.manifest.column_names().len()
        );
        assert_eq!(plan.text.len(), 1);
        assert_eq!(plan.text[0].column, "body");
        assert!(plan.output.path.ends_with("out/tickets.parquet"));
        assert!(plan.releases.is_empty());
        // Each names the files it reads or writes.
        let whats: Vec<&str> = plan.paths.iter().map(|p| p.what.as_str()).collect();
        for what in [
            "the dataset manifest",
            "revocation list",
            "the `train` split of [output] path",
            "the default quarantine report of [output] path",
        ] {
            assert!(whats.contains(&what), "{what} missing from {whats:?}");
        }
        // Each adds its part of explain.
        let e = plan.explain();
        assert_eq!(e.sources.len(), 1);
        assert_eq!(e.dataset_id, "support_tickets");
        assert!(!e.policy.is_empty());
        assert_eq!(e.columns.len(), plan.columns.len());
        assert!(e.outputs[0].ends_with("(train)"), "{:?}", e.outputs);
        assert!(e.outputs.iter().any(|o| o.contains("subject-disjoint")));
        assert!(e.quarantine.contains("max_bad_rows") || e.quarantine.contains("fails above"));
        assert!(
            e.text.iter().any(|l| l.starts_with("`body`")),
            "{:?}",
            e.text
        );
        assert!(e.releases.is_empty());
        // And its part of the lineage record.
        let mut record = crate::lineage::record::RunRecord::begin("r", "t", "n", "p", "s", "x");
        plan.record_into(&mut record);
        assert_eq!(record.policy.purpose, "training");
        assert_eq!(record.policy.revocation_lists.len(), 1);
        assert_eq!(record.column_lineage.len(), plan.output_columns().count());
        assert!(record.pii.is_some());
    }

    #[test]
    fn file_checks_of_every_stage_are_reported_even_without_a_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline(dir.path(), |t| {
            t.replace("manifest.toml", "missing.toml")
                .replace("purpose = \"training\"", "purpose = \"\"")
                .replace("bits = 128", "bits = 100")
                .replace("tickets.parquet", "tickets.csv")
        });
        let found = problems(&p);
        for expected in [
            "policy purpose is empty",
            "token length 100 bits is not supported",
            "output path must end in .parquet",
            "missing.toml` does not exist",
        ] {
            assert!(
                found.iter().any(|f| f.contains(expected)),
                "`{expected}` not in {found:#?}"
            );
        }
        // Resolution stopped at ingest: no stage after it reported against the manifest.
        assert!(!found.iter().any(|f| f.contains("not in the manifest")));
    }

    #[test]
    fn later_stages_read_what_earlier_ones_resolved() {
        let dir = tempfile::tempdir().unwrap();
        // The text stage checks context columns against the manifest the ingest stage read;
        // the identity stage's privacy default sees a column the pipeline no longer names.
        let p = pipeline(dir.path(), |t| {
            t.replace(
                "body = { action = \"redact\", actions = { email = \"tokenize\" } }",
                "body = { action = \"redact\", context = [\"emial\"] }",
            )
            .replace("zip = { action = \"generalize\", prefix = 3 }\n", "")
        });
        let found = problems(&p);
        assert!(
            found.iter().any(
                |f| f.contains("context column `emial` is not in the manifest")
                    && f.contains("did you mean `email`?")
            ),
            "{found:#?}"
        );
        assert!(
            found.iter().any(|f| f.contains("column `zip` is classed")),
            "{found:#?}"
        );
    }

    #[test]
    fn a_write_onto_a_read_is_reported_at_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let input = dataset().join("tickets.csv").display().to_string();
        let p = pipeline(dir.path(), |t| {
            t.replace(
                "max_bad_rows = 0",
                &format!("max_bad_rows = 0\nquarantine = \"{input}\""),
            )
        });
        let found = problems(&p);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].contains("[output] quarantine") && found[0].contains("would overwrite"),
            "{found:#?}"
        );
    }
}
