//! Which file a path names, and the rule that no path a run writes may be a file it reads or
//! owns.
//!
//! Two spellings of one file (`out/../data/x.csv`, a symlink to it, a relative and an absolute
//! path) must compare equal, including for files that do not exist yet: the longest existing
//! ancestor is resolved through the file system (symlinks, `..`) and the rest is appended as
//! written. Depends on: nothing else in the crate.

use std::path::{Component, Path, PathBuf};

/// The file `path` names, as one canonical absolute path, whether or not it exists yet.
pub fn identity(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    if let Ok(c) = absolute.canonicalize() {
        return c;
    }
    // Walk up to the longest ancestor that exists, resolve it, and append the rest lexically.
    let mut rest: Vec<Component> = Vec::new();
    let mut head = absolute.as_path();
    loop {
        match head.canonicalize() {
            Ok(c) => {
                let mut out = c;
                for part in rest.iter().rev() {
                    match part {
                        Component::ParentDir => {
                            out.pop();
                        }
                        Component::CurDir => {}
                        other => out.push(other.as_os_str()),
                    }
                }
                return out;
            }
            Err(_) => match (head.parent(), head.components().next_back()) {
                (Some(parent), Some(last)) => {
                    rest.push(last);
                    head = parent;
                }
                _ => return absolute,
            },
        }
    }
}

/// How a run uses a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// The run reads it (inputs, manifest, lists, keys) or owns it (lineage store, journal).
    Read,
    /// The run writes it (outputs, splits, releases, the quarantine report).
    Write,
}

/// One path a run reads or writes, with where it was named.
#[derive(Debug, Clone)]
pub struct NamedPath {
    /// In words: "[output] path", "the lineage store", "release `by_country` path"…
    pub what: String,
    pub path: PathBuf,
    pub use_: Use,
    /// Byte span in the pipeline file, when the path was written there.
    pub span: Option<std::ops::Range<usize>>,
}

impl NamedPath {
    /// A path the run reads or owns.
    pub fn read(
        what: impl Into<String>,
        path: PathBuf,
        span: Option<std::ops::Range<usize>>,
    ) -> Self {
        NamedPath::new(what.into(), path, Use::Read, span)
    }

    /// A path the run writes.
    pub fn write(
        what: impl Into<String>,
        path: PathBuf,
        span: Option<std::ops::Range<usize>>,
    ) -> Self {
        NamedPath::new(what.into(), path, Use::Write, span)
    }

    fn new(what: String, path: PathBuf, use_: Use, span: Option<std::ops::Range<usize>>) -> Self {
        NamedPath {
            what,
            path,
            use_,
            span,
        }
    }
}

/// A written path that is also another path of the run.
#[derive(Debug, Clone)]
pub struct Collision<'a> {
    /// The path written.
    pub written: &'a NamedPath,
    /// The other use of the same file (read or written).
    pub other: &'a NamedPath,
}

/// Every pair where a written path names the same file as another path of the list (each pair
/// once, the written one first).
pub fn collisions(paths: &[NamedPath]) -> Vec<Collision<'_>> {
    let ids: Vec<PathBuf> = paths.iter().map(|p| identity(&p.path)).collect();
    let mut out = Vec::new();
    for (i, a) in paths.iter().enumerate() {
        if a.use_ != Use::Write {
            continue;
        }
        for (j, b) in paths.iter().enumerate() {
            if i == j || ids[i] != ids[j] {
                continue;
            }
            // Two writes are reported once, at the first.
            if b.use_ == Use::Write && j < i {
                continue;
            }
            out.push(Collision {
                written: a,
                other: b,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_dot_and_symlinks_name_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("x.csv"), "a\n").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&data, &link).unwrap();
        let a = identity(&data.join("x.csv"));
        assert_eq!(identity(&dir.path().join("out/../data/x.csv")), a);
        assert_eq!(identity(&link.join("x.csv")), a);
        // Files that do not exist yet still resolve through their existing ancestors.
        assert_eq!(
            identity(&link.join("new/../y.parquet")),
            identity(&data.join("y.parquet"))
        );
        assert_ne!(identity(&data.join("y.parquet")), a);
    }

    #[test]
    fn a_write_onto_a_read_or_another_write_collides() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let list = vec![
            NamedPath::read("input", p("a.parquet"), None),
            NamedPath::write("output", p("x/../a.parquet"), None),
            NamedPath::write("release", p("r.parquet"), None),
            NamedPath::write("report", p("r.parquet"), None),
            NamedPath::read("manifest", p("m.toml"), None),
        ];
        let found: Vec<(&str, &str)> = collisions(&list)
            .iter()
            .map(|c| (c.written.what.as_str(), c.other.what.as_str()))
            .collect();
        assert_eq!(found, vec![("output", "input"), ("release", "report")]);
    }
}
