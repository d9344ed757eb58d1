//! The subject index: which outputs hold which data subjects, without storing who they are.
//!
//! Every committed output records the set of subjects whose rows it holds, as 64-bit keyed
//! hashes of the normalised subject id under the store's index key (separate from the token
//! keys, so finding a subject does not depend on which key a pipeline used). A set is its keys
//! sorted and deduplicated, little-endian, 8 bytes each: looking one subject up is a binary
//! search of about 20 reads, whatever the set's size, and two sets can be merged or compared
//! without decoding anything.
//!
//! The hash is SipHash-2-4, a keyed pseudo-random function, under 128 bits derived from the
//! index key with HMAC-SHA256: without the key, a set tells nothing about who is in it, and an
//! id cannot be tested against it. At a million subjects per output, the chance that some other
//! subject shares a given subject's 64-bit hash is about one in eighteen trillion.

use std::hash::Hasher;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use siphasher::sip::SipHasher24;

use crate::key::Key;

/// Bytes per key in a stored set.
pub const KEY_BYTES: usize = 8;

/// The keyed hash of subject ids. Cloning shares nothing secret beyond the derived 128 bits.
#[derive(Clone)]
pub struct SubjectHasher {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for SubjectHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectHasher(..)")
    }
}

impl SubjectHasher {
    /// The hasher of the index key `key`.
    pub fn new(key: &Key) -> SubjectHasher {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(b"privprep-subject-index-v1");
        let d = mac.finalize().into_bytes();
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&d[i..i + 8]);
            u64::from_le_bytes(b)
        };
        SubjectHasher {
            k0: word(0),
            k1: word(8),
        }
    }

    /// The key of subject `id`, normalised as the policy matches ids: surrounding whitespace
    /// is not part of it. `None` for an empty id (no subject).
    pub fn key(&self, id: &str) -> Option<u64> {
        let id = crate::parse::trim(id);
        if id.is_empty() {
            return None;
        }
        let mut h = SipHasher24::new_with_keys(self.k0, self.k1);
        h.write(id.as_bytes());
        Some(h.finish())
    }
}

/// Sorts (on all cores) and deduplicates `keys` and writes them as a stored set.
pub fn encode(keys: &mut Vec<u64>) -> Vec<u8> {
    use rayon::slice::ParallelSliceMut as _;
    keys.par_sort_unstable();
    keys.dedup();
    let mut out = Vec::with_capacity(keys.len() * KEY_BYTES);
    for k in keys.iter() {
        out.extend_from_slice(&k.to_le_bytes());
    }
    out
}

/// Whether the stored set read through `at` (which returns the `i`-th key of `len`) holds
/// `key`: a binary search, so a set on disk is read a few bytes at a time.
pub fn contains_with<E>(
    len: usize,
    key: u64,
    mut at: impl FnMut(usize) -> Result<u64, E>,
) -> Result<bool, E> {
    let (mut lo, mut hi) = (0usize, len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match at(mid)?.cmp(&key) {
            std::cmp::Ordering::Equal => return Ok(true),
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
        }
    }
    Ok(false)
}

/// The keys of the stored set `blob`, in order (a trailing partial key is ignored).
pub fn decode(blob: &[u8]) -> Vec<u64> {
    blob.chunks_exact(KEY_BYTES)
        .map(|c| {
            let mut b = [0u8; KEY_BYTES];
            b.copy_from_slice(c);
            u64::from_le_bytes(b)
        })
        .collect()
}

/// Whether the stored set `blob` (as [`encode`] writes it) holds `key`.
pub fn contains(blob: &[u8], key: u64) -> bool {
    let len = blob.len() / KEY_BYTES;
    let at = |i: usize| -> Result<u64, ()> {
        let mut b = [0u8; KEY_BYTES];
        b.copy_from_slice(&blob[i * KEY_BYTES..(i + 1) * KEY_BYTES]);
        Ok(u64::from_le_bytes(b))
    };
    contains_with(len, key, at).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hasher(byte: u8) -> SubjectHasher {
        SubjectHasher::new(&Key::parse(&hex::encode([byte; 32])).unwrap())
    }

    #[test]
    fn keys_depend_on_the_index_key_and_ignore_surrounding_space() {
        let (a, b) = (hasher(1), hasher(2));
        assert_eq!(a.key("S-001"), a.key("  S-001\t"));
        assert_ne!(a.key("S-001"), a.key("S-002"));
        assert_ne!(a.key("S-001"), b.key("S-001"));
        assert_eq!(a.key("   "), None);
        assert!(format!("{a:?}").contains(".."));
    }

    proptest! {
        /// A stored set holds exactly the keys it was made of.
        #[test]
        fn a_set_holds_exactly_its_keys(
            mut keys in prop::collection::vec(any::<u64>(), 0..300),
            probes in prop::collection::vec(any::<u64>(), 0..50),
        ) {
            let members = keys.clone();
            let blob = encode(&mut keys);
            prop_assert_eq!(blob.len() % KEY_BYTES, 0);
            for k in &members {
                prop_assert!(contains(&blob, *k));
            }
            for p in probes {
                prop_assert_eq!(contains(&blob, p), members.contains(&p));
            }
            let mut distinct = members.clone();
            distinct.sort_unstable();
            distinct.dedup();
            prop_assert_eq!(decode(&blob), distinct);
        }
    }
}
