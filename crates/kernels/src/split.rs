//! Train/validation/test assignment of subjects, by keyed hash.
//!
//! A subject's split is a function of its id and the run key only: nobody without the key can
//! predict or steer which split a person lands in, the same subject always lands in the same
//! one (so one person never straddles two splits), and every engine assigns it the same way.
//! Split codes: 0 train, 1 validation, 2 test.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::key::Key;

/// The domain separator mixed into the split MAC, so a split position is never the same
/// number as a token of the same value under the same key.
const SPLIT_DOMAIN: &[u8] = b"privprep-split\0";

/// Assigns subjects to splits under one key and one set of fractions. Prepared once (the key
/// absorbed into the HMAC state) and shared by every thread.
#[derive(Clone)]
pub struct Splitter {
    mac: Hmac<Sha256>,
    fractions: [f64; 3],
}

impl Splitter {
    /// A splitter for `key` giving `fractions` (train, validation, test) of the subjects.
    pub fn new(key: &Key, fractions: [f64; 3]) -> Splitter {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.bytes())
            .expect("HMAC takes keys of any length");
        mac.update(SPLIT_DOMAIN);
        Splitter { mac, fractions }
    }

    /// The split code (0 train, 1 validation, 2 test) of a subject id. The id is trimmed, as the
    /// policy sees it, and a missing id counts as the empty one.
    pub fn split_of(&self, subject: Option<&str>) -> i32 {
        split_code(
            self.unit(crate::parse::trim(subject.unwrap_or(""))),
            self.fractions,
        )
    }

    /// A subject's position in [0, 1): the first 53 bits of its keyed MAC.
    pub fn unit(&self, subject: &str) -> f64 {
        let mut m = self.mac.clone();
        m.update(subject.as_bytes());
        let bytes = m.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&bytes[..8]);
        (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl std::fmt::Debug for Splitter {
    // The HMAC state is derived from the key; keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Splitter")
            .field("fractions", &self.fractions)
            .finish_non_exhaustive()
    }
}

/// The split code for a position `u` in [0, 1): splits with a zero fraction get no rows, and
/// the last split with a share takes whatever rounding leaves over.
pub fn split_code(u: f64, fractions: [f64; 3]) -> i32 {
    let last = fractions.iter().rposition(|f| *f > 0.0).unwrap_or(0);
    let mut edge = 0.0;
    for (code, f) in fractions.iter().enumerate() {
        edge += f;
        if *f > 0.0 && (u < edge || code == last) {
            return code as i32;
        }
    }
    last as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_codes_skip_empty_splits_and_cover_the_remainder() {
        assert_eq!(split_code(0.1, [0.8, 0.1, 0.1]), 0);
        assert_eq!(split_code(0.85, [0.8, 0.1, 0.1]), 1);
        assert_eq!(split_code(0.95, [0.8, 0.1, 0.1]), 2);
        // Fractions that sum to just under 1 with no test split: nothing lands in "test".
        assert_eq!(split_code(0.999_999_999_9, [0.8, 0.199_999_999_9, 0.0]), 1);
        assert_eq!(split_code(0.5, [1.0, 0.0, 0.0]), 0);
        assert_eq!(split_code(0.5, [0.4, 0.0, 0.6]), 2);
    }

    #[test]
    fn subjects_are_trimmed_missing_is_empty_and_the_key_matters() {
        let key = Key::parse(&"ab".repeat(32)).unwrap();
        let s = Splitter::new(&key, [0.6, 0.2, 0.2]);
        // The MAC of the domain separator and the id, first 53 bits: pinned so a change of the
        // assignment (which would move people between splits across runs) cannot go unnoticed.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&[0xab; 32]).unwrap();
        mac.update(b"privprep-split\0S1");
        let tag = mac.finalize().into_bytes();
        let expected =
            (u64::from_be_bytes(tag[..8].try_into().unwrap()) >> 11) as f64 / (1u64 << 53) as f64;
        assert_eq!(s.unit("S1"), expected);
        assert_eq!(s.split_of(Some("  S1\t")), s.split_of(Some("S1")));
        assert_eq!(s.split_of(None), s.split_of(Some(" ")));
        let other = Splitter::new(&Key::parse(&"cd".repeat(32)).unwrap(), [0.6, 0.2, 0.2]);
        assert_ne!(s.unit("S1"), other.unit("S1"));
        let counts = (0..3000).fold([0; 3], |mut c, i| {
            c[s.split_of(Some(&format!("S{i}"))) as usize] += 1;
            c
        });
        assert!(counts.iter().all(|&n| n > 400), "{counts:?}");
    }
}
