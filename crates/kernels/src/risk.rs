//! Equivalence classes of quasi-identifiers, for k-anonymity.
//!
//! A row's class is named by its quasi-identifier values joined with [`SEPARATOR`] (a missing
//! value as [`NULL`]) and hashed to 64 bits with fixed keys: the hash is a set key, not a
//! secret, and every engine names a class the same way. Two different classes share a hash
//! with a probability of about n²/2⁶⁵ for n classes (below 10⁻⁷ at a million classes).

use std::hash::Hasher as _;

use siphasher::sip::SipHasher13;

/// Between two values of a class name (the ASCII unit separator).
pub const SEPARATOR: &str = "\u{1f}";
/// A missing value in a class name.
pub const NULL: &str = "\u{0}";

/// The 64-bit key of the class named `joined`.
pub fn class_key(joined: &str) -> u64 {
    let mut h = SipHasher13::new_with_keys(0x7072_6976_7072_6570, 0x6b2d_616e_6f6e_796d);
    h.write(joined.as_bytes());
    h.finish()
}

/// The name of the class of `values` (`None`: missing).
pub fn class_name<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> String {
    values
        .into_iter()
        .map(|v| v.unwrap_or(NULL))
        .collect::<Vec<_>>()
        .join(SEPARATOR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_missing_value_is_its_own_value() {
        assert_ne!(
            class_key(&class_name([Some("a"), None])),
            class_key(&class_name([Some("a"), Some("")]))
        );
    }

    proptest! {
        /// Equal values give equal keys; moving a value across the separator does not collide.
        #[test]
        fn keys_follow_the_values(a in "[a-z0-9]{0,6}", b in "[a-z0-9]{0,6}") {
            let k = class_key(&class_name([Some(a.as_str()), Some(b.as_str())]));
            prop_assert_eq!(k, class_key(&class_name([Some(a.as_str()), Some(b.as_str())])));
            if !b.is_empty() {
                let moved = format!("{a}{}", &b[..1]);
                let rest = &b[1..];
                prop_assert_ne!(k, class_key(&class_name([Some(moved.as_str()), Some(rest)])));
            }
        }
    }
}
