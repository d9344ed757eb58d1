//! The secret key behind keyed tokens: parsing, generation, and where a run finds it.
//!
//! Invariant 4 ("keys stay keys") lives here. A key comes from a key file or the environment,
//! never from a pipeline file; it is never printed (`Debug` shows only its id, there is no
//! `Display`, no serde); errors name the source that failed (a path or a variable name), never
//! the key text; and the bytes are overwritten with zeros when the key is dropped. Lineage records
//! [`Key::id`], a hash prefix that identifies a key without revealing it.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use rand::TryRngCore as _;
use sha2::{Digest, Sha256};

/// Environment variable naming a key file (second in the lookup order).
pub const KEY_FILE_ENV: &str = "PRIVPREP_KEY_FILE";

/// Environment variable holding the key itself, hex or base64 (third in the lookup order).
pub const KEY_ENV: &str = "PRIVPREP_KEY";

/// The smallest key accepted, in bytes: HMAC-SHA256 gains nothing from more, and less would make
/// tokens of low-entropy values (dates, postcodes) easier to brute-force.
pub const MIN_KEY_BYTES: usize = 32;

/// Bytes a fresh key has.
const NEW_KEY_BYTES: usize = 32;

/// A key file larger than this is certainly not a key (a 256-byte key in hex is 512 characters);
/// refusing early avoids reading a mistyped path to some large data file into memory.
const MAX_KEY_FILE_BYTES: u64 = crate::spec::sidefile::KEY_FILE.limit;

/// The hint every "bad key" error ends with.
const GENERATE_HINT: &str = "generate one with: head -c 32 /dev/urandom | base64";

/// Path of the default key below the state directory.
const DEFAULT_KEY_PATH: [&str; 2] = ["keys", "default.key"];

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
    /// [`KeyError::Invalid`] when the text is empty, neither encoding, or too short. The error
    /// never contains the text.
    pub fn parse(text: &str) -> Result<Key, KeyError> {
        parse_key(text).map_err(|problem| KeyError::Invalid {
            from: None,
            problem,
        })
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

    /// The secret bytes, for the tokenizer only.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The key as padded standard base64, the form written to new key files.
    fn to_base64(&self) -> String {
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
fn wipe(buf: &mut [u8]) {
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
    /// A key file far larger than any key.
    #[error("the file is larger than {MAX_KEY_FILE_BYTES} bytes, too large to be a key")]
    TooLarge,
}

/// Why no key could be had. Messages name the source (a path or a variable), never the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key text from `from` (or given directly, when `None`) is not a usable key.
    #[error("invalid key{}: {problem}\n  hint: {GENERATE_HINT}", describe_from(.from))]
    Invalid {
        /// Where the text came from; `None` for [`Key::parse`] called directly.
        from: Option<KeySource>,
        /// What is wrong with it.
        problem: KeyProblem,
    },
    /// A key file could not be read.
    #[error(
        "cannot read {}: {error}\n  hint: check the path and that this user may read it; {}",
        .from.describe(),
        .from.hint()
    )]
    Read {
        /// The file that failed.
        from: KeySource,
        /// The underlying I/O error (it names no file contents). Shown in the message rather
        /// than chained as a `source`, so reports do not print it twice.
        error: io::Error,
    },
    /// The default key file was missing and could not be created.
    #[error(
        "cannot create the default key file {}: {error}\n  hint: make the state directory \
         writable, or pass --key-file / set {KEY_FILE_ENV}",
        .path.display()
    )]
    Create {
        /// The file that could not be created.
        path: PathBuf,
        /// The underlying I/O error, shown in the message (not chained, as above).
        error: io::Error,
    },
}

fn describe_from(from: &Option<KeySource>) -> String {
    match from {
        Some(source) => format!(" in {}", source.describe()),
        None => String::new(),
    }
}

/// Where the key of a run came from, for logs and the run summary. Holds paths only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The `--key-file` flag.
    Flag(PathBuf),
    /// The file named by `PRIVPREP_KEY_FILE`.
    EnvFile(PathBuf),
    /// The key text in `PRIVPREP_KEY`.
    Env,
    /// The existing default key file below the state directory.
    DefaultFile(PathBuf),
    /// The default key file, created by this run with a new key.
    Created(PathBuf),
}

impl KeySource {
    /// One line for logs: which source and, for files, which path. Never the key.
    pub fn describe(&self) -> String {
        match self {
            KeySource::Flag(p) => format!("key file {} (from --key-file)", p.display()),
            KeySource::EnvFile(p) => format!("key file {} (from {KEY_FILE_ENV})", p.display()),
            KeySource::Env => format!("environment variable {KEY_ENV}"),
            KeySource::DefaultFile(p) => format!("default key file {}", p.display()),
            KeySource::Created(p) => format!("new default key file {} (just created)", p.display()),
        }
    }

    /// What to do about a failing source, for error hints.
    fn hint(&self) -> String {
        match self {
            KeySource::Flag(_) => "fix the --key-file argument".to_string(),
            KeySource::EnvFile(_) => format!("fix or unset {KEY_FILE_ENV}"),
            KeySource::Env => format!("fix or unset {KEY_ENV}"),
            KeySource::DefaultFile(_) | KeySource::Created(_) => {
                format!("or pass --key-file or set {KEY_FILE_ENV} to use another key")
            }
        }
    }
}

/// Finds the key for a run, in this order:
/// 1. `flag` (the `--key-file` argument),
/// 2. the file named by `PRIVPREP_KEY_FILE`,
/// 3. the key text in `PRIVPREP_KEY`,
/// 4. `<state_dir>/keys/default.key`, created with a new key (mode 0600) when missing.
///
/// The first source that is present decides: if it is broken, that is an error, not a reason to
/// try the next one, because quietly falling back to another key would produce tokens that no
/// longer join with earlier outputs. For the same reason a variable that is set but empty counts
/// as present. Whether a key file is readable by others is checked by the caller with
/// [`loose_permissions`], so it can warn in its own voice.
///
/// # Errors
/// [`KeyError`] naming the source that failed.
pub fn resolve_key(flag: Option<&Path>, state_dir: &Path) -> Result<(Key, KeySource), KeyError> {
    resolve_key_with(flag, state_dir, |name| std::env::var_os(name))
}

/// [`resolve_key`] with the environment passed in, so tests need not mutate the process
/// environment (which races between test threads).
fn resolve_key_with(
    flag: Option<&Path>,
    state_dir: &Path,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<(Key, KeySource), KeyError> {
    if let Some(path) = flag {
        let source = KeySource::Flag(path.to_path_buf());
        return read_key_file(path, &source).map(|key| (key, source));
    }
    if let Some(path) = env(KEY_FILE_ENV) {
        let path = PathBuf::from(path);
        let source = KeySource::EnvFile(path.clone());
        return read_key_file(&path, &source).map(|key| (key, source));
    }
    if let Some(value) = env(KEY_ENV) {
        let key = match value.into_string() {
            Ok(text) => {
                let parsed = parse_key(&text);
                wipe(&mut text.into_bytes());
                parsed
            }
            // Not wiped: the same bytes stay in the process environment anyway.
            Err(_) => Err(KeyProblem::NotText),
        };
        return key
            .map(|key| (key, KeySource::Env))
            .map_err(|problem| KeyError::Invalid {
                from: Some(KeySource::Env),
                problem,
            });
    }
    let path = DEFAULT_KEY_PATH
        .iter()
        .fold(state_dir.to_path_buf(), |p, part| p.join(part));
    let source = KeySource::DefaultFile(path.clone());
    match read_key_file(&path, &source) {
        Ok(key) => Ok((key, source)),
        Err(KeyError::Read { error, .. }) if error.kind() == io::ErrorKind::NotFound => {
            create_default_key(&path)
        }
        Err(e) => Err(e),
    }
}

/// Whether a key file may be read or written by anyone but its owner (any of mode `0o077`), as
/// ssh judges private keys. A group-writable key file lets others swap the key, which matters as
/// much as reading it. Always `false` off unix, and when the file's metadata cannot be read (the
/// read of the key itself reports that).
pub fn loose_permissions(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o077 != 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// Parses key text into a key; the core of [`Key::parse`] without the error wrapping.
fn parse_key(text: &str) -> Result<Key, KeyProblem> {
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

/// Reads and parses a key file, naming `source` in any error.
fn read_key_file(path: &Path, source: &KeySource) -> Result<Key, KeyError> {
    let read_error = |error| KeyError::Read {
        from: source.clone(),
        error,
    };
    let invalid = |problem| KeyError::Invalid {
        from: Some(source.clone()),
        problem,
    };
    // Regular files only: opening a FIFO would wait for a writer (after the run's journal is
    // written), and a device would be read until the size bound.
    let file = match crate::spec::sidefile::open(path, crate::spec::sidefile::KEY_FILE) {
        Ok(file) => file,
        Err(crate::spec::sidefile::SideFileError::Io { source, .. }) => {
            return Err(read_error(source))
        }
        Err(crate::spec::sidefile::SideFileError::TooLarge { .. }) => {
            return Err(invalid(KeyProblem::TooLarge))
        }
        Err(crate::spec::sidefile::SideFileError::NotRegular { kind, .. }) => {
            return Err(read_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("it is {kind}, not a regular file; a key file must be a regular file"),
            )))
        }
    };
    let mut buf = Vec::new();
    // One byte past the limit tells "exactly at the limit" from "larger".
    let read = file
        .take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(read_error);
    let parsed = match read {
        Err(e) => Err(e),
        Ok(n) if n as u64 > MAX_KEY_FILE_BYTES => Err(invalid(KeyProblem::TooLarge)),
        Ok(_) => match std::str::from_utf8(&buf) {
            Ok(text) => parse_key(text).map_err(invalid),
            Err(_) => Err(invalid(KeyProblem::NotText)),
        },
    };
    // `buf` may have grown through reallocations; earlier copies are beyond reach, but the final
    // one (the whole key text) is not.
    wipe(&mut buf);
    parsed
}

/// Creates the default key file with a new key, readable by its owner only.
///
/// Linking a finished temporary file into place makes first runs racing here safe: the loser
/// sees `AlreadyExists` and reads the winner's complete key instead of overwriting it (which
/// would orphan tokens already written) or reading a file still being written.
fn create_default_key(path: &Path) -> Result<(Key, KeySource), KeyError> {
    let create_error = |error| KeyError::Create {
        path: path.to_path_buf(),
        error,
    };
    if let Some(dir) = path.parent() {
        create_private_dir(dir).map_err(create_error)?;
    }
    // The key is written to a private temporary file first and then linked into place, so the
    // default key file appears complete or not at all: a run racing this one either wins the
    // link or reads the finished key, never an empty file.
    let tmp = path.with_extension(format!(
        "tmp-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(create_error)?;
    let key = Key::generate();
    let mut text = key.to_base64().into_bytes();
    text.push(b'\n');
    let written = file.write_all(&text).and_then(|()| file.sync_all());
    wipe(&mut text);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(create_error(e));
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let source = KeySource::DefaultFile(path.to_path_buf());
            return read_key_file(path, &source).map(|key| (key, source));
        }
        Err(e) => return Err(create_error(e)),
    }
    Ok((key, KeySource::Created(path.to_path_buf())))
}

/// Creates the key directory (and missing parents); on unix the directories created get mode
/// 0700, so even the names of key files are private. Existing directories are left as they are.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a FIFO as `--key-file` hung the run (after its journal was written) waiting
    /// for a writer.
    #[cfg(unix)]
    #[test]
    fn fifo_key_file_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("k.key");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let source = KeySource::Flag(fifo.clone());
        let e = read_key_file(&fifo, &source).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.contains("is a FIFO (named pipe), not a regular file"),
            "{shown}"
        );
        assert!(shown.contains(fifo.to_str().unwrap()), "{shown}");
        let e = read_key_file(Path::new("/dev/zero"), &source).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
    }

    #[test]
    fn concurrent_first_runs_never_read_a_half_written_default_key() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("keys").join("default.key");
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || create_default_key(&path).map(|(k, _)| k.id()))
                })
                .collect();
            let ids: Vec<String> = handles
                .into_iter()
                .map(|h| h.join().unwrap().expect("every run gets the key"))
                .collect();
            assert!(ids.iter().all(|i| *i == ids[0]), "runs disagree on the key");
            let leftovers = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
            assert_eq!(leftovers, 1, "temporary key files were left behind");
        }
    }
    use std::collections::HashMap;

    /// A 32-byte test key: 0x00, 0x01, …, 0x1f.
    fn sample_bytes(n: u8) -> Vec<u8> {
        (0..n).collect()
    }

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).map(OsString::from)
    }

    #[test]
    fn parses_hex() {
        let text = hex::encode(sample_bytes(32));
        let key = Key::parse(&text).unwrap();
        assert_eq!(key.bytes(), sample_bytes(32).as_slice());
        let upper = format!("  {}\n", text.to_uppercase());
        assert_eq!(Key::parse(&upper).unwrap().bytes(), key.bytes());
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
            assert!(
                matches!(
                    err,
                    KeyError::Invalid {
                        problem: KeyProblem::TooShort { found: 31 },
                        ..
                    }
                ),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains("31 bytes"), "{msg}");
            assert!(msg.contains(GENERATE_HINT), "{msg}");
            assert!(!msg.contains(&text), "{msg}");
            assert!(!format!("{err:?}").contains(&text));
        }
    }

    #[test]
    fn rejects_garbage_without_echoing_it() {
        let text = "this-is-not a key!!! but secret";
        let err = Key::parse(text).unwrap_err();
        assert!(matches!(
            err,
            KeyError::Invalid {
                problem: KeyProblem::NotEncoded,
                ..
            }
        ));
        let msg = err.to_string();
        assert!(!msg.contains("secret") && !msg.contains('!'), "{msg}");
        assert!(matches!(
            Key::parse(" \n\t").unwrap_err(),
            KeyError::Invalid {
                problem: KeyProblem::Empty,
                ..
            }
        ));
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

    #[test]
    fn resolve_order_flag_then_env_file_then_env_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, byte: u8| {
            let path = dir.path().join(name);
            fs::write(&path, format!("{}\n", hex::encode([byte; 32]))).unwrap();
            path
        };
        let flag_file = write("flag.key", 1);
        let env_file = write("env.key", 2);
        let env_text = hex::encode([3u8; 32]);
        let state = dir.path().join("state");
        let env_file_str = env_file.to_str().unwrap();

        let full = env_of(&[(KEY_FILE_ENV, env_file_str), (KEY_ENV, &env_text)]);
        let (key, source) = resolve_key_with(Some(&flag_file), &state, &full).unwrap();
        assert_eq!(source, KeySource::Flag(flag_file.clone()));
        assert_eq!(key.bytes(), [1u8; 32]);

        let (key, source) = resolve_key_with(None, &state, &full).unwrap();
        assert_eq!(source, KeySource::EnvFile(env_file.clone()));
        assert_eq!(key.bytes(), [2u8; 32]);

        let only_key = env_of(&[(KEY_ENV, &env_text)]);
        let (key, source) = resolve_key_with(None, &state, only_key).unwrap();
        assert_eq!(source, KeySource::Env);
        assert_eq!(key.bytes(), [3u8; 32]);

        let (created, source) = resolve_key_with(None, &state, no_env).unwrap();
        let default = state.join("keys").join("default.key");
        assert_eq!(source, KeySource::Created(default.clone()));

        // The second run finds the file it left and gets the same key.
        let (again, source) = resolve_key_with(None, &state, no_env).unwrap();
        assert_eq!(source, KeySource::DefaultFile(default));
        assert_eq!(again.bytes(), created.bytes());
    }

    #[test]
    fn a_present_but_broken_source_is_an_error_not_a_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let secret = hex::encode(sample_bytes(20));

        let env = env_of(&[(KEY_ENV, &secret)]);
        let err = resolve_key_with(None, &state, env).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(KEY_ENV), "{msg}");
        assert!(msg.contains("20 bytes"), "{msg}");
        assert!(!msg.contains(&secret), "{msg}");
        assert!(
            !state.exists(),
            "must not fall back to creating a default key"
        );

        let env = env_of(&[(KEY_ENV, "")]);
        assert!(resolve_key_with(None, &state, env).is_err());

        let missing = dir.path().join("nope.key");
        let err = resolve_key_with(Some(&missing), &state, no_env).unwrap_err();
        assert!(matches!(err, KeyError::Read { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("nope.key") && msg.contains("--key-file"),
            "{msg}"
        );

        let env = env_of(&[(KEY_FILE_ENV, missing.to_str().unwrap())]);
        let msg = resolve_key_with(None, &state, env).unwrap_err().to_string();
        assert!(msg.contains(KEY_FILE_ENV), "{msg}");
    }

    #[test]
    fn key_file_errors_name_the_file_not_the_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short.key");
        let secret = STANDARD.encode(sample_bytes(16));
        fs::write(&path, &secret).unwrap();
        let msg = resolve_key_with(Some(&path), dir.path(), no_env)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("short.key") && msg.contains("16 bytes"),
            "{msg}"
        );
        assert!(!msg.contains(&secret), "{msg}");

        let big = dir.path().join("big.key");
        fs::write(&big, "a".repeat(MAX_KEY_FILE_BYTES as usize + 1)).unwrap();
        let err = resolve_key_with(Some(&big), dir.path(), no_env).unwrap_err();
        assert!(matches!(
            err,
            KeyError::Invalid {
                problem: KeyProblem::TooLarge,
                ..
            }
        ));

        let binary = dir.path().join("binary.key");
        fs::write(&binary, [0xffu8; 40]).unwrap();
        let err = resolve_key_with(Some(&binary), dir.path(), no_env).unwrap_err();
        assert!(matches!(
            err,
            KeyError::Invalid {
                problem: KeyProblem::NotText,
                ..
            }
        ));
    }

    #[cfg(unix)]
    #[test]
    fn created_key_file_is_mode_0600_and_loose_permissions_sees_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (_, source) = resolve_key_with(None, &state, no_env).unwrap();
        let KeySource::Created(path) = source else {
            panic!("expected a created key, got {source:?}");
        };
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert!(!loose_permissions(&path));

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(loose_permissions(&path));
        assert!(!loose_permissions(&dir.path().join("absent")));
    }

    #[test]
    fn describe_names_paths_and_variables() {
        let p = PathBuf::from("/etc/privprep/k.key");
        assert!(KeySource::Flag(p.clone())
            .describe()
            .contains("/etc/privprep/k.key"));
        assert!(KeySource::EnvFile(p.clone())
            .describe()
            .contains(KEY_FILE_ENV));
        assert!(KeySource::Env.describe().contains(KEY_ENV));
        assert!(KeySource::Created(p).describe().contains("created"));
    }
}
