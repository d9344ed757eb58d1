//! Property tests: the scanner is total over arbitrary Unicode input and
//! always returns well-formed spans, and valid identifiers planted in
//! random prose are always found with the right kind.

use privprep_kernels::pii::detect::{Kind, RowContext, Scanner, ScannerConfig, Span};
use privprep_kernels::pii::validators::{self, luhn_check_digit, luhn_valid};
use proptest::prelude::*;
use std::sync::OnceLock;

fn scanner() -> &'static Scanner {
    static S: OnceLock<Scanner> = OnceLock::new();
    S.get_or_init(|| {
        let cfg = ScannerConfig {
            deny: vec!["secret".into(), "Ünïcode term".into()],
            allow: vec!["allowed@example.com".into()],
            ..ScannerConfig::default()
        };
        Scanner::new(&cfg).expect("scanner")
    })
}

fn check_spans(text: &str, spans: &[Span]) -> Result<(), TestCaseError> {
    let mut prev_end = 0;
    for s in spans {
        prop_assert!(s.start < s.end, "empty span {s:?}");
        prop_assert!(s.end <= text.len(), "out of bounds {s:?}");
        prop_assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
        prop_assert!(s.start >= prev_end, "unsorted or overlapping at {s:?}");
        prev_end = s.end;
    }
    Ok(())
}

/// Text biased towards the characters the detectors react to.
fn tricky_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[0-9]{1,5}",
            "[ .:@+()/#-]",
            "[a-fA-F]{1,4}",
            "[A-Z]{2}[0-9]{2}",
            "\\PC{1,3}",
            Just("://".to_string()),
            Just("%40".to_string()),
            Just("İ".to_string()),
            Just("ß".to_string()),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

/// Words that say nothing about a number after or before them (the scanner reads cue words
/// such as "call", "order" or "bytes" next to numbers).
const NEUTRAL: &[&str] = &[
    "the",
    "and",
    "please",
    "thanks",
    "see",
    "with",
    "from",
    "for",
    "hello",
    "yesterday",
    "again",
    "today",
    "we",
    "they",
    "blue",
    "house",
    "Maria",
    "said",
    "it",
    "was",
    "here",
];

fn words() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prop::sample::select(NEUTRAL).prop_map(str::to_owned), 0..6)
}

/// Words before a number that name it: a telephone word, or the SSN label.
fn phone_cue() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "call me at",
        "Tel:",
        "phone",
        "my mobile is",
        "WhatsApp",
        "Telefon",
        "numéro de téléphone :",
        "my number is",
        "text me on",
        "Fax",
    ])
}

/// Digits grouped as people write telephone numbers: optional `+CC`, a trunk `0` or a
/// bracketed area code, groups of 2–4 joined by one separator, and an optional extension.
fn phone() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(0u8..10, 15),
        prop::collection::vec(2usize..5, 2..5),
        0..4usize,
        prop::sample::select(vec![" ", "-", ".", "/"]),
        prop::option::of(prop::sample::select(vec!["x12", " ext. 4410", " x 7"])),
    )
        .prop_map(|(pool, sizes, lead, sep, ext)| {
            let mut digits = pool.iter().map(|d| (b'0' + d) as char);
            let mut groups: Vec<String> = sizes
                .iter()
                .map(|&n| digits.by_ref().take(n).collect())
                .collect();
            // Seven to fourteen digits, nine at least with a trunk prefix; three groups
            // shaped like a date (2024-07-11, 11.07.24) or an SSN (123 45 6789) get a fourth,
            // as that is what they would be.
            let min = if lead == 1 || lead == 2 { 9 } else { 7 };
            while groups.concat().len() > 12 {
                groups.pop();
            }
            let len = |g: &Vec<String>| g.iter().map(String::len).collect::<Vec<_>>();
            while groups.concat().len() < min
                || matches!(
                    len(&groups)[..],
                    [4, 2, 2] | [2, 2, 4] | [2, 2, 2] | [3, 2, 4]
                )
            {
                groups.push("555".into());
            }
            let mut out = match lead {
                0 => format!("+{}{}", 1 + pool[0] % 9, sep.replace('.', " ")),
                1 => {
                    groups[0].replace_range(0..2, "05");
                    String::new()
                }
                2 => {
                    let area = groups.remove(0);
                    format!("(0{area}) ")
                }
                _ => {
                    // No trunk prefix: the number starts with a non-zero digit.
                    groups[0].replace_range(0..1, "5");
                    String::new()
                }
            };
            out.push_str(&groups.join(sep));
            if let Some(e) = ext {
                out.push_str(e);
            }
            out
        })
}

/// An amount or a count as text writes it, followed by what it counts.
fn quantity() -> impl Strategy<Value = String> {
    (
        1_000u64..100_000_000_000,
        prop::sample::select(vec![",", " ", "", "\u{a0}"]),
        prop::sample::select(vec![
            "bytes", "requests", "users", "EUR", "km", "items", "%",
        ]),
    )
        .prop_map(|(n, sep, unit)| {
            let plain = n.to_string();
            let mut out = String::new();
            for (i, c) in plain.chars().enumerate() {
                if i > 0 && (plain.len() - i) % 3 == 0 {
                    out.push_str(sep);
                }
                out.push(c);
            }
            format!("{out} {unit}")
        })
}

fn plant(before: &[String], value: &str, after: &[String]) -> (String, usize, usize) {
    let mut text = before.join(" ");
    if !text.is_empty() {
        text.push(' ');
    }
    let start = text.len();
    text.push_str(value);
    let end = text.len();
    for w in after {
        text.push(' ');
        text.push_str(w);
    }
    (text, start, end)
}

fn assert_found(text: &str, start: usize, end: usize, kind: Kind) -> Result<(), TestCaseError> {
    let mut out = Vec::new();
    scanner().scan(text, &RowContext::new(), &mut out);
    prop_assert!(
        out.iter()
            .any(|s| s.kind == kind && s.start == start && s.end == end),
        "{kind:?} {:?} not found in {text:?}: {out:?}",
        &text[start..end]
    );
    Ok(())
}

fn with_luhn(mut payload: Vec<u8>) -> Vec<u8> {
    let c = luhn_check_digit(&payload).expect("digits");
    payload.push(c);
    payload
}

/// A valid card number of a major brand, optionally grouped.
fn card() -> impl Strategy<Value = String> {
    let brands: Vec<(&'static str, usize)> = vec![
        ("4", 16),
        ("4", 13),
        ("53", 16),
        ("2221", 16),
        ("37", 15),
        ("6011", 16),
        ("3530", 16),
        ("36", 14),
        ("62", 17),
        ("50", 12),
    ];
    (
        prop::sample::select(brands),
        prop::collection::vec(0u8..10, 19),
        0..3usize,
    )
        .prop_map(|((prefix, len), rest, style)| {
            let mut d: Vec<u8> = prefix.bytes().collect();
            d.extend(rest.iter().take(len - 1 - d.len()).map(|x| b'0' + x));
            let d = String::from_utf8(with_luhn(d)).expect("ascii");
            let sep = match style {
                0 => return d,
                1 => " ",
                _ => "-",
            };
            let sizes: &[usize] = if d.len() == 15 { &[4, 6, 5] } else { &[4; 5] };
            let mut out = String::new();
            let mut pos = 0;
            for &sz in sizes {
                if pos >= d.len() {
                    break;
                }
                let e = (pos + sz).min(d.len());
                if pos > 0 {
                    out.push_str(sep);
                }
                out.push_str(&d[pos..e]);
                pos = e;
            }
            out
        })
}

/// A valid IBAN with a random BBAN, compact or grouped in fours.
fn iban() -> impl Strategy<Value = String> {
    let countries = vec![
        "DE", "FR", "ES", "IT", "BE", "AT", "PL", "NO", "CH", "GB", "NL",
    ];
    (
        prop::sample::select(countries),
        prop::collection::vec(0u8..10, 30),
        "[A-Z]{4}",
        any::<bool>(),
    )
        .prop_map(|(cc, digits, bank, grouped)| {
            let len = validators::iban_len(&[cc.as_bytes()[0], cc.as_bytes()[1]]).expect("len");
            let mut bban = String::new();
            if cc == "GB" || cc == "NL" {
                bban.push_str(&bank);
            }
            for d in &digits {
                if bban.len() == len - 4 {
                    break;
                }
                bban.push((b'0' + d) as char);
            }
            let mut rem = 0u32;
            for c in format!("{bban}{cc}00").bytes() {
                rem = if c.is_ascii_digit() {
                    (rem * 10 + u32::from(c - b'0')) % 97
                } else {
                    (rem * 100 + u32::from(c - b'A') + 10) % 97
                };
            }
            let compact = format!("{cc}{:02}{bban}", 98 - rem);
            if !grouped {
                return compact;
            }
            compact
                .as_bytes()
                .chunks(4)
                .map(|c| std::str::from_utf8(c).expect("ascii"))
                .collect::<Vec<_>>()
                .join(" ")
        })
}

fn ssn() -> impl Strategy<Value = String> {
    (1u16..900, 1u8..100, 1u16..10000, 0..3usize)
        .prop_filter("valid ssn", |&(a, g, s, _)| validators::ssn_valid(a, g, s))
        .prop_map(|(a, g, s, style)| match style {
            0 => format!("{a:03}-{g:02}-{s:04}"),
            1 => format!("{a:03} {g:02} {s:04}"),
            _ => format!("{a:03}{g:02}{s:04}"),
        })
}

fn email() -> impl Strategy<Value = String> {
    (
        "[a-z0-9]([a-z0-9._+-]{0,10}[a-z0-9])?",
        "[a-z0-9]{1,10}(\\.[a-z0-9]{1,8})?",
        "[a-z]{2,6}",
    )
        .prop_map(|(l, d, t)| format!("{l}@{d}.{t}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn scan_is_total_on_arbitrary_text(text in "\\PC{0,200}", vals in prop::collection::vec("\\PC{0,12}", 0..4)) {
        let mut ctx = RowContext::new();
        for v in &vals {
            ctx.add(v);
        }
        let mut out = Vec::new();
        scanner().scan(&text, &ctx, &mut out);
        check_spans(&text, &out)?;
    }

    #[test]
    fn scan_is_total_on_tricky_text(text in tricky_text(), vals in prop::collection::vec(tricky_text(), 0..4)) {
        let mut ctx = RowContext::new();
        for v in &vals {
            ctx.add(v);
        }
        let mut out = vec![Span { start: 0, end: 1, kind: Kind::Deny }];
        scanner().scan(&text, &ctx, &mut out);
        check_spans(&text, &out)?;
    }

    #[test]
    fn planted_card_is_found(b in words(), v in card(), a in words()) {
        let (text, s, e) = plant(&b, &v, &a);
        assert_found(&text, s, e, Kind::Card)?;
    }

    #[test]
    fn planted_iban_is_found(b in words(), v in iban(), a in words()) {
        let (text, s, e) = plant(&b, &v, &a);
        assert_found(&text, s, e, Kind::Iban)?;
    }

    #[test]
    fn planted_ssn_is_found(b in words(), v in ssn(), a in words()) {
        // Formatting is evidence enough; a bare nine-digit run needs the SSN label.
        let mut b = b;
        if !v.contains(['-', ' ']) {
            b.push("SSN".into());
        }
        let (text, s, e) = plant(&b, &v, &a);
        assert_found(&text, s, e, Kind::Ssn)?;
    }

    #[test]
    fn a_bare_nine_digit_run_without_a_label_is_no_ssn(b in words(), v in ssn(), a in words()) {
        let bare: String = v.chars().filter(char::is_ascii_digit).collect();
        let (text, _, _) = plant(&b, &bare, &a);
        let mut out = Vec::new();
        scanner().scan(&text, &RowContext::new(), &mut out);
        prop_assert!(out.iter().all(|s| s.kind != Kind::Ssn), "{text:?}: {out:?}");
    }

    #[test]
    fn a_phone_after_a_telephone_word_is_found_whole(cue in phone_cue(), v in phone(), a in words()) {
        // Four dotted groups that make an IPv4 address are one.
        prop_assume!(!validators::ipv4_valid(v.split([' ', 'x']).next().unwrap_or_default()));
        let (text, s, e) = plant(&[cue.to_owned()], &v, &a);
        assert_found(&text, s, e, Kind::Phone)?;
    }

    #[test]
    fn an_international_or_trunk_phone_is_found_without_a_word(b in words(), v in phone(), a in words()) {
        prop_assume!(v.starts_with('+') || v.starts_with("(0") || v.starts_with("05"));
        let (text, s, e) = plant(&b, &v, &a);
        // Unmarked, twelve or more Luhn-valid digits in groups of four read as a card: still
        // found whole, under the other label.
        let digits: Vec<u8> = v.bytes().filter(u8::is_ascii_digit).collect();
        let card = !v.starts_with('+') && digits.len() >= 12 && luhn_valid(&digits);
        let mut out = Vec::new();
        scanner().scan(&text, &RowContext::new(), &mut out);
        prop_assert!(
            out.iter().any(|sp| sp.start == s
                && sp.end == e
                && (sp.kind == Kind::Phone || (card && sp.kind == Kind::Card))),
            "{v:?} not found in {text:?}: {out:?}"
        );
    }

    #[test]
    fn a_quantity_is_no_phone_card_or_ssn(b in words(), v in quantity()) {
        let (text, _, _) = plant(&b, &v, &[]);
        let mut out = Vec::new();
        scanner().scan(&text, &RowContext::new(), &mut out);
        prop_assert!(out.is_empty(), "{text:?}: {out:?}");
    }

    #[test]
    fn planted_email_is_found(b in words(), v in email(), a in words()) {
        let (text, s, e) = plant(&b, &v, &a);
        assert_found(&text, s, e, Kind::Email)?;
    }

    #[test]
    fn luhn_check_digit_completes_payload(payload in prop::collection::vec(0u8..10, 1..20), bump in 1u8..10) {
        let mut d: Vec<u8> = payload.iter().map(|x| b'0' + x).collect();
        let c = luhn_check_digit(&d).expect("digits");
        d.push(c);
        prop_assert!(luhn_valid(&d));
        let last = d.len() - 1;
        d[last] = b'0' + (c - b'0' + bump) % 10;
        prop_assert!(!luhn_valid(&d));
    }
}
