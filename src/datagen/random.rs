//! Seeded randomness: independent streams, weighted choices and unique-id permutations.
//!
//! Every part of the dataset draws from its own stream derived from the user's seed, so the
//! pieces do not disturb one another: each data record has its own stream (making a record
//! malformed cannot shift the records after it), and subjects, row assignment, revocations
//! and bad-row positions each have theirs.
//!
//! Streams are `StdRng` (ChaCha12). Its output is fixed for a given `rand` version; the lock
//! file pins that version, so the same options give the same bytes.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Which part of the dataset a stream feeds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    /// Subject attributes and rows-per-subject.
    Subjects = 1,
    /// The order in which subjects' rows appear.
    Assignment = 2,
    /// Which subjects are revoked.
    Revocations = 3,
    /// Where malformed records go.
    BadRows = 4,
    /// Keys of the ticket and subject id permutations.
    Ids = 5,
    /// One stream per data record (index = record number).
    Row = 6,
}

/// The RNG for `stream` (and `index` within it, for per-record streams).
pub(crate) fn stream_rng(seed: u64, stream: Stream, index: u64) -> StdRng {
    let key = splitmix64(splitmix64(seed ^ (stream as u64).rotate_left(56)) ^ index);
    StdRng::seed_from_u64(key)
}

/// SplitMix64 finalizer: a fast, well-mixing bijection on `u64`.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Picks one item with probability proportional to its weight.
pub(crate) fn weighted<T: Copy>(rng: &mut impl Rng, items: &[(T, u32)]) -> T {
    items[weighted_index(rng, items)].0
}

/// The index of an item picked with probability proportional to its weight.
pub(crate) fn weighted_index<T>(rng: &mut impl Rng, items: &[(T, u32)]) -> usize {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut r = rng.random_range(0..total);
    for (i, (_, w)) in items.iter().enumerate() {
        if r < *w {
            return i;
        }
        r -= w;
    }
    unreachable!("r < total")
}

/// Picks one item uniformly.
pub(crate) fn pick<T: Copy>(rng: &mut impl Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// Picks one item uniformly, by reference.
pub(crate) fn pick_ref<'a, T>(rng: &mut impl Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// A keyed pseudo-random permutation of `0..limit`: a four-round Feistel network over
/// `2 * half_bits` bits with cycle walking. It hands out unique, random-looking ids
/// (`T123456789`, `S0012345`) without remembering which ids were used.
#[derive(Debug, Clone)]
pub(crate) struct IdPermutation {
    limit: u64,
    half_bits: u32,
    keys: [u64; 4],
}

impl IdPermutation {
    /// A permutation of `0..limit`; `limit` must fit in `2 * half_bits` bits.
    pub(crate) fn new(limit: u64, half_bits: u32, rng: &mut impl Rng) -> Self {
        assert!(half_bits <= 31 && limit <= 1 << (2 * half_bits));
        Self {
            limit,
            half_bits,
            keys: rng.random(),
        }
    }

    /// The image of `x`, which must be below `limit`.
    pub(crate) fn apply(&self, x: u64) -> u64 {
        debug_assert!(x < self.limit);
        // The network permutes 0..2^(2·half_bits); walking the cycle until we land below
        // `limit` again restricts it to a permutation of 0..limit.
        let mut y = self.feistel(x);
        while y >= self.limit {
            y = self.feistel(y);
        }
        y
    }

    fn feistel(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut left, mut right) = (x >> self.half_bits, x & mask);
        for key in self.keys {
            let f = splitmix64(right ^ key) & mask;
            (left, right) = (right, left ^ f);
        }
        (left << self.half_bits) | right
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_bijection() {
        let mut rng = stream_rng(7, Stream::Ids, 0);
        let perm = IdPermutation::new(1000, 5, &mut rng);
        let mut seen = vec![false; 1000];
        for x in 0..1000 {
            let y = perm.apply(x) as usize;
            assert!(!seen[y], "{y} hit twice");
            seen[y] = true;
        }
    }

    #[test]
    fn streams_differ_by_stream_index_and_seed() {
        let draw = |seed, stream, index| stream_rng(seed, stream, index).random::<u64>();
        let a = draw(1, Stream::Row, 0);
        assert_eq!(a, draw(1, Stream::Row, 0));
        assert_ne!(a, draw(1, Stream::Row, 1));
        assert_ne!(a, draw(2, Stream::Row, 0));
        assert_ne!(a, draw(1, Stream::Subjects, 0));
    }

    #[test]
    fn weighted_respects_zero_weights() {
        let mut rng = stream_rng(3, Stream::Row, 0);
        for _ in 0..1000 {
            assert_eq!(weighted(&mut rng, &[("a", 0), ("b", 5), ("c", 0)]), "b");
        }
    }
}
