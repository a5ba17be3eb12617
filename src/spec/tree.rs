//! A deploy repo's files at one commit, in memory: what `source` reads out of
//! git and what `render` consumes. Symlinks are resolved here and may not
//! leave the deploy repo.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::error::InvalidError;

/// One entry of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// File contents and whether git marks it executable.
    File { bytes: Vec<u8>, executable: bool },
    /// A symlink and its target as stored in git.
    Symlink(String),
}

/// Files of the deploy repo (below its sub-path), keyed by relative path.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    entries: BTreeMap<PathBuf, Entry>,
}

/// How many symlinks may be followed while resolving one path.
const MAX_LINKS: usize = 16;

impl Tree {
    /// Add an entry at `path` (relative to the deploy repo root).
    pub fn insert(&mut self, path: PathBuf, entry: Entry) {
        self.entries.insert(path, entry);
    }

    /// The bytes of `path`, following symlinks that stay inside the repo;
    /// `None` when there is no such file.
    pub fn read(&self, path: &str) -> Result<Option<(&[u8], bool)>, InvalidError> {
        let mut current = PathBuf::from(path);
        for _ in 0..MAX_LINKS {
            match self.entries.get(&current) {
                None => return Ok(None),
                Some(Entry::File { bytes, executable }) => return Ok(Some((bytes, *executable))),
                Some(Entry::Symlink(target)) => {
                    current = resolve_link(&current, target).ok_or_else(|| InvalidError::Repo {
                        file: path.to_string(),
                        message: format!(
                            "symlink to {target:?} points outside the deploy repo; commit the file itself instead"
                        ),
                    })?;
                }
            }
        }
        Err(InvalidError::Repo {
            file: path.to_string(),
            message: "too many levels of symlinks".into(),
        })
    }

    /// A UTF-8 text file, or `None` when missing.
    pub fn read_text(&self, path: &str) -> Result<Option<String>, InvalidError> {
        match self.read(path)? {
            None => Ok(None),
            Some((bytes, _)) => {
                String::from_utf8(bytes.to_vec())
                    .map(Some)
                    .map_err(|_| InvalidError::Repo {
                        file: path.to_string(),
                        message: "is not UTF-8 text".into(),
                    })
            }
        }
    }

    /// A working tree on disk (for `plumb validate`), without `.git`.
    pub fn from_dir(dir: &Path) -> std::io::Result<Tree> {
        let mut tree = Tree::default();
        read_dir(dir, Path::new(""), &mut tree)?;
        Ok(tree)
    }

    /// Relative paths of all entries under `dir` (recursively), in order.
    pub fn list(&self, dir: &str) -> Vec<&Path> {
        let dir = Path::new(dir);
        self.entries
            .keys()
            .filter(|p| p.starts_with(dir))
            .map(PathBuf::as_path)
            .collect()
    }
}

fn read_dir(base: &Path, rel: &Path, tree: &mut Tree) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(base.join(rel))? {
        let entry = entry?;
        let name = entry.file_name();
        if name == ".git" {
            continue;
        }
        let path = rel.join(&name);
        let meta = std::fs::symlink_metadata(base.join(&path))?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(base.join(&path))?;
            tree.insert(path, Entry::Symlink(target.to_string_lossy().into_owned()));
        } else if meta.is_dir() {
            read_dir(base, &path, tree)?;
        } else {
            let bytes = std::fs::read(base.join(&path))?;
            let executable = meta.permissions().mode() & 0o111 != 0;
            tree.insert(path, Entry::File { bytes, executable });
        }
    }
    Ok(())
}

/// Where a symlink at `link` with `target` points, relative to the repo root,
/// or `None` if it leaves the repo (absolute, or too many `..`).
fn resolve_link(link: &Path, target: &str) -> Option<PathBuf> {
    let target = Path::new(target);
    if target.is_absolute() {
        return None;
    }
    let mut parts: Vec<&std::ffi::OsStr> = link
        .parent()
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    for component in target.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Tree {
        let mut t = Tree::default();
        t.insert(
            "templates/a.j2".into(),
            Entry::File {
                bytes: b"A".to_vec(),
                executable: false,
            },
        );
        t.insert("templates/b.j2".into(), Entry::Symlink("a.j2".into()));
        t.insert("files/c".into(), Entry::Symlink("../templates/b.j2".into()));
        t.insert(
            "files/evil".into(),
            Entry::Symlink("../../etc/shadow".into()),
        );
        t.insert("files/abs".into(), Entry::Symlink("/etc/shadow".into()));
        t.insert("files/loop".into(), Entry::Symlink("loop".into()));
        t
    }

    #[test]
    fn follows_links_inside_the_repo() {
        assert_eq!(tree().read("files/c").unwrap().unwrap().0, b"A");
        assert!(tree().read("missing").unwrap().is_none());
    }

    #[test]
    fn refuses_links_that_escape() {
        for bad in ["files/evil", "files/abs", "files/loop"] {
            let err = tree().read(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}
