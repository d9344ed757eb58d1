//! The run journal: what a run in progress leaves on disk so that the next command can account
//! for it if the process dies.
//!
//! One JSON file per run in `<state_dir>/runs/`. It holds the process id, the record as it
//! stood when the run began, the temporary files the run may have made, and, from the moment
//! the commit starts, the commit intent: the finished record and every rename the commit will
//! do. Recovery turns a dead run's entry into a `failed` record (no intent: nothing was renamed)
//! or finishes its commit (intent: every file was complete and fsynced before the first
//! rename). The file is replaced atomically, so a reader sees the old entry or the new one.

use crate::lineage::record::RunRecord;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One rename of a commit: a finished temporary file and where it goes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Move {
    pub tmp: PathBuf,
    pub dest: PathBuf,
    pub sha256: String,
}

/// What a commit is about to do: written (and fsynced) before the first rename.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Intent {
    /// The record to append once every file is in place (status `succeeded`).
    pub record: RunRecord,
    pub moves: Vec<Move>,
    /// Files the commit deletes after the renames (an erasure's unregenerable outputs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removes: Vec<PathBuf>,
}

/// A run's journal entry.
#[derive(Debug, Serialize, Deserialize)]
pub struct Pending {
    pub pid: u32,
    /// The process's start time (clock ticks since boot), to tell it from a later process
    /// with the same pid.
    #[serde(default)]
    pub started: Option<u64>,
    /// The record as it stood when the run began (status `failed`).
    pub record: RunRecord,
    /// Temporary files the run may have created; removed when a run without an intent is
    /// recovered.
    pub temp_files: Vec<PathBuf>,
    /// Present from the start of the commit until the record is appended.
    #[serde(default)]
    pub commit: Option<Intent>,
}

/// Folder of the journal entries.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("runs")
}

/// The journal entry of one run.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    pub fn new(state_dir: &Path, run_id: &str) -> Journal {
        Journal {
            path: dir(state_dir).join(format!("{run_id}.json")),
        }
    }

    pub fn at(path: PathBuf) -> Journal {
        Journal { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the entry atomically and durably.
    pub fn write(&self, pending: &Pending) -> std::io::Result<()> {
        use std::io::Write;
        let dir = crate::spec::base_dir(&self.path);
        std::fs::create_dir_all(&dir)?;
        let bytes = serde_json::to_vec(pending).map_err(std::io::Error::other)?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        std::fs::File::open(&dir)?.sync_all()
    }

    /// Reads the entry; `None` when it is missing or not a journal entry.
    pub fn read(&self) -> Option<Pending> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Removes the entry (the run is recorded).
    pub fn remove(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Every journal entry in the state folder.
pub fn entries(state_dir: &Path) -> Vec<Journal> {
    let Ok(list) = std::fs::read_dir(dir(state_dir)) else {
        return Vec::new();
    };
    let mut out: Vec<Journal> = list
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .map(Journal::at)
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Temporary journal files (`.<entry>.tmp-<pid>`) left by a process killed while it replaced
/// its entry: the entry itself is the old one or the new one, so these are litter.
pub fn stale_temps(state_dir: &Path) -> Vec<PathBuf> {
    let Ok(list) = std::fs::read_dir(dir(state_dir)) else {
        return Vec::new();
    };
    list.filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            name.starts_with('.')
                && name
                    .rsplit_once(".tmp-")
                    .and_then(|(_, pid)| pid.parse::<u32>().ok())
                    .is_some_and(|pid| !process_alive(pid, None))
        })
        .collect()
}

/// The state and start time (in clock ticks since boot) of a process, from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields after it start
    // after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 22 overall is the 20th after the command name (state is the 1st).
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// The start time of process `pid` (for the entry of a run whose engine is another process).
pub fn start_time(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, t)| t)
}

/// This process's start time, recorded in its journal entry so that a later process that
/// happens to get the same pid is not taken for it.
pub fn own_start_time() -> Option<u64> {
    proc_stat(std::process::id()).map(|(_, t)| t)
}

/// True while the process that wrote an entry may still be running. A zombie (killed, not
/// yet reaped by its parent) is not running, and neither is another process that reuses the
/// pid.
pub fn process_alive(pid: u32, started: Option<u64>) -> bool {
    if pid == std::process::id() {
        return true;
    }
    match proc_stat(pid) {
        Some((state, start)) => {
            !matches!(state, 'Z' | 'X' | 'x') && started.is_none_or(|s| s == start)
        }
        // No /proc entry (or no procfs): running only if the folder exists.
        None => Path::new(&format!("/proc/{pid}")).exists(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = std::process::id();
        assert!(process_alive(me, own_start_time()));
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id();
        let started = proc_stat(pid).map(|(_, t)| t);
        assert!(process_alive(pid, started));
        // Same pid, another start time: another process.
        assert!(!process_alive(pid, started.map(|t| t + 1)));
        child.kill().unwrap();
        // Killed but not reaped: a zombie is not running.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while proc_stat(pid).is_some_and(|(s, _)| s != 'Z') && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!process_alive(pid, started));
        child.wait().unwrap();
        assert!(!process_alive(pid, started));
    }
}
