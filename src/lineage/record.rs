//! The run record: everything one run did, in a shape compliance can query.
//!
//! A record names files, columns, rules and counts. It never holds a cell value or a key.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// A struct with named fields that also reads the JSON array its fields were once written as
/// (records before schema 4 stored these parts as tuples; their text must keep verifying).
macro_rules! named_or_tuple {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Serialize)]
        pub struct $name { $($(#[$fm])* pub $f: $t,)+ }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Either {
                    Named { $($f: $t,)+ },
                    Tuple($($t,)+),
                }
                Ok(match Either::deserialize(d)? {
                    Either::Named { $($f,)+ } => $name { $($f,)+ },
                    Either::Tuple($($f,)+) => $name { $($f,)+ },
                })
            }
        }
    };
}

named_or_tuple! {
    /// One column of an output file's schema.
    pub struct SchemaField {
        pub name: String,
        /// Arrow type name, e.g. `Utf8`.
        pub data_type: String,
    }
}

named_or_tuple! {
    /// A revocation list the policy read.
    pub struct RevocationListRecord {
        pub path: String,
        /// SHA-256 of the file, lowercase hex.
        pub sha256: String,
        /// Subject ids it holds.
        pub entries: u64,
    }
}

named_or_tuple! {
    /// A side file named by path and content hash (never its content).
    pub struct FileRef {
        pub path: String,
        pub sha256: String,
    }
}

named_or_tuple! {
    /// A user-defined detector: its name and pattern.
    pub struct CustomDetectorRecord {
        pub name: String,
        pub pattern: String,
    }
}

named_or_tuple! {
    /// Rows left after one stage.
    pub struct StageRows {
        pub stage: String,
        pub rows: u64,
    }
}

named_or_tuple! {
    /// The noise OpenDP added to one released column.
    pub struct NoiseRecord {
        pub column: String,
        /// e.g. `Integer Laplace`, `Float Gaussian`.
        pub distribution: String,
        pub scale: f64,
        /// 95% half-width of the noise, when OpenDP gives one.
        pub ci95: Option<f64>,
    }
}

named_or_tuple! {
    /// A quantile's 95% bound on the released candidate's rank error, in rows.
    pub struct RankBound {
        pub column: String,
        pub rows: f64,
    }
}

named_or_tuple! {
    /// A mean's smallest and largest 95% half-width over the released rows.
    pub struct MeanHalfWidths {
        pub column: String,
        pub min: f64,
        pub max: f64,
    }
}

/// What the leak gate does when it finds personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateMode {
    /// The run fails and nothing is committed.
    #[default]
    Fail,
    /// The run commits and warns.
    Warn,
}

/// The leak gate's verdict on one output column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateResult {
    /// No detector and no input identifier value found anything.
    Clean,
    /// Personal data was found.
    Leak,
    /// Not judged: an identifier column the pipeline keeps as it is (flagged UNSAFE).
    Exempt,
}

impl GateResult {
    /// `clean`, `leak` or `exempt`.
    pub fn as_str(self) -> &'static str {
        match self {
            GateResult::Clean => "clean",
            GateResult::Leak => "leak",
            GateResult::Exempt => "exempt",
        }
    }
}

/// The privacy measure of a release or spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Pure ε-differential privacy.
    Pure,
    /// Approximate (ε, δ)-differential privacy.
    Approx,
    /// Zero-concentrated differential privacy (ρ).
    Zcdp,
}

impl Measure {
    /// `pure`, `approx` or `zcdp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::Pure => "pure",
            Measure::Approx => "approx",
            Measure::Zcdp => "zcdp",
        }
    }
}

/// Outcome of a run as it is stored in lineage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every output was committed.
    Succeeded,
    /// The run stopped with an error; no output was committed.
    Failed,
}

impl RunStatus {
    /// The lowercase name used in the store, JSON and summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        }
    }
}

/// One input file read by the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputRecord {
    /// Path as given (after glob expansion).
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the file content, lowercase hex.
    pub sha256: String,
    /// Data rows read from this file (records, not lines).
    pub rows_read: u64,
    /// Dataset id from the manifest.
    pub dataset_id: String,
}

/// One committed output file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputRecord {
    /// Path of the committed file.
    pub path: String,
    /// Split name (`train`, `validation`, `test`) or `all`.
    pub split: String,
    /// Rows written.
    pub rows: u64,
    /// SHA-256 of the committed file, lowercase hex.
    pub sha256: String,
    /// Columns and their Arrow types, in file order.
    pub schema: Vec<SchemaField>,
    /// When the file expires (`[output] retain_days`), RFC 3339 UTC: `privprep retention
    /// sweep` deletes it after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// The subjects one committed output holds, as the subject index stores them: the set's file
/// (sorted keyed hashes of the subject ids, never an id) and its digest, so `lineage verify`
/// catches an edited set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubjectSetRecord {
    /// The output the set belongs to: a data file's or a release's path, as in `outputs` and
    /// `releases`.
    pub output: String,
    /// `data` or `release`.
    pub kind: String,
    /// Distinct subjects in the set.
    pub subjects: u64,
    /// The set's file, relative to the store's index folder.
    pub file: String,
    /// SHA-256 of the set's file, lowercase hex.
    pub sha256: String,
}

/// How the subject column appears in the run's data files, so an access request can pick the
/// subject's rows out of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubjectColumnRecord {
    /// The input column naming the subject.
    pub input: String,
    /// The output column it became; `None` when the pipeline dropped it.
    pub output: Option<String>,
    /// `keep`, `tokenize` (with the run key), `surrogate` (with the run key), `hash` (unkeyed
    /// SHA-256), or `other` (masked or generalized: no longer one value per subject).
    pub action: String,
    /// Token length and encoding, for `tokenize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_bits: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_encoding: Option<String>,
    /// The kind of surrogate (`name`, `email`, `phone`, `id`), for `surrogate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surrogate_kind: Option<String>,
}

/// An erasure (`privprep subject forget` or `subject sweep`): who was erased (keyed hashes
/// only), why, and what happened to every output that held them. The record it sits in lists
/// the regenerated files as its `outputs` and their new subject sets as its `subject_index`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErasureRecord {
    /// `forget` or `sweep`.
    pub command: String,
    /// When the request was made, RFC 3339 UTC.
    pub requested_at: String,
    /// The reason given with the request (checked to hold no id, e-mail or phone number).
    pub reason: String,
    /// The erased subjects' keys in the subject index, 16 hex digits each; every later run
    /// drops their rows as `erased`.
    pub subjects: Vec<String>,
    /// For a sweep: the revocation lists it read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revocation_lists: Vec<RevocationListRecord>,
    /// Every output that held one of the subjects, and what was done to it.
    pub outputs: Vec<OutputChange>,
}

/// What an erasure, a retention sweep or a key rotation did to one output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputChange {
    pub path: String,
    /// The run whose pipeline wrote the file (for a file an erasure regenerated, the run it
    /// was regenerated from).
    pub run_id: String,
    /// An erasure's: `regenerated`, `deleted`, `unregenerable`, `release` (a DP release:
    /// listed, not regenerated) or `gone` (the file was no longer there). A retention sweep's:
    /// `deleted` or `gone`. A rotation's: `re-encrypted`.
    pub action: String,
    /// SHA-256 the file had (as its run recorded it), and has now when it was regenerated.
    pub old_sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_sha256: Option<String>,
    pub rows_before: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_after: Option<u64>,
    /// Why an output could not be regenerated (names files and keys, never values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A differentially private synthetic table: how it was made and what it spent (no value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyntheticRecord {
    pub name: String,
    pub path: String,
    pub sha256: String,
    pub rows: u64,
    pub dataset_id: String,
    /// The privacy unit (the manifest's subject column) and its row bound.
    pub privacy_unit: String,
    pub max_rows_per_subject: u32,
    /// The columns and their public domain sizes.
    pub columns: Vec<String>,
    pub domain_sizes: Vec<u64>,
    /// `mst-tree`: noisy 1-way marginals, a spanning tree chosen by noisy max, its noisy 2-way
    /// marginals, sampling; `mst-tree-on-target`: the same with every measurement conditioned
    /// on the table's target.
    pub method: String,
    /// The model's arcs, by column names (parent, child): the target's to every other column
    /// (with a target), then the tree's edges.
    pub edges: Vec<(String, String)>,
    /// Every measurement: kind, columns, OpenDP mechanism, scale and ρ (or ε in pure DP).
    pub measurements: Vec<crate::synth::Measurement>,
    /// What the pipeline asked for, and what was spent (the sum of OpenDP's maps): ρ in zCDP;
    /// in pure DP the ε spent, with `rho` the zCDP it implies (ε²/2).
    pub target: String,
    pub rho: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    pub seed: u64,
    /// The utility report, for the data owner.
    pub report: String,
}

/// A retention sweep (`privprep retention sweep`): the outputs past their expiry it deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetentionRecord {
    /// The time expiries were compared with, RFC 3339 UTC.
    pub as_of: String,
    pub outputs: Vec<OutputChange>,
}

/// A re-encryption of outputs under a new master key (`privprep keys rotate-encryption`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RotationRecord {
    pub old_key: KeyRef,
    pub new_key: KeyRef,
    pub outputs: Vec<OutputChange>,
}

/// What k-anonymity (`[risk]`) found and did: class counts, never a class's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskRecord {
    pub quasi_identifiers: Vec<String>,
    pub k: u32,
    /// `suppress` or `report`.
    pub action: String,
    /// Equivalence classes among the rows the policy kept.
    pub classes: u64,
    /// Classes with fewer than k rows, and their rows (suppressed, or written and reported).
    pub classes_below_k: u64,
    pub rows_below_k: u64,
    /// The smallest class among the written rows (0 when nothing was written).
    pub k_reached: u64,
    /// Per `sensitive` output column: the fewest distinct values in one written class.
    pub l_diversity: BTreeMap<String, u64>,
}

/// A master key by id, and its fingerprint (never the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRef {
    /// The master key's id, as the pipeline names it.
    pub id: String,
    /// `Key::id` of the key's bytes: which key it was, without revealing it.
    pub fingerprint: String,
}

/// What a file's encryption was: lineage and the footer record this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionRecord {
    /// `AES_GCM_V1`, with a plaintext (signed) footer.
    pub algorithm: String,
    pub footer_key: KeyRef,
    pub column_key: KeyRef,
    /// The encrypted columns (their statistics are not written).
    pub columns: Vec<String>,
}

/// Where an output column came from and what was done to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnLineage {
    /// Output column name.
    pub output_column: String,
    /// Input columns it was derived from.
    pub input_columns: Vec<String>,
    /// Transformation in words, e.g. `tokenize(hmac-sha256, 128 bits, hex)`.
    pub transformation: String,
    /// True when the output no longer holds the raw input value.
    pub masked: bool,
}

/// The policy the run enforced, as a summary (no values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PolicySummary {
    pub purpose: String,
    pub allowed_status: Vec<String>,
    pub allowed_provenance: Vec<String>,
    /// Revocation list files with their SHA-256 and entry counts.
    pub revocation_lists: Vec<RevocationListRecord>,
    pub retention_days: Option<u32>,
    pub as_of: String,
    /// `row` when each row is its own privacy unit (absent: the manifest's subject column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy_unit: Option<String>,
    /// The legal basis of dataset-wide consent, and its purposes (absent: consent columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_basis: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consent_purposes: Vec<String>,
}

/// What the text stage did to one free-text column (counts only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextColumnRecord {
    pub column: String,
    /// Detectors that ran, by name.
    pub detectors: Vec<String>,
    /// Identifier columns searched for in the text.
    pub context_columns: Vec<String>,
    /// Action per detector.
    pub actions: BTreeMap<String, String>,
    /// Texts of written rows that were scanned.
    pub texts_scanned: u64,
    /// Texts with at least one replacement.
    pub texts_changed: u64,
    /// Replaced spans by type.
    pub spans_replaced: BTreeMap<String, u64>,
    /// Rows dropped because of a `drop_row` hit in this column.
    pub rows_dropped: u64,
}

/// The `[pii]` settings a run used (lists as counts and hashes, never terms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PiiSummary {
    pub phone_regions: Vec<String>,
    pub allow_values: u64,
    pub deny_terms: u64,
    /// Deny file path and SHA-256.
    pub deny_file: Option<FileRef>,
    /// User-defined detectors: name and pattern.
    pub custom_detectors: Vec<CustomDetectorRecord>,
    pub leak_gate: GateMode,
}

/// The leak gate's verdict on one output column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakGateRecord {
    pub column: String,
    pub result: GateResult,
    pub values_scanned: u64,
    /// Hits by detector; `identifier_value` counts input identifier values found.
    pub hits: BTreeMap<String, u64>,
}

/// One differentially private release (no values: its query, guarantees and noise).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    pub name: String,
    pub path: String,
    pub sha256: String,
    pub rows: u64,
    pub dataset_id: String,
    /// The privacy unit (the manifest's subject column).
    pub privacy_unit: String,
    pub group_by: Vec<String>,
    /// `public (…source…)` or `private (threshold t)`.
    pub key_source: String,
    pub max_rows_per_group: u32,
    pub max_groups: u32,
    /// When set, the release bounded each subject to this many rows in all groups (and
    /// `max_rows_per_group`/`max_groups` are the bounds this implies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows_per_subject: Option<u32>,
    /// The public bound on consented rows the noise was fixed for (releases with sums).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<u32>,
    /// Private keys with sums: the public bound on distinct keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<u32>,
    /// Each statistic with its column and bounds or candidates.
    pub statistics: Vec<String>,
    pub measure: Measure,
    /// What the pipeline asked for.
    pub target: String,
    /// OpenDP's privacy map at one subject, as spent in the ledger.
    pub epsilon: f64,
    pub delta: f64,
    pub rho: f64,
    /// Global noise scale multiplier found by calibration.
    pub global_scale: f64,
    pub threshold: Option<u32>,
    /// Per noisy output: its distribution, scale and 95% half-width.
    pub noise: Vec<NoiseRecord>,
    /// Per quantile: 95% bound on the released candidate's rank error, in rows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rank_ci95: Vec<RankBound>,
    /// Per mean: the smallest and largest 95% half-width over the released rows (each row's
    /// is in the file; they depend on the row's noisy count).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mean_ci95: Vec<MeanHalfWidths>,
}

/// One spend of the privacy budget by a run, as the budget ledger holds it. The store fills
/// these in when it appends the record, from the ledger rows of the run, so the chained record
/// and the ledger vouch for each other (`privprep lineage verify` checks that they agree).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetSpend {
    /// `id` of the ledger entry.
    pub ledger_id: i64,
    /// `entry_hash` of the ledger entry (it covers every column, the cap included).
    pub entry_hash: String,
    pub dataset_id: String,
    /// The release that spent it.
    pub release: String,
    /// `pure`, `approx` or `zcdp`.
    pub measure: String,
    pub epsilon: f64,
    pub delta: f64,
    pub rho: f64,
}

/// A full run record as appended to the lineage store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub status: RunStatus,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// RFC 3339 UTC.
    pub finished_at: String,
    pub privprep_version: String,
    pub pipeline_name: String,
    pub pipeline_path: String,
    /// SHA-256 of the pipeline file content.
    pub pipeline_sha256: String,
    /// The pipeline file content (it holds no keys and no data values).
    pub pipeline_content: String,
    pub inputs: Vec<InputRecord>,
    pub policy: PolicySummary,
    /// Rows after each stage, in stage order (`read`, `parsed`, `policy`, `written`).
    pub rows_per_stage: Vec<StageRows>,
    pub rows_read: u64,
    pub rows_written: u64,
    /// Dropped rows per reason (only reasons with a count).
    pub dropped: BTreeMap<String, u64>,
    pub quarantined: u64,
    /// Path of the quarantine report, when rows were quarantined.
    pub quarantine_report: Option<String>,
    pub column_lineage: Vec<ColumnLineage>,
    pub outputs: Vec<OutputRecord>,
    /// Key id (short SHA-256 prefix of the key), never the key.
    pub key_id: Option<String>,
    /// Error message for failed runs (names files/rows/columns, never values).
    pub error: Option<String>,
    /// Free-text settings (absent in records of runs without text columns before they existed).
    #[serde(default)]
    pub pii: Option<PiiSummary>,
    /// Per free-text column: detectors, actions and replacement counts.
    #[serde(default)]
    pub text_columns: Vec<TextColumnRecord>,
    /// Per output column: the leak gate's verdict (empty when the gate did not run).
    #[serde(default)]
    pub leak_gate: Vec<LeakGateRecord>,
    /// Differentially private releases (their spend is in the budget ledger).
    #[serde(default)]
    pub releases: Vec<ReleaseRecord>,
    /// Every spend of the budget ledger by this run, oldest first. Set by the store when the
    /// record is appended (whatever the caller put here is replaced): `Some` in every record
    /// appended since the ledger is chained, even when empty; `None` in older records, whose
    /// stored JSON lacks the field and must keep its hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_spends: Option<Vec<BudgetSpend>>,
    /// The subject index of every committed output (empty in records written before it, whose
    /// stored JSON lacks the field and must keep its hash).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_index: Vec<SubjectSetRecord>,
    /// How the subject column appears in the data files (absent in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_column: Option<SubjectColumnRecord>,
    /// Present in the record of an erasure (kind `erasure`), absent in a run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erasure: Option<ErasureRecord>,
    /// How the data files are encrypted (`[output.encryption]`): key ids, never keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionRecord>,
    /// Differentially private synthetic tables (their spend is in the budget ledger).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synthetics: Vec<SyntheticRecord>,
    /// k-anonymity of the written rows (`[risk]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<RiskRecord>,
    /// Present in the record of a retention sweep (kind `retention`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionRecord>,
    /// Present in the record of a key rotation (kind `rotation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationRecord>,
    /// The engine a run's rows went through: `polars` (this binary) or `spark` (the Python
    /// wheel). Absent in records written before engines were recorded, and in those of
    /// commands that are not runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
}

impl RunRecord {
    /// Marks the run as failed with `error`: a failed run lists no outputs and no releases
    /// (nothing of it is in place). The caller sets `finished_at`.
    pub fn mark_failed(&mut self, error: impl Into<String>) {
        self.status = RunStatus::Failed;
        self.error = Some(error.into());
        self.outputs.clear();
        self.releases.clear();
        self.synthetics.clear();
        self.subject_index.clear();
        // Nothing it regenerated, deleted or re-encrypted is in place.
        let done = |o: &OutputChange| {
            matches!(
                o.action.as_str(),
                "regenerated" | "deleted" | "re-encrypted"
            )
        };
        if let Some(e) = &mut self.erasure {
            e.outputs.retain(|o| !done(o));
        }
        if let Some(r) = &mut self.retention {
            r.outputs.retain(|o| !done(o));
        }
        if let Some(k) = &mut self.rotation {
            k.outputs.retain(|o| !done(o));
        }
    }

    /// `erasure`, `retention` or `rotation` for those records, `run` for a run's.
    pub fn kind(&self) -> &'static str {
        if self.erasure.is_some() {
            "erasure"
        } else if self.retention.is_some() {
            "retention"
        } else if self.rotation.is_some() {
            "rotation"
        } else {
            "run"
        }
    }

    /// What this record did to outputs of earlier runs (an erasure's, a sweep's or a
    /// rotation's changes; nothing for a run).
    pub fn output_changes(&self) -> impl Iterator<Item = &OutputChange> {
        let e = self.erasure.iter().flat_map(|e| &e.outputs);
        let r = self.retention.iter().flat_map(|r| &r.outputs);
        let k = self.rotation.iter().flat_map(|k| &k.outputs);
        e.chain(r).chain(k)
    }

    /// The SHA-256 and rows this record lists for the file at `path`: a data file, a DP
    /// release or a synthetic table.
    pub fn recorded_file(&self, path: &str) -> Option<(&str, u64)> {
        self.outputs
            .iter()
            .map(|o| (&o.path, o.sha256.as_str(), o.rows))
            .chain(
                self.releases
                    .iter()
                    .map(|r| (&r.path, r.sha256.as_str(), r.rows)),
            )
            .chain(
                self.synthetics
                    .iter()
                    .map(|t| (&t.path, t.sha256.as_str(), t.rows)),
            )
            .find(|(p, _, _)| *p == path)
            .map(|(_, sha, rows)| (sha, rows))
    }

    /// The run whose pipeline wrote the file this record holds at `path`: this record's own
    /// run, or, for a file an erasure or a rotation rewrote, the run it came from.
    pub fn source_run_of(&self, path: &str) -> &str {
        self.output_changes()
            .find(|c| c.path == path && matches!(c.action.as_str(), "regenerated" | "re-encrypted"))
            .map(|c| c.run_id.as_str())
            .unwrap_or(&self.run_id)
    }

    /// A record for a run that has just started: status `failed` until the run says otherwise,
    /// so a record appended early never claims success.
    pub fn begin(
        run_id: &str,
        started_at: &str,
        pipeline_name: &str,
        pipeline_path: &str,
        pipeline_sha256: &str,
        pipeline_content: &str,
    ) -> RunRecord {
        RunRecord {
            run_id: run_id.to_string(),
            status: RunStatus::Failed,
            started_at: started_at.to_string(),
            finished_at: String::new(),
            privprep_version: env!("CARGO_PKG_VERSION").to_string(),
            pipeline_name: pipeline_name.to_string(),
            pipeline_path: pipeline_path.to_string(),
            pipeline_sha256: pipeline_sha256.to_string(),
            pipeline_content: pipeline_content.to_string(),
            inputs: Vec::new(),
            policy: PolicySummary::default(),
            rows_per_stage: Vec::new(),
            rows_read: 0,
            rows_written: 0,
            dropped: BTreeMap::new(),
            quarantined: 0,
            quarantine_report: None,
            column_lineage: Vec::new(),
            outputs: Vec::new(),
            key_id: None,
            error: None,
            pii: None,
            text_columns: Vec::new(),
            leak_gate: Vec::new(),
            releases: Vec::new(),
            budget_spends: None,
            subject_index: Vec::new(),
            subject_column: None,
            erasure: None,
            encryption: None,
            synthetics: Vec::new(),
            risk: None,
            retention: None,
            rotation: None,
            engine: None,
        }
    }
}

/// The record that last touched a file path.
#[derive(Debug, Clone, Copy)]
pub struct LastTouch<'a> {
    pub record: &'a RunRecord,
    /// True when that record deleted the file (an erasure, or a retention sweep that deleted it
    /// or found it gone); else it wrote the file there now.
    pub deleted: bool,
}

/// For each file path the records wrote (data files, releases, synthetic tables), the record
/// that last wrote or deleted it. `records` are oldest first.
pub fn last_touches<'a>(
    records: impl IntoIterator<Item = &'a RunRecord>,
) -> std::collections::HashMap<&'a str, LastTouch<'a>> {
    let mut out = std::collections::HashMap::new();
    for record in records {
        let written = record
            .outputs
            .iter()
            .map(|o| o.path.as_str())
            .chain(record.releases.iter().map(|r| r.path.as_str()))
            .chain(record.synthetics.iter().map(|t| t.path.as_str()));
        for path in written {
            out.insert(
                path,
                LastTouch {
                    record,
                    deleted: false,
                },
            );
        }
        for c in record.output_changes() {
            if c.action == "deleted" || (record.retention.is_some() && c.action == "gone") {
                out.insert(
                    c.path.as_str(),
                    LastTouch {
                        record,
                        deleted: true,
                    },
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records written before schema 4 hold these parts as arrays; they must still parse (their
    /// stored text is what the hash chain covers) and mean the same as the named form.
    #[test]
    fn old_tuple_shapes_read_as_the_named_types() {
        let old: PiiSummary = serde_json::from_str(
            r#"{"phone_regions":["US"],"allow_values":1,"deny_terms":2,
                "deny_file":["terms.txt","ab"],"custom_detectors":[["emp","EMP-\\d+"]],
                "leak_gate":"warn"}"#,
        )
        .unwrap();
        let named = PiiSummary {
            phone_regions: vec!["US".into()],
            allow_values: 1,
            deny_terms: 2,
            deny_file: Some(FileRef {
                path: "terms.txt".into(),
                sha256: "ab".into(),
            }),
            custom_detectors: vec![CustomDetectorRecord {
                name: "emp".into(),
                pattern: "EMP-\\d+".into(),
            }],
            leak_gate: GateMode::Warn,
        };
        assert_eq!(old, named);
        let again: PiiSummary =
            serde_json::from_str(&serde_json::to_string(&named).unwrap()).unwrap();
        assert_eq!(again, named);
        assert!(serde_json::to_string(&named)
            .unwrap()
            .contains(r#""deny_file":{"path":"terms.txt","sha256":"ab"}"#));
        let noise: NoiseRecord =
            serde_json::from_str(r#"["count","Integer Laplace",2.5,null]"#).unwrap();
        assert_eq!(noise.ci95, None);
        assert_eq!(noise.scale, 2.5);
        // A shape that is neither is an error, not a silent default.
        assert!(serde_json::from_str::<StageRows>(r#"["read"]"#).is_err());
        assert!(serde_json::from_str::<GateResult>(r#""maybe""#).is_err());
    }
}
