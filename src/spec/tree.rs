//! A deploy repo's files at one commit: what `source` lists out of git and
//! what `render` consumes. The listing holds names and content ids only;
//! a file's bytes are read when something asks for them (a template, a
//! copied file, an app's source being written into a release), so files
//! nothing references cost nothing. Symlinks are resolved here and may not
//! leave the deploy repo.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::InvalidError;
use crate::spec::settings::Limits;

/// One entry of the tree.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A file, and whether git marks it executable.
    File { blob: Blob, executable: bool },
    /// A symlink and its target as stored in git.
    Symlink(String),
}

/// Where the bytes of stored blobs are read from (the git mirror).
pub trait BlobStore: Send + Sync {
    /// The bytes of blob `id`, refused (without reading it) when larger
    /// than `max` bytes.
    fn read(&self, id: &str, max: u64) -> Result<Vec<u8>, BlobError>;
    /// The size of blob `id`, without reading it.
    fn size(&self, id: &str) -> Result<u64, BlobError>;
}

/// Why a blob's bytes were not had: the commit's fault (too large) or the
/// host's (the mirror could not be read).
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("is {size} bytes, larger than {max}")]
    TooLarge { size: u64, max: u64 },
    #[error("{0}")]
    Unreadable(String),
}

/// The bytes of one file: held in memory, or read from a store when asked.
#[derive(Clone)]
pub struct Blob(Arc<Repr>);

enum Repr {
    Held {
        id: String,
        bytes: Vec<u8>,
    },
    Stored {
        id: String,
        store: Arc<dyn BlobStore>,
    },
    /// A file of a working tree (`plumb validate`), read when asked.
    File {
        id: String,
        path: PathBuf,
        size: u64,
    },
}

/// Blobs are equal when their content is.
impl PartialEq for Blob {
    fn eq(&self, other: &Blob) -> bool {
        self.id() == other.id()
    }
}

impl Eq for Blob {}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "Blob({})", self.id())
    }
}

impl Blob {
    /// Bytes held in memory; their id is their SHA-256.
    pub fn held(bytes: Vec<u8>) -> Blob {
        use sha2::{Digest, Sha256};
        let id = hex::encode(Sha256::digest(&bytes));
        Blob(Arc::new(Repr::Held { id, bytes }))
    }

    /// A git blob of `store`: its id is `git:<object id>`.
    pub fn stored(oid: &str, store: Arc<dyn BlobStore>) -> Blob {
        Blob(Arc::new(Repr::Stored {
            id: format!("git:{oid}"),
            store,
        }))
    }

    /// A file of a working tree on disk: read when asked. Its id names the
    /// file as `lstat` saw it (path, size, mtime): good for one render,
    /// never recorded in a release.
    pub fn file(path: PathBuf, meta: &std::fs::Metadata) -> Blob {
        use std::os::unix::fs::MetadataExt;
        let id = format!(
            "file:{}:{}:{}.{}",
            path.display(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec()
        );
        Blob(Arc::new(Repr::File {
            id,
            path,
            size: meta.len(),
        }))
    }

    /// What identifies the content: the same id, the same bytes. A SHA-256
    /// (hex), `git:<object id>` (git's SHA-1 of the blob), or for a working
    /// tree's file `file:<path>:<size>:<mtime>`.
    pub fn id(&self) -> &str {
        match &*self.0 {
            Repr::Held { id, .. } | Repr::Stored { id, .. } | Repr::File { id, .. } => id,
        }
    }

    /// The size in bytes, without reading a stored blob.
    pub fn size(&self) -> Result<u64, BlobError> {
        match &*self.0 {
            Repr::Held { bytes, .. } => Ok(bytes.len() as u64),
            Repr::Stored { id, store } => store.size(id.strip_prefix("git:").unwrap_or(id)),
            Repr::File { size, .. } => Ok(*size),
        }
    }

    /// The bytes, read now if they are stored (at most `max` of them).
    pub fn bytes(&self, max: u64) -> Result<Cow<'_, [u8]>, BlobError> {
        match &*self.0 {
            Repr::Held { bytes, .. } if bytes.len() as u64 > max => Err(BlobError::TooLarge {
                size: bytes.len() as u64,
                max,
            }),
            Repr::Held { bytes, .. } => Ok(Cow::Borrowed(bytes)),
            Repr::Stored { id, store } => {
                let oid = id.strip_prefix("git:").unwrap_or(id);
                store.read(oid, max).map(Cow::Owned)
            }
            Repr::File { size, .. } if *size > max => Err(BlobError::TooLarge { size: *size, max }),
            Repr::File { path, .. } => {
                use std::io::Read;
                use std::os::unix::fs::OpenOptionsExt;
                let unreadable =
                    |e: std::io::Error| BlobError::Unreadable(format!("{}: {e}", path.display()));
                // Not a link swapped in since the listing, never a FIFO
                // that would block: a regular file or nothing.
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc_flags())
                    .open(path)
                    .map_err(unreadable)?;
                if !file.metadata().map_err(unreadable)?.is_file() {
                    return Err(unreadable(std::io::Error::other("not a regular file")));
                }
                let mut bytes = Vec::new();
                // Bounded even if the file grew since it was listed.
                file.take(max.saturating_add(1))
                    .read_to_end(&mut bytes)
                    .map_err(|e| BlobError::Unreadable(format!("{}: {e}", path.display())))?;
                if bytes.len() as u64 > max {
                    return Err(BlobError::TooLarge {
                        size: bytes.len() as u64,
                        max,
                    });
                }
                Ok(Cow::Owned(bytes))
            }
        }
    }
}

/// Files of the deploy repo (below its sub-path), keyed by relative path,
/// with the reading budget of one commit.
#[derive(Debug, Clone)]
pub struct Tree {
    entries: BTreeMap<PathBuf, Entry>,
    limits: Limits,
    /// What was read so far (shared by the clones of this tree).
    read: Arc<Mutex<Budget>>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree::new(Limits::default())
    }
}

/// Bytes read from one commit, and the contents they were read for.
#[derive(Debug, Default)]
struct Budget {
    total: u64,
    seen: HashSet<String>,
}

/// How many symlinks may be followed while resolving one path.
const MAX_LINKS: usize = 16;

/// A file's bytes and whether it is executable.
pub type Read<'a> = (Cow<'a, [u8]>, bool);

impl Tree {
    /// An empty tree that will read at most what `limits` allow.
    pub fn new(limits: Limits) -> Tree {
        Tree {
            entries: BTreeMap::new(),
            limits,
            read: Arc::default(),
        }
    }

    /// The same files with a budget of its own: one render per host reads
    /// the same tree, and each render may read up to the limits.
    pub fn with_fresh_budget(&self) -> Tree {
        Tree {
            entries: self.entries.clone(),
            limits: self.limits,
            read: Arc::default(),
        }
    }

    /// Add an entry at `path` (relative to the deploy repo root).
    pub fn insert(&mut self, path: PathBuf, entry: Entry) {
        self.entries.insert(path, entry);
    }

    /// Many entries at once, as a tree walk lists them (nearly in order):
    /// sorted and built in one go rather than searched for one by one.
    pub fn insert_all(&mut self, entries: Vec<(PathBuf, Entry)>) {
        if self.entries.is_empty() {
            self.entries = entries.into_iter().collect();
        } else {
            self.entries.extend(entries);
        }
    }

    /// A file held in memory (tests, tools).
    pub fn insert_bytes(&mut self, path: &str, bytes: &[u8]) {
        let blob = Blob::held(bytes.to_vec());
        self.insert(
            path.into(),
            Entry::File {
                blob,
                executable: false,
            },
        );
    }

    /// The file at `path`, following symlinks that stay inside the repo;
    /// `None` when there is no such file.
    pub fn file(&self, path: &str) -> Result<Option<(&Blob, bool)>, InvalidError> {
        let mut current = PathBuf::from(path);
        for _ in 0..MAX_LINKS {
            match self.entries.get(&current) {
                None => return Ok(None),
                Some(Entry::File { blob, executable }) => return Ok(Some((blob, *executable))),
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

    /// Read a blob of this tree, within the commit's limits.
    pub fn load<'b>(&self, path: &str, blob: &'b Blob) -> Result<Cow<'b, [u8]>, InvalidError> {
        let bytes = blob
            .bytes(self.limits.max_blob_bytes)
            .map_err(|e| self.unread(path, e))?;
        self.count(path, blob.id(), bytes.len() as u64)?;
        Ok(bytes)
    }

    /// Count a blob that will be read later (an app's source, written into
    /// the release) against the commit's limits.
    pub fn reserve(&self, path: &str, blob: &Blob) -> Result<(), InvalidError> {
        let size = blob.size().map_err(|e| self.unread(path, e))?;
        if size > self.limits.max_blob_bytes {
            return Err(self.too_large(
                path,
                format!(
                    "is {size} bytes, larger than {} (limits.max_blob_bytes)",
                    self.limits.max_blob_bytes
                ),
            ));
        }
        self.count(path, blob.id(), size)
    }

    /// Count the `size` bytes of content `id`, read for `path`, against the
    /// commit's limits; the same content read again is not counted twice.
    pub fn count(&self, path: &str, id: &str, size: u64) -> Result<(), InvalidError> {
        let mut budget = self.read.lock().unwrap_or_else(|e| e.into_inner());
        if !budget.seen.insert(id.to_string()) {
            return Ok(());
        }
        budget.total += size;
        if budget.total > self.limits.max_repo_bytes {
            return Err(self.too_large(
                path,
                format!(
                    "makes the commit too large to read: more than {} bytes in all (limits.max_repo_bytes)",
                    self.limits.max_repo_bytes
                ),
            ));
        }
        Ok(())
    }

    /// A blob not read: too large (the commit's fault), or a mirror that
    /// could not be read (the host's).
    fn unread(&self, path: &str, error: BlobError) -> InvalidError {
        match error {
            BlobError::TooLarge { .. } => {
                self.too_large(path, format!("{error} (limits.max_blob_bytes)"))
            }
            BlobError::Unreadable(message) => InvalidError::Unreadable {
                file: path.to_string(),
                message,
            },
        }
    }

    fn too_large(&self, path: &str, message: String) -> InvalidError {
        InvalidError::Repo {
            file: path.to_string(),
            message,
        }
    }

    /// The bytes of `path` (read now) and whether it is executable; `None`
    /// when there is no such file.
    pub fn read(&self, path: &str) -> Result<Option<Read<'_>>, InvalidError> {
        match self.file(path)? {
            None => Ok(None),
            Some((blob, executable)) => Ok(Some((self.load(path, blob)?, executable))),
        }
    }

    /// A UTF-8 text file, or `None` when missing.
    pub fn read_text(&self, path: &str) -> Result<Option<String>, InvalidError> {
        match self.read(path)? {
            None => Ok(None),
            Some((bytes, _)) => String::from_utf8(bytes.into_owned())
                .map(Some)
                .map_err(|_| InvalidError::Repo {
                    file: path.to_string(),
                    message: "is not UTF-8 text".into(),
                }),
        }
    }

    /// A working tree on disk (for `plumb validate`), without `.git`: names
    /// listed, bytes read when asked (a big directory beside the deploy
    /// repo's files costs its listing, not its size).
    pub fn from_dir(dir: &Path, limits: Limits) -> std::io::Result<Tree> {
        let mut tree = Tree::new(limits);
        read_dir(dir, Path::new(""), &mut tree)?;
        Ok(tree)
    }

    /// Relative paths of all entries under `dir` (recursively), in order.
    pub fn list(&self, dir: &str) -> Vec<&Path> {
        let dir = Path::new(dir);
        self.entries
            .range::<Path, _>((std::ops::Bound::Included(dir), std::ops::Bound::Unbounded))
            .take_while(|(p, _)| p.starts_with(dir))
            .map(|(p, _)| p.as_path())
            .collect()
    }
}

/// `O_NOFOLLOW | O_NONBLOCK`, for opening a working tree's file.
fn libc_flags() -> i32 {
    (nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits()
}

/// Most files `plumb validate` lists in a working tree.
const MAX_DIR_ENTRIES: usize = 1_000_000;

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
        } else if meta.is_file() {
            if tree.entries.len() >= MAX_DIR_ENTRIES {
                return Err(std::io::Error::other(format!(
                    "more than {MAX_DIR_ENTRIES} files under {}: is it the deploy repo?",
                    base.display()
                )));
            }
            let blob = Blob::file(base.join(&path), &meta);
            let executable = meta.permissions().mode() & 0o111 != 0;
            tree.insert(path, Entry::File { blob, executable });
        }
        // FIFOs, sockets and devices are not deploy repo content (git
        // cannot hold them either).
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
        t.insert_bytes("templates/a.j2", b"A");
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
        assert_eq!(&*tree().read("files/c").unwrap().unwrap().0, b"A");
        assert!(tree().read("missing").unwrap().is_none());
    }

    #[test]
    fn refuses_links_that_escape() {
        for bad in ["files/evil", "files/abs", "files/loop"] {
            let err = tree().read(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn each_content_counts_once_against_the_limits_of_one_render() {
        let limits = Limits {
            max_repo_bytes: 10,
            ..Limits::default()
        };
        let mut t = Tree::new(limits);
        t.insert_bytes("a", b"123456");
        t.insert_bytes("same-as-a", b"123456");
        t.insert_bytes("b", b"abcdef");
        // The same bytes read twice, or under two names, cost once.
        t.read("a").unwrap();
        t.read("a").unwrap();
        t.read("same-as-a").unwrap();
        let err = t.read("b").unwrap_err().to_string();
        assert!(err.contains("limits.max_repo_bytes"), "{err}");
        // Another render of the same tree (another host) has its own budget.
        let other = t.with_fresh_budget();
        other.read("b").unwrap();
        other.read("a").unwrap_err();
    }

    #[test]
    fn a_mirror_that_cannot_be_read_is_the_hosts_problem_and_a_big_blob_the_commits() {
        struct Store;
        impl BlobStore for Store {
            fn read(&self, id: &str, max: u64) -> Result<Vec<u8>, BlobError> {
                match id {
                    "big" => Err(BlobError::TooLarge { size: max + 1, max }),
                    _ => Err(BlobError::Unreadable("damaged pack".into())),
                }
            }
            fn size(&self, id: &str) -> Result<u64, BlobError> {
                self.read(id, 0).map(|b| b.len() as u64)
            }
        }
        let store: Arc<dyn BlobStore> = Arc::new(Store);
        let mut t = Tree::default();
        for (path, id) in [("big.bin", "big"), ("lost.conf", "lost")] {
            let blob = Blob::stored(id, store.clone());
            t.insert(
                path.into(),
                Entry::File {
                    blob,
                    executable: false,
                },
            );
        }
        let big = t.read("big.bin").unwrap_err();
        assert!(big.is_the_commits(), "{big}");
        assert!(big.to_string().contains("limits.max_blob_bytes"), "{big}");
        let lost = t.read("lost.conf").unwrap_err();
        assert!(!lost.is_the_commits(), "{lost}");
        assert!(lost.to_string().contains("damaged pack"), "{lost}");
    }
}
