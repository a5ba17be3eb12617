//! git2: fetch the deploy repo into a bare mirror, resolve the branch, and
//! read a commit's files without a worktree. The only module importing git2.
//!
//! The fetch looks at nothing inside the repo, so a broken commit can never
//! stop a host from fetching the fix.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use git2::{AutotagOption, FetchOptions, ObjectType, Repository, TreeWalkMode, TreeWalkResult};

use crate::error::{FetchError, InvalidError};
use crate::spec::settings::Limits;
use crate::spec::tree::{Blob, BlobError, BlobStore, Entry, Tree};

pub mod openpgp;
pub mod signers;
mod transport;
pub mod trust;

use crate::spec::remote::{Remote, normalize_url};

/// The directory a local URL (a path, or `file://`) names.
fn local_path(url: &str) -> Option<PathBuf> {
    if let Some(path) = url.strip_prefix("file://") {
        return Some(PathBuf::from(path));
    }
    (!url.contains("://") && !crate::spec::remote::is_scp_like(url)).then(|| PathBuf::from(url))
}

/// The mirror answers to the host config alone: the machine's git
/// configuration (`/etc/gitconfig`, root's `~/.gitconfig`) is never read,
/// so nothing there (`url.<base>.insteadOf`, say) can redirect or change a
/// fetch. It also saves reading those files on every run.
fn ignore_machine_config() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for level in [
            git2::ConfigLevel::System,
            git2::ConfigLevel::XDG,
            git2::ConfigLevel::Global,
            git2::ConfigLevel::ProgramData,
        ] {
            // SAFETY: once, before the mirror is first opened, from the one
            // thread that uses git2.
            if let Err(e) = unsafe { git2::opts::set_search_path(level, "") } {
                tracing::warn!("cannot keep git from reading the machine's configuration: {e}");
            }
        }
    });
}

/// The marker that stands in the mirror while `Mirror::seed` copies objects.
const SEEDING: &str = "objects/plumb-seeding";

/// The bare mirror of the deploy repo in the state directory.
pub struct Mirror {
    repo: Repository,
    path: PathBuf,
}

impl Mirror {
    /// Open the mirror at `path`, creating an empty bare repository if needed.
    pub fn open(path: &Path) -> Result<Mirror, FetchError> {
        ignore_machine_config();
        let fail = |e: git2::Error| FetchError::Mirror {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        };
        let repo = match Repository::open_bare(path) {
            Ok(repo) => repo,
            Err(e) if e.code() == git2::ErrorCode::NotFound => {
                Repository::init_bare(path).map_err(fail)?
            }
            Err(e) => return Err(fail(e)),
        };
        Ok(Mirror {
            repo,
            path: path.to_path_buf(),
        })
    }

    /// An existing repository with a worktree (a deploy repo's checkout).
    pub fn discover(dir: &Path) -> Result<Mirror, FetchError> {
        let repo = Repository::discover(dir).map_err(|e| FetchError::Mirror {
            path: dir.to_path_buf(),
            message: e.message().to_string(),
        })?;
        Ok(Mirror {
            path: dir.to_path_buf(),
            repo,
        })
    }

    /// The two ends of a revision range (`A..B`; one revision: just it).
    pub fn range(&self, spec: &str) -> Result<(Option<String>, String), FetchError> {
        let fail = |e: git2::Error| FetchError::NoRevision {
            remote: self.path.display().to_string(),
            rev: spec.to_string(),
            why: e.message().to_string(),
        };
        let parsed = self.repo.revparse(spec).map_err(fail)?;
        let commit = |o: Option<&git2::Object>| -> Result<Option<String>, FetchError> {
            o.map(|o| o.peel_to_commit().map(|c| c.id().to_string()).map_err(fail))
                .transpose()
        };
        let from = commit(parsed.from())?;
        let to = commit(parsed.to())?.or(from.clone()).unwrap_or_default();
        if parsed.mode().contains(git2::RevparseMode::RANGE) {
            Ok((from, to))
        } else {
            Ok((None, from.unwrap_or(to)))
        }
    }

    /// Fetch `branch` from `remote` and return the commit id it points at.
    /// A branch the remote no longer has (deleted, or an empty repository)
    /// is an error naming the branches it does have — never the stale
    /// commit the mirror still remembers. `known` is a commit this host
    /// already read as one (the deployed commit): when nothing is to be
    /// fetched and the branch still names it, it is not read again (unless
    /// a seed was interrupted: then the fetch below repairs the mirror).
    pub fn fetch(
        &self,
        remote: &Remote,
        branch: &str,
        known: Option<&str>,
    ) -> Result<String, FetchError> {
        let wanted = format!("refs/heads/{branch}");
        let no_branch = |advertised: &[String]| FetchError::NoBranch {
            remote: remote.shown(),
            branch: branch.to_string(),
            available: advertised
                .iter()
                .filter_map(|r| r.strip_prefix("refs/heads/"))
                .map(str::to_string)
                .collect(),
        };
        if let Some(id) = self.unchanged_local(remote, &wanted) {
            let id = id.to_string();
            if known == Some(id.as_str()) && !self.path.join(SEEDING).exists() {
                return Ok(id);
            }
            if let Some(commit) = self.resolve(branch) {
                return Ok(commit);
            }
        }
        let advertised = match self.fetch_refspecs(remote, &[format!("+{wanted}:{wanted}")]) {
            Err(FetchError::Remote { message, .. })
                if message.contains("couldn't find remote ref") =>
            {
                self.forget(&wanted);
                return Err(no_branch(&[]));
            }
            other => other?,
        };
        if !advertised.contains(&wanted) {
            self.forget(&wanted);
            return Err(no_branch(&advertised));
        }
        self.resolve(branch).ok_or_else(|| no_branch(&advertised))
    }

    /// The object the mirror's `wanted` ref names, if the remote is on this
    /// machine and its ref names the same: then there is nothing to fetch,
    /// and one ref read replaces the transport's listing and negotiation.
    fn unchanged_local(&self, remote: &Remote, wanted: &str) -> Option<git2::Oid> {
        let path = local_path(&normalize_url(&remote.url))?;
        let mine = self.repo.refname_to_id(wanted).ok()?;
        let theirs = Repository::open(&path)
            .and_then(|theirs| theirs.refname_to_id(wanted))
            .ok()?;
        (theirs == mine).then_some(mine)
    }

    /// Drop a local ref the remote no longer has.
    fn forget(&self, name: &str) {
        if let Ok(mut reference) = self.repo.find_reference(name) {
            let _ = reference.delete();
        }
    }

    /// The commit of a pinned revision — a tag or a full commit id, never a
    /// branch (branches move) — fetching only when the mirror lacks it.
    pub fn pinned(&self, remote: &Remote, rev: &str) -> Result<String, FetchError> {
        let not_found = |why: &str| FetchError::NoRevision {
            remote: remote.shown(),
            rev: rev.to_string(),
            why: why.to_string(),
        };
        let is_sha = rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit());
        let local = || -> Option<String> {
            let object = if is_sha {
                self.repo
                    .find_object(git2::Oid::from_str(rev).ok()?, None)
                    .ok()?
            } else {
                self.repo
                    .find_reference(&format!("refs/tags/{rev}"))
                    .ok()?
                    .peel(ObjectType::Any)
                    .ok()?
            };
            Some(object.peel_to_commit().ok()?.id().to_string())
        };
        if let Some(commit) = local() {
            return Ok(commit);
        }
        let refspecs = if is_sha {
            vec![
                "+refs/heads/*:refs/heads/*".to_string(),
                "+refs/tags/*:refs/tags/*".to_string(),
            ]
        } else {
            vec![format!("+refs/tags/{rev}:refs/tags/{rev}")]
        };
        match self.fetch_refspecs(remote, &refspecs).map(drop) {
            Err(FetchError::Remote { message, .. })
                if message.contains("couldn't find remote ref") =>
            {
                Err(not_found(
                    "is not a tag there; pin a tag or a full commit id (branches move)",
                ))
            }
            Err(e) => Err(e),
            Ok(()) if is_sha => local().ok_or_else(|| not_found("is not a commit there")),
            Ok(()) => local().ok_or_else(|| {
                not_found("is not a tag there; pin a tag or a full commit id (branches move)")
            }),
        }
    }

    /// Merge the packs fetches have added once there are more than
    /// `MAX_PACKS` of them (each fetch adds one): the objects of every pack
    /// but the largest go into one new pack, so the work is bounded by what
    /// was fetched since, never by the whole history, and no object is ever
    /// dropped (a kept release's commit stays readable). Small loose objects
    /// (a first fetch copies those of a local repository as they are) go
    /// into a pack too: each costs a file to open on every read. Runs after a
    /// deploy, never on the up-to-date path. The new pack is on disk
    /// (fsync) before any old one or loose object is removed, index first,
    /// so a crash at any point leaves every object readable.
    pub fn maintain(&self) -> Result<(), FetchError> {
        let fail = |message: String| FetchError::Mirror {
            path: self.path.clone(),
            message: format!("repack: {message}"),
        };
        let dir = self.path.join("objects/pack");
        let mut packs: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "pack"))
                    .map(|p| (std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0), p))
                    .collect()
            })
            .unwrap_or_default();
        // Decided before anything is written: big loose objects stay, and a
        // mirror holding only those has nothing to pack.
        let loose = small_loose_objects(&self.path.join("objects"))
            .map_err(|e| fail(format!("loose objects: {e}")))?;
        if packs.len() <= MAX_PACKS && loose.is_empty() {
            return Ok(());
        }
        packs.sort();
        if packs.len() > MAX_PACKS {
            packs.pop(); // the largest stays as it is
        } else {
            packs.clear();
        }
        // Big blobs are stored whole, not compared for deltas (libgit2
        // takes its big-file threshold from pack.deltaCacheSize), and the
        // delta window's memory is capped.
        let mut config = self.repo.config().map_err(|e| fail(e.message().into()))?;
        for (key, value) in [
            ("pack.deltaCacheSize", 16 << 20),
            ("pack.windowMemory", 64 << 20),
        ] {
            config
                .set_i64(key, value)
                .map_err(|e| fail(e.message().into()))?;
        }
        let mut builder = self
            .repo
            .packbuilder()
            .map_err(|e| fail(e.message().into()))?;
        let mut merged = Vec::new();
        for (_, pack) in &packs {
            // A pack whose index cannot be read is left alone.
            let Ok(ids) = pack_index_ids(&pack.with_extension("idx")) else {
                continue;
            };
            for id in ids {
                builder
                    .insert_object(id, None)
                    .map_err(|e| fail(e.message().into()))?;
            }
            merged.push(pack);
        }
        for (id, _) in &loose {
            builder
                .insert_object(*id, None)
                .map_err(|e| fail(e.message().into()))?;
        }
        if builder.object_count() == 0 {
            return Ok(());
        }
        builder
            .write(&dir, 0o444)
            .map_err(|e| fail(e.message().into()))?;
        let Some(name) = builder.name().ok().flatten().map(|n| format!("pack-{n}")) else {
            return Ok(());
        };
        let sync = |path: &Path| std::fs::File::open(path).and_then(|f| f.sync_all());
        for ext in ["pack", "idx"] {
            sync(&dir.join(format!("{name}.{ext}")))
                .map_err(|e| fail(format!("{name}.{ext}: {e}")))?;
        }
        sync(&dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
        for pack in merged {
            if pack.file_stem().and_then(|n| n.to_str()) == Some(name.as_str()) {
                continue;
            }
            for ext in ["idx", "rev", "pack"] {
                let _ = std::fs::remove_file(pack.with_extension(ext));
            }
        }
        // Only what went into the pack; a directory goes once empty.
        for (_, path) in &loose {
            let _ = std::fs::remove_file(path);
        }
        let dirs: std::collections::BTreeSet<&Path> =
            loose.iter().filter_map(|(_, path)| path.parent()).collect();
        for dir in dirs {
            let _ = std::fs::remove_dir(dir);
        }
        let _ = sync(&dir);
        Ok(())
    }

    /// The first fetch from a local repository: its packs are indexed into
    /// the empty mirror as they are (the indexer checks every object and
    /// computes its id), and objects it keeps loose are copied one by one;
    /// the fetch that follows finds every object present and transfers
    /// nothing. libgit2's local transport would instead inflate, compare
    /// for deltas and deflate every object again (docs/decisions.md). Not
    /// for a repository that borrows objects (alternates) or is shallow:
    /// the transport fetches those.
    ///
    /// All or nothing: the transport skips commits the mirror has, so a
    /// half-copied mirror would keep its holes. A marker file stands while
    /// objects are copied; a failure (or a marker left by a killed run)
    /// empties the mirror's objects again before the transport runs.
    fn seed(&self, source: &Path) -> Result<(), git2::Error> {
        let objects = self.path.join("objects");
        let marker = self.path.join(SEEDING);
        let interrupted = marker.exists();
        let empty = |dir: &Path| std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
        if !interrupted
            && (!empty(&objects.join("pack")) || self.repo.references()?.next().is_some())
        {
            return Ok(());
        }
        let io = |e: std::io::Error| git2::Error::from_str(&e.to_string());
        if interrupted {
            empty_objects(&objects).map_err(io)?;
        }
        let source = Repository::open(source)?;
        let theirs = source.path().join("objects");
        if source.is_shallow() || theirs.join("info/alternates").exists() {
            if interrupted {
                std::fs::remove_file(&marker).map_err(io)?;
            }
            return Ok(());
        }
        std::fs::write(&marker, b"").map_err(io)?;
        let copied = self.copy_objects(&source, &theirs);
        if copied.is_err() {
            empty_objects(&objects).map_err(io)?;
        }
        std::fs::remove_file(&marker).map_err(io)?;
        copied
    }

    /// Every object of `source`: its packs indexed, its loose objects written.
    fn copy_objects(&self, source: &Repository, theirs: &Path) -> Result<(), git2::Error> {
        use std::os::unix::fs::OpenOptionsExt;
        let io = |e: std::io::Error| git2::Error::from_str(&e.to_string());
        let odb = self.repo.odb()?;
        let packs = self.path.join("objects/pack");
        // Packs libgit2 itself would read there (with their index), opened
        // without following links and only if regular files.
        let mut names: Vec<PathBuf> = std::fs::read_dir(theirs.join("pack"))
            .map_err(io)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "pack"))
            .filter(|p| p.with_extension("idx").is_file())
            .collect();
        names.sort();
        for pack in names {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
                .open(&pack)
                .map_err(io)?;
            if !file.metadata().map_err(io)?.is_file() {
                return Err(git2::Error::from_str(&format!(
                    "{}: not a regular file",
                    pack.display()
                )));
            }
            let mut indexer = git2::Indexer::new(Some(&odb), &packs, 0o444, false)?;
            std::io::copy(&mut file, &mut indexer).map_err(io)?;
            indexer.commit()?;
        }
        let source_odb = source.odb()?;
        let mut loose = Vec::new();
        source_odb.foreach(|id| {
            if !odb.exists(*id) {
                loose.push(*id);
            }
            true
        })?;
        for id in loose {
            let object = source_odb.read(id)?;
            odb.write(object.kind(), object.data())?;
        }
        Ok(())
    }

    /// Fetch `refspecs` from `remote`, checking ssh host keys against
    /// known_hosts; returns the refs the remote advertised.
    fn fetch_refspecs(
        &self,
        remote: &Remote,
        refspecs: &[String],
    ) -> Result<Vec<String>, FetchError> {
        let url = normalize_url(&remote.url);
        if let Some(path) = local_path(&url)
            && !path.exists()
        {
            return Err(FetchError::Remote {
                remote: remote.shown(),
                message: format!(
                    "{} does not exist (a local deploy repo: check `repo:` in the host config, or --repo)",
                    path.display()
                ),
            });
        }
        if let Some(path) = local_path(&url)
            && let Err(e) = self.seed(&path)
        {
            tracing::warn!("cannot copy the objects of {}: {e}", path.display());
        }
        // ssh and https go through plumb's transports, which take the
        // remote's key, pinned host keys and token from here.
        let active = transport::activate(remote);
        let mut options = FetchOptions::new();
        options.download_tags(AutotagOption::None);
        // plumb reads the refs it fetched into, never FETCH_HEAD: not
        // writing it saves two file writes on every run.
        options.update_fetchhead(false);
        // An http server may not send plumb elsewhere (https: see transport).
        options.follow_redirects(git2::RemoteRedirect::None);
        let fetched = self.repo.remote_anonymous(&url).and_then(|mut r| {
            r.fetch(refspecs, Some(&mut options), None)?;
            Ok(r.list()?.iter().map(|h| h.name().to_string()).collect())
        });
        drop(options);
        match fetched {
            Ok(advertised) => Ok(advertised),
            Err(e) => Err(active.rejection().unwrap_or_else(|| FetchError::Remote {
                remote: remote.shown(),
                // It may quote the server (`remote error: …`).
                message: crate::host::stream::escape_controls(e.message()),
            })),
        }
    }

    /// The commit `branch` points at in the mirror.
    pub fn resolve(&self, branch: &str) -> Option<String> {
        let reference = self
            .repo
            .find_reference(&format!("refs/heads/{branch}"))
            .ok()?;
        Some(reference.peel_to_commit().ok()?.id().to_string())
    }

    /// The files of `commit` below `subpath` (empty for the repo root).
    pub fn tree(&self, commit: &str, subpath: &str, limits: &Limits) -> Result<Tree, InvalidError> {
        let fail = |message: String| InvalidError::Repo {
            file: format!("{}@{}", self.path.display(), crate::plan::short(commit)),
            message,
        };
        let oid = git2::Oid::from_str(commit).map_err(|e| fail(e.message().into()))?;
        let root = self
            .repo
            .find_commit(oid)
            .and_then(|c| c.tree())
            .map_err(|e| fail(e.message().into()))?;
        let subpath = subpath.trim_matches('/');
        let tree = if subpath.is_empty() {
            root
        } else {
            root.get_path(Path::new(subpath))
                .and_then(|entry| entry.to_object(&self.repo))
                .and_then(|object| object.peel_to_tree())
                .map_err(|_| {
                    fail(format!(
                        "sub-path {subpath:?} is not a directory in this commit"
                    ))
                })?
        };
        // Names and object ids only: a blob is read when something asks.
        let store: Arc<dyn BlobStore> = Arc::new(GitStore::open(&self.path)?);
        let mut out = Tree::new(*limits);
        let mut entries = Vec::new();
        let mut failure = None;
        let walked = tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() != Some(ObjectType::Blob) {
                return TreeWalkResult::Ok;
            }
            let name = entry.name().unwrap_or_default();
            if name.is_empty()
                || name == "."
                || name == ".."
                || name.contains('/')
                || name.eq_ignore_ascii_case(".git")
            {
                failure = Some(fail(format!(
                    "{dir}{name:?} is not a valid file name in a deploy repo"
                )));
                return TreeWalkResult::Abort;
            }
            let path = PathBuf::from(format!("{dir}{name}"));
            let item = match entry.filemode() {
                0o120000 => match store.read(&entry.id().to_string(), MAX_LINK_BYTES) {
                    // A link's target is read now, and counted like any read.
                    Ok(target) => match out.count(
                        &path.to_string_lossy(),
                        &format!("git:{}", entry.id()),
                        target.len() as u64,
                    ) {
                        Ok(()) => Entry::Symlink(String::from_utf8_lossy(&target).into_owned()),
                        Err(e) => {
                            failure = Some(e);
                            return TreeWalkResult::Abort;
                        }
                    },
                    Err(BlobError::Unreadable(message)) => {
                        failure = Some(InvalidError::Unreadable {
                            file: path.display().to_string(),
                            message,
                        });
                        return TreeWalkResult::Abort;
                    }
                    Err(e) => {
                        failure = Some(fail(format!("{}: {e}", path.display())));
                        return TreeWalkResult::Abort;
                    }
                },
                mode => Entry::File {
                    blob: Blob::stored(&entry.id().to_string(), store.clone()),
                    executable: mode == 0o100755,
                },
            };
            entries.push((path, item));
            TreeWalkResult::Ok
        });
        out.insert_all(entries);
        // An aborted walk fails too: the reason it was aborted comes first.
        match (failure, walked) {
            (Some(error), _) => Err(error),
            (None, Err(e)) => Err(fail(e.message().into())),
            (None, Ok(())) => Ok(out),
        }
    }
}

/// Packs the mirror may hold before `Mirror::maintain` repacks it.
const MAX_PACKS: usize = 16;

/// The directories of a mirror's loose objects (`objects/ab/`).
fn loose_dirs(objects: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(objects)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.len() == 2 && name.as_encoded_bytes().iter().all(u8::is_ascii_hexdigit) {
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}

/// Loose objects bigger than this (compressed) stay loose: one file to open
/// costs little next to reading them, and packing them means compressing
/// them again and comparing them for deltas (200 MiB of history: 45 s).
const MAX_LOOSE_PACKED: u64 = 256 << 10;

/// The small loose objects of a mirror: id and file. Anything else in their
/// directories (a temporary file, a big object) stays.
fn small_loose_objects(objects: &Path) -> std::io::Result<Vec<(git2::Oid, PathBuf)>> {
    let mut found = Vec::new();
    for dir in loose_dirs(objects)? {
        let prefix = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.len() != 38 || entry.metadata()?.len() > MAX_LOOSE_PACKED {
                continue;
            }
            if let Ok(id) = git2::Oid::from_str(&format!("{prefix}{name}")) {
                found.push((id, entry.path()));
            }
        }
    }
    Ok(found)
}

/// Remove every object of a mirror (its packs and loose objects): back to
/// an empty mirror after a seed that did not finish.
fn empty_objects(objects: &Path) -> std::io::Result<()> {
    for dir in loose_dirs(objects)? {
        std::fs::remove_dir_all(dir)?;
    }
    match std::fs::read_dir(objects.join("pack")) {
        Ok(files) => {
            for file in files {
                std::fs::remove_file(file?.path())?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The object ids a pack's index (version 2) lists, read without loading
/// the pack.
fn pack_index_ids(path: &Path) -> std::io::Result<Vec<git2::Oid>> {
    use std::io::Read;
    let bad = || std::io::Error::other("not a version 2 pack index");
    let mut file = std::fs::File::open(path)?;
    let mut head = vec![0u8; 8 + 256 * 4];
    file.read_exact(&mut head)?;
    if head[..8] != [0xff, b't', b'O', b'c', 0, 0, 0, 2] {
        return Err(bad());
    }
    let count = u32::from_be_bytes(head[8 + 255 * 4..].try_into().map_err(|_| bad())?) as u64;
    if count * 20 > file.metadata()?.len() {
        return Err(bad());
    }
    let mut ids = vec![0u8; count as usize * 20];
    file.read_exact(&mut ids)?;
    ids.chunks(20)
        .map(|raw| git2::Oid::from_bytes(raw).map_err(|_| bad()))
        .collect()
}

/// Longest symlink target read from a deploy repo.
const MAX_LINK_BYTES: u64 = 4096;

/// The mirror's objects, read one blob at a time as the render and the
/// release need them.
struct GitStore {
    repo: Mutex<Repository>,
}

impl GitStore {
    fn open(path: &Path) -> Result<GitStore, InvalidError> {
        let repo = Repository::open(path).map_err(|e| InvalidError::Unreadable {
            file: path.display().to_string(),
            message: e.message().to_string(),
        })?;
        Ok(GitStore {
            repo: Mutex::new(repo),
        })
    }
}

fn unreadable(e: git2::Error) -> BlobError {
    BlobError::Unreadable(e.message().to_string())
}

impl BlobStore for GitStore {
    fn read(&self, id: &str, max: u64) -> Result<Vec<u8>, BlobError> {
        // Sized from the object header, before anything is loaded.
        let size = self.size(id)?;
        if size > max {
            return Err(BlobError::TooLarge { size, max });
        }
        let repo = self.repo.lock().unwrap_or_else(|e| e.into_inner());
        let oid = git2::Oid::from_str(id).map_err(unreadable)?;
        let blob = repo.find_blob(oid).map_err(unreadable)?;
        Ok(blob.content().to_vec())
    }

    fn size(&self, id: &str) -> Result<u64, BlobError> {
        let repo = self.repo.lock().unwrap_or_else(|e| e.into_inner());
        let oid = git2::Oid::from_str(id).map_err(unreadable)?;
        repo.odb()
            .and_then(|odb| odb.read_header(oid))
            .map(|(size, _)| size as u64)
            .map_err(unreadable)
    }
}
