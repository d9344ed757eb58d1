//! Per-value consent predicates (does a row's purposes list include the pipeline's purpose, is
//! its status or provenance one of the allowed values), and the status codes every engine
//! gives rows: kept, quarantined, or the first drop reason that applies.
//!
//! The policy stage turns these into a drop reason per row on each engine; keeping the
//! comparison itself here (trimmed, ASCII case-insensitive, whole list items only) makes every
//! engine keep and drop exactly the same rows.

/// Internal column holding each row's status code (0 = kept, 1 = quarantined, 2.. = dropped),
/// as Int32 because the engine is built without 8-bit integer types.
pub const STATUS: &str = "__status";
/// Status code of rows that are kept.
pub const KEPT: u8 = 0;
/// Status code of rows quarantined because a value did not parse.
pub const QUARANTINED: u8 = 1;

/// Why a row was dropped. The order of the variants is the order the checks apply in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The subject column is empty: the row cannot be tied to a person, so no consent applies.
    MissingSubject,
    /// The subject was erased (`privprep subject forget` or `sweep`): on the store's erasure
    /// list, which every run applies.
    Erased,
    /// The subject is on a revocation list.
    Revoked,
    /// Consent status missing or not in `allowed_status`.
    ConsentStatus,
    /// Consent purposes missing or not including the pipeline's purpose.
    ConsentPurpose,
    /// Provenance tag missing or not in `allowed_provenance`.
    Provenance,
    /// Timestamp missing or outside the retention window.
    Retention,
    /// A free-text column holds PII whose rule is `drop_row`.
    PiiInText,
    /// The row's quasi-identifier class has fewer than k written rows (`[risk]`).
    KAnonymity,
}

impl DropReason {
    /// All reasons, in the order they are checked.
    pub const ALL: [DropReason; 9] = [
        DropReason::MissingSubject,
        DropReason::Erased,
        DropReason::Revoked,
        DropReason::ConsentStatus,
        DropReason::ConsentPurpose,
        DropReason::Provenance,
        DropReason::Retention,
        DropReason::PiiInText,
        DropReason::KAnonymity,
    ];

    /// Status code of rows dropped for this reason.
    pub fn code(self) -> u8 {
        2 + DropReason::ALL.iter().position(|r| *r == self).unwrap_or(0) as u8
    }

    /// The reason for a status code, if it is a drop.
    pub fn from_code(code: u8) -> Option<DropReason> {
        DropReason::ALL.get(code.checked_sub(2)? as usize).copied()
    }

    /// snake_case name used in summaries, JSON and lineage.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::MissingSubject => "missing_subject",
            DropReason::Erased => "erased",
            DropReason::Revoked => "revoked",
            DropReason::ConsentStatus => "consent_status",
            DropReason::ConsentPurpose => "consent_purpose",
            DropReason::Provenance => "provenance",
            DropReason::Retention => "retention",
            DropReason::PiiInText => "pii_in_text",
            DropReason::KAnonymity => "k_anonymity",
        }
    }
}

/// Number of status codes: kept, quarantined and one per drop reason.
pub const STATUSES: usize = 2 + DropReason::ALL.len();

/// True when a `sep`-separated purposes list includes `purpose` (trimmed, ASCII case-insensitive).
pub fn purposes_include(list: &str, sep: &str, purpose: &str) -> bool {
    list.split(sep)
        .any(|p| crate::parse::trim(p).eq_ignore_ascii_case(purpose))
}

/// True when `value` (trimmed) equals one of `allowed`, ASCII case-insensitively.
pub fn one_of(value: &str, allowed: &[String]) -> bool {
    let v = crate::parse::trim(value);
    allowed.iter().any(|a| a.eq_ignore_ascii_case(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_match_whole_tokens_only() {
        assert!(purposes_include("training;analytics", ";", "training"));
        assert!(purposes_include(" Training ; x", ";", "training"));
        assert!(!purposes_include("pretraining;analytics", ";", "training"));
        assert!(!purposes_include("", ";", "training"));
    }

    #[test]
    fn one_of_trims_and_ignores_ascii_case_only() {
        let allowed = ["granted".to_string(), "Implied".to_string()];
        assert!(one_of(" GRANTED ", &allowed));
        assert!(one_of("implied", &allowed));
        assert!(!one_of("grant", &allowed));
        assert!(!one_of("", &allowed));
        assert!(!one_of("granted", &[]));
    }
}
