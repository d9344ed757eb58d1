//! Checksum and structure validators for the identifiers the scanner looks for.
//!
//! A digit run that merely has the right length is far too weak a signal in
//! free text: order numbers, timestamps and references share the same shapes.
//! These functions encode the issuing rules (card brand ranges, SSA
//! allocation rules, IBAN registry lengths, check digits) so that a candidate
//! is only reported when it could really have been issued. They are also the
//! negative guards (ISBN) used to suppress look-alikes.
//!
//! Every function is total: malformed input yields `false`/`None`, never a
//! panic.

use std::net::Ipv6Addr;
use std::str::FromStr;

/// Returns true when `digits` is a non-empty ASCII digit string whose Luhn
/// (mod 10) checksum is valid. Any non-digit byte makes it invalid.
pub fn luhn_valid(digits: &[u8]) -> bool {
    if digits.is_empty() {
        return false;
    }
    let mut sum: u32 = 0;
    for (i, &b) in digits.iter().rev().enumerate() {
        if !b.is_ascii_digit() {
            return false;
        }
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

/// Computes the Luhn check digit that makes `payload` followed by that digit
/// valid. Returns `None` if `payload` contains a non-digit.
pub fn luhn_check_digit(payload: &[u8]) -> Option<u8> {
    let mut sum: u32 = 0;
    for (i, &b) in payload.iter().rev().enumerate() {
        if !b.is_ascii_digit() {
            return None;
        }
        let mut d = u32::from(b - b'0');
        // The check digit will occupy position 0, so the payload's last digit
        // is at an odd position and gets doubled.
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    Some(b'0' + ((10 - sum % 10) % 10) as u8)
}

/// Parses the first `n` bytes of `digits` as a number (caller guarantees digits).
fn prefix_num(digits: &[u8], n: usize) -> u32 {
    digits[..n]
        .iter()
        .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'))
}

/// Returns the card brand whose issuer prefix and length both fit `digits`,
/// or `None`. Only ASCII digit strings can match.
pub fn card_brand(digits: &[u8]) -> Option<&'static str> {
    let len = digits.len();
    if len < 12 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let p1 = prefix_num(digits, 1);
    let p2 = prefix_num(digits, 2);
    let p3 = prefix_num(digits, 3);
    let p4 = prefix_num(digits, 4);
    let in_len = |lo: usize, hi: usize| (lo..=hi).contains(&len);
    if p1 == 4 && matches!(len, 13 | 16 | 19) {
        return Some("visa");
    }
    if ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16 {
        return Some("mastercard");
    }
    if (p2 == 34 || p2 == 37) && len == 15 {
        return Some("amex");
    }
    if (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65) && in_len(16, 19) {
        return Some("discover");
    }
    if ((3528..=3589).contains(&p4) && in_len(16, 19)) || ((p4 == 2131 || p4 == 1800) && len == 15)
    {
        return Some("jcb");
    }
    if ((300..=305).contains(&p3) || matches!(p2, 36 | 38 | 39)) && in_len(14, 19) {
        return Some("diners");
    }
    if p2 == 62 && in_len(16, 19) {
        return Some("unionpay");
    }
    if (p2 == 50 || (56..=69).contains(&p2)) && in_len(12, 19) {
        return Some("maestro");
    }
    None
}

/// A plausible payment card number: 12–19 digits, a known brand, valid Luhn.
pub fn card_valid(digits: &[u8]) -> bool {
    (12..=19).contains(&digits.len()) && card_brand(digits).is_some() && luhn_valid(digits)
}

/// Applies the SSA issuance rules to the three SSN fields. Rejects area 000,
/// 666 and 900–999, group 00, serial 0000 and well-known published samples.
pub fn ssn_valid(area: u16, group: u8, serial: u16) -> bool {
    if area == 0 || area == 666 || area >= 900 {
        return false;
    }
    if group == 0 || group > 99 || serial == 0 || serial > 9999 {
        return false;
    }
    // Numbers printed on sample cards and in advertising: real text that
    // contains them is quoting an example, not disclosing a person.
    const SAMPLES: [(u16, u8, u16); 3] = [(78, 5, 1120), (219, 9, 9999), (123, 45, 6789)];
    !SAMPLES.contains(&(area, group, serial))
}

/// Validates an SSN written as `123-45-6789`, `123 45 6789` or `123456789`.
pub fn ssn_valid_str(s: &str) -> bool {
    let b = s.as_bytes();
    let mut d = [0u8; 9];
    match b.len() {
        9 => d.copy_from_slice(b),
        11 => {
            let sep = b[3];
            if !(sep == b'-' || sep == b' ') || b[6] != sep {
                return false;
            }
            d[..3].copy_from_slice(&b[..3]);
            d[3..5].copy_from_slice(&b[4..6]);
            d[5..].copy_from_slice(&b[7..]);
        }
        _ => return false,
    }
    if !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    ssn_valid(
        prefix_num(&d, 3) as u16,
        prefix_num(&d[3..], 2) as u8,
        prefix_num(&d[5..], 4) as u16,
    )
}

/// IBAN lengths per country from the SWIFT IBAN registry (all SEPA members
/// plus the other common IBAN countries).
const IBAN_LENGTHS: &[([u8; 2], u8)] = &[
    (*b"AD", 24),
    (*b"AE", 23),
    (*b"AL", 28),
    (*b"AT", 20),
    (*b"AZ", 28),
    (*b"BA", 20),
    (*b"BE", 16),
    (*b"BG", 22),
    (*b"BH", 22),
    (*b"BI", 27),
    (*b"BR", 29),
    (*b"BY", 28),
    (*b"CH", 21),
    (*b"CR", 22),
    (*b"CY", 28),
    (*b"CZ", 24),
    (*b"DE", 22),
    (*b"DJ", 27),
    (*b"DK", 18),
    (*b"DO", 28),
    (*b"EE", 20),
    (*b"EG", 29),
    (*b"ES", 24),
    (*b"FI", 18),
    (*b"FK", 18),
    (*b"FO", 18),
    (*b"FR", 27),
    (*b"GB", 22),
    (*b"GE", 22),
    (*b"GI", 23),
    (*b"GL", 18),
    (*b"GR", 27),
    (*b"GT", 28),
    (*b"HR", 21),
    (*b"HU", 28),
    (*b"IE", 22),
    (*b"IL", 23),
    (*b"IQ", 23),
    (*b"IS", 26),
    (*b"IT", 27),
    (*b"JO", 30),
    (*b"KW", 30),
    (*b"KZ", 20),
    (*b"LB", 28),
    (*b"LC", 32),
    (*b"LI", 21),
    (*b"LT", 20),
    (*b"LU", 20),
    (*b"LV", 21),
    (*b"LY", 25),
    (*b"MC", 27),
    (*b"MD", 24),
    (*b"ME", 22),
    (*b"MK", 19),
    (*b"MN", 20),
    (*b"MR", 27),
    (*b"MT", 31),
    (*b"MU", 30),
    (*b"NI", 28),
    (*b"NL", 18),
    (*b"NO", 15),
    (*b"OM", 23),
    (*b"PK", 24),
    (*b"PL", 28),
    (*b"PS", 29),
    (*b"PT", 25),
    (*b"QA", 29),
    (*b"RO", 24),
    (*b"RS", 22),
    (*b"RU", 33),
    (*b"SA", 24),
    (*b"SC", 31),
    (*b"SD", 18),
    (*b"SE", 24),
    (*b"SI", 19),
    (*b"SK", 24),
    (*b"SM", 27),
    (*b"SO", 23),
    (*b"ST", 25),
    (*b"SV", 28),
    (*b"TL", 23),
    (*b"TN", 24),
    (*b"TR", 26),
    (*b"UA", 29),
    (*b"VA", 22),
    (*b"VG", 24),
    (*b"XK", 20),
    (*b"YE", 30),
];

/// Longest IBAN in the registry; bounds the scanner's fixed buffers.
pub const IBAN_MAX_LEN: usize = 34;

/// Registered IBAN length for an upper-case ISO country code.
pub fn iban_len(country: &[u8; 2]) -> Option<usize> {
    IBAN_LENGTHS
        .binary_search_by(|(c, _)| c.cmp(country))
        .ok()
        .map(|i| usize::from(IBAN_LENGTHS[i].1))
}

/// Validates a compact IBAN (no separators): country, check digits,
/// registered length and ISO 7064 mod-97 == 1.
pub fn iban_valid_compact(b: &[u8]) -> bool {
    // The checksum check refuses short and malformed input first.
    iban_checksum_ok(b) && iban_len(&[b[0], b[1]]) == Some(b.len())
}

/// The ISO 7064 mod-97 check of a compact IBAN (country letters, check digits, then upper-case
/// letters and digits), whatever its length.
pub fn iban_checksum_ok(b: &[u8]) -> bool {
    if b.len() < 5 || b.len() > IBAN_MAX_LEN {
        return false;
    }
    if !b[0].is_ascii_uppercase() || !b[1].is_ascii_uppercase() {
        return false;
    }
    if !b[2].is_ascii_digit() || !b[3].is_ascii_digit() {
        return false;
    }
    // Rearranged: BBAN first, then country and check digits; letters count
    // as two-digit numbers 10..35.
    let mut rem: u32 = 0;
    for &c in b[4..].iter().chain(&b[..4]) {
        if c.is_ascii_digit() {
            rem = (rem * 10 + u32::from(c - b'0')) % 97;
        } else if c.is_ascii_uppercase() {
            rem = (rem * 100 + u32::from(c - b'A') + 10) % 97;
        } else {
            return false;
        }
    }
    rem == 1
}

/// Validates an IBAN written compactly or grouped with single spaces.
/// Lower-case letters are accepted and treated as upper case.
pub fn iban_valid(s: &str) -> bool {
    let mut buf = [0u8; IBAN_MAX_LEN];
    let mut n = 0;
    let mut prev_space = true;
    for &c in s.trim().as_bytes() {
        if c == b' ' {
            if prev_space {
                return false;
            }
            prev_space = true;
            continue;
        }
        prev_space = false;
        if n == IBAN_MAX_LEN {
            return false;
        }
        buf[n] = c.to_ascii_uppercase();
        n += 1;
    }
    iban_valid_compact(&buf[..n])
}

/// ISBN-13 check digit (EAN-13 with a 978/979 prefix).
pub fn isbn13_valid(digits: &[u8]) -> bool {
    if digits.len() != 13 || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    if !(digits.starts_with(b"978") || digits.starts_with(b"979")) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .enumerate()
        .map(|(i, &b)| u32::from(b - b'0') * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    sum.is_multiple_of(10)
}

/// ISBN-10 check digit; the last character may be `X` (value 10).
pub fn isbn10_valid(chars: &[u8]) -> bool {
    if chars.len() != 10 {
        return false;
    }
    let mut sum = 0u32;
    for (i, &c) in chars.iter().enumerate() {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'X' | b'x' if i == 9 => 10,
            _ => return false,
        };
        sum += v * (10 - i as u32);
    }
    sum.is_multiple_of(11)
}

/// Dotted-quad IPv4: four decimal octets 0–255 without leading zeros
/// (except a lone "0"), nothing else.
pub fn ipv4_valid(s: &str) -> bool {
    let mut parts = 0;
    for part in s.split('.') {
        parts += 1;
        let p = part.as_bytes();
        if p.is_empty() || p.len() > 3 || !p.iter().all(u8::is_ascii_digit) {
            return false;
        }
        if p.len() > 1 && p[0] == b'0' {
            return false;
        }
        if prefix_num(p, p.len()) > 255 {
            return false;
        }
    }
    parts == 4
}

/// IPv6 address text as accepted by `std`, with guards against look-alikes
/// found in prose: it must have at least two non-empty groups and five hex
/// digits in total, and must not be the unspecified address.
pub fn ipv6_valid(s: &str) -> bool {
    if s.len() > 45 || !s.contains(':') {
        return false;
    }
    let addr = match Ipv6Addr::from_str(s) {
        Ok(a) => a,
        Err(_) => return false,
    };
    if addr.is_unspecified() {
        return false;
    }
    let groups = s.split(':').filter(|g| !g.is_empty()).count();
    let hex = s.bytes().filter(u8::is_ascii_hexdigit).count();
    groups >= 2 && hex >= 5
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_vectors() {
        assert!(luhn_valid(b"79927398713"));
        assert!(luhn_valid(b"4111111111111111"));
        assert!(!luhn_valid(b"79927398710"));
        assert!(!luhn_valid(b"4111111111111112"));
        assert!(!luhn_valid(b""));
        assert!(!luhn_valid(b"4111-1111"));
        assert_eq!(luhn_check_digit(b"7992739871"), Some(b'3'));
        assert_eq!(luhn_check_digit(b"12a"), None);
    }

    #[test]
    fn card_vectors() {
        assert_eq!(card_brand(b"4111111111111111"), Some("visa"));
        assert_eq!(card_brand(b"4222222222222"), Some("visa"));
        assert_eq!(card_brand(b"5555555555554444"), Some("mastercard"));
        assert_eq!(card_brand(b"2223003122003222"), Some("mastercard"));
        assert_eq!(card_brand(b"378282246310005"), Some("amex"));
        assert_eq!(card_brand(b"6011111111111117"), Some("discover"));
        assert_eq!(card_brand(b"3530111333300000"), Some("jcb"));
        assert_eq!(card_brand(b"30569309025904"), Some("diners"));
        assert_eq!(card_brand(b"6200000000000005"), Some("unionpay"));
        assert_eq!(card_brand(b"6759649826438453"), Some("maestro"));
        assert_eq!(card_brand(b"1234567812345670"), None);
        assert_eq!(card_brand(b"411111111111111"), None); // visa with 15 digits
        assert!(card_valid(b"4111111111111111"));
        assert!(card_valid(b"378282246310005"));
        assert!(!card_valid(b"4111111111111112"));
        assert!(!card_valid(b"0000000000000000"));
        assert!(!card_valid(b"12345678901234567890"));
    }

    #[test]
    fn ssn_vectors() {
        assert!(ssn_valid_str("530-10-3096"));
        assert!(ssn_valid_str("530 10 3096"));
        assert!(ssn_valid_str("530103096"));
        assert!(!ssn_valid_str("000-12-3456"));
        assert!(!ssn_valid_str("666-12-3456"));
        assert!(!ssn_valid_str("900-12-3456"));
        assert!(!ssn_valid_str("987-65-4321"));
        assert!(!ssn_valid_str("123-00-4567"));
        assert!(!ssn_valid_str("123-45-0000"));
        assert!(!ssn_valid_str("078-05-1120"));
        assert!(!ssn_valid_str("219-09-9999"));
        assert!(!ssn_valid_str("123-45-6789"));
        assert!(!ssn_valid_str("530-10 3096"));
        assert!(!ssn_valid_str("53a-10-3096"));
        assert!(!ssn_valid_str("5301030961"));
    }

    #[test]
    fn iban_vectors() {
        assert!(iban_valid("DE89370400440532013000"));
        assert!(iban_valid("DE89 3704 0044 0532 0130 00"));
        assert!(iban_valid("GB82WEST12345698765432"));
        assert!(iban_valid("gb82 west 1234 5698 7654 32"));
        assert!(iban_valid("FR1420041010050500013M02606"));
        assert!(iban_valid("NL91ABNA0417164300"));
        assert!(iban_valid("BE68539007547034"));
        assert!(iban_valid("CH9300762011623852957"));
        assert!(!iban_valid("DE89370400440532013001"));
        assert!(!iban_valid("DE8937040044053201300")); // wrong length
        assert!(!iban_valid("XX89370400440532013000"));
        assert!(!iban_valid("DE89  3704 0044 0532 0130 00"));
        assert!(!iban_valid(""));
        assert_eq!(iban_len(b"DE"), Some(22));
        assert_eq!(iban_len(b"NO"), Some(15));
        assert_eq!(iban_len(b"US"), None);
        assert!(IBAN_LENGTHS.len() >= 75);
        assert!(IBAN_LENGTHS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn isbn_vectors() {
        assert!(isbn13_valid(b"9780306406157"));
        assert!(!isbn13_valid(b"9780306406158"));
        assert!(!isbn13_valid(b"1234567890128"));
        assert!(isbn10_valid(b"0306406152"));
        assert!(isbn10_valid(b"080442957X"));
        assert!(!isbn10_valid(b"0306406153"));
        assert!(!isbn10_valid(b"X306406152"));
    }

    #[test]
    fn ip_vectors() {
        assert!(ipv4_valid("192.168.0.1"));
        assert!(ipv4_valid("0.0.0.0"));
        assert!(ipv4_valid("255.255.255.255"));
        assert!(!ipv4_valid("256.1.1.1"));
        assert!(!ipv4_valid("01.2.3.4"));
        assert!(!ipv4_valid("1.2.3"));
        assert!(!ipv4_valid("1.2.3.4.5"));
        assert!(!ipv4_valid("1.2.3."));
        assert!(ipv6_valid("2001:db8::1"));
        assert!(ipv6_valid("2001:0db8:85a3:0000:0000:8a2e:0370:7334"));
        assert!(ipv6_valid("fe80::1ff:fe23:4567:890a"));
        assert!(!ipv6_valid("::"));
        assert!(!ipv6_valid("::1"));
        assert!(!ipv6_valid("23:37:36"));
        assert!(!ipv6_valid("00:1a:2b:3c:4d:5e"));
        assert!(!ipv6_valid("hello"));
    }
}
