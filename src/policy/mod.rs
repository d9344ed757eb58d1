//! Consent, provenance, revocation and retention: which rows may be processed at all.
//!
//! Every row gets one status code. A row is dropped for the first reason that applies, in the
//! fixed order of [`DropReason::ALL`], so the counts add up to exactly the rows dropped.
//! Missing consent or status values mean no consent. The polars lowering is `engine/polars/policy.rs`; the
//! resolution of `[policy]` is `stages::policy`. Depends on: `spec` (side files), the kernels
//! crate (value predicates); no engine.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

// The per-value predicates are kernels, so every engine keeps and drops the same rows.
pub use privprep_kernels::policy::{
    one_of, purposes_include, DropReason, KEPT, QUARANTINED, STATUS, STATUSES,
};

/// Where a row's provenance tag comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Provenance {
    Column(String),
    Tag(String),
}

/// A loaded revocation list.
#[derive(Debug, Clone)]
pub struct RevocationList {
    pub path: PathBuf,
    pub sha256: String,
    pub ids: HashSet<String>,
}

/// Reads a revocation list: one subject id per line, with an optional header line naming the
/// subject column (or `subject_id`). For CSV with several columns the subject column is used.
///
/// Only a regular file of at most 1 GiB is read (`spec::sidefile::REVOCATION_LIST`):
/// `/dev/zero` or a FIFO is refused, not read until memory runs out or waited on. The error's
/// message names the file and the bound.
pub fn load_revocations(path: &Path, subject_column: &str) -> std::io::Result<RevocationList> {
    use crate::spec::sidefile::{self, SideFileError, REVOCATION_LIST};
    let bytes = sidefile::read(path, REVOCATION_LIST).map_err(|e| match e {
        // The caller's message names the file already; keep the plain I/O reason.
        SideFileError::Io { source, .. } => source,
        other => std::io::Error::new(
            other.io_kind(),
            format!(
                "{}; a revocation list must be a regular file of at most {}",
                other.reason(),
                REVOCATION_LIST.limit_text()
            ),
        ),
    })?;
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    let text = String::from_utf8(bytes)
        .map_err(|_| std::io::Error::other("revocation list is not UTF-8"))?;
    let mut lines = text
        .lines()
        .map(|l| l.trim().trim_start_matches('\u{feff}'))
        .filter(|l| !l.is_empty())
        .peekable();
    let mut field = 0usize;
    if let Some(first) = lines.peek() {
        let names: Vec<&str> = first
            .split(',')
            .map(|s| s.trim().trim_matches('"'))
            .collect();
        if let Some(i) = names
            .iter()
            .position(|n| *n == subject_column || *n == "subject_id")
        {
            field = i;
            lines.next();
        }
    }
    let ids = lines
        .filter_map(|l| {
            l.split(',')
                .nth(field)
                .map(|s| s.trim().trim_matches('"').to_string())
        })
        .filter(|s| !s.is_empty())
        .collect();
    Ok(RevocationList {
        path: path.to_path_buf(),
        sha256,
        ids,
    })
}

/// The policy with every column role resolved against the manifest.
#[derive(Debug, Clone)]
pub struct PolicyPlan {
    pub purpose: String,
    pub allowed_status: Vec<String>,
    pub allowed_provenance: Vec<String>,
    pub revocations: Vec<RevocationList>,
    pub retention_days: Option<u32>,
    pub as_of: chrono::NaiveDate,
    /// The privacy unit's column: the manifest's subject column, or
    /// [`crate::ingest::manifest::ROW_UNIT`] when each row is its own unit.
    pub subject_column: String,
    /// True when each row is its own privacy unit (no subject ids in the data).
    pub row_unit: bool,
    /// The consent columns, or the dataset-wide consent (one or the other).
    pub purposes_column: Option<String>,
    pub status_column: Option<String>,
    pub dataset_consent: Option<crate::ingest::manifest::DatasetConsent>,
    pub purpose_separator: String,
    pub provenance: Provenance,
    /// Timestamp column and whether it is a datetime (else a date).
    pub timestamp: Option<(String, bool)>,
}

impl PolicyPlan {
    /// All revoked ids across lists.
    pub fn revoked_ids(&self) -> Arc<HashSet<String>> {
        let mut all = HashSet::new();
        for l in &self.revocations {
            all.extend(l.ids.iter().cloned());
        }
        Arc::new(all)
    }

    /// The policy in words, one line per rule, for `explain`.
    pub fn describe(&self) -> Vec<String> {
        let consent = match (&self.dataset_consent, &self.status_column, &self.purposes_column) {
            (Some(c), _, _) => [
                format!(
                    "3. consent holds for the whole dataset (basis: {}): no status check",
                    c.basis
                ),
                if c.purposes.iter().any(|p| p == &self.purpose) {
                    format!("4. its purposes ({}) include `{}`", c.purposes.join(", "), self.purpose)
                } else {
                    format!(
                        "4. its purposes ({}) do NOT include `{}`: every row is dropped",
                        c.purposes.join(", "),
                        self.purpose
                    )
                },
            ],
            (None, status, purposes) => [
                format!(
                    "3. drop rows whose consent status (`{}`) is not one of: {}",
                    status.as_deref().unwrap_or("-"),
                    self.allowed_status.join(", ")
                ),
                format!(
                    "4. drop rows whose consent purposes (`{}`, separated by `{}`) do not include `{}`",
                    purposes.as_deref().unwrap_or("-"),
                    self.purpose_separator,
                    self.purpose
                ),
            ],
        };
        let [c3, c4] = consent;
        let mut out = vec![
            if self.row_unit {
                "1. each row is its own privacy unit (the manifest's privacy_unit = \"row\"): no subject ids; erasures and revocations name none".to_string()
            } else {
                format!(
                    "1. drop rows with an empty subject (`{}`), then rows of erased subjects (the lineage store's erasure list, from `privprep subject forget`)",
                    self.subject_column
                )
            },
            if self.row_unit {
                "2. no revocation lists: the rows name no subject".to_string()
            } else {
                format!(
                    "2. drop rows whose subject is on a revocation list ({} list(s), {} ids)",
                    self.revocations.len(),
                    self.revoked_ids().len()
                )
            },
            c3,
            c4,
            match &self.provenance {
                Provenance::Column(c) => format!(
                    "5. drop rows whose provenance (`{c}`) is not one of: {}",
                    self.allowed_provenance.join(", ")
                ),
                Provenance::Tag(t) => format!(
                    "5. the dataset's provenance tag is `{t}`: {}",
                    if one_of(t, &self.allowed_provenance) {
                        "allowed"
                    } else {
                        "NOT allowed, every row is dropped"
                    }
                ),
            },
        ];
        out.push(match (&self.retention_days, &self.timestamp) {
            (Some(d), Some((c, _))) => format!("6. drop rows whose `{c}` is missing or more than {d} days before {}", self.as_of),
            (Some(_), None) => "6. retention: the manifest names no timestamp column, so no retention check applies".into(),
            (None, _) => "6. retention: no limit".into(),
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_round_trip_in_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.code(), 2 + i as u8);
            assert_eq!(DropReason::from_code(r.code()), Some(*r));
        }
        assert_eq!(DropReason::from_code(KEPT), None);
        assert_eq!(DropReason::from_code(QUARANTINED), None);
    }

    #[test]
    fn revocation_list_with_and_without_header() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.csv");
        std::fs::write(&a, "subject_id\nS1\n\nS2\n").unwrap();
        let l = load_revocations(&a, "subject_id").unwrap();
        assert_eq!(l.ids.len(), 2);
        assert!(l.ids.contains("S1") && !l.ids.contains("subject_id"));
        let b = dir.path().join("b.txt");
        std::fs::write(&b, "S3\nS4\n").unwrap();
        let l = load_revocations(&b, "subject_id").unwrap();
        assert!(l.ids.contains("S3") && l.ids.contains("S4"));
    }

    /// Regression: `revocations = ["/dev/zero"]` grew memory until the process was killed.
    #[cfg(unix)]
    #[test]
    fn revocation_list_from_dev_zero_is_refused() {
        let e = load_revocations(Path::new("/dev/zero"), "subject_id").unwrap_err();
        assert_eq!(
            e.to_string(),
            "it is a character device, not a regular file; a revocation list must be a regular file of at most 1 GiB"
        );
    }
}
