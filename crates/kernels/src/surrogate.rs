//! Realistic surrogates: a name becomes another plausible name, an e-mail another address, a
//! phone number another number, an id another id of the same shape.
//!
//! Each surrogate is chosen from HMAC-SHA256 under a key derived from the run key, over the
//! normalized value, so the same value gets the same surrogate in every column, table, run
//! and text with the same key, and an unrelated one under another key. Names map word by word
//! (given names to given names, surnames to surnames, from the US census lists the name
//! detector uses), so "Maria Garcia" and a later "Maria" stay consistent. E-mails keep their
//! shape on a reserved example domain (RFC 2606: example.com, .net, .org); phone numbers keep
//! their leading `+` and country code, their length and separators; ids keep letters, digits
//! and punctuation in place. A surrogate never equals its input.

use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::key::Key;

/// What kind of value a surrogate stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SurrogateKind {
    Name,
    Email,
    Phone,
    Id,
}

impl SurrogateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SurrogateKind::Name => "name",
            SurrogateKind::Email => "email",
            SurrogateKind::Phone => "phone",
            SurrogateKind::Id => "id",
        }
    }

    /// `name`, `email`, `phone` or `id`.
    pub fn parse(s: &str) -> Option<SurrogateKind> {
        match s {
            "name" => Some(SurrogateKind::Name),
            "email" => Some(SurrogateKind::Email),
            "phone" => Some(SurrogateKind::Phone),
            "id" => Some(SurrogateKind::Id),
            _ => None,
        }
    }
}

/// The reserved domains surrogate e-mails use.
pub const EXAMPLE_DOMAINS: [&str; 3] = ["example.com", "example.net", "example.org"];

fn words(text: &'static str) -> Vec<&'static str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

fn given() -> &'static [&'static str] {
    static G: OnceLock<Vec<&'static str>> = OnceLock::new();
    G.get_or_init(|| words(include_str!("../data/names/us_census_1990_given.txt")))
}

fn surnames() -> &'static [&'static str] {
    static S: OnceLock<Vec<&'static str>> = OnceLock::new();
    S.get_or_init(|| words(include_str!("../data/names/us_census_1990_surnames.txt")))
}

/// Whether a lone word reads as a surname rather than a given name.
fn only_surname(word: &str) -> bool {
    use std::collections::HashSet;
    static SETS: OnceLock<(HashSet<&'static str>, HashSet<&'static str>)> = OnceLock::new();
    let (g, s) = SETS.get_or_init(|| {
        (
            given().iter().copied().collect(),
            surnames().iter().copied().collect(),
        )
    });
    s.contains(word) && !g.contains(word)
}

/// Surrogates under one key.
#[derive(Clone)]
pub struct Surrogates {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Surrogates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Surrogates(..)")
    }
}

impl Surrogates {
    /// Surrogates keyed by `key` (through a key derived for this purpose only).
    pub fn new(key: &Key) -> Surrogates {
        let k = key.derive(b"privprep-surrogate-v1");
        Surrogates {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(&k).expect("HMAC accepts any key"),
        }
    }

    /// 32 pseudo-random bytes for (`label`, `value`, `round`).
    fn draw(&self, label: &str, value: &str, round: u32) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        mac.update(&round.to_le_bytes());
        mac.finalize().into_bytes().into()
    }

    fn pick<'a>(&self, label: &str, value: &str, round: u32, list: &'a [&'a str]) -> &'a str {
        let d = self.draw(label, value, round);
        let n = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
        list[(n % list.len() as u64) as usize]
    }

    /// The surrogate of `value` as a `kind`, appended to `out`.
    pub fn surrogate_into(&self, kind: SurrogateKind, value: &str, out: &mut String) {
        let start = out.len();
        for round in 0..16 {
            out.truncate(start);
            match kind {
                SurrogateKind::Name => self.name(value, round, out),
                SurrogateKind::Email => self.email(value, round, out),
                SurrogateKind::Phone => self.phone(value, round, out),
                SurrogateKind::Id => self.id(value, round, out),
            }
            if !out[start..].eq_ignore_ascii_case(value.trim()) {
                return;
            }
        }
    }

    /// The surrogate of `value` as a `kind`.
    pub fn surrogate(&self, kind: SurrogateKind, value: &str) -> String {
        let mut s = String::new();
        self.surrogate_into(kind, value, &mut s);
        s
    }

    fn name(&self, value: &str, round: u32, out: &mut String) {
        let tokens: Vec<&str> = value.split_whitespace().collect();
        let last = tokens.len().saturating_sub(1);
        for (i, t) in tokens.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let letters: String = t.chars().filter(|c| c.is_alphabetic()).collect();
            if letters.chars().count() <= 1 {
                // An initial: another letter, with the same punctuation.
                let d = self.draw("name:initial", &letters.to_lowercase(), round);
                let c = (b'A' + d[0] % 26) as char;
                out.push(if letters.chars().all(char::is_lowercase) {
                    c.to_ascii_lowercase()
                } else {
                    c
                });
                out.extend(t.chars().filter(|c| !c.is_alphabetic()));
                continue;
            }
            let lower = letters.to_lowercase();
            let surname =
                (i == last && tokens.len() > 1) || (tokens.len() == 1 && only_surname(&lower));
            let (label, list) = if surname {
                ("name:surname", surnames())
            } else {
                ("name:given", given())
            };
            let mut word = self.pick(label, &lower, round, list);
            let mut r = round;
            while word == lower {
                r += 16;
                word = self.pick(label, &lower, r, list);
            }
            push_cased(out, word, &letters);
        }
    }

    fn email(&self, value: &str, round: u32, out: &mut String) {
        let v = value.trim().to_lowercase();
        let first = self.pick("email:given", &v, round, given());
        let last = self.pick("email:surname", &v, round, surnames());
        let d = self.draw("email:tail", &v, round);
        let domain = EXAMPLE_DOMAINS[(d[0] % 3) as usize];
        out.push_str(first);
        out.push(['.', '_', '.'][(d[1] % 3) as usize]);
        out.push_str(last);
        if d[2].is_multiple_of(2) {
            out.push_str(&format!("{}", d[3] % 100));
        }
        out.push('@');
        out.push_str(domain);
    }

    fn phone(&self, value: &str, round: u32, out: &mut String) {
        let v = value.trim();
        let digits: String = v.chars().filter(char::is_ascii_digit).collect();
        // The country code stays: the first group after `+` when it is short, else 1 or 2
        // digits by the usual plans (1 and 7 are one digit).
        let keep = if let Some(rest) = v.strip_prefix('+') {
            let group = rest.chars().take_while(char::is_ascii_digit).count();
            if (1..=3).contains(&group) && group < digits.len() {
                group
            } else if digits.starts_with('1') || digits.starts_with('7') {
                1
            } else {
                2
            }
        } else {
            0
        };
        let d = self.draw("phone", &digits, round);
        let mut n = 0usize;
        for c in v.chars() {
            if c.is_ascii_digit() {
                if n < keep {
                    out.push(c);
                } else {
                    let b = d[n % 32] ^ d[(n * 7 + 3) % 32];
                    // The first digit of the national number is never 0 or 1.
                    let digit = if n == keep { 2 + b % 8 } else { b % 10 };
                    out.push((b'0' + digit) as char);
                }
                n += 1;
            } else {
                out.push(c);
            }
        }
    }

    fn id(&self, value: &str, round: u32, out: &mut String) {
        let v = value.trim();
        let d = self.draw("id", v, round);
        for (i, c) in v.chars().enumerate() {
            let b = d[i % 32].wrapping_add((i / 32) as u8 * 31);
            out.push(if c.is_ascii_digit() {
                (b'0' + b % 10) as char
            } else if c.is_ascii_uppercase() {
                (b'A' + b % 26) as char
            } else if c.is_ascii_lowercase() {
                (b'a' + b % 26) as char
            } else {
                c
            });
        }
    }
}

/// The surrogates a run has written, by a fixed hash of their text: the leak gate tells a
/// surrogate it finds in the output (a plausible e-mail, by design) from a value that leaked.
/// Shared by many threads: sharded sets.
pub struct Emitted {
    shards: Vec<std::sync::Mutex<std::collections::HashSet<u64>>>,
}

impl Default for Emitted {
    fn default() -> Self {
        Emitted::new()
    }
}

impl Emitted {
    pub fn new() -> Emitted {
        Emitted {
            shards: (0..16).map(|_| Default::default()).collect(),
        }
    }

    fn key(text: &str) -> u64 {
        crate::risk::class_key(&text.trim().to_lowercase())
    }

    pub fn insert(&self, text: &str) {
        let k = Emitted::key(text);
        let mut s = self.shards[(k >> 60) as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        s.insert(k);
    }

    /// Every surrogate's key (for a gate that runs elsewhere: [`Emitted::insert_key`]).
    pub fn keys(&self) -> Vec<u64> {
        let mut out = Vec::new();
        for s in &self.shards {
            out.extend(s.lock().unwrap_or_else(|p| p.into_inner()).iter().copied());
        }
        out
    }

    /// Remembers a surrogate by the key [`Emitted::keys`] gave.
    pub fn insert_key(&self, k: u64) {
        self.shards[(k >> 60) as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(k);
    }

    pub fn contains(&self, text: &str) -> bool {
        let k = Emitted::key(text);
        self.shards[(k >> 60) as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&k)
    }
}

/// What a text column's `surrogate` action writes with: the run's surrogates, and the set of
/// those written (for the rewriter's later passes and the leak gate).
pub struct SurrogateWriter {
    pub surrogates: Surrogates,
    pub emitted: std::sync::Arc<Emitted>,
}

impl SurrogateWriter {
    /// Appends the surrogate of `value` as a `kind` to `out`, and remembers it.
    pub fn write(&self, kind: SurrogateKind, value: &str, out: &mut String) {
        let start = out.len();
        self.surrogates.surrogate_into(kind, value, out);
        self.emitted.insert(&out[start..]);
    }

    /// Whether `text` is a surrogate this run wrote.
    pub fn is_surrogate(&self, text: &str) -> bool {
        self.emitted.contains(text)
    }
}

/// `word` (lower case) with the letter case of `like`: all upper, capitalized, or lower.
fn push_cased(out: &mut String, word: &str, like: &str) {
    if like.chars().all(|c| !c.is_lowercase()) {
        out.push_str(&word.to_uppercase());
    } else if like.chars().next().is_some_and(char::is_uppercase) {
        let mut cs = word.chars();
        if let Some(f) = cs.next() {
            out.extend(f.to_uppercase());
            out.push_str(cs.as_str());
        }
    } else {
        out.push_str(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(byte: u8) -> Surrogates {
        Surrogates::new(&Key::parse(&hex::encode([byte; 32])).unwrap())
    }

    #[test]
    fn names_map_word_by_word_and_keep_their_case() {
        let a = s(1);
        let full = a.surrogate(SurrogateKind::Name, "Maria Garcia");
        let first = a.surrogate(SurrogateKind::Name, "Maria");
        assert_eq!(full.split(' ').next(), Some(first.as_str()));
        assert_eq!(full.split(' ').count(), 2);
        assert!(full.chars().next().unwrap().is_uppercase());
        let upper = a.surrogate(SurrogateKind::Name, "MARIA GARCIA");
        assert_eq!(upper, full.to_uppercase());
        assert_ne!(full, s(2).surrogate(SurrogateKind::Name, "Maria Garcia"));
    }

    proptest! {
        /// Deterministic per key, never the input, and of the same kind's format.
        #[test]
        fn surrogates_are_deterministic_well_formed_and_never_the_input(
            local in "[a-z]{1,8}(\\.[a-z]{1,6})?",
            domain in "(gmail\\.com|example\\.com|mail\\.de)",
            cc in "(1|44|49|33)",
            national in "[0-9]{9,10}",
            id in "[A-Z]{1,2}-[0-9]{4,7}",
            first in "[A-Z][a-z]{2,8}",
            last in "[A-Z][a-z]{2,10}",
        ) {
            let (a, b) = (s(3), s(4));
            let email = format!("{local}@{domain}");
            let phone = format!("+{cc} {national}");
            let name = format!("{first} {last}");
            for (kind, v) in [
                (SurrogateKind::Email, email.as_str()),
                (SurrogateKind::Phone, phone.as_str()),
                (SurrogateKind::Id, id.as_str()),
                (SurrogateKind::Name, name.as_str()),
            ] {
                let x = a.surrogate(kind, v);
                prop_assert_eq!(&x, &a.surrogate(kind, v));
                prop_assert!(!x.eq_ignore_ascii_case(v), "{} kept {}", kind.as_str(), v);
                if kind != SurrogateKind::Name {
                    prop_assert_ne!(&x, &b.surrogate(kind, v));
                }
            }
            let e = a.surrogate(SurrogateKind::Email, &email);
            let (l, d) = e.split_once('@').unwrap();
            prop_assert!(EXAMPLE_DOMAINS.contains(&d) && !l.is_empty());
            let p = a.surrogate(SurrogateKind::Phone, &phone);
            prop_assert_eq!(p.len(), phone.len());
            let cc_prefix = format!("+{} ", cc);
            prop_assert!(p.starts_with(&cc_prefix));
            let i = a.surrogate(SurrogateKind::Id, &id);
            prop_assert_eq!(i.len(), id.len());
            prop_assert_eq!(i.find('-'), id.find('-'));
            let n = a.surrogate(SurrogateKind::Name, &name);
            prop_assert_eq!(n.split(' ').count(), 2);
        }
    }
}
