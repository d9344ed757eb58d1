//! Keyed hashes of identifier values, for the output leak gate.
//!
//! Before a run commits, the leak gate scans every string value it wrote for two things: hits
//! of every detector, and the exact identifier values of the input (names, e-mails, phone
//! numbers, ids of every row read, kept or dropped). Those values are held only as 64-bit keyed
//! hashes of their normalized words, under a key that lives in memory for one run, so the set
//! cannot be reversed or carried away. Counts come out, never values. This module is that
//! hashing, the set, and the check of a batch of values; reading the outputs back is the
//! engine's part.

use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::pii::detect::{RowContext, Scanner, Span};
use crate::pii::redact::slot;

/// Longest run of words a remembered value may have (longer values are cut to their first
/// words, which still identify them).
const MAX_WORDS: usize = 12;

/// Values shorter than this (normalized) are not remembered: they would match by chance.
const MIN_VALUE_BYTES: usize = 5;

/// Bytes a word needs to be a remembered value on its own (a value's bytes count each word
/// and one separator, and must exceed [`MIN_VALUE_BYTES`]).
const LONG_WORD: usize = MIN_VALUE_BYTES;

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

    /// A hasher with the given key, for engines whose workers must hash alike (Spark's
    /// executors, each handed the driver's key for one run).
    pub fn from_seed(seed: [u64; 2]) -> ValueHasher {
        ValueHasher { seed }
    }

    /// The key a value is remembered under: the combined hash of its first words, with the
    /// number of words in the low four bits. `None` for values too short to be telling.
    pub fn value_key(&self, value: &str) -> Option<u64> {
        self.value_keys(value).map(|(k, _)| k)
    }

    /// The value's key ([`ValueHasher::value_key`]) and, for a value of more than one word,
    /// the hash of its first word, from which [`IdentifierSet::count_in`] tries the longer
    /// runs of words.
    pub fn value_keys(&self, value: &str) -> Option<(u64, Option<u64>)> {
        if value.is_ascii() {
            return self.ascii_value_keys(value.as_bytes());
        }
        let mut keys = ValueKeys::default();
        for_each_word(value, |w| keys.add(w.len(), || self.word_hash(w)));
        keys.finish()
    }

    /// [`ValueHasher::value_keys`] of UTF-8 bytes (`None` for bytes that are not UTF-8), for
    /// values read straight from a file: ASCII, most of them, is hashed without decoding.
    pub fn value_keys_utf8(&self, value: &[u8]) -> Option<(u64, Option<u64>)> {
        if value.is_ascii() {
            return self.ascii_value_keys(value);
        }
        std::str::from_utf8(value)
            .ok()
            .and_then(|v| self.value_keys(v))
    }

    fn ascii_value_keys(&self, value: &[u8]) -> Option<(u64, Option<u64>)> {
        let mut keys = ValueKeys::default();
        ascii_words(value, |s, e| {
            let w = &value[s..e];
            keys.add(w.len(), || self.ascii_word_hash(w));
        });
        keys.finish()
    }

    /// Keyed 64-bit hash of a word's lowercase UTF-8 bytes, eight bytes at a time through a
    /// folded multiply (a keyed multiply-fold hash, many times faster than SipHash on short
    /// words; collisions between the few million values of a run stay negligible). Its lowest
    /// bit says whether the word is long enough to be a value on its own (see [`LONG_WORD`]);
    /// keys do not keep that bit.
    fn word_hash(&self, word: &str) -> u64 {
        let long = u64::from(word.len() >= LONG_WORD);
        (self.word_mix(word) & !1) | long
    }

    /// The hash of each word of `text`, pushed onto `out`.
    fn word_hashes(&self, text: &str, out: &mut Vec<u64>) {
        if text.is_ascii() {
            let b = text.as_bytes();
            ascii_words(b, |s, e| out.push(self.ascii_word_hash(&b[s..e])));
        } else {
            for_each_word(text, |w| out.push(self.word_hash(w)));
        }
    }

    /// [`ValueHasher::word_hash`] of an ASCII word.
    #[inline]
    fn ascii_word_hash(&self, word: &[u8]) -> u64 {
        let long = u64::from(word.len() >= LONG_WORD);
        (self.ascii_mix(word) & !1) | long
    }

    /// ASCII bytes lowercased eight at a time: the hash of the lowercase word.
    #[inline]
    fn ascii_mix(&self, word: &[u8]) -> u64 {
        self.bytes_mix(word, ascii_lower8)
    }

    fn word_mix(&self, word: &str) -> u64 {
        if word.is_ascii() {
            return self.ascii_mix(word.as_bytes());
        }
        let mut lower = String::with_capacity(word.len() + 8);
        lower.extend(word.chars().flat_map(char::to_lowercase));
        self.bytes_mix(lower.as_bytes(), |x| x)
    }

    /// The hash of `bytes` (its length, then eight bytes at a time, the last zero-padded),
    /// each eight passed through `lower` first.
    #[inline]
    fn bytes_mix(&self, bytes: &[u8], lower: impl Fn(u64) -> u64) -> u64 {
        let [s0, s1] = self.seed;
        let mut h = s0 ^ (bytes.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut eight = [0u8; 8];
            eight.copy_from_slice(c);
            h = fold(
                h ^ lower(u64::from_le_bytes(eight)),
                s1 ^ 0x243f_6a88_85a3_08d3,
            );
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            h = fold(h ^ lower(tail8(rest)), s1 ^ 0x1319_8a2e_0370_7344);
        }
        fold(h ^ s1, 0xa409_3822_299f_31d0)
    }
}

/// A value's key as its words come: their combined hash, count and bytes, and the first
/// word's hash.
#[derive(Default)]
struct ValueKeys {
    hash: Option<u64>,
    first: u64,
    bytes: usize,
    words: usize,
}

impl ValueKeys {
    /// One more word, of `len` bytes; `hash` is called only for the first [`MAX_WORDS`].
    #[inline]
    fn add(&mut self, len: usize, hash: impl FnOnce() -> u64) {
        if self.words < MAX_WORDS {
            let wh = hash();
            if self.words == 0 {
                self.first = wh;
            }
            self.bytes += len + 1;
            self.words += 1;
            self.hash = Some(combine(self.hash, wh));
        }
    }

    fn finish(self) -> Option<(u64, Option<u64>)> {
        let h = self.hash?;
        (self.bytes > MIN_VALUE_BYTES)
            .then(|| (key(h, self.words), (self.words > 1).then_some(self.first)))
    }
}

/// One to seven bytes as the little-endian `u64` of their zero-padded eight, read with two
/// or three overlapping loads (copying them into a padded buffer first stalls the load that
/// reads it back).
#[inline]
fn tail8(rest: &[u8]) -> u64 {
    let n = rest.len();
    debug_assert!((1..8).contains(&n));
    if n >= 4 {
        let lo = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let hi = u32::from_le_bytes([rest[n - 4], rest[n - 3], rest[n - 2], rest[n - 1]]);
        // The bytes both loads read are the same bytes: or-ing them keeps them.
        u64::from(lo) | (u64::from(hi) << ((n - 4) * 8))
    } else {
        u64::from(rest[0])
            | (u64::from(rest[n / 2]) << (n / 2 * 8))
            | (u64::from(rest[n - 1]) << ((n - 1) * 8))
    }
}

/// The folded 64 × 64 → 128-bit product: one multiplication mixes every bit of `a` into
/// the middle bits, and folding the halves spreads them over all 64.
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Eight ASCII bytes with `A`–`Z` lowercased, all at once (every byte below 0x80, so no
/// sum carries into the next byte).
fn ascii_lower8(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let at_least_a = x.wrapping_add(ONES * (0x80 - u64::from(b'A')));
    let above_z = x.wrapping_add(ONES * (0x80 - u64::from(b'Z') - 1));
    let upper = at_least_a & !above_z & (ONES * 0x80);
    x | (upper >> 2)
}

/// The 64-bit finalizer of MurmurHash3: every input bit affects every output bit (test data).
#[cfg(test)]
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

/// One shard of keys: sorted and distinct, plus keys added since, not yet sorted in. Sorting
/// batches and merging them in costs a few nanoseconds a key, where inserting each into a hash
/// table that outgrew the cache costs a miss (the table of a 10M-row run does).
#[derive(Default)]
struct KeyRun {
    sorted: Vec<u64>,
    pending: Vec<u64>,
}

/// Keys gathered before a shard's pending keys are sorted in, at least.
const PENDING: usize = 1 << 14;

impl KeyRun {
    /// Pending keys are sorted in once they number at least half the sorted ones: each merge
    /// walks the whole sorted run, so merges that grow with it keep the walks to a few per key
    /// over the whole gathering, where a fixed batch makes them grow with the run's size.
    fn add(&mut self, keys: &[u64]) {
        self.pending.extend_from_slice(keys);
        if self.pending.len() >= PENDING.max(self.sorted.len() / 2) {
            self.settle();
        }
    }

    /// Sorts the pending keys in, in place: the keys not already held are merged in from the
    /// back, into room the vector keeps (it grows by a quarter at a time, so a large run is
    /// not copied into a fresh allocation at every batch).
    fn settle(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.pending.sort_unstable();
        self.pending.dedup();
        self.merge_pending();
    }

    /// Takes in `keys`, sorted and distinct, without sorting them again.
    fn merge_sorted(&mut self, keys: &[u64]) {
        self.settle();
        self.pending.extend_from_slice(keys);
        self.merge_pending();
    }

    /// Merges the pending keys, sorted and distinct, into the sorted ones.
    fn merge_pending(&mut self) {
        // Keep only the keys not held yet (a walk of both, reading only).
        let old = &self.sorted;
        let mut i = 0;
        self.pending.retain(|&k| {
            while i < old.len() && old[i] < k {
                i += 1;
            }
            !(i < old.len() && old[i] == k)
        });
        let (m, n) = (self.sorted.len(), self.pending.len());
        if self.sorted.capacity() < m + n {
            // Grow by a quarter: little room left unused, and few moves of the whole run.
            self.sorted.reserve_exact(n.max(m / 4));
        }
        self.sorted.resize(m + n, 0);
        let (mut a, mut b, mut out) = (m, n, m + n);
        while b > 0 {
            out -= 1;
            if a > 0 && self.sorted[a - 1] > self.pending[b - 1] {
                a -= 1;
                self.sorted[out] = self.sorted[a];
            } else {
                b -= 1;
                self.sorted[out] = self.pending[b];
            }
        }
        self.pending.clear();
    }

    fn contains(&self, key: u64) -> bool {
        self.sorted.binary_search(&key).is_ok()
    }
}

/// Key sets are split by the top bits of the key, so threads that add keys rarely wait for
/// each other, and a set never has to grow all at once.
const SHARDS: usize = 64;

fn shard(key: u64) -> usize {
    (key >> 58) as usize
}

/// One bit per hash: a filter that answers "surely not" for most misses, small enough to stay
/// in cache. A hash picks its bit with the bits above its lowest `skip` ones, which carry no
/// hash (a key's word count, a word's length flag).
struct Bits {
    words: Vec<u64>,
    skip: u32,
}

/// Low bits of a key that hold its word count.
const KEY_SKIP: u32 = 4;

/// Low bit of a word's hash that says whether the word is long.
const WORD_SKIP: u32 = 1;

impl Bits {
    /// About `bits` bits (a power of two, at least 2^16).
    fn new(bits: usize, skip: u32) -> Bits {
        let words = (bits / 64).next_power_of_two().max(1 << 10);
        Bits {
            words: vec![0; words],
            skip,
        }
    }

    /// Two bits of one 64-bit word: one memory access, as with one bit, but about a quarter
    /// of the false "maybe"s at 16 bits a hash (each of which costs a search of the keys).
    fn locate(&self, hash: u64) -> (usize, u64) {
        let h = hash >> self.skip;
        let word = (h >> 12) as usize & (self.words.len() - 1);
        (word, (1u64 << (h & 63)) | (1u64 << ((h >> 6) & 63)))
    }

    fn set(&mut self, hash: u64) {
        let (w, m) = self.locate(hash);
        self.words[w] |= m;
    }

    fn get(&self, hash: u64) -> bool {
        let (w, m) = self.locate(hash);
        self.words[w] & m == m
    }

    /// Asks the CPU to bring `hash`'s word into cache: the lookups of many words are then
    /// waited for together instead of one after another (a large run's filter is larger than
    /// the cache, and its lookups are nearly all misses).
    #[inline]
    fn prefetch(&self, hash: u64) {
        #[cfg(target_arch = "x86_64")]
        {
            let (w, _) = self.locate(hash);
            let p = self.words[w..].as_ptr();
            // SAFETY: a prefetch is only a hint and never faults; `p` points into `words`.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = hash;
    }
}

/// Distinct identifier values gathered while rows stream by, from many threads at once:
/// each value's key is kept once, so memory follows the number of distinct values, not of
/// rows (a 10M-row run reads 40M identifier values of which under 8M are distinct). Keys are
/// split by their top bits over shards, so threads rarely wait for each other.
/// [`IdentifierSet::from_distinct`] turns it into the gate's set without copying keys.
pub struct DistinctKeys {
    /// Per shard: the values' keys, and the first words of the values of several words
    /// (names, phone numbers: few distinct ones).
    shards: Vec<Mutex<(KeyRun, KeyRun)>>,
}

impl Default for DistinctKeys {
    fn default() -> Self {
        DistinctKeys::new()
    }
}

impl DistinctKeys {
    pub fn new() -> DistinctKeys {
        DistinctKeys {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Default::default()))
                .collect(),
        }
    }

    /// Remembers every value of a batch (values too short to be telling are skipped), keyed
    /// by `hasher`; each shard is locked once per batch.
    pub fn insert_all<'a>(&self, hasher: &ValueHasher, values: impl IntoIterator<Item = &'a str>) {
        let mut batch = KeyBatch::new();
        for v in values {
            if let Some(k) = hasher.value_keys(v) {
                batch.push(k);
            }
        }
        self.insert_batch(&mut batch);
    }

    /// Remembers values already keyed ([`ValueHasher::value_keys`]), as gathered elsewhere.
    pub fn insert_keys(&self, keys: impl IntoIterator<Item = (u64, Option<u64>)>) {
        let mut batch = KeyBatch::new();
        for k in keys {
            batch.push(k);
        }
        self.insert_batch(&mut batch);
    }

    /// Remembers the keys of `batch` and empties it (its buffers are kept for the next).
    pub fn insert_batch(&self, batch: &mut KeyBatch) {
        for (i, (keys, firsts)) in batch.by_shard.iter_mut().enumerate() {
            if keys.is_empty() && firsts.is_empty() {
                continue;
            }
            // A poisoned shard only means another thread panicked mid-insert; the keys it
            // holds are still keys.
            let mut runs = self.shards[i].lock().unwrap_or_else(|p| p.into_inner());
            runs.0.add(keys);
            runs.1.add(firsts);
            keys.clear();
            firsts.clear();
        }
        batch.len = 0;
    }

    /// Takes in every key of `other` (a set gathered apart, e.g. by another part of a scan).
    pub fn absorb(&self, other: &DistinctKeys) {
        // Shard by shard, in parallel: two sorted runs merged.
        self.shards
            .par_iter()
            .zip(&other.shards)
            .for_each(|(mine, theirs)| {
                let mut theirs = theirs.lock().unwrap_or_else(|p| p.into_inner());
                theirs.0.settle();
                theirs.1.settle();
                let mut mine = mine.lock().unwrap_or_else(|p| p.into_inner());
                mine.0.merge_sorted(&theirs.0.sorted);
                mine.1.merge_sorted(&theirs.1.sorted);
            });
    }

    /// Number of distinct values remembered.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let mut runs = s.lock().unwrap_or_else(|p| p.into_inner());
                runs.0.settle();
                runs.0.sorted.len()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every shard's keys and first words, settled.
    fn settled(&self) -> Vec<(Vec<u64>, Vec<u64>)> {
        self.shards
            .iter()
            .map(|s| {
                let mut runs = s.lock().unwrap_or_else(|p| p.into_inner());
                runs.0.settle();
                runs.1.settle();
                (runs.0.sorted.clone(), runs.1.sorted.clone())
            })
            .collect()
    }
}

/// Two sets are equal when they hold the same keys and first words (however they were
/// gathered).
impl PartialEq for DistinctKeys {
    fn eq(&self, other: &DistinctKeys) -> bool {
        std::ptr::eq(self, other) || self.settled() == other.settled()
    }
}

impl std::fmt::Debug for DistinctKeys {
    /// Only the size: keys are not for logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DistinctKeys({} keys)", self.len())
    }
}

/// Keys on their way into a [`DistinctKeys`], already split by shard, in buffers that are
/// reused from one batch to the next. First words repeat a lot (a few hundred first names and
/// area codes): one seen lately is not added again.
pub struct KeyBatch {
    by_shard: Vec<(Vec<u64>, Vec<u64>)>,
    len: usize,
    /// The first word last added in each of a few slots.
    recent_firsts: Vec<Option<u64>>,
}

impl Default for KeyBatch {
    fn default() -> Self {
        KeyBatch::new()
    }
}

impl KeyBatch {
    pub fn new() -> KeyBatch {
        KeyBatch {
            by_shard: vec![Default::default(); SHARDS],
            len: 0,
            recent_firsts: vec![None; 1024],
        }
    }

    /// One value's keys ([`ValueHasher::value_keys`]).
    #[inline]
    pub fn push(&mut self, (k, first): (u64, Option<u64>)) {
        self.by_shard[shard(k)].0.push(k);
        // A first word is kept in its own shard, so it is held once however many values
        // begin with it.
        if let Some(f) = first {
            let slot = &mut self.recent_firsts[(f >> 20) as usize & 1023];
            if *slot != Some(f) {
                *slot = Some(f);
                self.by_shard[shard(f)].1.push(f);
            }
        }
        self.len += 1;
    }

    /// Values pushed since the batch was last inserted.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Keyed hashes of identifier values, by their normalized words.
pub struct IdentifierSet {
    hasher: ValueHasher,
    keys: Vec<KeyRun>,
    len: usize,
    /// A bit per key, so most lookups of runs that are no identifier end here.
    filter: Bits,
    /// A bit per first word of a remembered value of several words: runs of more than one
    /// word are only tried from the words that may start one. Built once from the first words
    /// gathered with the keys (which are then let go); values inserted later set their bits.
    starts: Bits,
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
        IdentifierSet::from_distinct(hasher, DistinctKeys::new())
    }

    /// The set of the values gathered in `keys` (keyed by `hasher`): the keys are taken as
    /// they are and only the filters are built.
    pub fn from_distinct(hasher: ValueHasher, keys: DistinctKeys) -> IdentifierSet {
        let (keys, firsts): (Vec<KeyRun>, Vec<KeyRun>) = keys
            .shards
            .into_iter()
            .map(|s| {
                let (mut keys, mut firsts) = s.into_inner().unwrap_or_else(|p| p.into_inner());
                keys.settle();
                firsts.settle();
                (keys, firsts)
            })
            .unzip();
        let distinct_firsts: usize = firsts.iter().map(|s| s.sorted.len()).sum();
        let mut starts = Bits::new(distinct_firsts.saturating_mul(16), WORD_SKIP);
        for &w in firsts.iter().flat_map(|s| &s.sorted) {
            starts.set(w);
        }
        let mut set = IdentifierSet {
            hasher,
            len: keys.iter().map(|s| s.sorted.len()).sum(),
            keys,
            filter: Bits::new(0, KEY_SKIP),
            starts,
            max_words: 0,
        };
        set.build_filter();
        set
    }

    /// The key filter, about 16 bits per key, built from the keys.
    fn build_filter(&mut self) {
        self.filter = Bits::new(self.len.saturating_mul(16), KEY_SKIP);
        self.max_words = 0;
        for &k in self.keys.iter().flat_map(|s| &s.sorted) {
            self.filter.set(k);
            self.max_words = self.max_words.max((k & 0xF) as usize);
        }
    }

    fn may_contain(&self, key: u64) -> bool {
        self.filter.get(key) && self.keys[shard(key)].contains(key)
    }

    /// The hasher values are keyed with.
    pub fn hasher(&self) -> &ValueHasher {
        &self.hasher
    }

    /// Remembers one value (ignored when too short to be telling).
    pub fn insert(&mut self, value: &str) {
        let Some((k, first)) = self.hasher.value_keys(value) else {
            return;
        };
        if let Some(first) = first {
            self.starts.set(first);
        }
        let run = &mut self.keys[shard(k)];
        if let Err(at) = run.sorted.binary_search(&k) {
            run.sorted.insert(at, k);
            self.len += 1;
            if self.len * 4 > self.filter.words.len() * 64 {
                // Keep about 16 bits per key: rebuild the key filter twice as large.
                self.build_filter();
            } else {
                self.filter.set(k);
                self.max_words = self.max_words.max((k & 0xF) as usize);
            }
        }
    }

    /// Number of distinct values remembered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of identifier values found in `text`: whole runs of words that equal a
    /// remembered value. `words` is scratch space.
    pub fn count_in(&self, text: &str, words: &mut Vec<u64>) -> u64 {
        if self.max_words == 0 {
            return 0;
        }
        words.clear();
        self.hasher.word_hashes(text, words);
        self.prefetch(words);
        self.count_hashed(words)
    }

    /// [`IdentifierSet::count_in`] over many `(value, occurrences)` pairs, each value's count
    /// weighed by its occurrences. The words of several values are hashed first and their
    /// lookups fetched together, which is what a lookup in a large set waits for.
    pub fn count_in_all(&self, values: &[(&str, u64)], scratch: &mut IdScratch) -> u64 {
        if self.max_words == 0 {
            return 0;
        }
        let mut hits = 0;
        for group in values.chunks(GROUP) {
            scratch.words.clear();
            scratch.ends.clear();
            for (v, _) in group {
                self.hasher.word_hashes(v, &mut scratch.words);
                scratch.ends.push(scratch.words.len());
            }
            self.prefetch(&scratch.words);
            let mut start = 0;
            for ((_, n), &end) in group.iter().zip(&scratch.ends) {
                hits += n * self.count_hashed(&scratch.words[start..end]);
                start = end;
            }
        }
        hits
    }

    /// Fetches the filter words the lookups of `words` will read first.
    fn prefetch(&self, words: &[u64]) {
        for &w in words {
            self.starts.prefetch(w);
            if w & 1 == 1 {
                self.filter.prefetch(key(w, 1));
            }
        }
    }

    /// The identifier values among hashed words: whole runs that equal a remembered value.
    fn count_hashed(&self, words: &[u64]) -> u64 {
        let mut hits = 0;
        let mut i = 0;
        while i < words.len() {
            // A one-word value (an e-mail, an id) is one lookup, for a word long enough to be
            // one; runs of more words are only tried from a word that starts a remembered
            // value of several.
            let longest = if self.starts.get(words[i]) {
                self.max_words
            } else {
                (words[i] & 1) as usize
            };
            let mut h = None;
            let mut matched = 0;
            for (k, w) in words[i..].iter().take(longest).enumerate() {
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

/// Values whose words [`IdentifierSet::count_in_all`] hashes and fetches together.
const GROUP: usize = 16;

/// Reused buffers of [`IdentifierSet::count_in_all`].
#[derive(Default)]
pub struct IdScratch {
    words: Vec<u64>,
    ends: Vec<usize>,
}

fn combine(acc: Option<u64>, word: u64) -> u64 {
    match acc {
        None => word,
        Some(a) => (a.rotate_left(23) ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    }
}

/// Bytes that make up words in ASCII text: letters, digits and `@ . _ + -`.
const WORD_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric() || matches!(c, b'@' | b'.' | b'_' | b'+' | b'-');
        i += 1;
    }
    t
};

/// Calls `f` on each word: a run of letters, digits and `@ . _ + -`, without leading or
/// trailing `.`/`-` (sentence ends) — so `Kumar,` and `Kumar` and `(221) 750-0974` read the
/// same everywhere.
fn for_each_word(text: &str, mut f: impl FnMut(&str)) {
    if text.is_ascii() {
        // Same rule on bytes, without decoding.
        ascii_words(text.as_bytes(), |s, e| f(&text[s..e]));
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

/// [`for_each_word`]'s rule on ASCII bytes: calls `f` with each word's `[start, end)`.
#[inline]
fn ascii_words(b: &[u8], mut f: impl FnMut(usize, usize)) {
    let mut i = 0;
    while i < b.len() {
        if !WORD_BYTE[usize::from(b[i])] {
            i += 1;
            continue;
        }
        let mut s = i;
        while i < b.len() && WORD_BYTE[usize::from(b[i])] {
            i += 1;
        }
        let mut e = i;
        while s < e && matches!(b[s], b'.' | b'-') {
            s += 1;
        }
        while e > s && matches!(b[e - 1], b'.' | b'-') {
            e -= 1;
        }
        if e > s {
            f(s, e);
        }
    }
}

fn emit_word(word: &str, f: &mut impl FnMut(&str)) {
    // `.` and `-` are one byte in UTF-8 and never part of another character.
    let w = word.trim_matches(['.', '-']);
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
    check(Some(scanner), Some(ids), slots, values, None)
}

/// The detector half of [`check_values`]: hits of every detector of `scanner`, by slot.
/// An engine can run it on the batches it writes, while the identifier set still grows.
pub fn detector_hits(scanner: &Scanner, slots: usize, values: &[Option<&str>]) -> GateCounts {
    check(Some(scanner), None, slots, values, None)
}

/// [`detector_hits`] that does not count the surrogates a run wrote (`emitted`): a plausible
/// e-mail the `surrogate` action put there is found by the e-mail detector by design.
pub fn detector_hits_except(
    scanner: &Scanner,
    slots: usize,
    values: &[Option<&str>],
    emitted: &crate::surrogate::Emitted,
) -> GateCounts {
    check(Some(scanner), None, slots, values, Some(emitted))
}

/// The identifier half of [`check_values`]: the values remembered in `ids` found in the
/// values (`hits` is empty). `detector_hits` plus this equals `check_values`.
pub fn identifier_hits(ids: &IdentifierSet, values: &[Option<&str>]) -> GateCounts {
    check(None, Some(ids), 0, values, None)
}

fn check(
    scanner: Option<&Scanner>,
    ids: Option<&IdentifierSet>,
    slots: usize,
    values: &[Option<&str>],
    emitted: Option<&crate::surrogate::Emitted>,
) -> GateCounts {
    // Columns of categories or generalized values repeat a few values over and over:
    // judge each distinct value once and weigh its result by how often it occurs.
    // (foldhash, seeded per process: several times faster than SipHash on short values.)
    let head: foldhash::HashSet<&str> = values.iter().take(1024).flatten().copied().collect();
    if values.len() >= 4096 && head.len() * 16 <= values.len().min(1024) {
        let mut counts: foldhash::HashMap<&str, u64> = Default::default();
        for v in values.iter().flatten() {
            *counts.entry(v).or_default() += 1;
        }
        let distinct: Vec<(&str, u64)> = counts.into_iter().collect();
        return judge(scanner, ids, slots, &distinct, emitted);
    }
    let ones: Vec<(&str, u64)> = values.iter().flatten().map(|v| (*v, 1)).collect();
    judge(scanner, ids, slots, &ones, emitted)
}

/// [`check`] over `(value, occurrences)` pairs, in parallel chunks.
fn judge(
    scanner: Option<&Scanner>,
    ids: Option<&IdentifierSet>,
    slots: usize,
    values: &[(&str, u64)],
    emitted: Option<&crate::surrogate::Emitted>,
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
            let mut scratch = IdScratch::default();
            let mut c = empty();
            if let Some(ids) = ids {
                c.identifier_values += ids.count_in_all(chunk, &mut scratch);
            }
            for (v, n) in chunk {
                c.scanned += n;
                if let Some(scanner) = scanner {
                    scanner.scan(v, &ctx, &mut spans);
                    if let Some(e) = emitted {
                        spans.retain(|s| !v.get(s.start..s.end).is_some_and(|t| e.contains(t)));
                    }
                    for s in &spans {
                        if let Some(h) = c.hits.get_mut(slot(s.kind)) {
                            *h += n;
                        }
                    }
                }
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

    /// The filter answers "maybe" for every hash it holds, and at 16 bits a hash for few
    /// others: two bits of one word make about a quarter of one bit's false answers.
    #[test]
    fn the_filter_holds_every_hash_and_few_others() {
        let mut bits = Bits::new(100_000 * 16, KEY_SKIP);
        let hasher = ValueHasher::from_seed([3, 5]);
        let key = |i: u64| hasher.word_mix(&format!("value-{i}"));
        for i in 0..100_000 {
            bits.set(key(i));
        }
        assert!((0..100_000).all(|i| bits.get(key(i))));
        let false_maybe = (100_000..300_000).filter(|i| bits.get(key(*i))).count();
        let rate = false_maybe as f64 / 200_000.0;
        assert!(rate < 0.03, "false maybe rate {rate}");
    }

    /// The set gathered by many threads at once finds exactly what one built value by value
    /// does, and keeps each value once.
    #[test]
    fn a_set_gathered_by_threads_equals_one_built_value_by_value() {
        let hasher = ValueHasher::new();
        let values: Vec<String> = (0..20_000)
            .map(|i| match i % 3 {
                0 => format!("person{}@example.com", i / 3),
                1 => format!("Ada Lovelace{}", i / 3),
                _ => format!("+44 20 7946 {:04}", i / 3),
            })
            .collect();
        let distinct = DistinctKeys::new();
        std::thread::scope(|s| {
            for part in values.chunks(1000) {
                let (d, h) = (&distinct, hasher.clone());
                s.spawn(move || {
                    d.insert_all(&h, part.iter().map(String::as_str));
                    // Twice: kept once.
                    d.insert_all(&h, part.iter().map(String::as_str));
                });
            }
        });
        assert_eq!(distinct.len(), values.len());
        let gathered = IdentifierSet::from_distinct(hasher.clone(), distinct);
        let mut one_by_one = IdentifierSet::with_hasher(hasher);
        for v in &values {
            one_by_one.insert(v);
        }
        assert_eq!(gathered.len(), one_by_one.len());
        let mut words = Vec::new();
        for v in values.iter().step_by(37) {
            let text = format!("write to {v} today");
            assert_eq!(gathered.count_in(&text, &mut words), 1, "{text}");
            assert_eq!(one_by_one.count_in(&text, &mut words), 1, "{text}");
        }
        for text in ["nobody here", "Lovelace", "person99999@example.com", "Ada"] {
            assert_eq!(gathered.count_in(text, &mut words), 0, "{text}");
        }
    }

    /// Keys added in many batches, with repeats across the batches that are sorted in, end up
    /// once each, in order; past the fixed batch, keys wait until they number half the run.
    #[test]
    fn key_runs_keep_each_key_once_across_settles() {
        let mut run = KeyRun::default();
        let mut expected = std::collections::BTreeSet::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut waited_longer = false;
        for round in 0..16 {
            let batch: Vec<u64> = (0..(PENDING / 2 + 123))
                .map(|i| {
                    x = mix(x.wrapping_add(i as u64));
                    // A key in four repeats an earlier one.
                    if i % 4 == 0 {
                        (i as u64) * 7 + round
                    } else {
                        x
                    }
                })
                .collect();
            expected.extend(batch.iter().copied());
            run.add(&batch);
            assert!(run.pending.len() < PENDING.max(run.sorted.len() / 2));
            waited_longer |= run.pending.len() >= PENDING;
        }
        assert!(waited_longer, "the run never grew past the fixed batch");
        run.settle();
        assert!(run.pending.is_empty());
        assert_eq!(run.sorted, expected.iter().copied().collect::<Vec<_>>());
        assert!(expected.iter().step_by(101).all(|k| run.contains(*k)));
        assert!(!run.contains(u64::MAX - 1) || expected.contains(&(u64::MAX - 1)));
    }

    /// Sets gathered apart and absorbed into one hold what one set gathered from every value
    /// holds; a set missing one value is not equal to it.
    #[test]
    fn absorbed_sets_equal_one_set_gathered_whole() {
        let hasher = ValueHasher::from_seed([7, 11]);
        let values: Vec<String> = (0..40_000)
            .map(|i| match i % 3 {
                0 => format!("person{}@example.org", i % 9_000),
                1 => format!("Name{} Surname{}", i % 700, i % 13),
                _ => format!("ID-{:08}", i % 20_000),
            })
            .collect();
        let whole = DistinctKeys::new();
        whole.insert_all(&hasher, values.iter().map(String::as_str));
        let (a, b, c) = (
            DistinctKeys::new(),
            DistinctKeys::new(),
            DistinctKeys::new(),
        );
        a.insert_all(&hasher, values[..15_000].iter().map(String::as_str));
        b.insert_all(&hasher, values[10_000..31_000].iter().map(String::as_str));
        c.insert_all(&hasher, values[31_000..].iter().map(String::as_str));
        a.absorb(&b);
        a.absorb(&c);
        assert_eq!(a, whole);
        assert_eq!(a.len(), whole.len());
        // One value more, and the sets differ.
        whole.insert_all(&hasher, ["someone.else@example.org"]);
        a.absorb(&DistinctKeys::new());
        assert_ne!(a, whole);
    }

    /// The eight-at-a-time hash of ASCII words equals the byte-by-byte one it replaced.
    #[test]
    fn tails_read_as_their_zero_padded_eight_bytes() {
        let bytes: Vec<u8> = (1..=7).map(|i| i * 31 + 1).collect();
        for n in 1..8 {
            let mut eight = [0u8; 8];
            eight[..n].copy_from_slice(&bytes[..n]);
            assert_eq!(tail8(&bytes[..n]), u64::from_le_bytes(eight), "{n} bytes");
        }
    }

    #[test]
    fn ascii_words_hash_as_byte_by_byte() {
        let h = ValueHasher::new();
        // The hash of the lowercase bytes, byte by byte.
        let reference = |word: &str| {
            let [s0, s1] = h.seed;
            let mut acc = s0 ^ (word.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let lower = word.to_ascii_lowercase();
            for (k, c) in lower.as_bytes().chunks(8).enumerate() {
                let mut eight = [0u8; 8];
                eight[..c.len()].copy_from_slice(c);
                let last = (k + 1) * 8 >= word.len() && c.len() < 8;
                let salt = if last {
                    0x1319_8a2e_0370_7344
                } else {
                    0x243f_6a88_85a3_08d3
                };
                acc = fold(acc ^ u64::from_le_bytes(eight), s1 ^ salt);
            }
            fold(acc ^ s1, 0xa409_3822_299f_31d0)
        };
        // Every ASCII byte, at every position of words of every length up to 19.
        for len in 1..20 {
            for b in 0u8..128 {
                let word: String = (0..len)
                    .map(|i| {
                        if i % 3 == 1 {
                            b as char
                        } else {
                            (b'a' + i as u8) as char
                        }
                    })
                    .collect();
                assert_eq!(h.word_mix(&word), reference(&word), "{word:?}");
            }
        }
        for b in 0u8..128 {
            let x = u64::from_le_bytes([b; 8]);
            assert_eq!(
                ascii_lower8(x),
                u64::from_le_bytes([b.to_ascii_lowercase(); 8])
            );
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

    /// The detector half and the identifier half, run apart, count what the whole check does.
    #[test]
    fn the_two_halves_of_the_check_add_up_to_it() {
        let mut ids = IdentifierSet::new();
        ids.insert("ava.kumar@example.com");
        ids.insert("Ava Kumar");
        let scanner = Scanner::new(&crate::pii::detect::ScannerConfig::default()).unwrap();
        let owned: Vec<String> = (0..6000)
            .map(|i| match i % 4 {
                0 => format!("ticket {i} from ava kumar"),
                1 => "call 555-0100 or write ava.kumar@example.com".to_string(),
                2 => "GB".to_string(),
                _ => format!("token{i:032x}"),
            })
            .collect();
        let mut values: Vec<Option<&str>> = owned.iter().map(|s| Some(s.as_str())).collect();
        values[7] = None;
        let whole = check_values(&scanner, &ids, 11, &values);
        let detectors = detector_hits(&scanner, 11, &values);
        let identifiers = identifier_hits(&ids, &values);
        assert_eq!(detectors.scanned, whole.scanned);
        assert_eq!(identifiers.scanned, whole.scanned);
        assert_eq!(detectors.hits, whole.hits);
        assert_eq!(detectors.identifier_values, 0);
        assert!(identifiers.hits.is_empty());
        assert_eq!(identifiers.identifier_values, whole.identifier_values);
        assert!(whole.identifier_values >= 3000, "{whole:?}");
        assert!(whole.hits.iter().sum::<u64>() >= 1500, "{whole:?}");
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

    /// Short words are never looked up alone, but still start and continue longer values.
    #[test]
    fn short_words_count_inside_longer_values_only() {
        let h = ValueHasher::new();
        assert_eq!(h.word_hash("abcd") & 1, 0);
        assert_eq!(h.word_hash("abcde") & 1, 1);
        let mut set = IdentifierSet::with_hasher(h);
        set.insert("Bo Li");
        set.insert("S1234");
        set.insert("abc");
        let mut words = Vec::new();
        assert_eq!(set.count_in("ask bo li or s1234 about abc", &mut words), 2);
        assert_eq!(set.count_in("bo and li", &mut words), 0);
    }

    /// A value is found from its first word even when that word is common in text and
    /// starts other runs that are no identifier.
    #[test]
    fn values_are_found_after_false_starts() {
        let mut set = IdentifierSet::new();
        set.insert("Maria Garcia Lopez");
        set.insert("Maria Jones");
        let mut words = Vec::new();
        assert_eq!(
            set.count_in("maria said maria maria garcia lopez called", &mut words),
            1
        );
        assert_eq!(set.count_in("maria, maria jones, maria", &mut words), 1);
        assert_eq!(set.count_in("garcia lopez maria", &mut words), 0);
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
    fn values_hashed_elsewhere_with_the_same_hasher_are_found() {
        let hasher = ValueHasher::new();
        let distinct = DistinctKeys::new();
        std::thread::scope(|s| {
            let (d, h) = (&distinct, hasher.clone());
            s.spawn(move || d.insert_all(&h, ["someone@example.com"]));
        });
        let set = IdentifierSet::from_distinct(hasher, distinct);
        assert_eq!(
            set.count_in("from someone@example.com.", &mut Vec::new()),
            1
        );
        // Another key: nothing matches.
        let other_keys = DistinctKeys::new();
        other_keys.insert_all(&ValueHasher::new(), ["someone@example.com"]);
        let other = IdentifierSet::from_distinct(ValueHasher::new(), other_keys);
        assert_eq!(
            other.count_in("from someone@example.com.", &mut Vec::new()),
            0
        );
    }

    proptest::proptest! {
        /// Counting many values at once, with their words hashed and fetched in groups,
        /// gives each value's own count, weighed by its occurrences.
        #[test]
        fn grouped_counts_equal_counts_value_by_value(
            texts in proptest::collection::vec(
                proptest::collection::vec(0usize..8, 0..9), 0..70),
            weights in proptest::collection::vec(1u64..4, 70),
        ) {
            const WORDS: [&str; 8] =
                ["Ava", "Kumar", "ava.kumar@example.com", "S0001234", "wrote", "(221)", "750-0974", "to"];
            let mut set = IdentifierSet::new();
            for v in ["Ava Kumar", "ava.kumar@example.com", "S0001234", "(221) 750-0974"] {
                set.insert(v);
            }
            let owned: Vec<String> = texts
                .iter()
                .map(|t| t.iter().map(|&i| WORDS[i]).collect::<Vec<_>>().join(" "))
                .collect();
            let values: Vec<(&str, u64)> =
                owned.iter().map(String::as_str).zip(weights.iter().copied()).collect();
            let mut words = Vec::new();
            let one_by_one: u64 = values.iter().map(|(v, n)| n * set.count_in(v, &mut words)).sum();
            let grouped = set.count_in_all(&values, &mut IdScratch::default());
            proptest::prop_assert_eq!(grouped, one_by_one);
        }

        /// A value's keys are those of its words hashed one by one through the general
        /// (lowercasing, decoding) path, whether it comes as text or as bytes, ASCII or not;
        /// bytes that are not UTF-8 have none.
        #[test]
        fn value_keys_equal_the_word_by_word_keys(
            value in "[a-zA-Z0-9 @._+,;()\"-]{0,40}|[a-zA-Zé€ÄÖß0-9 .@-]{0,30}",
            cut in proptest::option::of(0usize..40),
        ) {
            let h = ValueHasher::from_seed([21, 34]);
            let mut reference = ValueKeys::default();
            for_each_word(&value, |w| {
                reference.add(w.len(), || (h.word_mix(w) & !1) | u64::from(w.len() >= LONG_WORD))
            });
            let reference = reference.finish();
            proptest::prop_assert_eq!(h.value_keys(&value), reference);
            proptest::prop_assert_eq!(h.value_keys_utf8(value.as_bytes()), reference);
            let mut words = Vec::new();
            h.word_hashes(&value, &mut words);
            let mut one_by_one = Vec::new();
            for_each_word(&value, |w| one_by_one.push(h.word_hash(w)));
            proptest::prop_assert_eq!(words, one_by_one);
            // A cut inside a character leaves bytes that are not UTF-8.
            if let Some(c) = cut.filter(|&c| c < value.len() && !value.is_char_boundary(c)) {
                proptest::prop_assert_eq!(h.value_keys_utf8(&value.as_bytes()[..c]), None);
            }
        }
    }
}
