//! Placeholder detector with the final interface; replaced by the full scanner.
#![allow(dead_code)]

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Email,
    Phone,
    Ssn,
    Card,
    Ipv4,
    Ipv6,
    Iban,
    Url,
    Name,
    Id,
    Deny,
    Custom(u16),
}

impl Kind {
    pub const BUILTIN: [Kind; 8] = [
        Kind::Email,
        Kind::Phone,
        Kind::Ssn,
        Kind::Card,
        Kind::Ipv4,
        Kind::Ipv6,
        Kind::Iban,
        Kind::Url,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::Ssn => "ssn",
            Kind::Card => "card",
            Kind::Ipv4 => "ipv4",
            Kind::Ipv6 => "ipv6",
            Kind::Iban => "iban",
            Kind::Url => "url",
            Kind::Name => "name",
            Kind::Id => "id",
            Kind::Deny => "deny",
            Kind::Custom(_) => "custom",
        }
    }
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::BUILTIN
            .iter()
            .chain(&[Kind::Name, Kind::Id, Kind::Deny])
            .copied()
            .find(|k| k.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validator {
    None,
    Luhn,
    Mod97,
    Ssn,
}

#[derive(Clone, Debug)]
pub struct CustomDetector {
    pub name: String,
    pub pattern: String,
    pub validator: Validator,
}

#[derive(Clone, Debug)]
pub struct ScannerConfig {
    pub enabled: Vec<Kind>,
    pub regions: Vec<String>,
    pub custom: Vec<CustomDetector>,
    pub deny: Vec<String>,
    pub allow: Vec<String>,
}

impl Default for ScannerConfig {
    fn default() -> Self {
        ScannerConfig {
            enabled: Kind::BUILTIN.to_vec(),
            regions: super::phone::DEFAULT_REGIONS.iter().map(|s| s.to_string()).collect(),
            custom: Vec::new(),
            deny: Vec::new(),
            allow: Vec::new(),
        }
    }
}

#[derive(Debug)]
pub struct ScannerError(String);
impl std::fmt::Display for ScannerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ScannerError {}

pub struct Scanner {
    custom: Vec<regex::Regex>,
}

impl Scanner {
    pub fn new(cfg: &ScannerConfig) -> Result<Scanner, ScannerError> {
        let mut custom = Vec::new();
        for c in &cfg.custom {
            custom.push(
                regex::Regex::new(&c.pattern)
                    .map_err(|e| ScannerError(format!("detector `{}`: {e}", c.name)))?,
            );
        }
        Ok(Scanner { custom })
    }
    pub fn scan(&self, text: &str, ctx: &RowContext, out: &mut Vec<Span>) {
        out.clear();
        for (i, b) in text.bytes().enumerate() {
            if b == b'@' {
                let start = text[..i]
                    .rfind(|c: char| c.is_whitespace())
                    .map(|p| p + 1)
                    .unwrap_or(0);
                let end = text[i..]
                    .find(|c: char| c.is_whitespace())
                    .map(|p| p + i)
                    .unwrap_or(text.len());
                out.push(Span {
                    start,
                    end,
                    kind: Kind::Email,
                });
            }
        }
        for v in &ctx.values {
            if let Some(p) = text.find(v.as_str()) {
                out.push(Span {
                    start: p,
                    end: p + v.len(),
                    kind: Kind::Name,
                });
            }
        }
        out.sort_by_key(|s| s.start);
        out.dedup_by(|b, a| b.start < a.end);
    }
}

#[derive(Default)]
pub struct RowContext {
    values: Vec<String>,
}
impl RowContext {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn clear(&mut self) {
        self.values.clear();
    }
    pub fn add(&mut self, value: &str) {
        if value.len() > 2 {
            self.values.push(value.to_string());
        }
    }
}
