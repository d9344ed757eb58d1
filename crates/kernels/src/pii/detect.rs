//! Single-pass PII span detection over free text.
//!
//! Support tickets and similar columns are scanned once per value, so the
//! built-in detectors share one hand-written pass over the bytes instead of
//! running one regular expression per kind: the loop jumps between word
//! starts, digit runs and the few trigger bytes (`@`, `+`, `(`, `:`) and
//! only then runs the expensive structural checks and validators. Shapes
//! that commonly collide with PII (dates, prices, versions, UUIDs, order
//! numbers, ISBNs) are rejected by token-boundary rules and validators
//! rather than by lists of exceptions.
//!
//! Besides the generic detectors, a [`RowContext`] carries the identifying
//! values of the row a text belongs to, so that a customer's own name, email
//! or phone is found even when no generic rule would flag it.
//!
//! Candidates from all sources are collected into the caller's buffer and
//! resolved into sorted, non-overlapping spans; a text without hits costs no
//! allocation.

use super::cues::{cue_after, cue_before, Cue};
use super::person::person_at;
use super::phone::{self, Plans};
use super::validators;
use regex::{Regex, RegexSet};
use std::fmt;

/// What a detected span contains.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An email address.
    Email,
    /// A telephone number valid in a configured region.
    Phone,
    /// A US Social Security number.
    Ssn,
    /// A payment card number (brand prefix, length and Luhn checked).
    Card,
    /// A dotted-quad IPv4 address.
    Ipv4,
    /// An IPv6 address.
    Ipv6,
    /// An IBAN (registered length and mod-97 checked).
    Iban,
    /// A URL carrying credentials or an email in its query.
    Url,
    /// A person's name in running text (dictionaries, titles and cue words; off by default).
    Person,
    /// A part of the row subject's name (contextual match).
    Name,
    /// Another identifier value of the row (contextual match).
    Id,
    /// A configured deny-list term.
    Deny,
    /// A user-defined detector, by index into [`ScannerConfig::custom`].
    Custom(u16),
}

impl Kind {
    /// The kinds with a generic, context-free detector: the head of [`Kind::FIXED`].
    pub const BUILTIN: &'static [Kind] = Kind::FIXED.as_slice().split_at(9).0;

    /// The built-in detectors a scanner runs when none are named: all but [`Kind::Person`],
    /// whose precision depends on the text (see the README).
    pub const DEFAULT: &'static [Kind] = Kind::FIXED.as_slice().split_at(8).0;

    /// Stable lower-case name used in configuration and reports.
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
            Kind::Person => "person",
            Kind::Name => "name",
            Kind::Id => "id",
            Kind::Deny => "deny",
            Kind::Custom(_) => "custom",
        }
    }

    /// Every kind but user-defined ones, in the order per-kind tables use: the built-in
    /// detectors first, then the row-context, id and deny-list kinds.
    pub const FIXED: [Kind; 12] = [
        Kind::Email,
        Kind::Phone,
        Kind::Ssn,
        Kind::Card,
        Kind::Ipv4,
        Kind::Ipv6,
        Kind::Iban,
        Kind::Url,
        Kind::Person,
        Kind::Name,
        Kind::Id,
        Kind::Deny,
    ];

    /// Parses a built-in kind name or `name`, `id`, `deny` (case-insensitive).
    /// Custom kinds are addressed by their detector name elsewhere.
    pub fn parse(s: &str) -> Option<Kind> {
        let s = s.trim();
        Kind::FIXED
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }

    /// Bit of a built-in kind in the scanner's enabled mask.
    fn bit(self) -> u16 {
        Kind::BUILTIN
            .iter()
            .position(|&k| k == self)
            .map_or(0, |i| 1 << i)
    }

    /// Tie-break between equally long overlapping spans: validated
    /// built-ins first, then explicit user rules, then contextual guesses.
    fn rank(self) -> u8 {
        match self {
            Kind::Name | Kind::Id | Kind::Person => 2,
            Kind::Custom(_) | Kind::Deny => 1,
            _ => 0,
        }
    }
}

/// A detected span: byte offsets into the scanned text (on char boundaries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// First byte of the span.
    pub start: usize,
    /// One past the last byte of the span.
    pub end: usize,
    /// What the span contains.
    pub kind: Kind,
}

/// Extra check applied to each match of a custom detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validator {
    /// Accept every match.
    None,
    /// The match's ASCII digits must pass the Luhn checksum.
    Luhn,
    /// The match must be a valid IBAN (ISO 7064 mod 97).
    Mod97,
    /// The match must be a valid US SSN.
    Ssn,
}

/// A user-defined detector: a regular expression plus an optional validator.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomDetector {
    /// Name used in reports and error messages.
    pub name: String,
    /// Regular expression (`regex` crate syntax).
    pub pattern: String,
    /// Check every match must also pass.
    pub validator: Validator,
}

/// Everything that configures a [`Scanner`].
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScannerConfig {
    /// Built-in detectors to run (subset of [`Kind::BUILTIN`]; default [`Kind::DEFAULT`]).
    pub enabled: Vec<Kind>,
    /// Phone numbering-plan regions (ISO codes).
    pub regions: Vec<String>,
    /// User-defined detectors; `Kind::Custom(i)` is `custom[i]`.
    pub custom: Vec<CustomDetector>,
    /// Terms always flagged as [`Kind::Deny`] (case-insensitive, whole words).
    pub deny: Vec<String>,
    /// Values never flagged: a span whose trimmed text equals one of these
    /// (case-insensitively) is dropped.
    pub allow: Vec<String>,
}

impl Default for ScannerConfig {
    fn default() -> Self {
        ScannerConfig {
            enabled: Kind::DEFAULT.to_vec(),
            regions: phone::DEFAULT_REGIONS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            custom: Vec::new(),
            deny: Vec::new(),
            allow: Vec::new(),
        }
    }
}

/// Why a [`Scanner`] could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScannerError {
    /// A custom detector's pattern did not compile.
    Regex {
        /// The detector's configured name.
        name: String,
        /// The compiler's message.
        error: String,
    },
    /// A phone region is unknown; the message lists the supported ones.
    Region(String),
    /// More custom detectors than span kinds can address.
    TooManyCustom(usize),
}

impl fmt::Display for ScannerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScannerError::Regex { name, error } => {
                write!(f, "custom detector '{name}': invalid pattern: {error}")
            }
            ScannerError::Region(msg) => f.write_str(msg),
            ScannerError::TooManyCustom(n) => {
                write!(
                    f,
                    "{n} custom detectors configured, at most 65536 supported"
                )
            }
        }
    }
}

impl std::error::Error for ScannerError {}

/// A compiled detector set. Immutable after construction, so one instance
/// is shared by all worker threads.
#[derive(Debug)]
pub struct Scanner {
    enabled: u16,
    plans: Plans,
    custom: Vec<(Regex, Validator)>,
    custom_set: Option<RegexSet>,
    /// Deny terms, lower-cased char by char.
    deny: Vec<String>,
    deny_first: AsciiSet,
    /// Allow values, trimmed and lower-cased char by char.
    allow: Vec<String>,
}

/// One contextual pattern: a lower-cased slice of [`RowContext::text`].
#[derive(Clone, Copy, Debug)]
struct Pat {
    start: u32,
    end: u32,
    kind: Kind,
}

/// Identifying values of the row a text belongs to (its subject's name,
/// email, phone, ids), searched for inside the text. Reused across rows:
/// no allocation per row once warmed up.
#[derive(Clone, Debug, Default)]
pub struct RowContext {
    /// Lower-cased pattern texts, concatenated.
    text: String,
    pats: Vec<Pat>,
    /// Digits of phone values, concatenated.
    digits: Vec<u8>,
    phones: Vec<(u32, u32)>,
    /// First bytes (ASCII, lower-cased) of the patterns, as a bit set, so
    /// that most word starts are rejected with one lookup.
    first: AsciiSet,
}

/// A set of ASCII bytes; non-ASCII bytes are always considered members so
/// that lookups stay conservative for case mappings across lead bytes.
#[derive(Clone, Copy, Debug, Default)]
struct AsciiSet {
    bits: [u64; 2],
    non_ascii: bool,
}

impl AsciiSet {
    fn insert(&mut self, b: u8) {
        if b < 0x80 {
            self.bits[usize::from(b >> 6)] |= 1 << (b & 63);
        } else {
            self.non_ascii = true;
        }
    }

    /// Whether a word starting with byte `b` may match a member.
    fn may_start(&self, b: u8) -> bool {
        let b = b.to_ascii_lowercase();
        if b >= 0x80 {
            return self.non_ascii;
        }
        self.bits[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }

    fn has_non_ascii(&self) -> bool {
        self.non_ascii
    }
}

/// Words that are part of many surnames but are ordinary words on their own
/// ("de", "van"); matched only together with a neighbouring name part.
const PARTICLES: &[&str] = &[
    "al", "bin", "da", "das", "de", "dei", "del", "della", "der", "di", "do", "dos", "du", "el",
    "la", "le", "van", "von", "den", "ter", "ten", "st", "y", "e", "ibn", "af",
];

/// Phone punctuation tolerated in a row's phone value.
fn is_phone_punct(c: char) -> bool {
    matches!(c, ' ' | '+' | '-' | '(' | ')' | '.' | '/' | '\u{a0}')
}

impl RowContext {
    /// An empty context (no contextual matching).
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets all values, keeping the buffers for the next row.
    pub fn clear(&mut self) {
        self.text.clear();
        self.pats.clear();
        self.digits.clear();
        self.phones.clear();
        self.first = AsciiSet::default();
    }

    /// True when no value has been added since the last clear.
    pub fn is_empty(&self) -> bool {
        self.pats.is_empty() && self.phones.is_empty()
    }

    /// Adds one identifier value of the row; its kind is inferred: a value
    /// containing `@` is an email (matched exactly, case-insensitively); a
    /// value of at least 7 digits and otherwise only phone punctuation is a
    /// phone (matched by digit sequence, allowing one to be a suffix of the
    /// other); a purely alphabetic value is a name (the full value, each run
    /// of consecutive words and each hyphen part of at least 2 characters,
    /// as whole words); anything else is an id (exact, whole word).
    pub fn add(&mut self, value: &str) {
        let v = crate::parse::trim(value);
        if v.is_empty() {
            return;
        }
        if v.contains('@') {
            self.push_pat(v, Kind::Email);
            return;
        }
        let ndigits = v.bytes().filter(u8::is_ascii_digit).count();
        if ndigits >= 7 && v.chars().all(|c| c.is_ascii_digit() || is_phone_punct(c)) {
            let start = self.digits.len() as u32;
            self.digits.extend(v.bytes().filter(u8::is_ascii_digit));
            self.phones.push((start, self.digits.len() as u32));
            return;
        }
        let is_name =
            ndigits == 0 && v.chars().all(is_name_char) && v.chars().any(char::is_alphabetic);
        if !is_name {
            // A one- or two-character id ("7", "A1") would match ordinary text.
            if v.chars().count() >= 3 {
                self.push_pat(v, Kind::Id);
            }
            return;
        }
        // Word ranges of the value, on the stack: names have few words.
        let mut words = [(0usize, 0usize); 8];
        let mut nw = 0;
        let mut too_many = false;
        for (s, w) in split_ws(v) {
            if nw == words.len() {
                too_many = true;
                break;
            }
            words[nw] = (s, s + w.len());
            nw += 1;
        }
        self.push_pat(v, Kind::Name);
        // The full value is already in; runs of consecutive words follow.
        let max_run = if too_many { 1 } else { nw.saturating_sub(1) };
        for len in (1..=max_run).rev() {
            for a in 0..=(nw - len) {
                let (s, e) = (words[a].0, words[a + len - 1].1);
                let part = &v[s..e];
                if len == 1 && !name_part_ok(part) {
                    continue;
                }
                self.push_pat(part, Kind::Name);
            }
        }
        for &(s, e) in &words[..nw] {
            let w = &v[s..e];
            if w.contains('-') {
                for part in w.split('-') {
                    if name_part_ok(part) {
                        self.push_pat(part, Kind::Name);
                    }
                }
            }
        }
    }

    /// Appends a lower-cased pattern unless it is already present.
    fn push_pat(&mut self, value: &str, kind: Kind) {
        let start = self.text.len();
        push_lower(&mut self.text, value);
        let end = self.text.len();
        if start == end {
            return;
        }
        let new = &self.text[start..end];
        let dup = self
            .pats
            .iter()
            .any(|p| &self.text[p.start as usize..p.end as usize] == new);
        if dup {
            self.text.truncate(start);
            return;
        }
        self.first.insert(self.text.as_bytes()[start]);
        self.pats.push(Pat {
            start: start as u32,
            end: end as u32,
            kind,
        });
    }

    fn pat(&self, p: &Pat) -> &str {
        &self.text[p.start as usize..p.end as usize]
    }

    /// Whether a digit sequence from the text is one of the row's phones:
    /// equal, or one a suffix of the other with at least 7 digits.
    fn phone_matches(&self, d: &[u8]) -> bool {
        d.len() >= 7
            && self.phones.iter().any(|&(s, e)| {
                let p = &self.digits[s as usize..e as usize];
                p.ends_with(d) || d.ends_with(p)
            })
    }
}

/// Whitespace-separated words of `s` with their byte offsets.
fn split_ws(s: &str) -> impl Iterator<Item = (usize, &str)> {
    s.split(char::is_whitespace)
        .filter(|w| !w.is_empty())
        .map(move |w| (w.as_ptr() as usize - s.as_ptr() as usize, w))
}

/// Characters a personal name value may consist of.
fn is_name_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphabetic() || matches!(c, ' ' | '-' | '\'' | '.')
    } else {
        c.is_alphabetic() || c.is_whitespace() || c == '’'
    }
}

/// Appends `s` lower-cased char by char, with a fast path for ASCII.
fn push_lower(buf: &mut String, s: &str) {
    if s.is_ascii() {
        let start = buf.len();
        buf.push_str(s);
        buf[start..].make_ascii_lowercase();
        return;
    }
    for c in s.chars() {
        if c.is_ascii() {
            buf.push(c.to_ascii_lowercase());
        } else {
            buf.extend(c.to_lowercase());
        }
    }
}

/// A single name word is matched alone only if it is at least two
/// characters long and not a surname particle.
fn name_part_ok(part: &str) -> bool {
    let mut chars = part.chars();
    if chars.next().is_none() || chars.next().is_none() {
        return false;
    }
    part.len() > 5 || !PARTICLES.iter().any(|p| p.eq_ignore_ascii_case(part))
}

/// Lower-cases char by char so that matching can walk text and pattern in
/// lock step (no whole-string special casing, no offset drift).
fn lower_chars(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_lower(&mut out, s);
    out
}

/// Case-insensitive comparison of `text[i..]` against an already lower-cased
/// `pat`; returns the end offset in `text` of the match.
fn match_ci(text: &str, i: usize, pat: &str) -> Option<usize> {
    let tb = text.as_bytes();
    let pb = pat.as_bytes();
    let (mut ti, mut pi) = (i, 0);
    while pi < pb.len() {
        let t = *tb.get(ti)?;
        if t < 0x80 {
            if t.to_ascii_lowercase() != pb[pi] {
                return None;
            }
            ti += 1;
            pi += 1;
        } else {
            let c = text.get(ti..)?.chars().next()?;
            for lc in c.to_lowercase() {
                let mut buf = [0u8; 4];
                let enc = lc.encode_utf8(&mut buf).as_bytes();
                if !pb[pi..].starts_with(enc) {
                    return None;
                }
                pi += enc.len();
            }
            ti += c.len_utf8();
        }
    }
    Some(ti)
}

/// The longest of `patterns` (case-insensitive, ending at a word end) that starts at word
/// start `i`, as a span of its kind.
fn longest_at<'p>(
    text: &str,
    i: usize,
    patterns: impl Iterator<Item = (&'p str, Kind)>,
) -> Option<Span> {
    let first = text.as_bytes()[i];
    let mut best: Option<Span> = None;
    for (pat, kind) in patterns {
        if quick_reject(first, pat) {
            continue;
        }
        if let Some(end) = match_ci(text, i, pat) {
            if word_end(text, end) && best.is_none_or(|s| end > s.end) {
                best = Some(Span {
                    start: i,
                    end,
                    kind,
                });
            }
        }
    }
    best
}

/// Cheap pre-check: an ASCII first byte that differs from the pattern's
/// (lower-cased) ASCII first byte cannot match.
fn quick_reject(first: u8, pat: &str) -> bool {
    let p0 = pat.as_bytes()[0];
    first < 0x80 && p0 < 0x80 && first.to_ascii_lowercase() != p0
}

/// Case-insensitive equality of a text slice with a lower-cased value.
fn eq_ci(s: &str, lower: &str) -> bool {
    s.chars().flat_map(char::to_lowercase).eq(lower.chars())
}

fn char_before(text: &str, i: usize) -> Option<char> {
    text.get(..i)?.chars().next_back()
}

fn char_at(text: &str, i: usize) -> Option<char> {
    text.get(i..)?.chars().next()
}

/// No alphanumeric character immediately before byte `i`.
fn word_start(text: &str, i: usize) -> bool {
    let b = text.as_bytes();
    match i.checked_sub(1).map(|j| b[j]) {
        None => true,
        Some(p) if p < 0x80 => !p.is_ascii_alphanumeric(),
        Some(_) => !char_before(text, i).is_some_and(char::is_alphanumeric),
    }
}

/// No alphanumeric character at byte `i`.
fn word_end(text: &str, i: usize) -> bool {
    let b = text.as_bytes();
    match b.get(i) {
        None => true,
        Some(&p) if p < 0x80 => !p.is_ascii_alphanumeric(),
        Some(_) => !char_at(text, i).is_some_and(char::is_alphanumeric),
    }
}

/// Punctuation that glues a number to a neighbouring token when it touches
/// alphanumerics on both sides ("#A-12345", "v1.2", "12:30").
fn is_joiner(b: u8) -> bool {
    matches!(b, b'-' | b'.' | b'/' | b':' | b'_' | b',')
}

/// Whether a number may start at byte `i`: it must not continue another
/// token, and must not be a price, order or reference number.
fn number_start_ok(text: &str, i: usize) -> bool {
    if !word_start(text, i) {
        return false;
    }
    let b = text.as_bytes();
    if i == 0 {
        return true;
    }
    let p = b[i - 1];
    if matches!(p, b'#' | b'$' | b'@' | b'_' | b'\\' | b'&' | b'=') {
        return false;
    }
    if is_joiner(p) {
        return word_start(text, i - 1);
    }
    if p >= 0x80 {
        // Currency symbols directly before the amount.
        return !matches!(
            char_before(text, i),
            Some('€' | '£' | '¥' | '₹' | '₩' | '₽' | '№')
        );
    }
    true
}

/// Whether a number may end at byte `i` (exclusive): it must not run on into
/// a longer token. `port_ok` lets an IPv4 address carry a `:port`.
fn number_end_ok(text: &str, i: usize, port_ok: bool) -> bool {
    let b = text.as_bytes();
    let Some(&c) = b.get(i) else { return true };
    if c == b'@' || c == b'%' {
        return false;
    }
    if !word_end(text, i) {
        return false;
    }
    if is_joiner(c) && !(port_ok && c == b':') {
        return word_end(text, i + 1);
    }
    true
}

/// Byte classes of the main loop: bytes that can start nothing are skipped
/// without further checks.
const C_SKIP: u8 = 0;
const C_LETTER: u8 = 1;
const C_DIGIT: u8 = 2;
const C_TRIGGER: u8 = 3;
const C_HIGH: u8 = 4;

static CLASS: [u8; 256] = {
    let mut t = [C_SKIP; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match i as u8 {
            b'a'..=b'z' | b'A'..=b'Z' => C_LETTER,
            b'0'..=b'9' => C_DIGIT,
            b'+' | b'(' | b'@' | b':' => C_TRIGGER,
            0x80..=0xff => C_HIGH,
            _ => C_SKIP,
        };
        i += 1;
    }
    t
};

/// Length of the UTF-8 sequence introduced by lead byte `c` (1 for a stray
/// continuation byte, which valid `str` data never puts here).
fn utf8_len(c: u8) -> usize {
    match c {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xff => 4,
        _ => 1,
    }
}

/// A run of at most four hex digits at `i` followed by `:` — the only way
/// an IPv6 address written from its first group can begin.
fn hex_then_colon(b: &[u8], i: usize) -> bool {
    let mut j = i;
    while j < b.len() && j - i < 5 && b[j].is_ascii_hexdigit() {
        j += 1;
    }
    j - i <= 4 && b.get(j) == Some(&b':')
}

/// Maximum digit groups examined in one numeric phrase.
const MAX_GROUPS: usize = 8;

/// A run of digit groups joined by phone/card style separators.
struct Phrase {
    plus: bool,
    /// The phrase opened with `(` before its first group.
    starts_paren: bool,
    /// Byte ranges of the digit groups.
    groups: [(usize, usize); MAX_GROUPS],
    /// Separator before each group (index 0 unused): one of `b' '`, `b'-'`,
    /// `b'.'`, `b'/'`, or `b'p'` when it involves a parenthesis.
    seps: [u8; MAX_GROUPS],
    n: usize,
    /// Index of the first group inside the (single) parenthesis, if any.
    open_at: Option<usize>,
    /// Index of the group the closing parenthesis follows, if any.
    close_at: Option<usize>,
}

impl Phrase {
    /// Parses from `i` (a `+`, `(` or digit). Returns `None` when no digit
    /// group follows.
    fn parse(b: &[u8], i: usize) -> Option<Phrase> {
        let mut p = Phrase {
            plus: false,
            starts_paren: false,
            groups: [(0, 0); MAX_GROUPS],
            seps: [0; MAX_GROUPS],
            n: 0,
            open_at: None,
            close_at: None,
        };
        let mut j = i;
        match b.get(j) {
            Some(b'+') => {
                p.plus = true;
                j += 1;
            }
            Some(b'(') => {
                p.starts_paren = true;
                p.open_at = Some(0);
                j += 1;
                // "(+358) 40 123 4567": a country code in brackets.
                if b.get(j) == Some(&b'+') {
                    p.plus = true;
                    j += 1;
                }
            }
            _ => {}
        }
        loop {
            let gs = j;
            while j < b.len() && b[j].is_ascii_digit() && j - gs <= 19 {
                j += 1;
            }
            if j == gs {
                break;
            }
            if j - gs > 19 {
                // An absurdly long digit run is no identifier we know.
                return None;
            }
            let g = p.n;
            p.groups[g] = (gs, j);
            p.n += 1;
            if p.n == MAX_GROUPS {
                break;
            }
            // Separator: [')'] [' ' | '-' | '.' | '/'] ['(']
            let mut s = j;
            let mut kind = 0u8;
            let closing = b.get(s) == Some(&b')') && p.open_at.is_some() && p.close_at.is_none();
            if closing {
                kind = b'p';
                s += 1;
            }
            if let Some(&c @ (b' ' | b'-' | b'.' | b'/')) = b.get(s) {
                if kind == 0 {
                    kind = c;
                }
                s += 1;
                // "030 / 1868085", "07/ 116": a slash or dash may have spaces around it.
                if c == b' ' && matches!(b.get(s), Some(b'/' | b'-')) && b.get(s + 1) == Some(&b' ')
                {
                    kind = b[s];
                    s += 2;
                } else if matches!(c, b'/' | b'-') && b.get(s) == Some(&b' ') {
                    s += 1;
                }
            }
            let opening = b.get(s) == Some(&b'(') && p.open_at.is_none() && !closing;
            if opening {
                kind = b'p';
                s += 1;
            }
            if closing {
                p.close_at = Some(g);
            }
            if kind == 0 || !b.get(s).is_some_and(u8::is_ascii_digit) {
                break;
            }
            if opening {
                p.open_at = Some(g + 1);
            }
            p.seps[g + 1] = kind;
            j = s;
        }
        if p.n == 0 {
            return None;
        }
        Some(p)
    }

    fn glen(&self, k: usize) -> usize {
        self.groups[k].1 - self.groups[k].0
    }

    /// Whether separators 1..k are all `sep`.
    fn seps_all(&self, k: usize, sep: u8) -> bool {
        self.seps[1..k].iter().all(|&s| s == sep)
    }

    /// Whether the first `k` groups contain no unbalanced parenthesis.
    fn paren_ok(&self, k: usize) -> bool {
        match self.open_at {
            None => true,
            Some(o) if o >= k => true,
            Some(_) => self.close_at.is_some_and(|c| c < k),
        }
    }
}

impl Scanner {
    /// Compiles a scanner. Fails on an unknown phone region or a custom
    /// pattern that does not compile (naming the detector).
    pub fn new(cfg: &ScannerConfig) -> Result<Scanner, ScannerError> {
        let plans = Plans::new(&cfg.regions).map_err(ScannerError::Region)?;
        if cfg.custom.len() > usize::from(u16::MAX) + 1 {
            return Err(ScannerError::TooManyCustom(cfg.custom.len()));
        }
        let mut custom = Vec::with_capacity(cfg.custom.len());
        for d in &cfg.custom {
            let re = Regex::new(&d.pattern).map_err(|e| ScannerError::Regex {
                name: d.name.clone(),
                error: e.to_string(),
            })?;
            custom.push((re, d.validator));
        }
        let custom_set = if custom.is_empty() {
            None
        } else {
            Some(
                RegexSet::new(cfg.custom.iter().map(|d| &d.pattern)).map_err(|e| {
                    ScannerError::Regex {
                        name: "(combined)".to_string(),
                        error: e.to_string(),
                    }
                })?,
            )
        };
        let enabled = cfg.enabled.iter().fold(0u16, |m, k| m | k.bit());
        let deny: Vec<String> = cfg
            .deny
            .iter()
            .map(|t| lower_chars(t.trim()))
            .filter(|t| !t.is_empty())
            .collect();
        let mut deny_first = AsciiSet::default();
        for t in &deny {
            deny_first.insert(t.as_bytes()[0]);
        }
        let allow = cfg
            .allow
            .iter()
            .map(|t| lower_chars(t.trim()))
            .filter(|t| !t.is_empty())
            .collect();
        Ok(Scanner {
            enabled,
            plans,
            custom,
            custom_set,
            deny,
            deny_first,
            allow,
        })
    }

    fn on(&self, k: Kind) -> bool {
        self.enabled & k.bit() != 0
    }

    /// Clears `out`, then fills it with the PII spans of `text`: sorted by
    /// start, non-overlapping, on char boundaries.
    pub fn scan(&self, text: &str, ctx: &RowContext, out: &mut Vec<Span>) {
        self.candidates(text, ctx, out);
        resolve(out);
    }

    /// [`Scanner::scan`], also telling whether a decision rested on the words around a hit: a
    /// number turned down for what the words before or after it said (or did not say). Only
    /// then can replacing a hit change what the same scan finds next to it. (The person
    /// detector's cues are ordinary words, titles and sentence breaks, which no replacement
    /// removes or adds.)
    pub fn scan_telling(&self, text: &str, ctx: &RowContext, out: &mut Vec<Span>) -> bool {
        let mut worded = false;
        out.clear();
        self.scan_builtin(text, ctx, out, &mut worded);
        self.finish(text, out);
        resolve(out);
        worded
    }

    /// Clears `out`, then fills it with every hit before overlaps are merged: a hit that
    /// [`Scanner::scan`] folds into a longer one of another kind is still listed here (what
    /// a `drop_row` decision must look at).
    pub fn candidates(&self, text: &str, ctx: &RowContext, out: &mut Vec<Span>) {
        out.clear();
        self.scan_builtin(text, ctx, out, &mut false);
        self.finish(text, out);
    }

    /// User-defined detectors and the allow list, after the single pass.
    fn finish(&self, text: &str, out: &mut Vec<Span>) {
        self.scan_custom(text, out);
        if !self.allow.is_empty() {
            out.retain(|s| {
                let t = text.get(s.start..s.end).unwrap_or("").trim();
                !self.allow.iter().any(|a| eq_ci(t, a))
            });
        }
    }

    /// The single pass: built-in detectors, contextual values and deny terms.
    fn scan_builtin(&self, text: &str, ctx: &RowContext, out: &mut Vec<Span>, worded: &mut bool) {
        let b = text.as_bytes();
        let n = b.len();
        let hooks = !ctx.pats.is_empty() || !self.deny.is_empty();
        // Only patterns that begin with a non-ASCII char can match at a
        // non-ASCII word start; without any, those chars need no decoding.
        let hooks_high = ctx.first.has_non_ascii() || self.deny_first.has_non_ascii();
        let persons = self.on(Kind::Person);
        let mut i = 0;
        while i < n {
            let c = b[i];
            match CLASS[usize::from(c)] {
                C_SKIP => {
                    i += 1;
                    continue;
                }
                C_HIGH => {
                    let starts = (hooks_high || persons)
                        && char_at(text, i).is_some_and(char::is_alphanumeric)
                        && word_start(text, i);
                    if starts && hooks_high {
                        self.word_hooks(text, i, ctx, out);
                    }
                    if starts && persons {
                        if let Some(e) = push_person(text, i, out) {
                            i = e;
                            continue;
                        }
                    }
                    i += utf8_len(c);
                    continue;
                }
                C_LETTER | C_DIGIT => {
                    let ws = word_start(text, i);
                    if ws {
                        if hooks && (ctx.first.may_start(c) || self.deny_first.may_start(c)) {
                            self.word_hooks(text, i, ctx, out);
                        }
                        if c.is_ascii_digit() {
                            if number_start_ok(text, i) {
                                i = self.numeric(text, i, ctx, out, worded);
                                continue;
                            }
                        } else if let Some((e, kind)) = self.word_detectors(text, i) {
                            out.push(Span {
                                start: i,
                                end: e,
                                kind,
                            });
                            i = e;
                            continue;
                        } else if persons && c.is_ascii_uppercase() {
                            if let Some(e) = push_person(text, i, out) {
                                i = e;
                                continue;
                            }
                        }
                    }
                    while i < n && b[i].is_ascii_alphanumeric() {
                        i += 1;
                    }
                    continue;
                }
                _ => {}
            }
            match c {
                b'+' | b'('
                    if (b.get(i + 1).is_some_and(u8::is_ascii_digit)
                        || (c == b'(' && plus_digit(b, i + 1)))
                        && word_start(text, i) =>
                {
                    i = self.numeric(text, i, ctx, out, worded);
                    continue;
                }
                b'@' if self.on(Kind::Email) => {
                    if let Some((s, e)) = email_at(b, i) {
                        out.push(Span {
                            start: s,
                            end: e,
                            kind: Kind::Email,
                        });
                        i = e;
                        continue;
                    }
                }
                b':' if b.get(i + 1..i + 3) == Some(b"//") => {
                    if let Some((s, e, flagged)) = url_at(b, i) {
                        if !flagged {
                            // Plain URLs are not PII, and their paths and
                            // ids are not worth scanning.
                            i = e;
                            continue;
                        }
                        if self.on(Kind::Url) {
                            out.push(Span {
                                start: s,
                                end: e,
                                kind: Kind::Url,
                            });
                            i = e;
                            continue;
                        }
                    }
                }
                b':' if b.get(i + 1) == Some(&b':') && self.on(Kind::Ipv6) => {
                    let prev_ok = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b':');
                    if prev_ok {
                        if let Some(e) = ipv6_at(text, i) {
                            out.push(Span {
                                start: i,
                                end: e,
                                kind: Kind::Ipv6,
                            });
                            i = e;
                            continue;
                        }
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }

    /// Built-ins that start with a letter: IPv6 (hex group then `:`) and
    /// IBAN (upper-case country code).
    fn word_detectors(&self, text: &str, i: usize) -> Option<(usize, Kind)> {
        let b = text.as_bytes();
        let c = b[i];
        if c.is_ascii_hexdigit() && self.on(Kind::Ipv6) && hex_then_colon(b, i) {
            if let Some(e) = ipv6_at(text, i) {
                return Some((e, Kind::Ipv6));
            }
        }
        if c.is_ascii_uppercase() && self.on(Kind::Iban) {
            if let Some(e) = iban_at(text, i) {
                return Some((e, Kind::Iban));
            }
        }
        None
    }

    /// Contextual values and deny terms starting at word start `i`; pushes
    /// the longest contextual and the longest deny match.
    fn word_hooks(&self, text: &str, i: usize, ctx: &RowContext, out: &mut Vec<Span>) {
        let first = text.as_bytes()[i];
        if ctx.first.may_start(first) {
            self.ctx_hooks(text, i, ctx, out);
        }
        if !self.deny_first.may_start(first) {
            return;
        }
        out.extend(longest_at(
            text,
            i,
            self.deny.iter().map(|p| (p.as_str(), Kind::Deny)),
        ));
    }

    /// The row's own values starting at word start `i`; pushes the longest.
    fn ctx_hooks(&self, text: &str, i: usize, ctx: &RowContext, out: &mut Vec<Span>) {
        out.extend(longest_at(
            text,
            i,
            ctx.pats.iter().map(|p| (ctx.pat(p), p.kind)),
        ));
    }

    /// Examines the numeric phrase starting at `i` (a digit, `+` or `(`);
    /// pushes at most one span and returns where scanning resumes (> i).
    fn numeric(
        &self,
        text: &str,
        i: usize,
        ctx: &RowContext,
        out: &mut Vec<Span>,
        worded: &mut bool,
    ) -> usize {
        let found = out.len();
        let mut cue = LazyCue::new(text, i);
        let resume = self.numeric_with(text, i, ctx, out, &mut cue);
        if out.len() == found && cue.cue.is_some() {
            *worded = true;
        }
        resume
    }

    fn numeric_with(
        &self,
        text: &str,
        i: usize,
        ctx: &RowContext,
        out: &mut Vec<Span>,
        cue: &mut LazyCue,
    ) -> usize {
        let b = text.as_bytes();
        // Short digit runs followed by ':' may open an IPv6 address.
        if b[i].is_ascii_digit() && self.on(Kind::Ipv6) && hex_then_colon(b, i) {
            if let Some(e) = ipv6_at(text, i) {
                out.push(Span {
                    start: i,
                    end: e,
                    kind: Kind::Ipv6,
                });
                return e;
            }
        }
        let Some(p) = Phrase::parse(b, i) else {
            return i + 1;
        };
        let resume = |p: &Phrase| {
            if p.n >= 2 && matches!(p.seps[1], b' ' | b'p') {
                p.groups[1].0
            } else {
                p.groups[p.n - 1].1
            }
        };
        let plain = !p.plus && !p.starts_paren;
        // Dates (2024-07-11, 11.07.2024, 7/11/2024) are never identifiers; skip them as a
        // unit so their tail cannot be read as a separate number.
        if plain && p.n >= 3 && is_date(&p) {
            return p.groups[2].1;
        }
        let mut digits = [0u8; 24];
        // ISBNs look like grouped card or phone numbers. Only their printed
        // shapes (or an "ISBN" label) are treated as books, because about
        // one 10-digit number in eleven passes the ISBN-10 check by chance;
        // a telephone word before the number outweighs the shape.
        if !p.plus && (p.seps_all(p.n, b'-') || p.seps_all(p.n, b' ')) {
            if let Some(nd) = collect_digits(b, &p, p.n, &mut digits) {
                let d = &digits[..nd];
                let labelled = isbn_label_before(b, i);
                // Printed: dashes, and the check digit alone in the last group.
                let printed = |n: usize| p.n == n && p.seps_all(n, b'-') && p.glen(n - 1) == 1;
                let isbn13 = validators::isbn13_valid(d) && (labelled || p.n == 1 || printed(5));
                let isbn10 = validators::isbn10_valid(d) && (labelled || printed(4));
                if (isbn13 || isbn10)
                    && (labelled || !matches!(cue.get(), Cue::Phone | Cue::Number))
                {
                    return p.groups[p.n - 1].1;
                }
            }
        }
        for k in (1..=p.n).rev() {
            let Some(nd) = collect_digits(b, &p, k, &mut digits) else {
                continue;
            };
            let d = &digits[..nd];
            // An extension after the number makes it a phone whatever else its digits match.
            let extended = extension_end(b, p.groups[k - 1].1).is_some()
                && self.on(Kind::Phone)
                && self.phone_ok(text, &p, k, d, cue);
            let kind = if extended {
                Kind::Phone
            } else if let Some(kind) = self.classify(text, &p, k, d, ctx, cue) {
                kind
            } else {
                continue;
            };
            let span = number_span(text, i, &p, k, kind).or_else(|| {
                // A number that runs on into an extension ("… 9765x12") is a phone even
                // when its digits alone read as something else.
                let phone = kind != Kind::Phone
                    && self.on(Kind::Phone)
                    && self.phone_ok(text, &p, k, d, cue);
                phone.then(|| number_span(text, i, &p, k, Kind::Phone))?
            });
            if let Some(span) = span {
                out.push(span);
                return span.end;
            }
        }
        resume(&p).max(i + 1)
    }

    /// Decides what the first `k` groups of `p` (digits `d`) are, if anything. Shapes and
    /// checksums propose; the cue words before the phrase settle what shapes share.
    fn classify(
        &self,
        text: &str,
        p: &Phrase,
        k: usize,
        d: &[u8],
        ctx: &RowContext,
        cue: &mut LazyCue,
    ) -> Option<Kind> {
        let nd = d.len();
        let has_dot = p.seps[1..k].contains(&b'.');
        let simple_seps = p.seps[1..k].iter().all(|&s| matches!(s, b' ' | b'-'));
        if has_dot {
            if k == 4 && !p.plus && p.seps_all(4, b'.') && self.on(Kind::Ipv4) {
                let s = &text[p.groups[0].0..p.groups[3].1];
                if validators::ipv4_valid(s) {
                    return Some(Kind::Ipv4);
                }
            }
            // Dots separate the groups of a North American 3-3-4 number; elsewhere they
            // make versions, amounts and dates, unless a telephone word or a `+` says so.
            if nd < 7 {
                // Versions, amounts and times; no dotted identifier is this short.
                return None;
            }
            // Dotted national numbers with a trunk prefix ("0477.58.59.18") are phones too.
            let nanp_shape =
                k == 3 && p.seps_all(3, b'.') && p.glen(0) == 3 && p.glen(1) == 3 && p.glen(2) == 4;
            let trunk_shape = d[0] == b'0' && d.get(1) != Some(&b'0') && (9..=13).contains(&nd);
            let bracketed = p.close_at.is_some_and(|c| c < k);
            if !nanp_shape
                && !trunk_shape
                && !bracketed
                && !p.plus
                && !matches!(cue.get(), Cue::Phone | Cue::Number)
            {
                return None;
            }
        }
        if !p.plus && simple_seps && self.on(Kind::Card) && (12..=19).contains(&nd) {
            if let Some(kind) = self.card(p, k, d, cue) {
                return Some(kind);
            }
        }
        if !p.plus && simple_seps {
            let ssn_shape = k == 3 && p.glen(0) == 3 && p.glen(1) == 2 && p.glen(2) == 4;
            let dashed = ssn_shape && p.seps_all(3, b'-');
            let spaced = ssn_shape && p.seps_all(3, b' ');
            if dashed || spaced || (k == 1 && nd == 9) {
                // SSN formatting is evidence; a bare nine-digit run (driver licences,
                // routing numbers, timestamps) needs an SSN word before it.
                let c = cue.get();
                let evidence = match c {
                    Cue::Ssn => true,
                    Cue::None | Cue::Number => dashed || spaced,
                    Cue::Phone => false,
                    Cue::Card | Cue::Other => dashed,
                };
                if evidence && self.on(Kind::Ssn) && ssn_valid_digits(d) {
                    return Some(Kind::Ssn);
                }
                // Unmarked, the 3-2-4 shape is no phone format we know, but with a trunk
                // prefix ("050 12 3456").
                if (dashed || spaced) && c != Cue::Phone && c != Cue::Number && d[0] != b'0' {
                    return ctx_phone(ctx, d);
                }
            }
        }
        if self.on(Kind::Phone) && self.phone_ok(text, p, k, d, cue) {
            return Some(Kind::Phone);
        }
        ctx_phone(ctx, d)
    }

    /// A payment card: a Luhn-valid number of 12–19 digits that a card word precedes, or that
    /// is grouped as cards are printed, or that is written bare with a known brand prefix.
    /// Brand tables only label; a telephone word before a number short enough to be a phone
    /// leaves it to the phone rules.
    fn card(&self, p: &Phrase, k: usize, d: &[u8], cue: &mut LazyCue) -> Option<Kind> {
        if !validators::luhn_valid(d) {
            return None;
        }
        let nd = d.len();
        let c = cue.get();
        if matches!(c, Cue::Phone | Cue::Number | Cue::Ssn) && nd <= 15 {
            return None;
        }
        if c == Cue::Card {
            return Some(Kind::Card);
        }
        let one_sep = p.seps_all(k, b' ') || p.seps_all(k, b'-');
        let fours =
            k >= 3 && (0..k - 1).all(|g| p.glen(g) == 4) && (1..=4).contains(&p.glen(k - 1));
        // Amex and Diners print as 4-6-5 and 4-6-4.
        let wide = k == 3 && p.glen(0) == 4 && p.glen(1) == 6 && (4..=5).contains(&p.glen(2));
        if one_sep && (fours || wide) {
            return Some(Kind::Card);
        }
        // Weaker shapes need a brand's prefix and length, and no word naming another number.
        let known = validators::card_brand(d).is_some() && c != Cue::Other;
        let grouped = (0..k - 1).all(|g| (3..=6).contains(&p.glen(g))) && p.glen(k - 1) <= 6;
        let card = known && ((k > 1 && one_sep && grouped) || k == 1);
        card.then_some(Kind::Card)
    }

    /// Whether the first `k` groups of `p` are a telephone number. Recall first: a `+` or
    /// `00` country code, a telephone word, a trunk prefix, a bracketed area code or a
    /// grouping only phones use is enough; the numbering plans of the configured regions only
    /// admit bare digit runs that nothing else marks.
    fn phone_ok(&self, text: &str, p: &Phrase, k: usize, d: &[u8], cue: &mut LazyCue) -> bool {
        if !p.paren_ok(k) {
            return false;
        }
        let nd = d.len();
        // International: "+CC …", "(+CC) …" or "00CC …". E.164 numbers have at most 15
        // digits; one more allows the "(0)" some write after the country code.
        if p.plus {
            return (7..=16).contains(&nd);
        }
        if !(7..=17).contains(&nd) {
            return false;
        }
        let c = cue.get();
        if d.starts_with(b"00") && nd >= 10 && c != Cue::Other {
            return true;
        }
        if matches!(c, Cue::Other | Cue::Card | Cue::Ssn) || nd > 15 {
            return false;
        }
        if matches!(c, Cue::Phone | Cue::Number) {
            return true;
        }
        // Unmarked, the whole phrase must be the number: a phone shape cut out of a longer
        // run of groups is part of something else.
        if k < p.n {
            return false;
        }
        // Unmarked: a unit after the number makes it a quantity ("8699392672 bytes").
        if cue_after(text, p.groups[k - 1].1) == Cue::Other {
            return false;
        }
        let plan_valid = || nd >= 9 && self.plans.valid(d, false);
        if k == 1 {
            // A bare run with no telephone word: only a valid number of a configured region,
            // long enough to be deliberate.
            return nd >= 10 && plan_valid();
        }
        let first = p.glen(0);
        let bracketed = p.open_at.is_some() && p.close_at.is_some();
        // A leading single digit is a count or a list index, except a trunk or country
        // digit before a full number ("1-800-…", "8 (833) …").
        if first == 1 && !(bracketed || (matches!(d[0], b'0' | b'1' | b'7' | b'8') && nd >= 10)) {
            return false;
        }
        if (1..k).any(|g| p.glen(g) < 2) {
            return false;
        }
        // Groupings only telephone numbers use: a trunk prefix ("030 1868085"), a bracketed
        // area code, a last group of four or more (amounts end in threes), or pairs
        // ("12 34 56 78"). Up to three groups of two and three digits that could be an
        // amount ("807 956 245") need a configured region's plan; more is a list of numbers
        // ("107 98 793 595").
        let trunk = d[0] == b'0' && nd >= 9;
        let pairs = k >= 4 && (0..k).all(|g| p.glen(g) == 2);
        trunk || bracketed || p.glen(k - 1) >= 4 || pairs || (k <= 3 && first > 1 && plan_valid())
    }
    /// Runs the user-defined detectors.
    fn scan_custom(&self, text: &str, out: &mut Vec<Span>) {
        let Some(set) = &self.custom_set else { return };
        if !set.is_match(text) {
            return;
        }
        for (idx, (re, validator)) in self.custom.iter().enumerate() {
            for m in re.find_iter(text) {
                if m.is_empty() || !custom_valid(m.as_str(), *validator) {
                    continue;
                }
                out.push(Span {
                    start: m.start(),
                    end: m.end(),
                    kind: Kind::Custom(idx as u16),
                });
            }
        }
    }
}

/// Pushes the person's name starting at word start `i`, if one does, and returns its end.
fn push_person(text: &str, i: usize, out: &mut Vec<Span>) -> Option<usize> {
    let (start, end) = person_at(text, i)?;
    out.push(Span {
        start,
        end,
        kind: Kind::Person,
    });
    Some(end)
}

/// The span of the first `k` groups of phrase `p` (opened at `i`) read as `kind`, if it ends
/// where a number may end. A phone takes in its `+` or bracket, a closing bracket and an
/// extension; an IPv4 address may carry a `:port` after it.
fn number_span(text: &str, i: usize, p: &Phrase, k: usize, kind: Kind) -> Option<Span> {
    let (mut start, mut end) = (p.groups[0].0, p.groups[k - 1].1);
    if kind == Kind::Phone {
        if p.plus || (p.starts_paren && p.close_at.is_some_and(|c| c < k)) {
            start = i;
        }
        if p.close_at == Some(k - 1) && p.open_at.is_some_and(|o| o < k) {
            end += 1;
        }
        end = extension_end(text.as_bytes(), end).unwrap_or(end);
    }
    number_end_ok(text, end, kind == Kind::Ipv4).then_some(Span { start, end, kind })
}

/// The cue before a phrase, looked up on first use only.
struct LazyCue<'t> {
    text: &'t str,
    at: usize,
    cue: Option<Cue>,
}

impl<'t> LazyCue<'t> {
    fn new(text: &'t str, at: usize) -> Self {
        LazyCue {
            text,
            at,
            cue: None,
        }
    }

    fn get(&mut self) -> Cue {
        *self
            .cue
            .get_or_insert_with(|| cue_before(self.text, self.at))
    }
}

/// A `+` at `i` followed by a digit.
fn plus_digit(b: &[u8], i: usize) -> bool {
    b.get(i) == Some(&b'+') && b.get(i + 1).is_some_and(u8::is_ascii_digit)
}

/// Whether the first three groups of a plain phrase are a date: 2024-07-11, 11.07.2024,
/// 7/11/2024, 2024/7/11 (one separator throughout, and no fourth group of the same).
fn is_date(p: &Phrase) -> bool {
    let (l0, l1, l2) = (p.glen(0), p.glen(1), p.glen(2));
    let s = p.seps[1];
    if !matches!(s, b'-' | b'.' | b'/') || p.seps[2] != s || (p.n > 3 && p.seps[3] == s) {
        return false;
    }
    if s == b'/' {
        let short = |l: usize| (1..=2).contains(&l);
        return (short(l0) && short(l1) && (l2 == 2 || l2 == 4))
            || (l0 == 4 && short(l1) && short(l2));
    }
    l1 == 2 && ((l0 == 4 && l2 == 2) || (l0 <= 2 && (l2 == 4 || l2 == 2)))
}

/// The end of a telephone extension right after a number ending at `end`: "x581", " x 12",
/// " ext. 12", " extension 4410", "#12" with one to six digits.
fn extension_end(b: &[u8], end: usize) -> Option<usize> {
    let mut j = end;
    if b.get(j) == Some(&b' ') {
        j += 1;
    }
    let rest = b.get(j..)?;
    let marker = [&b"extension"[..], b"ext.", b"ext", b"x", b"#"]
        .into_iter()
        .find(|m| rest.len() >= m.len() && rest[..m.len()].eq_ignore_ascii_case(m))?;
    j += marker.len();
    if b.get(j) == Some(&b' ') {
        j += 1;
    }
    let ds = j;
    while j < b.len() && b[j].is_ascii_digit() && j - ds <= 6 {
        j += 1;
    }
    let ok = (1..=6).contains(&(j - ds)) && !b.get(j).is_some_and(u8::is_ascii_alphanumeric);
    ok.then_some(j)
}

/// Contextual phone fallback: the row's own phone, whatever its format.
fn ctx_phone(ctx: &RowContext, d: &[u8]) -> Option<Kind> {
    ctx.phone_matches(d).then_some(Kind::Phone)
}

fn custom_valid(s: &str, v: Validator) -> bool {
    match v {
        Validator::None => true,
        Validator::Mod97 => validators::iban_valid(s),
        Validator::Ssn => validators::ssn_valid_str(s.trim()),
        Validator::Luhn => {
            let mut buf = [0u8; 32];
            let mut n = 0;
            for c in s.bytes().filter(u8::is_ascii_digit) {
                if n == buf.len() {
                    return false;
                }
                buf[n] = c;
                n += 1;
            }
            validators::luhn_valid(&buf[..n])
        }
    }
}

fn ssn_valid_digits(d: &[u8]) -> bool {
    if d.len() != 9 {
        return false;
    }
    let num = |r: &[u8]| r.iter().fold(0u16, |a, &c| a * 10 + u16::from(c - b'0'));
    validators::ssn_valid(num(&d[..3]), num(&d[3..5]) as u8, num(&d[5..]))
}

/// Whether an "ISBN" label (e.g. "ISBN ", "ISBN-10: ") closely precedes `i`.
fn isbn_label_before(b: &[u8], i: usize) -> bool {
    let from = i.saturating_sub(12);
    b[from..i]
        .windows(4)
        .any(|w| w.eq_ignore_ascii_case(b"isbn"))
}

/// Copies the digits of the first `k` groups into `buf`; `None` if they do
/// not fit.
fn collect_digits(b: &[u8], p: &Phrase, k: usize, buf: &mut [u8; 24]) -> Option<usize> {
    let mut n = 0;
    for &(s, e) in &p.groups[..k] {
        let g = &b[s..e];
        buf.get_mut(n..n + g.len())?.copy_from_slice(g);
        n += g.len();
    }
    Some(n)
}

/// An IBAN starting at `i` (two upper-case letters, two digits), compact or in groups of four
/// separated by single spaces. Read first to the country's registered length; failing that
/// (an unregistered country, a length off by a typo), any length from 15 to 34 whose mod-97
/// check passes, since one string in 97 passes it by chance and the shape is rare besides.
fn iban_at(text: &str, i: usize) -> Option<usize> {
    let b = text.as_bytes();
    let head = b.get(i..i + 4)?;
    if !(head[0].is_ascii_uppercase()
        && head[1].is_ascii_uppercase()
        && head[2].is_ascii_digit()
        && head[3].is_ascii_digit())
    {
        return None;
    }
    let grouped = b.get(i + 4) == Some(&b' ');
    let mut buf = [0u8; validators::IBAN_MAX_LEN];
    // Where the IBAN may end, after each character read: (byte offset, characters).
    let mut ends = [(0usize, 0usize); validators::IBAN_MAX_LEN];
    let mut cnt = 0;
    let mut j = i;
    while cnt < validators::IBAN_MAX_LEN {
        let Some(&c) = b.get(j) else { break };
        if c.is_ascii_uppercase() || c.is_ascii_digit() {
            if grouped && cnt > 0 && cnt % 4 == 0 && b[j - 1] != b' ' {
                break;
            }
            buf[cnt] = c;
            ends[cnt] = (j + 1, cnt + 1);
            cnt += 1;
            j += 1;
        } else if grouped && c == b' ' && cnt % 4 == 0 && b[j - 1] != b' ' {
            j += 1;
        } else {
            break;
        }
    }
    let at = |len: usize| {
        let (e, n) = ends[len - 1];
        (word_end(text, e) && validators::iban_checksum_ok(&buf[..n])).then_some(e)
    };
    if let Some(len) = validators::iban_len(&[head[0], head[1]]) {
        if len <= cnt {
            if let Some(e) = at(len) {
                return Some(e);
            }
        }
    }
    (15..=cnt).rev().find_map(at)
}

fn is_local_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// An email address around the `@` at `at`: local part of common address
/// characters, a dotted domain and an alphabetic TLD of two or more letters.
/// Trailing sentence punctuation is not part of the address.
fn email_at(b: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut s = at;
    while s > 0 && is_local_byte(b[s - 1]) {
        s -= 1;
        if at - s > 64 {
            return None;
        }
    }
    while s < at && matches!(b[s], b'.' | b'-' | b'+' | b'%') {
        s += 1;
    }
    if s == at || b[at - 1] == b'.' {
        return None;
    }
    let mut e = at + 1;
    while e < b.len() && (b[e].is_ascii_alphanumeric() || b[e] == b'.' || b[e] == b'-') {
        e += 1;
    }
    while e > at + 1 && matches!(b[e - 1], b'.' | b'-') {
        e -= 1;
    }
    let domain = &b[at + 1..e];
    if domain.len() > 253 || !domain.contains(&b'.') {
        return None;
    }
    let mut last: &[u8] = &[];
    for label in domain.split(|&c| c == b'.') {
        if label.is_empty()
            || label.len() > 63
            || label[0] == b'-'
            || label[label.len() - 1] == b'-'
        {
            return None;
        }
        last = label;
    }
    if last.len() < 2 || !last.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    Some((s, e))
}

/// A URL whose `://` starts at `colon`. Returns its span and whether it
/// carries PII: userinfo credentials or an email in the query string.
fn url_at(b: &[u8], colon: usize) -> Option<(usize, usize, bool)> {
    let mut s = colon;
    while s > 0 && (b[s - 1].is_ascii_alphanumeric() || matches!(b[s - 1], b'+' | b'.' | b'-')) {
        s -= 1;
    }
    while s < colon && !b[s].is_ascii_alphabetic() {
        s += 1;
    }
    if s == colon || colon - s > 32 {
        return None;
    }
    let body = colon + 3;
    let mut e = body;
    while e < b.len() && b[e] > b' ' && !matches!(b[e], b'"' | b'<' | b'>' | b'`' | 0x7f) {
        e += 1;
    }
    while e > body
        && matches!(
            b[e - 1],
            b'.' | b',' | b';' | b':' | b'!' | b'?' | b')' | b']' | b'}' | b'\'' | b'"'
        )
    {
        e -= 1;
    }
    if e == body {
        return None;
    }
    let url = &b[body..e];
    let auth_end = url
        .iter()
        .position(|c| matches!(c, b'/' | b'?' | b'#'))
        .unwrap_or(url.len());
    let auth = &url[..auth_end];
    let creds = auth
        .iter()
        .rposition(|&c| c == b'@')
        .is_some_and(|at| auth[..at].contains(&b':'));
    let query_email = url.iter().position(|&c| c == b'?').is_some_and(|q| {
        let rest = &url[q..];
        let qe = rest.iter().position(|&c| c == b'#').unwrap_or(rest.len());
        let query = &rest[..qe];
        query.contains(&b'@') || query.windows(3).any(|w| w.eq_ignore_ascii_case(b"%40"))
    });
    Some((s, e, creds || query_email))
}

/// An IPv6 address starting at `i` (hex digit or `::`).
fn ipv6_at(text: &str, i: usize) -> Option<usize> {
    let b = text.as_bytes();
    let run = b[i..]
        .iter()
        .take(5)
        .take_while(|c| c.is_ascii_hexdigit())
        .count();
    if run > 4 || b.get(i + run) != Some(&b':') {
        return None;
    }
    let mut e = i;
    while e < b.len() && e - i < 46 && (b[e].is_ascii_hexdigit() || matches!(b[e], b':' | b'.')) {
        e += 1;
    }
    if !word_end(text, e) {
        return None;
    }
    while e > i && b[e - 1] == b'.' {
        e -= 1;
    }
    if e > i + 1 && b[e - 1] == b':' && b[e - 2] != b':' {
        e -= 1;
    }
    let cand = text.get(i..e)?;
    validators::ipv6_valid(cand).then_some(e)
}

/// Turns the collected candidates into sorted, non-overlapping spans. Overlapping candidates
/// merge into one span covering all of them (so no byte of any hit is left in clear), reported
/// as the kind of the longest member; at equal length a validated built-in beats a user rule,
/// which beats a contextual guess.
fn resolve(out: &mut Vec<Span>) {
    if out.len() <= 1 {
        return;
    }
    out.sort_unstable_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    if out.windows(2).all(|w| w[0].end <= w[1].start) {
        return;
    }
    let better = |a: &Span, b: &Span| {
        (a.end - a.start, std::cmp::Reverse(a.kind.rank()))
            > (b.end - b.start, std::cmp::Reverse(b.kind.rank()))
    };
    let mut kept = 0;
    let mut cluster = out[0];
    let mut best = out[0];
    for idx in 1..out.len() {
        let s = out[idx];
        if s.start < cluster.end {
            cluster.end = cluster.end.max(s.end);
            if better(&s, &best) {
                best = s;
            }
        } else {
            out[kept] = Span {
                kind: best.kind,
                ..cluster
            };
            kept += 1;
            cluster = s;
            best = s;
        }
    }
    out[kept] = Span {
        kind: best.kind,
        ..cluster
    };
    kept += 1;
    out.truncate(kept);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner() -> Scanner {
        Scanner::new(&ScannerConfig::default()).unwrap()
    }

    fn found(text: &str) -> Vec<(Kind, String)> {
        found_ctx(text, &[])
    }

    fn found_ctx(text: &str, values: &[&str]) -> Vec<(Kind, String)> {
        let mut ctx = RowContext::new();
        for v in values {
            ctx.add(v);
        }
        let mut out = Vec::new();
        scanner().scan(text, &ctx, &mut out);
        out.iter()
            .map(|s| (s.kind, text[s.start..s.end].to_string()))
            .collect()
    }

    fn one(text: &str, kind: Kind, value: &str) {
        assert_eq!(found(text), vec![(kind, value.to_string())], "in {text:?}");
    }

    fn none(text: &str) {
        assert_eq!(found(text), vec![], "in {text:?}");
    }

    #[test]
    fn scanner_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Scanner>();
        assert_send_sync::<RowContext>();
    }

    #[test]
    fn kind_names_round_trip() {
        for k in Kind::BUILTIN
            .iter()
            .chain(&[Kind::Name, Kind::Id, Kind::Deny])
        {
            assert_eq!(Kind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(Kind::parse("EMAIL"), Some(Kind::Email));
        assert_eq!(Kind::parse("custom"), None);
        assert_eq!(Kind::Custom(3).as_str(), "custom");
    }

    #[test]
    fn emails() {
        one(
            "mail me at john.doe+x@mail.example.com.",
            Kind::Email,
            "john.doe+x@mail.example.com",
        );
        one("(ana_b@example.org)", Kind::Email, "ana_b@example.org");
        none("user@localhost and @handle and a@b.c1");
    }

    #[test]
    fn phones() {
        for p in [
            "+1 559 975 0342",
            "+15599750342",
            "(221) 750-0974",
            "221-750-0974",
            "221.750.0974",
            "+1 (559) 975-0342",
            "+44 20 7123 4567",
            "020 7123 4567",
            "+49 30 1868085",
            "+33 6 12 34 56 78",
            "0033 6 12 34 56 78",
            "00 49 30 1868085",
            "06 12 34 56 78",
            "5599750342",
            "030 1868085",
            "+44 (0)20 7123 4567",
            "1-800-555-0199",
            "1 (800) 555-0199",
            "(5599750342)",
        ] {
            one(&format!("call {p}, thanks"), Kind::Phone, p);
        }
    }

    /// Recall first: phone-shaped numbers that no configured plan validates.
    #[test]
    fn phones_no_plan_validates_are_still_phones() {
        for (text, value) in [
            // `+CC` of regions not configured, and wrong lengths.
            ("call +33 16 2086 6078 today", "+33 16 2086 6078"),
            ("WhatsApp +55650405761", "+55650405761"),
            ("my number: +91 29 7043 5720.", "+91 29 7043 5720"),
            ("ring +7 (914) 177-76-31", "+7 (914) 177-76-31"),
            ("Rufen Sie (+358) 151354162 an", "(+358) 151354162"),
            ("Tel: +43 (0) 2116 14047603", "+43 (0) 2116 14047603"),
            // National formats with dots or slashes.
            ("see 0477.585.918 for details", "0477.585.918"),
            ("Fax 07/ 116 27 48 only", "07/ 116 27 48"),
            ("Telefon 030 / 1868085", "030 / 1868085"),
            ("unter 06-53/783 3820 erreichbar", "06-53/783 3820"),
            // Extensions.
            ("call 206.269.0743x9150 now", "206.269.0743x9150"),
            ("ph (221) 750-0974 ext. 12", "(221) 750-0974 ext. 12"),
            ("call 001-798-687-2049x7723", "001-798-687-2049x7723"),
            // Seven-digit local numbers after a telephone word.
            ("call me at 555-1234 tonight", "555-1234"),
            ("Tel 4960066", "4960066"),
            // A bracketed area code with a leading zero.
            ("phone (0161) 4960066", "(0161) 4960066"),
            ("at (030) 1868085 please", "(030) 1868085"),
            // Invalid NANP area codes in NANP shapes.
            ("callback (110)405-5046", "(110)405-5046"),
            ("call 1-147-263-1067 back", "1-147-263-1067"),
        ] {
            one(text, Kind::Phone, value);
        }
    }

    /// What the phone rules must not take: numbers that words or shapes mark as other things.
    #[test]
    fn numbers_marked_as_something_else_are_no_phones() {
        none("SKU 748-266-169 restocked");
        none("Tracking number 053655893864; parcel weight 36.5 kg.");
        none("Serial number 04041940054 is under warranty");
        none("Driver licence 977 089 746 was scanned");
        none("The file is 8699392672 bytes.");
        none("The population grew to 8 213 864 678 by 1952.");
        none("Scores this round: 107 98 793 595.");
        none("Routing number 021000021 for the transfer");
        none("Event at epoch 319570778 was logged twice.");
        none("on 10/26/1985 and 2024/7/11 at 14:32:05");
        none("expiry 06/27, 3 500 EUR, 12 %");
    }

    /// Cards: Luhn decides; brand tables only label. SSNs: format or a label is evidence.
    #[test]
    fn cards_beyond_the_brand_tables_and_ssns_that_need_evidence() {
        one(
            "charge 2131 250646 69375 please",
            Kind::Card,
            "2131 250646 69375",
        );
        one("card 180006392589197.", Kind::Card, "180006392589197");
        one("paid with 0604 1740 5374", Kind::Card, "0604 1740 5374");
        one("see 0604 1740 5374 ok", Kind::Card, "0604 1740 5374");
        one("Maestro 6304000000000000", Kind::Card, "6304000000000000");
        // Luhn-valid but with a telephone word and short enough to be a phone.
        one("reach me on 6260498078686", Kind::Phone, "6260498078686");
        // A bare nine-digit run is an SSN only with an SSN word.
        none("licence 530103096");
        none("ref: 530103096");
        one("social security no. is 530103096.", Kind::Ssn, "530103096");
        one("Taxpayer id 530103096", Kind::Ssn, "530103096");
        one("filed as 530-10-3096", Kind::Ssn, "530-10-3096");
        // IBANs of a wrong registered length still pass mod 97.
        one(
            "Bankverbindung: GB66ELYM6404426858058",
            Kind::Iban,
            "GB66ELYM6404426858058",
        );
    }

    #[test]
    fn ssn_card_iban_ip() {
        one("SSN 530-10-3096.", Kind::Ssn, "530-10-3096");
        one("SSN 530 10 3096.", Kind::Ssn, "530 10 3096");
        one("SSN 530103096", Kind::Ssn, "530103096");
        none("SSN 666-10-3096");
        one(
            "card 4111 1111 1111 1111 ok",
            Kind::Card,
            "4111 1111 1111 1111",
        );
        one(
            "card 4111-1111-1111-1111",
            Kind::Card,
            "4111-1111-1111-1111",
        );
        one("card 4111111111111111", Kind::Card, "4111111111111111");
        one("amex 3782-822463-10005", Kind::Card, "3782-822463-10005");
        none("card 4111 1111 1111 1112");
        // A card word before a Luhn-valid number makes it a card however it is grouped;
        // without one, mixed separators are no card's print.
        one(
            "card 4111 1111-1111 1111",
            Kind::Card,
            "4111 1111-1111 1111",
        );
        none("see 4111 1111-1111 1111");
        one(
            "IBAN DE89 3704 0044 0532 0130 00.",
            Kind::Iban,
            "DE89 3704 0044 0532 0130 00",
        );
        one(
            "IBAN DE89370400440532013000, ok",
            Kind::Iban,
            "DE89370400440532013000",
        );
        none("IBAN DE89370400440532013001");
        none("IBAN DE8937040044053201300099");
        one("from 192.168.1.20; ok", Kind::Ipv4, "192.168.1.20");
        one("from 10.0.0.1:8080", Kind::Ipv4, "10.0.0.1");
        one(
            "addr 2001:db8::8a2e:370:7334.",
            Kind::Ipv6,
            "2001:db8::8a2e:370:7334",
        );
        one(
            "addr fe80::1ff:fe23:4567:890a here",
            Kind::Ipv6,
            "fe80::1ff:fe23:4567:890a",
        );
    }

    #[test]
    fn not_pii() {
        none("order #A-12345 and order 1234567 and #1234567890");
        none("at 2024-07-11 23:37:36, 2024-07-11T23:37:36Z, 03/05/2024, 5 March, 11.07.2024");
        none("update to v2.14.3 or 1.2.3.4-beta or v1.2.3.4 or 1.2.3.4.5");
        none("it costs $1,299.00 or 1.299,00 € or €49.99 or £3.99");
        none("ISBN 978-0-36-732084-3 and ISBN 0-306-40615-2 and 9780306406157");
        none("error 550e8400-e29b-41d4-a716-446655440000 and 3f9a0123456789012345ab");
        none("ids T295700275 and S5380589 and x5599750342");
        none("see https://example.com/help?topic=billing and http://x.org/a/5599750342");
        none("mac 00:1a:2b:3c:4d:5e and :: and ::1 and 12:30:45");
    }

    #[test]
    fn urls() {
        one(
            "see https://bob:hunter2@example.com/x now",
            Kind::Url,
            "https://bob:hunter2@example.com/x",
        );
        one(
            "see https://example.com/r?u=bob%40example.com.",
            Kind::Url,
            "https://example.com/r?u=bob%40example.com",
        );
    }

    #[test]
    fn context() {
        let vals = [
            "Siobhán de Jong-Ní",
            "siobhan@example.org",
            "(559) 975-0342",
            "S5380589",
        ];
        let got = found_ctx(
            "SIOBHÁN here, Jong / de Jong-Ní, call +1 559 975 0342 or 975-0342, ref S5380589, \
             mail SIOBHAN@example.org. de la Cruz; Siobhánx",
            &vals,
        );
        let want = [
            (Kind::Name, "SIOBHÁN"),
            (Kind::Name, "Jong"),
            (Kind::Name, "de Jong-Ní"),
            (Kind::Phone, "+1 559 975 0342"),
            (Kind::Phone, "975-0342"),
            (Kind::Id, "S5380589"),
            (Kind::Email, "SIOBHAN@example.org"),
        ];
        let want: Vec<_> = want.iter().map(|(k, s)| (*k, s.to_string())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn deny_allow_and_custom() {
        let cfg = ScannerConfig {
            deny: vec!["Project Falcon".into()],
            allow: vec!["support@example.com".into()],
            custom: vec![CustomDetector {
                name: "employee".into(),
                pattern: r"\bEMP-\d{6}\b".into(),
                validator: Validator::None,
            }],
            ..ScannerConfig::default()
        };
        let sc = Scanner::new(&cfg).unwrap();
        let text = "project falcon: write to Support@Example.com or ann@example.com, EMP-123456";
        let mut out = Vec::new();
        sc.scan(text, &RowContext::new(), &mut out);
        let got: Vec<_> = out
            .iter()
            .map(|s| (s.kind, &text[s.start..s.end]))
            .collect();
        assert_eq!(
            got,
            [
                (Kind::Deny, "project falcon"),
                (Kind::Email, "ann@example.com"),
                (Kind::Custom(0), "EMP-123456")
            ]
        );
    }

    #[test]
    fn config_errors() {
        let cfg = ScannerConfig {
            custom: vec![CustomDetector {
                name: "broken".into(),
                pattern: "(".into(),
                validator: Validator::None,
            }],
            ..ScannerConfig::default()
        };
        let e = Scanner::new(&cfg).unwrap_err().to_string();
        assert!(e.contains("broken"), "{e}");
        let cfg = ScannerConfig {
            regions: vec!["US".into(), "XX".into()],
            ..ScannerConfig::default()
        };
        let e = Scanner::new(&cfg).unwrap_err().to_string();
        assert!(e.contains("XX") && e.contains("US"), "{e}");
    }

    #[test]
    fn disabled_kinds_are_skipped() {
        let cfg = ScannerConfig {
            enabled: vec![Kind::Email],
            ..ScannerConfig::default()
        };
        let sc = Scanner::new(&cfg).unwrap();
        let mut out = Vec::new();
        sc.scan(
            "a@b.com 221-750-0974 530-10-3096",
            &RowContext::new(),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, Kind::Email);
    }

    #[test]
    fn candidates_keep_a_hit_that_scan_merges_into_a_longer_one() {
        let cfg = ScannerConfig {
            custom: vec![CustomDetector {
                name: "case_note".into(),
                pattern: r"case \d{3}-\d{2}-\d{4} open".into(),
                validator: Validator::None,
            }],
            ..ScannerConfig::default()
        };
        let sc = Scanner::new(&cfg).unwrap();
        let (ctx, mut out) = (RowContext::new(), Vec::new());
        let text = "see case 536-22-1408 open now";
        sc.candidates(text, &ctx, &mut out);
        assert!(out.iter().any(|s| s.kind == Kind::Ssn));
        assert!(out.iter().any(|s| s.kind == Kind::Custom(0)));
        sc.scan(text, &ctx, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].kind, &text[out[0].start..out[0].end]),
            (Kind::Custom(0), "case 536-22-1408 open")
        );
    }

    #[test]
    fn overlaps_merge_into_the_longest_kind() {
        let span = |start, end, kind| Span { start, end, kind };
        let mut v = vec![
            span(0, 4, Kind::Name),
            span(2, 10, Kind::Email),
            span(10, 12, Kind::Id),
            span(10, 12, Kind::Phone),
            span(20, 25, Kind::Deny),
            span(22, 24, Kind::Ssn),
        ];
        resolve(&mut v);
        // No byte of any candidate is left out; each merged span takes its best member's kind.
        assert_eq!(
            v,
            [
                span(0, 10, Kind::Email),
                span(10, 12, Kind::Phone),
                span(20, 25, Kind::Deny)
            ]
        );
    }
}
