//! Side files: the small files a pipeline names besides its data (the pipeline file itself,
//! manifests, revocation lists, deny files, key lists, key files).
//!
//! They are read whole, so each kind has a size bound, and only regular files are read: a FIFO
//! would block the run until someone writes to it, and a device such as `/dev/zero` would grow
//! memory until the process is killed. Every error names the file and says what is allowed.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// One kind of side file: what it is called in messages and how large it may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideFile {
    /// What the file is, for messages (`revocation list`).
    pub what: &'static str,
    /// The most bytes that are read.
    pub limit: u64,
}

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// The pipeline file (and dataset manifests, read the same way).
pub const PIPELINE: SideFile = SideFile {
    what: "pipeline file",
    limit: 16 * MIB,
};
/// A revocation list (one subject id per line; large organisations have many).
pub const REVOCATION_LIST: SideFile = SideFile {
    what: "revocation list",
    limit: GIB,
};
/// A `[pii] deny_file`.
pub const DENY_FILE: SideFile = SideFile {
    what: "deny file",
    limit: 256 * MIB,
};
/// A release's public key list (`key_file` of a `[[release]]`).
pub const KEY_LIST: SideFile = SideFile {
    what: "key list",
    limit: 256 * MIB,
};
/// A key file (`--key-file`, `PRIVPREP_KEY_FILE`, the default key). Keys are a few dozen bytes.
pub const KEY_FILE: SideFile = SideFile {
    what: "key file",
    limit: 4 * KIB,
};

impl SideFile {
    /// The bound in words, e.g. `1 GiB`.
    pub fn limit_text(&self) -> String {
        human_bytes(self.limit)
    }

    /// The hint every error about this kind of file ends with.
    pub fn hint(&self) -> String {
        format!(
            "a {} must be a regular file of at most {}; relative paths are resolved against the folder of the file that names them",
            self.what,
            self.limit_text()
        )
    }
}

/// Why a side file was not read. Carries paths and sizes only, never content.
#[derive(Debug, thiserror::Error)]
pub enum SideFileError {
    /// Opening or reading failed (missing, permission denied, …).
    #[error("cannot read {what} `{}`: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A FIFO, device, socket or directory.
    #[error("{what} `{}` is {kind}, not a regular file", .path.display())]
    NotRegular {
        what: &'static str,
        path: PathBuf,
        /// `a FIFO (named pipe)`, `a character device`, …
        kind: &'static str,
    },
    /// Larger than the kind allows.
    #[error("{what} `{}` is larger than {limit}", .path.display())]
    TooLarge {
        what: &'static str,
        path: PathBuf,
        /// The bound in words.
        limit: String,
    },
}

impl SideFileError {
    /// The reason alone, without the file, for callers whose message names the file already:
    /// `it is a FIFO (named pipe), not a regular file`.
    pub fn reason(&self) -> String {
        match self {
            SideFileError::Io { source, .. } => source.to_string(),
            SideFileError::NotRegular { kind, .. } => format!("it is {kind}, not a regular file"),
            SideFileError::TooLarge { limit, .. } => format!("it is larger than {limit}"),
        }
    }

    /// The error's kind as an I/O error kind (`NotFound` stays `NotFound`).
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            SideFileError::Io { source, .. } => source.kind(),
            SideFileError::NotRegular { .. } => io::ErrorKind::InvalidInput,
            SideFileError::TooLarge { .. } => io::ErrorKind::InvalidData,
        }
    }
}

impl From<SideFileError> for io::Error {
    fn from(e: SideFileError) -> io::Error {
        io::Error::new(e.io_kind(), e)
    }
}

/// What a non-regular file is, in words.
pub fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

/// Checks that `path` (after following symlinks) is a regular file and returns its metadata.
/// Does not open it, so a FIFO is never waited on.
pub fn check_regular(path: &Path, kind: SideFile) -> Result<std::fs::Metadata, SideFileError> {
    let meta = std::fs::metadata(path).map_err(|source| SideFileError::Io {
        what: kind.what,
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(SideFileError::NotRegular {
            what: kind.what,
            path: path.to_path_buf(),
            kind: file_kind(&meta),
        });
    }
    Ok(meta)
}

/// Opens a regular file of this kind that is not larger than its bound. The type is checked
/// before opening (opening a FIFO blocks) and again on the open handle, in case the path was
/// swapped in between.
pub fn open(path: &Path, kind: SideFile) -> Result<File, SideFileError> {
    let meta = check_regular(path, kind)?;
    let too_large = || SideFileError::TooLarge {
        what: kind.what,
        path: path.to_path_buf(),
        limit: kind.limit_text(),
    };
    if meta.len() > kind.limit {
        return Err(too_large());
    }
    let io = |source| SideFileError::Io {
        what: kind.what,
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(SideFileError::NotRegular {
            what: kind.what,
            path: path.to_path_buf(),
            kind: file_kind(&meta),
        });
    }
    if meta.len() > kind.limit {
        return Err(too_large());
    }
    Ok(file)
}

/// Reads a whole side file: regular files only, at most `kind.limit` bytes (a file that grows
/// past the bound while being read is refused too).
pub fn read(path: &Path, kind: SideFile) -> Result<Vec<u8>, SideFileError> {
    let file = open(path, kind)?;
    let mut buf = Vec::new();
    // One byte past the bound tells "at the bound" from "larger".
    file.take(kind.limit + 1)
        .read_to_end(&mut buf)
        .map_err(|source| SideFileError::Io {
            what: kind.what,
            path: path.to_path_buf(),
            source,
        })?;
    if buf.len() as u64 > kind.limit {
        return Err(SideFileError::TooLarge {
            what: kind.what,
            path: path.to_path_buf(),
            limit: kind.limit_text(),
        });
    }
    Ok(buf)
}

/// Reads a whole side file as UTF-8 text (see [`read`]).
pub fn read_to_string(path: &Path, kind: SideFile) -> Result<String, SideFileError> {
    let bytes = read(path, kind)?;
    String::from_utf8(bytes).map_err(|e| SideFileError::Io {
        what: kind.what,
        path: path.to_path_buf(),
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the file is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        ),
    })
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= GIB && n % GIB == 0 => format!("{} GiB", n / GIB),
        n if n >= MIB && n % MIB == 0 => format!("{} MiB", n / MIB),
        n if n >= KIB && n % KIB == 0 => format!("{} KiB", n / KIB),
        n => format!("{n} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: SideFile = SideFile {
        what: "test list",
        limit: 8,
    };

    #[test]
    fn reads_a_regular_file_up_to_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, "12345678").unwrap();
        assert_eq!(read(&p, SMALL).unwrap(), b"12345678");
        std::fs::write(&p, "123456789").unwrap();
        let e = read(&p, SMALL).unwrap_err();
        assert!(matches!(e, SideFileError::TooLarge { .. }), "{e}");
        assert!(e.to_string().contains("a.txt"), "{e}");
    }

    #[test]
    fn refuses_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let e = read(dir.path(), SMALL).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
    }

    /// Regression: `/dev/zero` as a revocation list grew memory until the process was killed.
    #[cfg(unix)]
    #[test]
    fn dev_zero_is_refused_as_a_character_device() {
        let e = read(Path::new("/dev/zero"), REVOCATION_LIST).unwrap_err();
        assert_eq!(
            e.to_string(),
            "revocation list `/dev/zero` is a character device, not a regular file"
        );
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn missing_file_keeps_not_found() {
        let e = read(Path::new("/nonexistent/x"), SMALL).unwrap_err();
        assert_eq!(e.io_kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn bounds_read_as_words() {
        assert_eq!(REVOCATION_LIST.limit_text(), "1 GiB");
        assert_eq!(PIPELINE.limit_text(), "16 MiB");
        assert_eq!(KEY_FILE.limit_text(), "4 KiB");
        assert!(REVOCATION_LIST.hint().contains("at most 1 GiB"));
    }
}
