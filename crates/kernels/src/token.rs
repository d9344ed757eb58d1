//! Keyed tokens (HMAC-SHA256 under the run key) and plain SHA-256 hashes of values.
//!
//! Each kernel takes one value and appends its result to a caller-owned `String` (the `_into`
//! form), so an engine adapter can write a whole column into one reused buffer instead of
//! allocating a `String` per row. They hold no state beyond what [`Tokenizer`] prepares once,
//! so they can run on any thread under any engine, and a value gets the same token everywhere.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::key::Key;

type HmacSha256 = Hmac<Sha256>;

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// How a token's bytes are written as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
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
    }
}
