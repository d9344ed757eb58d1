//! The secret key behind keyed tokens and splits: parsing, generation, and its public id.
//!
//! Invariant 4 ("keys stay keys") starts here. A key is never printed (`Debug` shows only its
//! id, there is no `Display`, no serde); parse errors say what is wrong, never the key text;
//! and the bytes are overwritten with zeros when the key is dropped. Lineage records
//! [`Key::id`], a hash prefix that identifies a key without revealing it. Where a run finds its
//! key (files, the environment, a default file) is the caller's business, not this crate's.

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use rand::TryRngCore as _;
use sha2::{Digest, Sha256};

/// The smallest key accepted, in bytes: HMAC-SHA256 gains nothing from more, and less would make
/// tokens of low-entropy values (dates, postcodes) easier to brute-force.
pub const MIN_KEY_BYTES: usize = 32;

/// Bytes a fresh key has.
const NEW_KEY_BYTES: usize = 32;

/// A secret key for keyed tokens (HMAC-SHA256).
///
/// Deliberately not `Clone`, `Display` or `Serialize`: a key should exist once per run and never
/// reach a log, a report or a lineage record. Use [`Key::id`] wherever a key must be named.
pub struct Key {
    bytes: Vec<u8>,
}

impl Key {
    /// Parses key text: hex (even length, hex digits only) or base64 (standard or url-safe
    /// alphabet, padded or not), surrounding whitespace ignored, at least [`MIN_KEY_BYTES`] once
    /// decoded.
    ///
    /// Text that is valid hex is read as hex, even though it would also be valid base64: the hex
    /// reading is the one a person who wrote only hex digits meant.
    ///
    /// # Errors
    /// A [`KeyProblem`] when the text is empty, neither encoding, or too short. The error never
    /// contains the text.
    pub fn parse(text: &str) -> Result<Key, KeyProblem> {
        let text = text.trim();
        if text.is_empty() {
            return Err(KeyProblem::Empty);
        }
        let bytes = decode_hex(text)
            .or_else(|| decode_base64(text))
            .ok_or(KeyProblem::NotEncoded)?;
        // Wrap first, so the bytes are wiped on the error path too.
        let key = Key { bytes };
        if key.bytes.len() < MIN_KEY_BYTES {
            return Err(KeyProblem::TooShort {
                found: key.bytes.len(),
            });
        }
        Ok(key)
    }

    /// [`Key::parse`] over raw bytes, as a key file or a variable holds them.
    ///
    /// # Errors
    /// [`KeyProblem::NotText`] when the bytes are not UTF-8, else as [`Key::parse`].
    pub fn parse_bytes(bytes: &[u8]) -> Result<Key, KeyProblem> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Key::parse(text),
            Err(_) => Err(KeyProblem::NotText),
        }
    }

    /// A fresh random key of 32 bytes from the operating system's RNG.
    ///
    /// # Panics
    /// If the operating system cannot supply random bytes; there is no safe way to continue
    /// without a key, and `rand`'s own thread RNG panics in the same case.
    pub fn generate() -> Key {
        let mut bytes = vec![0u8; NEW_KEY_BYTES];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .expect("the operating system RNG failed to supply a key");
        Key { bytes }
    }

    /// A stable, non-secret name for this key: the first 16 hex characters of
    /// SHA-256(`"privprep-key-id:"` ‖ key bytes).
    ///
    /// The prefix keeps the id from being the same hash some other tool might publish for the
    /// same bytes; 64 bits tell keys apart without giving a brute-force target worth anything.
    pub fn id(&self) -> String {
        let digest = Sha256::new()
            .chain_update(b"privprep-key-id:")
            .chain_update(&self.bytes)
            .finalize();
        hex::encode(&digest[..8])
    }

    /// A 32-byte key for one purpose, derived from this key: HMAC-SHA256(key, `label`). Other
    /// tools derive the same with any HMAC (`hmac.new(key, label, "sha256")` in Python).
    pub fn derive(&self, label: &[u8]) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.bytes).expect("HMAC accepts any key");
        mac.update(label);
        mac.finalize().into_bytes().into()
    }

    /// The secret bytes, for the keyed kernels of this crate only.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The key as padded standard base64, the form written to new key files. The text is the
    /// secret itself: write it where it belongs and [`wipe`] the buffer after.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(&self.bytes)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(id={})", self.id())
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        wipe(&mut self.bytes);
    }
}

/// Overwrites a buffer with zeros in a way the optimiser may not remove as a dead store (a plain
/// `fill(0)` right before a free may be elided).
///
/// Used for the key and for the buffers its text passed through, so a freed allocation does not
/// keep the secret around for a later core dump or heap read.
pub fn wipe(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        // SAFETY: `b` is a valid, aligned, exclusive reference to a byte.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// Why a piece of key text is not a usable key. Never carries the text itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// Nothing but whitespace.
    #[error("the key is empty")]
    Empty,
    /// Not UTF-8 text (a key file or variable holding raw bytes).
    #[error("the key is not text; expected hex or base64")]
    NotText,
    /// Neither hex nor base64.
    #[error("the key is neither hex nor base64")]
    NotEncoded,
    /// Decoded fine but too short.
    #[error("the key has {found} bytes after decoding; at least {MIN_KEY_BYTES} are needed")]
    TooShort {
        /// Bytes found after decoding.
        found: usize,
    },
    /// A key file far larger than any key (the caller reading it sets the bound).
    #[error("the file is larger than {limit} bytes, too large to be a key")]
    TooLarge {
        /// The largest key file accepted, in bytes.
        limit: u64,
    },
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    hex::decode(text).ok()
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    // Keys are pasted from many tools: accept either alphabet, with or without padding.
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let standard = GeneralPurpose::new(&alphabet::STANDARD, config);
    let url_safe = GeneralPurpose::new(&alphabet::URL_SAFE, config);
    // The decode errors are dropped on purpose: they quote the offending character of the key.
    standard
        .decode(text)
        .or_else(|_| url_safe.decode(text))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test key of `n` bytes: 0x00, 0x01, ….
    fn sample_bytes(n: u8) -> Vec<u8> {
        (0..n).collect()
    }

    #[test]
    fn parses_hex() {
        let text = hex::encode(sample_bytes(32));
        let key = Key::parse(&text).unwrap();
        assert_eq!(key.bytes(), sample_bytes(32).as_slice());
        let upper = format!("  {}\n", text.to_uppercase());
        assert_eq!(Key::parse(&upper).unwrap().bytes(), key.bytes());
        assert_eq!(
            Key::parse_bytes(upper.as_bytes()).unwrap().bytes(),
            key.bytes()
        );
    }

    #[test]
    fn parses_base64_padded_and_unpadded() {
        let bytes = sample_bytes(32);
        let padded = STANDARD.encode(&bytes);
        assert!(padded.ends_with('='));
        assert_eq!(Key::parse(&padded).unwrap().bytes(), bytes.as_slice());
        let unpadded = padded.trim_end_matches('=');
        assert_eq!(Key::parse(unpadded).unwrap().bytes(), bytes.as_slice());
    }

    #[test]
    fn parses_url_safe_base64() {
        // 0xfb 0xff … encodes with '-' and '_' in the url-safe alphabet.
        let bytes: Vec<u8> = (0..33u8).map(|i| 0xf8 | (i % 8)).collect();
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        assert!(url.contains('-') || url.contains('_'), "{url}");
        assert_eq!(Key::parse(&url).unwrap().bytes(), bytes.as_slice());
    }

    #[test]
    fn rejects_31_bytes_without_echoing_the_key() {
        for text in [
            hex::encode(sample_bytes(31)),
            STANDARD.encode(sample_bytes(31)),
        ] {
            let err = Key::parse(&text).unwrap_err();
            assert_eq!(err, KeyProblem::TooShort { found: 31 });
            let msg = err.to_string();
            assert!(msg.contains("31 bytes"), "{msg}");
            assert!(!msg.contains(&text), "{msg}");
            assert!(!format!("{err:?}").contains(&text));
        }
    }

    #[test]
    fn rejects_garbage_without_echoing_it() {
        let text = "this-is-not a key!!! but secret";
        let err = Key::parse(text).unwrap_err();
        assert_eq!(err, KeyProblem::NotEncoded);
        let msg = err.to_string();
        assert!(!msg.contains("secret") && !msg.contains('!'), "{msg}");
        assert_eq!(Key::parse(" \n\t").unwrap_err(), KeyProblem::Empty);
        assert_eq!(
            Key::parse_bytes(&[0xff; 40]).unwrap_err(),
            KeyProblem::NotText
        );
    }

    #[test]
    fn id_is_stable_and_16_hex_chars() {
        let key = Key::parse(&"ab".repeat(32)).unwrap();
        // sha256("privprep-key-id:" ‖ 0xab × 32), computed independently with sha256sum.
        assert_eq!(key.id(), "13c17175475bcab4");
        assert_eq!(key.id(), Key::parse(&"AB".repeat(32)).unwrap().id());
        let other = Key::generate();
        assert_eq!(other.id().len(), 16);
        assert!(other.id().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(other.id(), key.id());
    }

    #[test]
    fn debug_shows_only_the_id() {
        let text = hex::encode(sample_bytes(32));
        let key = Key::parse(&text).unwrap();
        let shown = format!("{key:?}");
        assert_eq!(shown, format!("Key(id={})", key.id()));
        assert!(!shown.contains(&text[..16]));
    }

    #[test]
    fn generate_gives_32_random_bytes() {
        let (a, b) = (Key::generate(), Key::generate());
        assert_eq!(a.bytes().len(), 32);
        assert_ne!(a.bytes(), b.bytes());
        // What a new key file holds must parse back to the same key.
        assert_eq!(Key::parse(&a.to_base64()).unwrap().bytes(), a.bytes());
    }

    #[test]
    fn wipe_zeroes() {
        let mut buf = vec![0xffu8; 40];
        wipe(&mut buf);
        assert!(buf.iter().all(|&b| b == 0));
    }
}
