//! The data subjects: who they are, how many tickets each files, which ones revoked consent.
//!
//! There are about rows/4 subjects. Their attributes are fixed (a subject's name, e-mail,
//! phone, birth date, zip and country are the same on every row) and kept in memory in a compact
//! form, 32 bytes each; the text is rendered when a row needs it. Rows per subject are skewed
//! (log-normal): most people file one to three tickets, a few file hundreds, which is what makes
//! subject-disjoint splits and contribution bounding worth testing.

use rand::seq::index;
use rand::Rng;
use rand_distr::{Distribution, LogNormal};

use super::names::{COUNTRIES, FIRST_NAMES, LAST_NAMES};
use super::pii::{EmailRecipe, Phone};
use super::random::{stream_rng, weighted_index, IdPermutation, Stream};
use super::text::{push_padded, unix_days};

/// Largest number of subjects: subject ids have seven digits.
pub(crate) const MAX_SUBJECTS: u64 = 10_000_000;

/// Share of subjects who revoked consent.
const REVOKED_SHARE: f64 = 0.03;

/// Spread (σ of the underlying normal) of rows per subject.
const ROWS_PER_SUBJECT_SIGMA: f64 = 1.1;

/// One data subject, compactly.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject {
    /// The number in `S0012345`.
    pub(crate) id: u32,
    /// Index into [`FIRST_NAMES`].
    pub(crate) first: u16,
    /// Index into [`LAST_NAMES`].
    pub(crate) last: u16,
    pub(crate) email: EmailRecipe,
    /// Index into [`COUNTRIES`].
    pub(crate) country: u8,
    pub(crate) phone: Phone,
    /// Birth date, days since 1970-01-01.
    pub(crate) birth: i32,
    /// Zip code, 0..100000.
    pub(crate) zip: u32,
}

impl Subject {
    /// The given name.
    pub(crate) fn first_name(&self) -> &'static str {
        FIRST_NAMES[usize::from(self.first)]
    }

    /// The family name.
    pub(crate) fn last_name(&self) -> &'static str {
        LAST_NAMES[usize::from(self.last)]
    }

    /// The ISO 3166-1 alpha-2 country code.
    pub(crate) fn country_code(&self) -> &'static str {
        COUNTRIES[usize::from(self.country)].0
    }

    /// Appends the id as written, `S` + seven digits.
    pub(crate) fn push_id(&self, buf: &mut String) {
        buf.push('S');
        push_padded(buf, u64::from(self.id), 7);
    }

    /// Appends `First Last`.
    pub(crate) fn push_full_name(&self, buf: &mut String) {
        buf.push_str(self.first_name());
        buf.push(' ');
        buf.push_str(self.last_name());
    }

    /// Appends the e-mail address.
    pub(crate) fn push_email(&self, buf: &mut String) {
        self.email
            .push(buf, usize::from(self.first), usize::from(self.last));
    }
}

/// All subjects, how many rows each still has to file, and who revoked consent.
#[derive(Debug)]
pub(crate) struct Population {
    pub(crate) subjects: Vec<Subject>,
    /// Ids (numbers) of revoked subjects, ascending.
    pub(crate) revoked: Vec<u32>,
    rows_per_subject: Vec<u32>,
}

impl Population {
    /// The subjects for a dataset of `rows` rows: rows/4 of them (at least one when there are
    /// rows), each with at least one row. `rows / 4` must not exceed [`MAX_SUBJECTS`].
    pub(crate) fn generate(rows: u64, seed: u64) -> Population {
        let n = if rows == 0 { 0 } else { (rows / 4).max(1) };
        assert!(n <= MAX_SUBJECTS, "checked by the caller");
        let n = n as usize;

        let mut rng = stream_rng(seed, Stream::Subjects, 0);
        let ids = IdPermutation::new(MAX_SUBJECTS, 12, &mut stream_rng(seed, Stream::Ids, 1));
        let born_from = unix_days(chrono::NaiveDate::from_ymd_opt(1940, 1, 1).expect("date"));
        let born_to = unix_days(chrono::NaiveDate::from_ymd_opt(2008, 12, 31).expect("date"));

        let subjects: Vec<Subject> = (0..n as u64)
            .map(|i| {
                let country = weighted_index(&mut rng, COUNTRIES);
                Subject {
                    id: ids.apply(i) as u32,
                    first: rng.random_range(0..FIRST_NAMES.len()) as u16,
                    last: rng.random_range(0..LAST_NAMES.len()) as u16,
                    email: EmailRecipe::random(&mut rng),
                    country: country as u8,
                    phone: Phone::for_country(&mut rng, COUNTRIES[country].0),
                    birth: rng.random_range(born_from..=born_to),
                    zip: rng.random_range(0..100_000),
                }
            })
            .collect();

        let rows_per_subject = split_rows(rows, n, &mut rng);

        let mut revoked_rng = stream_rng(seed, Stream::Revocations, 0);
        let k = if n == 0 {
            0
        } else {
            ((n as f64 * REVOKED_SHARE).round() as usize).max(1)
        };
        let mut revoked: Vec<u32> = index::sample(&mut revoked_rng, n, k)
            .into_iter()
            .map(|i| subjects[i].id)
            .collect();
        revoked.sort_unstable();

        Population {
            subjects,
            revoked,
            rows_per_subject,
        }
    }

    /// Hands out subjects row by row, in a random order that gives every subject exactly its
    /// share of rows. Uses memory per subject, not per row.
    pub(crate) fn assigner(&self, seed: u64) -> Assigner {
        Assigner::new(&self.rows_per_subject, seed)
    }
}

/// Splits `rows` among `n` subjects: one each, the rest in proportion to log-normal weights.
fn split_rows(rows: u64, n: usize, rng: &mut impl Rng) -> Vec<u32> {
    if n == 0 {
        return Vec::new();
    }
    let dist = LogNormal::new(0.0, ROWS_PER_SUBJECT_SIGMA).expect("valid parameters");
    let weights: Vec<f64> = (0..n).map(|_| dist.sample(rng)).collect();
    let total: f64 = weights.iter().sum();
    let extra = rows - n as u64;
    let mut counts: Vec<u32> = weights
        .iter()
        .map(|w| 1 + (w / total * extra as f64).floor() as u32)
        .collect();
    // Floors leave fewer than n rows over (rounding can, rarely, overshoot); settle them one by
    // one, walking the subjects in their random order.
    let mut assigned: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    let mut i = 0;
    while assigned != rows {
        if assigned < rows {
            counts[i] += 1;
            assigned += 1;
        } else if counts[i] > 1 {
            counts[i] -= 1;
            assigned -= 1;
        }
        i = (i + 1) % n;
    }
    counts
}

/// Subjects per leaf of the [`Assigner`]'s tree.
const BLOCK: usize = 64;

/// Draws subjects without replacement from the multiset "subject i, rows_i times": a streaming
/// shuffle. A Fenwick tree over blocks of [`BLOCK`] subjects finds the block in O(log n), a
/// scan of the block's counts finds the subject; the tree stays small enough for the CPU cache,
/// which matters more than the scan at millions of subjects.
#[derive(Debug)]
pub(crate) struct Assigner {
    /// Rows each subject has still to file.
    counts: Vec<u32>,
    /// 1-based Fenwick tree over the remaining rows per block.
    tree: Vec<u32>,
    remaining: u64,
    top_bit: usize,
    rng: rand::rngs::StdRng,
}

impl Assigner {
    fn new(counts: &[u32], seed: u64) -> Assigner {
        let blocks = counts.len().div_ceil(BLOCK);
        let mut tree = vec![0u32; blocks + 1];
        for (b, chunk) in counts.chunks(BLOCK).enumerate() {
            let pos = b + 1;
            tree[pos] += chunk.iter().sum::<u32>();
            let parent = pos + (pos & pos.wrapping_neg());
            if parent <= blocks {
                tree[parent] += tree[pos];
            }
        }
        Assigner {
            counts: counts.to_vec(),
            tree,
            remaining: counts.iter().map(|&c| u64::from(c)).sum(),
            top_bit: if blocks == 0 { 0 } else { 1 << blocks.ilog2() },
            rng: stream_rng(seed, Stream::Assignment, 0),
        }
    }

    /// The subject (index) of the next row, or `None` when every row is handed out.
    pub(crate) fn next_subject(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        let mut target = self.rng.random_range(0..self.remaining) as u32;
        // The block whose cumulative range holds `target`…
        let blocks = self.tree.len() - 1;
        let mut block = 0;
        let mut bit = self.top_bit;
        while bit > 0 {
            let next = block + bit;
            if next <= blocks && self.tree[next] <= target {
                block = next;
                target -= self.tree[next];
            }
            bit >>= 1;
        }
        // …then the subject within it.
        let mut subject = block * BLOCK;
        while target >= self.counts[subject] {
            target -= self.counts[subject];
            subject += 1;
        }
        self.counts[subject] -= 1;
        let mut i = block + 1;
        while i <= blocks {
            self.tree[i] -= 1;
            i += i & i.wrapping_neg();
        }
        self.remaining -= 1;
        Some(subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subject_gets_its_rows_exactly() {
        for rows in [1, 3, 4, 7, 1000, 12_345] {
            let pop = Population::generate(rows, 9);
            assert_eq!(pop.subjects.len() as u64, (rows / 4).max(1));
            let mut assigner = pop.assigner(9);
            let mut seen = vec![0u32; pop.subjects.len()];
            while let Some(s) = assigner.next_subject() {
                seen[s] += 1;
            }
            assert_eq!(seen, pop.rows_per_subject, "rows={rows}");
            assert_eq!(seen.iter().map(|&c| u64::from(c)).sum::<u64>(), rows);
            assert!(seen.iter().all(|&c| c >= 1));
        }
    }

    #[test]
    fn rows_per_subject_are_skewed() {
        let pop = Population::generate(100_000, 1);
        let mut counts = pop.rows_per_subject.clone();
        counts.sort_unstable();
        let median = counts[counts.len() / 2];
        let max = *counts.last().unwrap();
        assert!(median <= 3 && max >= 40, "median {median}, max {max}");
    }

    #[test]
    fn ids_are_unique_and_revocations_are_about_three_percent() {
        let pop = Population::generate(40_000, 2);
        let mut ids: Vec<u32> = pop.subjects.iter().map(|s| s.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 10_000);
        assert_eq!(pop.revoked.len(), 300);
        assert!(pop.revoked.windows(2).all(|w| w[0] < w[1]));
        assert!(pop.revoked.iter().all(|r| ids.binary_search(r).is_ok()));
    }

    #[test]
    fn no_rows_no_subjects() {
        let pop = Population::generate(0, 2);
        assert!(pop.subjects.is_empty() && pop.revoked.is_empty());
        assert_eq!(pop.assigner(2).next_subject(), None);
    }

    #[test]
    fn subject_stays_compact() {
        assert!(std::mem::size_of::<Subject>() <= 32);
    }
}
