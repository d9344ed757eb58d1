//! Placeholder.
pub const DEFAULT_REGIONS: &[&str] = &["US", "CA", "GB", "DE", "FR", "NL", "ES", "IT", "IE", "AU"];
pub fn supported_regions() -> &'static [&'static str] {
    DEFAULT_REGIONS
}
