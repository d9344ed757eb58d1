//! The erasure request (`privprep subject forget`) and its batch form (`subject sweep`, a
//! whole revocation list): the subjects go on the store's erasure list, and every committed
//! output that holds them is regenerated without them (`crate::run::erase`).
//!
//! Which outputs hold a subject is the subject index's answer ([`super::find_in`]): only the
//! file at each path now counts (a file a later run or erasure replaced holds nothing any
//! more). The reason given with the request is stored in lineage, so it is checked to hold
//! neither an id of the request nor anything the PII detectors find.

use std::path::PathBuf;

use privprep_kernels::pii::detect::{RowContext, Scanner, ScannerConfig};
use privprep_kernels::subject::SubjectHasher;

use super::{find_in, FindError};
use crate::identity::keys::resolve_index_key;
use crate::lineage::record::RevocationListRecord;
use crate::lineage::{index, Store};
use crate::run::{erase, Affected, EraseError, ErasureRequest, ErasureSummary, RunOptions};

/// Why an erasure was not made. `Usage` errors (exit 2) change nothing.
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    #[error(transparent)]
    Find(#[from] FindError),
    #[error(transparent)]
    Erase(#[from] EraseError),
    #[error("{0}")]
    Usage(String),
}

/// Erases the subjects `ids` (see the module).
pub fn forget(
    opts: &RunOptions,
    ids: &[String],
    reason: &str,
    delete_unregenerable: bool,
) -> Result<ErasureSummary, ForgetError> {
    if ids.iter().all(|id| id.trim().is_empty()) {
        return Err(ForgetError::Usage(
            "no subject id given\n  = hint: privprep subject forget ID --reason TEXT, or `-` to read ids from standard input".into(),
        ));
    }
    request(
        opts,
        ids,
        "forget",
        reason,
        Vec::new(),
        delete_unregenerable,
    )
}

/// Erases every subject of the revocation lists `lists` (read as the policy reads them: one
/// id per line, or the `subject_column` of a CSV with a header).
pub fn sweep(
    opts: &RunOptions,
    lists: &[PathBuf],
    subject_column: &str,
    reason: &str,
    delete_unregenerable: bool,
) -> Result<ErasureSummary, ForgetError> {
    let mut ids: Vec<String> = Vec::new();
    let mut records = Vec::new();
    for path in lists {
        let list = crate::policy::load_revocations(path, subject_column).map_err(|e| {
            ForgetError::Usage(format!(
                "{}: cannot read the revocation list: {e}\n  = hint: one subject id per line, or a CSV whose header names `{subject_column}`",
                path.display()
            ))
        })?;
        records.push(RevocationListRecord {
            path: path.display().to_string(),
            sha256: list.sha256.clone(),
            entries: list.ids.len() as u64,
        });
        ids.extend(list.ids);
    }
    ids.sort();
    ids.dedup();
    request(opts, &ids, "sweep", reason, records, delete_unregenerable)
}

fn request(
    opts: &RunOptions,
    ids: &[String],
    command: &str,
    reason: &str,
    revocation_lists: Vec<RevocationListRecord>,
    delete_unregenerable: bool,
) -> Result<ErasureSummary, ForgetError> {
    check_reason(reason, ids)?;
    let mut store = Store::open(&opts.lineage_db).map_err(FindError::from)?;
    crate::run::recover_interrupted(&opts.state_dir, &mut store);
    let hasher = SubjectHasher::new(&resolve_index_key(&opts.state_dir).map_err(FindError::from)?);
    let records = store.indexed_records().map_err(FindError::from)?;
    let findings = find_in(&records, &index::index_dir(store.path()), &hasher, ids)?;
    drop(store);
    let mut keys: Vec<u64> = ids.iter().filter_map(|id| hasher.key(id)).collect();
    keys.sort_unstable();
    keys.dedup();
    // Each output now holding any of the subjects, once.
    let mut affected: Vec<Affected> = Vec::new();
    for h in findings.iter().flat_map(|f| &f.holdings) {
        if h.replaced_by.is_some() || affected.iter().any(|a| a.path == h.path) {
            continue;
        }
        let Some((_, holder)) = records.iter().find(|(seq, _)| *seq == h.seq) else {
            continue;
        };
        affected.push(Affected {
            path: h.path.clone(),
            kind: h.kind.clone(),
            holder: holder.clone(),
            exists: h.exists,
            unchanged: h.unchanged,
        });
    }
    Ok(erase(
        ErasureRequest {
            command: command.into(),
            reason: reason.trim().into(),
            keys,
            revocation_lists,
            affected,
            delete_unregenerable,
        },
        opts,
    )?)
}

/// The reason is kept in lineage: it must say why, not who.
fn check_reason(reason: &str, ids: &[String]) -> Result<(), ForgetError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ForgetError::Usage(
            "--reason is empty\n  = hint: say why, e.g. --reason \"GDPR art. 17 request, ticket 4411\"".into(),
        ));
    }
    let lower = reason.to_lowercase();
    if ids
        .iter()
        .map(|id| id.trim().to_lowercase())
        .any(|id| id.len() >= 3 && lower.contains(&id))
    {
        return Err(ForgetError::Usage(
            "--reason names the subject: it is kept in the lineage store, which never holds a subject id\n  = hint: say why without saying who, e.g. --reason \"erasure request, ticket 4411\"".into(),
        ));
    }
    let scanner = Scanner::new(&ScannerConfig::default())
        .map_err(|e| ForgetError::Usage(format!("the PII detectors: {e}")))?;
    let mut spans = Vec::new();
    scanner.scan(reason, &RowContext::new(), &mut spans);
    if let Some(s) = spans.first() {
        return Err(ForgetError::Usage(format!(
            "--reason holds personal data (the {} detector found some at characters {}..{}): it is kept in the lineage store\n  = hint: say why without saying who, e.g. --reason \"erasure request, ticket 4411\"",
            s.kind.as_str(),
            reason[..s.start].chars().count(),
            reason[..s.end].chars().count(),
        )));
    }
    Ok(())
}
