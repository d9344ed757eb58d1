//! Per-value kernels: keyed tokens, plain hashes, masks, prefixes and numeric buckets.
//!
//! Each kernel takes one value and appends its result to a caller-owned `String` (the `_into`
//! form), so an engine adapter can write a whole column into one reused buffer instead of
//! allocating a `String` per row. They know nothing of polars or Arrow and hold no state beyond
//! what [`Tokenizer`] prepares once, so they can run on any thread under any engine.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::keys::Key;

type HmacSha256 = Hmac<Sha256>;

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// How a token's bytes are written as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenEncoding {
    /// Lowercase hex: two characters per byte; easy to read, to type, and safe in any tool.
    Hex,
    /// URL-safe base64 without padding (`A-Z a-z 0-9 - _`): a third shorter than hex.
    Base64Url,
}

/// A token width the tokenizer cannot produce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenizerError {
    /// Not a whole number of bytes, or outside 32..=256.
    #[error(
        "token width {bits} bits is not supported\n  hint: use a multiple of 8 from 32 to 256; \
         128 keeps collisions negligible for any realistic number of distinct values"
    )]
    InvalidBits {
        /// The width asked for.
        bits: u32,
    },
}

/// Keyed tokens: HMAC-SHA256 of a value under a secret [`Key`], truncated and encoded.
///
/// The MAC input is only the UTF-8 bytes of the value, with no column, table or run mixed in, so
/// the same value under the same key gives the same token everywhere and tokenized columns still
/// join across tables and runs. Without the key, a token cannot be computed from a guessed value,
/// which is what separates it from a plain hash of a low-entropy value such as a birth date.
///
/// The key is absorbed once into a prepared HMAC state that is cloned per value; cloning is a
/// copy of two hash states, much cheaper than keying again. `Tokenizer` is `Send + Sync`, so one
/// instance serves all threads.
#[derive(Clone)]
pub struct Tokenizer {
    mac: HmacSha256,
    bytes: usize,
    encoding: TokenEncoding,
}

impl Tokenizer {
    /// Prepares a tokenizer for `key` producing `bits`-bit tokens written in `encoding`.
    ///
    /// # Errors
    /// [`TokenizerError::InvalidBits`] unless `bits` is a multiple of 8 in 32..=256. Below 32 bits
    /// collisions start within a few tens of thousands of values; above 256 there is no more MAC.
    pub fn new(key: &Key, bits: u32, encoding: TokenEncoding) -> Result<Self, TokenizerError> {
        Self::with_key_bytes(key.bytes(), bits, encoding)
    }

    /// [`Tokenizer::new`] over raw key bytes; lets tests use the short keys of RFC 4231.
    fn with_key_bytes(
        key: &[u8],
        bits: u32,
        encoding: TokenEncoding,
    ) -> Result<Self, TokenizerError> {
        if !bits.is_multiple_of(8) || !(32..=256).contains(&bits) {
            return Err(TokenizerError::InvalidBits { bits });
        }
        let mac =
            <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
        Ok(Tokenizer {
            mac,
            bytes: (bits / 8) as usize,
            encoding,
        })
    }

    /// Appends the token of `value` to `out`.
    pub fn token_into(&self, value: &str, out: &mut String) {
        let mut mac = self.mac.clone();
        mac.update(value.as_bytes());
        let tag = mac.finalize().into_bytes();
        let tag = &tag[..self.bytes];
        match self.encoding {
            TokenEncoding::Hex => push_hex(tag, out),
            TokenEncoding::Base64Url => URL_SAFE_NO_PAD.encode_string(tag, out),
        }
    }

    /// The token of `value` as a new `String`; prefer [`Tokenizer::token_into`] in loops.
    pub fn token(&self, value: &str) -> String {
        let mut out = String::with_capacity(self.token_len());
        self.token_into(value, &mut out);
        out
    }

    /// Length in bytes (and characters, all ASCII) of every token, for sizing buffers.
    pub fn token_len(&self) -> usize {
        match self.encoding {
            TokenEncoding::Hex => 2 * self.bytes,
            // Unpadded base64: 4 characters per 3 bytes, a partial group rounded up.
            TokenEncoding::Base64Url => (4 * self.bytes).div_ceil(3),
        }
    }

    /// Width of the tokens in bits.
    pub fn bits(&self) -> u32 {
        (self.bytes * 8) as u32
    }

    /// How tokens are written.
    pub fn encoding(&self) -> TokenEncoding {
        self.encoding
    }
}

impl fmt::Debug for Tokenizer {
    // The HMAC state is derived from the key; keep it out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("bits", &self.bits())
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

/// Appends the unkeyed SHA-256 of `value`'s UTF-8 bytes as 64 lowercase hex characters.
///
/// Anyone can recompute this from a guessed value, so it hides nothing from a dictionary attack;
/// it is for values with too much entropy to guess, or where a public, keyless digest is wanted.
pub fn sha256_hex_into(value: &str, out: &mut String) {
    push_hex(&Sha256::digest(value.as_bytes()), out);
}

/// Appends `value` with every character but the last `keep_last` replaced by `*`.
///
/// Characters are Unicode scalar values, not bytes, so the output has as many characters as the
/// input and never splits a multi-byte character. (A grapheme made of several scalars, such as
/// a flag emoji, counts as several.)
pub fn mask_into(value: &str, keep_last: usize, out: &mut String) {
    // Byte offset where the kept tail starts: walk back `keep_last` characters from the end.
    let tail_start = match keep_last {
        0 => value.len(),
        n => value
            .char_indices()
            .rev()
            .nth(n - 1)
            .map_or(0, |(offset, _)| offset),
    };
    let masked = value[..tail_start].chars().count();
    out.reserve(masked + value.len() - tail_start);
    out.extend(std::iter::repeat_n('*', masked));
    out.push_str(&value[tail_start..]);
}

/// Appends the first `n` characters (Unicode scalar values) of `value`, or all of it if shorter.
pub fn prefix_into(value: &str, n: usize, out: &mut String) {
    let end = value.char_indices().nth(n).map_or(value.len(), |(i, _)| i);
    out.push_str(&value[..end]);
}

/// The lower bound of `x`'s bucket: the largest multiple of `width` not above `x`.
///
/// Floors toward negative infinity, so -1 with width 10 is in bucket -10, not 0. Where the exact
/// multiple lies below `i64::MIN` the result saturates to `i64::MIN`.
///
/// # Panics
/// If `width` is not positive; bucket widths are checked when the pipeline is validated.
pub fn bucket_i64(x: i64, width: i64) -> i64 {
    assert!(width > 0, "bucket width must be positive, got {width}");
    // `div_euclid` floors for a positive divisor and cannot overflow for one. The product is at
    // most `x`, so it can only overflow downward.
    x.div_euclid(width).saturating_mul(width)
}

/// The lower bound of `x`'s bucket: the largest multiple of `width` not above `x`.
///
/// Floors toward negative infinity and guarantees `result <= x` despite rounding in the
/// division. NaN and infinities are returned unchanged, and so is any `x` so large that
/// `x / width` overflows (such an `x` is already coarser than `width`).
///
/// # Panics
/// If `width` is not positive and finite; bucket widths are checked when the pipeline is
/// validated.
pub fn bucket_f64(x: f64, width: f64) -> f64 {
    assert!(
        width > 0.0 && width.is_finite(),
        "bucket width must be positive and finite, got {width}"
    );
    if !x.is_finite() {
        return x;
    }
    let lower = (x / width).floor() * width;
    if !lower.is_finite() {
        return x;
    }
    // x / width can round up to the next whole number (0.7 / 0.1 is fine, but not every case is),
    // which would put the bound above x.
    if lower > x {
        lower - width
    } else {
        lower
    }
}

fn push_hex(bytes: &[u8], out: &mut String) {
    out.reserve(2 * bytes.len());
    for &b in bytes {
        out.push(HEX_DIGITS[usize::from(b >> 4)] as char);
        out.push(HEX_DIGITS[usize::from(b & 0x0f)] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::{hash_set, vec};
    use proptest::prelude::*;

    fn key_of(bytes: &[u8]) -> Key {
        Key::parse(&hex::encode(bytes)).unwrap()
    }

    fn hex_tokenizer(key: &[u8], bits: u32) -> Tokenizer {
        Tokenizer::with_key_bytes(key, bits, TokenEncoding::Hex).unwrap()
    }

    // Known answers from RFC 4231, checked against `openssl dgst -sha256 -hmac` as well.

    #[test]
    fn rfc4231_case2_truncated_to_128_bits() {
        let t = hex_tokenizer(b"Jefe", 128);
        assert_eq!(
            t.token("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c7"
        );
        assert_eq!(
            hex_tokenizer(b"Jefe", 256).token("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn rfc4231_case5_truncation() {
        let t = hex_tokenizer(&[0x0c; 20], 128);
        assert_eq!(
            t.token("Test With Truncation"),
            "a3b6167473100ee06e0c796c2955552b"
        );
    }

    #[test]
    fn rfc4231_case6_through_the_public_api() {
        // 131-byte key: long enough for `Key`, and longer than the SHA-256 block.
        let key = key_of(&[0xaa; 131]);
        let data = "Test Using Larger Than Block-Size Key - Hash Key First";
        let hex = Tokenizer::new(&key, 128, TokenEncoding::Hex).unwrap();
        assert_eq!(hex.token(data), "60e431591ee0b67f0d8a26aacbf5b77f");
        let b64 = Tokenizer::new(&key, 128, TokenEncoding::Base64Url).unwrap();
        let tag = hex::decode("60e431591ee0b67f0d8a26aacbf5b77f").unwrap();
        assert_eq!(b64.token(data), URL_SAFE_NO_PAD.encode(tag));
        assert_eq!(b64.token(data).len(), 22);
    }

    #[test]
    fn token_into_appends() {
        let t = hex_tokenizer(&[7; 32], 32);
        let mut out = String::from("x:");
        t.token_into("a", &mut out);
        t.token_into("b", &mut out);
        assert_eq!(out, format!("x:{}{}", t.token("a"), t.token("b")));
    }

    #[test]
    fn rejects_unsupported_widths() {
        let key = key_of(&[1; 32]);
        for bits in [0, 8, 24, 31, 33, 100, 264, 512] {
            assert_eq!(
                Tokenizer::new(&key, bits, TokenEncoding::Hex).unwrap_err(),
                TokenizerError::InvalidBits { bits }
            );
        }
        for bits in [32, 40, 128, 256] {
            assert_eq!(
                Tokenizer::new(&key, bits, TokenEncoding::Hex)
                    .unwrap()
                    .bits(),
                bits
            );
        }
    }

    #[test]
    fn debug_does_not_show_key_material() {
        let t = Tokenizer::new(&key_of(&[9; 32]), 64, TokenEncoding::Base64Url).unwrap();
        assert_eq!(
            format!("{t:?}"),
            "Tokenizer { bits: 64, encoding: Base64Url, .. }"
        );
    }

    #[test]
    fn tokenizer_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Tokenizer>();
    }

    #[test]
    fn sha256_known_answers() {
        let mut out = String::new();
        sha256_hex_into("", &mut out);
        assert_eq!(
            out,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        out.clear();
        sha256_hex_into("abc", &mut out);
        assert_eq!(
            out,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn mask_examples() {
        let mask = |v: &str, k| {
            let mut out = String::new();
            mask_into(v, k, &mut out);
            out
        };
        assert_eq!(mask("4111111111111111", 4), "************1111");
        assert_eq!(mask("abc", 0), "***");
        assert_eq!(mask("abc", 3), "abc");
        assert_eq!(mask("abc", 10), "abc");
        assert_eq!(mask("", 2), "");
        assert_eq!(mask("Zoë Müller", 3), "*******ler");
        assert_eq!(mask("日本語テキスト", 2), "*****スト");
    }

    #[test]
    fn prefix_examples() {
        let prefix = |v: &str, n| {
            let mut out = String::new();
            prefix_into(v, n, &mut out);
            out
        };
        assert_eq!(prefix("SW1A 1AA", 4), "SW1A");
        assert_eq!(prefix("ab", 5), "ab");
        assert_eq!(prefix("ab", 0), "");
        assert_eq!(prefix("Öl und Ähre", 2), "Öl");
    }

    #[test]
    fn bucket_examples_and_extremes() {
        assert_eq!(bucket_i64(37, 10), 30);
        assert_eq!(bucket_i64(30, 10), 30);
        assert_eq!(bucket_i64(-1, 10), -10);
        assert_eq!(bucket_i64(-10, 10), -10);
        assert_eq!(bucket_i64(i64::MAX, 1), i64::MAX);
        assert_eq!(bucket_i64(i64::MAX, 10), i64::MAX - 7);
        assert_eq!(bucket_i64(i64::MIN, 2), i64::MIN);
        // The exact multiple (-9223372036854775809) is below i64::MIN: saturate.
        assert_eq!(bucket_i64(i64::MIN, 3), i64::MIN);
        assert_eq!(bucket_i64(i64::MIN + 5, i64::MAX), -i64::MAX);
        assert_eq!(bucket_i64(i64::MIN, i64::MAX), i64::MIN);
        assert_eq!(bucket_i64(5, i64::MAX), 0);

        assert_eq!(bucket_f64(37.5, 10.0), 30.0);
        assert_eq!(bucket_f64(-0.5, 10.0), -10.0);
        assert_eq!(bucket_f64(0.7, 0.1), 0.6000000000000001);
        assert!(bucket_f64(f64::NAN, 1.0).is_nan());
        assert_eq!(bucket_f64(f64::INFINITY, 1.0), f64::INFINITY);
        assert_eq!(bucket_f64(f64::MAX, 1e-300), f64::MAX);
        assert_eq!(bucket_f64(-f64::MAX, 1e-300), -f64::MAX);
    }

    #[test]
    #[should_panic(expected = "bucket width must be positive")]
    fn bucket_rejects_zero_width() {
        bucket_i64(1, 0);
    }

    #[test]
    #[should_panic(expected = "bucket width must be positive")]
    fn bucket_f64_rejects_nan_width() {
        bucket_f64(1.0, f64::NAN);
    }

    fn encodings() -> impl Strategy<Value = TokenEncoding> {
        prop_oneof![Just(TokenEncoding::Hex), Just(TokenEncoding::Base64Url)]
    }

    fn widths() -> impl Strategy<Value = u32> {
        (4u32..=32).prop_map(|n| n * 8)
    }

    fn keys() -> impl Strategy<Value = Vec<u8>> {
        vec(any::<u8>(), 32..64)
    }

    proptest! {
        #[test]
        fn tokens_are_deterministic(key in keys(), bits in widths(), enc in encodings(),
                                    value in ".*") {
            let a = Tokenizer::new(&key_of(&key), bits, enc).unwrap();
            let b = Tokenizer::new(&key_of(&key), bits, enc).unwrap();
            prop_assert_eq!(a.token(&value), a.token(&value));
            prop_assert_eq!(a.token(&value), b.token(&value));
        }

        #[test]
        fn token_length_and_charset(key in keys(), bits in widths(), enc in encodings(),
                                    value in ".*") {
            let t = Tokenizer::new(&key_of(&key), bits, enc).unwrap();
            let token = t.token(&value);
            prop_assert_eq!(token.len(), t.token_len());
            let expected_len = match enc {
                TokenEncoding::Hex => bits as usize / 4,
                TokenEncoding::Base64Url => (bits as usize / 8 * 4).div_ceil(3),
            };
            prop_assert_eq!(token.len(), expected_len);
            let ok = match enc {
                TokenEncoding::Hex => token.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                TokenEncoding::Base64Url => token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            };
            prop_assert!(ok, "unexpected character in {}", token);
        }

        #[test]
        fn different_keys_give_different_tokens(k1 in keys(), k2 in keys(), value in ".+") {
            prop_assume!(k1 != k2);
            let a = Tokenizer::new(&key_of(&k1), 128, TokenEncoding::Hex).unwrap();
            let b = Tokenizer::new(&key_of(&k2), 128, TokenEncoding::Hex).unwrap();
            prop_assert_ne!(a.token(&value), b.token(&value));
        }

        #[test]
        fn distinct_values_give_distinct_tokens(key in keys(), enc in encodings(),
                                                values in hash_set(".*", 1..200)) {
            let t = Tokenizer::new(&key_of(&key), 128, enc).unwrap();
            let tokens: std::collections::HashSet<String> =
                values.iter().map(|v| t.token(v)).collect();
            prop_assert_eq!(tokens.len(), values.len());
        }

        #[test]
        fn mask_keeps_length_and_tail(value in ".*", keep_last in 0usize..12) {
            let mut out = String::new();
            mask_into(&value, keep_last, &mut out);
            let input: Vec<char> = value.chars().collect();
            let output: Vec<char> = out.chars().collect();
            prop_assert_eq!(output.len(), input.len());
            let masked = input.len().saturating_sub(keep_last);
            prop_assert!(output[..masked].iter().all(|&c| c == '*'));
            prop_assert_eq!(&output[masked..], &input[masked..]);
        }

        #[test]
        fn prefix_is_a_prefix(value in ".*", n in 0usize..12) {
            let mut out = String::new();
            prefix_into(&value, n, &mut out);
            prop_assert!(value.starts_with(&out));
            prop_assert_eq!(out.chars().count(), n.min(value.chars().count()));
        }

        #[test]
        fn bucket_i64_contains_x(x in -1_000_000_000_000i64..1_000_000_000_000,
                                 width in 1i64..1_000_000) {
            let lower = bucket_i64(x, width);
            prop_assert!(lower <= x && x < lower + width);
            prop_assert_eq!(lower % width, 0);
        }

        #[test]
        fn bucket_f64_contains_x(x in -1e9f64..1e9, width in 1e-3f64..1e6) {
            let lower = bucket_f64(x, width);
            prop_assert!(lower <= x, "{} > {}", lower, x);
            // Allow for rounding at the scale of x and of width.
            let slack = width * 1e-9 + x.abs() * 4.0 * f64::EPSILON;
            prop_assert!(x - lower < width + slack, "{} >= {} + {}", x, lower, width);
        }
    }
}
