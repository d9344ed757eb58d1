//! Getting bytes to disk: all-or-nothing files and background writer threads.
//!
//! Every file is written under a temporary name in the output folder and renamed into place
//! when complete, so an interrupted run never leaves a truncated file under a real name. (No
//! fsync: the data can always be regenerated from the seed.)
//!
//! The large files are encoded and written on their own threads, fed in order through bounded
//! channels, so that disk writes and Parquet compression overlap with generating the next rows.
//! Each file still has exactly one writer, so its bytes never depend on timing.

use std::fs::{self, File};
use std::io::{self, Write};
use std::mem;
use std::panic;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::{self, JoinHandle};

use super::DatagenError;

/// Size of the text chunks handed to a writer thread.
const CHUNK_BYTES: usize = 1 << 20;

/// Chunks a text file may have in flight.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Maps an I/O error on `path` to a [`DatagenError`].
pub(crate) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> DatagenError + '_ {
    move |source| DatagenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A file being written under a temporary name, renamed into place by [`AtomicFile::commit`]
/// and removed if dropped before that.
#[derive(Debug)]
pub(crate) struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    committed: bool,
}

impl AtomicFile {
    /// Starts writing `path` (through `.<name>.tmp` beside it).
    pub(crate) fn create(path: PathBuf) -> Result<(AtomicFile, File), DatagenError> {
        let name = path
            .file_name()
            .expect("output paths have a file name")
            .to_string_lossy();
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        let file = File::create(&tmp).map_err(io_error(&path))?;
        let this = AtomicFile {
            path,
            tmp,
            committed: false,
        };
        Ok((this, file))
    }

    /// The final path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the finished file to its real name. Close (drop) the file handle first.
    pub(crate) fn commit(mut self) -> Result<PathBuf, DatagenError> {
        fs::rename(&self.tmp, &self.path).map_err(io_error(&self.path))?;
        self.committed = true;
        Ok(mem::take(&mut self.path))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: the run is failing anyway, and its error says why.
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Writes a whole small file atomically.
pub(crate) fn write_small_file(path: PathBuf, contents: &[u8]) -> Result<PathBuf, DatagenError> {
    let (atomic, mut file) = AtomicFile::create(path)?;
    file.write_all(contents).map_err(io_error(atomic.path()))?;
    drop(file);
    atomic.commit()
}

enum Message<T> {
    Item(T),
    Commit,
}

/// A writer thread that owns one output file. Items sent to it are consumed in order; the
/// file is committed by [`Background::finish`], and discarded if the `Background` is dropped
/// without it.
pub(crate) struct Background<T> {
    sender: Option<SyncSender<Message<T>>>,
    /// Returns the committed path, or `None` when abandoned.
    thread: Option<JoinHandle<Result<Option<PathBuf>, DatagenError>>>,
}

impl<T: Send + 'static> Background<T> {
    /// Starts a thread that feeds each item to `consume` along with `state`, and on
    /// [`Background::finish`] hands `state` to `finish`, which completes and commits the file.
    /// At most `depth` items wait in between.
    pub(crate) fn spawn<S>(
        path: &Path,
        depth: usize,
        mut state: S,
        mut consume: impl FnMut(&mut S, T) -> Result<(), DatagenError> + Send + 'static,
        finish: impl FnOnce(S) -> Result<PathBuf, DatagenError> + Send + 'static,
    ) -> Result<Background<T>, DatagenError>
    where
        S: Send + 'static,
    {
        let (sender, receiver) = sync_channel(depth);
        let thread = thread::Builder::new()
            .name("datagen-writer".into())
            .spawn(move || loop {
                match receiver.recv() {
                    Ok(Message::Item(item)) => consume(&mut state, item)?,
                    Ok(Message::Commit) => return finish(state).map(Some),
                    // Abandoned: dropping `state` removes the temporary file.
                    Err(_) => return Ok(None),
                }
            })
            .map_err(io_error(path))?;
        Ok(Background {
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    /// Queues one item, waiting while the thread is `depth` items behind.
    pub(crate) fn send(&mut self, item: T) -> Result<(), DatagenError> {
        let sender = self.sender.as_ref().expect("send after finish");
        match sender.send(Message::Item(item)) {
            Ok(()) => Ok(()),
            Err(_) => Err(self.stopped_early()),
        }
    }

    /// Lets the thread drain its queue, complete the file and commit it.
    pub(crate) fn finish(mut self) -> Result<PathBuf, DatagenError> {
        let sender = self.sender.take().expect("finish called once");
        if sender.send(Message::Commit).is_err() {
            return Err(self.stopped_early());
        }
        drop(sender);
        match self.join() {
            Ok(Some(path)) => Ok(path),
            Ok(None) => unreachable!("the thread saw the commit message"),
            Err(e) => Err(e),
        }
    }

    /// The error that made the thread stop before it was told to.
    fn stopped_early(&mut self) -> DatagenError {
        self.sender = None;
        match self.join() {
            Err(e) => e,
            Ok(_) => unreachable!("the writer thread only stops early on an error"),
        }
    }

    fn join(&mut self) -> Result<Option<PathBuf>, DatagenError> {
        let thread = self.thread.take().expect("joined once");
        thread
            .join()
            .unwrap_or_else(|payload| panic::resume_unwind(payload))
    }
}

impl<T> Drop for Background<T> {
    fn drop(&mut self) {
        // Closing the channel without a commit makes the thread discard the file; wait for it
        // so the temporary file is gone when the error reaches the caller.
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A text file written in chunks by a [`Background`] thread. Append whole records to
/// [`ChunkedFile::text`] and call [`ChunkedFile::end_record`] after each.
pub(crate) struct ChunkedFile {
    chunk: String,
    writer: Background<String>,
}

impl ChunkedFile {
    pub(crate) fn create(path: PathBuf) -> Result<ChunkedFile, DatagenError> {
        let (atomic, file) = AtomicFile::create(path)?;
        let path = atomic.path().to_path_buf();
        let writer = Background::spawn(
            &path,
            CHUNKS_IN_FLIGHT,
            (atomic, file),
            |(atomic, file), chunk: String| {
                file.write_all(chunk.as_bytes())
                    .map_err(io_error(atomic.path()))
            },
            |(atomic, file)| {
                drop(file);
                atomic.commit()
            },
        )?;
        Ok(ChunkedFile {
            chunk: String::with_capacity(CHUNK_BYTES),
            writer,
        })
    }

    /// The buffer to append the next record to.
    pub(crate) fn text(&mut self) -> &mut String {
        &mut self.chunk
    }

    /// Hands the buffer to the writer thread once it is full.
    pub(crate) fn end_record(&mut self) -> Result<(), DatagenError> {
        if self.chunk.len() >= CHUNK_BYTES {
            let full = mem::replace(&mut self.chunk, String::with_capacity(CHUNK_BYTES));
            self.writer.send(full)?;
        }
        Ok(())
    }

    /// Writes what is left and commits the file.
    pub(crate) fn finish(mut self) -> Result<PathBuf, DatagenError> {
        if !self.chunk.is_empty() {
            self.writer.send(mem::take(&mut self.chunk))?;
        }
        self.writer.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_file_commits_everything_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lines.txt");
        let mut file = ChunkedFile::create(path.clone()).unwrap();
        let mut expected = String::new();
        for i in 0..200_000 {
            let line = format!("line {i}\n");
            file.text().push_str(&line);
            expected.push_str(&line);
            file.end_record().unwrap();
        }
        assert!(!path.exists(), "visible before commit");
        assert_eq!(file.finish().unwrap(), path);
        assert_eq!(fs::read_to_string(&path).unwrap(), expected);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temporary file left"
        );
    }

    #[test]
    fn dropped_writer_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = ChunkedFile::create(dir.path().join("gone.txt")).unwrap();
        file.text().push_str(&"x".repeat(3 * CHUNK_BYTES));
        file.end_record().unwrap();
        drop(file);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn consumer_errors_reach_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("never");
        let mut writer = Background::spawn(
            &path,
            1,
            (),
            |_, fail: bool| {
                if fail {
                    Err(io_error(Path::new("never"))(
                        io::ErrorKind::StorageFull.into(),
                    ))
                } else {
                    Ok(())
                }
            },
            |_| unreachable!(),
        )
        .unwrap();
        writer.send(false).unwrap();
        let err = loop {
            if let Err(e) = writer.send(true) {
                break e;
            }
        };
        assert!(matches!(err, DatagenError::Io { .. }), "{err}");
    }
}
