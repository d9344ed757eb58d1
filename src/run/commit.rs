//! The staged commit: every file a run produces (data files, splits, release files, the
//! quarantine report) is finished and fsynced under a temporary name first, then all of them
//! become visible together with the run's `succeeded` record, or none does.
//!
//! The protocol, under a lock on the state folder and on every output folder (so two runs
//! writing the same outputs commit one after the other, never interleaved):
//! 1. the commit intent (the finished record and every rename) goes into the run's journal
//!    entry, fsynced;
//! 2. each temporary file is renamed into place and its folder fsynced;
//! 3. the record is appended to the lineage store;
//! 4. the journal entry is removed.
//!
//! A process that dies between 1 and 4 leaves an intent whose files are all complete, so
//! recovery rolls it forward: it renames what is left, checks every file's SHA-256 and appends
//! the record. Only when a file of the intent is gone (removed by hand) does recovery roll back,
//! removing the files of the intent it finds and recording the run as failed. An in-process
//! failure during 2 or 3 rolls back at once. Depends on: `journal`, `lineage::store`, `emit`.

use super::journal::{self, Intent, Journal, Move, Pending};
use crate::emit::{self, AtomicParquet};
use crate::lineage::record::RunRecord;
use crate::lineage::store::Store;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Environment variable that makes the commit path kill its own process at the N-th fault
/// point (1-based): before and after the intent is written, before and after each rename,
/// before and after the lineage append. For crash tests only.
pub const FAULT_ENV: &str = "PRIVPREP_FAULT_AT";

static FAULT_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A point where a crash test may stop the process, as a SIGKILL would: no destructor runs.
fn fault_point() {
    let Some(at) = std::env::var(FAULT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
    else {
        return;
    };
    if FAULT_COUNTER.fetch_add(1, Ordering::SeqCst) + 1 == at {
        std::process::abort();
    }
}

/// Why a commit failed. Whatever the commit had renamed was taken back.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("{path}: cannot commit the run's outputs: {source}\n  = hint: nothing of this run is left in place; check the folder's permissions and free disk space")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot record the run in the lineage store: {0}\n  = hint: the outputs were taken back, so nothing of this run is left in place")]
    Lineage(String),
    #[error("a subject of this run was erased (`privprep subject forget` or `sweep`) while the run went on, so its outputs were not committed\n  = hint: run the pipeline again: it drops the subject as `erased`")]
    Erased,
    #[error(
        "another run is committing to the same outputs and the lock on {path} failed: {source}"
    )]
    Lock {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// One finished temporary file waiting for its rename.
#[derive(Debug)]
struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
    sha256: String,
}

/// Every temporary output of a run. Dropped without a commit, it removes them all.
#[derive(Debug, Default)]
pub struct StagedCommit {
    files: Vec<Staged>,
    /// Files deleted by the commit, after the renames.
    removes: Vec<PathBuf>,
    /// The subject index keys of every kept row (sorted): the commit refuses them if any was
    /// erased after the run read the erasure list.
    subjects: Vec<u64>,
}

impl StagedCommit {
    pub fn new() -> StagedCommit {
        StagedCommit::default()
    }

    /// Takes a finished Parquet file (its SHA-256 already known).
    pub fn add_parquet(&mut self, w: AtomicParquet, sha256: String) {
        let (tmp, dest) = w.into_paths();
        self.files.push(Staged { tmp, dest, sha256 });
    }

    /// Takes a finished file or folder (an output another engine wrote, such as a Parquet
    /// folder) at `tmp`, whose [`emit::sha256_file`] is `sha256`, to be renamed to `dest`.
    pub fn add_path(&mut self, tmp: PathBuf, dest: PathBuf, sha256: String) {
        self.files.push(Staged { tmp, dest, sha256 });
    }

    /// Writes `bytes` to a temporary file beside `dest` (fsynced) and stages it.
    pub fn add_bytes(
        &mut self,
        dest: &Path,
        run_id: &str,
        bytes: &[u8],
    ) -> Result<String, emit::EmitError> {
        let (tmp, sha256) = emit::write_temp(dest, run_id, bytes)?;
        self.files.push(Staged {
            tmp,
            dest: dest.to_path_buf(),
            sha256: sha256.clone(),
        });
        Ok(sha256)
    }

    /// Takes over the staged files of `other` whose destination `keep` accepts; the others are
    /// removed (as `other` is dropped).
    pub fn absorb(&mut self, mut other: StagedCommit, keep: impl Fn(&Path) -> bool) {
        let (kept, dropped) = std::mem::take(&mut other.files)
            .into_iter()
            .partition(|f| keep(&f.dest));
        other.files = dropped;
        self.files.extend(kept);
        self.removes.append(&mut other.removes);
        // What an erasure regenerates is checked against its own list before it is taken.
    }

    /// Makes the commit refuse these subject index keys (sorted) if any is on the erasure list
    /// when it commits.
    pub fn guard_subjects(&mut self, sorted: Vec<u64>) {
        self.subjects = sorted;
    }

    /// Deletes `path` as part of the commit, after every rename.
    pub fn remove(&mut self, path: &Path) {
        self.removes.push(path.to_path_buf());
    }

    fn moves(&self) -> Vec<Move> {
        self.files
            .iter()
            .map(|f| Move {
                tmp: f.tmp.clone(),
                dest: f.dest.clone(),
                sha256: f.sha256.clone(),
            })
            .collect()
    }

    /// Makes every staged file visible together with `record`, which is appended to `store`.
    /// Returns the record's hash. On failure nothing of the run is left in place.
    pub fn commit(
        mut self,
        state_dir: &Path,
        journal: &Journal,
        pending: &mut Pending,
        record: &RunRecord,
        store: &mut Store,
    ) -> Result<String, CommitError> {
        let moves = self.moves();
        let _state = lock_state(state_dir)?;
        // A dead run's half-done commit to these outputs is finished before ours starts.
        recover_locked(state_dir, store);
        // An erasure committed while the run went on: its subjects must not come back.
        if !self.subjects.is_empty() {
            let erased = store
                .erased_keys()
                .map_err(|e| CommitError::Lineage(e.to_string()))?;
            if erased
                .iter()
                .any(|k| self.subjects.binary_search(k).is_ok())
            {
                return Err(CommitError::Erased);
            }
        }
        let _dirs = lock_dirs(
            moves
                .iter()
                .map(|m| m.dest.as_path())
                .chain(self.removes.iter().map(PathBuf::as_path)),
        )?;

        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| CommitError::Io { path, source }
        };
        fault_point();
        pending.commit = Some(Intent {
            record: record.clone(),
            moves: moves.clone(),
            removes: self.removes.clone(),
        });
        journal.write(pending).map_err(io(journal.path()))?;
        fault_point();

        let mut done: Vec<&Move> = Vec::new();
        let mut failure = None;
        for m in &moves {
            fault_point();
            if let Err(e) = put_in_place(m) {
                failure = Some(CommitError::Io {
                    path: m.dest.display().to_string(),
                    source: e,
                });
                break;
            }
            done.push(m);
            fault_point();
        }
        if failure.is_none() {
            if let Err(e) = remove_durably(&self.removes) {
                failure = Some(e);
            }
        }
        let result = match failure {
            Some(e) => Err(e),
            None => {
                fault_point();
                store
                    .append(record)
                    .map_err(|e| CommitError::Lineage(e.to_string()))
            }
        };
        match result {
            Ok(hash) => {
                fault_point();
                // The files are in place and recorded: nothing is left to remove but what
                // they replaced.
                self.files.clear();
                drop_replaced(&moves);
                let _ = journal.remove();
                Ok(hash)
            }
            Err(e) => {
                for m in done {
                    take_back(m);
                }
                // Back to a plain pending entry, so a later crash is recorded as failed.
                pending.commit = None;
                let _ = journal.write(pending);
                Err(e)
            }
        }
    }
}

/// The journal entry and commit of a command that changes committed outputs outside a run (an
/// erasure, a retention sweep, a key rotation): the same protocol as a run's, so a killed one
/// is rolled back or finished by the next command.
pub struct Journaled {
    journal: Journal,
    pending: Pending,
}

impl Journaled {
    /// Writes the journal entry of `record` (not yet succeeded), listing the temporary files
    /// the command may make.
    pub fn begin(
        state_dir: &Path,
        record: &RunRecord,
        temp_files: Vec<PathBuf>,
    ) -> Result<Journaled, CommitError> {
        let journal = Journal::new(state_dir, &record.run_id);
        let pending = Pending {
            pid: std::process::id(),
            started: journal::own_start_time(),
            record: record.clone(),
            temp_files,
            commit: None,
        };
        journal.write(&pending).map_err(|source| CommitError::Io {
            path: journal.path().display().to_string(),
            source,
        })?;
        Ok(Journaled { journal, pending })
    }

    /// Commits `staged` with `record` marked succeeded; returns the record and its hash. On
    /// failure the record is appended as failed (saying why) and the error returned.
    pub fn commit(
        mut self,
        state_dir: &Path,
        staged: StagedCommit,
        mut record: RunRecord,
        store: &mut Store,
    ) -> Result<(RunRecord, String), CommitError> {
        record.finished_at = chrono::Utc::now().to_rfc3339();
        let mut done = record.clone();
        done.status = crate::lineage::record::RunStatus::Succeeded;
        match staged.commit(state_dir, &self.journal, &mut self.pending, &done, store) {
            Ok(hash) => Ok((done, hash)),
            Err(e) => {
                record.mark_failed(e.to_string());
                if store.append(&record).is_ok() {
                    let _ = self.journal.remove();
                }
                Err(e)
            }
        }
    }
}

impl Drop for StagedCommit {
    fn drop(&mut self) {
        for f in &self.files {
            remove_path(&f.tmp);
        }
    }
}

/// Deletes each file (one already gone is fine) and fsyncs its folder.
fn remove_durably(paths: &[PathBuf]) -> Result<(), CommitError> {
    for p in paths {
        let io = |source| CommitError::Io {
            path: p.display().to_string(),
            source,
        };
        // A folder output (another engine's) goes with everything in it; a removal cut short
        // is finished by recovery, which removes again.
        let removed = if p.is_dir() {
            std::fs::remove_dir_all(p)
        } else {
            std::fs::remove_file(p)
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(e)),
        }
        fault_point();
        File::open(crate::spec::base_dir(p))
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

/// Puts a move's file or folder in place. rename(2) replaces a file atomically but not a
/// folder, nor a file by a folder, so when either is a folder what `dest` holds is first
/// renamed aside ([`replaced`]) and removed only once the record is appended.
fn put_in_place(m: &Move) -> std::io::Result<()> {
    if (m.tmp.is_dir() || m.dest.is_dir()) && m.dest.symlink_metadata().is_ok() {
        std::fs::rename(&m.dest, replaced(m))?;
    }
    rename_durably(&m.tmp, &m.dest)
}

/// Where [`put_in_place`] keeps what a folder move replaced, until the commit is done.
fn replaced(m: &Move) -> PathBuf {
    let mut p = m.tmp.clone().into_os_string();
    p.push(".replaced");
    p.into()
}

/// Removes what the moves replaced (the commit is recorded).
fn drop_replaced(moves: &[Move]) {
    for m in moves {
        remove_path(&replaced(m));
    }
}

/// Undoes a move: removes what it put in place and restores what it replaced.
fn take_back(m: &Move) {
    remove_path(&m.dest);
    restore_replaced(m);
}

/// Puts back what a move set aside, when nothing took its place.
fn restore_replaced(m: &Move) {
    let old = replaced(m);
    if old.symlink_metadata().is_ok() && m.dest.symlink_metadata().is_err() {
        let _ = std::fs::rename(&old, &m.dest);
    }
}

/// Removes a file, or a folder with everything in it; one that is gone is fine.
pub(super) fn remove_path(p: &Path) {
    if p.is_dir() {
        let _ = std::fs::remove_dir_all(p);
    } else {
        let _ = std::fs::remove_file(p);
    }
}

/// Renames and fsyncs the destination's folder.
fn rename_durably(tmp: &Path, dest: &Path) -> std::io::Result<()> {
    std::fs::rename(tmp, dest)?;
    File::open(crate::spec::base_dir(dest))?.sync_all()
}

/// An exclusive lock held until dropped.
struct Lock(#[allow(dead_code)] File);

/// Locks the state folder's commit lock: one commit or recovery at a time per state folder.
fn lock_state(state_dir: &Path) -> Result<Lock, CommitError> {
    let path = state_dir.join("commit.lock");
    let err = |source| CommitError::Lock {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(err)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    f.lock().map_err(err)?;
    Ok(Lock(f))
}

/// Locks every folder the outputs go to, in one order (no two runs can deadlock), so runs with
/// different state folders still never interleave their renames in one folder.
fn lock_dirs<'a>(dests: impl Iterator<Item = &'a Path>) -> Result<Vec<Lock>, CommitError> {
    let mut dirs: Vec<PathBuf> = dests
        .map(|d| crate::spec::paths::identity(&crate::spec::base_dir(d)))
        .collect();
    dirs.sort();
    dirs.dedup();
    let mut out = Vec::new();
    for d in dirs {
        let err = |source| CommitError::Lock {
            path: d.display().to_string(),
            source,
        };
        let f = File::open(&d).map_err(err)?;
        f.lock().map_err(err)?;
        out.push(Lock(f));
    }
    Ok(out)
}

/// Turns journal entries of runs whose process is gone into lineage records: a run that died
/// before its commit is recorded as failed (its temporary files removed); a run that died
/// during its commit is finished. Returns the run ids recovered.
pub fn recover_interrupted(state_dir: &Path, store: &mut Store) -> Vec<String> {
    if journal::entries(state_dir).is_empty() && journal::stale_temps(state_dir).is_empty() {
        return Vec::new();
    }
    match lock_state(state_dir) {
        Ok(_lock) => recover_locked(state_dir, store),
        Err(e) => {
            tracing::warn!("cannot recover interrupted runs: {e}");
            Vec::new()
        }
    }
}

/// [`recover_interrupted`] with the state lock already held.
fn recover_locked(state_dir: &Path, store: &mut Store) -> Vec<String> {
    for t in journal::stale_temps(state_dir) {
        let _ = std::fs::remove_file(t);
    }
    let mut recovered = Vec::new();
    for j in journal::entries(state_dir) {
        let Some(p) = j.read() else {
            continue;
        };
        if journal::process_alive(p.pid, p.started) {
            continue;
        }
        let id = p.record.run_id.clone();
        let outcome = match p.commit {
            Some(intent) => finish_commit(intent, p.temp_files, store),
            None => record_failed(p.record, &p.temp_files, store),
        };
        match outcome {
            Ok(()) => {
                let _ = j.remove();
                recovered.push(id);
            }
            Err(e) => tracing::warn!(run_id = %id, "cannot recover the interrupted run: {e}"),
        }
    }
    recovered
}

pub(super) fn remove_temp_files(files: &[PathBuf]) {
    for t in files {
        remove_path(t);
    }
}

/// A run that died before its commit: nothing of it was renamed into place.
fn record_failed(
    mut record: RunRecord,
    temp_files: &[PathBuf],
    store: &mut Store,
) -> Result<(), String> {
    remove_temp_files(temp_files);
    if store
        .get(&record.run_id)
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Ok(());
    }
    record.mark_failed("interrupted: the process ended before the run finished (killed or crashed); no output was committed");
    record.finished_at = chrono::Utc::now().to_rfc3339();
    store.append(&record).map(|_| ()).map_err(|e| e.to_string())
}

/// A run that died during its commit: every file was complete before the first rename, so the
/// commit is finished; if a file of it is gone, the files of the intent are removed instead
/// and the run is recorded as failed, saying so.
fn finish_commit(
    intent: Intent,
    temp_files: Vec<PathBuf>,
    store: &mut Store,
) -> Result<(), String> {
    let run_id = intent.record.run_id.clone();
    let _dirs = lock_dirs(
        intent
            .moves
            .iter()
            .map(|m| m.dest.as_path())
            .chain(intent.removes.iter().map(PathBuf::as_path)),
    )
    .map_err(|e| e.to_string())?;
    if store.get(&run_id).map_err(|e| e.to_string())?.is_some() {
        // Recorded already: only the journal entry was left.
        remove_temp_files(&temp_files);
        return Ok(());
    }
    let mut missing = 0usize;
    for m in &intent.moves {
        if m.tmp.exists() {
            if let Err(e) = put_in_place(m) {
                tracing::warn!(path = %m.dest.display(), "cannot finish the rename: {e}");
                missing += 1;
            }
        } else if emit::sha256_file(&m.dest).ok().as_deref() != Some(m.sha256.as_str()) {
            missing += 1;
        }
    }
    if missing == 0 {
        remove_durably(&intent.removes).map_err(|e| e.to_string())?;
        remove_temp_files(&temp_files);
        store.append(&intent.record).map_err(|e| e.to_string())?;
        drop_replaced(&intent.moves);
        return Ok(());
    }
    // Roll back: remove what this run put in place, record the run as failed.
    for m in &intent.moves {
        if emit::sha256_file(&m.dest).ok().as_deref() == Some(m.sha256.as_str()) {
            remove_path(&m.dest);
        }
        restore_replaced(m);
        remove_path(&m.tmp);
    }
    remove_temp_files(&temp_files);
    let mut record = intent.record;
    record.mark_failed(format!("interrupted during the commit, and {missing} of its files could not be completed afterwards; the run's other files were removed, so no output of it is in place"));
    record.finished_at = chrono::Utc::now().to_rfc3339();
    store.append(&record).map(|_| ()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineage::record::RunStatus;

    struct Fixture {
        dir: tempfile::TempDir,
        store: Store,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("state/lineage.db")).unwrap();
            std::fs::create_dir_all(dir.path().join("out")).unwrap();
            Fixture { dir, store }
        }
        fn state(&self) -> PathBuf {
            self.dir.path().join("state")
        }
        fn out(&self, name: &str) -> PathBuf {
            self.dir.path().join("out").join(name)
        }
        /// A staged commit of `names`, each file holding its own name.
        fn staged(&self, run_id: &str, names: &[&str]) -> StagedCommit {
            let mut s = StagedCommit::new();
            for n in names {
                s.add_bytes(&self.out(n), run_id, n.as_bytes()).unwrap();
            }
            s
        }
        fn pending(&self, run_id: &str, pid: u32) -> (Journal, Pending) {
            let record = record(run_id);
            (
                Journal::new(&self.state(), run_id),
                Pending {
                    pid,
                    started: None,
                    record,
                    temp_files: Vec::new(),
                    commit: None,
                },
            )
        }
        /// A dead run's journal entry whose commit intent covers `names`, as if the process
        /// died right after its first rename. Returns the entry and the intent's moves.
        fn died_after_first_rename(&self, run_id: &str, names: &[&str]) -> (Journal, Vec<Move>) {
            let s = self.staged(run_id, names);
            let (j, mut p) = self.pending(run_id, dead_pid());
            let moves = s.moves();
            p.commit = Some(Intent {
                record: succeeded(run_id),
                moves: moves.clone(),
                removes: Vec::new(),
            });
            j.write(&p).unwrap();
            std::fs::rename(&moves[0].tmp, &moves[0].dest).unwrap();
            // The process is gone: nothing of it removes its temporary files.
            std::mem::forget(s);
            (j, moves)
        }

        fn status(&self, run_id: &str) -> Option<RunStatus> {
            self.store.get(run_id).unwrap().map(|r| r.record.status)
        }
    }

    fn record(run_id: &str) -> RunRecord {
        RunRecord::begin(run_id, "2026-11-26T00:00:00Z", "t", "t.toml", "00", "")
    }

    fn succeeded(run_id: &str) -> RunRecord {
        let mut r = record(run_id);
        r.status = RunStatus::Succeeded;
        r
    }

    fn temp_files(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.contains(emit::TMP_MARKER))
            .collect()
    }

    /// The pid of a process that has ended.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn a_dropped_staged_commit_removes_its_temporary_files() {
        let f = Fixture::new();
        let s = f.staged("r1", &["a.parquet", "b.jsonl"]);
        assert_eq!(temp_files(&f.dir.path().join("out")).len(), 2);
        drop(s);
        assert!(temp_files(&f.dir.path().join("out")).is_empty());
        assert!(!f.out("a.parquet").exists());
    }

    #[test]
    fn a_commit_puts_every_file_in_place_with_its_record() {
        let mut f = Fixture::new();
        let s = f.staged("r1", &["a.parquet", "b.jsonl"]);
        let (j, mut p) = f.pending("r1", std::process::id());
        j.write(&p).unwrap();
        let state = f.state();
        s.commit(&state, &j, &mut p, &succeeded("r1"), &mut f.store)
            .unwrap();
        assert_eq!(std::fs::read(f.out("a.parquet")).unwrap(), b"a.parquet");
        assert_eq!(std::fs::read(f.out("b.jsonl")).unwrap(), b"b.jsonl");
        assert_eq!(f.status("r1"), Some(RunStatus::Succeeded));
        assert!(!j.path().exists(), "the journal entry is removed");
        assert!(temp_files(&f.dir.path().join("out")).is_empty());
    }

    /// A process killed while it replaced its journal entry leaves the temporary file: the
    /// next recovery removes it when its writer is gone, and leaves a live writer's alone.
    #[test]
    fn recovery_removes_temporary_journal_files_of_dead_writers() {
        let mut f = Fixture::new();
        let runs = f.state().join("runs");
        std::fs::create_dir_all(&runs).unwrap();
        let dead = runs.join(format!(".r1.json.tmp-{}", dead_pid()));
        let live = runs.join(format!(".r2.json.tmp-{}", std::process::id()));
        std::fs::write(&dead, b"{").unwrap();
        std::fs::write(&live, b"{").unwrap();
        let state = f.state();
        recover_interrupted(&state, &mut f.store);
        assert!(!dead.exists());
        assert!(live.exists());
    }

    /// A run reads the erasure list when it starts; an erasure committed while it goes on
    /// must not see its subject come back with the run's commit.
    #[test]
    fn a_commit_refuses_a_subject_erased_while_the_run_went_on() {
        use crate::lineage::record::ErasureRecord;
        let mut f = Fixture::new();
        let mut erasure = succeeded("e1");
        erasure.erasure = Some(ErasureRecord {
            command: "forget".into(),
            requested_at: "2026-11-26T00:00:00Z".into(),
            reason: "erasure request".into(),
            subjects: vec![format!("{:016x}", 42u64)],
            revocation_lists: Vec::new(),
            outputs: Vec::new(),
        });
        f.store.append(&erasure).unwrap();
        let state = f.state();
        for (run, keys, ok) in [("r1", vec![7, 42, 99], false), ("r2", vec![7, 99], true)] {
            let mut s = f.staged(run, &[&format!("{run}.parquet")]);
            s.guard_subjects(keys);
            let (j, mut p) = f.pending(run, std::process::id());
            j.write(&p).unwrap();
            let result = s.commit(&state, &j, &mut p, &succeeded(run), &mut f.store);
            assert_eq!(result.is_ok(), ok, "{run}");
            if !ok {
                assert!(matches!(result, Err(CommitError::Erased)));
            }
            assert_eq!(f.out(&format!("{run}.parquet")).exists(), ok, "{run}");
        }
        assert!(temp_files(&f.dir.path().join("out")).is_empty());
    }

    #[test]
    fn a_failed_rename_takes_back_what_was_renamed_and_records_nothing() {
        let mut f = Fixture::new();
        let s = f.staged("r1", &["a.parquet", "b.parquet"]);
        // The second file is gone before its rename: the rename fails.
        std::fs::remove_file(&s.files[1].tmp).unwrap();
        let (j, mut p) = f.pending("r1", std::process::id());
        let state = f.state();
        let err = s
            .commit(&state, &j, &mut p, &succeeded("r1"), &mut f.store)
            .unwrap_err();
        assert!(matches!(err, CommitError::Io { .. }), "{err}");
        assert!(
            !f.out("a.parquet").exists(),
            "the first rename is taken back"
        );
        assert_eq!(f.status("r1"), None);
        // The journal is a plain pending entry again: a later crash is recorded as failed.
        assert!(j.read().unwrap().commit.is_none());
        assert!(temp_files(&f.dir.path().join("out")).is_empty());
    }

    #[test]
    fn recovery_finishes_a_dead_runs_commit() {
        let mut f = Fixture::new();
        let (j, _) = f.died_after_first_rename("r1", &["a.parquet", "b.parquet"]);
        let state = f.state();
        assert_eq!(recover_interrupted(&state, &mut f.store), vec!["r1"]);
        assert_eq!(f.status("r1"), Some(RunStatus::Succeeded));
        assert_eq!(std::fs::read(f.out("b.parquet")).unwrap(), b"b.parquet");
        assert!(!j.path().exists());
        assert!(temp_files(&f.dir.path().join("out")).is_empty());
    }

    #[test]
    fn recovery_rolls_back_an_intent_whose_file_is_gone() {
        let mut f = Fixture::new();
        let (_, moves) = f.died_after_first_rename("r1", &["a.parquet", "b.parquet"]);
        // Someone removed the second temporary file by hand.
        std::fs::remove_file(&moves[1].tmp).unwrap();
        let state = f.state();
        recover_interrupted(&state, &mut f.store);
        assert_eq!(f.status("r1"), Some(RunStatus::Failed));
        assert!(!f.out("a.parquet").exists(), "no half set is left in place");
        let error = f.store.get("r1").unwrap().unwrap().record.error.unwrap();
        assert!(
            error.contains("1 of its files could not be completed"),
            "{error}"
        );
    }

    #[test]
    fn recovery_of_a_run_that_died_before_its_commit_records_it_failed() {
        let mut f = Fixture::new();
        let s = f.staged("r1", &["a.parquet"]);
        let (j, mut p) = f.pending("r1", dead_pid());
        p.temp_files = s.moves().into_iter().map(|m| m.tmp).collect();
        j.write(&p).unwrap();
        std::mem::forget(s);
        // A live run's entry is left alone.
        let (live, live_p) = f.pending("r2", std::process::id());
        live.write(&live_p).unwrap();
        let state = f.state();
        assert_eq!(recover_interrupted(&state, &mut f.store), vec!["r1"]);
        assert_eq!(f.status("r1"), Some(RunStatus::Failed));
        assert_eq!(f.status("r2"), None);
        assert!(live.path().exists());
        assert!(temp_files(&f.dir.path().join("out")).is_empty());
        let error = f.store.get("r1").unwrap().unwrap().record.error.unwrap();
        assert!(error.contains("no output was committed"), "{error}");
    }

    /// A folder `name` staged by another engine (two part files holding `tag`), as a staged
    /// commit of it.
    fn staged_folder(f: &Fixture, run_id: &str, name: &str, tag: &str) -> StagedCommit {
        let tmp = emit::tmp_path_for(&f.out(name), run_id);
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(tmp.join("part-0.parquet"), tag).unwrap();
        std::fs::write(tmp.join("part-1.parquet"), tag).unwrap();
        let sha = emit::sha256_file(&tmp).unwrap();
        let mut s = StagedCommit::new();
        s.add_path(tmp, f.out(name), sha);
        s
    }

    fn folder_content(path: &Path) -> Vec<(String, Vec<u8>)> {
        emit::folder_files(path)
            .unwrap()
            .into_iter()
            .map(|(n, p)| (n, std::fs::read(p).unwrap()))
            .collect()
    }

    /// rename(2) cannot put a folder over a file or a non-empty folder: the commit moves the
    /// old one aside and removes it only once the record is in.
    #[test]
    fn a_folder_output_replaces_a_file_and_a_folder() {
        let mut f = Fixture::new();
        let state = f.state();
        std::fs::write(f.out("t.parquet"), b"an earlier run's file").unwrap();
        for (run, tag) in [("r1", "one"), ("r2", "two")] {
            let s = staged_folder(&f, run, "t.parquet", tag);
            let (j, mut p) = f.pending(run, std::process::id());
            j.write(&p).unwrap();
            s.commit(&state, &j, &mut p, &succeeded(run), &mut f.store)
                .unwrap();
            let got = folder_content(&f.out("t.parquet"));
            assert_eq!(got.len(), 2);
            assert!(got.iter().all(|(_, b)| b == tag.as_bytes()));
            assert_eq!(f.status(run), Some(RunStatus::Succeeded));
            // Nothing hidden is left beside it: no staging, nothing set aside.
            let names: Vec<String> = std::fs::read_dir(f.dir.path().join("out"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect();
            assert_eq!(names, ["t.parquet"]);
        }
    }

    /// A run that died after setting the old folder aside and before its own went in: the
    /// recovery puts the new folder in place and records the run; if the new one is gone,
    /// it puts the old one back.
    #[test]
    fn recovery_of_a_folder_commit_finishes_it_or_restores_the_old_folder() {
        for finishable in [true, false] {
            let mut f = Fixture::new();
            let state = f.state();
            let old = staged_folder(&f, "r0", "t.parquet", "old");
            let (j, mut p) = f.pending("r0", std::process::id());
            j.write(&p).unwrap();
            old.commit(&state, &j, &mut p, &succeeded("r0"), &mut f.store)
                .unwrap();
            let before = folder_content(&f.out("t.parquet"));

            let s = staged_folder(&f, "r1", "t.parquet", "new");
            let (j, mut p) = f.pending("r1", dead_pid());
            let moves = s.moves();
            p.commit = Some(Intent {
                record: succeeded("r1"),
                moves: moves.clone(),
                removes: Vec::new(),
            });
            j.write(&p).unwrap();
            std::fs::rename(&moves[0].dest, replaced(&moves[0])).unwrap();
            std::mem::forget(s);
            if !finishable {
                std::fs::remove_dir_all(&moves[0].tmp).unwrap();
            }
            recover_interrupted(&state, &mut f.store);
            let now = folder_content(&f.out("t.parquet"));
            if finishable {
                assert!(now.iter().all(|(_, b)| b == b"new"));
                assert_eq!(f.status("r1"), Some(RunStatus::Succeeded));
            } else {
                assert_eq!(now, before, "the old folder is back");
                assert_eq!(f.status("r1"), Some(RunStatus::Failed));
            }
            assert!(!replaced(&moves[0]).exists());
            assert!(!j.path().exists());
        }
    }

    /// A folder's hash covers every file's name and content at any depth.
    #[test]
    fn a_folders_hash_changes_with_any_file() {
        let f = Fixture::new();
        let dir = f.out("d");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a"), b"1").unwrap();
        std::fs::write(dir.join("sub/b"), b"2").unwrap();
        let first = emit::sha256_file(&dir).unwrap();
        assert_eq!(first, emit::sha256_file(&dir).unwrap());
        std::fs::write(dir.join("sub/b"), b"3").unwrap();
        let edited = emit::sha256_file(&dir).unwrap();
        assert_ne!(edited, first);
        std::fs::rename(dir.join("sub/b"), dir.join("sub/c")).unwrap();
        let renamed = emit::sha256_file(&dir).unwrap();
        assert_ne!(renamed, edited);
        std::fs::write(dir.join("e"), b"").unwrap();
        assert_ne!(emit::sha256_file(&dir).unwrap(), renamed);
    }
}
