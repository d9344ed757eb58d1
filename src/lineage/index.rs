//! Where the subject index lives, and reading one set of it.
//!
//! Each committed output's subject set is a file beside the store, in the store's index folder
//! (`lineage.db` → `lineage.index/`), named `<run id>.<n>.keys`, committed with the outputs
//! (so a killed run leaves its sets as it leaves its outputs) and listed with its SHA-256 in
//! the run's record. The format is `privprep_kernels::subject`'s: sorted 64-bit keys.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use privprep_kernels::subject::{contains_with, KEY_BYTES};

/// The index folder of the store at `store`.
pub fn index_dir(store: &Path) -> PathBuf {
    store.with_extension("index")
}

/// The file name of a run's `n`-th set.
pub fn set_file_name(run_id: &str, n: usize) -> String {
    format!("{run_id}.{n}.keys")
}

/// Whether the set in `path` holds each of `keys` (`None` is held by no set): the file is
/// opened once and searched per key, a few reads each (a binary search).
pub fn set_holds(path: &Path, keys: &[Option<u64>]) -> io::Result<Vec<bool>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len() as usize / KEY_BYTES;
    let at = |i: usize| -> io::Result<u64> {
        let mut b = [0u8; KEY_BYTES];
        read_at(&file, &mut b, (i * KEY_BYTES) as u64)?;
        Ok(u64::from_le_bytes(b))
    };
    keys.iter()
        .map(|k| k.map_or(Ok(false), |k| contains_with(len, k, at)))
        .collect()
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    file.read_exact_at(buf, offset)
}

#[cfg(not(unix))]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut f = file;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}
