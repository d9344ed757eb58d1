//! Per-value consent predicates: does a row's purposes list include the pipeline's purpose,
//! is its status or provenance one of the allowed values.
//!
//! The policy stage turns these into a drop reason per row on each engine; keeping the
//! comparison itself here (trimmed, ASCII case-insensitive, whole list items only) makes every
//! engine keep and drop exactly the same rows.

/// True when a `sep`-separated purposes list includes `purpose` (trimmed, ASCII case-insensitive).
pub fn purposes_include(list: &str, sep: &str, purpose: &str) -> bool {
    list.split(sep)
        .any(|p| p.trim().eq_ignore_ascii_case(purpose))
}

/// True when `value` (trimmed) equals one of `allowed`, ASCII case-insensitively.
pub fn one_of(value: &str, allowed: &[String]) -> bool {
    let v = value.trim();
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
