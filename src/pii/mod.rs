//! Personal data inside free text: detectors, validators, replacement, and the output leak gate.
//!
//! Free text (tickets, chats, prompts) is where personal data hides in training sets. This
//! module finds it in one pass per text ([`detect`], with the checks in [`validators`] and the
//! numbering plans in [`phone`]), replaces each hit as the pipeline says ([`redact`]), and,
//! before anything is committed, scans every output again ([`gate`]).
//!
//! `validators`, `phone`, `detect` and `redact` are plain functions over `&str` that live in
//! the `privprep-kernels` crate (no polars), re-exported here, so the Spark engine calls them
//! unchanged. The polars lowering of a text rule is `engine/polars/text.rs`; `gate` reads
//! Parquet back with arrow-rs; `profile` is the engine side of `privprep scan`. The plan types
//! here are built by the text stage (`stages::text`) from the spec.

pub mod gate;
pub mod profile;

pub use privprep_kernels::pii::{detect, phone, redact, validators};

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use detect::{CustomDetector, Kind, RowContext, Scanner, ScannerConfig, Span, Validator};
pub use redact::{TextAction, TextPolicy};

use crate::spec::LeakGateMode;

/// Name of the contextual detector: the row's own identifier values found in its text.
pub const CONTEXT_DETECTOR: &str = "name";

/// Name of the deny-list detector.
pub const DENY_DETECTOR: &str = "deny";

/// Whether `name` is a built-in detector that runs only where a column names it (one not in
/// [`Kind::DEFAULT`]).
fn opt_in(name: &str) -> bool {
    let named = |k: &Kind| k.as_str() == name;
    Kind::BUILTIN.iter().any(named) && !Kind::DEFAULT.iter().any(named)
}

/// A user-defined detector as planned.
#[derive(Debug, Clone)]
pub struct CustomPlan {
    pub detector: CustomDetector,
    pub label: String,
}

/// The run-wide `[pii]` settings, resolved.
#[derive(Debug, Clone)]
pub struct PiiPlan {
    pub regions: Vec<String>,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    /// The deny file with its SHA-256 and number of terms (lineage keeps these, not terms).
    pub deny_file: Option<(PathBuf, String, usize)>,
    /// Label overrides by detector name.
    pub labels: BTreeMap<String, String>,
    pub gate: LeakGateMode,
    pub custom: Vec<CustomPlan>,
}

impl Default for PiiPlan {
    fn default() -> Self {
        PiiPlan {
            regions: phone::DEFAULT_REGIONS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            allow: Vec::new(),
            deny: Vec::new(),
            deny_file: None,
            labels: BTreeMap::new(),
            gate: LeakGateMode::Fail,
            custom: Vec::new(),
        }
    }
}

/// One `redact` column, resolved against the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct TextColumnPlan {
    pub column: String,
    /// Detector names, in the order the user gave or the default order.
    pub detectors: Vec<String>,
    /// Identifier columns whose values are looked for in the text (empty without `name`).
    pub context: Vec<String>,
    pub default_action: TextAction,
    /// Actions that differ from the default, by detector name.
    pub actions: BTreeMap<String, TextAction>,
}

impl TextColumnPlan {
    /// The action for a detector.
    pub fn action_for(&self, detector: &str) -> TextAction {
        self.actions
            .get(detector)
            .copied()
            .unwrap_or(self.default_action)
    }

    /// True when a hit may drop the row.
    pub fn drops_rows(&self) -> bool {
        self.detectors
            .iter()
            .any(|d| self.action_for(d) == TextAction::DropRow)
    }

    /// True when some hit is tokenized.
    pub fn tokenizes(&self) -> bool {
        self.detectors.iter().any(|d| {
            matches!(
                self.action_for(d),
                TextAction::Tokenize | TextAction::Surrogate
            )
        })
    }

    /// The rule in words, as `explain` and lineage show it.
    pub fn describe(&self) -> String {
        let mut by_action: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for d in &self.detectors {
            by_action
                .entry(self.action_for(d).describe())
                .or_default()
                .push(d);
        }
        let actions: Vec<String> = by_action
            .iter()
            .map(|(a, ds)| format!("{a}: {}", ds.join(", ")))
            .collect();
        let mut s = format!("find PII in text and replace it ({})", actions.join("; "));
        if !self.context.is_empty() {
            s.push_str(&format!(
                "; the row's own {} searched for in the text",
                self.context
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        s
    }
}

impl PiiPlan {
    /// Every detector name a column may ask for: built-ins, `name`, `deny`, user-defined.
    pub fn detector_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Kind::BUILTIN
            .iter()
            .map(|k| k.as_str().to_string())
            .collect();
        names.push(CONTEXT_DETECTOR.into());
        names.push(DENY_DETECTOR.into());
        names.extend(self.custom.iter().map(|c| c.detector.name.clone()));
        names
    }

    /// Default detectors of a column: all but `deny` when no term is listed, and but the
    /// opt-in built-ins (`person`), which a column asks for by name.
    pub fn default_detectors(&self) -> Vec<String> {
        self.detector_names()
            .into_iter()
            .filter(|d| d != DENY_DETECTOR || !self.deny.is_empty())
            .filter(|d| !opt_in(d))
            .collect()
    }

    /// The leak gate's scanner: every detector, and an opt-in one only where one of `columns`
    /// runs it (names in kept text would fail every run otherwise).
    pub fn gate_scanner<'a>(
        &self,
        columns: impl IntoIterator<Item = &'a TextColumnPlan>,
    ) -> Result<Scanner, detect::ScannerError> {
        Scanner::new(&self.gate_scanner_config(columns))
    }

    /// The configuration [`PiiPlan::gate_scanner`] builds its scanner from.
    pub fn gate_scanner_config<'a>(
        &self,
        columns: impl IntoIterator<Item = &'a TextColumnPlan>,
    ) -> ScannerConfig {
        let used: Vec<&String> = columns.into_iter().flat_map(|t| &t.detectors).collect();
        let names: Vec<String> = self
            .detector_names()
            .into_iter()
            .filter(|d| !opt_in(d) || used.contains(&d))
            .collect();
        self.scanner_config(Some(&names))
    }

    /// The kind a detector name reports as.
    pub fn kind_of(&self, detector: &str) -> Option<Kind> {
        if let Some(i) = self.custom.iter().position(|c| c.detector.name == detector) {
            return Some(Kind::Custom(i as u16));
        }
        match detector {
            CONTEXT_DETECTOR => Some(Kind::Name),
            "id" => Some(Kind::Id),
            DENY_DETECTOR => Some(Kind::Deny),
            d => Kind::BUILTIN.iter().copied().find(|k| k.as_str() == d),
        }
    }

    /// Names of the per-kind slots (see [`redact::slot`]), for reports.
    pub fn slot_names(&self) -> Vec<String> {
        let mut names: Vec<String> = (0..Kind::FIXED.len())
            .map(|s| redact::kind_at(s).as_str().to_string())
            .collect();
        names.extend(self.custom.iter().map(|c| c.detector.name.clone()));
        names
    }

    /// A scanner running `detectors` (names), or all detectors when `None`.
    pub fn scanner(&self, detectors: Option<&[String]>) -> Result<Scanner, detect::ScannerError> {
        Scanner::new(&self.scanner_config(detectors))
    }

    /// The configuration [`PiiPlan::scanner`] builds its scanner from (what other engines are
    /// handed, to build the same scanner).
    pub fn scanner_config(&self, detectors: Option<&[String]>) -> ScannerConfig {
        let on = |name: &str| detectors.is_none_or(|d| d.iter().any(|x| x == name));
        let custom = self
            .custom
            .iter()
            .map(|c| {
                let mut d = c.detector.clone();
                if !on(&d.name) {
                    // Keep the index (kinds are positions) but make it match nothing.
                    d.pattern = r"[^\s\S]".into();
                    d.validator = Validator::None;
                }
                d
            })
            .collect();
        ScannerConfig {
            enabled: Kind::BUILTIN
                .iter()
                .copied()
                .filter(|k| on(k.as_str()))
                .collect(),
            regions: self.regions.clone(),
            custom,
            deny: if on(DENY_DETECTOR) {
                self.deny.clone()
            } else {
                Vec::new()
            },
            allow: self.allow.clone(),
        }
    }

    /// The per-kind actions and labels of a column.
    pub fn policy(&self, column: &TextColumnPlan) -> TextPolicy {
        let labels: Vec<String> = self.custom.iter().map(|c| c.label.clone()).collect();
        let mut policy = TextPolicy::new(column.default_action, &labels);
        for d in &column.detectors {
            if let Some(kind) = self.kind_of(d) {
                policy.set_action(kind, column.action_for(d));
                if kind == Kind::Name {
                    // Contextual hits of other identifier values share the name's action.
                    policy.set_action(Kind::Id, column.action_for(d));
                }
            }
        }
        for (d, label) in &self.labels {
            if let Some(kind) = self.kind_of(d) {
                policy.set_label(kind, label);
                if kind == Kind::Ipv4 && !self.labels.contains_key("ipv6") {
                    policy.set_label(Kind::Ipv6, label);
                }
            }
        }
        policy
    }
}
