//! Generators for the kinds of personal data the dataset plants: e-mail addresses, phone
//! numbers, US social security numbers, payment card numbers, IPv4 addresses and IBANs.
//!
//! Values look real enough to exercise validating detectors: card numbers pass Luhn, IBANs
//! carry correct mod-97 check digits, SSNs respect the area/group/serial rules, phone numbers
//! have the digit counts of their numbering plan. E-mail domains are reserved ones.

use rand::Rng;

use super::names::{first_names_ascii, last_names_ascii, EMAIL_DOMAINS};
use super::random::{pick, weighted, weighted_index};
use super::text::{push_padded, push_uint};

/// The type of a planted PII span, as written to `pii_spans.jsonl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PiiKind {
    Email,
    Phone,
    Ssn,
    Card,
    Ipv4,
    Iban,
    Name,
}

impl PiiKind {
    /// The name used in `pii_spans.jsonl`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::Ssn => "ssn",
            PiiKind::Card => "card",
            PiiKind::Ipv4 => "ipv4",
            PiiKind::Iban => "iban",
            PiiKind::Name => "name",
        }
    }
}

/// How a phone number is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PhoneFormat {
    /// `(415) 555-0132`
    UsParen,
    /// `415-555-0132`
    UsDash,
    /// `+14155550132`
    UsE164,
    /// `+44 20 7946 0958`
    UkIntl,
    /// `020 7946 0958`
    UkNational,
    /// `+49 30 901820`
    De,
    /// `+33 1 42 68 53 00`
    Fr,
}

/// German area codes (without the trunk 0) used for DE numbers.
const DE_AREAS: &[u16] = &[30, 40, 69, 89, 221, 211, 711, 351];

/// A phone number in a compact form (8 bytes), rendered on demand.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Phone {
    format: PhoneFormat,
    /// Digits of the subscriber part.
    sub_len: u8,
    /// US area code, UK "20", DE area code, FR leading digit.
    area: u16,
    /// Subscriber number.
    number: u32,
}

impl Phone {
    /// A number in the numbering plan of `country` (US, CA, GB, DE, FR); other countries get
    /// any of the formats.
    pub(crate) fn for_country(rng: &mut impl Rng, country: &str) -> Phone {
        use PhoneFormat::*;
        let format = match country {
            "US" | "CA" => weighted(rng, &[(UsParen, 4), (UsDash, 4), (UsE164, 2)]),
            "GB" => weighted(rng, &[(UkIntl, 1), (UkNational, 1)]),
            "DE" => De,
            "FR" => Fr,
            _ => return Phone::random(rng),
        };
        Phone::with_format(rng, format)
    }

    /// A number in any format (mostly US ones).
    pub(crate) fn random(rng: &mut impl Rng) -> Phone {
        use PhoneFormat::*;
        let format = weighted(
            rng,
            &[
                (UsParen, 3),
                (UsDash, 3),
                (UsE164, 2),
                (UkIntl, 1),
                (UkNational, 1),
                (De, 1),
                (Fr, 1),
            ],
        );
        Phone::with_format(rng, format)
    }

    fn with_format(rng: &mut impl Rng, format: PhoneFormat) -> Phone {
        use PhoneFormat::*;
        let (area, sub_len, number) = match format {
            // NANP: area and exchange codes start with 2-9.
            UsParen | UsDash | UsE164 => (
                rng.random_range(200..1000),
                7,
                rng.random_range(200..1000) * 10_000 + rng.random_range(0..10_000),
            ),
            // London: 20 + 8 digits starting 3, 7 or 8.
            UkIntl | UkNational => (
                20,
                8,
                pick(rng, &[3u32, 7, 8]) * 10_000_000 + rng.random_range(0..10_000_000),
            ),
            De => {
                let sub_len = rng.random_range(6..=8u8);
                let low = 10u32.pow(u32::from(sub_len) - 1);
                (
                    pick(rng, DE_AREAS),
                    sub_len,
                    rng.random_range(low..low * 10),
                )
            }
            // 9 significant digits: 1-5 geographic, 6-7 mobile.
            Fr => (rng.random_range(1..=7), 8, rng.random_range(0..100_000_000)),
        };
        Phone {
            format,
            sub_len,
            area,
            number,
        }
    }

    /// Appends the number as written in its format.
    pub(crate) fn push(&self, buf: &mut String) {
        use PhoneFormat::*;
        let (area, n) = (u64::from(self.area), u64::from(self.number));
        match self.format {
            UsParen => {
                buf.push('(');
                push_uint(buf, area);
                buf.push_str(") ");
                push_uint(buf, n / 10_000);
                buf.push('-');
                push_padded(buf, n % 10_000, 4);
            }
            UsDash => {
                push_uint(buf, area);
                buf.push('-');
                push_uint(buf, n / 10_000);
                buf.push('-');
                push_padded(buf, n % 10_000, 4);
            }
            UsE164 => {
                buf.push_str("+1");
                push_uint(buf, area);
                push_padded(buf, n, 7);
            }
            UkIntl | UkNational => {
                buf.push_str(if self.format == UkIntl { "+44 " } else { "0" });
                push_uint(buf, area);
                buf.push(' ');
                push_padded(buf, n / 10_000, 4);
                buf.push(' ');
                push_padded(buf, n % 10_000, 4);
            }
            De => {
                buf.push_str("+49 ");
                push_uint(buf, area);
                buf.push(' ');
                push_padded(buf, n, usize::from(self.sub_len));
            }
            Fr => {
                buf.push_str("+33 ");
                push_uint(buf, area);
                for shift in [1_000_000, 10_000, 100, 1] {
                    buf.push(' ');
                    push_padded(buf, n / shift % 100, 2);
                }
            }
        }
    }
}

/// How a person's e-mail address is derived from their name (5 bytes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct EmailRecipe {
    style: u8,
    domain: u8,
    number: u16,
}

/// Number of local-part styles [`EmailRecipe::push`] knows.
const EMAIL_STYLES: u8 = 7;

impl EmailRecipe {
    /// A random recipe.
    pub(crate) fn random(rng: &mut impl Rng) -> EmailRecipe {
        let domain = weighted_index(rng, EMAIL_DOMAINS) as u8;
        let number = if rng.random_bool(0.5) {
            rng.random_range(1..100)
        } else {
            rng.random_range(1950..2010)
        };
        EmailRecipe {
            style: rng.random_range(0..EMAIL_STYLES),
            domain,
            number,
        }
    }

    /// Appends the address of the person with name indices `first`, `last`.
    pub(crate) fn push(&self, buf: &mut String, first: usize, last: usize) {
        let f = first_names_ascii()[first].as_str();
        let l = last_names_ascii()[last].as_str();
        let n = u64::from(self.number);
        match self.style {
            0 => {
                buf.push_str(f);
                buf.push('.');
                buf.push_str(l);
            }
            1 => {
                buf.push_str(f);
                buf.push('.');
                buf.push_str(l);
                push_uint(buf, n);
            }
            2 => {
                buf.push_str(&f[..1]);
                buf.push_str(l);
                push_uint(buf, n);
            }
            3 => {
                buf.push_str(f);
                buf.push('_');
                buf.push_str(l);
            }
            4 => {
                buf.push_str(f);
                buf.push_str(l);
                push_uint(buf, n);
            }
            5 => {
                buf.push_str(l);
                buf.push('.');
                buf.push_str(f);
            }
            _ => {
                buf.push_str(f);
                push_uint(buf, n);
            }
        }
        buf.push('@');
        buf.push_str(EMAIL_DOMAINS[usize::from(self.domain)].0);
    }
}

/// Appends a US social security number that follows the issuing rules: area 001-899 but not
/// 666, group 01-99, serial 0001-9999. Mostly `123-45-6789`, sometimes with spaces or bare.
pub(crate) fn push_ssn(rng: &mut impl Rng, buf: &mut String) {
    let mut area = rng.random_range(1..899);
    if area >= 666 {
        area += 1; // skip 666, reach 899
    }
    let group = rng.random_range(1..100);
    let serial = rng.random_range(1..10_000);
    let sep = weighted(rng, &[("-", 85), (" ", 10), ("", 5)]);
    push_padded(buf, area, 3);
    buf.push_str(sep);
    push_padded(buf, group, 2);
    buf.push_str(sep);
    push_padded(buf, serial, 4);
}

/// Appends a Luhn-valid payment card number of a real brand's shape: Visa (13/16/19 digits),
/// Mastercard (51-55 and 2221-2720), Amex (34/37, 15 digits) or Discover (6011/644-649/65),
/// grouped with spaces, dashes or nothing.
pub(crate) fn push_card(rng: &mut impl Rng, buf: &mut String) {
    #[derive(Clone, Copy)]
    enum Brand {
        Visa,
        Mastercard,
        Amex,
        Discover,
    }
    let brand = weighted(
        rng,
        &[
            (Brand::Visa, 45),
            (Brand::Mastercard, 30),
            (Brand::Amex, 15),
            (Brand::Discover, 10),
        ],
    );
    let (prefix, len): (u32, usize) = match brand {
        Brand::Visa => (4, weighted(rng, &[(16, 80), (13, 10), (19, 10)])),
        Brand::Mastercard if rng.random_bool(0.7) => (rng.random_range(51..=55), 16),
        Brand::Mastercard => (rng.random_range(2221..=2720), 16),
        Brand::Amex => (pick(rng, &[34, 37]), 15),
        Brand::Discover => (pick(rng, &[6011, 644, 645, 646, 647, 648, 649, 65]), 16),
    };
    let mut digits = [0u8; 19];
    let prefix_text = prefix.to_string();
    for (d, b) in digits.iter_mut().zip(prefix_text.bytes()) {
        *d = b - b'0';
    }
    for d in &mut digits[prefix_text.len()..len - 1] {
        *d = rng.random_range(0..10);
    }
    digits[len - 1] = luhn_check_digit(&digits[..len - 1]);

    let groups: &[usize] = match len {
        15 => &[4, 6, 5],
        13 => &[4, 4, 5],
        16 => &[4, 4, 4, 4],
        _ => &[4, 4, 4, 4, 3],
    };
    let sep = weighted(rng, &[("", 40), (" ", 40), ("-", 20)]);
    let mut at = 0;
    for (i, &g) in groups.iter().enumerate() {
        if i > 0 {
            buf.push_str(sep);
        }
        for &d in &digits[at..at + g] {
            buf.push(char::from(b'0' + d));
        }
        at += g;
    }
}

/// The digit that makes `payload` followed by it pass the Luhn check.
fn luhn_check_digit(payload: &[u8]) -> u8 {
    let sum: u32 = payload
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// Appends an IPv4 address: mostly public unicast, some private (10/8, 192.168/16).
pub(crate) fn push_ipv4(rng: &mut impl Rng, buf: &mut String) {
    let octets: [u8; 4] = match rng.random_range(0..10) {
        0 => [10, rng.random(), rng.random(), rng.random_range(1..255)],
        1 => [192, 168, rng.random(), rng.random_range(1..255)],
        _ => {
            let mut first = rng.random_range(1..224u8);
            if first == 10 || first == 127 {
                first += 1;
            }
            [first, rng.random(), rng.random(), rng.random_range(1..255)]
        }
    };
    for (i, o) in octets.iter().enumerate() {
        if i > 0 {
            buf.push('.');
        }
        push_uint(buf, u64::from(*o));
    }
}

/// Appends an IBAN with correct check digits: DE (22 characters), GB (22), FR (27, with a
/// valid RIB key) or NL (18); compact or in groups of four.
pub(crate) fn push_iban(rng: &mut impl Rng, buf: &mut String) {
    let mut bban = String::with_capacity(30);
    let country = pick(rng, &["DE", "GB", "FR", "NL"]);
    match country {
        "DE" => {
            push_padded(&mut bban, rng.random_range(10_000_000..90_000_000), 8);
            push_padded(&mut bban, rng.random_range(0..10_000_000_000), 10);
        }
        "GB" => {
            bban.push_str(pick(rng, &["NWBK", "BARC", "LOYD", "HBUK", "MIDL"]));
            push_padded(&mut bban, rng.random_range(0..1_000_000), 6);
            push_padded(&mut bban, rng.random_range(0..100_000_000), 8);
        }
        "FR" => {
            let bank: u64 = rng.random_range(10_000..40_000);
            let branch: u64 = rng.random_range(0..100_000);
            let account: u64 = rng.random_range(0..100_000_000_000);
            let key = 97 - (89 * bank + 15 * branch + 3 * account) % 97;
            push_padded(&mut bban, bank, 5);
            push_padded(&mut bban, branch, 5);
            push_padded(&mut bban, account, 11);
            push_padded(&mut bban, key, 2);
        }
        _ => {
            bban.push_str(pick(rng, &["ABNA", "INGB", "RABO", "TRIO", "SNSB", "KNAB"]));
            push_padded(&mut bban, rng.random_range(0..10_000_000_000), 10);
        }
    }
    // Check digits: read BBAN + country + "00" as a number (A=10 … Z=35); 98 minus it mod 97.
    let remainder = mod97(bban.bytes().chain(country.bytes()).chain(*b"00"));
    let mut iban = String::with_capacity(34);
    iban.push_str(country);
    push_padded(&mut iban, 98 - remainder, 2);
    iban.push_str(&bban);

    if rng.random_bool(0.5) {
        buf.push_str(&iban);
    } else {
        for (i, chunk) in iban.as_bytes().chunks(4).enumerate() {
            if i > 0 {
                buf.push(' ');
            }
            buf.push_str(std::str::from_utf8(chunk).expect("IBANs are ASCII"));
        }
    }
}

/// The remainder mod 97 of alphanumeric text read as an ISO 7064 number (A=10 … Z=35).
fn mod97(text: impl IntoIterator<Item = u8>) -> u64 {
    text.into_iter().fold(0, |r, b| match b {
        b'0'..=b'9' => (r * 10 + u64::from(b - b'0')) % 97,
        b'A'..=b'Z' => (r * 100 + u64::from(b - b'A' + 10)) % 97,
        _ => r,
    })
}

/// Validators the tests use to check planted spans independently of how they were made.
#[cfg(test)]
pub(crate) mod check {
    /// Whether the digits of `text` (separators ignored) pass the Luhn check.
    pub(crate) fn luhn_valid(text: &str) -> bool {
        let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
        let sum: u32 = digits
            .iter()
            .rev()
            .enumerate()
            .map(|(i, &d)| match (i % 2, d * 2) {
                (0, _) => d,
                (_, doubled) if doubled > 9 => doubled - 9,
                (_, doubled) => doubled,
            })
            .sum();
        !digits.is_empty() && sum.is_multiple_of(10)
    }

    /// Whether `text` (spaces ignored) is an IBAN whose check digits verify (mod 97 = 1).
    pub(crate) fn iban_valid(text: &str) -> bool {
        let compact: String = text.chars().filter(|c| *c != ' ').collect();
        if compact.len() < 15 || !compact.is_ascii() {
            return false;
        }
        let (head, tail) = compact.split_at(4);
        super::mod97(tail.bytes().chain(head.bytes())) == 1
    }

    /// Whether `text` is an SSN (`AAA-GG-SSSS`, spaces or bare) with valid area, group, serial.
    pub(crate) fn ssn_valid(text: &str) -> bool {
        let digits: String = text.chars().filter(|c| c.is_ascii_digit()).collect();
        if digits.len() != 9 {
            return false;
        }
        let area: u32 = digits[..3].parse().unwrap();
        let group: u32 = digits[3..5].parse().unwrap();
        let serial: u32 = digits[5..].parse().unwrap();
        (1..900).contains(&area) && area != 666 && group != 0 && serial != 0
    }

    /// Digits in `text`.
    pub(crate) fn digit_count(text: &str) -> usize {
        text.chars().filter(|c| c.is_ascii_digit()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::check::*;
    use super::*;
    use crate::datagen::random::{stream_rng, Stream};

    fn many(f: impl Fn(&mut rand::rngs::StdRng, &mut String)) -> Vec<String> {
        let mut rng = stream_rng(11, Stream::Row, 0);
        (0..2000)
            .map(|_| {
                let mut s = String::new();
                f(&mut rng, &mut s);
                s
            })
            .collect()
    }

    #[test]
    fn validators_know_textbook_examples() {
        assert!(luhn_valid("4111 1111 1111 1111"));
        assert!(luhn_valid("378282246310005"));
        assert!(!luhn_valid("4111 1111 1111 1112"));
        assert!(iban_valid("DE89 3704 0044 0532 0130 00"));
        assert!(iban_valid("GB82WEST12345698765432"));
        assert!(iban_valid("FR1420041010050500013M02606"));
        assert!(iban_valid("NL91ABNA0417164300"));
        assert!(!iban_valid("DE88 3704 0044 0532 0130 00"));
        assert!(ssn_valid("123-45-6789"));
        assert!(!ssn_valid("666-45-6789"));
        assert!(!ssn_valid("900-45-6789"));
        assert!(!ssn_valid("123-00-6789"));
    }

    #[test]
    fn cards_pass_luhn_and_have_brand_lengths() {
        for card in many(push_card) {
            assert!(luhn_valid(&card), "{card}");
            assert!([13, 15, 16, 19].contains(&digit_count(&card)), "{card}");
            let first = card.as_bytes()[0];
            assert!(matches!(first, b'2'..=b'6'), "{card}");
        }
    }

    #[test]
    fn ibans_verify_and_have_country_lengths() {
        for iban in many(push_iban) {
            assert!(iban_valid(&iban), "{iban}");
            let len = iban.chars().filter(|c| *c != ' ').count();
            let want = match &iban[..2] {
                "DE" | "GB" => 22,
                "FR" => 27,
                "NL" => 18,
                other => panic!("country {other}"),
            };
            assert_eq!(len, want, "{iban}");
        }
    }

    #[test]
    fn fr_ibans_carry_a_valid_rib_key() {
        for iban in many(push_iban) {
            let compact: String = iban.chars().filter(|c| *c != ' ').collect();
            if let Some(bban) = compact.strip_prefix("FR").map(|s| &s[2..]) {
                let n = |r: std::ops::Range<usize>| bban[r].parse::<u64>().unwrap();
                let (bank, branch, account, key) = (n(0..5), n(5..10), n(10..21), n(21..23));
                assert_eq!(
                    (89 * bank + 15 * branch + 3 * account + key) % 97,
                    0,
                    "{iban}"
                );
            }
        }
    }

    #[test]
    fn ssns_follow_the_rules() {
        for ssn in many(push_ssn) {
            assert!(ssn_valid(&ssn), "{ssn}");
        }
    }

    #[test]
    fn ipv4_octets_are_in_range() {
        for ip in many(push_ipv4) {
            let octets: Vec<u8> = ip.split('.').map(|o| o.parse().unwrap()).collect();
            assert_eq!(octets.len(), 4, "{ip}");
            assert!(
                octets[0] != 0 && octets[0] != 127 && octets[0] < 224,
                "{ip}"
            );
        }
    }

    #[test]
    fn phones_have_plan_digit_counts() {
        for phone in many(|r, b| Phone::random(r).push(b)) {
            let digits = digit_count(&phone);
            let ok = if phone.starts_with("+44") {
                digits == 12
            } else if phone.starts_with("020") {
                digits == 11
            } else if phone.starts_with("+49") {
                (10..=13).contains(&digits)
            } else if phone.starts_with("+33") {
                digits == 11 && !phone.starts_with("+33 0")
            } else if phone.starts_with("+1") {
                digits == 11
            } else {
                digits == 10
            };
            assert!(ok, "{phone}");
        }
    }

    #[test]
    fn phone_formats_render_as_documented() {
        let phone = |format, area, sub_len, number| {
            let mut s = String::new();
            Phone {
                format,
                sub_len,
                area,
                number,
            }
            .push(&mut s);
            s
        };
        use PhoneFormat::*;
        assert_eq!(phone(UsParen, 415, 7, 5_550_132), "(415) 555-0132");
        assert_eq!(phone(UsDash, 415, 7, 5_550_132), "415-555-0132");
        assert_eq!(phone(UsE164, 415, 7, 5_550_132), "+14155550132");
        assert_eq!(phone(UkIntl, 20, 8, 79_460_958), "+44 20 7946 0958");
        assert_eq!(phone(UkNational, 20, 8, 79_460_958), "020 7946 0958");
        assert_eq!(phone(De, 30, 6, 901_820), "+49 30 901820");
        assert_eq!(phone(Fr, 1, 8, 42_685_300), "+33 1 42 68 53 00");
    }

    #[test]
    fn emails_are_ascii_with_one_at() {
        let mut rng = stream_rng(5, Stream::Row, 1);
        for first in 0..crate::datagen::names::FIRST_NAMES.len() {
            let mut s = String::new();
            EmailRecipe::random(&mut rng).push(&mut s, first, first % 50);
            assert_eq!(s.matches('@').count(), 1, "{s}");
            assert!(s.is_ascii() && !s.starts_with('@'), "{s}");
        }
    }
}
