//! Keyed hashes of identifier values, for the output leak gate.
//!
//! Before a run commits, the leak gate scans every string value it wrote for two things: hits
//! of every detector, and the exact identifier values of the input (names, e-mails, phone
//! numbers, ids of every row read, kept or dropped). Those values are held only as 64-bit keyed
//! hashes of their normalized words, under a key that lives in memory for one run, so the set
//! cannot be reversed or carried away. Counts come out, never values. This module is that
//! hashing, the set, and the check of a batch of values; reading the outputs back is the
//! engine's part.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use rayon::prelude::*;

use crate::pii::detect::{RowContext, Scanner, Span};
use crate::pii::redact::slot;

/// Longest run of words a remembered value may have (longer values are cut to their first
/// words, which still identify them).
const MAX_WORDS: usize = 12;

/// Values shorter than this (normalized) are not remembered: they would match by chance.
const MIN_VALUE_BYTES: usize = 5;

/// The keyed hash of values and words. Cloning shares the key, so engine threads can hash
/// values that one [`IdentifierSet`] later looks up.
#[derive(Clone)]
pub struct ValueHasher {
    /// Two random 64-bit keys, drawn per run.
    seed: [u64; 2],
}

impl Default for ValueHasher {
    fn default() -> Self {
        ValueHasher::new()
    }
}

impl ValueHasher {
    /// A hasher with a fresh key that lives in this process only.
    pub fn new() -> ValueHasher {
        use std::hash::Hasher;
        let draw = |salt: u64| {
            let mut h = RandomState::new().build_hasher();
            h.write_u64(salt);
            h.finish()
        };
        ValueHasher {
            seed: [draw(1), draw(2)],
        }
    }

    /// The key a value is remembered under: the combined hash of its first words, with the
    /// number of words in the low four bits. `None` for values too short to be telling.
    pub fn value_key(&self, value: &str) -> Option<u64> {
        let mut h = None;
        let (mut bytes, mut words) = (0, 0);
        for_each_word(value, |w| {
            if words < MAX_WORDS {
                bytes += w.len() + 1;
                words += 1;
                h = Some(combine(h, self.word_hash(w)));
            }
        });
        let h = h?;
        (bytes > MIN_VALUE_BYTES).then(|| key(h, words))
    }

    /// Keyed 64-bit hash of a word's lowercase UTF-8 bytes, eight bytes at a time through
    /// a strong mixer (a keyed multiply-xorshift hash, many times faster than SipHash on
    /// short words; collisions between the few million values of a run stay negligible).
    fn word_hash(&self, word: &str) -> u64 {
        let mut h = self.seed[0] ^ (word.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut chunk = [0u8; 8];
        let mut n = 0;
        let mut absorb = |b: u8, h: &mut u64| {
            chunk[n] = b;
            n += 1;
            if n == 8 {
                *h = mix(*h ^ u64::from_le_bytes(chunk)).wrapping_add(self.seed[1]);
                n = 0;
            }
        };
        if word.is_ascii() {
            for b in word.bytes() {
                absorb(b.to_ascii_lowercase(), &mut h);
            }
        } else {
            for c in word.chars().flat_map(char::to_lowercase) {
                for b in c.encode_utf8(&mut [0u8; 4]).bytes() {
                    absorb(b, &mut h);
                }
            }
        }
        if n > 0 {
            chunk[n..].fill(0);
            h = mix(h ^ u64::from_le_bytes(chunk) ^ ((n as u64) << 59));
        }
        mix(h ^ self.seed[1])
    }
}

/// The 64-bit finalizer of MurmurHash3: every input bit affects every output bit.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn key(hash: u64, words: usize) -> u64 {
    (hash & !0xF) | words as u64
}

/// Keys are already keyed hashes: the set uses them as they are, rotated so the word count
/// in the low bits does not decide the bucket.
#[derive(Default, Clone, Copy)]
struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0.rotate_right(4)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Distinct identifier keys gathered while rows stream by: each key is kept once, so memory
/// follows the number of distinct values, not of rows (a 10M-row run has 40M keys of which
/// under 8M are distinct). [`IdentifierSet::from_distinct`] builds the gate's set from it.
#[derive(Default)]
pub struct DistinctKeys(HashSet<u64, std::hash::BuildHasherDefault<PassThrough>>);

impl DistinctKeys {
    pub fn new() -> DistinctKeys {
        DistinctKeys::default()
    }

    /// Adds every key of a batch.
    pub fn extend(&mut self, keys: impl IntoIterator<Item = u64>) {
        self.0.extend(keys);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Word and bit of `key` in a filter of `words` 64-bit words (a power of two).
fn filter_bit(words: usize, key: u64) -> (usize, u64) {
    let bit = key.rotate_right(4) as usize & (words * 64 - 1);
    (bit / 64, 1u64 << (bit % 64))
}

/// Keyed hashes of identifier values, by their normalized words.
pub struct IdentifierSet {
    hasher: ValueHasher,
    keys: HashSet<u64, std::hash::BuildHasherDefault<PassThrough>>,
    /// A bit per slot, set for every key: small enough to stay in cache, so most lookups of
    /// words that are no identifier end here instead of in the set.
    filter: Vec<u64>,
    /// Most words in any remembered value: the longest run `count_in` must try.
    max_words: usize,
}

impl Default for IdentifierSet {
    fn default() -> Self {
        IdentifierSet::new()
    }
}

impl IdentifierSet {
    /// An empty set with a fresh in-memory key.
    pub fn new() -> IdentifierSet {
        IdentifierSet::with_hasher(ValueHasher::new())
    }

    /// An empty set whose keys come from `hasher`.
    pub fn with_hasher(hasher: ValueHasher) -> IdentifierSet {
        IdentifierSet {
            hasher,
            keys: HashSet::default(),
            filter: vec![0; 1],
            max_words: 0,
        }
    }

    /// The set of keys gathered in `keys` (from `hasher`): the table is taken as it is and
    /// only the filter is built.
    pub fn from_distinct(hasher: ValueHasher, keys: DistinctKeys) -> IdentifierSet {
        let keys = keys.0;
        let words = (keys.len() * 16 / 64).next_power_of_two().max(1);
        let mut filter = vec![0u64; words];
        let mut max_words = 0;
        for &k in &keys {
            let (w, m) = filter_bit(words, k);
            filter[w] |= m;
            max_words = max_words.max((k & 0xF) as usize);
        }
        IdentifierSet {
            hasher,
            keys,
            filter,
            max_words,
        }
    }

    /// A set of the keys (from `hasher`), built in one go.
    pub fn from_keys(hasher: ValueHasher, keys: Vec<u64>) -> IdentifierSet {
        let mut distinct = DistinctKeys::new();
        distinct.extend(keys);
        IdentifierSet::from_distinct(hasher, distinct)
    }

    fn filter_bit(&self, key: u64) -> (usize, u64) {
        filter_bit(self.filter.len(), key)
    }

    fn may_contain(&self, key: u64) -> bool {
        let (w, m) = self.filter_bit(key);
        self.filter[w] & m != 0 && self.keys.contains(&key)
    }

    /// The hasher values must be keyed with before [`IdentifierSet::insert_key`].
    pub fn hasher(&self) -> &ValueHasher {
        &self.hasher
    }

    /// Remembers one value (ignored when too short to be telling).
    pub fn insert(&mut self, value: &str) {
        if let Some(k) = self.hasher.value_key(value) {
            self.insert_key(k);
        }
    }

    /// Remembers a value by its key from [`ValueHasher::value_key`] of this set's hasher.
    pub fn insert_key(&mut self, key: u64) {
        if self.keys.len() + 1 > self.filter.len() * 4 {
            // Keep about 16 bits per key: rebuild the filter twice as large.
            self.filter = vec![0; self.filter.len() * 2];
            let keys: Vec<u64> = self.keys.iter().copied().collect();
            for k in keys {
                let (w, m) = self.filter_bit(k);
                self.filter[w] |= m;
            }
        }
        let (w, m) = self.filter_bit(key);
        self.filter[w] |= m;
        self.keys.insert(key);
        self.max_words = self.max_words.max((key & 0xF) as usize);
    }

    /// Number of distinct values remembered.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Number of identifier values found in `text`: whole runs of words that equal a
    /// remembered value. `words` is scratch space.
    pub fn count_in(&self, text: &str, words: &mut Vec<u64>) -> u64 {
        if self.keys.is_empty() {
            return 0;
        }
        words.clear();
        for_each_word(text, |w| words.push(self.hasher.word_hash(w)));
        let mut hits = 0;
        let mut i = 0;
        while i < words.len() {
            let mut h = None;
            let mut matched = 0;
            for (k, w) in words[i..].iter().take(self.max_words).enumerate() {
                let h2 = combine(h, *w);
                h = Some(h2);
                if self.may_contain(key(h2, k + 1)) {
                    matched = k + 1;
                }
            }
            if matched > 0 {
                hits += 1;
                i += matched;
            } else {
                i += 1;
            }
        }
        hits
    }
}

fn combine(acc: Option<u64>, word: u64) -> u64 {
    match acc {
        None => word,
        Some(a) => (a.rotate_left(23) ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    }
}

/// Calls `f` on each word: a run of letters, digits and `@ . _ + -`, without trailing `.`/`-`
/// (sentence ends) — so `Kumar,` and `Kumar` and `(221) 750-0974` read the same everywhere.
fn for_each_word(text: &str, mut f: impl FnMut(&str)) {
    if text.is_ascii() {
        // Same rule on bytes, without decoding.
        let b = text.as_bytes();
        let is_word =
            |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'@' | b'.' | b'_' | b'+' | b'-');
        let mut i = 0;
        while i < b.len() {
            while i < b.len() && !is_word(b[i]) {
                i += 1;
            }
            let s = i;
            while i < b.len() && is_word(b[i]) {
                i += 1;
            }
            if i > s {
                emit_word(&text[s..i], &mut f);
            }
        }
        return;
    }
    let is_word = |c: char| c.is_alphanumeric() || matches!(c, '@' | '.' | '_' | '+' | '-');
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (is_word(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                emit_word(&text[s..i], &mut f);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        emit_word(&text[s..], &mut f);
    }
}

fn emit_word(word: &str, f: &mut impl FnMut(&str)) {
    let w = word.trim_matches(|c| c == '.' || c == '-');
    if !w.is_empty() {
        f(w);
    }
}

/// What the gate found in a batch of values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GateCounts {
    /// Non-null values scanned.
    pub scanned: u64,
    /// Detector hits by slot (see [`crate::pii::redact::slot`]).
    pub hits: Vec<u64>,
    /// Identifier values of the input found in the values.
    pub identifier_values: u64,
}

/// Scans a batch of values (nulls skipped) with every detector of `scanner` and for the
/// values remembered in `ids`, counting detector hits in `slots` per-kind slots.
pub fn check_values(
    scanner: &Scanner,
    ids: &IdentifierSet,
    slots: usize,
    values: &[Option<&str>],
) -> GateCounts {
    // Columns of categories or generalized values repeat a few values over and over:
    // judge each distinct value once and weigh its result by how often it occurs.
    let head: HashSet<&str> = values.iter().take(1024).flatten().copied().collect();
    if values.len() >= 4096 && head.len() * 16 <= values.len().min(1024) {
        let mut counts: std::collections::HashMap<&str, u64> = Default::default();
        for v in values.iter().flatten() {
            *counts.entry(v).or_default() += 1;
        }
        let distinct: Vec<(&str, u64)> = counts.into_iter().collect();
        return judge(scanner, ids, slots, &distinct);
    }
    let ones: Vec<(&str, u64)> = values.iter().flatten().map(|v| (*v, 1)).collect();
    judge(scanner, ids, slots, &ones)
}

/// [`check_values`] over `(value, occurrences)` pairs, in parallel chunks.
fn judge(
    scanner: &Scanner,
    ids: &IdentifierSet,
    slots: usize,
    values: &[(&str, u64)],
) -> GateCounts {
    let empty = || GateCounts {
        hits: vec![0; slots],
        ..GateCounts::default()
    };
    values
        .par_chunks(2048)
        .map(|chunk| {
            let ctx = RowContext::new();
            let mut spans: Vec<Span> = Vec::new();
            let mut words = Vec::new();
            let mut c = empty();
            for (v, n) in chunk {
                c.scanned += n;
                scanner.scan(v, &ctx, &mut spans);
                for s in &spans {
                    if let Some(h) = c.hits.get_mut(slot(s.kind)) {
                        *h += n;
                    }
                }
                c.identifier_values += n * ids.count_in(v, &mut words);
            }
            c
        })
        .reduce(empty, |mut a, b| {
            a.scanned += b.scanned;
            for (x, y) in a.hits.iter_mut().zip(b.hits) {
                *x += y;
            }
            a.identifier_values += b.identifier_values;
            a
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The set built from streamed distinct keys finds exactly what the one built from every
    /// key does.
    #[test]
    fn a_set_from_distinct_keys_equals_one_from_all_keys() {
        let hasher = ValueHasher::new();
        let values = [
            "Ada Lovelace",
            "ada@example.com",
            "Ada Lovelace",
            "+44 20 7946 0958",
        ];
        let keys: Vec<u64> = values.iter().filter_map(|v| hasher.value_key(v)).collect();
        let mut distinct = DistinctKeys::new();
        distinct.extend(keys.iter().copied());
        distinct.extend(keys.iter().copied());
        assert_eq!(distinct.len(), 3);
        let a = IdentifierSet::from_keys(hasher.clone(), keys);
        let b = IdentifierSet::from_distinct(hasher, distinct);
        assert_eq!(a.len(), b.len());
        for text in [
            "call Ada Lovelace today",
            "mail ada@example.com",
            "nobody here",
            "Lovelace",
        ] {
            let mut words = Vec::new();
            let n = a.count_in(text, &mut words);
            assert_eq!(n, b.count_in(text, &mut words), "{text}");
        }
    }

    #[test]
    fn identifier_values_are_found_as_whole_word_runs_only() {
        let mut set = IdentifierSet::new();
        set.insert("Ava Kumar");
        set.insert("(221) 750-0974");
        set.insert("S42");
        set.insert("Flat 3, 12 Long Acre Road, London WC2E 9LH");
        let mut words = Vec::new();
        assert_eq!(
            set.count_in(
                "sent to flat 3 12 long acre road london wc2e 9lh!",
                &mut words
            ),
            1
        );
        assert_eq!(set.count_in("Thanks, ava KUMAR.", &mut words), 1);
        assert_eq!(set.count_in("call 221 750-0974 now", &mut words), 1);
        assert_eq!(set.count_in("Ava Kumarsen wrote", &mut words), 0);
        assert_eq!(set.count_in("Ava and Kumar", &mut words), 0);
        // Too short to be remembered.
        assert_eq!(set.count_in("S42", &mut words), 0);
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn repeated_values_are_counted_as_often_as_they_occur() {
        let mut ids = IdentifierSet::new();
        ids.insert("ava.kumar@example.com");
        let scanner = Scanner::new(&crate::pii::detect::ScannerConfig::default()).unwrap();
        // A low-cardinality column (judged by distinct value) and a high-cardinality one.
        let mut low: Vec<Option<&str>> = Vec::new();
        for i in 0..10_000 {
            low.push(Some(if i % 1000 == 0 {
                "ava.kumar@example.com"
            } else {
                "app"
            }));
        }
        low.push(None);
        let owned: Vec<String> = (0..10_000).map(|i| format!("ticket {i}")).collect();
        let mut high: Vec<Option<&str>> = owned.iter().map(|s| Some(s.as_str())).collect();
        high[5] = Some("ava.kumar@example.com");
        for (values, emails) in [(low, 10), (high, 1)] {
            let c = check_values(&scanner, &ids, 11, &values);
            assert_eq!(c.scanned, 10_000);
            assert_eq!(c.hits.len(), 11);
            assert_eq!(c.hits[0], emails);
            assert_eq!(c.identifier_values, emails);
        }
    }

    #[test]
    fn word_rules_agree_on_ascii_and_unicode_text() {
        let collect = |t: &str| {
            let mut v = Vec::new();
            for_each_word(t, |w| v.push(w.to_string()));
            v
        };
        assert_eq!(
            collect("Hi, ava.kumar@x.io - call (221) 750-0974."),
            ["Hi", "ava.kumar@x.io", "call", "221", "750-0974"]
        );
        assert_eq!(
            collect("Hi, ava.kumar@x.io - call (221) 750-0974. é"),
            ["Hi", "ava.kumar@x.io", "call", "221", "750-0974", "é"]
        );
    }

    #[test]
    fn a_set_built_from_keys_finds_the_same_values() {
        let hasher = ValueHasher::new();
        let values: Vec<String> = (0..5000)
            .map(|i| format!("person{i}@example.com"))
            .collect();
        let mut keys: Vec<u64> = values.iter().filter_map(|v| hasher.value_key(v)).collect();
        keys.extend(keys.clone());
        let set = IdentifierSet::from_keys(hasher.clone(), keys);
        assert_eq!(set.len(), 5000);
        let mut incremental = IdentifierSet::with_hasher(hasher);
        for v in &values {
            incremental.insert(v);
        }
        let mut words = Vec::new();
        for v in values.iter().step_by(97) {
            let text = format!("mail {v} now");
            assert_eq!(set.count_in(&text, &mut words), 1);
            assert_eq!(incremental.count_in(&text, &mut words), 1);
        }
        assert_eq!(set.count_in("mail person5000@example.com", &mut words), 0);
    }

    #[test]
    fn hashing_ignores_case_in_ascii_and_beyond() {
        let h = ValueHasher::new();
        assert_eq!(h.word_hash("KUMAR"), h.word_hash("kumar"));
        assert_eq!(h.word_hash("GONÇALO"), h.word_hash("gonçalo"));
        assert_ne!(h.word_hash("gonçalo"), h.word_hash("goncalo"));
        let long = "A".repeat(100);
        assert_eq!(h.word_hash(&long), h.word_hash(&long.to_lowercase()));
    }

    #[test]
    fn keys_hashed_elsewhere_with_the_same_hasher_are_found() {
        let mut set = IdentifierSet::new();
        let hasher = set.hasher().clone();
        let k = std::thread::spawn(move || hasher.value_key("someone@example.com"))
            .join()
            .unwrap();
        set.insert_key(k.expect("long enough"));
        assert_eq!(
            set.count_in("from someone@example.com.", &mut Vec::new()),
            1
        );
        // Another key: nothing matches.
        let mut other = IdentifierSet::new();
        other.insert_key(ValueHasher::new().value_key("someone@example.com").unwrap());
        assert_eq!(
            other.count_in("from someone@example.com.", &mut Vec::new()),
            0
        );
    }
}
