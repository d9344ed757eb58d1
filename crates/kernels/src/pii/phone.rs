//! A compact table of national telephone numbering plans.
//!
//! Free text is full of digit groups that look like phone numbers (dates,
//! order numbers, amounts). Checking a candidate against the numbering plan
//! of the regions a dataset actually covers — country calling code, trunk
//! prefix, significant-number lengths and leading digits — removes most of
//! those look-alikes without the weight of a full metadata library. The
//! rules are deliberately coarse (no per-area-code tables): they should
//! accept every real number of a region and reject shapes no region uses.

/// Regions used when the caller configures none.
pub const DEFAULT_REGIONS: &[&str] = &["US", "CA", "GB", "DE", "FR", "NL", "ES", "IT", "IE", "AU"];

/// One region's numbering plan.
#[derive(Debug)]
struct Plan {
    /// ISO 3166-1 alpha-2 code.
    iso: &'static str,
    /// Country calling code digits.
    cc: &'static [u8],
    /// National trunk prefix dialled before the NSN inside the country.
    trunk: Option<u8>,
    /// Inclusive bounds on the national significant number length.
    min: u8,
    max: u8,
    /// Digits a national significant number may start with.
    lead: &'static [u8],
    /// North American plan: area code and exchange must both start with 2–9.
    nanp: bool,
}

const D1_9: &[u8] = b"123456789";
const D2_9: &[u8] = b"23456789";

const fn plan(
    iso: &'static str,
    cc: &'static [u8],
    trunk: Option<u8>,
    min: u8,
    max: u8,
    lead: &'static [u8],
) -> Plan {
    Plan {
        iso,
        cc,
        trunk,
        min,
        max,
        lead,
        nanp: false,
    }
}

const PLANS: &[Plan] = &[
    Plan {
        iso: "US",
        cc: b"1",
        trunk: Some(b'1'),
        min: 10,
        max: 10,
        lead: D2_9,
        nanp: true,
    },
    Plan {
        iso: "CA",
        cc: b"1",
        trunk: Some(b'1'),
        min: 10,
        max: 10,
        lead: D2_9,
        nanp: true,
    },
    plan("GB", b"44", Some(b'0'), 9, 10, b"1235789"),
    plan("DE", b"49", Some(b'0'), 6, 13, D1_9),
    plan("FR", b"33", Some(b'0'), 9, 9, D1_9),
    plan("NL", b"31", Some(b'0'), 9, 9, D1_9),
    // Spain and Italy have no trunk prefix; Italian landlines keep their
    // leading 0 inside the NSN.
    plan("ES", b"34", None, 9, 9, b"6789"),
    plan("IT", b"39", None, 6, 11, b"038"),
    plan("BE", b"32", Some(b'0'), 8, 9, D1_9),
    plan("CH", b"41", Some(b'0'), 9, 9, D2_9),
    plan("AT", b"43", Some(b'0'), 5, 13, D1_9),
    plan("IE", b"353", Some(b'0'), 7, 9, D1_9),
    plan("AU", b"61", Some(b'0'), 9, 9, b"23478"),
    plan("IN", b"91", Some(b'0'), 10, 10, D1_9),
    plan("BR", b"55", Some(b'0'), 10, 11, D1_9),
    plan("MX", b"52", None, 10, 10, D1_9),
    plan("JP", b"81", Some(b'0'), 9, 10, D1_9),
    plan("SE", b"46", Some(b'0'), 7, 9, D1_9),
    plan("DK", b"45", None, 8, 8, D2_9),
    plan("NO", b"47", None, 8, 8, D2_9),
    plan("PL", b"48", None, 9, 9, D1_9),
    plan("PT", b"351", None, 9, 9, b"29"),
];

const SUPPORTED: &[&str] = &[
    "US", "CA", "GB", "DE", "FR", "NL", "ES", "IT", "BE", "CH", "AT", "IE", "AU", "IN", "BR", "MX",
    "JP", "SE", "DK", "NO", "PL", "PT",
];

/// ISO codes of every region with a numbering plan.
pub fn supported_regions() -> &'static [&'static str] {
    SUPPORTED
}

impl Plan {
    /// Whether `nsn` is a national significant number of this plan.
    fn nsn_valid(&self, nsn: &[u8]) -> bool {
        let len = nsn.len();
        if len < usize::from(self.min) || len > usize::from(self.max) {
            return false;
        }
        if !self.lead.contains(&nsn[0]) {
            return false;
        }
        // Area codes are not rejected by their second digit: N9X codes are
        // being opened as the plan fills up.
        !self.nanp || (b'2'..=b'9').contains(&nsn[3])
    }

    /// Whether `digits` is this plan's number as dialled inside the country.
    fn national_valid(&self, digits: &[u8]) -> bool {
        if self.nanp {
            return match digits.len() {
                10 => self.nsn_valid(digits),
                11 => digits[0] == b'1' && self.nsn_valid(&digits[1..]),
                _ => false,
            };
        }
        match self.trunk {
            Some(t) => digits.len() > 1 && digits[0] == t && self.nsn_valid(&digits[1..]),
            None => self.nsn_valid(digits),
        }
    }
}

/// The numbering plans of the configured regions.
#[derive(Debug, Clone)]
pub struct Plans {
    /// Indices into `PLANS`, deduplicated.
    active: Vec<usize>,
}

impl Plans {
    /// Builds the plan set for `regions` (ISO codes, case-insensitive).
    /// Fails on an unknown region, naming it and listing the supported ones.
    pub fn new<S: AsRef<str>>(regions: &[S]) -> Result<Plans, String> {
        let mut active = Vec::with_capacity(regions.len());
        for r in regions {
            let r = r.as_ref().trim();
            let idx = PLANS
                .iter()
                .position(|p| p.iso.eq_ignore_ascii_case(r))
                .ok_or_else(|| {
                    format!(
                        "unknown phone region '{}' (supported: {})",
                        r,
                        SUPPORTED.join(", ")
                    )
                })?;
            if !active.contains(&idx) {
                active.push(idx);
            }
        }
        Ok(Plans { active })
    }

    /// ISO codes of the configured regions, in configuration order.
    pub fn regions(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.active.iter().map(|&i| PLANS[i].iso)
    }

    /// Whether `digits` (ASCII digits only, separators already removed) is a
    /// valid number of a configured region. With `international` the number
    /// was written with `+` or `00` (already stripped) and must start with a
    /// configured country calling code; otherwise it must be in a region's
    /// national dialling form.
    pub fn valid(&self, digits: &[u8], international: bool) -> bool {
        if digits.len() < 5 || digits.len() > 17 || !digits.iter().all(u8::is_ascii_digit) {
            return false;
        }
        self.active.iter().any(|&i| {
            let p = &PLANS[i];
            if international {
                digits.starts_with(p.cc) && p.nsn_valid(&digits[p.cc.len()..])
            } else {
                p.national_valid(digits)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits(s: &str) -> Vec<u8> {
        s.bytes().filter(u8::is_ascii_digit).collect()
    }

    #[test]
    fn table_is_consistent() {
        assert_eq!(SUPPORTED.len(), PLANS.len());
        for (s, p) in SUPPORTED.iter().zip(PLANS) {
            assert_eq!(*s, p.iso);
            assert!(p.min <= p.max && p.min > 0);
        }
        assert!(Plans::new(DEFAULT_REGIONS).is_ok());
    }

    #[test]
    fn unknown_region_is_named() {
        let e = Plans::new(&["US", "ZZ"]).unwrap_err();
        assert!(e.contains("ZZ") && e.contains("GB"), "{e}");
    }

    #[test]
    fn nanp() {
        let p = Plans::new(&["US"]).unwrap();
        assert!(p.valid(&digits("15599750342"), true));
        assert!(p.valid(&digits("(221) 750-0974"), false));
        assert!(p.valid(&digits("1 221 750 0974"), false));
        assert!(p.valid(&digits("290-750-0974"), false)); // N9X area code
        assert!(!p.valid(&digits("121-750-0974"), false)); // area starts 1
        assert!(!p.valid(&digits("221-150-0974"), false)); // exchange starts 1
        assert!(!p.valid(&digits("221-750-097"), false));
        assert!(!p.valid(&digits("442071234567"), true));
    }

    #[test]
    fn europe() {
        let p = Plans::new(DEFAULT_REGIONS).unwrap();
        assert!(p.valid(&digits("+44 20 7123 4567"), true));
        assert!(p.valid(&digits("020 7123 4567"), false));
        assert!(p.valid(&digits("+49 30 1868085"), true));
        assert!(p.valid(&digits("030 1868085"), false));
        assert!(p.valid(&digits("+33 6 12 34 56 78"), true));
        assert!(p.valid(&digits("06 12 34 56 78"), false));
        assert!(p.valid(&digits("+353 1 234 5678"), true));
        assert!(p.valid(&digits("+61 2 9876 5432"), true));
        assert!(p.valid(&digits("+39 06 1234 5678"), true));
        assert!(!p.valid(&digits("+33 0 12 34 56 78"), true)); // trunk inside NSN
        assert!(!p.valid(&digits("+44 4 1234 5678"), true)); // GB NSN never starts 4
        assert!(!p.valid(&digits("+48 123 456 789"), true)); // PL not configured
        assert!(!p.valid(&digits("1234567"), false));
        let pl = Plans::new(&["pl", "PT"]).unwrap();
        assert!(pl.valid(&digits("+48 123 456 789"), true));
        assert!(pl.valid(&digits("+351 912 345 678"), true));
        assert_eq!(pl.regions().collect::<Vec<_>>(), ["PL", "PT"]);
    }

    #[test]
    fn garbage_is_rejected() {
        let p = Plans::new(DEFAULT_REGIONS).unwrap();
        assert!(!p.valid(b"", false));
        assert!(!p.valid(b"", true));
        assert!(!p.valid(b"12a4567890", false));
        assert!(!p.valid(b"1", true));
        assert!(!p.valid(b"49", true));
    }
}
