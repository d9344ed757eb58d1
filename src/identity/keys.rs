//! Where a run finds its secret key: the `--key-file` flag, the environment, or a default file.
//!
//! Invariant 4 ("keys stay keys") lives here and in the [`Key`] type of `privprep-kernels`
//! (parsing, generation, the id; never printed, wiped on drop). A key comes from a key file or
//! the environment, never from a pipeline file; errors name the source that failed (a path or a
//! variable name), never the key text. Lineage records [`Key::id`], a hash prefix that
//! identifies a key without revealing it.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use privprep_kernels::key::wipe;
pub use privprep_kernels::key::{Key, KeyProblem, MIN_KEY_BYTES};

/// Environment variable naming a key file (second in the lookup order).
pub const KEY_FILE_ENV: &str = "PRIVPREP_KEY_FILE";

/// Environment variable holding the key itself, hex or base64 (third in the lookup order).
pub const KEY_ENV: &str = "PRIVPREP_KEY";

/// A key file larger than this is certainly not a key (a 256-byte key in hex is 512 characters);
/// refusing early avoids reading a mistyped path to some large data file into memory.
const MAX_KEY_FILE_BYTES: u64 = crate::spec::sidefile::KEY_FILE.limit;

/// The hint every "bad key" error ends with.
const GENERATE_HINT: &str = "generate one with: head -c 32 /dev/urandom | base64";

/// Path of the default key below the state directory.
const DEFAULT_KEY_PATH: [&str; 2] = ["keys", "default.key"];

/// Why no key could be had. Messages name the source (a path or a variable), never the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key text from `from` is not a usable key.
    #[error("invalid key in {}: {problem}\n  hint: {GENERATE_HINT}", .from.describe())]
    Invalid {
        /// Where the text came from.
        from: KeySource,
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
    /// The key text in this environment variable (a master key of `[output.encryption]`).
    NamedEnv(String),
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
            KeySource::NamedEnv(v) => format!("environment variable {v}"),
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
            KeySource::NamedEnv(v) => format!("fix or unset {v}"),
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
                let parsed = Key::parse(&text);
                wipe(&mut text.into_bytes());
                parsed
            }
            // Not wiped: the same bytes stay in the process environment anyway.
            Err(_) => Err(KeyProblem::NotText),
        };
        return key
            .map(|key| (key, KeySource::Env))
            .map_err(|problem| KeyError::Invalid {
                from: KeySource::Env,
                problem,
            });
    }
    read_or_create(&below(state_dir, DEFAULT_KEY_PATH))
}

/// `parts` below the state directory.
fn below(state_dir: &Path, parts: [&str; 2]) -> PathBuf {
    parts
        .iter()
        .fold(state_dir.to_path_buf(), |p, part| p.join(part))
}

/// The key in the state directory's key file `path`, created there (a new random key) when
/// the file does not exist yet.
fn read_or_create(path: &Path) -> Result<(Key, KeySource), KeyError> {
    let source = KeySource::DefaultFile(path.to_path_buf());
    match read_key_file(path, &source) {
        Ok(key) => Ok((key, source)),
        Err(KeyError::Read { error, .. }) if error.kind() == io::ErrorKind::NotFound => {
            create_default_key(path)
        }
        Err(e) => Err(e),
    }
}

/// The run key as [`resolve_key`] finds it, but `None` instead of creating a default key when
/// none is configured (a command that only reads must not mint keys).
///
/// # Errors
/// [`KeyError`] naming the source that failed.
pub fn existing_key(
    flag: Option<&Path>,
    state_dir: &Path,
) -> Result<Option<(Key, KeySource)>, KeyError> {
    let configured = flag.is_some()
        || std::env::var_os(KEY_FILE_ENV).is_some()
        || std::env::var_os(KEY_ENV).is_some()
        || below(state_dir, DEFAULT_KEY_PATH).exists();
    if !configured {
        return Ok(None);
    }
    resolve_key(flag, state_dir).map(Some)
}

/// Folder of the master keys of `[output.encryption]`, when set (else `<state dir>/keys/master`).
pub const MASTER_KEY_DIR_ENV: &str = "PRIVPREP_MASTER_KEY_DIR";
/// Prefix of the variables that hold a master key's text: `PRIVPREP_MASTER_KEY_<ID>`, the id
/// upper-cased with `-` and `.` as `_`.
pub const MASTER_KEY_ENV_PREFIX: &str = "PRIVPREP_MASTER_KEY_";

/// The environment variable that may hold master key `id`.
pub fn master_key_env(id: &str) -> String {
    let suffix: String = id
        .chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    format!("{MASTER_KEY_ENV_PREFIX}{suffix}")
}

/// The file that holds master key `id`: `<dir>/<id>.key`, the folder from
/// [`MASTER_KEY_DIR_ENV`] or `<state dir>/keys/master`.
pub fn master_key_path(id: &str, state_dir: &Path) -> PathBuf {
    let dir = std::env::var_os(MASTER_KEY_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| below(state_dir, ["keys", "master"]));
    dir.join(format!("{id}.key"))
}

/// Master key `id` of `[output.encryption]` (it wraps the files' data keys; it never encrypts
/// data itself, and is never a token key): the text in `PRIVPREP_MASTER_KEY_<ID>`, else the
/// file [`master_key_path`]. When neither exists and `create` is set (a run that writes), a new
/// random key is created in the file (mode 0600), as the default token key is; a command that
/// only reads never creates one.
///
/// # Errors
/// [`KeyError`] naming the variable or file.
pub fn resolve_master_key(
    id: &str,
    state_dir: &Path,
    create: bool,
) -> Result<(Key, KeySource), KeyError> {
    let var = master_key_env(id);
    if let Some(value) = std::env::var_os(&var) {
        let text = value.to_string_lossy().to_string();
        return Key::parse(text.trim())
            .map(|key| (key, KeySource::NamedEnv(var.clone())))
            .map_err(|problem| KeyError::Invalid {
                from: KeySource::NamedEnv(var),
                problem,
            });
    }
    let path = master_key_path(id, state_dir);
    if create {
        return read_or_create(&path);
    }
    let source = KeySource::DefaultFile(path.clone());
    read_key_file(&path, &source).map(|key| (key, source))
}

/// Path of the subject index key below the state directory.
const INDEX_KEY_PATH: [&str; 2] = ["keys", "index.key"];

/// The key of the subject index: `<state dir>/keys/index.key`, created on first use as the
/// default token key is (a new random key, owner-only, never overwritten). It is separate from
/// every token key, so the index finds a subject whichever key a pipeline used.
///
/// # Errors
/// [`KeyError`] naming the file.
pub fn resolve_index_key(state_dir: &Path) -> Result<Key, KeyError> {
    resolve_index_key_source(state_dir).map(|(key, _)| key)
}

/// [`resolve_index_key`], telling where the key came from ([`KeySource::Created`] when this
/// call made it).
///
/// # Errors
/// [`KeyError`] naming the file.
pub fn resolve_index_key_source(state_dir: &Path) -> Result<(Key, KeySource), KeyError> {
    read_or_create(&below(state_dir, INDEX_KEY_PATH))
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

/// Reads and parses a key file, naming `source` in any error.
fn read_key_file(path: &Path, source: &KeySource) -> Result<Key, KeyError> {
    let read_error = |error| KeyError::Read {
        from: source.clone(),
        error,
    };
    let invalid = |problem| KeyError::Invalid {
        from: source.clone(),
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
            return Err(invalid(KeyProblem::TooLarge {
                limit: MAX_KEY_FILE_BYTES,
            }))
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
        Ok(n) if n as u64 > MAX_KEY_FILE_BYTES => Err(invalid(KeyProblem::TooLarge {
            limit: MAX_KEY_FILE_BYTES,
        })),
        Ok(_) => Key::parse_bytes(&buf).map_err(invalid),
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
    use base64::Engine as _;
    use std::collections::HashMap;

    /// A 32-byte test key: 0x00, 0x01, …, 0x1f.
    fn sample_bytes(n: u8) -> Vec<u8> {
        (0..n).collect()
    }

    /// The id of the 32-byte key holding `byte` in every position.
    fn id_of(byte: u8) -> String {
        Key::parse(&hex::encode([byte; 32])).unwrap().id()
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
        assert_eq!(key.id(), id_of(1));

        let (key, source) = resolve_key_with(None, &state, &full).unwrap();
        assert_eq!(source, KeySource::EnvFile(env_file.clone()));
        assert_eq!(key.id(), id_of(2));

        let only_key = env_of(&[(KEY_ENV, &env_text)]);
        let (key, source) = resolve_key_with(None, &state, only_key).unwrap();
        assert_eq!(source, KeySource::Env);
        assert_eq!(key.id(), id_of(3));

        let (created, source) = resolve_key_with(None, &state, no_env).unwrap();
        let default = state.join("keys").join("default.key");
        assert_eq!(source, KeySource::Created(default.clone()));

        // The second run finds the file it left and gets the same key.
        let (again, source) = resolve_key_with(None, &state, no_env).unwrap();
        assert_eq!(source, KeySource::DefaultFile(default));
        assert_eq!(again.id(), created.id());
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
        assert!(msg.contains(GENERATE_HINT), "{msg}");
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
        let secret = base64::engine::general_purpose::STANDARD.encode(sample_bytes(16));
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
                problem: KeyProblem::TooLarge { .. },
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
