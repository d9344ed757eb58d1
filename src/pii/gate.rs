//! The leak gate: before outputs are committed, every string value in them is scanned again.
//!
//! Redaction can miss: a detector is switched off, a column is kept by mistake, a person's
//! address sits in someone else's ticket. The gate reads back what the run wrote and looks for
//! two things: hits of every detector, and the exact identifier values of the input (names,
//! e-mails, phone numbers, ids of every row read, kept or dropped). Those values are held only
//! as 64-bit keyed hashes of their normalized words, under a key that lives in memory for one
//! run, so the set cannot be reversed or carried away. Counts come out, never values.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::detect::{RowContext, Scanner, Span};

/// Longest run of words a remembered value may have (longer values are cut to their first
/// words, which still identify them).
const MAX_WORDS: usize = 12;

/// Values shorter than this (normalized) are not remembered: they would match by chance.
const MIN_VALUE_BYTES: usize = 5;

/// Keyed hashes of identifier values, by their normalized words.
pub struct IdentifierSet {
    state: RandomState,
    hashes: HashSet<u64>,
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
        IdentifierSet {
            state: RandomState::new(),
            hashes: HashSet::new(),
            max_words: 0,
        }
    }

    /// Remembers one value (ignored when too short to be telling).
    pub fn insert(&mut self, value: &str) {
        let mut h = None;
        let (mut bytes, mut words) = (0, 0);
        for_each_word(value, |w| {
            if words < MAX_WORDS {
                bytes += w.len() + 1;
                words += 1;
                h = Some(combine(h, self.word_hash(w)));
            }
        });
        if let Some(h) = h {
            if bytes > MIN_VALUE_BYTES {
                self.hashes.insert(h);
                self.max_words = self.max_words.max(words);
            }
        }
    }

    /// Adds every hash of `other` (both must come from [`IdentifierSet::fork`]).
    pub fn merge(&mut self, other: IdentifierSet) {
        self.hashes.extend(other.hashes);
        self.max_words = self.max_words.max(other.max_words);
    }

    /// An empty set with the same key, for filling on another thread.
    pub fn fork(&self) -> IdentifierSet {
        IdentifierSet {
            state: self.state.clone(),
            hashes: HashSet::new(),
            max_words: 0,
        }
    }

    /// Number of distinct values remembered.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    fn word_hash(&self, word: &str) -> u64 {
        // Case-insensitive: hash the lowercase form char by char, without allocating.
        use std::hash::Hasher;
        let mut h = self.state.build_hasher();
        for c in word.chars().flat_map(char::to_lowercase) {
            h.write_u32(c as u32);
        }
        h.finish()
    }

    /// Number of identifier values found in `text`: whole runs of words that equal a
    /// remembered value. `words` is scratch space.
    pub fn count_in(&self, text: &str, words: &mut Vec<u64>) -> u64 {
        if self.hashes.is_empty() {
            return 0;
        }
        words.clear();
        for_each_word(text, |w| words.push(self.word_hash(w)));
        let mut hits = 0;
        let mut i = 0;
        while i < words.len() {
            let mut h = None;
            let mut matched = 0;
            for (k, w) in words[i..].iter().take(self.max_words).enumerate() {
                h = Some(combine(h, *w));
                if h.is_some_and(|h| self.hashes.contains(&h)) {
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

/// The gate: every detector plus the identifier values.
pub struct Gate {
    pub scanner: Scanner,
    pub ids: IdentifierSet,
    /// Names of the detector slots, for reporting (`email`, …, user-defined names).
    pub slot_names: Vec<String>,
}

/// The gate's verdict on one output column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateColumn {
    pub column: String,
    /// `clean`, `leak`, or `exempt` (an identifier column the pipeline keeps as is).
    pub result: String,
    /// Non-null values scanned, over all output files.
    pub values_scanned: u64,
    /// Hits by detector; `identifier_value` counts input identifier values found.
    pub hits: BTreeMap<String, u64>,
}

/// Why the gate could not read an output back.
#[derive(Debug, thiserror::Error)]
#[error("leak gate: cannot read back {path}: {message}")]
pub struct GateError {
    pub path: String,
    pub message: String,
}

impl Gate {
    /// Scans the string columns of `files` (all with the same schema). `exempt` columns are
    /// reported without being scanned.
    pub fn check_files(
        &self,
        files: &[&Path],
        exempt: &[String],
    ) -> Result<Vec<GateColumn>, GateError> {
        let mut by_column: BTreeMap<String, (u64, Vec<u64>, u64)> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        for path in files {
            let err = |message: String| GateError {
                path: path.display().to_string(),
                message,
            };
            let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
            let builder =
                ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| err(e.to_string()))?;
            let schema = builder.schema().clone();
            let wanted: Vec<usize> = schema
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| {
                    matches!(
                        f.data_type(),
                        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                    )
                })
                .map(|(i, _)| i)
                .collect();
            for f in schema.fields() {
                if !order.contains(f.name()) {
                    order.push(f.name().clone());
                }
            }
            if wanted.is_empty() {
                continue;
            }
            let mask = ProjectionMask::roots(builder.parquet_schema(), wanted);
            let reader = builder
                .with_projection(mask)
                .build()
                .map_err(|e| err(e.to_string()))?;
            for batch in reader {
                let batch = batch.map_err(|e| err(e.to_string()))?;
                for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
                    if exempt.contains(field.name()) {
                        continue;
                    }
                    let values: Vec<Option<&str>> = match array.data_type() {
                        DataType::Utf8 => array.as_string::<i32>().iter().collect(),
                        DataType::LargeUtf8 => array.as_string::<i64>().iter().collect(),
                        DataType::Utf8View => array.as_string_view().iter().collect(),
                        _ => continue,
                    };
                    let (scanned, hits, ids) = self.check_values(&values);
                    let entry = by_column
                        .entry(field.name().clone())
                        .or_insert_with(|| (0, vec![0; self.slot_names.len()], 0));
                    entry.0 += scanned;
                    for (a, b) in entry.1.iter_mut().zip(hits) {
                        *a += b;
                    }
                    entry.2 += ids;
                }
            }
        }
        let mut out = Vec::new();
        for column in order {
            if exempt.contains(&column) {
                out.push(GateColumn {
                    column,
                    result: "exempt".into(),
                    values_scanned: 0,
                    hits: BTreeMap::new(),
                });
                continue;
            }
            let Some((scanned, hits, ids)) = by_column.remove(&column) else {
                continue;
            };
            let mut named: BTreeMap<String, u64> = hits
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| (self.slot_names[i].clone(), *n))
                .collect();
            if ids > 0 {
                named.insert("identifier_value".into(), ids);
            }
            out.push(GateColumn {
                column,
                result: if named.is_empty() { "clean" } else { "leak" }.into(),
                values_scanned: scanned,
                hits: named,
            });
        }
        Ok(out)
    }

    /// (values scanned, detector hits by slot, identifier values found) for one batch.
    fn check_values(&self, values: &[Option<&str>]) -> (u64, Vec<u64>, u64) {
        let slots = self.slot_names.len();
        values
            .par_chunks(4096)
            .map(|chunk| {
                let ctx = RowContext::new();
                let mut spans: Vec<Span> = Vec::new();
                let mut words = Vec::new();
                let mut hits = vec![0u64; slots];
                let (mut scanned, mut ids) = (0u64, 0u64);
                for v in chunk.iter().flatten() {
                    scanned += 1;
                    self.scanner.scan(v, &ctx, &mut spans);
                    for s in &spans {
                        if let Some(h) = hits.get_mut(super::redact::slot(s.kind)) {
                            *h += 1;
                        }
                    }
                    ids += self.ids.count_in(v, &mut words);
                }
                (scanned, hits, ids)
            })
            .reduce(
                || (0, vec![0; slots], 0),
                |mut a, b| {
                    a.0 += b.0;
                    for (x, y) in a.1.iter_mut().zip(b.1) {
                        *x += y;
                    }
                    a.2 += b.2;
                    a
                },
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn forks_share_the_key() {
        let set = IdentifierSet::new();
        let mut other = set.fork();
        other.insert("someone@example.com");
        let mut set = set;
        set.merge(other);
        assert_eq!(
            set.count_in("from someone@example.com.", &mut Vec::new()),
            1
        );
    }
}
